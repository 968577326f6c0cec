"""Checks of scalar parameters, for every public function and class of numconv, with one rule.

A value of the wrong kind (not an int, not a real number, not a bool, not a float dtype) is a ``TypeError``; a value
of the right kind outside its range, NaN and infinities included where a finite number is needed, is a
``ValueError``. Each message names the parameter and the value. Bools are not numbers here: ``lr=True`` is refused.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["is_int", "integer", "real", "flag", "probability", "float_dtype"]


def is_int(value) -> bool:
    """An int (Python's or numpy's), not a bool."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an int of at least ``minimum``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def real(value, name: str, minimum: float | None = None, above: float | None = None,
         below: float | None = None) -> float:
    """``value`` as a finite float, at least ``minimum``, greater than ``above`` and less than ``below`` (each where
    given)."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be > {above}, got {value!r}")
    if below is not None and value >= below:
        raise ValueError(f"{name} must be < {below}, got {value!r}")
    return float(value)


def flag(value, name: str) -> bool:
    """``value`` as a bool (Python's or numpy's)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def probability(value, name: str = "p") -> float:
    """``value`` as a float in [0, 1]."""
    value = real(value, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def float_dtype(value, name: str = "dtype") -> np.dtype:
    """``value`` as numpy's float32 or float64 dtype."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {value!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    return dtype
