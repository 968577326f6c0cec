"""Local response normalisation across channels (AlexNet section 3.3) for the CPU, PyTorch's formula:

    y[c] = x[c] / (k + alpha / size * sum_{c' in W(c)} x[c']^2) ** beta,   W(c) = c - size//2 .. c + (size-1)//2

with channels outside 0..C-1 counting as zeros. Arrays are (N, C, S), S the flattened spatial size."""
import math

import numpy as np
from numba import njit, prange

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "lrn_forward", "lrn_backward",
]


@njit(cache=True)
def _channel_window(c, channels, size):
    """First and one-past-last channel of the window centred on channel ``c``, clipped to the channels."""
    return max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, channels)


@njit(parallel=True, cache=True)
def lrn_forward(x, out, size, alpha, beta, k):
    """x and out (N, C, S); size the channel window; alpha, beta, k floats.

    One task per (n, c) row: the window's sum of squares is gathered row by row (float64) and the scale applied
    over the row, so that both loops run along contiguous positions and vectorise. AlexNet's beta = 0.75 takes
    d^-0.75 = 1 / (sqrt(d) sqrt(sqrt(d))), which vectorises where a general power does not.
    """
    batch, channels, spatial = x.shape
    scale = alpha / size
    for task in prange(batch * channels):
        n = task // channels
        c = task % channels
        lo, hi = _channel_window(c, channels, size)
        total = np.zeros(spatial)
        for j in range(lo, hi):
            row = x[n, j]
            for s in range(spatial):
                total[s] += row[s] * row[s]
        source = x[n, c]
        target = out[n, c]
        if beta == 0.75:
            for s in range(spatial):
                root = math.sqrt(k + scale * total[s])
                target[s] = source[s] / (root * math.sqrt(root))
        else:
            for s in range(spatial):
                target[s] = source[s] * (k + scale * total[s]) ** -beta


@njit(parallel=True, cache=True)
def lrn_backward(grad_output, x, grad_input, size, alpha, beta, k):
    """grad_input[j] = g[j] * D[j]^-beta - 2 alpha beta / size * x[j] * sum_{c : j in W(c)} g[c] x[c] D[c]^(-beta-1),
    D[c] = k + alpha / size * sum_{W(c)} x^2. All (N, C, S)."""
    batch, channels, spatial = x.shape
    for task in prange(batch * spatial):
        n = task // spatial
        s = task % spatial
        # the channels c whose window contains j are j - (size-1)//2 .. j + size//2
        for j in range(channels):
            lo, hi = max(j - (size - 1) // 2, 0), min(j + size // 2 + 1, channels)
            cross = 0.0
            own_scale = 0.0
            for c in range(lo, hi):
                w_lo, w_hi = _channel_window(c, channels, size)
                total = 0.0
                for i in range(w_lo, w_hi):
                    total += x[n, i, s] * x[n, i, s]
                denominator = k + alpha / size * total
                cross += grad_output[n, c, s] * x[n, c, s] * denominator ** (-beta - 1.0)
                if c == j:
                    own_scale = denominator ** -beta
            grad_input[n, j, s] = grad_output[n, j, s] * own_scale - 2.0 * alpha * beta / size * x[n, j, s] * cross
