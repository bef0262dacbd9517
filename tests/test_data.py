"""Tests of common.data: the Fashion-MNIST reader, its validation, the resize and the loaders."""

from __future__ import annotations

import gzip
import re
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from common import data
from common.data import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    DataLoader,
    DatasetError,
    FashionMNIST,
    bilinear_matrix,
    load_data,
    load_fashion_mnist,
    prefetched,
    resolve_data_dir,
    to_model_input,
)

from .conftest import FRAMEWORK_MODULES, get_backend, run_python

NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="module")
def fmnist(fashion_mnist) -> FashionMNIST:
    return fashion_mnist


@pytest.fixture(scope="module")
def real_dir(fmnist) -> Path:
    return resolve_data_dir()


def _raw(real_dir: Path, name: str) -> bytearray:
    with gzip.open(real_dir / name, "rb") as f:
        return bytearray(f.read())


def _fake_dir(tmp_path: Path, real_dir: Path, **replace: bytes | None) -> Path:
    """tmp_path holding links to the real files, except `replace` (name with '_' for '-' and
    '.' -> decompressed bytes to gzip, or None to leave the file out)."""
    for name in NAMES:
        key = name.replace("-", "_").replace(".", "_")
        if key not in replace:
            (tmp_path / name).symlink_to(real_dir / name)
        elif replace[key] is not None:
            with gzip.open(tmp_path / name, "wb", compresslevel=1) as f:
                f.write(replace[key])
    return tmp_path


def _expect_error(directory: Path, fragment: str, verify: bool = True) -> str:
    with pytest.raises(Exception) as info:
        load_fashion_mnist(directory, verify_checksums=verify)
    assert type(info.value) is DatasetError, repr(info.value)
    message = str(info.value)
    assert "\n" not in message and fragment in message and "dataset-fashion-mnist" in message
    return message


# ---- the real files ----


def test_real_files(fmnist):
    for images, labels, n in (
        (fmnist.train_images, fmnist.train_labels, 60000),
        (fmnist.test_images, fmnist.test_labels, 10000),
    ):
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
        assert not images.flags.writeable and not labels.flags.writeable
    assert len(CLASS_NAMES) == 10


def test_the_files_are_upstream_fashion_mnist_byte_for_byte(fmnist, real_dir):
    """The decompressed bytes hash to upstream's SHA-256 (computed here, not by the reader),
    and a fresh read with verification on accepts them."""
    import hashlib

    for name in NAMES:
        digest = hashlib.sha256(bytes(_raw(real_dir, name))).hexdigest()
        assert digest == data._SHA256[name.removesuffix(".gz")], name
    data._load_cached.cache_clear()
    fresh = load_fashion_mnist(real_dir, verify_checksums=True)
    assert fresh is not fmnist and np.array_equal(fresh.test_images, fmnist.test_images)


def test_load_is_cached_per_directory(fmnist, real_dir):
    assert load_fashion_mnist(str(real_dir)) is load_fashion_mnist(real_dir)


def test_standardization_constants_are_the_training_sets(fmnist):
    pixels = fmnist.train_images.astype(np.float64) / 255
    assert data.TRAIN_MEAN == pytest.approx(pixels.mean(), abs=1e-7)
    assert data.TRAIN_STD == pytest.approx(pixels.std(), abs=1e-7)
    standardized = to_model_input(fmnist.train_images[:2000], 28, standardize=True)
    assert abs(standardized.mean()) < 0.05 and abs(standardized.std() - 1) < 0.05


def test_augmentation_is_a_seeded_shift_and_flip(fmnist):
    images = fmnist.train_images[:64]
    rows, columns, flips = data.augmentation(seed=3, epoch=1, count=64)
    again = data.augmentation(seed=3, epoch=1, count=64)
    assert all(np.array_equal(a, b) for a, b in zip((rows, columns, flips), again))
    assert not np.array_equal(rows, data.augmentation(seed=3, epoch=2, count=64)[0])
    assert set(rows) <= set(range(-2, 3)) and 0 < flips.sum() < 64
    # every shift from -2 to 2 is drawn, rows and columns independently
    many = data.augmentation(seed=0, epoch=0, count=1000)
    assert set(many[0]) == set(many[1]) == set(range(-2, 3))
    assert not np.array_equal(many[0], many[1])
    # The draws themselves are fixed, so a run resumed by a later version replays its crops.
    rows8, columns8, flips8 = data.augmentation(seed=0, epoch=0, count=8)
    assert rows8.tolist() == [-2, 2, 0, 1, 1, -1, 0, 2]
    assert columns8.tolist() == [1, 0, 0, 0, 0, 1, 1, 2]
    assert flips8.tolist() == [False, True, False, True, True, True, False, True]
    shifted = data.augment(images, rows, columns, flips)
    for index in range(64):
        padded = np.pad(images[index], 2)
        y, x = 2 - rows[index], 2 - columns[index]
        expected = padded[y : y + 28, x : x + 28]
        if flips[index]:
            expected = expected[:, ::-1]
        np.testing.assert_array_equal(shifted[index], expected)
    # The loader applies it to training batches only, identically for every backend.
    train, test = load_data(64, 28, train_limit=64, test_limit=64, augment=True)
    assert train.augment and not test.augment


