"""The framework-neutral weight format and the deterministic initialisation built on it.

A weights file is an ``.npz`` holding one float32 array per parameter under a canonical name
(``nin_block_1.0.weight``), kernels in PyTorch's layouts (convolutions OIHW, dense layers
``(out, in)`` with ``in`` in NCHW flatten order), plus the spec and free-form metadata as JSON.
Backends only translate between these arrays and their own layouts.

Core layer.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .shapes import _next_shape
from .spec import ConvBlock, Dense, Flatten, Spec, spec_from_dict

FORMAT_VERSION = 1


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or made for another model."""


@dataclass(frozen=True)
class ParamSlot:
    """One parameterised layer (a convolution or a dense layer) in spec order."""

    name: str  # canonical prefix, e.g. "nin_block_2.1" or "dense_1"
    weight_shape: tuple[int, ...]
    # For the dense layer right after Flatten: the (C, H, W) it flattens, which NHWC
    # frameworks flatten in (H, W, C) order instead.
    flattened_chw: tuple[int, int, int] | None = None

    @property
    def is_conv(self) -> bool:
        return len(self.weight_shape) == 4


def param_slots(spec: Spec) -> list[ParamSlot]:
    """Every parameterised layer of `spec`, in the order backends create them."""
    shape: tuple[int, ...] = (1, spec.in_channels, spec.input_size, spec.input_size)
    flattened_from = None
    slots = []
    for name, layer in zip(spec.layer_names(), spec.layers):
        if isinstance(layer, ConvBlock):
            channels = shape[1]
            for index, conv in enumerate(layer.convs):
                slots.append(
                    ParamSlot(
                        f"{name}.{index}",
                        (conv.out_channels, channels, conv.kernel_size, conv.kernel_size),
                    )
                )
                channels = conv.out_channels
        elif isinstance(layer, Flatten):
            flattened_from = tuple(shape[1:])
        elif isinstance(layer, Dense):
            chw = flattened_from if flattened_from and flattened_from[1:] != (1, 1) else None
            slots.append(ParamSlot(name, (layer.units, shape[1]), chw))
            flattened_from = None
        shape = _next_shape(layer, shape)
    return slots


def parameter_names(spec: Spec) -> list[str]:
    """Canonical parameter names in the order every backend creates the parameters: each
    layer's weight, then its bias."""
    return [f"{slot.name}.{kind}" for slot in param_slots(spec) for kind in ("weight", "bias")]


def slot_of(spec: Spec) -> dict[str, ParamSlot]:
    """Each canonical parameter name's layer."""
    return {
        f"{slot.name}.{kind}": slot for slot in param_slots(spec) for kind in ("weight", "bias")
    }


