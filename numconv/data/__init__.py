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

from numconv.data.batching import batch_rows, batches, random_shift
from numconv.data.dataset import Dataset, as_dtype
from numconv.data.readers import load_cifar10_dir, load_default, load_idx_dir, mnist_subset, read_idx
from numconv.data.synthetic import (
    CLIP_DIRECTIONS, SHAPE_CLASSES, SHAPE_FIGURES, SHAPE_PALETTES, SPEECH_SAMPLE_RATE, clips, shapes, speech,
)

__all__ = [
    "Dataset", "as_dtype", "mnist_subset", "load_default", "read_idx", "load_idx_dir", "load_cifar10_dir", "speech",
    "clips", "shapes", "batches", "batch_rows", "random_shift", "load", "DATASET_SPECS", "SPEECH_SAMPLE_RATE",
    "CLIP_DIRECTIONS", "SHAPE_FIGURES", "SHAPE_PALETTES", "SHAPE_CLASSES",
]


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