# ---- every problem is one clear DatasetError ----


def test_missing_directory(tmp_path):
    _expect_error(tmp_path / "nowhere", "nowhere")
    # A line break in the path becomes a space: the message stays one readable line.
    _expect_error(tmp_path / "two\nlines", "two lines: Fashion-MNIST data directory does not exist")


def test_missing_file(tmp_path, real_dir):
    _expect_error(
        _fake_dir(tmp_path, real_dir, t10k_labels_idx1_ubyte_gz=None),
        "t10k-labels-idx1-ubyte.gz: file is missing",
    )


def test_truncated_gzip(tmp_path, real_dir):
    directory = _fake_dir(tmp_path, real_dir, t10k_images_idx3_ubyte_gz=None)
    blob = (real_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    _expect_error(directory, "t10k-images-idx3-ubyte.gz: cannot be decompressed (EOFError: ")


def test_not_gzip(tmp_path, real_dir):
    directory = _fake_dir(tmp_path, real_dir, t10k_labels_idx1_ubyte_gz=None)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file at all")
    _expect_error(directory, "t10k-labels-idx1-ubyte.gz: cannot be decompressed (BadGzipFile: ")


def test_bad_magic(tmp_path, real_dir):
    raw = _raw(real_dir, "t10k-labels-idx1-ubyte.gz")
    raw[:4] = struct.pack(">I", 2051)
    _expect_error(
        _fake_dir(tmp_path, real_dir, t10k_labels_idx1_ubyte_gz=bytes(raw)),
        "t10k-labels-idx1-ubyte.gz: has IDX magic number 2051, expected 2049 (labels)",
    )


def test_wrong_count(tmp_path, real_dir):
    raw = _raw(real_dir, "train-labels-idx1-ubyte.gz")
    fake = struct.pack(">II", 2049, 59999) + raw[8:-1]  # consistent header, one label short
    message = _expect_error(
        _fake_dir(tmp_path, real_dir, train_labels_idx1_ubyte_gz=fake), "train-labels-idx1-ubyte.gz"
    )
    assert "train-labels-idx1-ubyte.gz: holds 59999 labels, expected 60000" in message


def test_file_shorter_than_a_header(tmp_path, real_dir):
    _expect_error(
        _fake_dir(tmp_path, real_dir, t10k_labels_idx1_ubyte_gz=b"\0\0\x08\x01\0"),
        "t10k-labels-idx1-ubyte.gz: is 5 bytes decompressed, too short for an IDX header",
    )


def test_payload_shorter_than_header(tmp_path, real_dir):
    raw = _raw(real_dir, "t10k-labels-idx1-ubyte.gz")
    _expect_error(
        _fake_dir(tmp_path, real_dir, t10k_labels_idx1_ubyte_gz=bytes(raw[:-1])),
        "t10k-labels-idx1-ubyte.gz",
    )


def test_payload_longer_than_header(tmp_path, real_dir):
    raw = _raw(real_dir, "t10k-labels-idx1-ubyte.gz")
    _expect_error(
        _fake_dir(tmp_path, real_dir, t10k_labels_idx1_ubyte_gz=bytes(raw + b"\0")),
        "t10k-labels-idx1-ubyte.gz: holds more than the 10000 data bytes its header promises",
    )


def test_wrong_image_dims(tmp_path, real_dir):
    fake = struct.pack(">IIII", 2051, 10000, 14, 56) + bytes(10000 * 14 * 56)
    _expect_error(
        _fake_dir(tmp_path, real_dir, t10k_images_idx3_ubyte_gz=fake),
        "t10k-images-idx3-ubyte.gz: holds 14x56 images, expected 28x28",
    )


def test_label_out_of_range(tmp_path, real_dir):
    raw = _raw(real_dir, "t10k-labels-idx1-ubyte.gz")
    raw[100] = 10
    _expect_error(
        _fake_dir(tmp_path, real_dir, t10k_labels_idx1_ubyte_gz=bytes(raw)),
        "t10k-labels-idx1-ubyte.gz: has label 10, expected 0..9",
        verify=False,
    )


def test_checksum_mismatch(tmp_path, real_dir):
    raw = _raw(real_dir, "t10k-images-idx3-ubyte.gz")
    raw[16 + 28 * 14 + 14] ^= 0xFF  # one pixel of the first image
    directory = _fake_dir(tmp_path, real_dir, t10k_images_idx3_ubyte_gz=bytes(raw))
    _expect_error(
        directory,
        "t10k-images-idx3-ubyte.gz: differs from upstream Fashion-MNIST (SHA-256 of the "
        "decompressed bytes does not match); ",
    )
    # Verification is the default.
    with pytest.raises(DatasetError, match="differs from upstream"):
        load_fashion_mnist(directory)
    # Structurally valid, so only the checksum catches it.
    assert load_fashion_mnist(directory, verify_checksums=False).test_images.shape == (
        10000,
        28,
        28,
    )


# ---- where the data comes from ----


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir() == DEFAULT_DATA_DIR == Path("/usr/share/datasets/fashion-mnist")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv(DATA_DIR_ENV, "")
    assert resolve_data_dir() == DEFAULT_DATA_DIR


# ---- resizing ----


def test_bilinear_matrix_basics():
    assert np.array_equal(bilinear_matrix(28, 28), np.eye(28, dtype=np.float32))
    for out in (14, 67, 96, 224):
        matrix = bilinear_matrix(28, out)
        assert matrix.shape == (out, 28) and matrix.dtype == np.float32
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
        assert (matrix >= 0).all()
    with pytest.raises(ValueError, match=r"^out_size must be a positive integer, got 0$"):
        bilinear_matrix(28, 0)
    with pytest.raises(ValueError, match=r"^in_size must be a positive integer, got 0$"):
        bilinear_matrix(0, 28)


def test_bilinear_matrix_weights_follow_the_half_pixel_rule():
    """Small cases worked by hand from torch's rule (source pixel (i + 0.5) * in / out - 0.5,
    clamped to the image), and entries of 28 -> 67 that only float32 rounding gets right."""
    np.testing.assert_array_equal(bilinear_matrix(2, 3), [[1, 0], [0.5, 0.5], [0, 1]])
    np.testing.assert_array_equal(
        bilinear_matrix(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]
    )
    np.testing.assert_array_equal(bilinear_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_array_equal(bilinear_matrix(3, 1), [[0, 1, 0]])
    np.testing.assert_array_equal(bilinear_matrix(1, 3), [[1], [1], [1]])
    # torch 2's weights, bit for bit; float64 source positions are off by one ulp here
    expected = [float.fromhex("0x1.3d226p-1"), float.fromhex("0x1.85bb4p-2")]
    assert bilinear_matrix(28, 67)[4, 1:3].tolist() == expected


def test_to_model_input_identity_and_range(fmnist):
    x = to_model_input(fmnist.test_images[:5], 28)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x[:, 0], fmnist.test_images[:5].astype(np.float32) / np.float32(255))
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(fmnist.test_images[0], 28)
    with pytest.raises(ValueError, match=r"^size must be a positive integer, got 0$"):
        to_model_input(fmnist.test_images[:5], 0)
    one_pixel = to_model_input(fmnist.test_images[:5], 1)
    assert one_pixel.shape == (5, 1, 1, 1)


@pytest.mark.parametrize("size", [224, 67, 96, 14])
def test_resize_matches_torch(fmnist, size):
    get_backend("torch")
    import torch

    images = fmnist.test_images[:8]
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(images.astype(np.float32) / 255)[:, None],
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=False,
    ).numpy()
    actual = to_model_input(images, size)
    assert actual.shape == (8, 1, size, size)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    assert actual.min() >= 0 and actual.max() <= 1