def as_float32(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Contiguous float32 copies, for backends whose layouts are the canonical ones."""
    return {name: np.ascontiguousarray(array, np.float32) for name, array in arrays.items()}


def canonical_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for slot in param_slots(spec):
        shapes[f"{slot.name}.weight"] = slot.weight_shape
        shapes[f"{slot.name}.bias"] = (slot.weight_shape[0],)
    return shapes


def init_weights(spec: Spec, seed: int = 0) -> dict[str, np.ndarray]:
    """Xavier-uniform weights and zero biases, drawn with NumPy so every backend starts equal.

    This is the book's ``nn.init.xavier_uniform_`` / ``init.Xavier()``: bound
    sqrt(6 / (fan_in + fan_out)). Drawing it once here (instead of with three framework RNGs)
    makes ``build_nin(seed=s)`` the same function in PyTorch, MXNet and Keras.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for slot in param_slots(spec):
        out_units, in_units, *kernel = slot.weight_shape
        receptive = int(np.prod(kernel)) if kernel else 1
        bound = np.sqrt(6.0 / ((in_units + out_units) * receptive))
        arrays[f"{slot.name}.weight"] = rng.uniform(-bound, bound, slot.weight_shape).astype(
            np.float32
        )
        arrays[f"{slot.name}.bias"] = np.zeros(out_units, np.float32)
    return arrays


def probe_weights(spec: Spec, seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal kernels and N(0, 0.1) biases: weights for comparing implementations.

    Not Xavier: through NiN's twelve ReLU convolutions Xavier weights shrink the logits to
    ~1e-3, where a tolerance of 1e-4 would hardly test anything. He scaling keeps the logits
    O(1), and non-zero biases make a dropped or misplaced bias visible.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for slot in param_slots(spec):
        fan_in = math.prod(slot.weight_shape[1:])
        weight = rng.standard_normal(slot.weight_shape, dtype=np.float32)
        arrays[f"{slot.name}.weight"] = weight * np.float32(math.sqrt(2.0 / fan_in))
        arrays[f"{slot.name}.bias"] = np.float32(0.1) * rng.standard_normal(
            slot.weight_shape[0], dtype=np.float32
        )
    return arrays


def check_arrays(spec: Spec, arrays: dict[str, np.ndarray], source: str = "weights") -> None:
    expected = canonical_shapes(spec)
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{source} do not fit {spec.describe()}: "
            f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
        )
    for key, shape in expected.items():
        if tuple(arrays[key].shape) != shape:
            raise WeightsError(
                f"{source}: {key} has shape {tuple(arrays[key].shape)}, "
                f"{spec.describe()} needs {shape}"
            )


def save_weights(path: str | Path, spec: Spec, arrays: dict[str, np.ndarray], **metadata) -> Path:
    """Write `arrays` (canonical names and layouts) with the spec and metadata."""
    check_arrays(spec, arrays)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format_version": FORMAT_VERSION, "spec": spec.to_dict(), "metadata": metadata}
    with open(path, "wb") as file:  # a file object keeps numpy from appending ".npz"
        np.savez(
            file,
            __header__=np.array(json.dumps(header)),
            **{key: np.asarray(value, np.float32) for key, value in arrays.items()},
        )
    return path


@dataclass(frozen=True)
class WeightsFile:
    spec: Spec
    arrays: dict[str, np.ndarray]
    metadata: dict


# A JSON header beyond this is not one of ours; reading it whole could exhaust memory.
MAX_HEADER_BYTES = 1 << 20


class NpzReader:
    """An .npz read defensively: each member's header is checked against the dtype and shape
    the caller expects, and its declared size against what that shape needs, before any data
    is read or allocated. Every problem is one `error_type` exception with one line."""

    def __init__(self, path: Path, error_type: type[Exception], what: str):
        self.path, self.error, self.what = Path(path), error_type, what
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile, ValueError, EOFError) as error:
            raise self._fail(f"is not {what}: {error}") from None
        names = self.zip.namelist()
        if len(names) > 100_000 or not all(name.endswith(".npy") for name in names):
            self.zip.close()
            raise self._fail(f"is not {what} (not an .npz of arrays)")
        self.names = {name.removesuffix(".npy") for name in names}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()
        return False

    def _fail(self, problem: str) -> Exception:
        return self.error(" ".join(f"{self.path} {problem}".split())[:400])

    def header(self) -> dict:
        """The JSON object stored as the 0-d string array ``__header__``."""
        if "__header__" not in self.names:
            raise self._fail(f"is not {self.what} (it has no header)")
        text = self._read("__header__", None, (), MAX_HEADER_BYTES)
        try:
            header = json.loads(str(text))
        except ValueError as error:
            raise self._fail(f"has a damaged header: {error}") from None
        except RecursionError:  # arrays or objects nested past the interpreter's limit
            raise self._fail("has a damaged header: it is nested too deeply") from None
        if not isinstance(header, dict):
            raise self._fail(f"is not {self.what} (its header is not an object)")
        return header

    def array(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """Member `key`, which must be float32 of `shape`."""
        if key not in self.names:
            raise self._fail(f"has no array {key}")
        return self._read(key, np.dtype(np.float32), shape, 4 * math.prod(shape))

    def _read(
        self, key: str, dtype: np.dtype | None, shape: tuple[int, ...], limit: int
    ) -> np.ndarray:
        info = self.zip.getinfo(f"{key}.npy")
        if info.file_size > limit + 4096:  # 4 KiB: the .npy header's own bound
            raise self._fail(f": {key} declares {info.file_size:,} bytes, more than it can hold")
        try:
            with self.zip.open(info) as file:
                version = np.lib.format.read_magic(file)
                if version == (1, 0):
                    found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(file)
                elif version == (2, 0):
                    found_shape, fortran, found_dtype = np.lib.format.read_array_header_2_0(file)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                if found_dtype.hasobject:
                    raise ValueError("object arrays are not read")
                if dtype is None:  # the header: a 0-d unicode string
                    if found_dtype.kind != "U" or found_shape != ():
                        raise ValueError(f"{key} is {found_dtype} {found_shape}, expected text")
                    dtype = found_dtype
                elif found_dtype != dtype or tuple(found_shape) != tuple(shape):
                    raise self._fail(
                        f": {key} is {found_dtype} {tuple(found_shape)}, "
                        f"expected {dtype} {tuple(shape)}"
                    )
                size = dtype.itemsize * math.prod(shape)
                data = file.read(size)
        except (
            OSError,
            ValueError,
            EOFError,
            zipfile.BadZipFile,
            zlib.error,
            SyntaxError,
            TypeError,
        ) as error:
            if isinstance(error, self.error):
                raise
            raise self._fail(f"is damaged ({key}: {' '.join(str(error).split())[:120]})") from None
        if len(data) != size:
            raise self._fail(f"is truncated ({key} holds {len(data):,} of {size:,} bytes)")
        array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
        return np.array(array, order="C")  # writeable, C-ordered whatever the file held


WEIGHTS_FILE = "a NiN weights file (.npz written by export_weights or `nin train`)"


def _stored_layout(header: dict, path: Path) -> tuple[Spec, dict[str, tuple[int, ...]]]:
    """The spec a weights file's header records and the arrays it implies; WeightsError
    naming the file when the header holds no usable spec."""
    try:
        spec = spec_from_dict(header["spec"])
        return spec, canonical_shapes(spec)
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise WeightsError(f"{path} is not {WEIGHTS_FILE}: bad spec ({detail})") from None


def _open_weights(path: Path) -> NpzReader:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    return NpzReader(path, WeightsError, WEIGHTS_FILE)


def read_weights_spec(path: str | Path) -> Spec:
    """The spec of a weights file, from its header alone (no array is read)."""
    path = Path(path)
    with _open_weights(path) as archive:
        return _stored_layout(archive.header(), path)[0]


def load_weights(path: str | Path, spec: Spec | None = None) -> WeightsFile:
    """Read a weights file; if `spec` is given, its parameters must be the file's."""
    path = Path(path)
    with _open_weights(path) as archive:
        header = archive.header()
        stored_spec, expected = _stored_layout(header, path)
        # Only what decides the parameters must match: weights trained with dropout 0.5 load
        # into a dropout-0 model, and NiN weights fit any input size.
        if spec is not None and (
            stored_spec.name != spec.name or expected != canonical_shapes(spec)
        ):
            raise WeightsError(
                f"{path} holds weights for {stored_spec.describe()}, but the "
                f"model is {spec.describe()}"
            )
        stored = archive.names - {"__header__"}
        missing, extra = sorted(set(expected) - stored), sorted(stored - set(expected))
        if missing or extra:
            raise WeightsError(
                f"{path} does not fit {stored_spec.describe()}: "
                f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
            )
        arrays = {key: archive.array(key, shape) for key, shape in expected.items()}
    bad = [key for key, value in arrays.items() if not np.isfinite(value).all()]
    if bad:
        raise WeightsError(
            f"{path}: {bad[0]} holds NaN or infinite values ({len(bad)} array(s) affected)"
        )
    metadata = header.get("metadata", {})
    return WeightsFile(stored_spec, arrays, metadata if isinstance(metadata, dict) else {})


def dense_to_nhwc(weight: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Reorder a dense kernel's inputs from NCHW flatten order to NHWC flatten order."""
    channels, height, width = chw
    return weight.reshape(-1, channels, height, width).transpose(0, 2, 3, 1).reshape(weight.shape)


def dense_to_nchw(weight: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`dense_to_nhwc`."""
    channels, height, width = chw
    return weight.reshape(-1, height, width, channels).transpose(0, 3, 1, 2).reshape(weight.shape)


def to_channels_last(slot: ParamSlot, weight: np.ndarray) -> np.ndarray:
    """A canonical weight in the layout of a channels-last framework (Keras, JAX): HWIO
    kernels, ``(in, out)`` dense kernels whose inputs after a Flatten are in (H, W, C) order."""
    if slot.is_conv:
        return weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if slot.flattened_chw:
        weight = dense_to_nhwc(weight, slot.flattened_chw)
    return weight.T


def from_channels_last(slot: ParamSlot, kernel: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_channels_last`."""
    if slot.is_conv:
        return kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    weight = kernel.T
    return dense_to_nchw(weight, slot.flattened_chw) if slot.flattened_chw else weight


def _each_weight(spec: Spec, arrays: dict[str, np.ndarray], kernel) -> dict[str, np.ndarray]:
    slots = slot_of(spec)
    return as_float32(
        {
            name: kernel(slots[name], np.asarray(array)) if name.endswith(".weight") else array
            for name, array in arrays.items()
        }
    )


def arrays_to_channels_last(spec: Spec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical arrays (weights, or optimizer moments keyed like them) in a channels-last
    framework's layouts (:func:`to_channels_last` for each weight; biases as they are)."""
    return _each_weight(spec, arrays, to_channels_last)


def arrays_from_channels_last(spec: Spec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of :func:`arrays_to_channels_last`."""
    return _each_weight(spec, arrays, from_channels_last)
