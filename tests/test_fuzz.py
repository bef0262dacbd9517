"""Bad input never crashes, never hangs, never eats memory: the IDX reader, the weights loader
and the checkpoint loader, fuzzed with hypothesis. Each fuzzed file carries what its damage
requires: the project's one-line error, or a load of exactly what its bytes still encode (the
good file's arrays where the damage cannot have reached them). Nothing else may escape, and no
input makes a reader allocate more than the real data needs."""

from __future__ import annotations

import gzip
import io
import json
import math
import struct
import tracemalloc
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from common import data
from common.data import DatasetError
from common.spec import Conv, ConvBlock, Flatten, GlobalAvgPool, Spec, spec_from_dict
from common.tools.checkpoint import CheckpointError, load_checkpoint
from common.tools.config import RunConfig
from common.training import TrainingState
from common.weights import (
    WeightsError,
    canonical_shapes,
    init_weights,
    load_weights,
    save_weights,
)

from .archives import npy_bytes, write_members


def fuzz(examples: int, deadline_ms: int, shrink: bool = True) -> settings:
    """Fixed seeds, so CI is repeatable, and a deadline for each example."""
    return settings(
        max_examples=examples,
        deadline=deadline_ms,
        derandomize=True,
        phases=[phase for phase in Phase if shrink or phase is not Phase.shrink],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@dataclass(frozen=True, repr=False)
class Good:
    """A good file's bytes and what it loads to; short in hypothesis' reports, which print
    every argument of a failing example."""

    blob: bytes
    loaded: object

    def __repr__(self) -> str:
        return f"<the good file, {len(self.blob):,} bytes>"


def bounded(call, limit: int):
    """Run `call`; return (its result, None) or (None, the exception it raised), and fail if
    it allocated `limit` bytes or more at its peak (NumPy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        result, raised = call(), None
    except Exception as error:  # noqa: BLE001 - the type is what the caller checks
        result, raised = None, error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak:,} bytes, limit {limit:,}"
    return result, raised


def one_line(error: Exception, kind: type[Exception], fragment: str = "") -> None:
    assert isinstance(error, kind), repr(error)
    assert "\n" not in str(error) and len(str(error)) < 600, str(error)
    assert fragment in str(error), f"{fragment!r} not in {str(error)!r}"


@dataclass(frozen=True)
class Expected:
    """What a reader must do with one fuzzed file: refuse it with a one-line error containing
    `error` ("" for any), load it (the good file with `changes`), or, where a load can only be
    the good file, either of the two."""

    error: str | None = None
    good_or_error: bool = False
    changes: dict = field(default_factory=dict)


def refuse(fragment: str = "") -> Expected:
    return Expected(error=fragment)


LOAD_GOOD = Expected()
GOOD_OR_REFUSE = Expected(good_or_error=True)


def check_outcome(expected: Expected, loaded, error, kind: type[Exception], compare) -> None:
    """That the reader did what `expected` says; `compare(loaded, **changes)` checks a load."""
    if expected.error is not None:
        assert error is not None, f"loaded, but the damage requires an error ({expected.error!r})"
        one_line(error, kind, expected.error)
    elif expected.good_or_error and error is not None:
        one_line(error, kind)
    else:
        assert error is None, f"the file is valid, yet: {error!r}"
        compare(loaded, **expected.changes)


def assert_bitwise(arrays: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert arrays.keys() == expected.keys()
    for key, value in expected.items():
        got = arrays[key]
        assert (got.dtype, got.shape) == (value.dtype, value.shape), key
        assert got.tobytes() == value.tobytes(), key


def same_json(a, b) -> bool:
    """Equal as JSON text (NaN equals NaN there)."""
    return json.dumps(a) == json.dumps(b)


# -- the IDX reader ----------------------------------------------------------------------------

COUNT = 3  # what the fuzzed files claim to hold is checked against this
IDX_NAME = "t10k-images-idx3-ubyte.gz"  # a name with an upstream checksum, which verify checks
IDX_LAYOUT = {True: ("images", 2051, (28, 28)), False: ("labels", 2049, ())}
# The reader holds the header and the data it promises, nothing more: beyond them only gzip's
# and zlib's buffers. Peaks measured here: 68 KB on a good file, 98 KB at most over the 150
# examples and the tests below; bounded at twice that.
IDX_BOOKKEEPING = 192 << 10
IDX_MEMORY_LIMIT = 16 + COUNT * 28 * 28 + IDX_BOOKKEEPING


def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload


@st.composite
def idx_cases(draw):
    """(decompressed content, gzipped?, images?, verify?): noise, bad headers, and good files
    of random content, cut or extended."""
    images = draw(st.booleans())
    _, magic, shape = IDX_LAYOUT[images]
    size = COUNT * math.prod(shape)
    payload = draw(
        st.binary(min_size=size, max_size=size)
        if images
        else st.lists(st.integers(0, 11), min_size=size, max_size=size).map(bytes)
    )
    well_formed = _idx(magic, [COUNT, *shape], payload)
    content = draw(
        st.one_of(
            st.binary(max_size=64),  # noise
            st.builds(
                _idx,
                st.sampled_from([2049, 2051, 2050, 0, 2**32 - 1]),
                st.lists(
                    st.sampled_from([0, 1, COUNT, 28, 29, 2**31, 2**32 - 1]), min_size=0, max_size=4
                ),
                st.binary(max_size=size + 8),
            ),  # bad headers
            st.builds(
                lambda cut, extra: (well_formed + extra)[:cut],
                st.none() | st.integers(0, len(well_formed) + 8),
                st.binary(max_size=8),
            ),  # truncations and trailing bytes
            st.just(well_formed),
            st.just(well_formed),  # twice: loads are as much the point as refusals
        )
    )
    compressed = draw(st.sampled_from([True, True, True, False]))
    return content, compressed, images, draw(st.sampled_from([False, False, False, True]))


def _idx_expected(content: bytes, compressed: bool, images: bool, verify: bool) -> Expected:
    """What the reader must do with `content` (written gzipped if `compressed`), decoded here
    independently: the array its bytes encode, or the error its first defect calls for."""
    if not compressed:  # not gzip (the caller rules out content that happens to be)
        return refuse("cannot be decompressed" if content else "too short for an IDX header")
    kind, magic, shape = IDX_LAYOUT[images]
    header_size = 4 * (2 + len(shape))
    if len(content) < header_size:
        return refuse("too short for an IDX header")
    found, *dims = (int.from_bytes(content[i : i + 4], "big") for i in range(0, header_size, 4))
    if found != magic:
        return refuse(f"has IDX magic number {found}, expected {magic}")
    if tuple(dims[1:]) != shape:
        return refuse("images, expected 28x28")
    if dims[0] != COUNT:
        return refuse(f"holds {dims[0]} {kind}, expected {COUNT}")
    payload = content[header_size:]
    size = COUNT * math.prod(shape)
    if len(payload) < size:
        return refuse(f"header promises {size} data bytes but the file holds {len(payload)}")
    if len(payload) > size:
        return refuse(f"holds more than the {size} data bytes")
    values = list(payload)
    if not images and max(values) >= 10:
        return refuse(f"has label {max(values)}, expected 0..9")
    if verify:  # three items are never the upstream file whose checksum the name selects
        return refuse("differs from upstream Fashion-MNIST")
    return Expected(changes={"array": np.array(values, np.uint8).reshape(COUNT, *shape)})


def _assert_idx(loaded: np.ndarray, array: np.ndarray) -> None:
    assert_bitwise({"idx": loaded}, {"idx": array})


# Slowest example measured here, with the other core busy: 43 ms; the deadline is about 20x.
@fuzz(examples=150, deadline_ms=1000)
@given(case=idx_cases())
def test_idx_reader_survives_anything(tmp_path_factory, case):
    content, compressed, images, verify = case
    assume(compressed or not content.startswith(b"\x1f\x8b"))  # raw bytes that look like gzip
    assert IDX_NAME.removesuffix(".gz") in data._SHA256
    path = tmp_path_factory.mktemp("idx") / IDX_NAME
    path.write_bytes(gzip.compress(content, compresslevel=1) if compressed else content)
    loaded, error = bounded(
        lambda: data._read_idx(path, images=images, count=COUNT, verify=verify), IDX_MEMORY_LIMIT
    )
    expected = _idx_expected(content, compressed, images, verify)
    check_outcome(expected, loaded, error, DatasetError, _assert_idx)


def test_idx_file_decompressing_to_far_more_than_it_declares(tmp_path):
    """A 'gzip bomb': a valid header, then 256 MiB of zeros. The reader stops at what the
    header promises and never holds more."""
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(_idx(2049, [10_000], bytes(10_000)))
        chunk = bytes(1 << 20)
        for _ in range(256):
            file.write(chunk)
    limit = 8 + 10_000 + IDX_BOOKKEEPING  # the header and the 10,000 labels it promises
    _, error = bounded(
        lambda: data._read_idx(path, images=False, count=10_000, verify=False), limit
    )
    one_line(error, DatasetError, "more than the 10000 data bytes")


def test_idx_header_declaring_billions_of_images(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx(2051, [2**31, 28, 28], bytes(784))))
    limit = 16 + IDX_BOOKKEEPING  # refused on its header alone
    _, error = bounded(lambda: data._read_idx(path, images=True, count=60_000, verify=False), limit)
    one_line(error, DatasetError, "2147483648 images, expected 60000")


# -- zip damage, shared by the weights and checkpoint loaders ------------------------------------

END_OF_ARCHIVE = b"PK\x05\x06"  # the signature zipfile looks for in a file's last 64 KiB


def _member_spans(blob: bytes) -> list[tuple[int, int]]:
    """Where each member's stored bytes (its whole .npy, covered by its CRC-32) lie."""
    spans = []
    for info in zipfile.ZipFile(io.BytesIO(blob)).infolist():
        start = info.header_offset + 30  # the local header's fixed part, then name and extra
        name_length, extra_length = struct.unpack("<HH", blob[start - 4 : start])
        start += name_length + extra_length
        spans.append((start, start + info.compress_size))
    return spans


def _truncation_expected(good: bytes, kept: int, not_ours: str) -> Expected:
    """A cut removes the archive's end record; without one zipfile finds no archive."""
    if kept == len(good):
        return LOAD_GOOD
    if END_OF_ARCHIVE in good[:kept][-(65536 + 22) :]:  # a stray signature: anything may follow
        return GOOD_OR_REFUSE
    return refuse(not_ours)


def _damage_expected(good: bytes, damaged: bytes) -> Expected:
    """Bytes changed in place. Every member is read to its end, so its CRC-32 is checked; a
    CRC-32 catches every burst of up to 32 bits, so damage confined to member contents, at most
    4 bytes long in each member, must be refused. Damage elsewhere (zip headers, many bursts)
    may be caught or missed, but a load must then be the good file: nothing can change an
    array's bytes without its CRC-32 noticing, short of a collision."""
    changed = np.flatnonzero(np.frombuffer(good, np.uint8) != np.frombuffer(damaged, np.uint8))
    if not changed.size:
        return LOAD_GOOD
    covered = 0
    for start, end in _member_spans(good):
        inside = changed[(changed >= start) & (changed < end)]
        covered += inside.size
        if inside.size and inside[-1] - inside[0] >= 4:
            return GOOD_OR_REFUSE
    return refuse() if covered == changed.size else GOOD_OR_REFUSE


def _rezip(blob: bytes, change) -> bytes:
    """The archive with each member passed through change(name, bytes) -> bytes | None."""
    with zipfile.ZipFile(io.BytesIO(blob)) as source:
        changed = {name: change(name, source.read(name)) for name in source.namelist()}
    kept = {name: content for name, content in changed.items() if content is not None}
    return write_members(io.BytesIO(), kept).getvalue()


def _npy_claiming(shape: tuple[int, ...], dtype: str = "<f4", payload: bytes = b"") -> bytes:
    """An .npy whose header declares `shape` but whose data is only `payload`."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def _header_of(blob: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return json.loads(str(np.load(io.BytesIO(archive.read("__header__.npy")))))


def _with_header(blob: bytes, header) -> bytes:
    return _rezip(
        blob,
        lambda name, content: (
            npy_bytes(np.array(json.dumps(header))) if name == "__header__.npy" else content
        ),
    )


def _damaged(blob: bytes, mutation) -> bytes:
    """`blob` truncated, or with bytes flipped (anywhere, or in one burst)."""
    kind = mutation[0]
    if kind == "truncate":
        return blob[: int(mutation[1] * len(blob))]
    raw = bytearray(blob)
    if kind == "flip":
        for where, value in mutation[1]:
            raw[min(int(where * len(raw)), len(raw) - 1)] ^= value
    else:
        start = min(int(mutation[1] * len(raw)), len(raw) - len(mutation[2]))
        for offset, value in enumerate(mutation[2]):
            raw[start + offset] ^= value
    return bytes(raw)


def _damage_expected_for(good: bytes, damaged: bytes, mutation, not_ours: str) -> Expected:
    if mutation[0] == "truncate":
        return _truncation_expected(good, len(damaged), not_ours)
    return _damage_expected(good, damaged)


# Each knows where it struck: a cut keeps a fraction of the file; flips XOR bytes at fractions
# of its length; a burst XORs up to 4 consecutive bytes (what a CRC-32 always catches).
DAMAGE = (
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8),
    ),
    st.tuples(
        st.just("burst"),
        st.floats(0, 1),
        st.lists(st.integers(1, 255), min_size=1, max_size=4).map(bytes),
    ),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


# -- the weights loader --------------------------------------------------------------------------

TINY = Spec(
    "tiny",
    1,
    3,
    (ConvBlock((Conv(4, 3, 1, 1), Conv(3, 1, relu=False))), GlobalAvgPool(), Flatten()),
    8,
)
# The tiny model's arrays are 220 bytes; the rest is zipfile's, NumPy's and the JSON header's
# bookkeeping. Peaks measured here: 34 KB on the good file, 37 KB at most over the 150
# examples; bounded at twice that.
WEIGHTS_MEMORY_LIMIT = 220 + (72 << 10)


@pytest.fixture(scope="module")
def good_weights(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("weights") / "good.npz"
    save_weights(path, TINY, init_weights(TINY, 0), framework="test")
    assert load_weights(path).spec == TINY
    return path.read_bytes()


weights_mutations = st.one_of(
    *DAMAGE,
    st.tuples(st.just("header"), json_values),
    st.tuples(
        st.just("spec"),
        st.sampled_from(["in_channels", "num_classes", "input_size", "layers", "name", "options"]),
        json_values | st.integers(-2, 9000),
    ),
    st.tuples(st.just("metadata"), json_values),
    st.tuples(
        st.just("claim"),
        st.sampled_from([(2**40,), (4, 1, 3, 3), (2**20, 2**20), ()]),
        st.sampled_from(["<f4", "<f8", "|O", "<U3"]),
    ),
)


def _weights_header(header: dict, mutation):
    """The header a header mutation writes, as the loader will read it back."""
    kind = mutation[0]
    if kind == "header":
        new = mutation[1]
    elif kind == "spec":
        new = {**header, "spec": {**header["spec"], mutation[1]: mutation[2]}}
    else:
        new = {**header, "metadata": mutation[1]}
    return json.loads(json.dumps(new))


def _weights_expected_for_header(header) -> Expected:
    """A header must be an object with a spec whose parameters are the file's arrays; then the
    arrays load unchanged, under that spec, with its metadata if that is an object."""
    if not isinstance(header, dict):
        return refuse("its header is not an object")
    try:
        spec = spec_from_dict(header["spec"])
    except (ValueError, KeyError, TypeError):
        return refuse("bad spec")
    try:
        shapes = canonical_shapes(spec)
    except Exception:  # noqa: BLE001 - a spec with no parameter shapes can only be refused
        return refuse()
    if shapes.keys() != canonical_shapes(TINY).keys():
        return refuse("does not fit")
    if shapes != canonical_shapes(TINY):
        return refuse("expected float32")
    metadata = header.get("metadata", {})
    return Expected(
        changes={"spec": spec, "metadata": metadata if isinstance(metadata, dict) else {}}
    )


def _weights_expected_for_claim(shape: tuple[int, ...], dtype: str) -> Expected:
    """The first kernel's member claims another shape or dtype over 32 bytes of data."""
    if dtype == "|O":
        return refuse("object arrays are not read")
    if (shape, dtype) == ((4, 1, 3, 3), "<f4"):  # the right claim, over 32 of 144 bytes
        return refuse("is truncated (nin_block.0.weight holds 32 of 144 bytes)")
    return refuse("expected float32 (4, 1, 3, 3)")


def _claimed(blob: bytes, shape: tuple[int, ...], dtype: str) -> bytes:
    return _rezip(
        blob,
        lambda name, content: (
            _npy_claiming(shape, dtype, content[128:160])
            if name == "nin_block.0.weight.npy"
            else content
        ),
    )


def _weights_case(good: bytes, mutation) -> tuple[bytes, Expected]:
    """The fuzzed file and what the loader must do with it."""
    kind = mutation[0]
    if kind in ("truncate", "flip", "burst"):
        damaged = _damaged(good, mutation)
        expected = _damage_expected_for(good, damaged, mutation, "is not a NiN weights file")
        return damaged, expected
    if kind == "claim":
        return _claimed(good, *mutation[1:]), _weights_expected_for_claim(*mutation[1:])
    header = _weights_header(_header_of(good), mutation)
    return _with_header(good, header), _weights_expected_for_header(header)


@pytest.fixture(scope="module")
def good_weights_file(good_weights, tmp_path_factory) -> Good:
    path = tmp_path_factory.mktemp("weights") / "good.npz"
    path.write_bytes(good_weights)
    return Good(good_weights, load_weights(path))


# Slowest example measured here, with the other core busy: 0.27 s (most take 10-15 ms); the
# deadline is 20x.
@fuzz(examples=150, deadline_ms=5500)
@given(mutation=weights_mutations)
def test_weights_loader_survives_anything(tmp_path_factory, good_weights_file, mutation):
    content, expected = _weights_case(good_weights_file.blob, mutation)
    path = tmp_path_factory.mktemp("weights") / "fuzzed.npz"
    path.write_bytes(content)
    loaded, error = bounded(lambda: load_weights(path), WEIGHTS_MEMORY_LIMIT)
    good = good_weights_file.loaded

    def compare(loaded, spec=TINY, metadata=good.metadata):
        assert same_json(loaded.spec.to_dict(), spec.to_dict())
        assert same_json(loaded.metadata, metadata)
        assert_bitwise(loaded.arrays, good.arrays)

    check_outcome(expected, loaded, error, WeightsError, compare)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is not a NiN weights file"),
        (b"PK\x05\x06" + bytes(18), "has no header"),  # an empty zip
    ],
)
def test_weights_loader_on_empty_files(tmp_path, content, message):
    path = tmp_path / "empty.npz"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_weights_with_nan_or_inf_are_refused(tmp_path):
    for bad in (np.nan, np.inf):
        arrays = init_weights(TINY, 0)
        arrays["nin_block.1.bias"] = np.array([0, bad, 0], np.float32)
        path = save_weights(tmp_path / f"bad-{bad}.npz", TINY, arrays)
        with pytest.raises(WeightsError, match="NaN or infinite"):
            load_weights(path)


