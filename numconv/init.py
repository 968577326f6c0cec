"""Weight initialisation, always from an explicit ``numpy.random.Generator`` (never global state)."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["fan_in", "kaiming_normal", "normal", "constant"]


def fan_in(shape: tuple) -> int:
    """Inputs feeding one output: in_features for (out, in), in_channels/groups * kernel for conv weights."""
    return int(np.prod(shape[1:]))


def kaiming_normal(shape: tuple, rng: np.random.Generator, gain: float = math.sqrt(2.0)) -> np.ndarray:
    """He et al. (2015): N(0, gain^2 / fan_in), the default for layers followed by ReLU. float64 (N-d)."""
    return rng.standard_normal(shape) * (gain / math.sqrt(fan_in(shape)))


def normal(shape: tuple, rng: np.random.Generator, std: float = 0.01) -> np.ndarray:
    """N(0, std^2): AlexNet initialised every weight with std 0.01."""
    return rng.standard_normal(shape) * std


def constant(shape: tuple, value: float) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)
