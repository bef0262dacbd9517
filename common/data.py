"""Fashion-MNIST from the four upstream IDX files, validated, resized and batched identically
for every backend (numpy and the standard library only).

Core layer.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import numbers
import os
import queue
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "NIN_DATA_DIR"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SIZE = 28
# Mean and standard deviation of the 60,000 training images' pixels in [0, 1]
# (tests/test_data.py recomputes them).
TRAIN_MEAN = 0.2860406
TRAIN_STD = 0.3530242
AUGMENT_PAD = 2  # random crops shift an image by up to this many pixels each way
SPLIT_SIZES = {"train": 60000, "test": 10000}
_PREFIX = {"train": "train", "test": "t10k"}
# Debian recompressed the .gz files, so only the decompressed bytes match upstream.
_SHA256 = {
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
}
_HINT = (
    "reinstall with: apt-get install --reinstall dataset-fashion-mnist, or set "
    f"{DATA_DIR_ENV} / --data-dir to a folder holding the four IDX .gz files"
)


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
    test_images: np.ndarray  # (10000, 28, 28)
    test_labels: np.ndarray  # (10000,)


def _read_idx(path: Path, *, images: bool, count: int, verify: bool) -> np.ndarray:
    """One IDX file, validated as it is read: the header is checked before the payload is
    read, and never more than the expected number of bytes is read, so a file that declares
    (or decompresses to) far more than Fashion-MNIST holds cannot exhaust memory."""
    if not path.is_file():
        raise _error(path, "file is missing")
    kind, magic, shape = (
        ("images", 2051, (IMAGE_SIZE, IMAGE_SIZE)) if images else ("labels", 2049, ())
    )
    header_size = 4 * (2 + len(shape))
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(header_size)
            if len(header) < header_size:
                raise _error(
                    path, f"is {len(header)} bytes decompressed, too short for an IDX header"
                )
            found, *dims = struct.unpack(f">{2 + len(shape)}I", header)
            if found != magic:
                raise _error(path, f"has IDX magic number {found}, expected {magic} ({kind})")
            if tuple(dims[1:]) != shape:
                raise _error(path, f"holds {'x'.join(map(str, dims[1:]))} images, expected 28x28")
            if dims[0] != count:
                raise _error(path, f"holds {dims[0]} {kind}, expected {count}")
            size = math.prod(dims)
            payload = f.read(size)
            if len(payload) != size:
                raise _error(
                    path, f"header promises {size} data bytes but the file holds {len(payload)}"
                )
            if f.read(1):
                raise _error(path, f"holds more than the {size} data bytes its header promises")
    except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip, unreadable file
        raise _error(path, f"cannot be decompressed ({type(exc).__name__}: {exc})") from None
    data = np.frombuffer(payload, np.uint8).reshape(dims)
    if not images and data.size and data.max() >= len(CLASS_NAMES):
        raise _error(path, f"has label {data.max()}, expected 0..{len(CLASS_NAMES) - 1}")
    expected = _SHA256.get(path.name.removesuffix(".gz"))
    digest.update(header)
    digest.update(payload)
    if verify and expected is not None and digest.hexdigest() != expected:
        raise _error(
            path,
            "differs from upstream Fashion-MNIST (SHA-256 of the decompressed "
            "bytes does not match)",
        )
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
            arrays[f"{split}_{kind}"] = _read_idx(
                root / name, images=kind == "images", count=SPLIT_SIZES[split], verify=verify
            )
    return FashionMNIST(**arrays)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, *, verify_checksums: bool = True
) -> FashionMNIST:
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


def to_model_input(images: np.ndarray, size: int, *, standardize: bool = False) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, 1, size, size), bilinearly resized.

    Values are in [0, 1] (torchvision's ToTensor), or with `standardize` shifted and scaled
    by the training set's mean and standard deviation (torchvision's Normalize).
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}"
        )
    _check_positive("size", size)
    x = images.astype(np.float32) / np.float32(255)  # what torchvision's ToTensor does
    n, height, width = x.shape
    if height != size:
        x = np.matmul(bilinear_matrix(height, size), x)
    if width != size:
        x = (x.reshape(-1, width) @ bilinear_matrix(width, size).T).reshape(n, size, size)
    if standardize:
        x = (x - np.float32(TRAIN_MEAN)) / np.float32(TRAIN_STD)
    return np.ascontiguousarray(x[:, None])


def augmentation(seed: int, epoch: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-position (row shift, column shift, flip) of epoch `epoch`: shifts in -PAD..PAD.

    Drawn from (seed, epoch) alone, like the data order, so any process replays any epoch.
    """
    rng = np.random.default_rng([seed, epoch, 0xA6])
    shifts = rng.integers(-AUGMENT_PAD, AUGMENT_PAD + 1, size=(2, count))
    return shifts[0], shifts[1], rng.random(count) < 0.5


