"""The parallel kernels' two versions: which one a call runs, that both compute the same, and that Numba's cache
keeps them apart."""
import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import njit, prange
from numba.core.errors import TypingError

from numconv.kernels.cpu import dense, parallel, pointwise, pool
from numconv.kernels.cpu.parallel import every_call, parallel_kernel, task_loop

ROOT = Path(__file__).resolve().parents[1]


def _make_scaled():
    """A fresh kernel (nothing compiled yet): out = x * factor."""

    @parallel_kernel
    def scaled(x, factor, out):
        """out = x * factor. x, out (size,)."""
        for i in prange(x.shape[0]):
            out[i] = x[i] * factor

    return scaled


def _compiled(kernel) -> tuple:
    """(versions of the serial kernel compiled, versions of the parallel one)."""
    return len(kernel.serial.signatures), len(kernel.parallel.signatures)


def _scale_checked(kernel, size: int, factor: float) -> None:
    """Run ``kernel`` on ``size`` numbers and check its output."""
    x = np.arange(size, dtype=np.float64)
    out = np.empty_like(x)
    kernel(x, factor, out)
    np.testing.assert_array_equal(out, factor * x)


def test_a_small_call_runs_one_thread_and_a_large_one_parallel(monkeypatch):
    threads = numba.config.NUMBA_NUM_THREADS
    if threads < 2:
        pytest.fail("these tests need Numba to start at least 2 threads")
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WORK", 120 * (threads - 1))
    scaled = _make_scaled()
    _scale_checked(scaled, 119, 2.0)
    assert _compiled(scaled) == (1, 0)
    _scale_checked(scaled, 120, 3.0)  # exactly the threshold
    assert _compiled(scaled) == (1, 1)


def test_a_kernel_may_set_its_own_threshold(monkeypatch):
    """``min_work`` replaces ``PARALLEL_MIN_WORK`` for that kernel alone (the pooling passes that compute values)."""
    threads = numba.config.NUMBA_NUM_THREADS
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WORK", 10 ** 9)

    @parallel_kernel(min_work=50 * (threads - 1))
    def doubled(x, out):
        for i in prange(x.shape[0]):
            out[i] = 2.0 * x[i]

    for size, compiled in ((49, (1, 0)), (50, (1, 1))):
        x = np.arange(size, dtype=np.float64)
        out = np.empty_like(x)
        doubled(x, out)
        np.testing.assert_array_equal(out, 2.0 * x)
        assert _compiled(doubled) == compiled
    scaled = _make_scaled()  # a kernel without its own threshold still follows PARALLEL_MIN_WORK
    _scale_checked(scaled, 50, 2.0)
    assert _compiled(scaled) == (1, 0)


def test_a_kernel_may_measure_its_own_work():
    """With ``work``, a function of the call's arguments (a matrix product's multiply-adds), that measure against
    ``min_work`` decides, not the largest array: 7 x 7 rows times 7 columns run parallel from 343, whatever the
    arrays' sizes."""
    threads = numba.config.NUMBA_NUM_THREADS

    @parallel_kernel(min_work=343 * (threads - 1), work=lambda a, b, out: a.shape[0] * b.size)
    def product(a, b, out):
        for row in prange(a.shape[0]):
            for column in range(b.shape[0]):
                total = 0.0
                for k in range(a.shape[1]):
                    total += a[row, k] * b[column, k]
                out[row, column] = total

    for rows, compiled in ((6, (1, 0)), (7, (1, 1))):
        a, b = np.arange(rows * 7.0).reshape(rows, 7), np.arange(49.0).reshape(7, 7)
        out = np.empty((rows, 7))
        product(a, b, out)
        np.testing.assert_array_equal(out, a @ b.T)
        assert _compiled(product) == compiled


def test_the_largest_array_of_a_call_decides(monkeypatch):
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WORK", 100 * (numba.config.NUMBA_NUM_THREADS - 1))
    scaled = _make_scaled()
    x = np.arange(10, dtype=np.float64)
    out = np.zeros(100)  # only its first 10 elements are written
    scaled(x, 2.0, out)
    assert _compiled(scaled) == (0, 1)
    np.testing.assert_array_equal(out[:10], 2.0 * x)