def test_weights_member_declaring_a_terabyte(tmp_path, good_weights):
    path = tmp_path / "huge.npz"
    path.write_bytes(_claimed(good_weights, (2**38,), "<f4"))
    _, error = bounded(lambda: load_weights(path), WEIGHTS_MEMORY_LIMIT)
    one_line(error, WeightsError, "expected float32 (4, 1, 3, 3)")


WEIGHTS_DEEP_HEADER = "[" * 100_000 + "]" * 100_000


def _flatten_first(spec: dict) -> dict:
    """`spec` with a Flatten before its first convolution, which then has no image to see."""
    return {**spec, "layers": [{"type": "Flatten"}, *spec["layers"]]}


@pytest.mark.parametrize(
    "content, fragment",
    [
        pytest.param(
            lambda good: _rezip(
                good,
                lambda name, content: (
                    npy_bytes(np.array(WEIGHTS_DEEP_HEADER))
                    if name == "__header__.npy"
                    else content
                ),
            ),
            "has a damaged header: it is nested too deeply",
            id="header-nested-too-deep",
        ),
        pytest.param(
            lambda good: _with_header(
                good,
                {**_header_of(good), "spec": _flatten_first(TINY.to_dict())},
            ),
            "bad spec (a spec cannot put ConvBlock after Flatten",
            id="flatten-before-a-convolution",
        ),
    ],
)
def test_weights_loader_refuses_what_once_escaped(tmp_path, good_weights, content, fragment):
    """Headers that once escaped as RecursionError and a plain ValueError."""
    path = tmp_path / "bad.npz"
    path.write_bytes(content(good_weights))
    with pytest.raises(WeightsError) as refused:
        load_weights(path)
    one_line(refused.value, WeightsError, fragment)


