"""Normalisation for the CPU: local response normalisation across channels, and batch normalisation.

Local response normalisation (AlexNet section 3.3), PyTorch's formula:

    y[c] = x[c] / (k + alpha / size * sum_{c' in W(c)} x[c']^2) ** beta,   W(c) = c - size//2 .. c + (size-1)//2

with channels outside 0..C-1 counting as zeros. Batch normalisation (Ioffe and Szegedy 2015), per channel c over
the N * S values of a batch: ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``. Arrays are (N, C, S),
S the flattened spatial size. Local response normalisation computes in the input's dtype; batch normalisation sums
in float64, each row's in an order of LLVM's choosing (``_REORDERED``)."""
import math

import numpy as np
from numba import njit, prange

from numconv.kernels.cpu.parallel import parallel_kernel
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


@njit(cache=True)
def _as_dtype_of(x, first, second):
    """``first`` and ``second`` as scalars of x's dtype, so that arithmetic with x's elements stays in it."""
    values = np.empty(2, dtype=x.dtype)
    values[0] = first
    values[1] = second
    return values[0], values[1]


@parallel_kernel(cache=True)
def lrn_forward(x, out, size, alpha, beta, k):
    """x and out (N, C, S); size the channel window; alpha, beta, k floats.

    One task per (n, c) row: the window's sum of squares is gathered row by row and the scale applied over the row,
    so that both loops run along contiguous positions and vectorise. The arithmetic is in x's dtype, as PyTorch's
    (float32 vectors hold twice the lanes of float64 ones, and their square roots cost less: AlexNet's two layers
    took 2.4x less time than in float64, the results 1.6e-7 apart relative to the largest). AlexNet's beta = 0.75
    takes d^-0.75 = 1 / (sqrt(d) sqrt(sqrt(d))), which vectorises where a general power does not.
    """
    batch, channels, spatial = x.shape
    scale, offset = _as_dtype_of(x, alpha / size, k)
    for task in prange(batch * channels):
        n = task // channels
        c = task % channels
        lo, hi = _channel_window(c, channels, size)
        total = np.zeros(spatial, dtype=x.dtype)
        for j in range(lo, hi):
            row = x[n, j]
            for s in range(spatial):
                total[s] += row[s] * row[s]
        source = x[n, c]
        target = out[n, c]
        if beta == 0.75:
            for s in range(spatial):
                root = math.sqrt(offset + scale * total[s])
                target[s] = source[s] / (root * math.sqrt(root))
        else:
            for s in range(spatial):
                target[s] = source[s] * (offset + scale * total[s]) ** -beta


#: positions per task of :func:`lrn_backward`: its 2 * size + 1 scratch rows stay in the L1 cache
_BACKWARD_CHUNK = 256


