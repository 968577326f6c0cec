"""The runs of the generated blocked kernels (``numconv/kernels/cpu/runs.py``): each compiles to the machine code of
the number-by-number statements it stands for, computes their numbers, and is the same as its plain-Python twin,
which the kernels call when Numba's JIT is disabled."""
import re

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from numconv.kernels.cpu import runs

FASTMATH = {"contract"}


def _instructions(function, *args) -> list:
    """The machine instructions that ``function`` (a fresh, uncached dispatcher) compiles to for ``args``, with
    labels and mangled names blanked."""
    function(*args)
    lines = function.inspect_asm(function.signatures[0]).splitlines()
    code = [line.split("#")[0].strip() for line in lines if line.startswith("\t") and not line.strip().startswith(".")]
    return [re.sub(r"_ZN\S+|\.const\.\S+", "SYMBOL", re.sub(r"\.LBB\d+_\d+", "LABEL", line)) for line in code if line]


# every pair below is one operation written as runs and written number by number, as the kernels once were


@njit(fastmath=FASTMATH)
def _load_add_by_run(lanes, columns, at):
    first = runs.load_run(lanes, at, 4)
    return runs.add_run(first, columns[0]), runs.add_run(first, columns[1])


@njit(fastmath=FASTMATH)
def _load_add_by_number(lanes, columns, at):
    i0, i1, i2, i3 = lanes[at + np.uint64(0)], lanes[at + np.uint64(1)], lanes[at + np.uint64(2)], \
        lanes[at + np.uint64(3)]
    e0, e1 = columns[0], columns[1]
    return (i0 + e0, i1 + e0, i2 + e0, i3 + e0), (i0 + e1, i1 + e1, i2 + e1, i3 + e1)


@njit(fastmath=FASTMATH)
def _multiply_add_by_run(totals, vector, number):
    return runs.multiply_add_run(totals, vector, number)


@njit(fastmath=FASTMATH)
def _multiply_add_by_number(totals, vector, number):
    t0, t1, t2, t3 = totals
    w0, w1, w2, w3 = vector
    t0 += w0 * number
    t1 += w1 * number
    t2 += w2 * number
    t3 += w3 * number
    return t0, t1, t2, t3


@njit(fastmath=FASTMATH)
def _store_by_run(out, at, stride, first, second):
    runs.store_run(out, at, first)
    runs.store_lanes(out, at + np.uint64(8), stride, (first, second))


@njit(fastmath=FASTMATH)
def _store_by_number(out, at, stride, first, second):
    a0, a1, a2, a3 = first
    b0, b1, b2, b3 = second
    out[at + np.uint64(0)] = a0
    out[at + np.uint64(1)] = a1
    out[at + np.uint64(2)] = a2
    out[at + np.uint64(3)] = a3
    base = at + np.uint64(8)
    lane0 = base + np.uint64(0) * stride
    out[lane0 + np.uint64(0)] = a0
    out[lane0 + np.uint64(1)] = b0
    lane1 = base + np.uint64(1) * stride
    out[lane1 + np.uint64(0)] = a1
    out[lane1 + np.uint64(1)] = b1
    lane2 = base + np.uint64(2) * stride
    out[lane2 + np.uint64(0)] = a2
    out[lane2 + np.uint64(1)] = b2
    lane3 = base + np.uint64(3) * stride
    out[lane3 + np.uint64(0)] = a3
    out[lane3 + np.uint64(1)] = b3


@njit(fastmath=FASTMATH)
def _combine_by_run(first, second, third, scale):
    return runs.combine_run("-1 +0 -0:2", (first, second, third), (scale,)), \
        runs.combine_run("-0:0 +2", (first, second, third), (scale,))


@njit(fastmath=FASTMATH)
def _combine_by_number(first, second, third, scale):
    a0, a1, a2, a3 = first
    b0, b1, b2, b3 = second
    c0, c1, c2, c3 = third
    return (-b0 + a0 - scale * c0, -b1 + a1 - scale * c1, -b2 + a2 - scale * c2, -b3 + a3 - scale * c3), \
        (-scale * a0 + c0, -scale * a1 + c1, -scale * a2 + c2, -scale * a3 + c3)


