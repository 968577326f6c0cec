"""1 x 1 convolutions (any dimension, stride 1, no padding) as one product of matrices per sample and group, on the
blocked kernel of the ``wide`` formulation (``tuning.WIDE_LANES`` positions per vector, ``tuning.WIDE_COLUMNS``
output channels per task) over panels that each task first copies from the input. ``conv.py`` takes it where the
copy pays (``tuning.PACKED_MIN_COLUMNS``).

A forward pass is ``out[n, o] = bias[o] + sum_c weight[o, c] * x[n, c]`` over whole planes; its input gradient the
same with the weight transposed. Read in place (``wide`` over a 'flat' plane), the vectors of one block of positions
lie a plane apart, and a plane of 1024 floats (NiN's 32 x 32) puts all of a block's rows into the same few sets of
the first-level cache, so that every strip of output channels fetched the block again from the second-level one; an
unaligned plane splits every vector load across two cache lines too. A task here takes ``CHUNK`` positions of one
sample and group, copies them from every input channel into a panel of this thread's, ``lanes`` positions of every
channel side by side (aligned, a block's rows contiguous), and runs the blocked kernel over each block of ``lanes``
positions for every output channel of the group, or, where the chunks are fewer than twice the threads (one sample
of a small plane), for its share of them: NiN's 192 -> 192 channels on 8 x 8 at batch 1, one chunk, ran on one of
two threads. On an Intel Xeon, NiN's 192 -> 160 channels on 32 x 32 at batch 32:
8.2-8.4 ms, in place (``wide``) 12.6 in the same run.
"""
from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from numba import njit, prange

from numconv.kernels.cpu import blocked, codegen, tuning
from numconv.kernels.cpu.launch import run_vectorized, workspace
from numconv.kernels.cpu.parallel import RANGES
from numconv.kernels.cpu.runs import load_run, store_run
from numconv.kernels.scalar import relu_floor

_LANES = tuning.WIDE_LANES
_TASKS = getattr(blocked, codegen.kernel_name(tuning.WIDE_LANES, tuning.WIDE_COLUMNS) + "_tasks")
_VECTOR = codegen.LANES
#: positions per task: four blocks of 64, the copy reading a kilobyte of each input row at once (a block a task
#: copied 256 bytes from each of 192 rows a plane apart, and waited on memory: NiN's layer above 10.5-11.1 ms, in
#: chunks of 256 9.3-9.9, in separate runs)
CHUNK = 4 * _LANES