def test_one_thread_never_runs_the_parallel_version(monkeypatch):
    """With NUMBA_NUM_THREADS=1 (read when the call is made)."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WORK", 1)
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)
    scaled = _make_scaled()
    _scale_checked(scaled, 1000, 2.0)
    assert _compiled(scaled) == (1, 0)


def test_every_call_forces_a_version_whatever_the_size(monkeypatch):
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WORK", 100)
    scaled = _make_scaled()
    small, large = np.ones(3), np.ones(1000)
    with every_call("parallel"):
        scaled(small, 2.0, np.empty(3))
    assert _compiled(scaled) == (0, 1)
    with every_call("serial"):
        out = np.empty(1000)
        scaled(large, 2.0, out)
    assert _compiled(scaled) == (1, 1)
    np.testing.assert_array_equal(out, 2.0)


def test_every_call_restores_the_version_it_found():
    with every_call("serial"):
        with every_call("parallel"):
            assert parallel._forced.version == "parallel"
        assert parallel._forced.version == "serial"
    assert parallel._forced.version is None


def test_every_call_names_a_bad_version():
    with pytest.raises(ValueError, match="version must be 'parallel', 'serial' or 'streamed', got 'threads'"):
        with every_call("threads"):
            pass


def test_a_kernel_keeps_its_name_signature_and_docstring():
    for kernel in (pointwise.relu_forward, pool._max_backward_tiles, dense.bias_grad):
        source = kernel.parallel.py_func
        assert kernel.__name__ == source.__name__
        assert kernel.__doc__ == source.__doc__
        assert inspect.signature(kernel) == inspect.signature(source)


def test_both_versions_of_real_kernels_agree_on_random_floats():
    """Float sums whose order matters (the bias gradient's, left to the compiler; max-pooling's ties and the
    average's divisions) on more planes than there are tasks."""
    rng = np.random.default_rng(3)
    grad = rng.standard_normal((5, 70, 333)).astype(np.float32)
    x = rng.standard_normal((3, 70, 1, 17, 19)).astype(np.float32)
    x[:, :, :, 4:6] = 0.5  # ties inside windows
    results = {}
    for version in ("serial", "parallel"):
        with every_call(version):
            bias = np.empty(70, np.float32)
            dense.bias_grad(grad, bias)
            out = np.empty((3, 70, 1, 8, 9), np.float32)
            indices = np.empty(out.shape, np.int64)
            pool.max_pool_forward(x, out, indices, (1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 1, 1))
            average = np.empty((3, 70, 1, 9, 10), np.float32)
            pool.avg_pool_forward(x, average, (1, 3, 3), (1, 2, 2), (0, 1, 1), (0, 1, 1), True)
            results[version] = (bias, out, indices, average)
    for serial, parallel_result in zip(results["serial"], results["parallel"]):
        np.testing.assert_array_equal(serial, parallel_result)
    np.testing.assert_allclose(results["serial"][0], grad.astype(np.float64).sum(axis=(0, 2)), rtol=1e-5)


def test_the_cache_keeps_the_two_versions_apart(tmp_path):
    """Compiled in one process and loaded in another, each version from its own cache files: the one-thread
    version never starts Numba's threads (its code is not the parallel loop's)."""
    script = """
import sys
import numba
import numpy as np
from numconv.kernels.cpu import parallel, pointwise
x = np.linspace(-1.0, 1.0, 50)
out = np.empty_like(x)
pointwise.relu_forward(x, out)
try:
    numba.threading_layer()
    sys.exit("the one-thread version started the threads")
except ValueError:
    pass
with parallel.every_call("parallel"):
    pointwise.relu_forward(x, out)
numba.threading_layer()
print(sum(pointwise.relu_forward.serial.stats.cache_hits.values()),
      sum(pointwise.relu_forward.parallel.stats.cache_hits.values()))
"""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                           timeout=300, cwd=ROOT) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert [run.stdout.split() for run in runs] == [["0", "0"], ["1", "1"]]


#: NumPy functions (called as ``np.name``) and array methods that Numba turns into a parallel loop of their own
#: inside a parallel kernel; ``math.sqrt`` and the like on scalars are not among them
_NUMPY_LOOPS = {"zeros", "ones", "full", "arange", "zeros_like", "ones_like", "full_like", "sqrt", "exp", "sum",
                "max", "min", "mean"}
_METHOD_LOOPS = {"sum", "max", "min", "mean", "astype", "copy", "fill"}


def _is_parallel(function: ast.FunctionDef) -> bool:
    for decorator in function.decorator_list:
        text = ast.unparse(decorator)
        if "parallel_kernel" in text or "parallel=True" in text:
            return True
    return False


def _array_loops_outside_prange(node) -> list:
    """The calls of ``_NUMPY_LOOPS`` and ``_METHOD_LOOPS`` under ``node`` that no ``for ... in prange(...)`` loop
    encloses."""
    if isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and ast.unparse(node.iter.func) == "prange":
        return []  # nested in a parallel loop, such an expression runs as a plain loop in each task
    found = []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = ast.unparse(node.func.value)
        if (node.func.attr in _NUMPY_LOOPS and owner in ("np", "numpy")) or (
                node.func.attr in _METHOD_LOOPS and owner not in ("np", "numpy", "math")):
            found.append(ast.unparse(node))
    for child in ast.iter_child_nodes(node):
        found += _array_loops_outside_prange(child)
    return found


