"""The fused Winograd forward convolution: 3x3 or 5x5 windows within each plane at stride 1 and dilation 1, any
padding and groups; in 3D any depth of window, stride and dilation along the depth; and windows one row tall (1D
convolutions: 1 x 3 or 1 x 5). A 3-tap axis is F(2, 3), a 5-tap axis F(2, 3) and F(2, 2) side by side, a 1-tap
axis the identity; a window is the sum of its sub-windows and a 3D window one 2D window per depth tap, except that
a 3 x 3 x 3 window at depth stride and dilation 1 takes F(2, 3) along the depth too (``transforms_depth``;
``winograd_codegen.py`` documents the algorithm and the buffer layouts); this module packs the input, sizes the
generated kernels' buffers and calls them. ``conv.py`` decides when it is used (``tuning.WINOGRAD_MIN_CHANNELS``,
``tuning.WINOGRAD_MIN_TILES``, ``tuning.WINOGRAD_WIDE_MIN_TILES``, ``tuning.WINOGRAD_ROW_*``).

One call:

1. ``_pack_input``: the input, zero padded, into 16-channel blocks (N, G, CB, DP, HP, WP, 16) (``_pack_phases``:
   a strided input's phase planes).
2. ``_weights_{rows}x{columns}``: the transformed weights U (G, OB, T, KD * CP, 16) of the window's T transform
   elements, 16 output channels per vector (once, for weights that can never change: ``launch.prepared``);
   ``_weights_3x3x3`` U (G, OB, 64, CP, 16) where the depth is transformed too.
3. ``_winograd_{rows}x{columns}_w{WIDTH}`` (``_winograd_3x3x3_w{WIDTH}``): per task (a group and ``per_task``
   tiles), the input transform into a per-thread buffer, the T channel sums by a 16 x ``WIDTH`` register-blocked
   product (``WIDTH`` as this CPU's vector registers allow: ``winograd_kernels.WIDTHS``), and the inverse transforms
   (plus bias) into the output; where ``tuning.WINOGRAD_PAIRED`` and a group has more than 16 output channels,
   ``_winograd_{rows}x{columns}_w14x2`` (``winograd_kernels.PAIRED``), whose products take two blocks of 16 output
   channels at a time.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np
from numba import prange

from numconv import vectors
from numconv.kernels.cpu import tuning, winograd_kernels
from numconv.kernels.cpu.launch import prepared, run_vectorized, workspace
from numconv.kernels.cpu.parallel import PACK_MIN_WORK, parallel_kernel
from numconv.kernels.cpu.winograd_kernels import LANES as _LANES, TILE
from numconv.kernels.scalar import relu_floor

#: tiles per strip of the fused kernel this CPU runs
WIDTH = winograd_kernels.WIDTHS[vectors.registers()]


#: the taps of a phase plane's window along each axis (Winograd over a strided layer's phases: ``conv.py``)
SUB = 3


def applies(x_shape, weight_shape, stride, padding, dilation) -> bool:
    """Whether a (N, C, D, H, W) convolution is one this kernel computes: a window in each plane that has generated
    kernels (``winograd_kernels.ELEMENTS``: 1, 3 or 5 taps along the rows and 3 or 5 along the columns; a 5 x 5
    layer takes 49 multiplies per 4 outputs and input channel against the direct kernel's 100; no layer of the zoo
    or the anchor suite has 7 taps), stride 1 and dilation 1 there (anything along the depth)."""
    return ((weight_shape[3], weight_shape[4]) in winograd_kernels.ELEMENTS and tuple(stride[1:]) == (1, 1)
            and tuple(dilation[1:]) == (1, 1))


def row_tile(weight_shape) -> int:
    """The output tiles' rows for a window of ``weight_shape`` (O, Cg, KD, KH, KW): TILE, or 1 where KH is 1."""
    return winograd_kernels.OUTPUTS[weight_shape[3]]


def _plane_sub_windows(weight_shape) -> int:
    """How many sub-windows a window's plane is summed from: one per part of its rows and of its columns."""
    return winograd_kernels.PARTS[weight_shape[3]] * winograd_kernels.PARTS[weight_shape[4]]


def sub_windows(weight_shape) -> int:
    """How many sub-windows a window of (KD, KH, KW) taps is summed from: one per depth tap and per sub-window of
    its plane."""
    return weight_shape[2] * _plane_sub_windows(weight_shape)