# ---- batching ----


def _indexed_loader(n: int = 1000, batch_size: int = 32, **kwargs) -> DataLoader:
    """Labels are the example indices, so each batch says which examples it holds."""
    images = np.random.default_rng(1).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return DataLoader(images, np.arange(n), batch_size=batch_size, size=28, **kwargs)


def _order(loader: DataLoader, index: int = 0) -> np.ndarray:
    return np.concatenate([y for _, y in loader.epoch(index)])


def test_loader_batches_shapes_and_values():
    loader = _indexed_loader(1000, 32, shuffle=True, seed=3)
    assert loader.num_examples == 1000 and len(loader) == 32
    assert (loader.batch_size, loader.size, loader.shuffle, loader.seed) == (32, 28, True, 3)
    batches = list(loader)
    assert len(batches) == 32 and [len(y) for _, y in batches][-1] == 1000 - 31 * 32
    for x, y in batches:
        assert x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
        assert x.shape == (len(y), 1, 28, 28) and 0 <= x.min() and x.max() <= 1
        assert np.array_equal(x, to_model_input(loader.images[y], 28))


def test_loader_shuffle_is_a_per_epoch_seeded_permutation():
    loader = _indexed_loader(shuffle=True, seed=0)
    first = _order(loader, 0)
    assert sorted(first.tolist()) == list(range(1000))
    assert np.array_equal(first, _order(_indexed_loader(shuffle=True, seed=0), 0))
    assert np.array_equal(first, np.concatenate([y for _, y in loader.epoch()]))  # epoch 0
    assert np.array_equal(first, loader.order()) and np.array_equal(first, loader.order(0))
    assert np.array_equal(first, np.concatenate([y for _, y in loader]))  # and so is __iter__
    assert not np.array_equal(first, _order(loader, 1))
    assert not np.array_equal(first, _order(_indexed_loader(shuffle=True, seed=1), 0))
    assert np.array_equal(first, np.random.default_rng([0, 0]).permutation(1000))
    unseeded = DataLoader(loader.images, loader.labels, batch_size=32, size=28, shuffle=True)
    assert unseeded.seed == 0 and np.array_equal(_order(unseeded), first)


