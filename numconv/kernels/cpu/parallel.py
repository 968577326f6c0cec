"""Parallel kernels that run small calls on one thread.

A ``parallel=True`` kernel pays twice for its threads: at every call, the thread pool's start and join, which on
small arrays outweighs the work, and at its first call, the compile: Numba builds a parallel loop's body into a
gufunc, wraps it twice and links every function it calls into each of those and into the kernel, and LLVM
optimises and emits the whole at each level (a pooling kernel of LeNet-5's: 1.6 s one-threaded, 4.4 s parallel).
:func:`parallel_kernel` compiles a kernel both ways from one source, each on its first call, and a call runs the
parallel version only where its largest array's elements (or the kernel's own measure of work, as a matrix
product's multiply-adds) times the threads beyond the first reach ``PARALLEL_MIN_WORK`` (or the kernel's own
``min_work``): what more threads could save grows with both. ``prange``
is ``range`` in the one-thread version, and no kernel carries a floating-point sum from one ``prange`` iteration to
the next, so both versions add in the same order (the spec check runs both and requires equal results; where a
kernel leaves the order to the compiler, ``fastmath``'s reassociation, LLVM could still vectorise the two
differently). An element-wise kernel declared with ``streams=True`` has a third version, parallel, whose loop
runs over blocks instead of elements (``streaming.py``): a call runs it where the output, the last argument, is
at least ``streaming.STREAM_MIN_BYTES`` and no other argument shares its memory (an in-place call reads each line it
writes, and gains nothing).

The generated kernels (``blocked.py``, ``winograd_kernels.py``) are a parallel loop over ranges of tasks whose body
is one call of a large task function. Called by name, the task would be linked into the loop's compiled body, the
gufunc that Numba builds around it and the kernel, and LLVM would optimise and emit it again at each level (a 5 x 5
Winograd weight transform, float32: its task 5.2 s, its loop 8.2 s more; the fused kernel's task 9.7 s, its loop 5.5 s
more). :func:`task_loop` compiles the task on its own instead and the loop calls it by its address (:func:`call_task`),
as Numba calls any compiled function: the two loops then compile in 0.8 and 1.4 s. One loop (``_ranges``) serves
every task whose arguments have the same types, so that it compiles once for all of them.
"""
from __future__ import annotations

import functools
import threading
import types
from contextlib import contextmanager

import numba
import numpy as np
from numba import config, njit, prange, typeof
from numba import types as numba_types
from numba.core import cgutils, errors
from numba.extending import intrinsic, overload

from numconv.kernels.cpu import streaming

__all__ = ["PARALLEL_MIN_WORK", "PACK_MIN_WORK", "RANGES", "parallel_kernel", "every_call", "task_loop", "call_task",
           "thread_rows"]

#: a parallel call of a :class:`TaskLoop` splits its tasks into at most this many ranges: 16 per thread on 16
#: threads, enough to even out ranges of uneven cost (the thread count cannot be read here: a kernel that asks for it
#: cannot be cached)
RANGES = 256

#: a call runs parallel where its largest array's elements times (threads - 1) reach this, the threads being those
#: Numba starts (``NUMBA_NUM_THREADS``; with 1, every call runs the one-thread version): with 2 threads from 262,144
#: elements (1 MiB of float32), with 16 from 17,477. Above where two threads start to pay on a call of its own (a
#: ReLU of 51,200 elements ran faster on one, of 150,528 on two; max-pooling with indices 1.4x faster on two at
#: 51,200 already), so that in the training steps of LeNet-5 at its default batch of 32 (150,528 elements at most)
#: the kernels on this threshold compile no parallel loop on a first run (the padding, packing and dense kernels,
#: whose thresholds are their own, do; its training step 0.99-1.02x the time with every loop parallel; at a
#: batch of 64, 0.95-0.98x, its large calls parallel; in one process, alternating); every larger zoo model keeps its
#: large calls parallel
PARALLEL_MIN_WORK = 2 ** 18
#: the packing passes that gather each position's channels into vector lanes (``dense.pack_positions``,
#: ``winograd._pack_input``: a read strided across channel planes per element) run parallel from this many
#: elements instead: on an Intel Xeon, best of 200, one thread against two, C3D-small's training step's calls (us):
#: the Winograd packs of 128,000, 110,592 and 256,000 elements 31.6 -> 16.1, 20.4 -> 13.9, 63.1 -> 26.8 (55,296: 9.9
#: -> 9.1), the positions' of 131,072 52.3 -> 32.4 (32,768: 13.6 -> 11.6); the whole step 4.63 -> 4.51 ms (medians of
#: 6 rounds alternating in one process), LeNet-5's at batch 64 and M5's unchanged. LeNet-5 at batch 32 runs no
#: Winograd and already packs positions in parallel, so its first run compiles nothing more
PACK_MIN_WORK = 2 ** 16


#: the versions :func:`every_call` may force
VERSIONS = ("parallel", "serial", "streamed")


