"""Pooling kernels for the CPU: max and average pooling over 3 spatial axes (1D and 2D are views with leading
singleton axes), and global average pooling.

Arrays are (N, C, D, H, W) and C-contiguous; ``kernel``, ``stride``, ``padding`` and ``dilation`` are tuples of
three ints; the output's shape carries ``ceil_mode``. Each (n, c) plane is independent, so the loops run in parallel
over planes.
"""
import math

import numpy as np
from numba import njit, prange

from numconv.geometry import avg_pool_divisor, valid_output_range, window_position
from numconv.kernels.scalar import takes_max, window_sum

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward", "global_avg_pool_forward",
    "global_avg_pool_backward",
]


@njit(parallel=True, cache=True)
def max_pool_forward(x, out, indices, kernel, stride, padding, dilation):
    """out = the maximum of each window; indices = its position, flat within the (D, H, W) plane (int64).

    Padding never wins. Ties go to the first maximum in window order (depth, then height, then width); a NaN wins
    over any number, and the last NaN over earlier ones, as in PyTorch. x (N, C, D, H, W); out and indices
    (N, C, OD, OH, OW), overwritten.

    One pass over each output row: taps outside, positions inside, the running maximum and its index kept in the
    output row itself and updated by selects rather than branches, so that the row loop vectorises.
    """
    batch, channels, in_d, in_h, in_w = x.shape
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    # each tap along a row covers the same outputs in every row: its range and first input, computed once
    row_lo = np.empty(kernel[2], np.int64)
    row_hi = np.empty(kernel[2], np.int64)
    row_shift = np.empty(kernel[2], np.int64)
    for tw in range(kernel[2]):
        lo, hi = valid_output_range(in_w, out_w, stride[2], padding[2], dilation[2], tw)
        row_lo[tw], row_hi[tw] = lo, hi
        row_shift[tw] = window_position(lo, stride[2], padding[2], dilation[2], tw)
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane % channels
        source = x[n, c]
        for od in range(out_d):
            for oh in range(out_h):
                best = out[n, c, od, oh]
                where = indices[n, c, od, oh]
                best[:] = -math.inf
                where[:] = -1
                for td in range(kernel[0]):
                    i_d = window_position(od, stride[0], padding[0], dilation[0], td)
                    if i_d < 0 or i_d >= in_d:
                        continue
                    for th in range(kernel[1]):
                        i_h = window_position(oh, stride[1], padding[1], dilation[1], th)
                        if i_h < 0 or i_h >= in_h:
                            continue
                        row = source[i_d, i_h]
                        row_start = (i_d * in_h + i_h) * in_w
                        for tw in range(kernel[2]):
                            lo, hi, shift = row_lo[tw], row_hi[tw], row_shift[tw]
                            # a literal stride lets LLVM vectorise the strided loads; others take the general loop
                            if stride[2] == 1:
                                _max_into(row, best, where, lo, hi, 1, shift, row_start)
                            elif stride[2] == 2:
                                _max_into(row, best, where, lo, hi, 2, shift, row_start)
                            elif stride[2] == 3:
                                _max_into(row, best, where, lo, hi, 3, shift, row_start)
                            elif stride[2] == 4:
                                _max_into(row, best, where, lo, hi, 4, shift, row_start)
                            else:
                                _max_into(row, best, where, lo, hi, stride[2], shift, row_start)


@njit(cache=True, inline="always")
def _max_into(row, best, where, lo, hi, step, shift, row_start):
    """best[ow], where[ow] for ow in [lo, hi) take row[(ow - lo) * step + shift] where it is larger (or the first,
    or a NaN: ``takes_max``). Indices are unsigned: no negative-index wrap-around, which keeps LLVM from vectorising."""
    first = np.uint64(lo)
    for ow in range(first, np.uint64(hi)):
        i_w = (ow - first) * np.uint64(step) + np.uint64(shift)
        value = row[i_w]
        current = best[ow]
        index = where[ow]
        take = takes_max(value, current, index < 0)
        best[ow] = value if take else current
        where[ow] = row_start + np.int64(i_w) if take else index


