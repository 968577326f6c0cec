"""Normalisation for the CPU: local response normalisation across channels, and batch normalisation.

Local response normalisation (AlexNet section 3.3), PyTorch's formula:

    y[c] = x[c] / (k + alpha / size * sum_{c' in W(c)} x[c']^2) ** beta,   W(c) = c - size//2 .. c + (size-1)//2

with channels outside 0..C-1 counting as zeros. Batch normalisation (Ioffe and Szegedy 2015), per channel c over
the N * S values of a batch: ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``. Arrays are (N, C, S),
S the flattened spatial size; sums in float64."""
import math

import numpy as np
from numba import njit, prange

from numconv.kernels.scalar import centred

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "lrn_forward", "lrn_backward", "batch_norm_statistics", "batch_norm_forward", "batch_norm_backward",
    "running_average",
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


@njit(parallel=True, cache=True)
def batch_norm_statistics(x, mean, var):
    """mean[c] and the biased variance var[c] of channel c's N * S values (two passes: the mean, then the squared
    deviations from it). x (N, C, S); mean, var (C,)."""
    batch, channels, size = x.shape
    count = batch * size
    for c in prange(channels):
        total = 0.0
        for n in range(batch):
            for s in range(size):
                total += float(x[n, c, s])  # float64 sums, whatever the input's dtype
        centre = total / count
        squares = 0.0
        for n in range(batch):
            for s in range(size):
                deviation = centred(x[n, c, s], centre)
                squares += deviation * deviation
        mean[c] = centre
        var[c] = squares / count


@njit(parallel=True, cache=True)
def batch_norm_forward(x, mean, var, weight, bias, eps, out):
    """out = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]. x, out (N, C, S); the rest (C,)."""
    batch, channels, size = x.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane - n * channels
        scale = float(weight[c]) / math.sqrt(float(var[c]) + eps)
        centre, shift = mean[c], bias[c]
        for s in range(size):
            out[n, c, s] = centred(x[n, c, s], centre) * scale + shift


@njit(parallel=True, cache=True)
def batch_norm_backward(grad_output, x, mean, var, weight, eps, training, grad_input, grad_weight, grad_bias):
    """The gradients of :func:`batch_norm_forward`. With ``training`` the mean and variance are the batch's own
    (functions of x); without, constants. grad_output, x, grad_input (N, C, S); the rest (C,)."""
    batch, channels, size = x.shape
    count = batch * size
    for c in prange(channels):
        invstd = 1.0 / math.sqrt(float(var[c]) + eps)
        centre = mean[c]
        sum_g = 0.0
        sum_g_normalised = 0.0
        for n in range(batch):
            for s in range(size):
                g = float(grad_output[n, c, s])
                sum_g += g
                sum_g_normalised += g * centred(x[n, c, s], centre) * invstd
        grad_bias[c] = sum_g
        grad_weight[c] = sum_g_normalised
        scale = float(weight[c]) * invstd
        mean_g = sum_g / count if training else 0.0
        mean_g_normalised = sum_g_normalised / count if training else 0.0
        for n in range(batch):
            for s in range(size):
                normalised = centred(x[n, c, s], centre) * invstd
                grad_input[n, c, s] = scale * (grad_output[n, c, s] - mean_g - normalised * mean_g_normalised)


@njit(parallel=True, cache=True)
def running_average(running, batch_value, momentum, correction):
    """running = (1 - momentum) * running + momentum * correction * batch_value, in place: a running mean or
    variance (``correction`` M / (M - 1) makes the variance unbiased, as PyTorch keeps it). (C,) arrays."""
    for c in prange(running.shape[0]):
        running[c] = (1.0 - momentum) * running[c] + momentum * correction * batch_value[c]
