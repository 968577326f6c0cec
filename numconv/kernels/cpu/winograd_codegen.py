"""Writes ``winograd_kernels.py``: the fused Winograd convolution behind stride-1 forward passes with 3 x 3 or 5 x 5
windows in each plane (2D, and 3D with any depth of window; 3 x 3 x 3 at depth stride 1 with the depth transformed
too), and 1 x 3 or 1 x 5 windows one row tall (1D).

Run ``python -m numconv.kernels.cpu.winograd_codegen`` after editing this file; ``tests/test_cpu_algorithms.py``
fails when the generated module is out of date.

Notation: F(m, r) computes m outputs of an r-tap window from alpha = m + r - 1 inputs with alpha multiplies; with
its matrices ``BT`` (alpha x alpha), ``G`` (alpha x r) and ``AT`` (m x alpha), a 2D tile of F(m_h, r_h) x F(m_w,
r_w) is ``Y = AT_h [ (G_h g G_w^T) * (BT_h d BT_w^T) ] AT_w^T`` summed over input channels, so that for each of its
alpha_h alpha_w transform elements t the channel sum is a matrix product: M[t][o, tile] = sum_c U[t][o, c]
V[t][c, tile]. Each axis of a window is split into parts (``PARTS``): 3 taps are F(2, 3) (Lavin & Gray's), 5 taps
F(2, 3) over the first three and F(2, 2) over the last two, one tap (the rows of a 1D window) the identity F(1, 1).
A window is then the sum of its sub-windows, one per row part and column part: a 5 x 5 window four of 3 x 3, 3 x 2,
2 x 3 and 2 x 2 taps starting 0 or 3 rows and columns in, with 16, 12, 12 and 9 transform elements, 49 multiplies
per 2 x 2 outputs where the direct convolution needs 100 (four F(2x2, 3x3) over the window padded to 6 x 6, as
before, took 64: AlexNet's second layer 25.4 -> 21.4 ms); a 3 x 3 window is one sub-window, 16 multiplies where the
direct convolution needs 36; 1 x 3 is F(2, 3), 4 where it needs 6. The sub-windows' transform elements are numbered
one after another (``kinds``), so that one loop of products serves them all; each sub-window has its own input
transform and inverse transform, and an output tile is the bias plus the sum of the sub-windows' inverse
transforms, raised to ``floor`` where below it (``runs.floor_run``: -inf, or 0 for a convolution whose ReLU is fused
into it). A 3D window is one 2D window per depth tap kd (output plane d reads input plane d * stride_d +
kd * dilation_d): the sums run over (kd, c). A 3 x 3 x 3 window at depth stride and dilation 1 is F(2, 3) along
the depth too (``DEPTH``): F(2x2x2, 3x3x3), 64 transform elements, a tile 2 output planes deep and the sums over c
alone, 64 multiplies per 8 outputs where a 2D window per depth tap takes 96 (C3D-small's 16 -> 32 layer at batch 8,
the fused kernel alone: 0.29 -> 0.20 ms; the anchor suite's video_c2 96 -> 69 ms). Every coefficient is 0, +-1 or
+-1/2, so on small integers every step
is exact wherever the direct convolution is (the spec registry proves it by the same identity test), and the float32
error is below the direct kernel's (shorter sums). F(4x4, 3x3) does 4x fewer multiplies than direct and was measured
faster still, but its coefficients (1/6, 1/24, ...) are not binary fractions and its float32 error was 4x the direct
kernel's, so it is not used; nor is F(2x2, 5x5), whose 6 x 6 tiles take the same coefficients.

Every vector in these kernels is a run of 16 lanes, a tuple loaded, combined, multiplied-added and stored by one
statement (``runs.py``: the same machine code as the 16 scalar statements per vector that these kernels were
written in before, in about a third of the compile time), which LLVM splits into scalars and its SLP vectoriser
turns into one AVX-512 register (``winograd.py`` enables it while they compile, as for ``blocked.py``). Constants
come from the array ``K`` of the data's dtype, because a Python float literal would promote float32 arithmetic to
float64. Indices are unsigned, as in ``blocked.py``.

Kernels written, per window in a plane (``WINDOWS``: rows x columns), and per window of ``DEPTH_WINDOWS`` with a
depth axis transformed too (named 3 x rows x columns, its weight transform ``depth_weights_source``):

* ``_weights_{rows}x{columns}``: U (G, OB, T, KD * CP, 16) from weight (O, Cg, KD, rows, columns), T the window's
  transform elements: 16 output channels per vector (the ``lanes`` layout of ``conv.py``), the sum's index
  kd * CP + c, zero past a group's channels.
* ``_winograd_{rows}x{columns}_w{W}``: the fused convolution. A task is one group, ``per_task`` consecutive tiles
  (tiles run over the batch and the output planes) and one of ``chunks`` shares of the blocks of 16 output channels
  (more than one share where there are fewer tile blocks than threads: each share transforms the tiles' inputs
  again); it transforms those tiles' inputs, every sub-window, depth tap and channel, into a per-thread buffer V (T,
  per_task * KD * CP + 16), then for each block of 16 output channels of its share and each t multiplies U[t] by
  V[t] in strips of W tiles with a 16 x W register block (one tile per broadcast) into M (T, per_task + 1, 16), and
  inverse-transforms straight into the NCDHW output. V's and M's rows are a cache line longer than their data, so
  that a tile's T elements do not all fall in the same few sets of the first-level cache.
"""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from numconv.kernels.cpu import codegen

