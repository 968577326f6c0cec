"""Writes ``blocked.py``: the register-blocked multiply-accumulate kernels behind every CPU convolution.

Run ``python -m numconv.kernels.cpu.codegen`` after editing this file; ``tests/test_cpu_algorithms.py`` fails when
the generated module is out of date.

The one operation, over tables of offsets prepared per configuration by ``conv.py``::

    out[oblk[b] + ocol[j] + k * ostride] = max(floor, init_lane[b, k] + init_col[j]
        + sum_{r in [rlo[b], rhi[b])} V[vb[b] + voff[r] + k] * X[xb[b] + xc[j] + xr[r]])

for blocks ``b``, lanes ``k < lanes[b]`` (at most 16) and columns ``j``. ``V`` supplies a 16-wide vector per reduction
step (16 output channels of packed weights, or 16 neighbouring positions of an input row) and ``X`` one number per
column, broadcast to all lanes. ``floor`` is -inf, or 0 for a convolution whose ReLU is fused into it (a NaN stays NaN
either way: ``runs.floor_run``), a number of the arrays' dtype. A task computes one block and a strip of ``WIDTH``
columns: the 16 x WIDTH accumulators are a tuple of 16 per column, written as runs (``runs.py``: a statement per column
and reduction step, which Numba compiles in half the time that one per number took, to the same machine code), which
LLVM splits into scalars and keeps in vector registers (its SLP vectoriser turns each group of 16 into one AVX-512
register, or two AVX2 ones; ``launch.vectorizer_settings`` enables it while these kernels compile). Indices are unsigned
so that no negative-index wrap-around test blocks vectorisation. The last strip repeats the last column instead of
testing bounds in the loop; the final store skips repeats, or, where it stores whole vectors, stores them over the last
column again. In kernels of many columns a strip whose columns' numbers are consecutive in X sums through a loop of its
own that addresses them from one base (``CONSECUTIVE_MIN_WIDTH``). When a task's lanes are all used and contiguous in
the output, its results are stored straight from the accumulators (vector stores); in the 16- and 32-lane kernels also
when the columns are contiguous instead (lane by lane); otherwise through a small tile and a loop that handles any lane
stride and count. A call's tasks go block by block, or strip by strip where that keeps a strip's numbers in the
first-level cache for every block (``STRIPS_OUTER_MIN_BLOCK``, ``STRIPS_OUTER_MAX_BYTES``); the kernels that split the
sum go block by block, or run of strips by run of strips where their caller says so (``strips_outer``).
"""
from __future__ import annotations

from pathlib import Path

LANES = 16
#: the (lanes, columns) shapes that are generated, per count of the CPU's vector registers (``vectors.registers``):
#: one, four and two vectors per column (each broadcast number feeding that many multiply-adds), with as many
#: columns as keep the accumulators and the operands in registers. With 32 (AVX-512): 16 x 14, 64 x 4 and 32 x 7.
#: With 16 (AVX2, where 16 lanes are two registers): 16 x 5, 64 x 1 and 32 x 3 (10, 8 and 12 accumulators); on an
#: AMD Zen 3, AlexNet's second layer ran 16 x 14 in 177 ms, 16 x 6 in 97-109 (it spills), 16 x 5 in 55-58 and
#: 32 x 3 in 50-53.
SHAPES = {32: ((16, 14), (64, 4), (32, 7)), 16: ((16, 5), (64, 1), (32, 3))}
#: kernels of at least this many columns sum a strip whose columns' broadcast numbers are consecutive in X through
#: a loop that addresses them from one base (``sum_lines``): with a pointer per column, the 16 x 14 kernel's loop
#: kept 14 of them and the tables' in 15 general registers and reloaded 7 from the stack each step, 24 loads per 14
#: multiply-adds. AlexNet's first layer's input gradient (the sub-pixel form on ``rows``) 38.9 -> 35.8 ms; the 32 x 7
#: and 64 x 4 kernels, whose pointers fit, ran no faster with the second loop (which costs compile time: 0.3 s each,
#: 0.6 s for the 16 x 14)
CONSECUTIVE_MIN_WIDTH = 8
#: 16-lane kernels as wide as an output row shorter than ``SHAPES``' 16-lane strips, per count of vector registers:
#: each strip is then one row, whose numbers are consecutive in X (the loop above), where 16 x 14's strips span two
#: rows and never are. With 32 registers, LeNet-5's second layer (rows of 10): 16 x 10 0.118 ms against 0.149 by
#: 16 x 14 (AMD Zen 5, best of 40 alternating in one process). With 16 registers the 16-lane kernel is 5 wide,
#: under ``CONSECUTIVE_MIN_WIDTH``: none
ROW_SHAPES = {32: ((16, 10),), 16: ()}
#: kernels for the ``wide`` formulation whose blocks tile output rows exactly, per count of vector registers: a row of
#: 112 outputs at stride 1 (or of 224, ...) is one block of seven vectors (or two), where 64 x 4's blocks of 64
#: compute 128 positions for 112 (256 for 224). With 32 registers, 112 x 3 (21 accumulators; four columns would leave
#: no register for the operands): the anchor suite's video_c1 (3 -> 64 channels, 3x3x3 on rows of 112), forced onto
#: ``wide``, 0.92-0.93x the time of 64 x 4 (median of 25 rounds alternating in one process, twice; best 25.2-25.8
#: against 27.6 ms, AMD Zen 5); 3 -> 64 channels 3 x 3 on (8, 3, 224, 224), 0.87x. With 16 registers: none
WIDE_ROW_SHAPES = {32: ((112, 3),), 16: ()}
#: every table of generated shapes
TABLES = (SHAPES, ROW_SHAPES, WIDE_ROW_SHAPES)
TARGET = Path(__file__).with_name("blocked.py")

