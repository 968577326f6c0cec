"""Pooling kernels for CUDA: max and average pooling over 3 spatial axes (1D and 2D are views with leading
singleton axes), and global average pooling. Same signatures and semantics as ``numconv.kernels.cpu.pool``.

Window arithmetic is numconv.geometry's: input position ``stride * n - pad + dilation * tap`` and
``avg_pool_divisor`` (numba-cuda compiles those ``@njit`` helpers as device functions); a window's maximum and
sum are numconv.kernels.scalar's ``window_max`` and ``window_sum``, the CPU's own.

- forward passes: one thread per output element, consecutive threads on consecutive output positions (max pooling
  with its indices, or the values alone);
- average pooling's backward: one thread per input element, gathering over the windows that cover it (no atomics;
  the outputs are visited in the CPU kernel's order);
- max pooling's backward: the gradient of each output goes to the flat index of its maximum with an atomic add,
  one thread per output (the signature has no window, so the covering outputs cannot be gathered); where windows
  overlap, the order of the additions, and so the last bits of a sum of several gradients, may vary between runs;
  an index outside its plane is counted in one device number, not written, and the count comes back;
- global average pooling: one block per (n, c) row, a strided sum and a tree reduction in shared memory.
"""
import numpy as np
from numba import cuda

from numconv.geometry import avg_pool_divisor, covering_output_range
from numconv.kernels.scalar import window_max, window_sum
from numconv.kernels.cuda.support import (
    FLOAT64, device_function, fill, launch, launch_flat, reduce_threads, specialise, tree_sum,
)

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "max_pool_forward", "max_pool_forward_values", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
]

_window_sum = device_function(window_sum)
_window_max = device_function(window_max)


@cuda.jit(device=True)
def _output_position(i, out):
    """(n, c, od, oh, ow) of the flat index ``i`` into ``out`` (N, C, OD, OH, OW)."""
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    ow = i % out_w
    rest = i // out_w
    oh = rest % out_h
    rest //= out_h
    od = rest % out_d
    plane = rest // out_d
    return plane // out.shape[1], plane % out.shape[1], od, oh, ow


@cuda.jit(cache=True)
def _max_pool_forward(x, out, indices, kernel, stride, padding, dilation):
    i = cuda.grid(1)
    if i >= out.size:
        return
    n, c, od, oh, ow = _output_position(i, out)
    best, best_index = _window_max(x, n, c, od, oh, ow, kernel, stride, padding, dilation)
    out[n, c, od, oh, ow] = best
    indices[n, c, od, oh, ow] = best_index


def max_pool_forward(x, out, indices, kernel, stride, padding, dilation):
    """out = the maximum of each window; indices = its position, flat within the (D, H, W) plane (int64).

    Padding never wins. Ties go to the first maximum in window order (depth, then height, then width); a NaN wins
    over any number, and the last NaN over earlier ones, as in PyTorch. x (N, C, D, H, W); out and indices
    (N, C, OD, OH, OW), overwritten.
    """
    launch_flat(_max_pool_forward, out.size, x, out, indices, kernel, stride, padding, dilation)


@cuda.jit(cache=True)
def _max_pool_forward_values(x, out, kernel, stride, padding, dilation):
    i = cuda.grid(1)
    if i >= out.size:
        return
    n, c, od, oh, ow = _output_position(i, out)
    out[n, c, od, oh, ow] = _window_max(x, n, c, od, oh, ow, kernel, stride, padding, dilation)[0]


def max_pool_forward_values(x, out, kernel, stride, padding, dilation):
    """out = the maximum of each window: ``max_pool_forward`` without the indices (the same values by the same
    rule: padding never wins, a NaN wins). x (N, C, D, H, W); out (N, C, OD, OH, OW), overwritten."""
    launch_flat(_max_pool_forward_values, out.size, x, out, kernel, stride, padding, dilation)


@cuda.jit(cache=True)
def _max_pool_scatter(grad_output, indices, grad_input, outside):
    i = cuda.grid(1)
    per_plane = indices.shape[1]
    if i < indices.shape[0] * per_plane:
        plane = i // per_plane
        at = indices[plane, i % per_plane]
        if at >= 0 and at < grad_input.shape[1]:
            cuda.atomic.add(grad_input, (plane, at), grad_output[i])
        else:
            cuda.atomic.add(outside, 0, 1)  # pragma: no cover - indices outside their plane: tests/test_cuda.py


def max_pool_backward(grad_output, indices, grad_input, kernel, stride, padding, dilation):
    """grad_input[flat index] += grad_output for every window: the gradient goes to each window's maximum.
    Returns how many indices lie outside [0, plane size), each skipped (one number comes back).

    grad_output and indices (N, C, OD, OH, OW); grad_input (N, C, D, H, W), overwritten; the pooling's ``kernel``,
    ``stride``, ``padding`` and ``dilation`` (the CPU's twin chooses its route by them) are not read here.
    """
    fill(grad_input, 0.0)
    planes = grad_output.shape[0] * grad_output.shape[1]
    outside = cuda.to_device(np.zeros(1, np.int64))
    launch_flat(_max_pool_scatter, grad_output.size, grad_output.reshape(-1), indices.reshape(planes, -1),
                grad_input.reshape(planes, -1), outside)
    return int(outside.copy_to_host()[0])