LANES = 16
TARGET = Path(__file__).with_name("winograd_kernels.py")
#: output tile side
TILE = 2
#: tiles per strip (columns of the register block) per count of the CPU's vector registers, as the blocked kernels'
#: columns (``codegen.SHAPES``): 16 x 16 accumulators in AVX-512's 32, 16 x 6 in AVX2's 16 (6 and 5 measured alike
#: on an AMD Zen 3, 4 slower)
WIDTHS = {32: 16, 16: 6}
#: tiles per strip of the paired kernels (``conv_source``'s ``paired``: two blocks of 16 output channels per
#: broadcast number, 28 accumulators), written for AVX-512's 32 registers; ``winograd.py`` takes them where
#: ``tuning.WINOGRAD_PAIRED``. On an Intel Xeon, NiN's and AlexNet's layers, the fused kernel alone: 0.76-0.93 of the
#: time of 16 tiles of one block; 8 tiles 0.92-0.98, 12 0.82-0.98. Windows one row tall too, 12% faster
#: (``tuning``): 16 tiles of one block load a broadcast number per multiply-add, and their 16 row addresses are more
#: than x86-64 has free registers (the compiled loop moved them through the stack, 26 moves a step)
PAIRED_WIDTH = 14

F = Fraction
#: the 1D algorithms an axis of a window is split into: F(m, r) computes m outputs of r taps from m + r - 1 inputs
#: with m + r - 1 multiplies. F(2, 3) is Lavin & Gray's; F(2, 2) is m0 = (d0 - d1) g0, m1 = d1 (g0 + g1),
#: m2 = (d2 - d1) g1, y0 = m0 + m1, y1 = m1 + m2; F(1, 1) is the identity (the rows of a window one row tall)
ALGORITHMS = {
    (2, 3): dict(BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                 G=[[1, 0, 0], [F(1, 2), F(1, 2), F(1, 2)], [F(1, 2), F(-1, 2), F(1, 2)], [0, 0, 1]],
                 AT=[[1, 1, 1, 0], [0, 1, -1, -1]]),
    (2, 2): dict(BT=[[1, -1, 0], [0, 1, 0], [0, -1, 1]], G=[[1, 0], [1, 1], [0, 1]], AT=[[1, 1, 0], [0, 1, 1]]),
    (1, 1): dict(BT=[[1]], G=[[1]], AT=[[1]]),
}
#: how an axis of each window size is split: (algorithm, first tap) per part. 5 taps are F(2, 3) and F(2, 2) side
#: by side: 7 multiplies per 2 outputs, 49 per 2 x 2 tile of a 5 x 5 window (as four sub-windows of F(2, 3) over a
#: 6 x 6 zero-padded window, 64, before; the direct kernel 100). One tap is the rows of a window one row tall
PARTS = {1: (((1, 1), 0),), 3: (((2, 3), 0),), 5: (((2, 3), 0), ((2, 2), 3))}
#: the window sizes (rows, columns) in a plane that have kernels
WINDOWS = tuple((rows, columns) for rows in (3, 5, 1) for columns in (3, 5))


class Part:
    """One part of an axis: its algorithm's matrices, outputs m, taps r, inputs alpha = m + r - 1, first tap."""

    def __init__(self, algorithm, first):
        self.m, self.taps = algorithm
        self.BT, self.G, self.AT = (ALGORITHMS[algorithm][key] for key in ("BT", "G", "AT"))
        self.alpha = self.m + self.taps - 1
        self.first = first


#: the depth axis of a window of 3 depth taps at depth stride and dilation 1 where its plane's window is one of
#: ``DEPTH_WINDOWS``: F(2, 3) too, so that a 2 x 2 x 2 output tile of a 3 x 3 x 3 window takes 64 multiplies per
#: input channel where one 2D window per depth tap takes 96 (and the direct kernel 216)
DEPTH = Part((2, 3), 0)
DEPTH_WINDOWS = ((3, 3),)


def kinds(rows: int, columns: int) -> list:
    """The sub-window kinds of a window of ``rows`` x ``columns`` taps in a plane: (row part, column part, first
    transform element), their transform elements numbered kind after kind."""
    result, first = [], 0
    for row_algorithm, row_first in PARTS[rows]:
        for column_algorithm, column_first in PARTS[columns]:
            row, column = Part(row_algorithm, row_first), Part(column_algorithm, column_first)
            result.append((row, column, first))
            first += row.alpha * column.alpha
    return result


def transform_elements(rows: int, columns: int) -> int:
    """The transform elements of all the kinds of a window (16 for 3 x 3, 49 for 5 x 5, 4 for 1 x 3)."""
    return sum(row.alpha * column.alpha for row, column, _ in kinds(rows, columns))


def paired_name(rows: int, columns: int, depth: bool = False) -> str:
    """The name of a window's paired fused kernel (``conv_source``)."""
    return f"_winograd_{window_name(rows, columns, depth)}_w{PAIRED_WIDTH}x2"


def window_name(rows: int, columns: int, depth: bool = False) -> str:
    return f"{DEPTH.taps}x{rows}x{columns}" if depth else f"{rows}x{columns}"


HEADER = '''"""Fused Winograd convolution kernels: GENERATED by ``python -m numconv.kernels.cpu.winograd_codegen`` from
``winograd_codegen.py``, which documents them. Do not edit by hand."""
import numpy as np
from numba import njit

from numconv.kernels.cpu.parallel import task_loop
from numconv.kernels.cpu.runs import combine_run, floor_run, load_run, multiply_add_run, store_lanes, store_run
'''


class Constants:
    """The distinct coefficients other than 0 and +-1, as entries of the constants array ``K`` (K[0] is 0)."""

    def __init__(self):
        self.values = [F(0)]

    def name(self, value) -> str:
        value = abs(F(value))
        if value not in self.values:
            self.values.append(value)
        return f"q{self.values.index(value)}"

    def loads(self) -> list:
        return [f"q{i} = K[{i}]" for i in range(len(self.values))]


