"""Scalar rules that both backends' kernels call (``@njit`` functions, which numba-cuda compiles as device
functions): what an element-wise formula does with NaN and infinities is decided here, once, as PyTorch does it."""
import math

from numba import njit


@njit(cache=True, inline="always")
def takes_max(value, current, first):
    """Whether ``value`` replaces ``current`` as a pooling window's maximum, in window order. PyTorch's rule: a
    larger value, or the window's first value, or a NaN; so the last NaN of a window wins, and among equal values
    the first."""
    return first or value > current or math.isnan(value)


@njit(cache=True, inline="always")
def relu_gradient(grad, x):
    """ReLU's backward at ``x``: the gradient passes unless x <= 0, so a NaN passes it, as in PyTorch."""
    return 0.0 if x <= 0.0 else grad


@njit(cache=True, inline="always")
def masked_scale(value, keep, scale):
    """Dropout's value * mask * scale, the product in float64: a NaN or an infinity that is dropped gives NaN
    (times 0), as PyTorch's ``input * mask * scale`` does."""
    return float(value) * (1.0 if keep else 0.0) * scale