HEADER = '''"""Register-blocked multiply-accumulate kernels: GENERATED by ``python -m numconv.kernels.cpu.codegen`` from
``codegen.py``, which documents them. Do not edit by hand."""
import numpy as np
from numba import njit

from numconv.kernels.cpu.parallel import task_loop
from numconv.kernels.cpu.runs import add_run, floor_run, load_run, multiply_add_run, store_lanes, store_run

#: a call's tasks take every block for one strip of columns before the next strip, rather than every strip of one
#: block before the next block, where the vectors one block reads over its whole sum (its packed weights, in the
#: ``lanes`` formulation; the first block's sum stands for all) outgrow the first-level cache (more than
#: STRIPS_OUTER_MIN_BLOCK bytes) and all the blocks' fit well in the second-level one (V at most
#: STRIPS_OUTER_MAX_BYTES): the strip's broadcast numbers, scattered over many rows or planes, are then fetched once
#: and served from the first-level cache to every block, while the vectors come from the second-level cache either
#: way. On an AMD Zen 4: AlexNet's first layer (3 blocks of 46 KB) 19.1 against 22.7 ms in one process,
#: alternating; NiN's 1 x 1 forced onto lanes 13 against 19.5 (separate processes). Strip by strip everywhere ran
#: slower with small blocks (the video's first layer, 5 KB: 1.17x) and with a large V (AlexNet's second layer,
#: 1.2 MB: 1.03x; the weight gradients' packed positions: 1.16-1.67x)
STRIPS_OUTER_MIN_BLOCK = 16 * 1024
STRIPS_OUTER_MAX_BYTES = 512 * 1024


@njit(cache=True, inline="always")
def takes_strips_outer(V, vb, rlo, rhi, lanes):
    """Whether a call's tasks take every block for one strip before the next strip (the rule above): one block's
    vectors over its sum, ``lanes`` wide from row ``rlo[0]`` to ``rhi[0]``, and all of ``V``, in bytes."""
    block_bytes = np.int64(rhi[0] - rlo[0]) * lanes * V.itemsize if vb.shape[0] else 0
    return block_bytes > STRIPS_OUTER_MIN_BLOCK and V.size * V.itemsize <= STRIPS_OUTER_MAX_BYTES
'''


#: the decorator of a kernel's tasks function: compiled on its own and called by its address from the kernel's
#: parallel loop (``parallel.task_loop``), never from Python
TASKS_DECORATOR = '@njit(fastmath={"contract"}, no_cpython_wrapper=True, no_cfunc_wrapper=True, cache=True)'