def transform_run(consts: Constants, target: str, coeffs, source: str, count: int, first: str = "") -> str:
    """``target = combine_run(...)`` (``runs.py``): one row of a transform matrix applied to the runs ``source0 ..
    source{count - 1}``, lane by lane sum_i coeffs[i] * source_i, zeros skipped, left to right, a coefficient of +-1
    by adding or subtracting; with ``first``, that run is the sum's first term."""
    sources = ([first] if first else []) + [f"{source}{i}" for i in range(count)]
    terms, scales = ["+0"] if first else [], []
    for i, c in enumerate(coeffs):
        c = F(c)
        if c == 0:
            continue
        term = "-" if c < 0 else "+"
        if abs(c) != 1:
            name = consts.name(c)
            if name not in scales:
                scales.append(name)
            term += f"{scales.index(name)}:"
        terms.append(term + str(i + (1 if first else 0)))
    if first and terms[1].startswith("-"):
        raise ValueError("a row after a first run must start with a positive term, as '+ -x' is not a term")
    return (f'{target} = combine_run("{" ".join(terms)}", ({", ".join(sources)},), '
            f'({"".join(name + ", " for name in scales)}))')


def load_run_lines(indent: str, name: str, array: str, address: str) -> list:
    """Lines reading the 16-lane run ``name`` from ``array`` at the unsigned ``address``."""
    return [f"{indent}at = {address}", f"{indent}{name} = load_run({array}, at, {LANES})"]


def store_run_lines(indent: str, array: str, address: str, name: str) -> list:
    """Lines writing the 16-lane run ``name`` into ``array`` at the unsigned ``address``."""
    return [f"{indent}at = {address}", f"{indent}store_run({array}, at, {name})"]


def tasks_header(kernel: str, parameters: str, scratch: str) -> list:
    """The first lines of ``kernel``'s tasks function: it runs tasks ``first`` to ``end`` - 1 with the calling
    thread's scratch, called per range of tasks from the shared parallel loop (``codegen.task_count``)."""
    return [codegen.TASKS_DECORATOR, f"def {kernel}_tasks({parameters}, first, end):",
            f'    """Tasks ``first`` to ``end`` - 1 of ``{kernel}``, with the calling thread\'s scratch '
            f'({scratch})."""']


def task_count(kernel: str, parameters: str, doc: list, tasks: str, per_thread: int) -> list:
    """``codegen.task_count`` after two blank lines."""
    return ["", ""] + codegen.task_count(kernel, parameters, doc, tasks, per_thread)


#: where a weight transform's scratch row holds a kernel column's gathered taps, after its 4 x 3 runs of products
GATHERED = 4 * 3 * LANES


def gathered_at(rows: int, columns: int, depth: bool = False) -> int:
    """Where a weight transform's scratch holds a kernel column's gathered taps: after its first pass's runs (with a
    depth axis, those of every depth transform element)."""
    if not depth:
        return GATHERED
    (row, column, _), = kinds(rows, columns)
    return DEPTH.alpha * row.alpha * column.taps * LANES


def weight_scratch(rows: int, columns: int, depth: bool = False) -> int:
    """The floats of scratch per thread that a window's weight transform uses: its first pass's runs, then a kernel
    column's gathered taps (with a depth axis, of every depth tap)."""
    gathered_taps = max(row.taps for row, _, _ in kinds(rows, columns)) * (DEPTH.taps if depth else 1)
    return gathered_at(rows, columns, depth) + gathered_taps * LANES


#: the floats of the weight transforms' scratch per thread: the most any window's takes
WEIGHT_SCRATCH = max([weight_scratch(rows, columns) for rows, columns in WINDOWS]
                     + [weight_scratch(rows, columns, True) for rows, columns in DEPTH_WINDOWS])


def weights_header(name: str) -> list:
    """The two blank lines and the first lines of the weight transform ``name``'s tasks function."""
    return ["", ""] + tasks_header(name, "w, K, group_out, oblocks, cpad, U, scratch", "scratch")


def weights_source(rows: int, columns: int, consts: Constants) -> list:
    name = f"_weights_{window_name(rows, columns)}"
    elements = transform_elements(rows, columns)
    L = weights_header(name)
    e = L.append
    e("    group_in, taps_d = w.shape[1], w.shape[2]")
    e("    reduction = taps_d * cpad")
    e("    for task in range(first, end):")
    e("        c = task % cpad")
    e("        kd = (task // cpad) % taps_d")
    e("        ob = (task // reduction) % oblocks")
    e("        g = task // (reduction * oblocks)")
    e("        __CONSTS__")
    e(f"        base = np.uint64(((g * oblocks + ob) * {elements} * reduction + kd * cpad + c) * 16)")
    e("        step = np.uint64(reduction * 16)")
    # the zero-padded lanes: past the group's output channels or past its input channels
    e("        o0 = g * group_out + ob * 16")
    e("        valid = min(16, group_out - ob * 16) if c < group_in else 0")
    for row, column, first in kinds(rows, columns):
        e(f"        # the {row.taps} x {column.taps} sub-window from tap ({row.first}, {column.first}): F({row.m}, "
          f"{row.taps}) x F({column.m}, {column.taps}), transform elements {first} to "
          f"{first + row.alpha * column.alpha - 1}")
        e(f"        for col in range({column.taps}):")
        e(f"            # pass 1 (per kernel column): the {row.alpha} x {row.taps} product G w, 16 output channels at "
          "once, each")
        e("            # tap's 16 gathered into the scratch after the products (a loop: 16 statements a tap compiled "
          "slowly)")
        e(f"            for r in range({row.taps}):")
        e("                for k in range(16):")
        e(f"                    scratch[{GATHERED} + r * 16 + k] = w[o0 + k, c, kd, {row.first} + r, "
          f"{column.first} + col] if k < valid else q0")
        for r in range(row.taps):
            e(f"            w{r} = load_run(scratch, {GATHERED + 16 * r}, {LANES})")
        pass_one(L, consts, row, "p{i}", "({i} * 3 + col) * 16", " " * 12)
        pass_two(L, consts, row, column, "({i} * 3 + {col}) * 16", f"{first} + i * {column.alpha} + {{j}}", " " * 8)
    L += task_count(name, "w, K, group_out, oblocks, cpad, U, tmp",
                    [f"U (G, OB, {elements}, KD * CP, 16)[g, ob, t, kd * CP + c, k] = (G w_s G^T)[t] of the "
                     f"sub-window s of the {rows} x {columns} window",
                     "(``kinds``: its transform elements numbered after the earlier sub-windows') of w (O, Cg, KD, "
                     f"{rows}, {columns})[g * group_out + 16 ob + k, c, kd],",
                     "zero past the group's last channel or Cg; one task per (group, block of 16 output channels, "
                     "depth tap, input",
                     f"channel). tmp: per-thread scratch (threads, {WEIGHT_SCRATCH})."],
                    "(w.shape[0] // group_out) * oblocks * w.shape[2] * cpad", per_thread=1)
    return L


