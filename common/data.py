"""Fashion-MNIST from the four upstream IDX files, validated, resized and batched identically
for every backend (numpy and the standard library only)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import numbers
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "NIN_DATA_DIR"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SIZE = 28
SPLIT_SIZES = {"train": 60000, "test": 10000}
_PREFIX = {"train": "train", "test": "t10k"}
# Debian recompressed the .gz files, so only the decompressed bytes match upstream.
_SHA256 = {
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
}
_HINT = ("reinstall with: apt-get install --reinstall dataset-fashion-mnist, or set "
         f"{DATA_DIR_ENV} / --data-dir to a folder holding the four IDX .gz files")


class DatasetError(ValueError):
    """The Fashion-MNIST files are missing or not what upstream published (one-line message)."""


def _error(path: Path, problem: str) -> DatasetError:
    return DatasetError(" ".join(f"{path}: {problem}; {_HINT}".splitlines()))


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The argument if given, else $NIN_DATA_DIR if set and non-empty, else DEFAULT_DATA_DIR."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; identity is what callers need
class FashionMNIST:
    """Read-only uint8 arrays exactly as stored in the IDX files."""
    train_images: np.ndarray  # (60000, 28, 28)
    train_labels: np.ndarray  # (60000,)
    test_images: np.ndarray   # (10000, 28, 28)
    test_labels: np.ndarray   # (10000,)


def _read_idx(path: Path, *, images: bool, count: int, verify: bool) -> np.ndarray:
    if not path.is_file():
        raise _error(path, "file is missing")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip, unreadable file
        raise _error(path, f"cannot be decompressed ({type(exc).__name__}: {exc})") from None
    kind, magic, shape = ("images", 2051, (IMAGE_SIZE, IMAGE_SIZE)) if images else ("labels", 2049, ())
    header = 4 * (2 + len(shape))
    if len(raw) < header:
        raise _error(path, f"is {len(raw)} bytes decompressed, too short for an IDX header")
    found, *dims = struct.unpack(f">{2 + len(shape)}I", raw[:header])
    if found != magic:
        raise _error(path, f"has IDX magic number {found}, expected {magic} ({kind})")
    if tuple(dims[1:]) != shape:
        raise _error(path, f"holds {'x'.join(map(str, dims[1:]))} images, expected 28x28")
    if len(raw) - header != math.prod(dims):
        raise _error(path, f"header promises {math.prod(dims)} data bytes "
                           f"but the file holds {len(raw) - header}")
    if dims[0] != count:
        raise _error(path, f"holds {dims[0]} {kind}, expected {count}")
    data = np.frombuffer(raw, np.uint8, offset=header).reshape(dims)  # length checked above
    if not images and data.size and data.max() >= len(CLASS_NAMES):
        raise _error(path, f"has label {data.max()}, expected 0..{len(CLASS_NAMES) - 1}")
    expected = _SHA256.get(path.name.removesuffix(".gz"))
    if verify and expected is not None and hashlib.sha256(raw).hexdigest() != expected:
        raise _error(path, "differs from upstream Fashion-MNIST (SHA-256 of the decompressed "
                           "bytes does not match)")
    return data


@functools.lru_cache(maxsize=4)
def _load_cached(directory: str, verify: bool) -> FashionMNIST:
    root = Path(directory)
    if not root.is_dir():
        problem = "is not a directory" if root.exists() else "does not exist"
        raise _error(root, f"Fashion-MNIST data directory {problem}")
    arrays = {}
    # Small files and the test split first, so a broken file fails before 47 MB are decoded.
    for split in ("test", "train"):
        for kind in ("labels", "images"):
            ndim = 3 if kind == "images" else 1
            name = f"{_PREFIX[split]}-{kind}-idx{ndim}-ubyte.gz"
            arrays[f"{split}_{kind}"] = _read_idx(root / name, images=kind == "images",
                                                   count=SPLIT_SIZES[split], verify=verify)
    return FashionMNIST(**arrays)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *,
                       verify_checksums: bool = True) -> FashionMNIST:
    """Read and validate the four files; cached per directory, so decoded once per process."""
    return _load_cached(str(resolve_data_dir(data_dir).resolve()), bool(verify_checksums))


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 matrix of torch's bilinear, align_corners=False, no antialias."""
    _check_positive("in_size", in_size)
    _check_positive("out_size", out_size)
    # Rounded as torch's CPU kernel does (float32 scale, fused multiply-add), so the weights
    # match it bit for bit instead of differing by ~1e-6 for sizes like 67 or 96.
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    src = np.maximum(((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32), 0)
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = src - low.astype(np.float32)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)  # at the right edge low == high and the weights add to 1
    return matrix


def to_model_input(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, 1, size, size) in [0, 1], bilinearly resized."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    _check_positive("size", size)
    x = images.astype(np.float32) / np.float32(255)  # what torchvision's ToTensor does
    n, height, width = x.shape
    if height != size:
        x = np.matmul(bilinear_matrix(height, size), x)
    if width != size:
        x = (x.reshape(-1, width) @ bilinear_matrix(width, size).T).reshape(n, size, size)
    return np.ascontiguousarray(x[:, None])


class DataLoader:
    """Fixed-order float32 NCHW batches of one split, identical for every backend."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, size: int,
                 shuffle: bool, seed: int = 0) -> None:
        _check_positive("batch_size", batch_size)
        _check_positive("size", size)
        if np.ndim(images) != 3 or np.ndim(labels) != 1 or len(images) != len(labels):
            raise ValueError(f"expected images (N, H, W) and labels (N,), got "
                             f"{np.shape(images)} and {np.shape(labels)}")
        self.images, self.labels = images, labels
        self.batch_size, self.size, self.shuffle, self.seed = batch_size, size, shuffle, seed

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def order(self, index: int = 0) -> np.ndarray:
        """Example indices of epoch `index`: a permutation seeded by (seed, index), or file order."""
        if not self.shuffle:
            return np.arange(self.num_examples)
        # Permute examples, not batches, and seed per epoch so any process can replay epoch k.
        return np.random.default_rng([self.seed, index]).permutation(self.num_examples)

    def epoch(self, index: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.order(index)
        for start in range(0, self.num_examples, self.batch_size):
            batch = order[start:start + self.batch_size]
            # Resized per batch: all 60000 images at 224 px would be 12 GB.
            yield to_model_input(self.images[batch], self.size), self.labels[batch].astype(np.int64)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.epoch(0)


def _check_limit(name: str, limit: int | None, split: str) -> int:
    total = SPLIT_SIZES[split]
    if limit is None:
        return total
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or not 1 <= limit <= total:
        raise ValueError(f"{name} must be an integer in 1..{total} (the {split} split size), "
                         f"got {limit!r}")
    return int(limit)


def load_data(batch_size: int, size: int, *, seed: int = 0, train_limit: int | None = None,
              test_limit: int | None = None,
              data_dir: str | os.PathLike | None = None) -> tuple[DataLoader, DataLoader]:
    """(shuffled train loader, file-order test loader) over the first `*_limit` examples."""
    _check_positive("batch_size", batch_size)
    _check_positive("size", size)
    n_train = _check_limit("train_limit", train_limit, "train")
    n_test = _check_limit("test_limit", test_limit, "test")
    data = load_fashion_mnist(data_dir)
    train = DataLoader(data.train_images[:n_train], data.train_labels[:n_train],
                       batch_size=batch_size, size=size, shuffle=True, seed=seed)
    test = DataLoader(data.test_images[:n_test], data.test_labels[:n_test],
                      batch_size=batch_size, size=size, shuffle=False, seed=seed)
    return train, test