def task_count(kernel: str, parameters: str, doc: list, tasks: str, per_thread: int = 0) -> list:
    """The lines of ``kernel(parameters)`` (docstring lines ``doc``), a ``parallel.TaskLoop`` that runs its ``tasks``
    tasks (the function's result, in Python) in at most ``RANGES`` ranges over the threads, a call of
    ``kernel``_tasks(parameters, first, end) per range (``parallel._ranges``, one loop for every kernel whose
    arguments have the same types), the last ``per_thread`` parameters (per-thread scratch) as the calling thread's
    rows.

    The tasks are a function of their own because Numba's parallel lowering types and lowers a loop's body a second
    time (the 16 x 14 kernel compiled in 8.5 s with its body in the loop, 5.3 s as a function), and are called by
    address so that the loop's compile does not optimise and emit them again (``parallel.py``); ranges rather than
    a call per task, which was up to 1.9x slower where tasks are short. Used by ``winograd_codegen.py`` too."""
    decorator = f"@task_loop({kernel}_tasks" + (f", per_thread={per_thread})" if per_thread else ")")
    lines = [decorator, f"def {kernel}({parameters}):"]
    lines += [f'    """{doc[0]}'] + [f"    {line}".rstrip() for line in doc[1:]]
    lines[-1] += ' Returns its count of tasks."""'
    lines.append(f"    return {tasks}")
    return lines


def kernel_name(lanes: int, width: int) -> str:
    return f"_fma_{lanes}x{width}"


def column_lines(width: int, indent: str) -> list:
    """The lines that address a strip's ``width`` columns from ``j0`` (the last strip repeats the last column)."""
    return [line for j in range(width)
            for line in (f"{indent}c{j} = min(j0 + {j}, last)", f"{indent}x{j} = xc[c{j}] + x_base")]


def initial_lines(width: int, indent: str) -> list:
    """The lines that start each column's sums at ``lane_init`` plus its column term."""
    return [f"{indent}a{j} = add_run(lane_init, init_col[c{j}])" for j in range(width)]


def sum_lines(lanes: int, width: int, indent: str, rows: str) -> list:
    """The loop that adds the products of the sum's ``rows`` (a ``range`` argument list) to the columns' sums; in
    kernels of at least ``CONSECUTIVE_MIN_WIDTH`` columns, a second loop for strips whose columns' numbers are
    consecutive in X (the ``rows`` formulation's weights, a ``lanes`` strip along one output row), which addresses
    them from one base."""

    def loop(at: str, indent: str, address) -> list:
        """The loop, the step's offset in X ``at`` (as ``x_at``), column j's number at X[``address(j)``]."""
        return ([f"{indent}for r in range({rows}):", f"{indent}    v_at = voff[r] + v_base", f"{indent}    x_at = {at}",
                 f"{indent}    w = load_run(V, v_at, {lanes})"]
                + [f"{indent}    a{j} = multiply_add_run(a{j}, w, X[{address(j)}])" for j in range(width)])

    if width < CONSECUTIVE_MIN_WIDTH:
        return loop("xr[r]", indent, lambda j: f"x{j} + x_at")
    consecutive = " and ".join(f"x{j} == x0 + np.uint64({j})" for j in range(1, width))
    return ([f"{indent}if {consecutive}:"] + loop("xr[r] + x0", indent + "    ", lambda j: f"x_at + np.uint64({j})")
            + [f"{indent}else:"] + loop("xr[r]", indent + "    ", lambda j: f"x{j} + x_at"))


