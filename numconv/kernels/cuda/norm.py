"""Normalisation for CUDA, as numconv.kernels.cpu.norm: batch normalisation (one block per channel for the
statistics and the parameter gradients, a thread per element for the rest), and local response normalisation
across channels, PyTorch's formula:

    y[c] = x[c] / (k + alpha / size * sum_{c' in W(c)} x[c']^2) ** beta,   W(c) = c - size//2 .. c + (size-1)//2

Arrays are (N, C, S). One thread per element, consecutive threads on consecutive positions s (coalesced for every
channel of the window); each thread sums its own window (``size`` loads, ``size``**2 in the backward pass).
"""
import math

from numba import cuda

from numconv import config
from numconv.kernels.scalar import centred
from numconv.kernels.cuda.support import (
    FLOAT64, blocks_for, launch, launch_flat, reduce_threads, specialise, tree_sum,
)

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "lrn_forward", "lrn_backward", "batch_norm_statistics", "batch_norm_forward", "batch_norm_backward",
    "running_average",
]


@cuda.jit(device=True)
def _window_sum_of_squares(x, n, c, s, channels, size):
    lo = max(c - size // 2, 0)
    hi = min(c + (size - 1) // 2 + 1, channels)
    total = 0.0
    for j in range(lo, hi):
        total += x[n, j, s] * x[n, j, s]
    return total


@cuda.jit(cache=True)
def _lrn_forward(x, out, size, alpha, beta, k):
    i = cuda.grid(1)
    batch, channels, spatial = x.shape
    if i < batch * channels * spatial:
        s = i % spatial
        c = (i // spatial) % channels
        n = i // (spatial * channels)
        total = _window_sum_of_squares(x, n, c, s, channels, size)
        out[n, c, s] = x[n, c, s] * (k + alpha / size * total) ** -beta


def lrn_forward(x, out, size, alpha, beta, k):
    """x and out (N, C, S); size the channel window; alpha, beta, k floats."""
    threads = config.THREADS_PER_BLOCK
    launch(_lrn_forward, blocks_for(x.size, threads), threads, x, out, int(size), float(alpha), float(beta),
           float(k))


@cuda.jit(cache=True)
def _lrn_backward(grad_output, x, grad_input, size, alpha, beta, k):
    i = cuda.grid(1)
    batch, channels, spatial = x.shape
    if i < batch * channels * spatial:
        s = i % spatial
        j = (i // spatial) % channels
        n = i // (spatial * channels)
        # the channels c whose window contains j are j - (size-1)//2 .. j + size//2
        lo = max(j - (size - 1) // 2, 0)
        hi = min(j + size // 2 + 1, channels)
        cross = 0.0
        own_scale = 0.0
        for c in range(lo, hi):
            denominator = k + alpha / size * _window_sum_of_squares(x, n, c, s, channels, size)
            cross += grad_output[n, c, s] * x[n, c, s] * denominator ** (-beta - 1.0)
            if c == j:
                own_scale = denominator ** -beta
        grad_input[n, j, s] = grad_output[n, j, s] * own_scale - 2.0 * alpha * beta / size * x[n, j, s] * cross


def lrn_backward(grad_output, x, grad_input, size, alpha, beta, k):
    """grad_input[j] = g[j] * D[j]^-beta - 2 alpha beta / size * x[j] * sum_{c : j in W(c)} g[c] x[c] D[c]^(-beta-1),
    D[c] = k + alpha / size * sum_{W(c)} x^2. All (N, C, S)."""
    threads = config.THREADS_PER_BLOCK
    launch(_lrn_backward, blocks_for(x.size, threads), threads, grad_output, x, grad_input, int(size),
           float(alpha), float(beta), float(k))


@specialise
def _statistics_kernel(threads):
    @cuda.jit(cache=True)
    def statistics(x, mean, var):
        partial = cuda.shared.array(threads, FLOAT64)
        c = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        size = x.shape[2]
        count = x.shape[0] * size
        acc = 0.0
        for e in range(tid, count, threads):
            n = e // size
            acc += float(x[n, c, e - n * size])
        partial[tid] = acc
        cuda.syncthreads()
        tree_sum(partial, tid, threads)
        centre = partial[0] / count
        cuda.syncthreads()
        acc = 0.0
        for e in range(tid, count, threads):
            n = e // size
            deviation = centred(x[n, c, e - n * size], centre)
            acc += deviation * deviation
        partial[tid] = acc
        cuda.syncthreads()
        tree_sum(partial, tid, threads)
        if tid == 0:
            mean[c] = centre
            var[c] = partial[0] / count

    return statistics


def batch_norm_statistics(x, mean, var):
    """mean[c] and the biased variance var[c] of channel c's N * S values. x (N, C, S); mean, var (C,)."""
    batch, channels, size = x.shape
    threads = reduce_threads(batch * size)
    launch(_statistics_kernel(threads), channels, threads, x, mean, var)


@cuda.jit(cache=True)
def _batch_norm_forward(x, mean, var, weight, bias, eps, out):
    e = cuda.grid(1)
    channels, size = x.shape[1], x.shape[2]
    if e < x.shape[0] * channels * size:
        n = e // (channels * size)
        rest = e - n * channels * size
        c = rest // size
        s = rest - c * size
        out[n, c, s] = centred(x[n, c, s], mean[c]) * (weight[c] / math.sqrt(float(var[c]) + eps)) + bias[c]


def batch_norm_forward(x, mean, var, weight, bias, eps, out):
    """out = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]. x, out (N, C, S); the rest (C,)."""
    launch_flat(_batch_norm_forward, x.size, x, mean, var, weight, bias, eps, out)


@specialise
def _parameter_gradients_kernel(threads):
    @cuda.jit(cache=True)
    def parameter_gradients(grad_output, x, mean, var, eps, grad_weight, grad_bias):
        sums = cuda.shared.array(threads, FLOAT64)
        weighted = cuda.shared.array(threads, FLOAT64)
        c = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        size = x.shape[2]
        invstd = 1.0 / math.sqrt(float(var[c]) + eps)
        acc_g = 0.0
        acc_gx = 0.0
        for e in range(tid, x.shape[0] * size, threads):
            n = e // size
            g = float(grad_output[n, c, e - n * size])
            acc_g += g
            acc_gx += g * centred(x[n, c, e - n * size], mean[c]) * invstd
        sums[tid] = acc_g
        weighted[tid] = acc_gx
        cuda.syncthreads()
        tree_sum(sums, tid, threads)
        tree_sum(weighted, tid, threads)
        if tid == 0:
            grad_bias[c] = sums[0]
            grad_weight[c] = weighted[0]

    return parameter_gradients


@cuda.jit(cache=True)
def _batch_norm_grad_input(grad_output, x, mean, var, weight, eps, training, grad_weight, grad_bias, grad_input):
    e = cuda.grid(1)
    channels, size = x.shape[1], x.shape[2]
    count = x.shape[0] * size
    if e < count * channels:
        n = e // (channels * size)
        rest = e - n * channels * size
        c = rest // size
        s = rest - c * size
        invstd = 1.0 / math.sqrt(float(var[c]) + eps)
        mean_g = grad_bias[c] / count if training else 0.0
        mean_g_normalised = grad_weight[c] / count if training else 0.0
        normalised = centred(x[n, c, s], mean[c]) * invstd
        grad_input[n, c, s] = weight[c] * invstd * (grad_output[n, c, s] - mean_g - normalised * mean_g_normalised)


def batch_norm_backward(grad_output, x, mean, var, weight, eps, training, grad_input, grad_weight, grad_bias):
    """The gradients of :func:`batch_norm_forward`. With ``training`` the mean and variance are the batch's own
    (functions of x); without, constants. grad_output, x, grad_input (N, C, S); the rest (C,)."""
    batch, channels, size = x.shape
    threads = reduce_threads(batch * size)
    launch(_parameter_gradients_kernel(threads), channels, threads, grad_output, x, mean, var, eps, grad_weight,
           grad_bias)
    launch_flat(_batch_norm_grad_input, x.size, grad_output, x, mean, var, weight, eps, training, grad_weight,
                grad_bias, grad_input)


@cuda.jit(cache=True)
def _running_average(running, batch_value, momentum, correction):
    c = cuda.grid(1)
    if c < running.shape[0]:
        running[c] = (1.0 - momentum) * running[c] + momentum * correction * batch_value[c]


def running_average(running, batch_value, momentum, correction):
    """running = (1 - momentum) * running + momentum * correction * batch_value, in place. (C,) arrays."""
    launch_flat(_running_average, running.shape[0], running, batch_value, momentum, correction)