def test_no_parallel_kernel_builds_arrays_outside_its_parallel_loop():
    """Each NumPy expression in a parallel kernel outside its prange loop is a parallel loop of its own, one more
    start of the thread pool on every call (the packed 1 x 1 kernel once built its tables so: seven starts, 10 of a
    small call's 14 us). Tables are built by the caller, and counts summed by a plain loop."""
    offenders = []
    for path in sorted((ROOT / "numconv" / "kernels" / "cpu").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and _is_parallel(node):
                offenders += [f"{path.name}:{node.name}: {call}" for call in _array_loops_outside_prange(node)]
    assert offenders == []


# not cached, so that the test can read their compiled code (code loaded from the cache cannot be inspected)
@njit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _offset_scaled_tasks(x, factor, out, scratch, first, end):
    """Tasks ``first`` to ``end`` - 1: out[i] = x[i] * factor + 0.375, the 0.375 through the calling thread's
    scratch (a constant that marks the task's code)."""
    scratch[0] = 0.375
    for i in range(first, end):
        out[i] = x[i] * factor + scratch[0]


@task_loop(_offset_scaled_tasks, per_thread=1)
def _offset_scaled(x, factor, out, scratch):
    """out = x * factor + 0.375 in ranges of tasks, a task per element. x, out (size,); scratch (threads, 1). Returns
    its count of tasks."""
    return x.shape[0]


@njit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _offset_doubled_tasks(x, factor, out, scratch, first, end):
    """``_offset_scaled_tasks`` with 2 x factor and 0.625."""
    scratch[0] = 0.625
    for i in range(first, end):
        out[i] = x[i] * (2 * factor) + scratch[0]


@task_loop(_offset_doubled_tasks, per_thread=1)
def _offset_doubled(x, factor, out, scratch):
    """out = x * 2 factor + 0.625, as ``_offset_scaled``."""
    return x.shape[0]


def _offset_scaled_checked(x, factor=3.0):
    out = np.zeros_like(x)
    _offset_scaled(x, factor, out, np.zeros((numba.config.NUMBA_NUM_THREADS, 1), x.dtype))
    np.testing.assert_array_equal(out, x * x.dtype.type(factor) + x.dtype.type(0.375))


def test_a_task_loop_runs_every_task_through_its_task_compiled_apart():
    """Each range of tasks runs (more tasks than ranges), the scratch is the thread's row, a version of the task per
    dtype; the loop calls the task by its address, so the task's code is not linked into the loop's."""
    for dtype in (np.float64, np.float32):
        _offset_scaled_checked(np.arange(parallel.RANGES * 2 + 37, dtype=dtype))
        _offset_scaled_checked(np.arange(37, dtype=dtype))
    task = _offset_scaled.task
    assert {signature[0].dtype for signature in task.signatures} == {numba.float64, numba.float32}
    assert all(signature[3] == numba.types.Array(signature[0].dtype, 1, "C") for signature in task.signatures)
    # the task's constant is in its own code and not in the loop's (a task called by name is inlined there); the
    # loop compiled afresh, as the one loaded from the cache cannot be inspected
    assert all("3.750000e-01" in code for code in task.inspect_llvm().values())
    loop = numba.njit(parallel=True)(parallel._ranges.py_func)
    x = np.arange(37, dtype=np.float64)
    out = np.zeros_like(x)
    scratch = np.zeros((numba.config.NUMBA_NUM_THREADS, 1))
    loop(None, _offset_scaled._addresses["d"], x.shape[0], (x, 3.0, out), (scratch,))
    np.testing.assert_array_equal(out, x * 3.0 + 0.375)
    assert not any("3.750000e-01" in code for code in loop.inspect_llvm().values())


def test_task_loops_whose_arguments_have_the_same_types_share_one_compiled_loop():
    """A second kernel of the same arguments' types runs its own task through the loop the first one compiled: the
    loop compiles once for both."""
    x = np.arange(50, dtype=np.float64)
    _offset_scaled_checked(x)
    loops = len(parallel._ranges.overloads)
    out = np.zeros_like(x)
    _offset_doubled(x, 3.0, out, np.zeros((numba.config.NUMBA_NUM_THREADS, 1)))
    np.testing.assert_array_equal(out, x * 6.0 + 0.625)
    assert len(parallel._ranges.overloads) == loops
    assert len(_offset_doubled.task.overloads) == 1


def test_a_read_only_array_runs_the_tasks_version_for_a_writeable_one():
    x = np.arange(20, dtype=np.float64)
    _offset_scaled_checked(x)
    compiled = len(_offset_scaled.task.signatures)
    x.flags.writeable = False
    _offset_scaled_checked(x)
    assert len(_offset_scaled.task.signatures) == compiled


def test_a_task_loop_refuses_arguments_its_task_was_not_compiled_for():
    """Arguments of other kinds than those the task was compiled for (here a strided array after contiguous ones of
    the same dtype) stop the loop's compile, never reach the task."""
    _offset_scaled_checked(np.arange(20, dtype=np.float64))
    with pytest.raises(TypingError, match="no task is compiled for"):
        _offset_scaled_checked(np.arange(40, dtype=np.float64)[::2])
