"""ONNX export, the framework-free half, and onnxruntime as a fourth implementation.

Each backend's ``export_onnx`` (``nin_torch/export.py``, ...) only drives its converter, inside
:func:`exporting`; everything the three files then have in common is made here. An exported
model has one input and one output:

* ``images``: float32 NCHW ``(batch, channels, height, width)``, whatever the framework's own
  layout. The batch is dynamic, and so are height and width for networks that end in global
  pooling (NiN takes any size from 67 px); AlexNet takes exactly its input size.
* ``logits``: float32 ``(batch, num_classes)``, before softmax.

and these ``metadata_props`` (text values):

* ``nin.spec``: the architecture, as JSON (:meth:`common.spec.Spec.to_dict`);
* ``nin.framework``, ``nin.framework_version``: where it was exported from;
* ``nin.input_size``, ``nin.standardize``: the input treatment the weights were trained with,
  which ``nin predict --onnx`` applies (the input's doc_string spells out the arithmetic).

onnx, onnxruntime and the converters are imported inside the functions that use them, so
``nin predict --onnx`` imports onnxruntime and no deep-learning framework.

Core layer.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .backends import BACKENDS, BackendUnavailable, check_backend_name
from .data import TRAIN_MEAN, TRAIN_STD
from .shapes import as_input_batch, check_input_shape, min_input_size
from .spec import Spec, spec_from_dict

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
OPSETS = (13, 17)  # the opsets every converter was checked at (tests/test_onnx.py)
DEFAULT_OPSET = 17
METADATA_PREFIX = "nin."


def require_exporter(backend_name: str) -> None:
    """That what exporting from the backend imports beyond its framework (its registry
    entry's `onnx_needs`) is installed, or one clear :class:`BackendUnavailable`."""
    require(*BACKENDS[check_backend_name(backend_name)].onnx_needs)


def require(*modules: str) -> None:
    """That `modules` can be imported, or one clear :class:`BackendUnavailable`."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailable(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not installed; run `make setup` or "
            "pip install 'nin-reference[onnx]'"
        )


def check_opset(opset: int) -> int:
    if opset not in OPSETS:
        raise ValueError(
            f"ONNX opset {opset} is not supported; choose {' or '.join(map(str, OPSETS))}"
        )
    return opset


# -- export ------------------------------------------------------------------------------------


def input_description(spec: Spec, input_treatment: tuple[int, bool]) -> str:
    """The input's doc_string: layout, sizes, and the preprocessing the weights expect."""
    size, standardize = input_treatment
    if spec.fixed_input_size:
        sizes = f"exactly {spec.input_size}x{spec.input_size}"
    else:
        sizes = f"any height and width from {min_input_size(spec)} px; trained at {size}x{size}"
    scaling = f", then standardized: (x - {TRAIN_MEAN}) / {TRAIN_STD}" if standardize else ""
    return (
        f"float32 NCHW images (batch, {spec.in_channels}, height, width), {sizes}: "
        f"pixel values / 255, bilinearly resized{scaling}"
    )


@contextmanager
def exporting(
    path: str | Path,
    spec: Spec,
    *,
    opset: int,
    framework: str,
    framework_version: str,
    input_treatment: tuple[int, bool] | None = None,
):
    """Yield a temporary path for a converter to write; then finish that model into `path`.

    Finishing gives every backend's file the interface above: initializers that a converter
    listed as graph inputs dropped from the inputs, named symbolic dimensions, the input
    documented, the metadata, the lowest IR version the opset allows. The result must pass
    ``onnx.checker`` (full check, with shape inference) before it replaces `path` atomically.
    """
    require("onnx")
    check_opset(opset)
    input_treatment = input_treatment or (spec.input_size, False)
    size = input_treatment[0]
    check_input_shape(spec, (1, spec.in_channels, size, size))  # a size it cannot have trained at
    with tempfile.TemporaryDirectory(prefix="nin-onnx-") as folder:
        raw = Path(folder) / "converted.onnx"
        yield raw
        _finish(
            raw,
            Path(path),
            spec,
            opset=opset,
            input_treatment=input_treatment,
            metadata={
                "spec": json.dumps(spec.to_dict()),
                "framework": framework,
                "framework_version": framework_version,
                "input_size": str(input_treatment[0]),
                "standardize": "true" if input_treatment[1] else "false",
            },
        )


def _finish(
    raw: Path,
    path: Path,
    spec: Spec,
    *,
    opset: int,
    input_treatment: tuple[int, bool],
    metadata: dict[str, str],
) -> None:
    import onnx

    from .platform.files import atomic_write

    model = onnx.load(raw)
    graph = model.graph
    stamped = {entry.domain: entry.version for entry in model.opset_import}.get("", None)
    if stamped != opset:  # a converter that ignores the opset asked for (MXNet's, unpinned)
        raise RuntimeError(f"the converter stamped opset {stamped}, asked for {opset}")
    # Old converters (MXNet's) list every initializer as a graph input too, as IR < 4 needed:
    # onnxruntime then treats the weights as overridable inputs and may skip constant folding.
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    del graph.input[:]
    graph.input.extend(inputs)
    names = ([value.name for value in graph.input], [value.name for value in graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise RuntimeError(f"the converter named the inputs and outputs {names}")

    size = spec.input_size if spec.fixed_input_size else None
    _set_dims(graph.input[0], ["batch", spec.in_channels, size or "height", size or "width"])
    _set_dims(graph.output[0], ["batch", spec.num_classes])
    graph.input[0].doc_string = input_description(spec, input_treatment)
    graph.output[0].doc_string = f"float32 logits (batch, {spec.num_classes}), before softmax"
    model.doc_string = (
        f"{spec.describe()} exported from {metadata['framework']} "
        f"{metadata['framework_version']} by nin export"
    )
    if not model.producer_name:  # MXNet leaves it empty
        model.producer_name = metadata["framework"]
        model.producer_version = metadata["framework_version"]
    # MXNet stamps the installed onnx's newest IR version (14 for onnx 1.23) whatever the
    # opset; the lowest one the opset allows keeps the file readable by older runtimes.
    model.ir_version = min(
        model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import))
    )
    del model.metadata_props[:]
    onnx.helper.set_model_props(
        model, {METADATA_PREFIX + key: value for key, value in metadata.items()}
    )
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: onnx.save(model, temporary))