# -- the checkpoint loader -----------------------------------------------------------------------


class StandIn:
    """What save_checkpoint needs of a backend, with no framework (the checkpoint format is
    the same whoever writes it; tests/test_checkpoint.py resumes real runs)."""

    BACKEND = "torch"  # a registry name: only package metadata is read, never the framework
    NATIVE_SUFFIX = ".native"

    @staticmethod
    def get_weights(net) -> dict[str, np.ndarray]:
        return net.weights

    @staticmethod
    def save_native(net, path: Path) -> Path:
        Path(path).write_bytes(b"native weights")
        return path


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    """A run of the quick preset's NiN stopped after its first step: epoch 0, batch 1 of 2,
    step 1, with Adam's two moments and the step's logged point."""
    from types import SimpleNamespace

    from common.tools.checkpoint import save_checkpoint
    from common.tools.config import PRESETS
    from common.training import OptimizerState, StepMetrics, _Sums
    from common.weights import probe_weights

    config = replace(PRESETS["quick"], epochs=1, train_limit=128, test_limit=64, batch_size=64)
    assert config.recipe.optimizer == "adam"
    spec = config.spec()
    moments = {
        "m": probe_weights(spec, 1),
        "v": {key: np.square(value) for key, value in probe_weights(spec, 2).items()},
    }
    trainer = SimpleNamespace(
        net=SimpleNamespace(spec=spec, weights=init_weights(spec, config.seed)),
        optimizer_state=lambda: OptimizerState("adam", 1, moments),
    )
    state = TrainingState(
        epoch=0,
        batch=1,
        step=1,
        epoch_sums=_Sums(2.3 * 64, 9, 64, 1),
        epoch_seconds=1.25,
        points=[StepMetrics(1, 0.5, 2.3, 9 / 64)],
    )
    out = tmp_path_factory.mktemp("checkpoint") / "run"
    out.mkdir()
    folder = save_checkpoint(out, StandIn, trainer, config, state)
    assert load_checkpoint(folder).state == state
    return folder


