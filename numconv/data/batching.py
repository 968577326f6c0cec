"""Mini-batches: their rows (shuffled from an explicit generator), their arrays, and augmentation."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from numconv import checks
from numconv.data.dataset import Dataset

__all__ = ["batches", "batch_rows", "random_shift"]


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