def output_tiles(out_shape, rows=TILE) -> int:
    """How many ``rows`` x TILE output tiles the kernel computes for an output of ``out_shape`` (batch, depth,
    height, width): the planes' partial tiles count whole."""
    batch, depth, height, width = out_shape
    return batch * depth * -(-height // rows) * -(-width // TILE)


def transforms_depth(weight_shape, stride_d, dilation_d, out_depth) -> bool:
    """Whether the depth axis is transformed too (F(2, 3): ``winograd_codegen.DEPTH``): 3 depth taps at depth stride
    and dilation 1 over a plane window that has such a kernel, and at least 2 output planes. A tile of 2 planes
    takes 64 multiplies per 2 x 2 x 2 outputs and input channel where a 2D window per depth tap takes 96: one output
    plane alone would take 64 for 48."""
    return (tuple(weight_shape[2:]) in winograd_kernels.ELEMENTS and stride_d == 1 and dilation_d == 1
            and out_depth >= winograd_kernels.DEPTH_OUTPUTS)


def worthwhile(x_shape, weight_shape, groups, out_shape, frozen: bool) -> bool:
    """Whether the transforms pay (``tuning.py``): an input tile's transform serves every output channel of its
    group, an output tile's inverse transform a sum over every sub-window and input channel of it, and the
    transformed weights serve enough tiles of the output (``out_shape``: batch, depth, height and width), more of
    them where the plane's window has sub-windows of its own, and more again where the weight is not ``frozen``
    (``launch.freeze``), whose transform then runs in every call."""
    sums = sub_windows(weight_shape) * (x_shape[1] // groups)
    tiles = output_tiles(out_shape, row_tile(weight_shape))
    wide = _plane_sub_windows(weight_shape) > 1
    if row_tile(weight_shape) == 1:
        return (min(sums, weight_shape[0] // groups) >= tuning.WINOGRAD_ROW_MIN_CHANNELS
                and tuning.WINOGRAD_ROW_MIN_TILES <= tiles <= tuning.WINOGRAD_ROW_MAX_TILES)
    least = ((tuning.WINOGRAD_WIDE_MIN_TILES if frozen else tuning.WINOGRAD_WIDE_UNFROZEN_MIN_TILES) if wide
             else tuning.WINOGRAD_MIN_TILES if frozen else tuning.WINOGRAD_UNFROZEN_MIN_TILES)
    return min(sums, weight_shape[0] // groups) >= tuning.WINOGRAD_MIN_CHANNELS and tiles >= least


@lru_cache(maxsize=64)
def _depth_offsets(taps_d: int, dilation_d: int) -> np.ndarray:
    """How many input planes past an output plane's first each of its ``taps_d`` depth taps reads. Read-only,
    int64."""
    offsets = np.arange(taps_d, dtype=np.int64) * dilation_d
    offsets.flags.writeable = False
    return offsets


@parallel_kernel(cache=True, min_work=PACK_MIN_WORK)
def _pack_input(x, groups, cblocks, pad_d, pad_h, pad_w, packed):
    """packed (N, G, CB, DP, HP, WP, 16)[n, g, cb, z, y, x, k] = x (N, C, D, H, W)[n, g * Cg + 16 cb + k, z - pad_d,
    y - pad_h, x - pad_w], zero outside x and past the group's channels. One task per depth slice of a block; each
    position's 16 channels are read across the channel planes and stored as one run, and the padding is zeroed in
    runs (a task per row, storing each channel's row 16 floats apart, was 2-3x slower: C3D-small's 16 -> 32 layer's
    input 85 -> 31 us, AlexNet's second layer's at batch 16 711 -> 307 us). Returns how many of the values read are
    NaN or infinite: the pass reads each of x's once, so the check that Winograd may run costs no pass of its own."""
    batch, channels, depth, height, width = x.shape
    group_in = channels // groups
    slices, rows, columns = packed.shape[3], packed.shape[4], packed.shape[5]
    source = x.reshape(-1)
    target = packed.reshape(-1)
    plane = np.uint64(depth * height * width)
    row_size = np.uint64(columns * 16)
    slice_size = np.uint64(rows) * row_size
    y_lo = min(max(pad_h, 0), rows)
    y_hi = min(max(pad_h + height, y_lo), rows)
    x_lo = min(max(pad_w, 0), columns)
    x_hi = min(max(pad_w + width, x_lo), columns)
    non_finite = 0
    for task in prange(batch * groups * cblocks * slices):
        z = task % slices
        cb = (task // slices) % cblocks
        g = (task // (slices * cblocks)) % groups
        n = task // (slices * cblocks * groups)
        first = np.uint64(task) * slice_size
        sz = z - pad_d
        if sz < 0 or sz >= depth:
            for i in range(slice_size):
                target[first + i] = 0.0
            continue
        c0 = g * group_in + cb * 16
        valid = min(16, group_in - cb * 16)
        for i in range(np.uint64(y_lo) * row_size):
            target[first + i] = 0.0
        for i in range(np.uint64(y_hi) * row_size, slice_size):
            target[first + i] = 0.0
        for y in range(y_lo, y_hi):
            row = first + np.uint64(y) * row_size
            for i in range(np.uint64(x_lo * 16)):
                target[row + i] = 0.0
            for i in range(np.uint64(x_hi * 16), row_size):
                target[row + i] = 0.0
            # the row's first input read, at column x_lo: never negative where the loop runs (unsigned offsets)
            first_read = ((n * channels + c0) * depth + sz) * height * width + (y - pad_h) * width + x_lo - pad_w
            for xx in range(x_hi - x_lo):
                position = row + np.uint64((x_lo + xx) * 16)
                read = np.uint64(first_read + xx)
                for k in range(valid):
                    value = source[read + np.uint64(k) * plane]
                    target[position + np.uint64(k)] = value
                    if not math.isfinite(value):
                        non_finite += 1  # pragma: no cover - NaN and infinities: tests/test_nonfinite.py
                for k in range(valid, 16):
                    target[position + np.uint64(k)] = 0.0
    return non_finite


@parallel_kernel(cache=True)
def _pack_phases(x, groups, cblocks, pad_h, pad_w, stride_h, stride_w, phase_h, phase_w, packed):
    """packed (N, G, CB, 1, HP, WP, 16)[n, g, cb, 0, y, x, k] = the phase planes (``conv._phase_planes``) of x (N, C,
    1, H, W) at phase channel q = 16 cb + k of group g, (y, x): x[n, g * Cg + q // (s_h s_w), 0, y s_h + f_h - pad_h,
    x s_w + f_w - pad_w] for q = (c s_h + f_h) s_w + f_w; zero outside x, past the planes' (``phase_h``,
    ``phase_w``) and past the group's Cg s_h s_w phase channels. A strided convolution's phase planes packed for the
    fused kernel in one pass, without writing the planes (AlexNet's first layer at batch 16: the planes and their
    packing took 1.5 ms of its 14.3). One task per (sample, group, block); per row, each lane's columns inside x are
    copied without a test. Returns how many of the values read are NaN or infinite (as ``_pack_input``)."""
    batch, channels, _, height, width = x.shape
    group_in = channels // groups
    phases = stride_h * stride_w
    rows, columns = packed.shape[4], packed.shape[5]
    source = x.reshape(-1)
    target = packed.reshape(-1)
    row_size = columns * 16
    non_finite = 0
    for task in prange(batch * groups * cblocks):
        cb = task % cblocks
        g = (task // cblocks) % groups
        n = task // (cblocks * groups)
        for y in range(rows):
            row = np.uint64((task * rows + y) * row_size)
            for k in range(16):
                q = cb * 16 + k
                in_y = y * stride_h + (q % phases) // stride_w - pad_h
                shift = q % stride_w - pad_w  # the input column of phase column j is j * stride_w + shift
                lo = min(max(-(shift // stride_w), 0), phase_w)
                hi = min(max((width - 1 - shift) // stride_w + 1, lo), phase_w)
                if q >= group_in * phases or y >= phase_h or in_y < 0 or in_y >= height:
                    lo = hi = 0
                lane = row + np.uint64(k)
                for j in range(lo):
                    target[lane + np.uint64(j * 16)] = 0.0
                # the first input this lane reads, at column lo: never negative (unsigned offsets)
                read = np.uint64(((n * channels + g * group_in + q // phases) * height + in_y) * width
                                 + lo * stride_w + shift) if hi > lo else np.uint64(0)
                for j in range(hi - lo):
                    value = source[read + np.uint64(j * stride_w)]
                    target[lane + np.uint64((lo + j) * 16)] = value
                    if not math.isfinite(value):
                        non_finite += 1  # pragma: no cover - NaN and infinities: tests/test_nonfinite.py
                for j in range(hi, columns):
                    target[lane + np.uint64(j * 16)] = 0.0
    return non_finite


def _tiles_per_task(tiles: int, groups: int, width: int) -> int:
    # two strips of ``width`` tiles per task let a block of U serve twice from the first-level cache while V still
    # fits the second (measured 5-30% faster on AlexNet's third layer), unless that leaves too few tasks for the
    # threads
    return 2 * width if groups * -(-tiles // (2 * width)) >= tuning.MIN_TASKS else width


def _chunks(tile_tasks: int, out_blocks: int, threads: int) -> int:
    """Into how many shares a call splits each group's blocks of 16 output channels: enough that every thread has a
    task where the groups' tile blocks (``tile_tasks``) are fewer than the threads, else one. Each share transforms
    its tiles' inputs again: NiN's 192 -> 192 3 x 3 layer on 8 x 8 at batch 1, 16 tiles, one task, ran on one of
    two threads (0.24 ms on one or two)."""
    return max(1, min(out_blocks, -(-threads // tile_tasks)))


class _Plan(NamedTuple):
    """What one geometry's calls share: the kernel, its sizes and the scratch sizes (see :func:`_plan`)."""

    kernel: object
    weights: object
    depth: bool
    reduction_taps: int
    group_out: int
    out_blocks: int
    padded_in: int
    in_blocks: int
    tiles_h: int
    tiles_w: int
    per_task: int
    chunks: int
    packed_shape: tuple
    transformed_size: int
    depth_arguments: tuple
    tiles_size: int
    sums_size: int
    scratch_size: int
    constants: np.ndarray


@lru_cache(maxsize=128)
def _plan(x_shape, weight_shape, out_shape, stride_d, dilation_d, groups, phases, dtype: str, threads: int,
          running: int) -> _Plan:
    """The :class:`_Plan` of a call of :func:`conv_forward` for these shapes and parameters, ``threads`` the threads
    Numba starts and ``running`` those a parallel call runs on now: remembered, since working it out took more time
    than the kernel on a small layer (NiN's 192 -> 192 3 x 3 on 8 x 8 at batch 1)."""
    batch, channels = x_shape[0], x_shape[1] * phases[0] * phases[1]
    out_channels, out_d, out_h, out_w = out_shape[1:]
    depth = phases == (1, 1) and transforms_depth(weight_shape, stride_d, dilation_d, out_d)
    taps_d, window = weight_shape[2], (weight_shape[3], weight_shape[4])
    # a depth-transformed window's kernels by (3, rows, columns), its sums over the channels alone
    key, reduction_taps = ((taps_d,) + window, 1) if depth else (window, taps_d)
    group_in, group_out = channels // groups, out_channels // groups
    rows = row_tile(weight_shape)
    elements = winograd_kernels.ELEMENTS[key]
    # the tiles' planes: output planes, or pairs of them
    tile_planes = -(-out_d // winograd_kernels.DEPTH_OUTPUTS) if depth else out_d
    tiles_h, tiles_w = -(-out_h // rows), -(-out_w // TILE)
    tiles = batch * tile_planes * tiles_h * tiles_w
    in_blocks, out_blocks = -(-group_in // _LANES), -(-group_out // _LANES)
    # two blocks of output channels a product step where a group has two (``tuning.WINOGRAD_PAIRED``)
    paired = tuning.WINOGRAD_PAIRED and out_blocks > 1
    width = winograd_kernels.PAIRED_WIDTH if paired else WIDTH
    per_task = _tiles_per_task(tiles, groups, width)
    padded_in = in_blocks * _LANES
    packed_depth = (out_d - 1) * stride_d + (taps_d - 1) * dilation_d + 1
    if depth:
        # the last tile's second plane, past an odd count of output planes, reads zeros
        packed_depth = tile_planes * winograd_kernels.DEPTH_OUTPUTS + taps_d - 1
    # room for the inputs that the last tiles' sub-windows read past the output
    packed_shape = (batch, groups, in_blocks, packed_depth, tiles_h * rows + winograd_kernels.REACH[window[0]],
                    tiles_w * TILE + winograd_kernels.REACH[window[1]], _LANES)
    return _Plan(
        kernel=winograd_kernels.PAIRED[key] if paired else winograd_kernels.KERNELS[key + (WIDTH,)],
        weights=winograd_kernels.WEIGHTS[key], depth=depth, reduction_taps=reduction_taps, group_out=group_out,
        out_blocks=out_blocks, padded_in=padded_in, in_blocks=in_blocks, tiles_h=tiles_h, tiles_w=tiles_w,
        per_task=per_task, chunks=_chunks(groups * -(-tiles // per_task), out_blocks, running),
        packed_shape=packed_shape,
        transformed_size=groups * out_blocks * elements * reduction_taps * padded_in * _LANES,
        depth_arguments=() if depth else (stride_d, _depth_offsets(taps_d, dilation_d)),
        tiles_size=threads * elements * (per_task * reduction_taps * padded_in + _LANES),
        sums_size=threads * (1 + paired) * elements * (per_task + 1) * _LANES,
        scratch_size=threads * winograd_kernels.SCRATCH[key] * _LANES,
        constants=np.array(winograd_kernels.CONSTANTS, dtype))


def conv_forward(x, weight, bias, out, padding, stride_d, dilation_d, groups, phases=(1, 1), relu=False,
                 finite_only=False) -> bool:
    """out[n, o] = bias[o] + sum_{c, taps} weight[o, c, taps] * x[n, group(o) + c, window(taps)], by Winograd; with
    ``relu``, 0 where that is negative. With ``finite_only``, where x holds a NaN or an infinity (which the
    transforms would spread past its windows), nothing is computed and ``out`` is left as it was: returns whether
    ``out`` holds the result.

    x (N, C, D, H, W); weight (O, C // groups, KD, KH, KW), KH 1, 3 or 5 and KW 3 or 5; bias (O,); out (N, O,
    OD, OH, OW), overwritten (its shape fixes the padding after each axis); ``padding`` the (front, top, left) padding,
    ``stride_d`` and ``dilation_d`` the depth's stride and dilation; all C-contiguous, one float dtype.

    With ``phases`` (s_h, s_w) other than (1, 1), the convolution of x's phase planes at that stride instead
    (``conv._phase_planes``, as packed by ``_pack_phases``: a strided 2D convolution whose phases see 3 x 3 taps):
    x (N, C, 1, H, W), weight (O, C s_h s_w // groups, 1, 3, 3) the phase weights, ``padding`` the strided
    convolution's.
    """
    dtype = x.dtype
    threads = numba.config.NUMBA_NUM_THREADS
    plan = _plan(x.shape, weight.shape, out.shape, stride_d, dilation_d, groups, phases, dtype.str, threads,
                 numba.get_num_threads())
    packed = workspace("winograd input", math.prod(plan.packed_shape), dtype).reshape(plan.packed_shape)
    lane_bias = np.zeros((groups, plan.out_blocks * _LANES), dtype)
    lane_bias[:, :plan.group_out] = bias.reshape(groups, plan.group_out)
    if phases == (1, 1):
        non_finite = _pack_input(x, groups, plan.in_blocks, padding[0], padding[1], padding[2], packed)
    else:
        # the phase planes span the output plus a window's reach (``conv._planes_shape``)
        non_finite = _pack_phases(x, groups, plan.in_blocks, padding[1], padding[2], phases[0], phases[1],
                                  out.shape[3] + SUB - 1, out.shape[4] + SUB - 1, packed)
    if finite_only and non_finite:  # pragma: no cover - NaN and infinities: tests/test_nonfinite.py
        return False
    transformed = prepared(
        weight, "winograd depth weights" if plan.depth else "winograd weights",
        plan.transformed_size, dtype,
        lambda transformed: run_vectorized(
            plan.weights, weight, plan.constants, plan.group_out, plan.out_blocks, plan.padded_in, transformed,
            workspace("winograd weight rows", threads * winograd_kernels.WEIGHT_SCRATCH, dtype).reshape(threads, -1)),
        (groups,))
    run_vectorized(
        plan.kernel, packed, transformed, lane_bias.reshape(-1), plan.constants, out,
        groups, plan.group_out, plan.out_blocks, plan.tiles_h, plan.tiles_w, *plan.depth_arguments, plan.per_task,
        plan.chunks, relu_floor(dtype, relu),
        workspace("winograd tiles", plan.tiles_size, dtype).reshape(threads, -1),
        workspace("winograd sums", plan.sums_size, dtype).reshape(threads, -1),
        workspace("winograd scratch", plan.scratch_size, dtype).reshape(threads, -1))
    return True