def pass_one(L: list, consts: Constants, row: Part, target: str, address: str, indent: str) -> None:
    """A weight transform's first pass over a kernel column: the runs ``w0 ..`` (its taps) times each row i of
    ``row.G``, stored into the scratch at ``address.format(i=i)``."""
    for i in range(row.alpha):
        L.append(indent + transform_run(consts, target.format(i=i), row.G[i], "w", row.taps))
        L.append(f"{indent}store_run(scratch, {address.format(i=i)}, {target.format(i=i)})")


def pass_two(L: list, consts: Constants, row: Part, column: Part, address: str, element: str, indent: str) -> None:
    """A weight transform's second pass, per row i of the first's results (``row.alpha``): the scratch's runs at
    ``address.format(i=i, col=col)`` times ``column.G``, stored as U's transform elements ``element.format(j=j)``."""
    L.append(f"{indent}for i in range({row.alpha}):")
    L.append(f"{indent}    # pass 2 (per row of G w): (G w) G^T, stored as 16-lane vectors of U")
    for col in range(column.taps):
        L.append(f"{indent}    r{col} = load_run(scratch, {address.format(i='i', col=col)}, {LANES})")
    for j in range(column.alpha):
        L.append(indent + "    " + transform_run(consts, f"s{j}", column.G[j], "r", column.taps))
        L.extend(store_run_lines(indent + "    ", "U", f"base + np.uint64({element.format(j=j)}) * step", f"s{j}"))


def depth_weights_source(rows: int, columns: int, consts: Constants) -> list:
    """The weight transform of a window of 3 depth taps whose depth axis is F(2, 3) too (``DEPTH``): per kernel
    column, its depth x rows taps gathered once, then per depth transform element e the taps summed along the depth
    by row e of G and transformed as a plane's."""
    (row, column, _), = kinds(rows, columns)
    name = f"_weights_{window_name(rows, columns, True)}"
    plane_elements = transform_elements(rows, columns)
    elements = plane_elements * DEPTH.alpha
    # the scratch: each (e, i) first-pass row's runs per kernel column, then a column's gathered taps
    gathered = gathered_at(rows, columns, True)
    L = weights_header(name)
    e = L.append
    e("    group_in = w.shape[1]")
    e("    reduction = cpad  # the depth taps are transformed too: the sums run over the channels alone")
    e("    for task in range(first, end):")
    e("        c = task % cpad")
    e("        ob = (task // reduction) % oblocks")
    e("        g = task // (reduction * oblocks)")
    e("        __CONSTS__")
    e(f"        base = np.uint64(((g * oblocks + ob) * {elements} * reduction + c) * 16)")
    e("        step = np.uint64(reduction * 16)")
    e("        o0 = g * group_out + ob * 16")
    e("        valid = min(16, group_out - ob * 16) if c < group_in else 0")
    e(f"        for col in range({column.taps}):")
    e(f"            # the column's {DEPTH.taps} x {row.taps} taps (depth, row), 16 output channels each")
    e(f"            for tap in range({DEPTH.taps * row.taps}):")
    e("                for k in range(16):")
    e(f"                    scratch[{gathered} + tap * 16 + k] = w[o0 + k, c, tap // {row.taps}, tap % {row.taps}, "
      "col] if k < valid else q0")
    for r in range(row.taps):
        for kd in range(DEPTH.taps):
            e(f"            t{r}_{kd} = load_run(scratch, {gathered + (kd * row.taps + r) * LANES}, {LANES})")
    for layer in range(DEPTH.alpha):
        e(f"            # depth transform element {layer}: the taps summed along the depth by row {layer} of G, then "
          "pass 1 (G w)")
        for r in range(row.taps):
            e("            " + transform_run(consts, f"w{r}", DEPTH.G[layer], f"t{r}_", DEPTH.taps))
        pass_one(L, consts, row, "p{i}", f"({layer * row.alpha} + {{i}}) * {column.taps * LANES} + col * 16",
                 " " * 12)
    e(f"        for layer in range({DEPTH.alpha}):")
    e(f"            first_row = layer * {row.alpha}")
    pass_two(L, consts, row, column, f"(first_row + {{i}}) * {column.taps * LANES} + {{col}} * 16",
             f"layer * {plane_elements} + i * {column.alpha} + {{j}}", " " * 12)
    L += task_count(name, "w, K, group_out, oblocks, cpad, U, tmp",
                    [f"U (G, OB, {elements}, CP, 16)[g, ob, {plane_elements} e + t, c, k] = (G_d (G w G^T))[e, t] "
                     f"of w (O, Cg, 3, {rows}, {columns})[g * group_out + 16 ob + k, c]:",
                     f"the depth axis' transform element e (F(2, 3) over the 3 depth taps) of the {rows} x {columns} "
                     "window's element t,",
                     "zero past the group's last channel or Cg; one task per (group, block of 16 output channels, "
                     f"input channel). tmp: per-thread scratch (threads, {WEIGHT_SCRATCH}).", ],
                    "(w.shape[0] // group_out) * oblocks * cpad", per_thread=1)
    return L


