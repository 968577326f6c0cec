"""Pooling kernels for the CPU: max and average pooling over 3 spatial axes (1D and 2D are views with leading
singleton axes), and global average pooling.

Arrays are (N, C, D, H, W) and C-contiguous; ``kernel``, ``stride``, ``padding`` and ``dilation`` are tuples of
three ints; the output's shape carries ``ceil_mode``. Each (n, c) plane is independent: the planes are handed out
to the threads in at most ``TASKS`` ranges, each with its own scratch rows.

The forward passes compute a block of outputs at a time in a scratch row, in passes: each pass adds taps of the
window to every output of the block that they reach, reading the input at a fixed stride, a loop that LLVM
vectorises. A pass takes the whole window in H and W for the common windows of ``WHOLE_WINDOWS`` (compiled with
literal sizes: the taps stay in registers and the strided loads become shuffles; a window whose taps overlap the
next window's, as AlexNet's 3 taps of stride 2, first copies its rows into ``stride`` contiguous phases, since LLVM
gathers the overlapping tap in place), over the rows of the block where the window's height is inside the input;
elsewhere, one tap at a time (any stride). For each output the
taps come in window order. A block is one output row, or, for rows shorter than ``SHORT_ROW`` where the strides
allow it, all the rows of a plane (of one output depth) at once: output (oh, ow) sits at ``oh * width + ow`` in the
scratch, ``width = stride_h * W / stride_w``, so that a tap's input is ``stride_w * position + offset`` for the
whole block and each pass is one long loop rather than one short loop per row. Between the rows such a pass reads
inputs that belong to no output of it (columns past the row, and at the row ends the columns where a tap falls in
the padding); those positions are outside the interior columns (where every tap of the row is inside the input),
so only the border columns take the junk, and they are computed again one window at a time
(``scalar.window_max`` / ``window_sum``) after the passes. The passes are laid out once per geometry, in Python
(``_forward_plan``), and are the same for every plane.

The common windows without padding take a shorter route where rows are long (``ROW_WINDOWS``, ``_row_window``):
every window is whole, so each output row is computed straight from its windows' inputs, the whole window (depth
included) in registers, and stored once, with no plan, no scratch row and no pass per depth tap. Overlapping windows
are split into phases a row at a time, as above; the maximum alone (no indices) takes each column's maximum over the
window's rows as it splits them (``_split_column_maxima``), then the maximum of a window's columns; the average sums
each of their windows in a float64 register, and every other window of the route in a float64 row, and divides
once. Rows shorter than ``SHORT_ROW`` take the route where their windows do not overlap: each row computes a
constant block of outputs, running on into the next rows' (``_short_rows_of``).

The maximum's backward zeroes each plane and adds each output's gradient at its index; where 1D windows tile the input
(``TILE_WIDTHS``), it writes each input once instead, its window's gradient or zero (``_max_backward_tiles_task``).

The average's backward takes a tiling route where the windows tile the input (``TILE_WIDTHS``): each input's
gradient is then its one window's share, spread over the window's rows. Elsewhere, over long rows: where the window
is one of ``PHASE_WINDOWS`` (AlexNet's 3 x 3 of stride 2), by stride phases of the rows and the columns, each pair of
taps adding its shares to every input of a phase in one long run (the shares sit in rows with zeros around, so that
one offset reaches them all), and the phases are stored interleaved; else each input row sums the shares of the
output rows that cover it, from rows of shares spread at the stride with zeros between, a tap at a time. A share is
the gradient times the float64 reciprocal of its window's size (``_share_reciprocals``).

The tasks compile with NumPy's error model, as the parallel loops that call them do (``_task``).
"""
from functools import lru_cache
import math

import numpy as np
from numba import njit, prange

from numconv.geometry import (
    avg_pool_divisor, covering_output_range, phase_taps, valid_output_range, window_position,
)
from numconv.kernels.cpu.parallel import parallel_kernel
from numconv.kernels.scalar import raises_max, takes_max_at_once, window_max, window_sum

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "max_pool_forward", "max_pool_forward_values", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
]

#: output rows shorter than this are pooled a whole plane (of one output depth) per pass, where the strides allow,
#: unless the rows route takes them (``_short_rows_of``)
SHORT_ROW = 16
#: the rows route computes the rows of windows split into phases in blocks of this many outputs, the last block
#: overlapping the one before where a row is no multiple of it (``_row_span``); ``SHORT_ROW`` keeps shorter rows
#: off the route
ROW_BLOCK = 16
#: the outputs that the rows route computes for each row shorter than ``SHORT_ROW`` (``_short_rows_of``), the maximum's
#: and the average's: constants, so that a row is whole vectors and no remainder. The average's is longer because
#: LLVM unrolls a float64 loop of 16 into scalars before it vectorises loops (the rows of LeNet's 2 x 2 average over
#: (64, 6, 28, 28) in a loop of their own, one thread: 147 us with 16, 56 with 24, 76 with 32)
SHORT_BLOCK = 16
SHORT_AVERAGE_BLOCK = 24
#: the average takes the rows route over short rows of at least this many outputs (shorter ones a plane at a time):
#: LeNet's 2 x 2, one thread, best of 5 x 200 calls (us): rows of 14, over (64, 6, 28, 28), 134-146 -> 81-83; rows of
#: 5, (64, 16, 10, 10), 79-82 -> 69-79; rows of 4, (32, 64, 8, 8), 95-98 -> 102-117, a block of 24 for 4 outputs
SHORT_AVERAGE_ROW = 6
#: the planes are handed out to the threads in at most this many ranges, each with its own scratch rows
TASKS = 64
#: the passes that compute values alone, max-pooling without indices and average pooling, run parallel from an
#: input of this many elements (times the threads beyond the first; the other kernels from
#: ``parallel.PARALLEL_MIN_WORK``): a window reads several inputs per output and a row of outputs has a fixed cost,
#: so two threads pay on smaller arrays than in an element-wise pass. One process, one thread against two, best of 5 x
#: 40 calls (us): NiN's 3 x 3 of stride 2 on (1, 96, 32, 32) 59 -> 42 (its average pooling on (1, 192, 16, 16) 82 ->
#: 62), AlexNet's on (1, 256, 27, 27) 128 -> 97; 2 x 2 windows on (8, 6, 28, 28), 37,632 elements, 20 -> 20 and 27 ->
#: 25 (max, average), on (4, 48, 28, 28) 48 -> 42 and 71 -> 50; on (1, 32, 28, 28), 25,088, 16 -> 17 and 21 -> 21.
#: The passes with indices keep the common threshold, under which LeNet-5's training steps at batch 32 compile no
#: parallel loop on a first run
VALUES_MIN_WORK = 2 ** 15
#: the windows (height, width, stride along W; dilation 1) whose passes take the whole window in H and W, each
#: compiled with its sizes as constants (the taps stay in registers, the strided loads become shuffles): LeNet's and
#: C3D's 2 x 2 and AlexNet's and NiN's 3 x 3 of stride 2, the 3 x 3 of stride 1 that keeps the size, and 1D windows
#: of 2, 3 and 4 (M5's). Every other window goes a tap at a time, through one more specialisation that holds a loop
#: for each stride of 1 to 4 (a constant stride lets LLVM vectorise the strided loads) and one with the stride as a
#: variable. Each entry is a specialisation of every pooling kernel (per dtype) that a first call compiles (LeNet-5's
#: pooling with indices: 1.6 s on one thread, 4.4 s for the parallel version, which large calls take), so the list
#: stays short.
WHOLE_WINDOWS = ((2, 2, 2), (3, 3, 2), (3, 3, 1), (1, 2, 2), (1, 3, 2), (1, 4, 4))
#: the windows (depth, height, width, stride along W) that the rows route takes (``_row_window``): without padding
#: and dilation, with rows of ``SHORT_ROW`` outputs or more, every window is whole, and each output row is computed
#: in registers from its windows' inputs and stored once, with no plan, no scratch row and no pass per depth tap
#: (the 2 x 2 x 2 pooling of a video, (4, 64, 16, 112, 112): 11.5 -> 6.7 ms for the maximum, 14.4 -> 5.9 for the
#: average). The windows of ``WHOLE_WINDOWS`` that come without padding, and C3D's 2 x 2 x 2; each is one more
#: specialisation of the three forward kernels, compiled on a first call. Rows shorter than ``SHORT_ROW`` take the
#: route too where their windows do not overlap (no more taps than the stride), lie inside the input as it is (no
#: widening) and hold a power of two of inputs (``_short_rows_of``).
ROW_WINDOWS = ((1, 2, 2, 2), (2, 2, 2, 2), (1, 3, 3, 2), (1, 1, 2, 2), (1, 1, 3, 2), (1, 1, 4, 4))
#: the windows (taps of a stride phase at most, stride along W) whose rows the average's backward, where they are
#: long, computes by stride phases (``_phase_window``): widths of 3 and 4 of stride 2, as AlexNet's and NiN's 3 x 3
#: (a phase of 2 taps and one of 1), any height and depth. Each is one more specialisation.
PHASE_WINDOWS = ((2, 2),)
#: the window widths for which the average's backward, and the maximum's over 1D planes, take the tiling route
#: (``_tile_width``): windows as long as their strides along every axis, without padding, tile the input, so each
#: input's gradient is its one window's share, written as many times as the window is wide (a constant, which turns the
#: stores into shuffles) into each of the window's rows (the video's 2 x 2 x 2: 21 -> 8.2 ms; M5's 4: 8.9 -> 3.1). Each
#: is one more specialisation. For the maximum, M5's 4 of stride 4 over (32, 128, 3981): 3.4-3.6 -> 2.6-2.9 ms on a Zen
#: 5, three processes alternating; on 2D and 3D planes its rows measured slower than the scatter
#: (``_backward_tile_width``).
TILE_WIDTHS = (2, 3, 4)

# the plan's header: rows per block, scratch row width, interior columns [lo, hi), positions per block, blocks,
# passes, scratch length, the rows [lo, hi) that the passes compute
_HEADER = 10
# fields per pass: scratch positions [lo, hi), input offset, first tap's number, padded end, its reach
_PASS = 6
#: a pass that ends at its block's last row runs on to a multiple of this many positions (past the block's end,
#: into scratch that nothing reads, where the input allows it): no scalar remainder after LLVM's vector loop
ROUND_UP = 32
#: float64 lanes of a 512-bit vector: the phases route's rows of shares are a whole number of them
VECTOR = 8

#: each parallel kernel's work per task: compiled with NumPy's error model (a division by zero gives an infinity or a
#: NaN), as the parallel loops are; Python's checks every division for a zero divisor, a branch that keeps LLVM from
#: vectorising the average's divisions (AlexNet's 3 x 3 average pooling: 1.35 -> 0.95 ms)
_task = njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, error_model="numpy")


def _ints(values) -> tuple:
    return tuple(int(v) for v in values)


def _whole_window(kernel, stride, dilation) -> tuple:
    """(height, width, stride along W) of a window in ``WHOLE_WINDOWS``, which the passes take whole, or (0, 0, 0)
    where they take one tap each."""
    window = (kernel[1], kernel[2], stride[2])
    return window if dilation[1] == dilation[2] == 1 and window in WHOLE_WINDOWS else (0, 0, 0)


