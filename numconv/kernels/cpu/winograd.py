"""The fused Winograd F(2x2, 3x3) forward convolution: 2D, 3x3 kernels, stride 1, dilation 1, any padding and
groups. The kernels are generated (``winograd_codegen.py`` documents the algorithm and the buffer layouts); this
module sizes their buffers and calls them. ``conv.py`` decides when it is used (``tuning.WINOGRAD_MIN_CHANNELS``).

One call:

1. ``_pack_f2``: the input, zero padded, into 16-channel blocks (N, G, CB, HP, WP, 16).
2. ``_weights_f2``: the transformed weights U (G, OB, 16, CP, 16), 16 output channels per vector (once, for
   weights that can never change: ``launch.prepared``).
3. ``_winograd_f2``: per task (a group and ``per_task`` tiles), the input transform into a per-thread buffer, the
   16 channel sums by a 16 x ``WIDTH`` register-blocked product, and the inverse transform (plus bias) into the
   output.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from numconv.kernels.cpu import tuning, winograd_kernels
from numconv.kernels.cpu.launch import prepared, run_vectorized, workspace
from numconv.kernels.cpu.winograd_kernels import LANES as _LANES, TILE, WIDTH


def applies(x_shape, weight_shape, stride, padding, dilation) -> bool:
    """Whether a (N, C, D, H, W) convolution is one this kernel computes: 2D (depth 1, no depth padding, so one
    output plane), 3x3, stride 1 and dilation 1 along the rows and columns."""
    return (tuple(weight_shape[2:]) == (1, 3, 3) and x_shape[2] == 1 and padding[0] == 0
            and tuple(stride[1:]) == (1, 1) and tuple(dilation[1:]) == (1, 1))


def worthwhile(x_shape, weight_shape, groups) -> bool:
    """Whether a group has enough input and output channels for the transforms to pay (``tuning.py``)."""
    return min(x_shape[1] // groups, weight_shape[0] // groups) >= tuning.WINOGRAD_MIN_CHANNELS


def _tiles_per_task(tiles: int, groups: int) -> int:
    # two strips per task let a block of U serve twice from the first-level cache while V still fits the second
    # (measured 5-30% faster on AlexNet's third layer), unless that leaves too few tasks for the threads
    return 2 * WIDTH if groups * -(-tiles // (2 * WIDTH)) >= tuning.MIN_TASKS else WIDTH


def conv_forward(x, weight, bias, out, padding, groups) -> None:
    """out[n, o] = bias[o] + sum_{c, taps} weight[o, c, taps] * x[n, group(o) + c, window(taps)], by Winograd.

    x (N, C, H, W); weight (O, C // groups, 3, 3); bias (O,); out (N, O, OH, OW), overwritten (its shape fixes the
    right padding); ``padding`` the (top, left) padding; all C-contiguous, one float dtype.
    """
    batch, channels, height, width = x.shape
    out_channels, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    group_in, group_out = channels // groups, out_channels // groups
    alpha = TILE + 2
    transforms = alpha * alpha
    tiles_h, tiles_w = -(-out_h // TILE), -(-out_w // TILE)
    per_task = _tiles_per_task(batch * tiles_h * tiles_w, groups)
    in_blocks, out_blocks = -(-group_in // _LANES), -(-group_out // _LANES)
    padded_in = in_blocks * _LANES
    dtype = x.dtype
    threads = numba.config.NUMBA_NUM_THREADS
    constants = np.array(winograd_kernels.CONSTANTS, dtype)
    packed_shape = (batch, groups, in_blocks, tiles_h * TILE + 2, tiles_w * TILE + 2, _LANES)
    packed = workspace("winograd input", math.prod(packed_shape), dtype).reshape(packed_shape)
    lane_bias = np.zeros((groups, out_blocks * _LANES), dtype)
    lane_bias[:, :group_out] = bias.reshape(groups, group_out)
    run_vectorized(winograd_kernels._pack_f2, x, groups, in_blocks, padding[0], padding[1], packed)
    transformed = prepared(
        weight, "winograd weights", groups * out_blocks * transforms * padded_in * _LANES, dtype,
        lambda transformed: run_vectorized(
            winograd_kernels._weights_f2, weight, constants, group_out, out_blocks, padded_in, transformed,
            workspace("winograd weight rows", threads * 3 * alpha * _LANES, dtype).reshape(threads, -1)),
        (groups,))
    run_vectorized(
        winograd_kernels._winograd_f2, packed, transformed, lane_bias.reshape(-1), constants, out, groups,
        group_out, out_blocks, tiles_h, tiles_w, per_task,
        workspace("winograd tiles", threads * transforms * per_task * padded_in, dtype).reshape(threads, -1),
        workspace("winograd sums", threads * transforms * per_task * _LANES, dtype).reshape(threads, -1),
        workspace("winograd scratch", threads * transforms * _LANES, dtype).reshape(threads, -1))