def test_loader_shuffles_examples_not_batches():
    order = _order(_indexed_loader(shuffle=True, seed=0), 2)
    # With batches permuted as blocks almost every neighbour would be index + 1.
    assert np.mean(np.diff(order) == 1) < 0.05
    blocks = {tuple(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)}
    assert not any(
        tuple(sorted(y.tolist())) in blocks
        for _, y in _indexed_loader(shuffle=True, seed=0).epoch(2)
    )


def test_loader_unshuffled_and_exact_batches():
    loader = _indexed_loader(96, 32, shuffle=False)
    assert len(loader) == 3
    assert np.array_equal(_order(loader, 5), np.arange(96))
    with pytest.raises(ValueError, match=r"^batch_size must be a positive integer, got 0$"):
        _indexed_loader(10, 0, shuffle=False)
    single = _indexed_loader(3, 1, shuffle=False)
    assert len(single) == 3 and [y.tolist() for _, y in single] == [[0], [1], [2]]


def test_loader_rejects_bad_arguments():
    images, labels = np.zeros((10, 28, 28), np.uint8), np.arange(10)
    with pytest.raises(ValueError, match=r"^size must be a positive integer, got 0$"):
        DataLoader(images, labels, batch_size=4, size=0, shuffle=False)
    for bad_images, bad_labels in (
        (images, labels[:9]),  # one label short
        (images.reshape(10, 784), labels),  # flattened images
        (images, labels[:, None]),  # labels as a column
    ):
        message = (
            f"expected images (N, H, W) and labels (N,), got {bad_images.shape} and "
            f"{bad_labels.shape}"
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            DataLoader(bad_images, bad_labels, batch_size=4, size=28, shuffle=False)


def test_loader_augments_and_standardizes_each_batch():
    """Training batches are the crops and flips `augmentation` draws for (seed, epoch), by
    position in the epoch's order, then resized and standardized."""
    loader = _indexed_loader(100, 32, shuffle=True, seed=3, augment=True, standardize=True)
    order = loader.order(1)
    rows, columns, flips = data.augmentation(3, 1, 100)
    batches = list(loader.epoch(1))
    assert len(batches) == 4
    for start, (x, y) in zip(range(0, 100, 32), batches):
        positions = slice(start, start + 32)
        assert np.array_equal(y, order[positions])
        crops = data.augment(
            loader.images[order[positions]], rows[positions], columns[positions], flips[positions]
        )
        assert np.array_equal(x, to_model_input(crops, 28, standardize=True))


def test_prefetching_keeps_the_batches_and_their_order(fmnist):
    loader, _ = load_data(64, 67, seed=3, train_limit=640, augment=True, standardize=True)
    direct, ahead = list(loader.epoch(2, start_batch=1)), list(prefetched(loader.epoch(2, 1)))
    assert len(direct) == len(ahead) == 9
    for (images, labels), (images_ahead, labels_ahead) in zip(direct, ahead):
        assert np.array_equal(images, images_ahead) and np.array_equal(labels, labels_ahead)


def test_prefetching_raises_the_producers_error_and_stops_when_closed():
    def broken():
        yield 1
        raise DatasetError("the file went away")

    with pytest.raises(DatasetError, match="went away"):
        list(prefetched(broken()))
    batches = prefetched(iter(range(1000)), depth=2)
    assert next(batches) == 0
    batches.close()  # what a stopped run does: the producer thread must end, not block
    assert not any(thread.name == "nin-prefetch" for thread in threading.enumerate())


def test_prefetching_stays_depth_items_ahead_in_a_daemon_thread():
    """With the default depth the producer holds one item and two wait in the queue, so at
    most three batches are in memory ahead; closing stops it there without reading on."""
    pulled, read_too_far = [], threading.Event()

    def counted():
        for index in range(1000):
            if index == 4:
                read_too_far.set()
            pulled.append(index)
            yield index

    batches = prefetched(counted())
    assert next(batches) == 0
    deadline = time.monotonic() + 10
    while len(pulled) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not read_too_far.wait(0.3) and pulled == [0, 1, 2, 3]
    (producer,) = (thread for thread in threading.enumerate() if thread.name == "nin-prefetch")
    daemon = producer.daemon
    # Closed while the producer waits on a full queue: it must notice and end.
    closer = threading.Thread(target=batches.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive() and not producer.is_alive()
    assert pulled == [0, 1, 2, 3]
    assert daemon  # so a run that never closes the generator can still exit


def test_load_data(fmnist):
    train, test = load_data(100, 28, seed=7, train_limit=250, test_limit=300)
    assert (train.num_examples, len(train), train.shuffle, train.seed) == (250, 3, True, 7)
    assert (test.num_examples, len(test), test.shuffle, test.seed) == (300, 3, False, 7)
    assert not (train.augment or train.standardize or test.augment or test.standardize)
    xs, ys = zip(*test.epoch(0))
    assert np.array_equal(np.concatenate(ys), fmnist.test_labels[:300])
    assert np.array_equal(np.concatenate(xs), to_model_input(fmnist.test_images[:300], 28))
    train_y = np.concatenate([y for _, y in train.epoch(0)])
    order = np.random.default_rng([7, 0]).permutation(250)
    assert np.array_equal(train_y, fmnist.train_labels[:250][order])
    x, y = next(iter(load_data(16, 224, test_limit=16)[1]))
    assert x.shape == (16, 1, 224, 224) and y.shape == (16,)
    full_train, full_test = load_data(256, 28)
    assert (full_train.num_examples, full_test.num_examples) == (60000, 10000)
    assert (len(full_train), len(full_test)) == (235, 40)
    full_train, full_test = load_data(256, 28, train_limit=60000, test_limit=10000)
    assert (full_train.num_examples, full_test.num_examples) == (60000, 10000)
    one_train, one_test = load_data(1, 1, train_limit=1, test_limit=1)
    assert (one_train.num_examples, one_test.num_examples) == (1, 1)


def test_load_data_defaults_and_options(fmnist, tmp_path):
    train, _ = load_data(16, 28, train_limit=64, test_limit=16)
    assert train.seed == 0 and not train.augment
    train, test = load_data(16, 28, train_limit=64, test_limit=16, standardize=True)
    assert train.standardize and test.standardize  # both splits, unlike `augment`
    x, _ = next(iter(test))
    assert np.array_equal(x, to_model_input(fmnist.test_images[:16], 28, standardize=True))
    x, _ = next(iter(train))
    first = fmnist.train_images[:64][train.order()[:16]]
    assert np.array_equal(x, to_model_input(first, 28, standardize=True))
    with pytest.raises(DatasetError, match="nowhere"):
        load_data(16, 28, data_dir=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "^batch_size must be a positive integer, got 0$"),
        ({"batch_size": True}, "^batch_size must be a positive integer, got True$"),
        ({"size": 0}, "^size must be a positive integer, got 0$"),
        ({"size": 2.5}, "^size must be a positive integer, got 2.5$"),
        ({"train_limit": 0}, r"^train_limit must be an integer in 1\.\.60000 \(the train split"),
        ({"train_limit": 60001}, r"^train_limit must be an integer in 1\.\.60000 "),
        ({"test_limit": 10001}, r"^test_limit must be an integer in 1\.\.10000 \(the test split"),
        ({"test_limit": 2.5}, r"^test_limit must be an integer in 1\.\.10000 .*, got 2\.5$"),
    ],
)
def test_load_data_argument_errors(kwargs, match):
    args = {"batch_size": 8, "size": 28, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        load_data(args.pop("batch_size"), args.pop("size"), **args)
    assert not isinstance(info.value, DatasetError)  # rejected before any file is read


def test_module_imports_no_framework():
    code = f"import sys, common.data; print(sorted({set(FRAMEWORK_MODULES)!r} & set(sys.modules)))"
    assert run_python(code).strip() == "[]"