@njit(fastmath=FASTMATH)
def _floor_by_run(first, second, floor):
    return runs.floor_run(first, floor), runs.floor_run(second, floor)


@njit(fastmath=FASTMATH)
def _floor_by_number(first, second, floor):
    a0, a1, a2, a3 = first
    b0, b1, b2, b3 = second
    return (floor if a0 < floor else a0, floor if a1 < floor else a1, floor if a2 < floor else a2,
            floor if a3 < floor else a3), \
        (floor if b0 < floor else b0, floor if b1 < floor else b1, floor if b2 < floor else b2,
         floor if b3 < floor else b3)


def _arguments(dtype):
    """Arguments for each pair, in ``dtype``: small integers, whose sums and products are exact either way."""
    values = np.arange(1, 9, dtype=dtype)
    first, second = tuple(dtype(v) for v in (3, -2, 5, 7)), tuple(dtype(v) for v in (1, 4, -6, 2))
    return {
        "load_add": (values, np.array([10, -20], dtype), np.uint64(2)),
        "multiply_add": (first, second, dtype(3)),
        "store": (np.zeros(24, dtype), np.uint64(1), np.uint64(4), first, second),
        "combine": (first, second, tuple(dtype(v) for v in (-4, 6, 8, -2)), dtype(0.5)),
        "floor": (first, second, dtype(0)),
    }


PAIRS = {"load_add": (_load_add_by_run, _load_add_by_number),
         "multiply_add": (_multiply_add_by_run, _multiply_add_by_number),
         "store": (_store_by_run, _store_by_number),
         "combine": (_combine_by_run, _combine_by_number),
         "floor": (_floor_by_run, _floor_by_number)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(PAIRS))
def test_a_run_compiles_to_the_machine_code_of_its_numbers(name, dtype):
    by_run, by_number = PAIRS[name]
    args = _arguments(dtype)[name]
    assert _instructions(by_run, *args) == _instructions(by_number, *args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(PAIRS))
def test_a_run_computes_its_numbers(name, dtype):
    by_run, by_number = PAIRS[name]
    run_args, number_args = _arguments(dtype)[name], _arguments(dtype)[name]
    got, expected = by_run(*run_args), by_number(*number_args)
    if name == "store":
        got, expected = run_args[0], number_args[0]
        # the lanes of both runs, 4 apart from offset 9: 3, 1 | -2, 4 | 5, -6 | 7, 2
        assert expected[9:24].tolist() == [3, 1, 0, 0, -2, 4, 0, 0, 5, -6, 0, 0, 7, 2, 0]
    np.testing.assert_array_equal(np.array(got, dtype), np.array(expected, dtype))


def _same_run(by_python, compiled):
    """A Python run (an array of lanes) holds the compiled run's numbers (boxed as Python floats), in float32, the
    dtype of the numbers it was made from."""
    assert by_python.dtype == np.float32
    np.testing.assert_array_equal(by_python, np.array(compiled, np.float32))