@pytest.fixture(scope="module")
def good_loaded(good_checkpoint):
    return load_checkpoint(good_checkpoint)


@pytest.fixture(scope="module")
def good_checkpoint_file(good_checkpoint, good_loaded) -> Good:
    return Good((good_checkpoint / "state.npz").read_bytes(), good_loaded)


def checkpoint_memory_limit(good) -> int:
    """The real data, the good checkpoint's arrays (weights and Adam's two moments: 23.9 MB),
    plus one array in flight (the largest, 3.5 MB: the reader reads a member's bytes, then
    copies them into a writeable array) and bookkeeping (the header, zipfile's directory: 72 KB
    still held after a load), bounded at 256 KiB. Peak measured here on the good file and at
    most over the 60 examples: arrays + 2.4 MB (the largest array is not the last one read),
    against a bound of arrays + 3.8 MB."""
    arrays = [*good.weights.values()]
    arrays += [value for slot in good.optimizer.slots.values() for value in slot.values()]
    return sum(a.nbytes for a in arrays) + max(a.nbytes for a in arrays) + (256 << 10)


def _assert_checkpoint(loaded, good, **changes) -> None:
    expected = {
        "backend": good.backend,
        "config": good.config,
        "state": good.state,
        "versions": good.versions,
        **changes,
    }
    for name, value in expected.items():
        assert getattr(loaded, name) == value, name
    assert same_json(loaded.spec.to_dict(), good.spec.to_dict())
    assert_bitwise(loaded.weights, good.weights)
    assert (loaded.optimizer.optimizer, loaded.optimizer.step) == ("adam", good.optimizer.step)
    assert loaded.optimizer.slots.keys() == good.optimizer.slots.keys()
    for slot, values in good.optimizer.slots.items():
        assert_bitwise(loaded.optimizer.slots[slot], values)