def conv_source(rows: int, columns: int, width: int, consts: Constants, depth: bool = False, paired: bool = False
                ) -> list:
    """The fused kernel of a window in a plane; with ``depth``, of a window of 3 depth taps at depth stride and
    dilation 1 whose depth axis is F(2, 3) too (``DEPTH``): its tiles are 2 output planes deep, an input tile's
    4 planes are first combined by BT along the depth into 4 plane tiles in S, each then transformed as a plane's,
    and an output tile's sums are first combined by AT along the depth into 2 planes' in S. With ``paired``, the
    products take two blocks of 16 output channels at a time (``PAIRED_WIDTH``), their sums one after the other in M
    (``paired_name``)."""
    parts = kinds(rows, columns)
    m_h, m = parts[0][0].m, TILE
    plane_elements = transform_elements(rows, columns)
    layers = DEPTH.alpha if depth else 1  # depth transform elements
    elements = plane_elements * layers
    W = width
    name = paired_name(rows, columns, depth) if paired else f"_winograd_{window_name(rows, columns, depth)}_w{W}"
    # S (SCRATCH runs of 16 per thread): an input tile's first pass, then each sub-window's first inverse pass in a
    # region of its own, then an edge tile's row; with a depth axis, from run ``deep`` on, an input tile's planes
    # combined along the depth (``layers`` x plane_elements runs), later an output tile's sums combined along it
    regions, at = [], 0
    for row, column, _ in parts:
        regions.append(at)
        at += m_h * column.alpha if row.alpha > 1 else 0
    edge = at
    deep = plane_elements
    assert edge + m <= plane_elements and all(row.alpha * column.alpha <= plane_elements for row, column, _ in parts)
    assert not depth or len(parts) == 1, "a depth axis is generated for windows of one sub-window in a plane"
    depth_params = "" if depth else "stride_d, depth_offsets, "
    params = f"P, U, bias, K, out, groups, group_out, oblocks, th, tw, {depth_params}per_task, chunks, floor"
    # the tiles' planes: output planes, or pairs of them with a depth axis
    planes = "td" if depth else "od"
    L = []
    e = L.append
    e("")
    e("")
    L += tasks_header(name, f"{params}, V, M, S", "V, M and S")
    e("    batch, cblocks, dp, hp, wp = P.shape[0], P.shape[2], P.shape[3], P.shape[4], P.shape[5]")
    e("    out_channels, od, oh, ow = out.shape[1], out.shape[2], out.shape[3], out.shape[4]")
    e("    cpad = cblocks * 16")
    if depth:
        e("    reduction = cpad  # the depth taps are transformed too: the sums run over the channels alone")
        e(f"    td = (od + {DEPTH.m - 1}) // {DEPTH.m}  # tiles of {DEPTH.m} output planes")
    else:
        e("    taps = depth_offsets.shape[0]")
        e("    reduction = taps * cpad  # the sums run over (depth tap, channel)")
    e(f"    tiles = batch * {planes} * th * tw")
    e("    blocks = (tiles + per_task - 1) // per_task")
    e("    of = out.reshape(-1)")
    e("    pf = P.reshape(-1)")
    e("    for task in range(first, end):")
    e("        chunk = task % chunks  # which share of the output-channel blocks")
    e("        g = task // (blocks * chunks)")
    e("        first_tile = (task // chunks - g * blocks) * per_task")
    e("        count = min(per_task, tiles - first_tile)")
    e("        __CONSTS__")
    e(f"        vrow = np.uint64(per_task * reduction + 16)  # V ({elements}, per_task * {'CP' if depth else 'KD * CP'}"
      " + 16): one t, skewed a line")
    e("        mrow = per_task + 1  # M (elements, per_task + 1, 16): one t, skewed a line")

    def tile_position(indent):
        e(f"{indent}n = i // ({planes} * th * tw)")
        e(f"{indent}d = (i // (th * tw)) % {planes}")
        e(f"{indent}ty = (i // tw) % th")
        e(f"{indent}tx = i % tw")

    def plane_input(indent, source, address, v_at):
        """Each sub-window's input transform of a plane tile read from ``source`` at ``address(r, s)`` (its input
        rows and columns r, s as code) into V from ``v_at``."""
        for row, column, first in parts:
            a = column.alpha
            e(f"{indent}# the {row.taps} x {column.taps} sub-window from tap ({row.first}, {column.first})")
            if not depth:
                e(f"{indent}base = corner + np.uint64(({row.first} * wp + {column.first}) * 16)")
            if row.alpha > 1:
                e(f"{indent}for s in range({a}):")
                e(f"{indent}    # pass 1 (per column s of the tile): BT d, alpha rows")
                for r in range(row.alpha):
                    L.extend(load_run_lines(indent + "    ", f"d{r}", source, address(r, "s")))
                for i in range(row.alpha):
                    e(indent + "    " + transform_run(consts, f"b{i}", row.BT[i], "d", row.alpha))
                    L.extend(store_run_lines(indent + "    ", "S", f"np.uint64(({i} * {a} + s) * 16)", f"b{i}"))
                e(f"{indent}for r in range({row.alpha}):")
                e(f"{indent}    # pass 2 (per row r of BT d): (BT d) BT^T, stored at "
                  f"V[{first} + r * {a} + col, j, {'' if depth else 'kd * CP + '}16 cb:...]")
                for s_ in range(a):
                    L.extend(load_run_lines(indent + "    ", f"e{s_}", "S", f"np.uint64((r * {a} + {s_}) * 16)"))
                inner, at_row = indent + "    ", f"np.uint64({first} + r * {a} + {{col}})"
            else:
                e(f"{indent}# one row: d BT^T, stored at V[{first} + col, j, kd * CP + 16 cb:...]")
                for s_ in range(a):
                    L.extend(load_run_lines(indent, f"e{s_}", source, address(0, s_)))
                inner, at_row = indent, f"np.uint64({first} + {{col}})"
            for col in range(a):
                e(inner + transform_run(consts, f"v{col}", column.BT[col], "e", a))
                L.extend(store_run_lines(inner, "V", f"{v_at} + {at_row.format(col=col)} * vrow", f"v{col}"))

    e("        # ---- input transform: V[t, j, kd * CP + c] = (BT d BT^T)[t] of tile j, each sub-window's elements "
      "after the earlier ones',")
    e("        # 16 channels per vector")
    e("        for j in range(per_task):")
    e("            i = min(first_tile + j, tiles - 1)  "
      "# a short last block repeats its last tile; those results are dropped")
    tile_position(" " * 12)
    if depth:
        alpha_w = parts[0][1].alpha
        positions = parts[0][0].alpha * alpha_w
        e("            for cb in range(cblocks):")
        e(f"                corner = np.uint64((((((n * groups + g) * cblocks + cb) * dp + d * {DEPTH.m}) * hp + ty * "
          f"{m_h}) * wp + tx * {m}) * 16)")
        e("                vat = np.uint64(j * reduction + cb * 16)")
        e("                plane_step = np.uint64(hp * wp * 16)")
        e(f"                for p in range({positions}):")
        e(f"                    # the depth pass (per position p of the plane tile): BT d along the depth, into S "
          f"from run {deep}")
        e(f"                    column = corner + np.uint64(((p // {alpha_w}) * wp + p % {alpha_w}) * 16)")
        for r in range(DEPTH.alpha):
            L.extend(load_run_lines(" " * 20, f"c{r}", "pf", f"column + np.uint64({r}) * plane_step"))
        for i in range(DEPTH.alpha):
            e(" " * 20 + transform_run(consts, f"b{i}", DEPTH.BT[i], "c", DEPTH.alpha))
            L.extend(store_run_lines(" " * 20, "S", f"np.uint64(({deep} + {i * positions} + p) * 16)", f"b{i}"))
        e(f"                for layer in range({layers}):")
        e("                    # the plane transform of each depth transform element's tile")
        e(f"                    deep_at = np.uint64(({deep} + layer * {positions}) * 16)")
        e(f"                    v_layer = vat + np.uint64(layer * {plane_elements}) * vrow")
        plane_input(" " * 20, "S", lambda r, s: f"deep_at + np.uint64(({r} * {alpha_w} + {s}) * 16)", "v_layer")
    else:
        e("            for sub_block in range(taps * cblocks):")
        e("                kd = sub_block // cblocks")
        e("                cb = sub_block - kd * cblocks")
        e("                z = d * stride_d + depth_offsets[kd]")
        e(f"                corner = np.uint64((((((n * groups + g) * cblocks + cb) * dp + z) * hp + ty * {m_h}) * wp "
          f"+ tx * {m}) * 16)")
        e("                vat = np.uint64(j * reduction + kd * cpad + cb * 16)")
        plane_input(" " * 16, "pf", lambda r, s: f"base + np.uint64(({r} * wp + {s}) * 16)", "vat")
    if paired:
        e("        # ---- per pair of blocks of 16 output channels: the channel sums of every transform element, the "
          "second block's")
        e("        # in M after the first's (a share's last block alone: its own); then each block's inverse "
          "transforms")
        e("        ob_end = (chunk + 1) * oblocks // chunks")
        e(f"        m_half = np.uint64({elements} * mrow * 16)")
        e("        for pair in range(chunk * oblocks // chunks, ob_end, 2):")
        e("            second = 1 if pair + 1 < ob_end else 0")
    else:
        e("        # ---- per block of 16 output channels: the channel sums of every transform element, then the "
          "inverse transforms")
        e("        for ob in range(chunk * oblocks // chunks, (chunk + 1) * oblocks // chunks):")
    e(f"            for t in range({elements}):")
    e(f"                u_base = np.uint64(((g * oblocks + {'pair' if paired else 'ob'}) * {elements} + t) * reduction "
      "* 16)")
    if paired:
        e(f"                u_next = u_base + np.uint64({elements}) * np.uint64(reduction * 16)")
    e("                for j0 in range(0, per_task, " + str(W) + "):")
    e("                    v_base = np.uint64(t) * vrow + np.uint64(j0 * reduction)")
    for j in range(W):
        e(f"                    x{j} = v_base + np.uint64({j} * reduction)")
    e("                    m_at = np.uint64((t * mrow + j0) * 16)")

    def products(indent: str, sums: tuple) -> None:
        """The sums over the channels of ``W`` tiles for one block (``a``) or two (``a``, ``b``), stored to M."""
        for j in range(W):
            for a in sums:
                e(f"{indent}{a}{j} = (" + ", ".join(["q0"] * LANES) + ")")
        e(f"{indent}for c in range(np.uint64(0), np.uint64(reduction)):")
        e(f"{indent}    w = load_run(U, u_base + c * np.uint64(16), {LANES})")
        if len(sums) == 2:
            e(f"{indent}    w_next = load_run(U, u_next + c * np.uint64(16), {LANES})")
        for j in range(W):
            e(f"{indent}    s = V[x{j} + c]")
            for a, vector in zip(sums, ("w", "w_next")):
                e(f"{indent}    {a}{j} = multiply_add_run({a}{j}, {vector}, s)")
        for a, at in zip(sums, ("m_at", "m_half + m_at")):
            for j in range(W):
                e(f"{indent}store_run(M, {at} + np.uint64({j * 16}), {a}{j})")

    if paired:
        # a lone last block takes one vector per step rather than its pair's two (AlexNet's second layer's input
        # gradient, 3 blocks a group: a quarter of its products were the lone block's repeated)
        e("                    if second:")
        products(" " * 24, ("a", "b"))
        e("                    else:")
        products(" " * 24, ("a",))
    else:
        products(" " * 20, ("a",))
    # the inverse transforms of a block, or of each of the pair's (its lines shifted in below)
    if paired:
        e("            for half in range(1 + second):")
        e("                ob = pair + half")
        e("                m_off = np.uint64(half) * m_half")
    inverse_start = len(L)
    e("            o0 = g * group_out + ob * 16")
    e("            valid = min(16, group_out - ob * 16)")
    e(f"            lane_bias = load_run(bias, (g * oblocks + ob) * 16, {LANES})")
    e("            for j in range(count):")
    e("                i = first_tile + j")
    tile_position(" " * 16)
    if depth:
        e(f"                for p in range({plane_elements}):")
        e(f"                    # the depth pass (per plane element p): AT M along the depth, {DEPTH.m} planes' sums "
          f"into S from run {deep}")
        for r in range(DEPTH.alpha):
            L.extend(load_run_lines(" " * 20, f"h{r}", "M",
                                    f"np.uint64((({r * plane_elements} + p) * mrow + j) * 16)"))
        for i in range(DEPTH.m):
            e(" " * 20 + transform_run(consts, f"y{i}", DEPTH.AT[i], "h", DEPTH.alpha))
            L.extend(store_run_lines(" " * 20, "S", f"np.uint64(({deep} + {i * plane_elements} + p) * 16)", f"y{i}"))
        e(f"                for dz in range(min({DEPTH.m}, od - d * {DEPTH.m})):")
        e(f"                    z = d * {DEPTH.m} + dz  # the output plane")
        e(f"                    sums_at = np.uint64(({deep} + dz * {plane_elements}) * 16)")
        indent, sums, sums_at = " " * 20, "S", lambda index: f"sums_at + np.uint64(({index}) * 16)"
    else:
        e("                z = d  # the output plane")
        indent, sums, sums_at = " " * 16, "M", lambda index: f"np.uint64((({index}) * mrow + j) * 16)"
    for (row, column, first), region in zip(parts, regions):
        if row.alpha == 1:
            continue
        a = column.alpha
        e(f"{indent}for s in range({a}):")
        e(f"{indent}    # pass 1 (per column s) of the {row.taps} x {column.taps} sub-window: AT M, m rows, "
          f"into S from {region * 16}")
        for r in range(row.alpha):
            L.extend(load_run_lines(indent + "    ", f"h{r}", sums, sums_at(f"{first} + {r} * {a} + s")))
        for i in range(m_h):
            e(indent + "    " + transform_run(consts, f"y{i}", row.AT[i], "h", row.alpha))
            L.extend(store_run_lines(indent + "    ", "S", f"np.uint64(({region} + {i} * {a} + s) * 16)", f"y{i}"))
    e(f"{indent}full = valid == 16 and tx * {m} + {m} <= ow")
    e(f"{indent}for r in range(min({m_h}, oh - ty * {m_h})):")
    e(f"{indent}    # pass 2 (per output row r): bias + the sum over sub-windows of (AT M) AT^T, stored channel "
      "by channel")
    for index, ((row, column, first), region) in enumerate(zip(parts, regions)):
        a = column.alpha
        for s_ in range(a):
            if row.alpha > 1:
                L.extend(load_run_lines(indent + "    ", f"f{s_}", "S", f"np.uint64(({region} + r * {a} + {s_}) * 16)"))
            else:
                L.extend(load_run_lines(indent + "    ", f"f{s_}", sums, sums_at(f"{first} + {s_}")))
        for q in range(m):
            e(indent + "    " + transform_run(consts, f"z{q}", column.AT[q], "f", a,
                                              first="lane_bias" if index == 0 else f"z{q}"))
    for q in range(m):
        e(f"{indent}    z{q} = floor_run(z{q}, floor)")
    e(f"{indent}    row = np.uint64((((n * out_channels + o0) * od + z) * oh + ty * {m_h} + r) * ow + tx * {m})")
    e(f"{indent}    plane = np.uint64(od * oh * ow)")
    e(f"{indent}    if full:")
    e(f"{indent}        store_lanes(of, row, plane, (" + ", ".join(f"z{q}" for q in range(m)) + ",))")
    e(f"{indent}    else:")
    e(f"{indent}        # an edge tile or a partial block of channels: through S")
    e(f"{indent}        at = np.uint64({edge * 16})")
    for q in range(m):
        e(f"{indent}        store_run(S, at + np.uint64({q * 16}), z{q})")
    e(f"{indent}        for q in range(min({m}, ow - tx * {m})):")
    e(f"{indent}            for k in range(valid):")
    e(f"{indent}                of[row + np.uint64(k) * plane + np.uint64(q)] = S[at + np.uint64(q * 16 + k)]")
    if paired:
        L[inverse_start:] = [" " * 4 + line.replace("load_run(M, ", "load_run(M, m_off + ") if line else line
                             for line in L[inverse_start:]]
    algorithm = " + ".join(f"F({row.m}x{column.m}, {row.taps}x{column.taps})" for row, column, _ in parts)
    if depth:
        summary = [f"out (N, O, OD, OH, OW) = bias + the convolution with a 3 x {rows} x {columns} window at depth "
                   "stride and dilation 1, by",
                   f"F(2, 3) along the depth and {algorithm} in each plane (tiles of 2 x 2 x 2 outputs) in strips of "
                   f"{W} tiles.", "",
                   "P (N, G, CB, DP, HP, WP, 16) packed padded input (``winograd._pack_input``), DP at least 2 td + 2; "
                   f"U (G, OB, {elements}, CP, 16)",
                   "transformed weights; bias (G * OB * 16,) zero padded; K the constants; tiles run n-major over "
                   "(N, td, th, tw), td = ceil(OD / 2);"]
        v_size = f"{elements} * per_task * CP"
    else:
        summary = [f"out (N, O, OD, OH, OW) = bias + the convolution with a {rows} x {columns} window in each "
                   "plane, each depth tap kd reading",
                   f"input plane d * stride_d + depth_offsets[kd] for output plane d, by {algorithm} in strips of "
                   f"{W} tiles.", "",
                   "P (N, G, CB, DP, HP, WP, 16) packed padded input (``winograd._pack_input``); U (G, OB, "
                   f"{elements}, KD * CP, 16) transformed weights;",
                   "bias (G * OB * 16,) zero padded; K the constants; tiles run n-major over (N, OD, th, tw);"]
        v_size = f"{elements} * per_task * KD * CP"
    scratch = scratch_runs(rows, columns, depth)
    tile_planes = f"((out.shape[2] + {DEPTH.m - 1}) // {DEPTH.m})" if depth else "out.shape[2]"
    L += task_count(name, f"{params}, work_v, work_m, work_t",
                    summary + [f"``per_task`` a multiple of {W}; a task computes the blocks of 16 output channels of "
                               "one of ``chunks`` shares" + (", two at a time." if paired else "."),
                               f"work_v (threads, {v_size}), work_m (threads, "
                               + (f"2 * {elements} * (per_task + 1) * 16" if paired else f"{elements} * per_task * 16")
                               + f"), work_t (threads, {scratch} * 16):",
                               "per-thread scratch, so that no task allocates (fresh pages fault)."],
                    f"groups * chunks * ((P.shape[0] * {tile_planes} * th * tw + per_task - 1) // per_task)",
                    per_thread=3)
    return L