def _set_dims(value, dims: list) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for size in dims:
        dim = shape.dim.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size


# -- onnxruntime -------------------------------------------------------------------------------


class OnnxModel:
    """An exported model on onnxruntime alone: no deep-learning framework is imported.

    With ``spin_wait=False`` onnxruntime's threads sleep between runs instead of busy-waiting
    for the next one (its default): on a small machine the spinning threads take the CPU from
    whatever the process runs next, a framework being timed beside it included.
    """

    def __init__(self, path: str | Path, *, spin_wait: bool = True):
        require("onnxruntime")
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"ONNX model {self.path} does not exist")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not actionable here
        if not spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own pybind11 exception types
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ValueError(
                f"{self.path} is not an ONNX model onnxruntime can run ({first})"
            ) from None
        stored = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {
            key.removeprefix(METADATA_PREFIX): value
            for key, value in stored.items()
            if key.startswith(METADATA_PREFIX)
        }
        try:
            self.spec = spec_from_dict(json.loads(self.metadata["spec"]))
            self.input_treatment = (
                int(self.metadata["input_size"]),
                {"true": True, "false": False}[self.metadata["standardize"]],
            )
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(
                f"{self.path} was not written by `nin export` (its nin.* metadata "
                f"is missing or damaged: {type(error).__name__} {error})"
            ) from None
        names = (
            [value.name for value in self.session.get_inputs()],
            [value.name for value in self.session.get_outputs()],
        )
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise ValueError(
                f"{self.path} has inputs and outputs {names}, expected "
                f"([{INPUT_NAME!r}], [{OUTPUT_NAME!r}])"
            )

    def predict_logits(self, images, batch_size: int = 256) -> np.ndarray:
        """Logits (N, num_classes) for NCHW float32 `images`, like each backend's."""
        images = as_input_batch(self.spec, images)
        return np.concatenate(
            [
                self.session.run([OUTPUT_NAME], {INPUT_NAME: images[start : start + batch_size]})[0]
                for start in range(0, len(images), batch_size)
            ]
        )


# -- speed -------------------------------------------------------------------------------------