CHECKPOINT_FIELDS = ["format", "format_version", "backend", "spec", "config", "state", "optimizer"]

checkpoint_mutations = st.one_of(
    *DAMAGE,
    st.tuples(st.just("header"), json_values),
    # A branch per field, so that the 60 examples spread over all of them.
    *(st.tuples(st.just("field"), st.just(name), json_values) for name in CHECKPOINT_FIELDS),
    st.tuples(st.just("field"), st.just("backend"), st.text(max_size=12)),  # any name loads
    st.tuples(st.just("seconds"), st.floats()),  # finite ones load
)


def _checkpoint_expected_for_header(header, good) -> Expected:
    """The good arrays under `header`: the outcome the header's values and their agreement
    with each other and with the arrays require."""
    if not isinstance(header, dict) or header.get("format") != "nin-checkpoint":
        return refuse("is not a NiN checkpoint")
    if header.get("format_version") != 1:  # 1.0 and true equal 1, and are read as version 1
        return refuse("checkpoint format version")
    try:
        spec = spec_from_dict(header["spec"])
        config = RunConfig.from_dict(header["config"]).check()
        state = TrainingState.from_dict(header["state"])
        optimizer, backend = header["optimizer"], header["backend"]
        versions = header.get("versions")
        if versions is not None and not isinstance(versions, dict):
            return refuse("versions must be an object")
        name, step = optimizer["name"], optimizer["step"]
        if not isinstance(backend, str) or name not in ("sgd", "momentum", "adam"):
            return refuse("has a damaged header")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            return refuse("has a damaged header")
    except Exception:  # noqa: BLE001 - whatever the loader's decoders reject
        return refuse("has a damaged header")
    batches = math.ceil(config.train_images / config.batch_size)  # the last one may be partial
    if (
        state.batch >= batches
        or state.epoch > config.epochs
        or (state.epoch == config.epochs and state.batch > 0)
        or state.step != state.epoch * batches + state.batch
    ):
        return refuse("its position (epoch")
    if not same_json(spec.to_dict(), good.spec.to_dict()) or (name, step) != (
        good.optimizer.optimizer,
        good.optimizer.step,
    ):
        return refuse()  # other arrays wanted, or a spec or step the others contradict
    if config.spec().to_dict() != spec.to_dict():
        return refuse("its config and its spec disagree")
    if state.step != step or config.recipe.optimizer != name:
        return refuse("its position and its optimizer state disagree")
    changes = {"backend": backend, "config": config, "state": state, "versions": versions or {}}
    return Expected(changes=changes)


