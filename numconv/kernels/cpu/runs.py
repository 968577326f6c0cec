"""Runs of numbers as tuples: the loads, sums, multiply-adds, floors and stores of the generated kernels
(``blocked.py``, ``winograd_kernels.py``), one statement per run of a vector's lanes instead of one per number.

A blocked kernel keeps its block's results in registers: a tuple of ``lanes`` numbers per column, which LLVM splits
into scalars and its SLP vectoriser joins again into vector registers. Numba types and lowers every statement on
its own, at about a millisecond each, and written number by number (``a0_0 += w0 * s0`` ...) a 16 x 14 kernel was
over a thousand statements, which took most of its 5-8 s compile. Written as runs it is about eighty, and compiles
in half the time, to the same machine code: each run below emits what Numba emits for the statements it replaces
(the same loads, additions, multiplications and stores, in the same order; Numba then gives every floating-point
operation of the function its ``fastmath`` flags, these included), which ``tests/test_runs.py`` checks instruction by
instruction against the statements written out.

Each is a Numba intrinsic, which only compiled code can call; with the JIT disabled (``NUMBA_DISABLE_JIT``, as the
spec's coverage measurement runs the kernels) the names are the plain Python functions beside them instead, which
compute the same numbers a run at a time, as NumPy arrays of its lanes (a run a kernel writes out as a tuple is taken
as one): number by number, the coverage measurement's Winograd rows spent most of their time making tuples. Arrays
are flat and C-contiguous, starts unsigned or signed integers, runs tuples.
"""
from functools import lru_cache

import numpy as np
from numba import types
from numba.core import config
from numba.extending import intrinsic
from numba.np.arrayobj import make_array


def _address(context, builder, array_type, array, start_type, start, offset):
    """The address of ``array[start + offset]``, computed as Numba's subscript of a flat C-contiguous array is."""
    data = make_array(array_type)(context, builder, array).data
    at = context.cast(builder, start, start_type, types.uint64)
    return builder.gep(data, [builder.add(at, context.get_constant(types.uint64, offset))])


def _floats(*kinds) -> bool:
    """Whether every one of ``kinds`` is the same floating-point type (a run's numbers, or a run and one number)."""
    return all(isinstance(kind, types.Float) for kind in kinds) and len(set(kinds)) == 1


def _lanes(run) -> np.ndarray:
    """A run as the Python versions compute with it: an array of its lanes."""
    return run if isinstance(run, np.ndarray) else np.array(run)


def _load_run(array, start, count):
    return array[start:start + count].copy()  # a copy: a store into the array must not change the run


@intrinsic(prefer_literal=True)
def _load_run_jit(typingctx, array, start, count):
    if not (isinstance(array, types.Array) and isinstance(start, types.Integer)
            and isinstance(count, types.IntegerLiteral)):
        return None
    run = types.UniTuple(array.dtype, count.literal_value)

    def codegen(context, builder, signature, args):
        array_type, start_type, _ = signature.args
        return context.make_tuple(builder, run, [
            builder.load(_address(context, builder, array_type, args[0], start_type, args[1], i))
            for i in range(run.count)])

    return run(array, start, count), codegen


def _add_run(run, number):
    return _lanes(run) + number


@intrinsic
def _add_run_jit(typingctx, run, number):
    if not (isinstance(run, types.UniTuple) and _floats(run.dtype, number)):
        return None

    def codegen(context, builder, signature, args):
        return context.make_tuple(builder, run, [
            builder.fadd(builder.extract_value(args[0], k), args[1]) for k in range(run.count)])

    return run(run, number), codegen


def _multiply_add_run(totals, run, number):
    return _lanes(totals) + _lanes(run) * number


@intrinsic
def _multiply_add_run_jit(typingctx, totals, run, number):
    if not (isinstance(totals, types.UniTuple) and totals == run and _floats(totals.dtype, number)):
        return None

    def codegen(context, builder, signature, args):
        return context.make_tuple(builder, totals, [
            builder.fadd(builder.extract_value(args[0], k),
                         builder.fmul(builder.extract_value(args[1], k), args[2]))
            for k in range(totals.count)])

    return totals(totals, run, number), codegen


def _floor_run(run, floor):
    values = _lanes(run)
    return np.where(values < floor, floor, values).astype(values.dtype)


@intrinsic
def _floor_run_jit(typingctx, run, floor):
    if not (isinstance(run, types.UniTuple) and _floats(run.dtype, floor)):
        return None

    def codegen(context, builder, signature, args):
        lanes = []
        for k in range(run.count):
            number = builder.extract_value(args[0], k)
            # ordered: a NaN is not below the floor and stays NaN, as a comparison written out in Python keeps it
            lanes.append(builder.select(builder.fcmp_ordered("<", number, args[1]), args[1], number))
        return context.make_tuple(builder, run, lanes)

    return run(run, floor), codegen


def _store_run(array, start, run):
    values = _lanes(run)
    array[start:start + len(values)] = values


@intrinsic
def _store_run_jit(typingctx, array, start, run):
    if not (isinstance(array, types.Array) and isinstance(start, types.Integer) and isinstance(run, types.UniTuple)
            and _floats(array.dtype, run.dtype)):
        return None

    def codegen(context, builder, signature, args):
        array_type, start_type, _ = signature.args
        for i in range(run.count):
            builder.store(builder.extract_value(args[2], i),
                          _address(context, builder, array_type, args[0], start_type, args[1], i))
        return context.get_dummy_value()

    return types.none(array, start, run), codegen


def _store_lanes(array, start, stride, runs):
    columns = np.array([_lanes(run) for run in runs])
    for k in range(columns.shape[1]):  # lane by lane, as compiled: where lanes overlap, the later lane's stay
        array[start + k * stride:start + k * stride + len(runs)] = columns[:, k]