@parallel_kernel(cache=True)
def lrn_backward(grad_output, x, grad_input, size, alpha, beta, k):
    """grad_input[j] = g[j] * D[j]^-beta - 2 alpha beta / size * x[j] * sum_{c : j in W(c)} g[c] x[c] D[c]^(-beta-1),
    D[c] = k + alpha / size * sum_{W(c)} x^2. All (N, C, S).

    One task per (n, chunk of positions), sweeping the channels in order: step c computes D[c] over the chunk
    (in x's dtype, as the forward does), then D[c]^-beta and t[c] = g[c] x[c] D[c]^(-beta-1) into rings of ``size``
    rows, and then finishes channel j = c - size//2, whose window-holders j - (size-1)//2 .. j + size//2 are the
    last ``size`` channels computed. Every loop runs along contiguous positions and vectorises; beta = 0.75 goes through
    square roots as in the forward.
    """
    batch, channels, spatial = x.shape
    scale, offset = _as_dtype_of(x, alpha / size, k)
    cross_scale, one = _as_dtype_of(x, 2.0 * alpha * beta / size, 1.0)
    chunks = (spatial + _BACKWARD_CHUNK - 1) // _BACKWARD_CHUNK
    for task in prange(batch * chunks):
        n = task // chunks
        start = (task % chunks) * _BACKWARD_CHUNK
        width = min(spatial - start, _BACKWARD_CHUNK)
        own = np.empty((size, width), dtype=x.dtype)  # D[c]^-beta, row c % size
        cross = np.empty((size, width), dtype=x.dtype)  # t[c], row c % size
        total = np.empty(width, dtype=x.dtype)
        for c in range(channels + size // 2):
            if c < channels:
                lo, hi = _channel_window(c, channels, size)
                total[:] = 0.0
                for i in range(lo, hi):
                    row = x[n, i, start:start + width]
                    for s in range(width):
                        total[s] += row[s] * row[s]
                grads = grad_output[n, c, start:start + width]
                source = x[n, c, start:start + width]
                own_row = own[c % size]
                cross_row = cross[c % size]
                if beta == 0.75:
                    for s in range(width):
                        denominator = offset + scale * total[s]
                        root = math.sqrt(denominator)
                        power = one / (root * math.sqrt(root))
                        own_row[s] = power
                        cross_row[s] = grads[s] * source[s] * (power / denominator)
                else:
                    for s in range(width):
                        denominator = offset + scale * total[s]
                        power = denominator ** -beta
                        own_row[s] = power
                        cross_row[s] = grads[s] * source[s] * (power / denominator)
            j = c - size // 2
            if j >= 0:
                total[:] = 0.0  # now the sum of t over the channels whose window holds j
                for i in range(max(j - (size - 1) // 2, 0), min(j + size // 2 + 1, channels)):
                    cross_row = cross[i % size]
                    for s in range(width):
                        total[s] += cross_row[s]
                grads = grad_output[n, j, start:start + width]
                source = x[n, j, start:start + width]
                target = grad_input[n, j, start:start + width]
                own_row = own[j % size]
                for s in range(width):
                    target[s] = grads[s] * own_row[s] - cross_scale * source[s] * total[s]


#: the flags of batch normalisation's row sums: reassociation lets LLVM split a row's float64 sum into vector lanes
#: (a sum in strict order runs at one add per latency, 4x slower than memory here); every row of one length is
#: summed in the same order, so the results are deterministic. Not contraction: with it, on an Intel Xeon, LLVM fused
#: a square and its addition into one multiply-add in a kernel's one-thread version and not in its parallel one, a
#: variance 1 ulp apart between the two (the spec check's 2 x 2 x 2 row); without it, the same speed
_REORDERED = {"reassoc"}


@njit(fastmath=_REORDERED, cache=True)
def _row_sum(row):
    """The float64 sum of ``row`` (S,)."""
    total = 0.0
    for s in range(row.shape[0]):
        total += float(row[s])
    return total


@njit(fastmath=_REORDERED, cache=True)
def _row_squares(row, centre):
    """The float64 sum of (row - centre) ** 2 over ``row`` (S,)."""
    total = 0.0
    for s in range(row.shape[0]):
        deviation = centred(row[s], centre)
        total += deviation * deviation
    return total


@njit(fastmath=_REORDERED, cache=True)
def _row_gradient_sums(grads, row, centre):
    """(sum of grads, sum of grads * (row - centre)) in float64 over one row (S,) of each."""
    total = 0.0
    weighted = 0.0
    for s in range(row.shape[0]):
        g = float(grads[s])
        total += g
        weighted += g * centred(row[s], centre)
    return total, weighted


@parallel_kernel(cache=True)
def batch_norm_statistics(x, mean, var):
    """mean[c] and the biased variance var[c] of channel c's N * S values (two passes: the mean, then the squared
    deviations from it). x (N, C, S); mean, var (C,)."""
    batch, channels, size = x.shape
    count = batch * size
    for c in prange(channels):
        total = 0.0
        for n in range(batch):
            total += _row_sum(x[n, c])
        centre = total / count
        squares = 0.0
        for n in range(batch):
            squares += _row_squares(x[n, c], centre)
        mean[c] = centre
        var[c] = squares / count


@parallel_kernel(cache=True)
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


@parallel_kernel(cache=True)
def batch_norm_backward(grad_output, x, mean, var, weight, eps, training, grad_input, grad_weight, grad_bias):
    """The gradients of :func:`batch_norm_forward`. With ``training`` the mean and variance are the batch's own
    (functions of x); without, constants. grad_output, x, grad_input (N, C, S); the rest (C,)."""
    batch, channels, size = x.shape
    count = batch * size
    for c in prange(channels):
        invstd = 1.0 / math.sqrt(float(var[c]) + eps)
        centre = mean[c]
        sum_g = 0.0
        sum_g_centred = 0.0
        for n in range(batch):
            row_g, row_g_centred = _row_gradient_sums(grad_output[n, c], x[n, c], centre)
            sum_g += row_g
            sum_g_centred += row_g_centred
        sum_g_normalised = sum_g_centred * invstd
        grad_bias[c] = sum_g
        grad_weight[c] = sum_g_normalised
        scale = float(weight[c]) * invstd
        mean_g = sum_g / count if training else 0.0
        mean_g_normalised = sum_g_normalised / count if training else 0.0
        for n in range(batch):
            for s in range(size):
                normalised = centred(x[n, c, s], centre) * invstd
                grad_input[n, c, s] = scale * (grad_output[n, c, s] - mean_g - normalised * mean_g_normalised)


@parallel_kernel(cache=True)
def running_average(running, batch_value, momentum, correction):
    """running = (1 - momentum) * running + momentum * correction * batch_value, in place: a running mean or
    variance (``correction`` M / (M - 1) makes the variance unbiased, as PyTorch keeps it). (C,) arrays."""
    for c in prange(running.shape[0]):
        running[c] = (1.0 - momentum) * running[c] + momentum * correction * batch_value[c]