def every_field_once(test):
    """Each field nulled once for certain: 60 examples drawn over 13 branches may miss one."""
    for name in CHECKPOINT_FIELDS:
        test = example(mutation=("field", name, None))(test)
    return test


def _checkpoint_case(good: bytes, mutation, good_loaded) -> tuple[bytes, Expected]:
    """The fuzzed file and what the loader must do with it."""
    kind = mutation[0]
    if kind in ("truncate", "flip", "burst"):
        damaged = _damaged(good, mutation)
        return damaged, _damage_expected_for(good, damaged, mutation, "is not a NiN checkpoint")
    header = _header_of(good)
    if kind == "header":
        header = mutation[1]
    elif kind == "field":
        header[mutation[1]] = mutation[2]
    else:
        header["state"]["epoch_seconds"] = mutation[1]
    header = json.loads(json.dumps(header))  # as the loader will read it back
    return _with_header(good, header), _checkpoint_expected_for_header(header, good_loaded)


# Slowest example measured here, with the other core busy: 0.74 s (writing and reading 24 MB);
# the deadline is 20x. No shrinking: at that pace it takes minutes, and the loader's message
# already says what a failing example did.
@fuzz(examples=60, deadline_ms=15000, shrink=False)
@given(mutation=checkpoint_mutations)
@every_field_once
def test_checkpoint_loader_survives_anything(tmp_path_factory, good_checkpoint_file, mutation):
    good_loaded = good_checkpoint_file.loaded
    blob, expected = _checkpoint_case(good_checkpoint_file.blob, mutation, good_loaded)
    folder = tmp_path_factory.mktemp("checkpoints") / "step-000000001"
    folder.mkdir()
    (folder / "state.npz").write_bytes(blob)
    limit = checkpoint_memory_limit(good_loaded)
    loaded, error = bounded(lambda: load_checkpoint(folder), limit)

    def compare(loaded, **changes):
        _assert_checkpoint(loaded, good_loaded, **changes)

    check_outcome(expected, loaded, error, CheckpointError, compare)


def test_zero_length_checkpoint(tmp_path):
    folder = tmp_path / "step-000000001"
    folder.mkdir()
    (folder / "state.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a NiN checkpoint"):
        load_checkpoint(folder)


def test_checkpoint_folder_without_its_state_file(tmp_path):
    folder = tmp_path / "step-000000001"
    folder.mkdir()
    _refused_with(folder, "is not a checkpoint (state.npz is missing)")


# -- the checkpoint loader's checks, one case each -----------------------------------------------
#
# Each case is the good checkpoint with one thing wrong; the loader must refuse it with one line
# that names that thing.


@pytest.fixture(scope="module")
def good_members(good_checkpoint) -> dict[str, bytes]:
    """The good checkpoint's members: name -> .npy bytes."""
    with zipfile.ZipFile(good_checkpoint / "state.npz") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _array(members: dict[str, bytes], key: str) -> np.ndarray:
    return np.load(io.BytesIO(members[f"{key}.npy"]))


def _set(members: dict[str, bytes], key: str, value) -> None:
    members[f"{key}.npy"] = value if isinstance(value, bytes) else npy_bytes(value)