def scratch_runs(rows: int, columns: int, depth: bool = False) -> int:
    """The runs of 16 of a fused kernel's per-thread scratch S: a plane's transform elements, and with a depth axis
    the depth pass's tiles after them."""
    plane_elements = transform_elements(rows, columns)
    return plane_elements * (1 + DEPTH.alpha) if depth else plane_elements


def module_source() -> str:
    consts = Constants()
    windows = [(rows, columns, False) for rows, columns in WINDOWS] + [
        (rows, columns, True) for rows, columns in DEPTH_WINDOWS]
    bodies = ["\n".join(body) for body in (
        *((depth_weights_source if depth else weights_source)(rows, columns, consts)
          for rows, columns, depth in windows),
        *(conv_source(rows, columns, width, consts, depth) for rows, columns, depth in windows
          for width in WIDTHS.values()),
        *(conv_source(rows, columns, PAIRED_WIDTH, consts, depth, paired=True) for rows, columns, depth in windows))]
    # each kernel loads the constants it uses (q0, zero, starts its sums)
    text = "\n".join(body.replace("__CONSTS__", "; ".join(
        load for load in consts.loads() if re.search(rf"\b{load.split()[0]}\b", body.replace("__CONSTS__", ""))))
        for body in bodies)
    axes = {taps: [Part(*part) for part in parts] for taps, parts in PARTS.items()}
    outputs = {taps: parts[0].m for taps, parts in axes.items()}
    reach = {taps: max(part.first + part.alpha for part in parts) - parts[0].m for taps, parts in axes.items()}

    def key(rows, columns, depth):
        return (DEPTH.taps, rows, columns) if depth else (rows, columns)

    def mapping(value):
        return "{" + ", ".join(f"{key(*window)}: {value(*window)}" for window in windows) + "}"

    return (HEADER + text + f"\n\nCONSTANTS = {[float(v) for v in consts.values]!r}\n"
            f"#: output tile side, and the lanes of the kernels' vectors\n"
            f"TILE, LANES = {TILE}, {LANES}\n"
            f"#: tiles per strip per count of vector registers, and of the paired kernels\n"
            f"WIDTHS = {WIDTHS!r}\n"
            f"PAIRED_WIDTH = {PAIRED_WIDTH}\n"
            "#: the floats of a weight transform's scratch row per thread\n"
            f"WEIGHT_SCRATCH = {WEIGHT_SCRATCH}\n"
            "#: per window size along an axis: the parts it is split into, a tile's outputs along it, and how many "
            "inputs past them its sub-windows read\n"
            f"PARTS = { {taps: len(parts) for taps, parts in axes.items()}!r}\n"
            f"OUTPUTS = {outputs!r}\n"
            f"REACH = {reach!r}\n"
            f"#: a depth-transformed window's output planes per tile\n"
            f"DEPTH_OUTPUTS = {DEPTH.m}\n"
            "#: per window, (rows, columns) in a plane or (3, rows, columns) with a depth axis transformed too: the "
            "transform elements, the runs of 16 of a fused kernel's scratch per thread, the weight transform and "
            "the fused kernel of each width\n"
            f"ELEMENTS = {mapping(lambda r, c, d: transform_elements(r, c) * (DEPTH.alpha if d else 1))}\n"
            f"SCRATCH = {mapping(scratch_runs)}\n"
            f"WEIGHTS = {mapping(lambda r, c, d: '_weights_' + window_name(r, c, d))}\n"
            "KERNELS = {" + ", ".join(f"{key(*window) + (width,)}: _winograd_{window_name(*window)}_w{width}"
                                      for window in windows for width in WIDTHS.values()) + "}\n"
            "#: per window, its paired fused kernel\n"
            "PAIRED = {" + ", ".join(f"{key(*window)}: {paired_name(*window)}" for window in windows) + "}\n")


def main() -> None:
    TARGET.write_text(module_source())
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
