"""Bad input never crashes, never hangs, never eats memory: the IDX reader, the weights loader
and the checkpoint loader, fuzzed with hypothesis. Only the project's own one-line errors may
escape, and no input makes a reader allocate more than the real data needs."""

from __future__ import annotations

import gzip
import io
import json
import struct
import tracemalloc
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import data
from common.data import DatasetError
from common.spec import Conv, ConvBlock, Flatten, GlobalAvgPool, Spec
from common.tools.checkpoint import CheckpointError, load_checkpoint
from common.weights import WeightsError, init_weights, load_weights, save_weights

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Far below any allocation a declared size could ask for, far above what the inputs need.
MEMORY_LIMIT = 64 << 20


def bounded(call, limit: int = MEMORY_LIMIT):
    """Run `call`; return the exception it raised (or None) and fail if it allocated more
    than `limit` bytes at its peak (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        call()
        raised = None
    except Exception as error:  # noqa: BLE001 - the type is what the caller checks
        raised = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak:,} bytes"
    return raised


def one_line(error: Exception, kind: type[Exception]) -> None:
    assert type(error) is kind or isinstance(error, kind), repr(error)
    assert "\n" not in str(error) and len(str(error)) < 600, str(error)


# -- the IDX reader ----------------------------------------------------------------------------

COUNT = 3  # what the fuzzed files claim to hold is checked against this


def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload


idx_files = st.one_of(
    st.binary(max_size=64),  # noise
    st.builds(
        _idx,
        st.sampled_from([2049, 2051, 2050, 0, 2**32 - 1]),  # bad headers
        st.lists(st.sampled_from([0, 1, COUNT, 28, 29, 2**31, 2**32 - 1]), min_size=0, max_size=4),
        st.binary(max_size=3 * 28 * 28 + 8),
    ),
    st.builds(
        lambda cut, extra: (_idx(2051, [COUNT, 28, 28], bytes(COUNT * 784)) + extra)[:cut],
        st.integers(0, COUNT * 784 + 40),
        st.binary(max_size=8),
    ),  # truncations
)


@FUZZ
@given(content=idx_files, compress=st.booleans(), images=st.booleans())
def test_idx_reader_survives_anything(tmp_path_factory, content, compress, images):
    path = tmp_path_factory.mktemp("idx") / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(content, compresslevel=1) if compress else content)
    error = bounded(lambda: data._read_idx(path, images=images, count=COUNT, verify=True))
    if error is not None:
        one_line(error, DatasetError)


def test_idx_file_decompressing_to_far_more_than_it_declares(tmp_path):
    """A 'gzip bomb': a valid header, then 256 MiB of zeros. The reader stops at what the
    header promises and never holds more."""
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(_idx(2049, [10_000], bytes(10_000)))
        chunk = bytes(1 << 20)
        for _ in range(256):
            file.write(chunk)
    error = bounded(lambda: data._read_idx(path, images=False, count=10_000, verify=False))
    one_line(error, DatasetError)
    assert "more than the 10000 data bytes" in str(error)


def test_idx_header_declaring_billions_of_images(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx(2051, [2**31, 28, 28], bytes(784))))
    error = bounded(lambda: data._read_idx(path, images=True, count=60_000, verify=False))
    one_line(error, DatasetError)
    assert "2147483648 images, expected 60000" in str(error)


# -- the weights loader --------------------------------------------------------------------------

TINY = Spec(
    "tiny",
    1,
    3,
    (ConvBlock((Conv(4, 3, 1, 1), Conv(3, 1, relu=False))), GlobalAvgPool(), Flatten()),
    8,
)


@pytest.fixture(scope="module")
def good_weights(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("weights") / "good.npz"
    save_weights(path, TINY, init_weights(TINY, 0), framework="test")
    assert load_weights(path).spec == TINY
    return path.read_bytes()


def _rezip(blob: bytes, change) -> bytes:
    """The archive with each member passed through change(name, bytes) -> bytes | None."""
    source, target = zipfile.ZipFile(io.BytesIO(blob)), io.BytesIO()
    with zipfile.ZipFile(target, "w") as archive:
        for name in source.namelist():
            content = change(name, source.read(name))
            if content is not None:
                archive.writestr(name, content)
    return target.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_claiming(shape: tuple[int, ...], dtype: str = "<f4", payload: bytes = b"") -> bytes:
    """An .npy whose header declares `shape` but whose data is only `payload`."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def _mutated_header(blob: bytes, mutate) -> bytes:
    def change(name, content):
        if name != "__header__.npy":
            return content
        header = json.loads(str(np.load(io.BytesIO(content))))
        return _npy(np.array(json.dumps(mutate(header))))

    return _rezip(blob, change)