@njit(parallel=True, cache=True)
def max_pool_backward(grad_output, indices, grad_input):
    """grad_input[flat index] += grad_output for every window: the gradient goes to each window's maximum.

    grad_output and indices (N, C, OD, OH, OW); grad_input (N, C, D, H, W), overwritten.
    """
    planes = grad_output.shape[0] * grad_output.shape[1]
    in_plane = grad_input.shape[2] * grad_input.shape[3] * grad_input.shape[4]
    out_plane = grad_output.shape[2] * grad_output.shape[3] * grad_output.shape[4]
    # the indices are flat within a plane, so each plane's gradient is scattered through a flat view
    grads = grad_output.reshape(planes, out_plane)
    where = indices.reshape(planes, out_plane)
    targets = grad_input.reshape(planes, in_plane)
    for plane in prange(planes):
        target = targets[plane]
        target[:] = 0.0
        for i in range(out_plane):
            target[where[plane, i]] += grads[plane, i]


@njit(parallel=True, cache=True)
def avg_pool_forward(x, out, kernel, stride, padding, padding_end, count_include_pad):
    """out = the window's sum divided by its size; the size counts padded positions when ``count_include_pad``
    (PyTorch's rule: a ceil_mode window overhanging the padding is clipped). ``padding`` comes before each axis,
    ``padding_end`` after it.

    x (N, C, D, H, W); out (N, C, OD, OH, OW), overwritten.
    """
    batch, channels, in_d, in_h, in_w = x.shape
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane % channels
        for od in range(out_d):
            div_d = avg_pool_divisor(od, in_d, kernel[0], stride[0], padding[0], padding_end[0],
                                     count_include_pad)
            for oh in range(out_h):
                div_h = avg_pool_divisor(oh, in_h, kernel[1], stride[1], padding[1], padding_end[1],
                                         count_include_pad)
                for ow in range(out_w):
                    div_w = avg_pool_divisor(ow, in_w, kernel[2], stride[2], padding[2], padding_end[2],
                                             count_include_pad)
                    out[n, c, od, oh, ow] = window_sum(x, n, c, od, oh, ow, kernel, stride, padding) / (
                        div_d * div_h * div_w)


@njit(parallel=True, cache=True)
def avg_pool_backward(grad_output, grad_input, kernel, stride, padding, padding_end, count_include_pad):
    """grad_input[i] = sum over the windows containing i of grad_output / window size.

    grad_output (N, C, OD, OH, OW); grad_input (N, C, D, H, W), overwritten.
    """
    batch, channels, out_d, out_h, out_w = grad_output.shape
    in_d, in_h, in_w = grad_input.shape[2], grad_input.shape[3], grad_input.shape[4]
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane % channels
        grad_input[n, c] = 0.0
        for od in range(out_d):
            div_d = avg_pool_divisor(od, in_d, kernel[0], stride[0], padding[0], padding_end[0],
                                     count_include_pad)
            for oh in range(out_h):
                div_h = avg_pool_divisor(oh, in_h, kernel[1], stride[1], padding[1], padding_end[1],
                                         count_include_pad)
                for ow in range(out_w):
                    div_w = avg_pool_divisor(ow, in_w, kernel[2], stride[2], padding[2], padding_end[2],
                                             count_include_pad)
                    share = grad_output[n, c, od, oh, ow] / (div_d * div_h * div_w)
                    for td in range(kernel[0]):
                        i_d = window_position(od, stride[0], padding[0], 1, td)
                        if i_d < 0 or i_d >= in_d:
                            continue
                        for th in range(kernel[1]):
                            i_h = window_position(oh, stride[1], padding[1], 1, th)
                            if i_h < 0 or i_h >= in_h:
                                continue
                            for tw in range(kernel[2]):
                                i_w = window_position(ow, stride[2], padding[2], 1, tw)
                                if 0 <= i_w < in_w:
                                    grad_input[n, c, i_d, i_h, i_w] += share


@njit(parallel=True, cache=True)
def global_avg_pool_forward(x, out):
    """out[n, c] = mean of x[n, c, :]. x (N, C, S) with S the flattened spatial size; out (N, C)."""
    batch, channels, size = x.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane % channels
        total = 0.0
        for i in range(size):
            total += x[n, c, i]
        out[n, c] = total / size


@njit(parallel=True, cache=True)
def global_avg_pool_backward(grad_output, grad_input):
    """grad_input[n, c, :] = grad_output[n, c] / S. grad_output (N, C); grad_input (N, C, S), overwritten."""
    batch, channels, size = grad_input.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane % channels
        share = grad_output[n, c] / size
        for i in range(size):
            grad_input[n, c, i] = share