def store_lines(lanes: int, width: int, indent: str) -> list:
    """The lines that store a task's ``width`` columns of ``lanes`` sums (``a0`` ...) after their floor, at ``indent``:
    whole runs where the lanes are contiguous, lane by lane where the columns are, else through a small tile."""
    lines = [f"{indent}a{j} = floor_run(a{j}, floor)" for j in range(width)]
    lines += [f"{indent}n_lanes = lanes[b]", f"{indent}o_base = oblk[b]"]
    # every lane, contiguous: a run of stores per column, which the SLP vectoriser turns into whole-vector stores;
    # in the last strip its repeats of the last column store the same numbers to the same place again
    lines.append(f"{indent}if n_lanes == {lanes} and ostride == 1:")
    lines += [f"{indent}    store_run(out, ocol[c{j}] + o_base, a{j})" for j in range(width)]
    if lanes <= 2 * LANES:
        # every lane of every column, the columns contiguous in the output (output channels as lanes, the
        # ``lanes`` formulation): lane by lane (10% on AlexNet's first layer; the 32 x 3 kernel on NiN's 1 x 1
        # layers, AVX2: 19.5 ms against 30.6 through the tile)
        lines.append(f"{indent}elif n_lanes == {lanes} and j0 + {width} <= columns "
                     f"and ocol[j0 + {width - 1}] - ocol[j0] == {width - 1}:")
        lines.append(f"{indent}    store_lanes(out, ocol[j0] + o_base, ostride, ("
                     + ", ".join(f"a{j}" for j in range(width)) + "))")
    lines.append(f"{indent}else:")
    lines.append(f"{indent}    tile = np.empty({width * lanes}, out.dtype)")
    lines += [f"{indent}    store_run(tile, {j * lanes}, a{j})" for j in range(width)]
    lines += [f"{indent}    for j in range(min({width}, columns - j0)):", f"{indent}        at = ocol[j0 + j] + o_base",
              f"{indent}        for k in range(n_lanes):",
              f"{indent}            out[at + np.uint64(k) * ostride] = tile[j * {lanes} + k]"]
    return lines


def kernel_source(lanes: int, width: int) -> str:
    """The source of the kernel with ``lanes`` lanes (a multiple of 16) and ``width`` columns per task."""
    lines = []
    emit = lines.append
    emit("")
    emit("")
    # the tasks, a range of them per call from the shared parallel loop (``task_count``)
    emit(TASKS_DECORATOR)
    emit(f"def {kernel_name(lanes, width)}_tasks(V, voff, vb, X, xr, xc, xb, rlo, rhi, out, ocol, oblk, ostride, "
         "lanes, init_lane, init_col, floor, first, end):")
    emit(f'    """Tasks ``first`` to ``end`` - 1: task t is block t // strips, columns from {width} x (t % strips),')
    emit(f'    or, with the strips outer, block t % blocks, columns from {width} x (t // blocks)."""')
    emit("    columns = xc.shape[0]")
    emit(f"    strips = (columns + {width - 1}) // {width}")
    emit("    blocks = vb.shape[0]")
    emit(f"    strips_outer = takes_strips_outer(V, vb, rlo, rhi, {lanes})")
    emit("    for task in range(first, end):")
    emit("        if strips_outer:")
    emit("            strip = task // blocks")
    emit("            b = task - strip * blocks")
    emit("        else:")
    emit("            b = task // strips")
    emit("            strip = task - b * strips")
    emit(f"        j0 = strip * {width}")
    emit("        last = columns - 1")
    emit("        v_base = vb[b]")
    emit("        x_base = xb[b]")
    lines.extend(column_lines(width, "        "))
    # column j's sums, one number per lane: a tuple of ``lanes`` (``runs.py``)
    emit(f"        lane_init = load_run(init_lane, np.uint64(b * {lanes}), {lanes})")
    lines.extend(initial_lines(width, "        "))
    lines.extend(sum_lines(lanes, width, "        ", "rlo[b], rhi[b]"))
    lines.extend(store_lines(lanes, width, "        "))
    emit("")
    emit("")
    operands = "V, voff, vb, X, xr, xc, xb, rlo, rhi, out, ocol, oblk, ostride, lanes, init_lane, init_col, floor"
    lines += task_count(kernel_name(lanes, width), operands,
                        [f"{lanes} lanes x {width} columns per task; see codegen.py."],
                        f"vb.shape[0] * ((xc.shape[0] + {width - 1}) // {width})")
    return "\n".join(lines) + "\n"