class _Forcing(threading.local):
    """Which version every call of this thread runs while :func:`every_call` holds: "parallel", "serial", "streamed"
    (the parallel version for a kernel that does not stream), or None
    (by size). None is a class attribute, so that a thread that never set it reads it like any other attribute
    (``getattr`` with a default on a thread-local that lacks the name took 0.4 us, a quarter of a call's overhead)."""

    version = None


_forced = _Forcing()


@contextmanager
def every_call(version: str):
    """While the block runs, every call of a :func:`parallel_kernel` in this thread runs ``version`` ("parallel",
    "serial" or "streamed") whatever its size: how the spec check proves every version on small arrays."""
    if version not in VERSIONS:
        raise ValueError(f"version must be 'parallel', 'serial' or 'streamed', got {version!r}")
    saved = _forced.version
    _forced.version = version
    try:
        yield
    finally:
        _forced.version = saved


class ParallelKernel:
    """A kernel compiled parallel (``parallel``) and on one thread (``serial``) from one Python function; a call
    runs the version that its size picks (module docstring). Signature and docstring are the function's."""

    def __init__(self, function, options: dict):
        options = dict(options)
        #: the work from which a call runs parallel, where the kernel sets its own (else ``PARALLEL_MIN_WORK``)
        self.min_work = options.pop("min_work", None)
        #: the kernel's own measure of a call's work, a function of its arguments, or None: its largest array's size
        self.work = options.pop("work", None)
        #: whether the kernel has a streamed version (module docstring)
        self.streams = options.pop("streams", False)
        self.parallel = njit(parallel=True, **options)(function)
        # a copy under another qualified name: Numba names a function's cache files after it, and its index would
        # not tell the two versions apart
        self.serial = njit(**options)(_renamed(function, "serial", function.__globals__))
        self._function, self._options, self._streamed = function, options, None
        functools.update_wrapper(self, function)

    @property
    def streamed(self):
        """The streamed version (``streams`` only): made at its first use, when the kernel's module has defined every
        name it reads, from a copy of the module's namespace with ``streaming.STREAMED`` in it."""
        if self._streamed is None:
            namespace = dict(self._function.__globals__, **streaming.STREAMED)
            self._streamed = njit(parallel=True, **self._options)(_renamed(self._function, "streamed", namespace))
        return self._streamed

    def __call__(self, *args):
        version = _forced.version
        if version is not None:
            if version == "streamed" and self.streams:
                return self.streamed(*args)
            return (self.serial if version == "serial" else self.parallel)(*args)
        # the threads Numba starts, not numba.get_num_threads(): that takes two locks, a microsecond a call (7% of a
        # 30 us pooling backward); set_num_threads lowers the threads a parallel call runs on
        extra_threads = config.NUMBA_NUM_THREADS - 1
        if extra_threads > 0:
            # the work times the extra threads reach the threshold: the work reaches this quotient
            least = -(-(PARALLEL_MIN_WORK if self.min_work is None else self.min_work) // extra_threads)
            if self.work is not None:
                return (self._large if self.work(*args) >= least else self.serial)(*args)
            # else the work is some array's elements
            for arg in args:
                if isinstance(arg, np.ndarray) and arg.size >= least:
                    return self._large(*args)
            return self.serial(*args)
        return (self.streamed if self._streams_output(args) else self.serial)(*args)

    def _large(self, *args):
        """A call large enough for the threads: the streamed version where its output streams, else the parallel
        one (asked only here, so that a small call pays nothing for the question)."""
        return (self.streamed if self._streams_output(args) else self.parallel)(*args)

    def _streams_output(self, args) -> bool:
        """Whether a call streams its output (``streams`` only; module docstring). The streamed loop reads and writes
        whole blocks of contiguous elements: a strided view (which no caller passes) takes the parallel version."""
        out = args[-1]
        return self.streams and out.nbytes >= streaming.STREAM_MIN_BYTES and out.flags.c_contiguous and not any(
            isinstance(arg, np.ndarray) and (np.may_share_memory(arg, out) or not arg.flags.c_contiguous)
            for arg in args[:-1])


def _renamed(function, version: str, namespace: dict):
    """A copy of ``function`` that reads its globals from ``namespace``, its qualified name ending in ``_version``."""
    copy = types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__qualname__ = f"{function.__qualname__}_{version}"
    return copy


def parallel_kernel(function=None, **options):
    """``njit(parallel=True, **options)``, as :class:`ParallelKernel`: a one-thread version for small calls.
    ``min_work`` (an option of its own, not Numba's) replaces ``PARALLEL_MIN_WORK`` for a kernel whose work per
    element is larger, so that two threads pay on smaller arrays; ``work`` (another), a function of the kernel's
    arguments, measures a call's work where its largest array does not (a matrix product's multiply-adds);
    ``streams`` (another), for a kernel that writes its last argument through ``streaming.map_part``, adds the
    version that streams large outputs past the caches."""
    if function is None:
        return functools.partial(parallel_kernel, **options)
    return ParallelKernel(function, options)


def call_task(task, address, arguments) -> None:
    """``task(*arguments)``. Compiled, a call of the function at ``address``: a task's version for the types of
    ``arguments``, which must have been compiled (:class:`TaskLoop` compiles it before the loop), so that the caller
    does not link the task into its own code; ``task`` is then None, so that every task whose arguments have the
    same types shares the caller's compiled code. As Python (``NUMBA_DISABLE_JIT``), a call of ``task``."""
    task(*arguments)


#: the argument types that :class:`TaskLoop` has compiled a task for in this process: the types ``call_task``
#: accepts when its caller compiles
_compiled_task_types = set()


def _task_types(argument_types) -> tuple:
    """The types a task is compiled for: its arguments', arrays taken as writeable and aligned (a read-only or
    unaligned array has the same representation), so that one version serves every caller."""
    return tuple(numba_types.Array(kind.dtype, kind.ndim, kind.layout) if isinstance(kind, numba_types.Array)
                 else kind
                 for kind in argument_types)


@intrinsic
def _call_address(typingctx, address, arguments):
    """``call_task``'s compiled form: Numba's own calling convention, through a pointer."""
    argument_types = _task_types(arguments.types)
    if argument_types not in _compiled_task_types:
        raise errors.TypingError(f"no task is compiled for {argument_types}: a TaskLoop compiles its task for the "
                                 "arguments it is given")

    def codegen(context, builder, signature, args):
        function_type = context.call_conv.get_function_type(numba_types.void, argument_types)
        function = builder.inttoptr(args[0], function_type.as_pointer())
        values = cgutils.unpack_tuple(builder, args[1], len(argument_types))
        # a task raises nothing (kernels take valid input), so its status is not read
        context.call_conv.call_function(builder, function, numba_types.void, argument_types, values)
        return context.get_dummy_value()

    return numba_types.void(address, arguments), codegen


@overload(call_task)
def _call_task_compiled(task, address, arguments):
    return lambda task, address, arguments: _call_address(address, arguments)


def thread_rows(scratch: tuple, thread: int) -> tuple:
    """(scratch[0][thread], scratch[1][thread], ...): the row of ``thread`` of each per-thread scratch array."""
    return tuple(rows[thread] for rows in scratch)


@overload(thread_rows)
def _thread_rows_compiled(scratch, thread):
    if len(scratch) == 0:
        return lambda scratch, thread: ()
    return lambda scratch, thread: (scratch[0][thread],) + thread_rows(scratch[1:], thread)


@njit(parallel=True, cache=True)
def _ranges(task, task_address, tasks, arguments, scratch):
    """Tasks 0 to ``tasks`` - 1 in at most ``RANGES`` ranges over the threads: a ``call_task(task, task_address,
    (*arguments, *the calling thread's row of each of scratch, first, end))`` per range. Every :class:`TaskLoop`
    runs its tasks here (``task`` None, compiled: the task is reached by its address), so that one compiled loop
    serves every task whose arguments have the same types."""
    ranges = min(tasks, RANGES)
    for at in prange(ranges):
        call_task(task, task_address, arguments + thread_rows(scratch, numba.get_thread_id())
                  + (at * tasks // ranges, (at + 1) * tasks // ranges))


class TaskLoop:
    """A parallel loop over ranges of tasks that calls its task function ``task`` through :func:`call_task`
    (:func:`_ranges`), as ``kernel(*arguments)``: ``count(*arguments)`` (Python, the function decorated by
    :func:`task_loop`) gives the number of tasks. The task's arguments are the kernel's, the last ``per_thread`` of
    them (2D per-thread scratch) as the calling thread's row, then the range's first and end task (int64). The task
    is compiled for each float dtype of the first argument: every caller passes the same kinds of arguments but for
    that dtype (as ``launch.run_vectorized`` keys its calls). The loop is compiled once for all tasks whose
    arguments have the same types, rather than once per kernel (0.6 s each: the three blocked kernels of LeNet-5's
    first run, the Winograd kernels of one window each)."""

    def __init__(self, count, task, per_thread: int):
        self.count = count
        self.task = task
        #: the compiled loop, shared (``_ranges``)
        self.loop = _ranges
        self.per_thread = per_thread
        self._addresses = {}
        functools.update_wrapper(self, count)

    def __call__(self, *args):
        address = self._addresses.get(args[0].dtype.char)
        if address is None:
            address = self._addresses[args[0].dtype.char] = self._compile_task(args)
        split = len(args) - self.per_thread
        _ranges(self.task if config.DISABLE_JIT else None, address, self.count(*args), args[:split], args[split:])

    def _compile_task(self, args) -> int:
        """The address of the task's version for the loop's ``args``, compiled (or loaded from the cache)."""
        if config.DISABLE_JIT:
            return 0
        argument_types = [typeof(arg) for arg in args]
        split = len(argument_types) - self.per_thread
        signature = _task_types((*argument_types[:split], *(scratch.copy(ndim=1) for scratch in argument_types[split:]),
                                 numba_types.int64, numba_types.int64))
        self.task.compile(signature)
        _compiled_task_types.add(signature)
        compiled = self.task.overloads[signature]
        return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)


def task_loop(task, per_thread: int = 0):
    """Decorator: the function below, which gives the number of tasks of its arguments, as a :class:`TaskLoop` of
    ``task``."""
    return lambda count: TaskLoop(count, task, per_thread)
