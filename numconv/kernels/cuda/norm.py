"""Local response normalisation across channels for CUDA, PyTorch's formula (as numconv.kernels.cpu.norm):

    y[c] = x[c] / (k + alpha / size * sum_{c' in W(c)} x[c']^2) ** beta,   W(c) = c - size//2 .. c + (size-1)//2

Arrays are (N, C, S). One thread per element, consecutive threads on consecutive positions s (coalesced for every
channel of the window); each thread sums its own window (``size`` loads, ``size``**2 in the backward pass).
"""
from numba import cuda

from numconv import config
from numconv.kernels.cuda.support import blocks_for, launch

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "lrn_forward", "lrn_backward",
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