def test_each_run_as_python_is_the_compiled_run():
    """What the kernels call with the JIT disabled (the spec's coverage measurement) computes what they compile."""
    values = np.arange(1, 9, dtype=np.float32)
    first, second = (np.float32(3), np.float32(-2)), (np.float32(5), np.float32(7))
    _same_run(runs._load_run(values, np.uint64(3), 3), njit(lambda v: runs.load_run(v, np.uint64(3), 3))(values))
    _same_run(runs._add_run(first, np.float32(4)), njit(lambda r, n: runs.add_run(r, n))(first, np.float32(4)))
    _same_run(runs._multiply_add_run(first, second, np.float32(2)),
              njit(lambda t, r, n: runs.multiply_add_run(t, r, n))(first, second, np.float32(2)))
    by_python, compiled = np.zeros(12, np.float32), np.zeros(12, np.float32)
    runs._store_run(by_python, np.uint64(1), first)
    runs._store_lanes(by_python, np.uint64(4), np.uint64(3), (first, second))
    njit(lambda out: (runs.store_run(out, np.uint64(1), first), runs.store_lanes(out, np.uint64(4), np.uint64(3),
                                                                                   (first, second))))(compiled)
    np.testing.assert_array_equal(by_python, compiled)
    assert by_python.tolist() == [0, 3, -2, 0, 3, 5, 0, -2, 7, 0, 0, 0]
    # lanes 1 apart overlap: each lane's store overwrites the one before's second column, as compiled
    by_python, compiled = np.zeros(4, np.float32), np.zeros(4, np.float32)
    runs._store_lanes(by_python, np.uint64(0), np.uint64(1), (first, second))
    njit(lambda out: runs.store_lanes(out, np.uint64(0), np.uint64(1), (first, second)))(compiled)
    np.testing.assert_array_equal(by_python, compiled)
    assert by_python.tolist() == [3, -2, 7, 0]
    third, half = (np.float32(-4), np.float32(6)), np.float32(0.5)
    for formula in ("-1 +0 -0:2", "-0:0 +2", "+2"):
        by_python = runs._combine_run(formula, (first, second, third), (half,))
        _same_run(by_python, njit(lambda a, b, c, q: runs.combine_run(formula, (a, b, c), (q,)))(first, second, third,
                                                                                                  half))
    assert runs._combine_run("-1 +0 -0:2", (first, second, third), (half,)).tolist() == [-5 + 3 + 2, -7 - 2 - 3]
    nan = (np.float32(np.nan), np.float32(-0.5), np.float32(2), np.float32(-np.inf))
    for floor in (np.float32(0), np.float32(-np.inf)):
        by_python = runs._floor_run(nan, floor)
        _same_run(by_python, njit(lambda r, f: runs.floor_run(r, f))(nan, floor))
    # NaN is not below any floor: a fused ReLU keeps it, as PyTorch's does; -inf as the floor keeps every number
    np.testing.assert_array_equal(runs._floor_run(nan, np.float32(0)), [np.nan, 0, 2, 0])
    np.testing.assert_array_equal(runs._floor_run(nan, np.float32(-np.inf)), nan)
    # a run loaded keeps its numbers when the array it came from is written over
    loaded = runs._load_run(values, np.uint64(0), 2)
    runs._store_run(values, np.uint64(0), second)
    assert loaded.tolist() == [1, 2]


@pytest.mark.parametrize("call", [
    lambda: njit(lambda t, r: runs.multiply_add_run(t, r, np.float64(1)))((np.float32(1),), (np.float32(2),)),
    lambda: njit(lambda out: runs.store_run(out, 0, (np.float64(1),)))(np.zeros(2, np.float32)),
    lambda: njit(lambda v, n: runs.load_run(v, 0, n))(np.zeros(2, np.float32), 2),
    lambda: njit(lambda a: runs.combine_run("+0:0", (a,), (np.float64(1),)))((np.float32(1),)),
])
def test_a_run_refuses_mixed_types_and_a_count_that_is_not_a_constant(call):
    """A run's numbers, and the number added or multiplied, share one float type (the kernels' dtype): anything else
    is a typing error, not a silent conversion; a load's count is a compile-time constant."""
    with pytest.raises(TypingError):
        call()


@pytest.mark.parametrize("formula", ["", "1", "+x", "+1:", "*1", "+1:2:3"])
def test_a_formula_that_is_not_terms_is_a_value_error(formula):
    """A formula is terms such as "+1" or "-0:2", as Python and when compiled."""
    with pytest.raises(ValueError, match="formula"):
        runs._combine_run(formula, ((np.float32(1),),), (np.float32(2),))
    with pytest.raises(ValueError, match="formula"):
        njit(lambda a, q: runs.combine_run(formula, (a,), (q,)))((np.float32(1),), np.float32(2))