@lru_cache(maxsize=256)
def _forward_plan(in_shape, out_shape, kernel, stride, padding, dilation) -> np.ndarray:
    """The passes of a forward pooling, the same for every plane, in one read-only int64 array: the header (rows per
    block, scratch row width, interior columns [lo, hi), positions per block, blocks, passes, scratch length, the
    rows [lo, hi) that the passes compute), the border columns, per block (output depth, first row, first pass, end
    of its passes) and per pass (scratch positions [lo, hi), the input offset in the plane of its first
    position, the number in window order of its first tap, the end rounded up to ``ROUND_UP`` positions for a pass
    that ends at the block's last row, the input offset of the last tap the rounded pass reads).

    Blocks come in output order; in a block, the passes of each output come in window order. A window pass takes the
    rows of the block where every tap of the window's height is inside the input, over the interior columns; a
    tap's pass, every column where the tap is inside the input."""
    (in_d, in_h, in_w), (out_d, out_h, out_w) = in_shape, out_shape
    tap_ranges = [valid_output_range(in_w, out_w, stride[2], padding[2], dilation[2], tw) for tw in range(kernel[2])]
    lo, hi = max(r[0] for r in tap_ranges), min(r[1] for r in tap_ranges)
    hi = max(lo, hi)
    # the rows where every tap of the window's height is inside the input
    row_ranges = [valid_output_range(in_h, out_h, stride[1], padding[1], dilation[1], th) for th in range(kernel[1])]
    full_lo, full_hi = max(r[0] for r in row_ranges), min(r[1] for r in row_ranges)
    width = stride[1] * in_w // stride[2]
    rows = out_h if out_w < SHORT_ROW and stride[1] * in_w % stride[2] == 0 and width >= out_w else 1
    if rows == 1:
        width = out_w
    whole = _whole_window(kernel, stride, dilation)[0] > 0 and lo < hi
    if not whole:
        full_lo, full_hi = 0, out_h
    window_tail = (kernel[1] - 1) * in_w + kernel[2] - 1
    blocks, passes = [], []

    def add(first, end, offset, tap, tail, to_end):
        padded = first + -(-(end - first) // ROUND_UP) * ROUND_UP if to_end else end
        passes.extend((first, end, offset, tap, padded, offset + (padded - 1 - first) * stride[2] + tail))

    for od in range(out_d):
        for first_row in range(0, out_h, rows):
            last_row = first_row + rows
            blocks += [od, first_row, len(passes) // _PASS]
            # the rows of the block that window passes take (the others are computed window by window after them),
            # or that the taps take one at a time
            full_first, full_last = max(full_lo, first_row), min(full_hi, last_row)
            for td in range(kernel[0]):
                i_d = window_position(od, stride[0], padding[0], dilation[0], td)
                if i_d < 0 or i_d >= in_d:
                    continue
                if whole and full_first < full_last:
                    i_h = window_position(full_first, stride[1], padding[1], 1, 0)
                    add((full_first - first_row) * width + lo, (full_last - 1 - first_row) * width + hi,
                        (i_d * in_h + i_h) * in_w + window_position(lo, stride[2], padding[2], 1, 0),
                        td * kernel[1] * kernel[2], window_tail, full_last == last_row)
                for th, (row_lo, row_hi) in enumerate(row_ranges if not whole else ()):
                    row_lo, row_hi = max(row_lo, first_row), min(row_hi, last_row)
                    for tw, (tap_lo, tap_hi) in enumerate(tap_ranges):
                        if row_lo >= row_hi or tap_lo >= tap_hi:
                            continue
                        i_h = window_position(row_lo, stride[1], padding[1], dilation[1], th)
                        i_w = window_position(tap_lo, stride[2], padding[2], dilation[2], tw)
                        add((row_lo - first_row) * width + tap_lo, (row_hi - 1 - first_row) * width + tap_hi,
                            (i_d * in_h + i_h) * in_w + i_w, (td * kernel[1] + th) * kernel[2] + tw, 0,
                            row_hi == last_row)
            blocks.append(len(passes) // _PASS)
    border = list(range(lo)) + list(range(hi, out_w))
    size = (rows - 1) * width + out_w
    header = [rows, width, lo, hi, size, len(blocks) // 4, len(passes) // _PASS, max([size] + passes[4::_PASS]),
              max(0, full_lo), max(full_lo, full_hi)]
    plan = np.array(header + border + blocks + passes, np.int64)
    plan.flags.writeable = False
    return plan


def _layout(x, out, kernel, stride, padding, dilation) -> tuple:
    """The plan and what the compiled loops depend on, for a forward pooling: (window tuples as ints, plan, (window
    height, window width, stride along W of a window in ``WHOLE_WINDOWS``, all 0 for any other window; the border
    columns, or None where there is no border: neither border columns nor rows that the passes leave out), widened
    size, the rows route's window (``_row_window``, or None)). The three sizes travel as the lengths of tuples of
    zeros, which are part of their types: each window of ``WHOLE_WINDOWS`` compiles its own loops with constant sizes
    (numba's ``literally`` would do the same, but goes through the compiler on every call); without a border, the
    window-by-window code (and ``scalar.window_max``, a first run's compilation) is not compiled at all; the size each
    plane is widened to (``_widened``), or (0, 0, 0). Remembered per geometry."""
    return _layout_of(x.shape[2:], out.shape[2:], tuple(kernel), tuple(stride), tuple(padding), tuple(dilation))


@lru_cache(maxsize=256)
def _layout_of(in_shape, out_shape, kernel, stride, padding, dilation) -> tuple:
    window = _ints(kernel), _ints(stride), _ints(padding), _ints(dilation)
    widened = _widened(_ints(in_shape), _ints(out_shape), *window)
    plan = _forward_plan(widened or _ints(in_shape), _ints(out_shape), *window)
    border = plan[_HEADER:_HEADER + out_shape[2] - (plan[3] - plan[2])]
    every_row = plan[8] == 0 and plan[9] == out_shape[1]
    # the plan's rule (``_forward_plan``): whole windows where there are interior columns, and then only whole
    # windows, so that a specialisation holds either the whole window's loop or the tap loops, never both
    sizes = _whole_window(window[0], window[1], window[3]) if plan[2] < plan[3] else (0, 0, 0)
    return (window, plan, (*((0,) * size for size in sizes), None if every_row and not len(border) else border),
            widened or (0, 0, 0), _row_window(_ints(in_shape), _ints(out_shape), *window))


def _widened(in_shape, out_shape, kernel, stride, padding, dilation):
    """The (D, H, W) that the windows span where, without padding, the last ones overhang the input's end
    (``ceil_mode``), else None. Each plane is then pooled from a copy widened to that size with values that never
    change a result (-inf for the maximum, -0.0 for a sum), so that every window is whole and no output is left
    to the window-by-window border code (which took 60% of NiN's 3 x 3 ceil_mode poolings). Overhanging only at
    the end, the filler comes after every input in window order: the first maximum stays an input's."""
    if any(padding):
        return None
    spans = tuple(max(size, window_position(out - 1, s, 0, d, k - 1) + 1)
                  for size, out, k, s, d in zip(in_shape, out_shape, kernel, stride, dilation))
    return spans if spans != tuple(in_shape) else None


@lru_cache(maxsize=256)
def _row_window(in_shape, out_shape, kernel, stride, padding, dilation):
    """The rows route's window (``ROW_WINDOWS``) as literals: tuples of zeros as long as its depth, height, width
    and stride along W, which compile the route's loops with those sizes as constants; None where the route does
    not take the pooling (padding, dilation, another window, rows shorter than ``SHORT_ROW`` unless their windows
    do not overlap, lie inside the input and hold a power of two of inputs, whose average a multiplication by the
    exact inverse gives: ``_short_rows_of``). Without padding every window is whole: inside the input, or inside its
    widened copy where ceil_mode's last windows overhang (the maximum alone of windows split into phases repeats the
    last row and column instead: ``_split_column_maxima``)."""
    window = (kernel[0], kernel[1], kernel[2], stride[2])
    if any(padding) or any(d != 1 for d in dilation) or window not in ROW_WINDOWS:
        return None
    inputs = math.prod(kernel)
    if out_shape[2] < SHORT_ROW and (kernel[2] > stride[2] or inputs & (inputs - 1) or _widened(
            in_shape, out_shape, kernel, stride, padding, dilation)):
        return None
    return tuple((0,) * size for size in window)


def _short_rows_of(row, block):
    """The rows route's loop, for one row operation ``row`` (``_short_maximum_row``, ``_short_index_row``,
    ``_short_average_row``), over task ``task`` of ``tasks``' planes where rows are shorter than ``SHORT_ROW``
    (``_row_window``: windows that do not overlap, read in place, each of a power of two of inputs), a row at a time
    in output order. A row computes a block of ``block`` outputs where the block's windows stay inside the input and
    its outputs inside the task's: those past the row's end land on the next rows' outputs, which write them again
    after it. Elsewhere (a task's last rows) a row computes its own outputs alone. The rows' offsets advance by
    addition.

    One loop per operation, so that a kernel compiles only its own: with the three in one loop, Numba inlined all of
    them before it pruned the two a kernel does not take (first calls on LeNet's 2 x 2 over (32, 6, 28, 28),
    one-threaded and parallel: the maximum 2.6 and 3.4 s -> 1.1 and 2.9, with indices 2.3 and 4.2 -> 1.4 and 2.8, the
    average 2.2 and 3.7 -> 1.1 and 2.2). The loop is inlined into the parallel loop rather than called as a task
    function like the other routes' (which the serial and parallel versions share): a row's work is a vector or two,
    and as a task function LeNet's 2 x 2 over (64, 6, 28, 28) took 1.2-1.4x as long (one thread: maximum 66 against
    47-54 us, average 101 against 81-83); the price is compiling the loop in each version."""

    @njit(cache=True, inline="always")
    def short_rows(x, out, indices, inverse, task, tasks, stride, window_depth, window_rows, window_taps,
                   literal_step):
        planes, out_d, out_h, out_w = x.shape[0] * x.shape[1], out.shape[2], out.shape[3], out.shape[4]
        in_d, in_h, in_w = x.shape[2], x.shape[3], x.shape[4]
        source, targets = x.reshape(-1), out.reshape(-1)
        depth, rows, taps, step = len(window_depth), len(window_rows), len(window_taps), len(literal_step)
        # the last input that a block's windows read, from the first
        reach = (block - 1) * step + taps - 1 + (depth - 1) * in_h * in_w + (rows - 1) * in_w
        first, last = task * planes // tasks, (task + 1) * planes // tasks
        end = last * out_d * out_h * out_w
        to = first * out_d * out_h * out_w
        for plane in range(first, last):
            for od in range(out_d):
                origin = od * stride[0] * in_h * in_w
                start = plane * in_d * in_h * in_w + origin
                for oh in range(out_h):
                    if out_w <= block and to + block <= end and start + reach < source.shape[0]:
                        row(source, start, targets, indices, inverse, to, block, depth, in_h, in_w, rows, taps, step,
                            origin)
                    else:
                        row(source, start, targets, indices, inverse, to, out_w, depth, in_h, in_w, rows, taps, step,
                            origin)
                    start += stride[1] * in_w
                    origin += stride[1] * in_w
                    to += out_w

    return short_rows


@njit(cache=True, inline="always")
def _short_maximum_row(source, start, targets, indices, inverse, to, count, depth, in_h, in_w, rows, taps, step,
                       origin):
    """``_max_value_row`` in ``_short_rows_of``'s terms: ``indices`` and ``inverse`` unused (None)."""
    _max_value_row(source, start, targets, to, count, depth, in_h * in_w, rows, in_w, taps, step)


@njit(cache=True, inline="always")
def _short_index_row(source, start, targets, indices, inverse, to, count, depth, in_h, in_w, rows, taps, step,
                     origin):
    """``_max_index_row`` in ``_short_rows_of``'s terms, ``indices`` flat; ``inverse`` unused (None)."""
    _max_index_row(source, start, targets, indices, to, count, depth, in_h * in_w, rows, in_w, taps, step,
                   origin, in_h * in_w, in_w)


@njit(cache=True, inline="always")
def _short_average_row(source, start, targets, indices, inverse, to, count, depth, in_h, in_w, rows, taps, step,
                       origin):
    """``_average_row`` in ``_short_rows_of``'s terms; ``indices`` unused (None)."""
    _average_row(source, start, targets, to, count, depth, in_h * in_w, rows, in_w, taps, step, inverse)


_short_maximum_rows = _short_rows_of(_short_maximum_row, SHORT_BLOCK)
_short_index_rows = _short_rows_of(_short_index_row, SHORT_BLOCK)
_short_average_rows = _short_rows_of(_short_average_row, SHORT_AVERAGE_BLOCK)


@parallel_kernel(cache=True, min_work=VALUES_MIN_WORK)
def _short_maxima(x, out, tasks, stride, window_depth, window_rows, window_taps, literal_step):
    """The rows route's short rows of the maximum (``_short_rows_of``), over ``tasks`` tasks. A kernel of its own, so
    that a model whose rows are all short compiles none of the longer rows' loops."""
    for task in prange(tasks):
        _short_maximum_rows(x, out, None, None, np.int64(task), tasks, stride, window_depth, window_rows, window_taps,
                            literal_step)


@parallel_kernel(cache=True, min_work=VALUES_MIN_WORK)
def _short_averages(x, out, inverse, tasks, stride, window_depth, window_rows, window_taps, literal_step):
    """The rows route's short rows of the average, ``inverse`` the inverse of the window's size (``_short_rows_of``)."""
    for task in prange(tasks):
        _short_average_rows(x, out, None, inverse, np.int64(task), tasks, stride, window_depth, window_rows,
                            window_taps, literal_step)


@parallel_kernel(cache=True)
def _short_indices(x, out, indices, tasks, stride, window_depth, window_rows, window_taps, literal_step):
    """The rows route's short rows of the maximum and its index (``_short_rows_of``), parallel from the common
    threshold, as the other passes with indices (not ``VALUES_MIN_WORK``)."""
    for task in prange(tasks):
        _short_index_rows(x, out, indices.reshape(-1), None, np.int64(task), tasks, stride, window_depth,
                          window_rows, window_taps, literal_step)


def _row_phases(tasks: int, out_w: int, row_window: tuple, dtype, rows: int = 0):
    """Each task's scratch for ``_split_phases`` of one output row's windows (``rows`` rows of them where given, else
    the window's), where a window overlaps the next; else None (as ``_phases``)."""
    window_rows, taps, step = (len(size) for size in row_window[1:])
    return np.empty((tasks, (rows or window_rows) * step * (out_w + taps)), dtype) if taps > step > 1 else None


def _widened_scratch(tasks: int, plan: np.ndarray, widened: tuple, dtype):
    """Each task's widened plane (``_widened``): its elements and as many more as the last passes' rounding reads;
    None where the planes are pooled in place, which leaves the widening out of the compiled loops."""
    if not any(widened):
        return None
    passes = plan[_HEADER + 4 * plan[5]:]  # widened, the plan has no border columns
    reach = int(passes[5::_PASS].max()) + 1 if len(passes) else 0
    return np.empty((tasks, max(math.prod(widened), reach)), dtype)


def _phases(tasks: int, plan: np.ndarray, literals: tuple, dtype):
    """Each task's scratch for ``_split_phases``, as long as the longest pass's windows, where a whole window
    overlaps the next (more taps than its stride); else None, which leaves that path out of the compiled loops."""
    rows, taps, step = (len(size) for size in literals[:3])
    return np.empty((tasks, rows * step * (plan[7] + taps)), dtype) if taps > step > 1 else None


@njit(cache=True, inline="always")
def _max_value_run(source, start, best, lo, hi, rows, row_step, taps, step):
    """best[v] for v in [lo, hi) takes, of source[start + (v - lo) * step + r * row_step + t] for r in [0, rows)
    and t in [0, taps) in turn, each where ``raises_max``. Unsigned indices: no negative-index wrap-around, which
    keeps LLVM from vectorising; literal ``rows``, ``taps`` and ``step`` are unrolled and folded, so that the loop
    over v is the one LLVM vectorises."""
    first = np.uint64(lo)
    for v in range(first, np.uint64(hi)):
        at = np.uint64(start) + (v - first) * np.uint64(step)
        current = best[v]
        for r in range(rows):
            for t in range(taps):
                value = source[at + np.uint64(r * row_step + t)]
                current = value if raises_max(value, current) else current
        best[v] = current


@njit(cache=True, inline="always")
def _max_index_run(source, start, best, where, lo, hi, rows, row_step, taps, step, tap):
    """best[v], where[v] for v in [lo, hi) take, of source[start + (v - lo) * step + r * row_step + t] in turn, each
    with its tap's number ``tap + r * taps + t`` where ``takes_max_at_once`` (``where < 0``: nothing yet). The tap's
    number rather than the input's index: a constant of the pass, in 32 bits, so that the vectors hold as many lanes
    as the values' (``_tap_indices`` turns it into the index)."""
    first = np.uint64(lo)
    for v in range(first, np.uint64(hi)):
        at = np.uint64(start) + (v - first) * np.uint64(step)
        current = best[v]
        held = where[v]
        for r in range(rows):
            for t in range(taps):
                value = source[at + np.uint64(r * row_step + t)]
                take = takes_max_at_once(value, current, held < 0)
                current = value if take else current
                held = np.int32(tap + r * taps + t) if take else held
        best[v] = current
        where[v] = held


@njit(cache=True, inline="always")
def _split_phases(source, start, count, rows, row_step, taps, step, phases):
    """The inputs of ``count`` windows of ``rows`` x ``taps`` taps at stride ``step`` (more taps than the stride:
    each window overlaps the next) as ``step`` contiguous phases per window row: phases[(r * step + q) * (count +
    taps) + k] = source[start + r * row_step + k * step + q], so that tap t of window k is element k + t // step of
    phase t % step. Read in place, LLVM gathered the tap that overlaps the next window (3 taps of stride 2: a gather
    per 8 outputs), which held AlexNet's 3 x 3 max-pooling to a quarter of the memory's speed; this copy's loop is
    the full interleaved group it turns into shuffles. Only inputs that the windows read are read."""
    length = count + taps
    for r in range(rows):
        row = np.uint64(start) + np.uint64(r * row_step)
        for k in range(np.uint64(count)):
            for q in range(step):
                phases[np.uint64((r * step + q) * length) + k] = source[row + k * np.uint64(step) + np.uint64(q)]
        for q in range(step):
            for k in range(np.uint64(count), np.uint64(count + (taps - 1 - q) // step)):
                phases[np.uint64((r * step + q) * length) + k] = source[row + k * np.uint64(step) + np.uint64(q)]


@njit(cache=True, inline="always")
def _column_maximum(source, at, rows, row_step, present, clamped):
    """The maximum by ``raises_max`` of source[at + r * row_step] for r in [0, rows), rows from ``present`` on
    repeating the last present one where ``clamped``."""
    current = source[at]
    for r in range(1, rows):
        value = source[at + np.uint64((min(r, present - 1) if clamped else r) * row_step)]
        current = value if raises_max(value, current) else current
    return current


@njit(cache=True, inline="always")
def _split_column_maxima(source, start, count, rows, row_step, present, taps, step, phases):
    """``_split_phases`` of one row of ``row_step`` inputs: the maximum by ``raises_max`` of each column over the
    window's ``rows`` rows, phases[q * (count + taps) + k] = max over r of source[start + r * row_step + k * step +
    q], so that a window's maximum is then that of its ``taps`` column maxima (``_max_value_column_row``: a third of
    the taps of AlexNet's and NiN's 3 x 3 per window). Rows from ``present`` on repeat the last present one, and
    columns past the row the last one, where ceil_mode's last windows overhang the input: a repeated input changes no
    maximum, nor its first occurrence, and the plane is read in place rather than from a copy widened with -inf.
    NiN's 3 x 3 of stride 2 with ceil_mode over (16, 96, 32, 32): 0.55 -> 0.37 ms; over (1, 96, 32, 32) 71 -> 49 us,
    in one process, alternating."""
    length = np.uint64(count + taps)
    # windows whose phases all read inside the row, where no row overhangs: rows at a constant distance, unclamped, a
    # loop that LLVM vectorises (rows clamped inside it measured 3-4x slower); the rest take the loop below
    full = np.uint64(min(count, row_step // step) if present >= rows else 0)
    for k in range(full):
        for q in range(step):
            at = np.uint64(q) * length + k
            phases[at] = _column_maximum(source, np.uint64(start) + k * np.uint64(step) + np.uint64(q), rows,
                                         row_step, rows, False)
    last = np.uint64(row_step - 1)
    for q in range(step):
        for k in range(full, np.uint64(count + (taps - 1 - q) // step)):
            at = np.uint64(q) * length + k
            phases[at] = _column_maximum(source, np.uint64(start) + min(k * np.uint64(step) + np.uint64(q), last),
                                         rows, row_step, present, True)


@njit(cache=True, inline="always")
def _phase_offset(r, t, step, length, k):
    """Where tap (r, t) of window k is in ``_split_phases``' layout (``length`` elements per phase)."""
    return np.uint64((r * step + t % step) * length + t // step) + k


@njit(cache=True, inline="always")
def _max_value_phase_run(phases, best, lo, hi, rows, taps, step):
    """``_max_value_run`` for positions [lo, hi) from their windows split by ``_split_phases``."""
    first = np.uint64(lo)
    length = hi - lo + taps
    for v in range(first, np.uint64(hi)):
        current = best[v]
        for r in range(rows):
            for t in range(taps):
                value = phases[_phase_offset(r, t, step, length, v - first)]
                current = value if raises_max(value, current) else current
        best[v] = current


@njit(cache=True, inline="always")
def _max_index_phase_run(phases, best, where, lo, hi, rows, taps, step, tap):
    """``_max_index_run`` for positions [lo, hi) from their windows split by ``_split_phases``."""
    first = np.uint64(lo)
    length = hi - lo + taps
    for v in range(first, np.uint64(hi)):
        current = best[v]
        held = where[v]
        for r in range(rows):
            for t in range(taps):
                value = phases[_phase_offset(r, t, step, length, v - first)]
                take = takes_max_at_once(value, current, held < 0)
                current = value if take else current
                held = np.int32(tap + r * taps + t) if take else held
        best[v] = current
        where[v] = held


@njit(cache=True, inline="always")
def _sum_phase_run(phases, total, lo, hi, rows, taps, step):
    """``_sum_run`` for positions [lo, hi) from their windows split by ``_split_phases``: a row at a time, as
    there, the same additions in the same order."""
    first = np.uint64(lo)
    length = hi - lo + taps
    for r in range(rows):
        for v in range(first, np.uint64(hi)):
            current = total[v]
            for t in range(taps):
                current += phases[_phase_offset(r, t, step, length, v - first)]
            total[v] = current


@njit(cache=True, inline="always")
def _row_span(span, count):
    """Positions [lo, hi) of a row of ``count`` outputs (at least ``ROW_BLOCK``) that the rows route's phase rows
    compute in their pass ``span``: 0, the whole blocks; 1, the last ``ROW_BLOCK`` outputs where whole blocks leave a
    remainder (outputs computed again, the same values), else nothing. Both are LLVM's vector loop with no scalar
    remainder: AlexNet's rows of 27 left 11 outputs one at a time (3 x 3 of stride 2 over (16, 96, 55, 55): with
    indices 2.1 -> 1.1 ms, values 1.2 -> 0.95). Rows read in place keep one loop: there the two passes measured
    slower (the video's 2 x 2 x 2 with indices, 9-11 -> 17 ms)."""
    whole = np.uint64(count - count % ROW_BLOCK)
    if span == 0:
        return np.uint64(0), whole
    return (np.uint64(count - ROW_BLOCK) if whole < count else whole), np.uint64(count)


@njit(cache=True, inline="always")
def _max_value_row(source, start, target, to, count, depth, depth_step, rows, row_step, taps, step):
    """target[to + v] for v in [0, count) = the maximum by ``raises_max`` of source[start + v * step + d *
    depth_step + r * row_step + t] over the window's taps in window order (the rows route's). The maximum starts at
    the first tap and stays in a register: a running maximum kept in a scratch row measured 1.3x slower."""
    for v in range(np.uint64(count)):
        at = np.uint64(start) + v * np.uint64(step)
        current = source[at]
        for d in range(depth):
            for r in range(rows):
                for t in range(taps):
                    value = source[at + np.uint64(d * depth_step + r * row_step + t)]
                    current = value if raises_max(value, current) else current
        target[np.uint64(to) + v] = current


@njit(cache=True, inline="always")
def _max_value_blocks(source, start, target, to, count, depth, depth_step, rows, row_step, taps, step):
    """``_max_value_row`` over a row of ``count`` outputs (at least ``ROW_BLOCK``) in blocks of ``ROW_BLOCK``, the last
    ending at the row's end (overlapping the one before: the same values again): each block a vector of every tap,
    with no loop and no scalar remainder (as one loop, a row of 56 left 8 outputs to 4-wide vectors)."""
    first = 0
    while first + ROW_BLOCK <= count:
        _max_value_row(source, start + first * step, target, to + first, ROW_BLOCK, depth, depth_step, rows, row_step,
                       taps, step)
        first += ROW_BLOCK
    if first < count:
        first = count - ROW_BLOCK
        _max_value_row(source, start + first * step, target, to + first, ROW_BLOCK, depth, depth_step, rows, row_step,
                       taps, step)


@njit(cache=True, inline="always")
def _average_row(source, start, target, to, count, depth, depth_step, rows, row_step, taps, step, inverse):
    """target[to + v] for v in [0, count) = the float64 sum of source[start + v * step + d * depth_step + r *
    row_step + t] over the window's taps in window order (``_sum_run``'s) times ``inverse``, the exact inverse of the
    window's size (``_scale_run``'s). The sum stays in a register: the rows route's short rows (``_short_rows_of``),
    where a scratch row's passes cost more than the sums."""
    for v in range(np.uint64(count)):
        at = np.uint64(start) + v * np.uint64(step)
        current = 0.0
        for d in range(depth):
            for r in range(rows):
                for t in range(taps):
                    current += source[at + np.uint64(d * depth_step + r * row_step + t)]
        target[np.uint64(to) + v] = current * inverse


@njit(cache=True, inline="always")
def _max_index_row(source, start, target, indices, to, count, depth, depth_step, rows, row_step, taps, step,
                   origin, plane_depth, plane_row):
    """``_max_value_row``, and indices[to + v] = origin + v * step + d * plane_depth + r * plane_row + t for the
    tap (d, r, t) of that maximum: its flat index in a plane whose slices and rows are ``plane_depth`` and
    ``plane_row`` long (the input's, where the reads are from a widened copy)."""
    for v in range(np.uint64(count)):
        at = np.uint64(start) + v * np.uint64(step)
        current = source[at]
        held = np.int64(0)
        for d in range(depth):
            for r in range(rows):
                for t in range(taps):
                    value = source[at + np.uint64(d * depth_step + r * row_step + t)]
                    take = raises_max(value, current)
                    current = value if take else current
                    held = np.int64(d * plane_depth + r * plane_row + t) if take else held
        target[np.uint64(to) + v] = current
        indices[np.uint64(to) + v] = origin + np.int64(v) * step + held


@njit(cache=True, inline="always")
def _max_value_column_row(phases, target, to, count, taps, step, source, start, rows, row_step, present):
    """``_max_value_row`` for windows of one depth from the column maxima of ``_split_column_maxima`` of the row at
    ``start`` in ``source``: target[to + v] = the maximum of window v's ``taps`` columns. Taken column by column, equal
    numbers may come out in another order than the window's, which only a -0.0 and a 0.0 tell apart: windows whose
    maximum is zero are taken again in window order (``_window_maximum``), so that they come out as the window's
    first, as ``max_pool_forward`` finds it. Column maxima that kept the rows of their first occurrences to order
    ties instead measured 1.3x slower (AlexNet's 3 x 3 of stride 2 over (16, 96, 55, 55): 0.79-0.82 against
    0.60-0.63 ms, alternating; without the check for zeros, 0.53-0.55)."""
    length = count + taps
    zeros = False
    for span in range(2):
        lo, hi = _row_span(span, count)
        for v in range(lo, hi):
            current = phases[_phase_offset(0, 0, step, length, v)]
            for t in range(1, taps):
                value = phases[_phase_offset(0, t, step, length, v)]
                current = value if raises_max(value, current) else current
            target[np.uint64(to) + v] = current
            zeros |= current == 0.0
    if zeros:  # pragma: no cover - signed zeros: tests/test_pool_speed_paths.py (the spec draws no zeros)
        for v in range(np.uint64(count)):
            if target[np.uint64(to) + v] == 0.0:
                target[np.uint64(to) + v] = _window_maximum(source, start, v * np.uint64(step), rows, row_step,
                                                            present, taps)


@njit(cache=True, inline="always")
def _window_maximum(source, start, column, rows, row_step, present, taps):
    """The maximum by ``raises_max`` of the window of ``rows`` x ``taps`` inputs from ``column`` of the row at
    ``start``, in window order (the first of equal ones), rows from ``present`` on and columns past the row
    repeating the last (``_split_column_maxima``'s overhanging windows)."""
    current = -math.inf
    last = np.uint64(row_step - 1)
    for r in range(rows):
        row = np.uint64(start) + np.uint64(min(r, present - 1) * row_step)
        for t in range(taps):
            value = source[row + min(column + np.uint64(t), last)]
            current = value if raises_max(value, current) else current
    return current


@njit(cache=True, inline="always")
def _average_phase_row(phases, target, to, count, rows, taps, step, size, divisors):
    """target[to + v] for v in [0, count) = the float64 sum of the window's taps, split by ``_split_phases`` (in
    ``_sum_phase_run``'s order), divided by ``size * divisors[v]`` (``_divide_run``). The sum stays in a register,
    in blocks of ``ROW_BLOCK`` outputs (``_row_span``), where a float64 scratch row was read and written once per
    window row and once more to divide: AlexNet's 3 x 3 of stride 2 over (16, 96, 55, 55) 1.06 -> 0.76 ms, NiN's
    over (64, 192, 32, 32) 5.1 -> 3.3 (medians of five alternated runs). The windows split into phases (3 taps)
    never have sizes that are all powers of two: no ``_scale_run`` form."""
    length = count + taps
    for span in range(2):
        lo, hi = _row_span(span, count)
        for v in range(lo, hi):
            current = 0.0
            for r in range(rows):
                for t in range(taps):
                    current += phases[_phase_offset(r, t, step, length, v)]
            target[np.uint64(to) + v] = current / (size * divisors[v])


@njit(cache=True, inline="always")
def _max_index_phase_row(phases, target, indices, to, count, rows, taps, step, origin, plane_row):
    """``_max_index_row`` for windows of one depth split by ``_split_phases``."""
    length = count + taps
    for span in range(2):
        lo, hi = _row_span(span, count)
        for v in range(lo, hi):
            current = phases[_phase_offset(0, 0, step, length, v)]
            held = np.int64(0)
            for r in range(rows):
                for t in range(taps):
                    value = phases[_phase_offset(r, t, step, length, v)]
                    take = raises_max(value, current)
                    current = value if take else current
                    held = np.int64(r * plane_row + t) if take else held
            target[np.uint64(to) + v] = current
            indices[np.uint64(to) + v] = origin + np.int64(v) * step + held


@njit(cache=True, inline="always")
def _sum_run(source, start, total, lo, hi, depth, depth_step, rows, row_step, taps, step):
    """total[v] += source[start + (v - lo) * step + d * depth_step + r * row_step + t] in turn, for v in [lo, hi).
    Windows of three rows or more go a row at a time, the same additions in the same order: LLVM's vector loop for
    the whole nine-term chain was not entered on passes as short as AlexNet's rows (27 positions, rounded up to 32;
    rounding up to 64 helped), and a row at a time took AlexNet's 3 x 3 average pooling from 2.9 to 1.9 ms. 2 x 2
    windows keep the one chain."""
    first = np.uint64(lo)
    if rows > 2:
        for d in range(depth):
            for r in range(rows):
                row_start = np.uint64(start) + np.uint64(d * depth_step + r * row_step)
                for v in range(first, np.uint64(hi)):
                    at = row_start + (v - first) * np.uint64(step)
                    current = total[v]
                    for t in range(taps):
                        current += source[at + np.uint64(t)]
                    total[v] = current
        return
    for v in range(first, np.uint64(hi)):
        at = np.uint64(start) + (v - first) * np.uint64(step)
        current = total[v]
        for d in range(depth):
            for r in range(rows):
                for t in range(taps):
                    current += source[at + np.uint64(d * depth_step + r * row_step + t)]
        total[v] = current


@njit(cache=True, inline="always")
def _copy_run(source, start, target, to, count):
    """target[to:to + count] = source[start:start + count], with no check for overlap (numba's slice assignment
    copies the source first when the two might share memory)."""
    for i in range(np.uint64(count)):
        target[np.uint64(to) + i] = source[np.uint64(start) + i]


@njit(cache=True, inline="always")
def _tap_indices(where, start, target, to, count, origin, step, tap_offset):
    """target[to + i] = the flat index in the plane of tap where[start + i] of the output whose window starts at
    ``origin + i * step`` (padding included): that plus the tap's offset."""
    for i in range(np.uint64(count)):
        target[np.uint64(to) + i] = origin + np.int64(i) * step + tap_offset[where[np.uint64(start) + i]]


@njit(cache=True, inline="always")
def _divide_run(total, start, target, to, count, size, divisors):
    """target[to + i] = total[start + i] / (size * divisors[i]) for i in [0, count)."""
    for i in range(np.uint64(count)):
        target[np.uint64(to) + i] = total[np.uint64(start) + i] / (size * divisors[i])


@njit(cache=True, inline="always")
def _scale_run(total, start, target, to, count, scale, inverses):
    """target[to + i] = total[start + i] * (scale * inverses[i]) for i in [0, count): the division by window sizes
    that are powers of two, whose inverses are exact (a multiplication is several times cheaper)."""
    for i in range(np.uint64(count)):
        target[np.uint64(to) + i] = total[np.uint64(start) + i] * (scale * inverses[i])


@njit(cache=True, inline="always")
def _unpack(plan, out_w):
    """(rows, width, lo, hi, size, blocks, where the blocks start, where the passes start, scratch length)."""
    rows, width, lo, hi, size, blocks = plan[0], plan[1], plan[2], plan[3], plan[4], plan[5]
    block_at = _HEADER + out_w - (hi - lo)
    return rows, width, lo, hi, size, blocks, block_at, block_at + 4 * blocks, plan[7]


@njit(cache=True, inline="always")
def _widen_plane(source, at, in_shape, widened, filler, target):
    """target[:D * H * W] = the (d, h, w) plane of ``source`` that starts at ``at``, widened to ``widened`` (D, H,
    W) with ``filler`` after its ends; the rest of ``target`` is filler too. Returns ``target``."""
    in_d, in_h, in_w = in_shape
    wide_d, wide_h, wide_w = widened
    for d in range(in_d):
        for h in range(in_h):
            row = (d * wide_h + h) * wide_w
            _copy_run(source, at + (d * in_h + h) * in_w, target, row, in_w)
            for w in range(in_w, wide_w):
                target[row + w] = filler
        for i in range((d * wide_h + in_h) * wide_w, (d + 1) * wide_h * wide_w):
            target[i] = filler
    for i in range(in_d * wide_h * wide_w, target.shape[0]):
        target[i] = filler
    return target


@njit(cache=True, inline="always")
def _pass_span(plan, at, base, limit):
    """(first position, end, input offset of the first position) of the pass whose fields start at ``at``, for a
    plane at ``base`` of an array of ``limit`` elements: the end rounded up where the rounded pass reads inside."""
    return plan[at], plan[at + 4] if base + plan[at + 5] < limit else plan[at + 1], base + plan[at + 2]


@_task
def _max_values_task(x, out, task, tasks, kernel, stride, padding, dilation, plan, scratch, phases, widened, wide,
                     window_rows, window_taps, literal_step, border):
    """max_pool_forward_values over task ``task`` of ``tasks``' planes, with its rows of ``scratch``, ``phases`` and
    ``wide`` (each plane widened to ``widened`` there first, where that is not (0, 0, 0): ``_widened``).
    ``window_rows``, ``window_taps`` and ``literal_step`` are a whole window's sizes as literals (``_layout``)."""
    planes, channels, in_w, out_h, out_w = x.shape[0] * x.shape[1], x.shape[1], x.shape[4], out.shape[3], \
        out.shape[4]
    best = scratch[task]
    rows, width, lo, hi, size, blocks, block_at, pass_at, _ = _unpack(plan, out_w)
    source = x.reshape(-1)
    row_step = widened[2] if widened[2] else in_w
    targets = out.reshape(-1)
    plane_size = x.shape[2] * x.shape[3] * in_w
    out_plane = out.shape[2] * out_h * out_w
    step = stride[2]
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        if wide is None:  # pooled in place; Numba leaves the other branch out of this specialisation
            reads, base = source, plane * plane_size
        else:
            reads, base = _widen_plane(source, plane * plane_size, x.shape[2:], widened, -math.inf, wide[task]), 0
        n, c = plane // channels, plane % channels
        target = targets[plane * out_plane:(plane + 1) * out_plane]
        for block in range(blocks):
            od, first_row = plan[block_at + 4 * block], plan[block_at + 4 * block + 1]
            for v in range(size):
                best[v] = -math.inf
            for p in range(plan[block_at + 4 * block + 2], plan[block_at + 4 * block + 3]):
                at = pass_at + _PASS * p
                v_lo, v_hi, start = _pass_span(plan, at, base, reads.shape[0])
                if phases is not None:
                    _split_phases(reads, start, v_hi - v_lo, len(window_rows), row_step, len(window_taps),
                                  len(literal_step), phases[task])
                    _max_value_phase_run(phases[task], best, v_lo, v_hi, len(window_rows), len(window_taps),
                                         len(literal_step))
                elif len(window_rows):
                    _max_value_run(reads, start, best, v_lo, v_hi, len(window_rows), row_step, len(window_taps),
                                   len(literal_step))
                elif step == 1:
                    _max_value_run(reads, start, best, v_lo, v_hi, 1, 0, 1, 1)
                elif step == 2:
                    _max_value_run(reads, start, best, v_lo, v_hi, 1, 0, 1, 2)
                elif step == 3:
                    _max_value_run(reads, start, best, v_lo, v_hi, 1, 0, 1, 3)
                elif step == 4:
                    _max_value_run(reads, start, best, v_lo, v_hi, 1, 0, 1, 4)
                else:
                    _max_value_run(reads, start, best, v_lo, v_hi, 1, 0, 1, step)
            for r in range(rows):
                oh = first_row + r
                row = (od * out_h + oh) * out_w
                if border is None or plan[8] <= oh < plan[9]:
                    _copy_run(best, r * width + lo, target, row + lo, hi - lo)
                # the border columns, or a whole row that the passes left out
                if border is not None:
                    whole_row = not plan[8] <= oh < plan[9]
                    for i in range(out_w if whole_row else len(border)):
                        ow = i if whole_row else border[i]
                        target[row + ow] = window_max(x, n, c, od, oh, ow, kernel, stride, padding, dilation)[0]


@parallel_kernel(cache=True, min_work=VALUES_MIN_WORK)
def _max_values_tasks(x, out, kernel, stride, padding, dilation, plan, scratch, phases, widened, wide, window_rows,
                      window_taps, literal_step, border):
    tasks = scratch.shape[0]
    for task in prange(tasks):
        _max_values_task(x, out, np.int64(task), tasks, kernel, stride, padding, dilation, plan, scratch, phases,
                         widened, wide, window_rows, window_taps, literal_step, border)


@njit(cache=True, inline="always")
def _row_geometry(x, source, out, plane, widened, wide, task, filler):
    """(where a task reads plane ``plane`` from, the offset of its first input there, the (H, W) of what it reads,
    where its outputs start) for the rows route: the input itself (``source``, ``x`` flattened once per task: a
    reshape per plane cost LeNet's 2 x 2 pooling a sixth of its time), or the plane widened into ``wide[task]``."""
    plane_size = x.shape[2] * x.shape[3] * x.shape[4]
    first_out = plane * out.shape[2] * out.shape[3] * out.shape[4]
    if wide is None:  # pooled in place; Numba leaves the other branch out of this specialisation
        return source, plane * plane_size, x.shape[3], x.shape[4], first_out
    reads = _widen_plane(source, plane * plane_size, x.shape[2:], widened, filler, wide[task])
    return reads, 0, widened[1], widened[2], first_out


@njit(cache=True, inline="always")
def _row_at(od, oh, out, stride, base, in_h, in_w, first_out):
    """(offset of its first window's first input, offset of its first output) of output row ``oh`` of output depth
    ``od`` of a plane, for the rows route (``_row_geometry``'s plane)."""
    return base + (od * stride[0] * in_h + oh * stride[1]) * in_w, first_out + (od * out.shape[3] + oh) * out.shape[4]


@_task
def _max_values_rows_task(x, out, task, tasks, stride, phases, widened, wide, window_depth, window_rows, window_taps,
                          literal_step):
    """max_pool_forward_values by the rows route (``ROW_WINDOWS``) over task ``task`` of ``tasks``' planes, with its
    row of ``phases`` (``_split_column_maxima``'s, where windows overlap) or of ``wide`` (as ``_max_values_task``); the
    window's sizes are the literals' lengths."""
    planes, out_d, out_h, out_w = x.shape[0] * x.shape[1], out.shape[2], out.shape[3], out.shape[4]
    targets = out.reshape(-1)
    source = x.reshape(-1)
    row_phases = phases[task] if phases is not None else None
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        if phases is not None:  # windows of one depth, read in place (``_split_column_maxima``)
            in_h, in_w = x.shape[3], x.shape[4]
            first_out = plane * out_d * out_h * out_w
            for od in range(out_d):
                for oh in range(out_h):
                    start, to = _row_at(od, oh, out, stride, plane * x.shape[2] * in_h * in_w, in_h, in_w, first_out)
                    present = in_h - oh * stride[1]
                    _split_column_maxima(source, start, out_w, len(window_rows), in_w, present, len(window_taps),
                                         len(literal_step), row_phases)
                    _max_value_column_row(row_phases, targets, to, out_w, len(window_taps), len(literal_step), source,
                                          start, len(window_rows), in_w, present)
            continue
        reads, base, in_h, in_w, first_out = _row_geometry(x, source, out, plane, widened, wide, task, -math.inf)
        # one loop a row, not ``_max_value_blocks``: here, with the arrays flattened in the task, LLVM checks every
        # block for overlap (a widened video plane, (4, 64, 15, 111, 111) in 2 x 2 x 2 with ceil_mode: 10.7-11.6 ms,
        # in blocks 16.7)
        for od in range(out_d):
            for oh in range(out_h):
                start, to = _row_at(od, oh, out, stride, base, in_h, in_w, first_out)
                _max_value_row(reads, start, targets, to, out_w, len(window_depth), in_h * in_w, len(window_rows),
                               in_w, len(window_taps), len(literal_step))


@njit(cache=True, inline="always")
def _max_values_rows_in_place(x, out, source, targets, task, tasks, stride, window_depth, window_rows, window_taps,
                              literal_step):
    """``_max_values_rows_task`` where the windows are read in place and not split into phases, from ``source`` into
    ``targets`` (x and out flattened before the parallel loop: flattened inside it, LLVM can no longer tell that they
    do not overlap, and checks at every row), each row in blocks (``_max_value_blocks``). The video's 2 x 2 x 2 over
    (4, 64, 16, 112, 112): 8.1 -> 6.5 ms (AMD Zen 5, best of 40 alternating in one process; in blocks but flattened
    in the loop, 10.7)."""
    planes, out_d, out_h, out_w = x.shape[0] * x.shape[1], out.shape[2], out.shape[3], out.shape[4]
    in_h, in_w = x.shape[3], x.shape[4]
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        base, first_out = plane * x.shape[2] * in_h * in_w, plane * out_d * out_h * out_w
        for od in range(out_d):
            for oh in range(out_h):
                start, to = _row_at(od, oh, out, stride, base, in_h, in_w, first_out)
                _max_value_blocks(source, start, targets, to, out_w, len(window_depth), in_h * in_w, len(window_rows),
                                  in_w, len(window_taps), len(literal_step))


@parallel_kernel(cache=True, min_work=VALUES_MIN_WORK)
def _max_values_rows(x, out, tasks, stride, phases, widened, wide, window_depth, window_rows, window_taps,
                     literal_step):
    source, targets = x.reshape(-1), out.reshape(-1)
    for task in prange(tasks):
        if phases is None and wide is None:
            _max_values_rows_in_place(x, out, source, targets, np.int64(task), tasks, stride, window_depth,
                                      window_rows, window_taps, literal_step)
        else:
            _max_values_rows_task(x, out, np.int64(task), tasks, stride, phases, widened, wide, window_depth,
                                  window_rows, window_taps, literal_step)


def max_pool_forward_values(x, out, kernel, stride, padding, dilation):
    """out = the maximum of each window: ``max_pool_forward`` without the indices (the same values by the same
    rule: padding never wins, a NaN wins). x (N, C, D, H, W); out (N, C, OD, OH, OW), overwritten."""
    window, plan, literals, widened, row_window = _layout(x, out, kernel, stride, padding, dilation)
    tasks = min(x.shape[0] * x.shape[1], TASKS)
    if row_window is not None and out.shape[4] < SHORT_ROW:
        _short_maxima(x, out, tasks, window[1], *row_window)
        return
    if row_window is not None:
        # windows split into phases take the maximum of their rows first, in one row of phases, from the input
        phases = _row_phases(tasks, out.shape[4], row_window, x.dtype, rows=1)
        wide = None if phases is not None else _widened_scratch(tasks, plan, widened, x.dtype)
        _max_values_rows(x, out, tasks, window[1], phases, widened, wide, *row_window)
        return
    wide = _widened_scratch(tasks, plan, widened, x.dtype)
    _max_values_tasks(x, out, *window, plan, np.empty((tasks, plan[7]), x.dtype),
                      _phases(tasks, plan, literals, x.dtype), widened, wide, *literals)


@_task
def _max_indices_task(x, out, indices, task, tasks, kernel, stride, padding, dilation, plan, scratch, numbers,
                      phases, widened, wide, window_rows, window_taps, literal_step, border):
    """max_pool_forward over task ``task`` of ``tasks``' planes, with its rows of ``scratch``, ``numbers``, ``phases``
    and ``wide`` (as ``_max_values_task``)."""
    planes, channels, in_h, in_w, out_h, out_w = x.shape[0] * x.shape[1], x.shape[1], x.shape[3], x.shape[4], \
        out.shape[3], out.shape[4]
    best, where = scratch[task], numbers[task]
    rows, width, lo, hi, size, blocks, block_at, pass_at, _ = _unpack(plan, out_w)
    tap_offset = np.empty(kernel[0] * kernel[1] * kernel[2], np.int64)
    for td in range(kernel[0]):
        for th in range(kernel[1]):
            for tw in range(kernel[2]):
                tap_offset[(td * kernel[1] + th) * kernel[2] + tw] = \
                    (td * dilation[0] * in_h + th * dilation[1]) * in_w + tw * dilation[2]
    source = x.reshape(-1)
    row_step = widened[2] if widened[2] else in_w
    targets = out.reshape(-1)
    target_indices = indices.reshape(-1)
    plane_size = x.shape[2] * in_h * in_w
    out_plane = out.shape[2] * out_h * out_w
    step = stride[2]
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        if wide is None:  # pooled in place; Numba leaves the other branch out of this specialisation
            reads, base = source, plane * plane_size
        else:
            reads, base = _widen_plane(source, plane * plane_size, x.shape[2:], widened, -math.inf, wide[task]), 0
        n, c = plane // channels, plane % channels
        target = targets[plane * out_plane:(plane + 1) * out_plane]
        target_index = target_indices[plane * out_plane:(plane + 1) * out_plane]
        for block in range(blocks):
            od, first_row = plan[block_at + 4 * block], plan[block_at + 4 * block + 1]
            for v in range(size):
                best[v] = -math.inf
                where[v] = -1
            for p in range(plan[block_at + 4 * block + 2], plan[block_at + 4 * block + 3]):
                at = pass_at + _PASS * p
                v_lo, v_hi, start = _pass_span(plan, at, base, reads.shape[0])
                tap = plan[at + 3]
                if phases is not None:
                    _split_phases(reads, start, v_hi - v_lo, len(window_rows), row_step, len(window_taps),
                                  len(literal_step), phases[task])
                    _max_index_phase_run(phases[task], best, where, v_lo, v_hi, len(window_rows), len(window_taps),
                                         len(literal_step), tap)
                elif len(window_rows):
                    _max_index_run(reads, start, best, where, v_lo, v_hi, len(window_rows), row_step, len(window_taps),
                                   len(literal_step), tap)
                elif step == 1:
                    _max_index_run(reads, start, best, where, v_lo, v_hi, 1, 0, 1, 1, tap)
                elif step == 2:
                    _max_index_run(reads, start, best, where, v_lo, v_hi, 1, 0, 1, 2, tap)
                elif step == 3:
                    _max_index_run(reads, start, best, where, v_lo, v_hi, 1, 0, 1, 3, tap)
                elif step == 4:
                    _max_index_run(reads, start, best, where, v_lo, v_hi, 1, 0, 1, 4, tap)
                else:
                    _max_index_run(reads, start, best, where, v_lo, v_hi, 1, 0, 1, step, tap)
            for r in range(rows):
                oh = first_row + r
                row = (od * out_h + oh) * out_w
                origin = ((od * stride[0] - padding[0]) * in_h + oh * stride[1] - padding[1]) * in_w \
                    + lo * step - padding[2]
                if border is None or plan[8] <= oh < plan[9]:
                    _copy_run(best, r * width + lo, target, row + lo, hi - lo)
                    _tap_indices(where, r * width + lo, target_index, row + lo, hi - lo, origin, step, tap_offset)
                if border is not None:
                    whole_row = not plan[8] <= oh < plan[9]
                    for i in range(out_w if whole_row else len(border)):
                        ow = i if whole_row else border[i]
                        target[row + ow], target_index[row + ow] = window_max(x, n, c, od, oh, ow, kernel, stride,
                                                                              padding, dilation)


@parallel_kernel(cache=True)
def _max_indices_tasks(x, out, indices, kernel, stride, padding, dilation, plan, scratch, numbers, phases, widened,
                       wide, window_rows, window_taps, literal_step, border):
    tasks = scratch.shape[0]
    for task in prange(tasks):
        _max_indices_task(x, out, indices, np.int64(task), tasks, kernel, stride, padding, dilation, plan, scratch,
                          numbers, phases, widened, wide, window_rows, window_taps, literal_step, border)


@_task
def _max_indices_rows_task(x, out, indices, task, tasks, stride, phases, widened, wide, window_depth, window_rows,
                           window_taps, literal_step):
    """max_pool_forward by the rows route over task ``task`` of ``tasks``' planes (as ``_max_values_rows_task``)."""
    planes, out_d, out_h, out_w = x.shape[0] * x.shape[1], out.shape[2], out.shape[3], out.shape[4]
    plane_h, plane_w = x.shape[3], x.shape[4]
    source, targets, target_indices = x.reshape(-1), out.reshape(-1), indices.reshape(-1)
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        reads, base, in_h, in_w, first_out = _row_geometry(x, source, out, plane, widened, wide, task, -math.inf)
        for od in range(out_d):
            for oh in range(out_h):
                start, to = _row_at(od, oh, out, stride, base, in_h, in_w, first_out)
                origin = (od * stride[0] * plane_h + oh * stride[1]) * plane_w
                if phases is not None:
                    _split_phases(reads, start, out_w, len(window_rows), in_w, len(window_taps), len(literal_step),
                                  phases[task])
                    _max_index_phase_row(phases[task], targets, target_indices, to, out_w, len(window_rows),
                                         len(window_taps), len(literal_step), origin, plane_w)
                else:
                    _max_index_row(reads, start, targets, target_indices, to, out_w, len(window_depth), in_h * in_w,
                                   len(window_rows), in_w, len(window_taps), len(literal_step), origin,
                                   plane_h * plane_w, plane_w)


@parallel_kernel(cache=True)
def _max_indices_rows(x, out, indices, tasks, stride, phases, widened, wide, window_depth, window_rows, window_taps,
                      literal_step):
    for task in prange(tasks):
        _max_indices_rows_task(x, out, indices, np.int64(task), tasks, stride, phases, widened, wide, window_depth,
                               window_rows, window_taps, literal_step)


def max_pool_forward(x, out, indices, kernel, stride, padding, dilation):
    """out = the maximum of each window; indices = its position, flat within the (D, H, W) plane (int64).

    Padding never wins. Ties go to the first maximum in window order (depth, then height, then width); a NaN wins
    over any number, and the last NaN over earlier ones, as in PyTorch. x (N, C, D, H, W); out and indices
    (N, C, OD, OH, OW), overwritten.
    """
    window, plan, literals, widened, row_window = _layout(x, out, kernel, stride, padding, dilation)
    tasks = min(x.shape[0] * x.shape[1], TASKS)
    if row_window is not None and out.shape[4] < SHORT_ROW:
        _short_indices(x, out, indices, tasks, window[1], *row_window)
        return
    wide = _widened_scratch(tasks, plan, widened, x.dtype)
    if row_window is not None:
        _max_indices_rows(x, out, indices, tasks, window[1], _row_phases(tasks, out.shape[4], row_window, x.dtype),
                          widened, wide, *row_window)
        return
    _max_indices_tasks(x, out, indices, *window, plan, np.empty((tasks, plan[7]), x.dtype),
                       np.empty((tasks, plan[7]), np.int32), _phases(tasks, plan, literals, x.dtype), widened, wide,
                       *literals)


@njit(cache=True, inline="always")
def _scatter_plane(grads, where, target):
    """target (a plane, flat) = zeros, then grads[i] added at where[i] for every output i in order; returns how many
    indices lie outside the plane, each skipped."""
    # unsigned, as the indices are read: a negative index is then larger than any plane
    in_plane = np.uint64(target.shape[0])
    skipped = 0
    target[:] = 0.0
    for i in range(np.uint64(grads.shape[0])):
        at = np.uint64(where[i])
        if at < in_plane:
            target[at] += grads[i]
        else:
            skipped += 1  # pragma: no cover - indices outside their plane: tests/test_functional.py
    return skipped


@_task
def _scatter_task(grad_output, indices, grad_input, outside, task, tasks):
    """The scatter over task ``task`` of ``tasks``' planes (``_scatter_plane``), its count of indices outside their
    plane in ``outside[task]``."""
    planes = grad_output.shape[0]
    skipped = 0
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        skipped += _scatter_plane(grad_output[plane], indices[plane], grad_input[plane])
    outside[task] = skipped


@njit(cache=True, inline="always")
def _total(counts):
    """The sum of the tasks' counts, in the kernel: with it and the reshapes (``_planes``) in Python, LeNet-5's
    pooling backward, a 34 us call, measured 38-48 us."""
    total = 0
    for task in range(counts.shape[0]):
        total += counts[task]
    return total


@njit(cache=True, inline="always")
def _planes(grad_output, indices, grad_input):
    """The arrays as (planes, elements): the indices are flat within a plane, so each plane's gradient is scattered
    through a flat view."""
    planes = grad_output.shape[0] * grad_output.shape[1]
    return grad_output.reshape(planes, -1), indices.reshape(planes, -1), grad_input.reshape(planes, -1)


@parallel_kernel(cache=True)
def _max_backward_scatter(grad_output, indices, grad_input, outside):
    grads, where, targets = _planes(grad_output, indices, grad_input)
    tasks = outside.shape[0]
    for task in prange(tasks):
        _scatter_task(grads, where, targets, outside, np.int64(task), tasks)
    return _total(outside)


@_task
def _max_backward_tiles_task(grad_output, indices, grad_input, outside, task, tasks, window_taps):
    """max_pool_backward by the tiling route over task ``task`` of ``tasks``' planes of one row each (flat, as
    ``_scatter_task``'s): windows as long as their stride (``len(window_taps)``), so each input is in one window at
    most, and its gradient is that window's where the window's index points at it, else zero, written once, with no
    zeroing pass and no scatter. Each index found in its window counts once; a plane where fewer than all are found
    (an index outside its window, which a pooling of this geometry never gives) is scattered instead. A gradient
    enters as ``_scatter_plane`` adds it to zero (a -0.0 comes out 0.0)."""
    planes, out_w, in_w = grad_output.shape[0], grad_output.shape[1], grad_input.shape[1]
    width = len(window_taps)
    # whole windows, then the inputs of a last window that overhangs (ceil_mode) or of none (floor mode)
    whole = min(in_w // width, out_w)
    skipped = 0
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        grads, where, target = grad_output[plane], indices[plane], grad_input[plane]
        found = 0
        for ow in range(whole):
            # where in its window the index points (before or past it: larger)
            column = np.uint64(where[ow] - ow * width)
            value = grads[ow] + 0.0
            found += column < np.uint64(width)
            for t in range(width):
                target[ow * width + t] = value if column == np.uint64(t) else 0.0
        for i_w in range(whole * width, in_w):
            ow = i_w // width
            hit = ow < out_w and where[ow] == i_w
            found += hit
            target[i_w] = grads[ow] + 0.0 if hit else 0.0
        if found != out_w:  # pragma: no cover - an index outside its window: tests/test_cuda.py
            skipped += _scatter_plane(grads, where, target)
    outside[task] = skipped


@parallel_kernel(cache=True)
def _max_backward_tiles(grad_output, indices, grad_input, outside, window_taps):
    grads, where, targets = _planes(grad_output, indices, grad_input)
    tasks = outside.shape[0]
    for task in prange(tasks):
        _max_backward_tiles_task(grads, where, targets, outside, np.int64(task), tasks, window_taps)
    return _total(outside)


def max_pool_backward(grad_output, indices, grad_input, kernel, stride, padding, dilation):
    """grad_input[flat index] += grad_output for every window: the gradient goes to each window's maximum.
    Returns how many indices lie outside [0, plane size), each skipped (the caller raises where any does).

    grad_output and indices (N, C, OD, OH, OW); grad_input (N, C, D, H, W), overwritten; ``kernel``, ``stride``,
    ``padding`` and ``dilation`` the pooling's, which only choose the route: where 1D windows tile the input
    (``TILE_WIDTHS``) each input is written once (``_max_backward_tiles_task``; M5's 4 of stride 4 over (32, 128,
    3981): 3.4-3.6 -> 2.6-2.9 ms), else each plane is zeroed and scattered into.
    """
    # every task writes its count (no zeroing pass)
    outside = np.empty(min(grad_output.shape[0] * grad_output.shape[1], TASKS), np.int64)
    tile_width = _backward_tile_width(grad_input.shape[2:], tuple(kernel), tuple(stride), tuple(padding),
                                      tuple(dilation))
    if tile_width is not None:
        return _max_backward_tiles(grad_output, indices, grad_input, outside, tile_width)
    return _max_backward_scatter(grad_output, indices, grad_input, outside)


@lru_cache(maxsize=256)
def _backward_tile_width(in_shape, kernel, stride, padding, dilation):
    """The tiling route's window width for max_pool_backward (``_tile_width``), where the planes are 1D; else None.
    Rows of 2D and 3D planes measured slower than the scatter (LeNet's 2 x 2 over (64, 6, 28, 28): 0.033 -> 0.13 ms;
    the video's 2 x 2 x 2: 7.1 -> 9.3)."""
    if tuple(in_shape[:2]) != (1, 1) or dilation[2] != 1:
        return None
    return _tile_width(_ints(kernel), _ints(stride), _ints(padding), (0, 0, 0))


@lru_cache(maxsize=256)
def _divisors(in_shape, out_shape, kernel, stride, padding, padding_end, count_include_pad) -> np.ndarray:
    """Each output's window size along (depth, height, width), one row per axis (``avg_pool_divisor``)."""
    divisors = np.zeros((3, max(out_shape)), np.int64)
    for axis in range(3):
        for o in range(out_shape[axis]):
            divisors[axis, o] = avg_pool_divisor(o, in_shape[axis], kernel[axis], stride[axis], padding[axis],
                                                 padding_end[axis], count_include_pad)
    divisors.flags.writeable = False
    return divisors


@lru_cache(maxsize=256)
def _share_reciprocals(in_shape, out_shape, kernel, stride, padding, padding_end, count_include_pad) -> np.ndarray:
    """(OD, OH, OW): 1 / the window's size (``_divisors``) of each output, rounded to float64, the factor of its
    gradient's share in the average's backward. A multiplication where a division per output took a sixth of
    AlexNet's backward; for one term (the tiling route) the float32 rounding of the float64 product equals that of
    the float64 quotient for every window smaller than 2 ** 27 (a quotient of a float32 by an integer lies at least
    2 ** -25 / size, relatively, from a float32 rounding boundary, the product within 2 ** -52 of it)."""
    divisors = _divisors(in_shape, out_shape, kernel, stride, padding, padding_end, count_include_pad)
    sizes = divisors[0, :out_shape[0], None, None] * divisors[1, None, :out_shape[1], None] \
        * divisors[2, None, None, :out_shape[2]]
    reciprocals = 1.0 / sizes
    reciprocals.flags.writeable = False
    return reciprocals


@lru_cache(maxsize=256)
def _divisors_and_inverses(in_shape, out_shape, kernel, stride, padding, padding_end, count_include_pad) -> tuple:
    """(``_divisors``, their inverses where every size is a power of two (unused entries 0), else an empty array)."""
    divisors = _divisors(in_shape, out_shape, kernel, stride, padding, padding_end, count_include_pad)
    used = divisors[divisors > 0]
    if np.any(used & (used - 1)):
        inverses = np.zeros((3, 0))
    else:
        inverses = np.zeros(divisors.shape)
        np.divide(1.0, divisors, out=inverses, where=divisors > 0)
    # read-only either way: one array type, one compiled loop
    inverses.flags.writeable = False
    return divisors, inverses


@_task
def _avg_task(x, out, task, tasks, kernel, stride, padding, plan, divisors, inverses, scratch, phases, widened, wide,
              window_rows, window_taps, literal_step, border):
    """avg_pool_forward over task ``task`` of ``tasks``' planes, with its float64 row of ``scratch`` and its rows of
    ``phases`` and ``wide`` (as ``_max_values_task``); ``inverses`` are the window sizes' inverses where every size
    is a power of two, else empty."""
    planes, channels, in_w, out_h, out_w = x.shape[0] * x.shape[1], x.shape[1], x.shape[4], out.shape[3], \
        out.shape[4]
    total = scratch[task]
    rows, width, lo, hi, size, blocks, block_at, pass_at, _ = _unpack(plan, out_w)
    source = x.reshape(-1)
    row_step = widened[2] if widened[2] else in_w
    targets = out.reshape(-1)
    plane_size = x.shape[2] * x.shape[3] * in_w
    out_plane = out.shape[2] * out_h * out_w
    step = stride[2]
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        if wide is None:  # pooled in place; Numba leaves the other branch out of this specialisation
            reads, base = source, plane * plane_size
        else:
            reads, base = _widen_plane(source, plane * plane_size, x.shape[2:], widened, -0.0, wide[task]), 0
        n, c = plane // channels, plane % channels
        target = targets[plane * out_plane:(plane + 1) * out_plane]
        for block in range(blocks):
            od, first_row = plan[block_at + 4 * block], plan[block_at + 4 * block + 1]
            for v in range(size):
                total[v] = 0.0
            for p in range(plan[block_at + 4 * block + 2], plan[block_at + 4 * block + 3]):
                at = pass_at + _PASS * p
                v_lo, v_hi, start = _pass_span(plan, at, base, reads.shape[0])
                if phases is not None:
                    _split_phases(reads, start, v_hi - v_lo, len(window_rows), row_step, len(window_taps),
                                  len(literal_step), phases[task])
                    _sum_phase_run(phases[task], total, v_lo, v_hi, len(window_rows), len(window_taps),
                                   len(literal_step))
                elif len(window_rows):
                    _sum_run(reads, start, total, v_lo, v_hi, 1, 0, len(window_rows), row_step, len(window_taps),
                             len(literal_step))
                elif step == 1:
                    _sum_run(reads, start, total, v_lo, v_hi, 1, 0, 1, 0, 1, 1)
                elif step == 2:
                    _sum_run(reads, start, total, v_lo, v_hi, 1, 0, 1, 0, 1, 2)
                elif step == 3:
                    _sum_run(reads, start, total, v_lo, v_hi, 1, 0, 1, 0, 1, 3)
                elif step == 4:
                    _sum_run(reads, start, total, v_lo, v_hi, 1, 0, 1, 0, 1, 4)
                else:
                    _sum_run(reads, start, total, v_lo, v_hi, 1, 0, 1, 0, 1, step)
            for r in range(rows):
                oh = first_row + r
                row = (od * out_h + oh) * out_w
                window = divisors[0, od] * divisors[1, oh]
                if border is None or plan[8] <= oh < plan[9]:
                    if inverses.size == 0:
                        _divide_run(total, r * width + lo, target, row + lo, hi - lo, window, divisors[2, lo:])
                    else:
                        _scale_run(total, r * width + lo, target, row + lo, hi - lo,
                                   inverses[0, od] * inverses[1, oh], inverses[2, lo:])
                if border is not None:
                    whole_row = not plan[8] <= oh < plan[9]
                    for i in range(out_w if whole_row else len(border)):
                        ow = i if whole_row else border[i]
                        target[row + ow] = window_sum(x, n, c, od, oh, ow, kernel, stride, padding) / (
                            window * divisors[2, ow])


@parallel_kernel(cache=True, min_work=VALUES_MIN_WORK)
def _avg_tasks(x, out, kernel, stride, padding, plan, divisors, inverses, scratch, phases, widened, wide,
               window_rows, window_taps, literal_step, border):
    tasks = scratch.shape[0]
    for task in prange(tasks):
        _avg_task(x, out, np.int64(task), tasks, kernel, stride, padding, plan, divisors, inverses, scratch, phases,
                  widened, wide, window_rows, window_taps, literal_step, border)


@_task
def _avg_rows_task(x, out, task, tasks, stride, divisors, inverses, scratch, phases, widened, wide, window_depth,
                   window_rows, window_taps, literal_step):
    """avg_pool_forward by the rows route over task ``task`` of ``tasks``' planes: windows split into phases are
    summed in registers (``_average_phase_row``), the others an output row at a time in the task's float64 row of
    ``scratch`` (as ``_avg_task``, whose sums and divisions these are). The scratch sums run on to the
    scratch row's length, a multiple of ``ROUND_UP`` (windows past the row's end, never stored), where the input
    reaches: no scalar remainder after LLVM's vector loop (AlexNet's 27 outputs a row: 0.98 -> 0.88 ms)."""
    planes, out_d, out_h, out_w = x.shape[0] * x.shape[1], out.shape[2], out.shape[3], out.shape[4]
    source, targets = x.reshape(-1), out.reshape(-1)
    total = scratch[task]
    rounded = total.shape[0]
    step = len(literal_step)
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        reads, base, in_h, in_w, first_out = _row_geometry(x, source, out, plane, widened, wide, task, -0.0)
        # the last input that a rounded row's windows read, from its first
        reach = (rounded - 1) * step + max(step, len(window_taps)) - 1 + (len(window_depth) - 1) * in_h * in_w \
            + (len(window_rows) - 1) * in_w
        for od in range(out_d):
            for oh in range(out_h):
                start, to = _row_at(od, oh, out, stride, base, in_h, in_w, first_out)
                if phases is not None:
                    _split_phases(reads, start, out_w, len(window_rows), in_w, len(window_taps), step, phases[task])
                    _average_phase_row(phases[task], targets, to, out_w, len(window_rows), len(window_taps), step,
                                       divisors[0, od] * divisors[1, oh], divisors[2])
                    continue
                count = rounded if start + reach < reads.shape[0] else out_w
                for v in range(np.uint64(count)):
                    total[v] = 0.0
                _sum_run(reads, start, total, 0, count, len(window_depth), in_h * in_w, len(window_rows), in_w,
                         len(window_taps), step)
                if inverses.size == 0:
                    _divide_run(total, 0, targets, to, out_w, divisors[0, od] * divisors[1, oh], divisors[2])
                else:
                    _scale_run(total, 0, targets, to, out_w, inverses[0, od] * inverses[1, oh], inverses[2])


@parallel_kernel(cache=True, min_work=VALUES_MIN_WORK)
def _avg_rows(x, out, stride, divisors, inverses, scratch, phases, widened, wide, window_depth, window_rows,
              window_taps, literal_step):
    tasks = scratch.shape[0]
    for task in prange(tasks):
        _avg_rows_task(x, out, np.int64(task), tasks, stride, divisors, inverses, scratch, phases, widened, wide,
                       window_depth, window_rows, window_taps, literal_step)


def avg_pool_forward(x, out, kernel, stride, padding, padding_end, count_include_pad):
    """out = the window's sum divided by its size; the size counts padded positions when ``count_include_pad``
    (PyTorch's rule: a ceil_mode window overhanging the padding is clipped). ``padding`` comes before each axis,
    ``padding_end`` after it.

    x (N, C, D, H, W); out (N, C, OD, OH, OW), overwritten. The sums run in float64, in window order, as
    ``scalar.window_sum``'s.
    """
    window, plan, literals, widened, row_window = _layout(x, out, kernel, stride, padding, (1, 1, 1))
    tasks = min(x.shape[0] * x.shape[1], TASKS)
    if row_window is not None and SHORT_AVERAGE_ROW <= out.shape[4] < SHORT_ROW:
        # windows that are whole, each of a power of two of inputs (``_row_window``): no divisors per output
        _short_averages(x, out, 1.0 / math.prod(window[0]), tasks, window[1], *row_window)
        return
    # the shapes are tuples of ints already, the window's too (``_layout``): no conversion per call
    divisors = _divisors_and_inverses(x.shape[2:], out.shape[2:], *window[:3], tuple(padding_end),
                                      bool(count_include_pad))
    wide = _widened_scratch(tasks, plan, widened, x.dtype)
    if row_window is not None and out.shape[4] >= SHORT_ROW:
        rounded = -(-out.shape[4] // ROUND_UP) * ROUND_UP
        _avg_rows(x, out, window[1], *divisors, np.empty((tasks, rounded), np.float64),
                  _row_phases(tasks, out.shape[4], row_window, x.dtype), widened, wide, *row_window)
        return
    _avg_tasks(x, out, *window[:3], plan, *divisors, np.empty((tasks, plan[7]), np.float64),
               _phases(tasks, plan, literals, x.dtype), widened, wide, *literals)


@njit(cache=True, inline="always")
def _spread_run(spread, start, total, count, taps):
    """total[i] += spread[start + i + t] for t in [0, taps) in turn, for i in [0, count): where ``spread`` holds a row's
    shares at the stride, tap ``taps - 1 - t``'s term, the outputs in order."""
    for i in range(np.uint64(count)):
        current = total[i]
        for t in range(taps):
            current += spread[np.uint64(start) + i + np.uint64(t)]
        total[i] = current


@_task
def _avg_backward_task(grad_output, grad_input, task, tasks, kernel, stride, padding, reciprocals, inner, scratch,
                       spread, window_rows, window_taps):
    """avg_pool_backward over task ``task`` of ``tasks``' planes: each input's terms (its windows' gradient times
    ``reciprocals``, ``_share_reciprocals``) summed in float64, in output order, and rounded once. ``window_rows``
    and ``window_taps`` are tuples whose lengths are the window's height and width where the loops take it whole
    (else empty).

    Short rows (``spread`` empty): output row by output row, each share is added to the inputs of its window in a
    float64 copy of the input depth slice (``inner``: the output rows [0, 1) and columns [2, 3) whose windows lie
    inside the input in H and W, taken with the literal window). Long rows: input row by input row, from each
    output row that covers it, ``spread`` holding that row's shares at ``margin + stride * ow`` and zeros between,
    so that tap tw's term at input column iw is ``spread[margin + iw + padding - tw]``: shifted copies, added a
    whole row at a time (the taps from the last: the outputs in order)."""
    channels, out_d, out_h, out_w = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3], \
        grad_output.shape[4]
    in_d, in_h, in_w = grad_input.shape[2], grad_input.shape[3], grad_input.shape[4]
    total = scratch[task]
    planes = grad_output.shape[0] * channels
    sources = grad_output.reshape(-1)
    targets = grad_input.reshape(-1)
    out_plane, slice_size = out_d * out_h * out_w, in_h * in_w
    height = len(window_rows) if len(window_rows) else kernel[1]
    width = len(window_taps) if len(window_taps) else kernel[2]
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        source = sources[plane * out_plane:(plane + 1) * out_plane]
        for i_d in range(in_d):
            target = targets[(plane * in_d + i_d) * slice_size:(plane * in_d + i_d + 1) * slice_size]
            d_lo, d_hi = covering_output_range(i_d, kernel[0], stride[0], padding[0], out_d)
            if spread.size == 0:
                for f in range(np.uint64(slice_size)):
                    total[f] = 0.0
                for od in range(d_lo, d_hi):
                    for oh in range(out_h):
                        row = (od * out_h + oh) * out_w
                        origin = (oh * stride[1] - padding[1]) * in_w - padding[2]
                        inside = inner[0] <= oh < inner[1]
                        for ow in range(out_w):
                            share = source[row + ow] * reciprocals[od, oh, ow]
                            if inside and inner[2] <= ow < inner[3]:
                                at = np.uint64(origin + ow * stride[2])
                                for r in range(height):
                                    for t in range(width):
                                        total[at + np.uint64(r * in_w + t)] += share
                                continue
                            # a window that reaches into the padding: its taps inside
                            for th in range(kernel[1]):
                                i_h = window_position(oh, stride[1], padding[1], 1, th)
                                for tw in range(kernel[2]):
                                    i_w = window_position(ow, stride[2], padding[2], 1, tw)
                                    if 0 <= i_h < in_h and 0 <= i_w < in_w:
                                        total[i_h * in_w + i_w] += share
                for f in range(np.uint64(slice_size)):
                    target[f] = total[f]
                continue
            # the rows of spread shares of each output depth that covers the slice, then the slice's rows
            margin = kernel[2] - 1
            length = spread.shape[3]
            for od in range(d_lo, d_hi):
                lines = spread[task, od - d_lo]
                for oh in range(out_h):
                    line = lines[oh]
                    for i in range(np.uint64(length)):
                        line[i] = 0.0
                    row = (od * out_h + oh) * out_w
                    for ow in range(out_w):
                        line[margin + ow * stride[2]] = source[row + ow] * reciprocals[od, oh, ow]
            for i_h in range(in_h):
                h_lo, h_hi = covering_output_range(i_h, kernel[1], stride[1], padding[1], out_h)
                for i in range(np.uint64(in_w)):
                    total[i] = 0.0
                for od in range(d_lo, d_hi):
                    for oh in range(h_lo, h_hi):
                        line = spread[task, od - d_lo, oh]
                        if len(window_taps):
                            _spread_run(line, padding[2], total, in_w, len(window_taps))
                        else:
                            for tw in range(kernel[2] - 1, -1, -1):
                                _spread_run(line, margin + padding[2] - tw, total, in_w, 1)
                for i in range(np.uint64(in_w)):
                    target[np.uint64(i_h * in_w) + i] = total[i]


@parallel_kernel(cache=True)
def _avg_backward_tasks(grad_output, grad_input, kernel, stride, padding, reciprocals, inner, scratch, spread,
                        window_rows, window_taps):
    tasks = scratch.shape[0]
    for task in prange(tasks):
        _avg_backward_task(grad_output, grad_input, np.int64(task), tasks, kernel, stride, padding, reciprocals, inner,
                           scratch, spread, window_rows, window_taps)


def _tile_width(kernel, stride, padding, padding_end):
    """The tiling route's window width (``TILE_WIDTHS``) as a literal, a tuple of that many zeros; None where the
    windows do not tile the input (a window longer or shorter than its stride along an axis, or padding)."""
    if any(padding) or any(padding_end) or tuple(kernel) != tuple(stride) or kernel[2] not in TILE_WIDTHS:
        return None
    return (0,) * kernel[2]


def _phase_window(out_shape, kernel, stride):
    """The phases route's stride along W (``PHASE_WINDOWS``) as a literal, a tuple of that many zeros; None where the
    route does not apply (rows of fewer than ``SHORT_ROW`` outputs, or another window)."""
    taps, steps = (kernel[2] - 1) // stride[2] + 1, stride[2]
    if out_shape[2] < SHORT_ROW or (taps, steps) not in PHASE_WINDOWS:
        return None
    return (0,) * steps


@lru_cache(maxsize=256)
def _phase_layout(in_shape, out_shape, kernel, stride, padding) -> tuple:
    """The phases route's scratch (``_avg_backward_phases_task``): (rows of a block of shares, their ``pitch``, the
    float64 totals of a task). Rows are a whole number of vectors; every run is ``_phase_run`` long, so a block's
    rows reach from the first tap's reach above output row 0 to the last input row's reach, and one row and a run's
    rounding more, which runs read past their last row and past the last block."""
    reach = []
    for axis in (1, 2):
        extent = []
        for phase in range(stride[axis]):
            _, shift = phase_taps(phase, kernel[axis], stride[axis], padding[axis])
            extent.append(-(-(in_shape[axis] - phase) // stride[axis]) + shift)
        reach.append((kernel[axis] - 1) // stride[axis] + max(out_shape[axis], *extent))
    pitch = -(-reach[1] // VECTOR) * VECTOR
    rows = -(-in_shape[1] // stride[1])
    lines = reach[0] + 1 + -(-ROUND_UP // pitch)
    return lines, pitch, stride[2] * _phase_run(rows, pitch)


@njit(cache=True, inline="always")
def _phase_run(rows, pitch):
    """A run of the phases route over ``rows`` rows of ``pitch``, rounded up to ``ROUND_UP`` positions (no scalar
    remainder after LLVM's vector loop)."""
    return -(-rows * pitch // ROUND_UP) * ROUND_UP


@njit(cache=True, inline="always")
def _add_run(total, start, shares, offset, count, first):
    """total[start + i] (+)= shares[start + offset + i] for i in [0, count): assigned where ``first``, else added."""
    if first:
        for i in range(np.uint64(count)):
            total[np.uint64(start) + i] = shares[np.uint64(start + offset) + i]
    else:
        for i in range(np.uint64(count)):
            total[np.uint64(start) + i] += shares[np.uint64(start + offset) + i]


@_task
def _avg_backward_phases_task(grad_output, grad_input, task, tasks, kernel, stride, padding, reciprocals, scratch,
                              lines, pitch, window_steps):
    """avg_pool_backward by the phases route over task ``task`` of ``tasks``' planes (``_phase_window``).

    For each input depth slice, the shares of each output depth that covers it go into ``lines[task]`` (one block of
    rows per output depth, rows ``pitch`` long, share (oh, ow) at row ``top + oh``, column ``left + ow``, zeros
    around: written once per task, never overwritten). An input (ph_h + s_h a, ph_w + s_w m) of stride phases
    (ph_h, ph_w) is reached by the phase's taps (``phase_taps``) j_h, j_w through output (a + shift_h - j_h,
    m + shift_w - j_w): for one pair of taps that is one offset into the shares for every (a, m), so each pair adds
    its shares to all of the phases' inputs in one long run (``scratch[task]``: a row of ``pitch`` per a, a block
    per phase along W), output depths first, then the taps from the last (the outputs in order). A run covers every
    column of its rows, and the columns past a phase's inputs take junk that is never stored. Each row of a phase
    along H is then stored interleaving the phases along W."""
    planes = grad_output.shape[0] * grad_output.shape[1]
    out_d, out_h, out_w = grad_output.shape[2], grad_output.shape[3], grad_output.shape[4]
    in_d, in_h, in_w = grad_input.shape[2], grad_input.shape[3], grad_input.shape[4]
    steps = len(window_steps)
    sources, targets = grad_output.reshape(-1), grad_input.reshape(-1)
    total = scratch[task]
    shares = lines[task].reshape(-1)
    block = lines.shape[2] * pitch
    top, left = (kernel[1] - 1) // stride[1], (kernel[2] - 1) // stride[2]
    phase_size = total.size // steps
    groups = in_w // steps
    for i in range(np.uint64(shares.size)):
        shares[i] = 0.0
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        for i_d in range(in_d):
            d_lo, d_hi = covering_output_range(i_d, kernel[0], stride[0], padding[0], out_d)
            for od in range(d_lo, d_hi):
                for oh in range(out_h):
                    at = np.uint64((od - d_lo) * block + (top + oh) * pitch + left)
                    source = np.uint64(((plane * out_d + od) * out_h + oh) * out_w)
                    row_reciprocals = reciprocals[od, oh]
                    for ow in range(np.uint64(out_w)):
                        shares[at + ow] = sources[source + ow] * row_reciprocals[ow]
            target = (plane * in_d + i_d) * in_h * in_w
            for phase_h in range(stride[1]):
                rows = (in_h - phase_h + stride[1] - 1) // stride[1]
                run = _phase_run(rows, pitch)
                taps_h, shift_h = phase_taps(phase_h, kernel[1], stride[1], padding[1])
                for phase_w in range(steps):
                    taps_w, shift_w = phase_taps(phase_w, kernel[2], steps, padding[2])
                    base = phase_w * phase_size
                    first = True
                    for od in range(d_lo, d_hi):
                        for j_h in range(taps_h - 1, -1, -1):
                            for j_w in range(taps_w - 1, -1, -1):
                                offset = (od - d_lo) * block + (top + shift_h - j_h) * pitch + left + shift_w - j_w \
                                    - base
                                _add_run(total, base, shares, offset, run, first)
                                first = False
                    if first:
                        for i in range(np.uint64(run)):
                            total[np.uint64(base) + i] = 0.0
                for a in range(rows):
                    at = np.uint64(target + (phase_h + stride[1] * a) * in_w)
                    row = np.uint64(a * pitch)
                    for m in range(np.uint64(groups)):
                        for phase in range(steps):
                            targets[at + m * np.uint64(steps) + np.uint64(phase)] = \
                                total[np.uint64(phase * phase_size) + row + m]
                    for i_w in range(groups * steps, in_w):
                        targets[at + np.uint64(i_w)] = total[(i_w % steps) * phase_size + a * pitch + i_w // steps]


@parallel_kernel(cache=True)
def _avg_backward_phases(grad_output, grad_input, kernel, stride, padding, reciprocals, scratch, lines, pitch,
                         window_steps):
    tasks = scratch.shape[0]
    for task in prange(tasks):
        _avg_backward_phases_task(grad_output, grad_input, np.int64(task), tasks, kernel, stride, padding, reciprocals,
                                  scratch, lines, pitch, window_steps)


@njit(cache=True, inline="always")
def _spread_shares(shares, target, count, width):
    """target[v * width + t] = shares[v] for t in [0, width), v in [0, count)."""
    for v in range(np.uint64(count)):
        for t in range(width):
            target[v * np.uint64(width) + np.uint64(t)] = shares[v]


@_task
def _avg_backward_tiles_task(grad_output, grad_input, task, tasks, kernel, reciprocals, scratch, window_taps):
    """avg_pool_backward by the tiling route over task ``task`` of ``tasks``' planes: each output row's shares
    (gradient times ``reciprocals``, in float64, in its float64 row of ``scratch``) spread over the rows of its
    windows, and zeros where no window reaches (floor mode's last inputs). One term per input: the rounding of the
    general path's float64 sum, and of the float64 quotient (``_share_reciprocals``)."""
    planes, out_d, out_h, out_w = grad_output.shape[0] * grad_output.shape[1], grad_output.shape[2], \
        grad_output.shape[3], grad_output.shape[4]
    in_d, in_h, in_w = grad_input.shape[2], grad_input.shape[3], grad_input.shape[4]
    sources, targets = grad_output.reshape(-1), grad_input.reshape(-1)
    shares = scratch[task]
    # an input row's gradients, spread once into this row (in the first-level cache), then copied to each input row
    # of the windows: scalar stores straight to memory filled the store buffer (the audio layer's 65 MB 8.0 ms)
    spread = np.empty(in_w, grad_input.dtype)
    width = len(window_taps)
    # whole windows along W, then the columns of a last window that overhangs (ceil_mode) or of none (floor mode)
    whole = min(in_w // width, out_w)
    for plane in range(task * planes // tasks, (task + 1) * planes // tasks):
        for od in range(out_d):
            for oh in range(out_h):
                source = ((plane * out_d + od) * out_h + oh) * out_w
                row_reciprocals = reciprocals[od, oh]
                for v in range(np.uint64(out_w)):
                    shares[v] = sources[np.uint64(source) + v] * row_reciprocals[v]
                _spread_shares(shares, spread, whole, width)
                for i_w in range(whole * width, in_w):
                    spread[i_w] = shares[i_w // width] if i_w // width < out_w else 0.0
                for i_d in range(od * kernel[0], min((od + 1) * kernel[0], in_d)):
                    for i_h in range(oh * kernel[1], min((oh + 1) * kernel[1], in_h)):
                        row = np.uint64(((plane * in_d + i_d) * in_h + i_h) * in_w)
                        for i_w in range(np.uint64(in_w)):
                            targets[row + i_w] = spread[i_w]
        for i_d in range(in_d):
            for i_h in range(in_h):
                if i_d >= out_d * kernel[0] or i_h >= out_h * kernel[1]:
                    row = ((plane * in_d + i_d) * in_h + i_h) * in_w
                    for i_w in range(in_w):
                        targets[row + i_w] = 0.0


@parallel_kernel(cache=True)
def _avg_backward_tiles(grad_output, grad_input, kernel, reciprocals, scratch, window_taps):
    tasks = scratch.shape[0]
    for task in prange(tasks):
        _avg_backward_tiles_task(grad_output, grad_input, np.int64(task), tasks, kernel, reciprocals, scratch,
                                 window_taps)


def avg_pool_backward(grad_output, grad_input, kernel, stride, padding, padding_end, count_include_pad):
    """grad_input[i] = sum over the windows containing i of grad_output / window size.

    grad_output (N, C, OD, OH, OW); grad_input (N, C, D, H, W), overwritten. Each input's terms, its windows'
    gradients times the float64 reciprocal of the window's size (``_share_reciprocals``), are summed in float64, in
    output order, and rounded once.
    """
    window = _ints(kernel), _ints(stride), _ints(padding)
    in_shape, out_shape = _ints(grad_input.shape[2:]), _ints(grad_output.shape[2:])
    reciprocals = _share_reciprocals(in_shape, out_shape, *window, _ints(padding_end), bool(count_include_pad))
    tasks = min(grad_output.shape[0] * grad_output.shape[1], TASKS)
    tile_width = _tile_width(*window, padding_end)
    if tile_width is not None:
        _avg_backward_tiles(grad_output, grad_input, window[0], reciprocals,
                            np.empty((tasks, out_shape[2]), np.float64), tile_width)
        return
    # the long-row routes keep one set of rows of shares per output depth that covers an input depth slice
    depths = -(-window[0][0] // window[1][0])
    phase_window = _phase_window(out_shape, *window[:2])
    if phase_window is not None:
        lines, pitch, totals = _phase_layout(in_shape, out_shape, *window)
        _avg_backward_phases(grad_output, grad_input, *window, reciprocals, np.empty((tasks, totals), np.float64),
                             np.empty((tasks, depths, lines, pitch), np.float64), pitch, phase_window)
        return
    height, width = window[0][1], window[0][2]
    whole = ((0,) * height, (0,) * width) if any(w[:2] == (height, width) for w in WHOLE_WINDOWS) else ((), ())
    if out_shape[2] < SHORT_ROW:
        scratch, spread = np.empty((tasks, in_shape[1] * in_shape[2]), np.float64), np.empty((0, 0, 0, 0))
        inner = _inner_windows(in_shape, out_shape, *window)
    else:
        # a row of spread shares reaches from the first tap's reach left of column 0 to the last output's column
        length = width - 1 + max(window[1][2] * (out_shape[2] - 1) + 1, in_shape[2] + window[2][2])
        scratch = np.empty((tasks, in_shape[2]), np.float64)
        spread = np.empty((tasks, depths, out_shape[1], length), np.float64)
        inner = np.zeros(4, np.int64)
    _avg_backward_tasks(grad_output, grad_input, *window, reciprocals, inner, scratch, spread, *whole)


@lru_cache(maxsize=256)
def _inner_windows(in_shape, out_shape, kernel, stride, padding) -> np.ndarray:
    """The output rows [0, 1) and columns [2, 3) whose windows lie inside the input along H and along W."""
    inner = []
    for axis in (1, 2):
        ranges = [valid_output_range(in_shape[axis], out_shape[axis], stride[axis], padding[axis], 1, tap)
                  for tap in range(kernel[axis])]
        inner += [max(r[0] for r in ranges), min(r[1] for r in ranges)]
    return np.array(inner, np.int64)


@parallel_kernel(cache=True)
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


@parallel_kernel(cache=True)
def global_avg_pool_backward(grad_output, grad_input):
    """grad_input[n, c, :] = grad_output[n, c] / S. grad_output (N, C); grad_input (N, C, S), overwritten."""
    batch, channels, size = grad_input.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane % channels
        share = grad_output[n, c] / size
        for i in range(size):
            grad_input[n, c, i] = share