def augment(
    images: np.ndarray, rows: np.ndarray, columns: np.ndarray, flips: np.ndarray
) -> np.ndarray:
    """Shift each uint8 (H, W) image by (rows[i], columns[i]) pixels, filling with 0 (a
    random crop of the zero-padded image), then mirror it left-right where flips[i]."""
    n, height, width = images.shape
    pad = AUGMENT_PAD
    padded = np.zeros((n, height + 2 * pad, width + 2 * pad), np.uint8)
    padded[:, pad : pad + height, pad : pad + width] = images
    # Fancy indexing does all crops at once: out[i, y, x] = padded[i, y + pad - dy, x + pad - dx]
    y = np.arange(height)[None, :, None] + (pad - rows)[:, None, None]
    x = np.arange(width)[None, None, :] + (pad - columns)[:, None, None]
    x = np.where(flips[:, None, None], x[:, :, ::-1], x)
    return padded[np.arange(n)[:, None, None], y, x]


class DataLoader:
    """Fixed-order float32 NCHW batches of one split, identical for every backend.

    Everything random about it (order, crops, flips) is drawn from (seed, epoch).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        size: int,
        shuffle: bool,
        seed: int = 0,
        standardize: bool = False,
        augment: bool = False,
    ) -> None:
        _check_positive("batch_size", batch_size)
        _check_positive("size", size)
        if np.ndim(images) != 3 or np.ndim(labels) != 1 or len(images) != len(labels):
            raise ValueError(
                f"expected images (N, H, W) and labels (N,), got "
                f"{np.shape(images)} and {np.shape(labels)}"
            )
        self.images, self.labels = images, labels
        self.batch_size, self.size, self.shuffle, self.seed = batch_size, size, shuffle, seed
        self.standardize, self.augment = standardize, augment

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def order(self, index: int = 0) -> np.ndarray:
        """Example indices of epoch `index`: a permutation seeded by (seed, index),
        or file order."""
        if not self.shuffle:
            return np.arange(self.num_examples)
        # Permute examples, not batches, and seed per epoch so any process can replay epoch k.
        return np.random.default_rng([self.seed, index]).permutation(self.num_examples)

    def epoch(
        self, index: int = 0, start_batch: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of epoch `index`, from batch `start_batch` on (to resume mid-epoch)."""
        order = self.order(index)
        shifts = augmentation(self.seed, index, self.num_examples) if self.augment else None
        for start in range(start_batch * self.batch_size, self.num_examples, self.batch_size):
            positions = slice(start, start + self.batch_size)
            images = self.images[order[positions]]
            if shifts is not None:
                images = augment(images, *(draws[positions] for draws in shifts))
            # Resized per batch (under a millisecond at 67 px): all 60,000 images at 224 px
            # would be 12 GB.
            yield (
                to_model_input(images, self.size, standardize=self.standardize),
                self.labels[order[positions]].astype(np.int64),
            )

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.epoch(0)


T = TypeVar("T")


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items` in the same order, produced up to `depth` ahead by a background thread.

    Augmenting, resizing and standardising a batch is NumPy work that releases the GIL, so
    it overlaps the framework's step instead of running between steps. An error in the
    producer is raised here; closing this generator stops the producer.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as error:  # handed to the consumer, raised in its thread
            put((end, error))

    producer = threading.Thread(target=produce, name="nin-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item, error = ready.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        producer.join()


def _check_limit(name: str, limit: int | None, split: str) -> int:
    total = SPLIT_SIZES[split]
    if limit is None:
        return total
    if (
        isinstance(limit, bool)
        or not isinstance(limit, numbers.Integral)
        or not 1 <= limit <= total
    ):
        raise ValueError(
            f"{name} must be an integer in 1..{total} (the {split} split size), got {limit!r}"
        )
    return int(limit)


def load_data(
    batch_size: int,
    size: int,
    *,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    data_dir: str | os.PathLike | None = None,
    standardize: bool = False,
    augment: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """(shuffled train loader, file-order test loader) over the first `*_limit` examples.

    `augment` applies to the training images only; `standardize` to both.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("size", size)
    n_train = _check_limit("train_limit", train_limit, "train")
    n_test = _check_limit("test_limit", test_limit, "test")
    data = load_fashion_mnist(data_dir)
    train = DataLoader(
        data.train_images[:n_train],
        data.train_labels[:n_train],
        batch_size=batch_size,
        size=size,
        shuffle=True,
        seed=seed,
        standardize=standardize,
        augment=augment,
    )
    test = DataLoader(
        data.test_images[:n_test],
        data.test_labels[:n_test],
        batch_size=batch_size,
        size=size,
        shuffle=False,
        seed=seed,
        standardize=standardize,
    )
    return train, test