weights_mutations = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8),
    ),
    st.tuples(st.just("header"), json_values),
    st.tuples(
        st.just("spec"),
        st.sampled_from(["in_channels", "num_classes", "input_size", "layers", "name"]),
        json_values,
    ),
    st.tuples(
        st.just("claim"),
        st.sampled_from([(2**40,), (4, 1, 3, 3), (2**20, 2**20), ()]),
        st.sampled_from(["<f4", "<f8", "|O", "<U3"]),
    ),
)


def _apply(blob: bytes, mutation) -> bytes:
    kind = mutation[0]
    if kind == "truncate":
        return blob[: int(mutation[1] * len(blob))]
    if kind == "flip":
        raw = bytearray(blob)
        for where, value in mutation[1]:
            raw[min(int(where * len(raw)), len(raw) - 1)] ^= value
        return bytes(raw)
    if kind == "header":
        return _mutated_header(blob, lambda header: mutation[1])
    if kind == "spec":
        return _mutated_header(
            blob, lambda header: {**header, "spec": {**header["spec"], mutation[1]: mutation[2]}}
        )
    shape, dtype = mutation[1], mutation[2]  # the first convolution's kernel claims it
    claimed = _rezip(
        blob,
        lambda name, content: (
            _npy_claiming(shape, dtype, content[128:160])
            if name.endswith(".0.weight.npy")
            else content
        ),
    )
    assert claimed != blob
    return claimed


@FUZZ
@given(mutation=weights_mutations)
def test_weights_loader_survives_anything(tmp_path_factory, good_weights, mutation):
    path = tmp_path_factory.mktemp("weights") / "fuzzed.npz"
    path.write_bytes(_apply(good_weights, mutation))
    error = bounded(lambda: load_weights(path))
    if error is not None:
        one_line(error, WeightsError)


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
    path.write_bytes(_apply(good_weights, ("claim", (2**38,), "<f4")))
    error = bounded(lambda: load_weights(path))
    one_line(error, WeightsError)


# -- the checkpoint loader -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory, fashion_mnist) -> Path:
    from common.tools.config import PRESETS
    from common.tools.runs import train_run
    from common.training import TrainingStopped

    from .conftest import get_backend

    get_backend("torch")
    config = replace(PRESETS["quick"], epochs=1, train_limit=128, test_limit=64, batch_size=64)
    out = tmp_path_factory.mktemp("checkpoint") / "run"
    calls = iter(range(10))
    with pytest.raises(TrainingStopped):
        train_run(
            "torch",
            config,
            out,
            log=lambda *a: None,
            progress=False,
            stop_requested=lambda: "SIGINT" if next(calls) == 0 else None,
        )
    folder = next((out / "checkpoints").iterdir())
    assert load_checkpoint(folder).state.step == 1
    return folder


checkpoint_mutations = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=4),
    ),
    st.tuples(st.just("header"), json_values),
    st.tuples(
        st.just("field"),
        st.sampled_from(
            ["format", "format_version", "backend", "spec", "config", "state", "optimizer"]
        ),
        json_values,
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=checkpoint_mutations)
def test_checkpoint_loader_survives_anything(tmp_path_factory, good_checkpoint, mutation):
    blob = (good_checkpoint / "state.npz").read_bytes()
    if mutation[0] == "field":
        blob = _mutated_header(blob, lambda header: {**header, mutation[1]: mutation[2]})
    else:
        blob = _apply(blob, mutation)
    folder = tmp_path_factory.mktemp("checkpoints") / "step-000000001"
    folder.mkdir()
    (folder / "state.npz").write_bytes(blob)
    # A real checkpoint is 24 MB of arrays (weights and two Adam moments).
    error = bounded(lambda: load_checkpoint(folder), limit=4 * len(blob) + MEMORY_LIMIT)
    if error is not None:
        one_line(error, CheckpointError)


def test_zero_length_checkpoint(tmp_path):
    folder = tmp_path / "step-000000001"
    folder.mkdir()
    (folder / "state.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a NiN checkpoint"):
        load_checkpoint(folder)