def _poisoned(members: dict[str, bytes], key: str, value: float) -> None:
    array = _array(members, key)
    array.flat[array.size // 2] = value
    _set(members, key, array)


def _header_text(members: dict[str, bytes], text: str) -> None:
    members["__header__.npy"] = npy_bytes(np.array(text))


def _epoch_metrics(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "train_loss": 2.0,
        "train_accuracy": 0.25,
        "test_accuracy": 0.25,
        "examples_per_second": 100.0,
        "seconds": 1.0,
        "classes_predicted": 3,
    }


def _moved_to(header: dict, epoch: int, batch: int, step: int, history: int | None = None) -> None:
    """The position (and Adam's step with it) moved; `history` entries, one per epoch by
    default, and running sums that fit an epoch's end where the batch is 0."""
    state = header["state"]
    state.update(epoch=epoch, batch=batch, step=step)
    state["history"] = [_epoch_metrics(n + 1) for n in range(epoch if history is None else history)]
    if batch == 0:
        state["epoch_sums"] = {"loss": 0.0, "correct": 0, "seen": 0, "steps": 0}
        state["epoch_seconds"] = 0.0
    header["optimizer"]["step"] = step


# (what is wrong, change(header, members), what the one-line error must say). The good
# checkpoint is at epoch 0, batch 1 of 2 (step 1), training the quick preset's NiN with Adam.
CHECKPOINT_DEFECTS = [
    (
        "member-that-is-not-an-array",
        lambda h, m: m.update({"notes.txt": b"hi"}),
        "not an .npz of arrays",
    ),
    ("no-header", lambda h, m: m.pop("__header__.npy"), "(it has no header)"),
    ("header-over-1-mib", lambda h, m: h.update(padding="x" * (1 << 20)), "__header__ declares"),
    (
        "header-that-is-not-text",
        lambda h, m: _set(m, "__header__", np.float64(1)),
        "expected text",
    ),
    (
        "header-that-is-not-json",
        lambda h, m: _header_text(m, "{not json"),
        "has a damaged header",
    ),
    (
        "header-that-is-not-an-object",
        lambda h, m: _header_text(m, "[1, 2]"),
        "its header is not an object",
    ),
    ("another-format", lambda h, m: h.update(format="nin-weights"), "is not a NiN checkpoint"),
    (
        "another-format-version",
        lambda h, m: h.update(format_version=2),
        "has checkpoint format version 2; this nin reads version 1",
    ),
    ("field-missing", lambda h, m: h.pop("optimizer"), "has a damaged header: 'optimizer'"),
    (
        "damaged-spec",
        lambda h, m: h["spec"].update(layers={}),
        "has a damaged header: a spec is a dict with a list of layers",
    ),
    (
        "config-field-unknown",
        lambda h, m: h["config"].update(colour="red"),
        "unexpected keyword argument 'colour'",
    ),
    (
        "config-value-out-of-range",
        lambda h, m: h["config"].update(epochs=0),
        "epochs must be a whole number >= 1, got 0",
    ),
    (
        "recipe-value-not-finite",
        lambda h, m: h["config"]["recipe"].update(lr=math.nan),
        "learning rate must be a positive number, got nan",
    ),
    (
        "negative-position",
        lambda h, m: h["state"].update(batch=-1),
        "a position is whole numbers >= 0, got [0, -1, 1]",
    ),
    (
        "running-sum-not-finite",
        lambda h, m: h["state"]["epoch_sums"].update(loss=math.nan),
        "the running sums must be finite numbers",
    ),
    (
        "epoch-seconds-not-finite",
        lambda h, m: h["state"].update(epoch_seconds=math.inf),
        "the running sums must be finite numbers",
    ),
    (
        "damaged-history-entry",
        lambda h, m: h["state"].update(history=[{"epoch": 1}]),
        "has a damaged header: EpochMetrics.__init__() missing",
    ),
    (
        "unknown-optimizer",
        lambda h, m: h["optimizer"].update(name="adagrad"),
        "bad optimizer or backend entry",
    ),
    (
        "negative-optimizer-step",
        lambda h, m: h["optimizer"].update(step=-1),
        "bad optimizer or backend entry",
    ),
    (
        "backend-that-is-not-text",
        lambda h, m: h.update(backend=3),
        "bad optimizer or backend entry",
    ),
    (
        "array-missing",
        lambda h, m: m.pop("optimizer/v/nin_block_4.2.bias.npy"),
        "is incomplete: 1 array(s) missing, e.g. optimizer/v/nin_block_4.2.bias",
    ),
    (
        "array-of-another-dtype",
        lambda h, m: _set(m, "weights/nin_block_1.0.bias", np.zeros(96, np.float64)),
        "weights/nin_block_1.0.bias is float64 (96,), expected float32 (96,)",
    ),
    (
        "array-of-another-shape",
        lambda h, m: _set(m, "weights/nin_block_1.0.bias", np.zeros(95, np.float32)),
        "weights/nin_block_1.0.bias is float32 (95,), expected float32 (96,)",
    ),
    (
        "array-of-objects",
        lambda h, m: _set(m, "weights/nin_block_1.0.bias", _npy_claiming((96,), "|O")),
        "object arrays are not read",
    ),
    (
        "array-declaring-more-bytes-than-its-shape-holds",
        lambda h, m: _set(
            m, "weights/nin_block_1.0.bias", npy_bytes(np.zeros(96, np.float32)) + bytes(5000)
        ),
        "weights/nin_block_1.0.bias declares 5,512 bytes, more than it can hold",
    ),
    (
        "array-cut-short",
        lambda h, m: _set(m, "weights/nin_block_1.0.bias", _npy_claiming((96,), "<f4", bytes(192))),
        "is truncated (weights/nin_block_1.0.bias holds 192 of 384 bytes)",
    ),
    (
        "nan-in-a-weight",
        lambda h, m: _poisoned(m, "weights/nin_block_2.0.weight", math.nan),
        "weights/nin_block_2.0.weight holds NaN or infinite values",
    ),
    (
        "inf-in-adams-first-moment",
        lambda h, m: _poisoned(m, "optimizer/m/nin_block_3.1.bias", math.inf),
        "optimizer/m/nin_block_3.1.bias holds NaN or infinite values",
    ),
    (
        "nan-in-adams-second-moment",
        lambda h, m: _poisoned(m, "optimizer/v/nin_block_4.2.weight", math.nan),
        "optimizer/v/nin_block_4.2.weight holds NaN or infinite values",
    ),
    (
        "config-whose-model-is-not-the-spec",
        lambda h, m: h["config"]["spec_options"].update(final_relu=True),
        "its config and its spec disagree",
    ),
    (
        "adams-step-not-the-positions",
        lambda h, m: h["optimizer"].update(step=2),
        "its position and its optimizer state disagree",
    ),
    (
        "config-whose-optimizer-is-not-the-states",
        lambda h, m: h["config"]["recipe"].update(optimizer="momentum"),
        "its position and its optimizer state disagree",
    ),
    # The position against the config (2 batches an epoch, 1 epoch), the history against the
    # position, every metric typed and finite: docs/reliability.md promises "every value
    # checked finite" and "the header's config, spec and position checked against each other".
    (
        "step-not-epoch-times-2-plus-batch",
        lambda h, m: _moved_to(h, 0, 1, 3),
        "its position (epoch 0, batch 1, step 3) does not add up: 2 batch(es) per epoch make "
        "step 1",
    ),
    (
        "batch-beyond-the-epochs-2",
        lambda h, m: _moved_to(h, 0, 5, 5),
        "its position (epoch 0, batch 5, step 5) is beyond an epoch of its config's 2 batch(es)",
    ),
    (
        "epoch-beyond-the-runs-1",
        lambda h, m: _moved_to(h, 3, 0, 6),
        "its position (epoch 3, batch 0, step 6) is past its config's 1 epoch(s)",
    ),
    (
        "history-longer-than-the-epochs-done",
        lambda h, m: _moved_to(h, 0, 1, 1, history=1),
        "the history holds 1 epoch(s), but the position says 0 are complete",
    ),
    (
        "nan-in-the-history",
        lambda h, m: (_moved_to(h, 1, 0, 2), h["state"]["history"][0].update(train_loss=math.nan)),
        "history entry 1: train_loss must be a finite number, got nan",
    ),
    (
        "text-in-the-history",
        lambda h, m: (_moved_to(h, 1, 0, 2), h["state"]["history"][0].update(train_loss="x")),
        "history entry 1: train_loss must be a finite number, got 'x'",
    ),
    (
        "nan-in-a-logged-point",
        lambda h, m: h["state"]["points"][0].update(train_loss=math.nan),
        "logged point 1: train_loss must be a finite number, got nan",
    ),
    # Values that once escaped as another exception than the loader's one line, or as a line
    # of any length.
    (
        "format-version-1000-characters-long",
        lambda h, m: h.update(format_version="9" * 1000),
        "has checkpoint format version '9999",
    ),
    (
        "versions-not-an-object",
        lambda h, m: h.update(versions=[1, 2]),
        "has a damaged header: versions must be an object, got [1, 2]",
    ),
    (
        "running-sum-too-large-for-a-float",
        lambda h, m: h["state"].update(epoch_seconds=10**400),
        "has a damaged header: the running sums must be finite numbers",
    ),
    (
        "learning-rate-too-large-for-a-float",
        lambda h, m: h["config"]["recipe"].update(lr=10**400),
        "has a damaged header: learning rate must be a positive number, got 1000",
    ),
    (
        "header-nested-too-deep",
        lambda h, m: _header_text(m, "[" * 100_000 + "]" * 100_000),
        "has a damaged header: it is nested too deeply",
    ),
    (
        "flatten-before-a-convolution",
        lambda h, m: h.update(spec=_flatten_first(h["spec"])),
        "has a damaged header: a spec cannot put ConvBlock after Flatten",
    ),
]


def _checkpoint_with(folder: Path, good_members: dict[str, bytes], change) -> Path:
    """The good checkpoint after `change(header, members)`, written to `folder`."""
    members = dict(good_members)
    header = _header_of_members(good_members)
    change(header, members)
    if members.get("__header__.npy") is good_members["__header__.npy"]:  # left as it was
        members["__header__.npy"] = npy_bytes(np.array(json.dumps(header)))
    folder.mkdir(parents=True)
    write_members(folder / "state.npz", members)
    return folder


def _header_of_members(members: dict[str, bytes]) -> dict:
    return json.loads(str(np.load(io.BytesIO(members["__header__.npy"]))))


def _refused_with(folder: Path, fragment: str) -> None:
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(folder)
    one_line(refused.value, CheckpointError, fragment)


@pytest.mark.parametrize(
    "change, fragment", [pytest.param(*case[1:], id=case[0]) for case in CHECKPOINT_DEFECTS]
)
def test_checkpoint_loader_names_what_is_wrong(tmp_path, good_members, change, fragment):
    _refused_with(_checkpoint_with(tmp_path / "step-000000001", good_members, change), fragment)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda h, m: _moved_to(h, 0, 1, 1), id="mid-epoch"),
        pytest.param(lambda h, m: _moved_to(h, 1, 0, 2), id="epoch-end"),
        pytest.param(lambda h, m: None, id="untouched"),
    ],
)
def test_consistent_positions_load(tmp_path, good_members, good_loaded, change):
    """The positions the cases above start from are consistent: what those cases change is
    the only thing wrong with them."""
    folder = _checkpoint_with(tmp_path / "step-000000001", good_members, change)
    loaded = load_checkpoint(folder)
    assert_bitwise(loaded.weights, good_loaded.weights)
    assert loaded.state.step == loaded.optimizer.step
