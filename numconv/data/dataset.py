"""The :class:`Dataset` of every loader, and what the loaders share: standardising with the training part's
statistics, splitting, balanced labels, and drawing the two parts of a synthetic set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from numconv import checks

__all__ = ["Dataset", "as_dtype"]


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


def _balanced_labels(count: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` labels in random order, each class appearing ⌊count/num_classes⌋ or one more times."""
    return rng.permutation(np.arange(count) % num_classes).astype(np.int64)


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