@intrinsic
def _store_lanes_jit(typingctx, array, start, stride, runs):
    if not (isinstance(array, types.Array) and isinstance(start, types.Integer) and isinstance(stride, types.Integer)
            and isinstance(runs, types.UniTuple) and isinstance(runs.dtype, types.UniTuple)
            and _floats(array.dtype, runs.dtype.dtype)):
        return None

    def codegen(context, builder, signature, args):
        array_type, start_type, stride_type, _ = signature.args
        step = context.cast(builder, args[2], stride_type, types.uint64)
        for k in range(runs.dtype.count):
            lane = builder.mul(context.get_constant(types.uint64, k), step)
            lane = builder.add(context.cast(builder, args[1], start_type, types.uint64), lane)
            for j in range(runs.count):
                builder.store(builder.extract_value(builder.extract_value(args[3], j), k),
                              _address(context, builder, array_type, args[0], types.uint64, lane, j))
        return context.get_dummy_value()

    return types.none(array, start, stride, runs), codegen


@lru_cache(maxsize=None)
def _terms(formula: str) -> tuple:
    """The terms of a ``combine_run`` formula: ((sign, scale index or None, run index), ...); ValueError where it is not
    one or more terms ``+i``, ``-i``, ``+s:i`` or ``-s:i`` (run i, optionally times scale s) separated by spaces."""
    terms = []
    for term in formula.split():
        sign, body = term[0], term[1:]
        scale, _, source = body.rpartition(":")
        if sign not in "+-" or not source.isdigit() or (scale and not scale.isdigit()):
            raise ValueError(f"formula must be terms such as '+1', '-0' or '+2:1', got {formula!r}")
        terms.append((sign, int(scale) if scale else None, int(source)))
    if not terms:
        raise ValueError(f"formula must have a term, got {formula!r}")
    return tuple(terms)


def _combine_run(formula, runs, scales):
    total = None
    for sign, scale, source in _terms(formula):
        term = _lanes(runs[source])
        if total is None:  # a first term's sign binds to its scale, as in "-q * x"
            if scale is None:
                total = -term if sign == "-" else term
            else:
                total = (-scales[scale] if sign == "-" else scales[scale]) * term
        else:
            term = term if scale is None else scales[scale] * term
            total = total - term if sign == "-" else total + term
    return total


@intrinsic(prefer_literal=True)
def _combine_run_jit(typingctx, formula, runs, scales):
    if not (isinstance(formula, types.StringLiteral) and isinstance(runs, types.UniTuple)
            and isinstance(runs.dtype, types.UniTuple) and isinstance(scales, types.BaseTuple)
            and _floats(runs.dtype.dtype, *scales)):
        return None
    terms = _terms(formula.literal_value)
    run = runs.dtype

    def codegen(context, builder, signature, args):
        sources = [builder.extract_value(args[1], i) for i in range(runs.count)]
        negative_zero = context.get_constant(run.dtype, -0.0)
        lanes = []
        for k in range(run.count):
            total = None
            for sign, scale, source in terms:
                term = builder.extract_value(sources[source], k)
                if total is None:  # a first term's sign binds to its scale ("-q * x"); Numba negates from -0.0
                    if scale is None:
                        total = builder.fsub(negative_zero, term) if sign == "-" else term
                    else:
                        factor = builder.extract_value(args[2], scale)
                        factor = builder.fsub(negative_zero, factor) if sign == "-" else factor
                        total = builder.fmul(factor, term)
                else:
                    if scale is not None:
                        term = builder.fmul(builder.extract_value(args[2], scale), term)
                    total = builder.fsub(total, term) if sign == "-" else builder.fadd(total, term)
            lanes.append(total)
        return context.make_tuple(builder, run, lanes)

    return run(formula, runs, scales), codegen


_JIT = not config.DISABLE_JIT
#: ``load_run(array, start, count)``: (array[start], ..., array[start + count - 1]); ``count`` a constant
load_run = _load_run_jit if _JIT else _load_run
#: ``add_run(run, number)``: each of ``run`` plus ``number`` (a block's first value: a lane's and a column's part)
add_run = _add_run_jit if _JIT else _add_run
#: ``multiply_add_run(totals, run, number)``: each of ``totals`` plus its lane of ``run`` times ``number`` (a
#: column's sums after one reduction step: the vector operand's lanes times the column's broadcast number)
multiply_add_run = _multiply_add_run_jit if _JIT else _multiply_add_run
#: ``floor_run(run, floor)``: each of ``run``, or ``floor`` where it is below (a fused ReLU's floor 0; -inf keeps
#: every number, NaN included)
floor_run = _floor_run_jit if _JIT else _floor_run
#: ``store_run(array, start, run)``: array[start + i] = run[i] (a column's lanes, contiguous in the output)
store_run = _store_run_jit if _JIT else _store_run
#: ``store_lanes(array, start, stride, runs)``: array[start + k * stride + j] = runs[j][k], lane by lane (every
#: column's lane k, the columns contiguous in the output and the lanes ``stride`` apart)
store_lanes = _store_lanes_jit if _JIT else _store_lanes
#: ``combine_run(formula, runs, scales)``: lane by lane, a signed sum of ``runs`` (a tuple of runs), some terms times
#: one of ``scales`` (numbers), written as ``formula`` (a constant string, ``_terms``: "-1 +2" is -runs[1] + runs[2],
#: "+0:1" scales[0] * runs[1]) and evaluated left to right, as the same sum written out is (a row of a Winograd
#: transform: ``winograd_codegen.py``)
combine_run = _combine_run_jit if _JIT else _combine_run