def split_kernel_source(lanes: int, width: int) -> str:
    """The source of the kernel with ``lanes`` lanes and ``width`` columns per strip whose tasks split the sum:
    ``_fma_{lanes}x{width}_split``, with three more operands, ``chunk``, ``per_task`` and ``strips_outer``. A task
    takes one block and ``per_task`` consecutive strips (fewer in its block's last task), the tasks block by block or,
    with ``strips_outer``, every block for one run of strips before the next; for each ``chunk`` rows of the sum it
    runs every one of its strips, keeping their sums between chunks in a scratch of the task's (vector loads and
    stores), so that the block's vectors of one chunk stay in the first-level cache while its strips reuse them. The
    last chunk stores as the other kernels do."""
    name = kernel_name(lanes, width) + "_split"
    lines = ["", "", TASKS_DECORATOR,
             f"def {name}_tasks(V, voff, vb, X, xr, xc, xb, rlo, rhi, out, ocol, oblk, ostride, lanes, init_lane, "
             "init_col, floor, chunk, per_task, strips_outer, first, end):",
             '    """Tasks ``first`` to ``end`` - 1: task t is block t // runs, strips from per_task x (t % runs)',
             '    on, or, with the strips outer, block t % blocks, strips from per_task x (t // blocks) on; the sum',
             '    chunk by chunk."""',
             "    columns = xc.shape[0]",
             f"    strips = (columns + {width - 1}) // {width}",
             "    runs = (strips + per_task - 1) // per_task",
             "    blocks = vb.shape[0]",
             "    last = columns - 1",
             f"    sums = np.empty(per_task * {width * lanes}, out.dtype)",
             "    for task in range(first, end):",
             "        if strips_outer:",
             "            b = task % blocks",
             "            run = task // blocks",
             "        else:",
             "            b = task // runs",
             "            run = task - b * runs",
             "        first_strip = run * per_task",
             "        end_strip = min(strips, first_strip + per_task)",
             "        v_base = vb[b]",
             "        x_base = xb[b]",
             f"        lane_init = load_run(init_lane, np.uint64(b * {lanes}), {lanes})",
             "        for r_first in range(rlo[b], rhi[b], chunk):",
             "            r_end = min(r_first + chunk, rhi[b])",
             "            for strip in range(first_strip, end_strip):",
             f"                j0 = strip * {width}",
             f"                kept = np.uint64((strip - first_strip) * {width * lanes})"]
    lines += column_lines(width, "                ")
    lines.append("                if r_first == rlo[b]:")
    lines += initial_lines(width, "                    ")
    lines.append("                else:")
    lines += [f"                    a{j} = load_run(sums, kept + np.uint64({j * lanes}), {lanes})"
              for j in range(width)]
    lines += sum_lines(lanes, width, "                ", "r_first, r_end")
    lines.append("                if r_end < rhi[b]:")
    lines += [f"                    store_run(sums, kept + np.uint64({j * lanes}), a{j})" for j in range(width)]
    lines.append("                else:")
    lines += store_lines(lanes, width, "                    ")
    lines += ["", ""]
    operands = ("V, voff, vb, X, xr, xc, xb, rlo, rhi, out, ocol, oblk, ostride, lanes, init_lane, init_col, floor, "
                "chunk, per_task, strips_outer")
    lines += task_count(name, operands, [f"{lanes} lanes x {width} columns per strip, the sum split into "
                                         "chunks; see codegen.py."],
                        f"vb.shape[0] * (((xc.shape[0] + {width - 1}) // {width} + per_task - 1) // per_task)")
    return "\n".join(lines) + "\n"


def module_source() -> str:
    every = [shape for table in TABLES for shapes in table.values() for shape in shapes]
    split = [shapes[-1] for shapes in SHAPES.values()]
    kernels = "".join(f"\n    {shape!r}: {kernel_name(*shape)}," for shape in every)
    split_kernels = "".join(f"\n    {shape!r}: {kernel_name(*shape)}_split," for shape in split)
    return (HEADER + "".join(kernel_source(lanes, width) for lanes, width in every)
            + "".join(split_kernel_source(lanes, width) for lanes, width in split)
            + "\n\n#: the (lanes, columns) of the kernels that blocks of registers fit, per count of vector registers"
            f"\nSHAPES = {SHAPES!r}\n"
            "#: the 16-lane kernels as wide as a short output row, per count of vector registers\n"
            f"ROW_SHAPES = {ROW_SHAPES!r}\n"
            "#: the ``wide`` kernels whose blocks tile output rows, per count of vector registers\n"
            f"WIDE_ROW_SHAPES = {WIDE_ROW_SHAPES!r}\n"
            f"#: every generated kernel by its (lanes, columns)\nKERNELS = {{{kernels}\n}}\n"
            "#: the kernels whose tasks split the sum (``split_kernel_source``), for the two-vector shapes\n"
            f"SPLIT_KERNELS = {{{split_kernels}\n}}\n")


def main() -> None:
    TARGET.write_text(module_source())
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