@cuda.jit(cache=True)
def _avg_pool_forward(x, out, kernel, stride, padding, padding_end, count_include_pad):
    i = cuda.grid(1)
    channels, in_d, in_h, in_w = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    if i >= out.shape[0] * channels * out_d * out_h * out_w:
        return
    ow = i % out_w
    rest = i // out_w
    oh = rest % out_h
    rest //= out_h
    od = rest % out_d
    plane = rest // out_d
    n = plane // channels
    c = plane % channels
    div_d = avg_pool_divisor(od, in_d, kernel[0], stride[0], padding[0], padding_end[0],
                             count_include_pad)
    div_h = avg_pool_divisor(oh, in_h, kernel[1], stride[1], padding[1], padding_end[1],
                             count_include_pad)
    div_w = avg_pool_divisor(ow, in_w, kernel[2], stride[2], padding[2], padding_end[2],
                             count_include_pad)
    out[n, c, od, oh, ow] = _window_sum(x, n, c, od, oh, ow, kernel, stride, padding) / (div_d * div_h * div_w)


def avg_pool_forward(x, out, kernel, stride, padding, padding_end, count_include_pad):
    """out = the window's sum divided by its size; the size counts padded positions when ``count_include_pad``
    (PyTorch's rule: a ceil_mode window overhanging the padding is clipped). ``padding`` comes before each axis,
    ``padding_end`` after it.

    x (N, C, D, H, W); out (N, C, OD, OH, OW), overwritten.
    """
    launch_flat(_avg_pool_forward, out.size, x, out, kernel, stride, padding, padding_end, bool(count_include_pad))


@cuda.jit(cache=True)
def _avg_pool_backward(grad_output, grad_input, kernel, stride, padding, padding_end, count_include_pad):
    i = cuda.grid(1)
    channels, in_d, in_h, in_w = grad_input.shape[1], grad_input.shape[2], grad_input.shape[3], grad_input.shape[4]
    out_d, out_h, out_w = grad_output.shape[2], grad_output.shape[3], grad_output.shape[4]
    if i >= grad_input.shape[0] * channels * in_d * in_h * in_w:
        return
    iw = i % in_w
    rest = i // in_w
    ih = rest % in_h
    rest //= in_h
    i_d = rest % in_d
    plane = rest // in_d
    n = plane // channels
    c = plane % channels
    d_lo, d_hi = covering_output_range(i_d, kernel[0], stride[0], padding[0], out_d)
    h_lo, h_hi = covering_output_range(ih, kernel[1], stride[1], padding[1], out_h)
    w_lo, w_hi = covering_output_range(iw, kernel[2], stride[2], padding[2], out_w)
    total = 0.0
    for od in range(d_lo, d_hi):
        div_d = avg_pool_divisor(od, in_d, kernel[0], stride[0], padding[0], padding_end[0],
                                 count_include_pad)
        for oh in range(h_lo, h_hi):
            div_h = avg_pool_divisor(oh, in_h, kernel[1], stride[1], padding[1], padding_end[1],
                                     count_include_pad)
            for ow in range(w_lo, w_hi):
                div_w = avg_pool_divisor(ow, in_w, kernel[2], stride[2], padding[2], padding_end[2],
                                         count_include_pad)
                total += grad_output[n, c, od, oh, ow] * (1.0 / (div_d * div_h * div_w))
    grad_input[n, c, i_d, ih, iw] = total


def avg_pool_backward(grad_output, grad_input, kernel, stride, padding, padding_end, count_include_pad):
    """grad_input[i] = sum over the windows containing i of grad_output / window size.

    grad_output (N, C, OD, OH, OW); grad_input (N, C, D, H, W), overwritten. Each input's terms, its windows'
    gradients times the float64 reciprocal of the window's size, are summed in float64, in output order, and rounded
    once, as on the CPU.
    """
    launch_flat(_avg_pool_backward, grad_input.size, grad_output, grad_input, kernel, stride, padding, padding_end,
                bool(count_include_pad))


@specialise
def _row_mean_kernel(threads):
    @cuda.jit(cache=True)
    def row_mean(x, out):
        partial = cuda.shared.array(threads, FLOAT64)
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        size = x.shape[2]
        n = row // x.shape[1]
        c = row % x.shape[1]
        acc = 0.0
        for i in range(tid, size, threads):
            acc += x[n, c, i]
        partial[tid] = acc
        cuda.syncthreads()
        tree_sum(partial, tid, threads)
        if tid == 0:
            out[n, c] = partial[0] / size

    return row_mean


def global_avg_pool_forward(x, out):
    """out[n, c] = mean of x[n, c, :]. x (N, C, S) with S the flattened spatial size; out (N, C)."""
    threads = reduce_threads(x.shape[2])
    launch(_row_mean_kernel(threads), x.shape[0] * x.shape[1], threads, x, out)


@cuda.jit(cache=True)
def _global_avg_pool_backward(grad_output, grad_input):
    i = cuda.grid(1)
    size = grad_input.shape[1]
    if i < grad_input.shape[0] * size:
        grad_input[i // size, i % size] = grad_output[i // size] / size


def global_avg_pool_backward(grad_output, grad_input):
    """grad_input[n, c, :] = grad_output[n, c] / S. grad_output (N, C); grad_input (N, C, S), overwritten."""
    planes = grad_input.shape[0] * grad_input.shape[1]
    launch_flat(_global_avg_pool_backward, grad_input.size, grad_output.reshape(-1),
                 grad_input.reshape(planes, -1))