@njit(parallel=True, cache=True)
def _channel_products(source, X, xr, xc, group_size, init_col, out, groups, rows, columns, positions, chunk, parts,
                      panels, voff, ocol, zero, sum_end, init_lane, floor):
    """out (N, groups * columns, positions)[n, g * columns + j, p] = max(floor, init_col[g * columns + j]
    + sum_{r < rows} X[g * group_size + xc[j] + xr[r]] * source (N, groups * rows, positions)[n, g * rows + r, p]),
    all flat (``floor`` as in ``codegen.py``). A task per sample, group, ``chunk`` positions (a multiple of the
    blocked kernel's lanes) and one of ``parts`` ranges of the output channels' strips, each copying its positions;
    panels (threads, rows * chunk): each thread's panel, block s of a chunk holding row r's
    positions at (s * rows + r) * lanes, zeros past the plane's end; ``voff`` to ``init_lane`` the blocked kernel's
    tables (``_kernel_tables``)."""
    lanes = _LANES
    per_plane = (positions + chunk - 1) // chunk
    strips = (columns + tuning.WIDE_COLUMNS - 1) // tuning.WIDE_COLUMNS
    tasks = source.shape[0] // (groups * rows * positions) * groups * per_plane * parts
    ranges = min(tasks, RANGES)
    for at in prange(ranges):
        panel = panels[numba.get_thread_id()]
        x_base = np.empty(1, np.uint64)
        o_base = np.empty(1, np.uint64)
        used = np.empty(1, np.int64)
        for task in range(at * tasks // ranges, (at + 1) * tasks // ranges):
            part = task % parts
            plane = task // parts // per_plane  # sample n, group g: n * groups + g
            first = (task // parts - plane * per_plane) * chunk
            blocks = min(chunk, positions - first + lanes - 1) // lanes
            for r in range(rows):
                start = np.uint64((plane * rows + r) * positions + first)
                for s in range(blocks):
                    at_panel = np.uint64((s * rows + r) * lanes)
                    count = min(lanes, positions - first - s * lanes)
                    if count == lanes:
                        for v in range(0, lanes, _VECTOR):
                            store_run(panel, at_panel + np.uint64(v),
                                      load_run(source, start + np.uint64(s * lanes + v), _VECTOR))
                    else:
                        # the plane's last, partial block: zeros after it (stale numbers could be subnormal)
                        for k in range(lanes):
                            panel[at_panel + np.uint64(k)] = source[start + np.uint64(s * lanes + k)] \
                                if k < count else 0.0
            g = plane % groups
            x_base[0] = g * group_size
            for s in range(blocks):
                o_base[0] = (plane * columns) * positions + first + s * lanes
                used[0] = min(lanes, positions - first - s * lanes)
                _TASKS(panel[s * rows * lanes:(s + 1) * rows * lanes], voff, zero, X, xr, xc, x_base, zero, sum_end,
                       out, ocol, o_base, np.uint64(1), used, init_lane, init_col[g * columns:(g + 1) * columns],
                       floor, part * strips // parts, (part + 1) * strips // parts)


@lru_cache(maxsize=64)
def _kernel_tables(rows: int, columns: int, positions: int, dtype: str) -> tuple:
    """The blocked kernel's tables for a panel of ``rows`` rows and an output of ``columns`` channels of
    ``positions``: (voff, ocol, zero, sum_end, init_lane). Built here, not in the parallel kernel, where each NumPy
    expression would be a parallel loop of its own: seven thread-pool starts a call, 10 of a small call's 14 us."""
    return (np.arange(rows, dtype=np.uint64) * np.uint64(_LANES), np.arange(columns, dtype=np.uint64)
            * np.uint64(positions), np.zeros(1, np.uint64), np.full(1, rows, np.uint64), np.zeros(_LANES, dtype))


@lru_cache(maxsize=64)
def _tables(rows: int, columns: int, transposed: bool):
    """xr, xc of a group's weight (columns, rows) read as X[xc[j] + xr[r]] (its element [j, r]), or, ``transposed``,
    of a weight (rows, columns) read at its element [r, j]."""
    if transposed:
        return (np.arange(rows) * columns).astype(np.uint64), np.arange(columns).astype(np.uint64)
    return np.arange(rows).astype(np.uint64), (np.arange(columns) * rows).astype(np.uint64)


def channel_products(source, weight, init_col, out, groups: int, transposed: bool, relu: bool = False) -> None:
    """out (N, groups * columns, *spatial) = init_col (groups * columns,) + each group's (columns, rows) matrix of
    ``weight`` times source (N, groups * rows, *spatial) at every position: with ``transposed``, the transposed
    (rows, columns) matrices (an input gradient, ``weight`` (groups * rows, columns)); else ``weight``
    (groups * columns, rows) (a forward pass); its negative numbers 0 with ``relu``. C-contiguous, one float
    dtype."""
    batch = source.shape[0]
    rows, columns = source.shape[1] // groups, out.shape[1] // groups
    positions = source.size // (batch * source.shape[1])
    xr, xc = _tables(rows, columns, transposed)
    threads = numba.config.NUMBA_NUM_THREADS
    # fewer positions a task where whole chunks would leave threads idle (one sample of a small plane)
    chunk = CHUNK if batch * groups * -(-positions // CHUNK) >= 2 * threads else _LANES
    # and the output channels split between tasks where even those leave threads idle (NiN's 1 x 1 layers on 8 x 8)
    chunks = batch * groups * -(-positions // chunk)
    strips = -(-columns // tuning.WIDE_COLUMNS)
    parts = min(strips, -(-2 * threads // chunks)) if chunks < 2 * threads else 1
    panels = workspace("packed panels", threads * rows * chunk, source.dtype).reshape(threads, -1)
    run_vectorized(_channel_products, source.reshape(-1), weight.reshape(-1), xr, xc, rows * columns, init_col,
                   out.reshape(-1), groups, rows, columns, positions, chunk, parts, panels,
                   *_kernel_tables(rows, columns, positions, out.dtype.str), relu_floor(out.dtype, relu))
