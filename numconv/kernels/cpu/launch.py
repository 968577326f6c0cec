"""Calling the generated blocked kernels (``blocked.py``): the compiler settings they need, shared zeros, scratch
buffers, and operands prepared once from arrays that can never change."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import weakref
from collections import deque
from contextlib import contextmanager
from functools import lru_cache

import numba
import numpy as np

from numconv.kernels.cpu import blocked, tuning
from numconv.kernels.memory import release_host_cache
from numconv.kernels.scalar import relu_floor

#: (lanes, columns) -> kernel, for every generated shape (``tuning.SHAPES`` are the ones this CPU runs)
KERNELS = blocked.KERNELS
#: (lanes, columns) -> the kernel of that shape whose tasks split the sum, for the two-vector shapes
SPLIT_KERNELS = blocked.SPLIT_KERNELS


@contextmanager
def vectorizer_settings():
    """LLVM's SLP vectoriser on and its loop vectoriser off while a blocked kernel compiles (Numba's defaults are
    the reverse, which leaves the accumulators scalar). A user's own NUMBA_SLP_VECTORIZE or NUMBA_LOOP_VECTORIZE
    wins. Numba reads these settings only when it compiles, so the rest of the process is unaffected."""
    saved = numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE
    if "NUMBA_SLP_VECTORIZE" not in os.environ:
        numba.config.SLP_VECTORIZE = 1
    if "NUMBA_LOOP_VECTORIZE" not in os.environ:
        numba.config.LOOP_VECTORIZE = 0
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE = saved


#: (kernel, dtype) pairs that have been compiled, or loaded from the cache, with the vectoriser settings
_compiled = set()
_compiling = threading.Lock()


def run_vectorized(kernel, *args) -> None:
    """Call ``kernel`` (a Numba dispatcher that must be compiled with :func:`vectorizer_settings`) on ``args``.

    The settings are process-wide, so the first call for each dtype, which compiles, holds a lock while they are
    changed; later calls find the compiled kernel and change nothing, so calls from several Python threads run side
    by side. Every caller passes a kernel the same kinds of arguments but for the float dtype, which the first
    argument carries (the offset tables are uint64, the arrays contiguous), so that dtype names the version: a key
    of every argument's kind cost microseconds a call."""
    key = (kernel, args[0].dtype.char)
    if key in _compiled:
        kernel(*args)
        return
    with _compiling, vectorizer_settings():
        kernel(*args)
        _compiled.add(key)


def fma(shape: tuple, *args, relu: bool = False) -> None:
    """Run the blocked kernel of ``shape`` (lanes, columns) on ``args`` (see codegen.py for their meaning; all but its
    ``floor``, which is 0 with ``relu`` and else -inf, in the output's dtype)."""
    run_vectorized(KERNELS[shape], *args, relu_floor(args[9].dtype, relu))


def fma_split(shape: tuple, *args, chunk: int, per_task: int, strips_outer: bool = False, relu: bool = False) -> None:
    """Run the blocked kernel of ``shape`` whose tasks split the sum (``codegen.split_kernel_source``) on ``args``,
    as :func:`fma` does, in chunks of ``chunk`` rows, ``per_task`` strips a task, the tasks block by block or, with
    ``strips_outer``, every block for a run of strips before the next run."""
    run_vectorized(SPLIT_KERNELS[shape], *args, relu_floor(args[9].dtype, relu), np.int64(chunk),
                   np.int64(per_task), bool(strips_outer))


def compile_ahead(dtype="float32", model: str | None = None, batch: int | None = None,
                  evaluation_batch: int | None = None) -> int:
    """On a first run, compile kernels in helper processes and in this one, sharing the cores, before the run goes
    on; returns how many jobs ran (0 with the cache filled: nothing starts).

    The jobs: with ``model`` (a zoo model's name), first, the forward and backward passes of a training step of
    ``batch`` samples (``run_model_once(..., "passes")``); then each blocked kernel that Numba's cache lacks
    (``run_once``), the largest kernels (3-4.5 s each on a 2-core machine); and with ``model``, an evaluation of
    ``evaluation_batch`` samples (``"evaluation"``), held back until the passes have ended (it is then the next job)
    or no other job is left (:class:`_Jobs`), so that its convolutions mostly load what the passes compiled (run
    beside them, it compiled AlexNet's Winograd kernels a second time: 17 s of CPU). One
    helper process per core beside this one (at least one, :func:`serve`), each taking the next job as it finishes
    one: a process pays about 1.3 s of CPU to import numconv and start Numba, and a process per job, more processes
    than cores, had LeNet-5's first run pay that five times. Meanwhile this process runs the rest of the model's
    training step (``"rest"``: the dense layers' passes, the loss, the SGD update), then takes jobs itself until none
    is left, and waits for the helpers' last; a job that fails in a helper (or whose helper dies) runs here, where its
    error shows. Every kernel the run calls is then in the cache or compiled in this process."""
    name = np.dtype(dtype).name
    # the kernels with more columns first, the longer compiles (LeNet-5's on a 2-core machine: 16 x 14 4.0 s,
    # 16 x 10 3.4 s, 64 x 4 2.6 s), so that the last job to end is a short one
    shapes = sorted(_shapes_for(model, dtype), key=lambda shape: -shape[1])
    # with the two-vector shape, its kernel that splits the sum too: the large blocks of such models take it
    kernels = [(run_once, (shape, name, split)) for shape in shapes
               for kernel, split in ((KERNELS[shape], False), (SPLIT_KERNELS.get(shape), True))
               if kernel is not None and not _in_cache(kernel)]
    if not kernels:
        return 0
    if model is None:
        jobs = _Jobs(kernels)
    else:
        passes = (run_model_once, (model, name, "passes", batch))
        jobs = _Jobs([passes] + kernels, held=(run_model_once, (model, name, "evaluation", batch, evaluation_batch)),
                     after=passes)
    count = len(jobs)
    failed = deque()
    # each helper's first job handed out here, so that the passes go to a helper whatever the threads' timing
    feeders = [threading.Thread(target=_feed, args=(jobs.next(), jobs, failed), daemon=True)
               for _ in range(min(count, max(1, numba.config.NUMBA_NUM_THREADS - 1)))]
    try:
        for feeder in feeders:
            feeder.start()
        if model is not None:
            run_model_once(model, name, "rest", batch)
            release_host_cache()  # the blocks of its arrays, whose sizes are the zoo's inputs' rather than the run's
        _run_jobs(jobs)
        for feeder in feeders:
            feeder.join()
    finally:
        jobs.clear()  # after an error here, the helpers take no more
    _run_jobs(_Jobs(failed))
    return count


class _Jobs:
    """The jobs of :func:`compile_ahead`, taken in order by whichever thread asks first (:meth:`next`), and a job
    ``held`` back until the job ``after`` has ended (then it is the next one) or no other is left: the evaluation,
    after the passes. Held back to the end of the queue, it left one process idle on LeNet-5's first run while the
    other compiled it (2.8 s: its parallel max-pooling); run at once it compiles what the passes are compiling."""

    def __init__(self, jobs: list, held=None, after=None):
        self._queue = deque(jobs)
        self._held, self._after = held, after
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._queue) + (self._held is not None)

    def next(self):
        """The next job, or None when none is left."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            job, self._held = self._held, None
            return job

    def ended(self, job) -> None:
        """``job`` has ended (done or failed): where it is the one the held job waits for, that one goes next."""
        with self._lock:
            if job is self._after and self._held is not None:
                self._queue.appendleft(self._held)
                self._held = None

    def clear(self) -> None:
        """No job is left (after an error, so that the helpers take no more)."""
        with self._lock:
            self._queue.clear()
            self._held = None


def _feed(job, jobs: _Jobs, failed: deque) -> None:
    """Keep a helper process (:func:`serve`) busy: ask it to run ``job``, then each next one taken from ``jobs``,
    until none is left; a job that fails there (or whose helper dies) goes to ``failed``."""
    try:
        helper = subprocess.Popen([sys.executable, "-c", "from numconv.kernels.cpu import launch; launch.serve()"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:  # no helper: the caller runs the job
        failed.append(job)
        return
    with helper:
        while job is not None:
            try:
                helper.stdin.write(f"{job[0].__name__} {job[1]!r}\n")
                helper.stdin.flush()
                done = helper.stdout.readline() == "done\n"
            except OSError:  # the helper has gone
                done = False
            if not done:
                failed.append(job)
            jobs.ended(job)
            job = jobs.next()


def serve() -> None:
    """A helper process of :func:`compile_ahead`: run each job read from the standard input, a line ``name
    arguments`` (``run_once`` or ``run_model_once``, and the repr of a tuple of literals), and answer a line ``done`` or
    ``failed``, until the input ends."""
    jobs = {"run_once": run_once, "run_model_once": run_model_once}
    for line in sys.stdin:
        try:
            name, arguments = line.split(" ", 1)
            jobs[name](*ast.literal_eval(arguments))
            answer = "done"
        except Exception:  # the caller runs the job again itself, where the error shows
            answer = "failed"
        print(answer, flush=True)


def _run_jobs(jobs: _Jobs) -> None:
    """Run the jobs of ``jobs`` in this process, taking each as the helpers take theirs, until none is left."""
    job = jobs.next()
    while job is not None:
        job[0](*job[1])
        jobs.ended(job)
        job = jobs.next()


def _shapes_for(model: str | None, dtype) -> list:
    """The shapes of the blocked kernels worth compiling ahead for the zoo model ``model`` (each of this CPU's
    ``tuning.SHAPES``, ``tuning.ROW_SHAPES`` and ``tuning.WIDE_ROW_SHAPES`` without one): the 32-lane kernel only
    where a convolution's forward (lanes: a group's output channels, summing over its input channels and taps), its
    input gradient (the other way round) or its weight gradient (a group's output channels, summing over a training
    batch's positions: long) can take it (``conv_cost.takes_paired``), or a dense layer's forward
    (``dense.streams_weight``); a kernel as wide as a short row only where a convolution at stride 1 along its rows
    has input or output rows that wide (its input gradient's rows or its forward's, at the model's
    ``models.INPUT_SHAPES``), and a ``wide`` kernel whose blocks tile rows only where such rows are a multiple of its
    lanes; so that a model that never runs one leaves the cores to the others."""
    if model is None:
        return list(tuning.KERNEL_SHAPES)
    from numconv import layers, models
    from numconv.kernels.cpu.conv_cost import takes_paired
    from numconv.kernels.cpu.dense import streams_weight

    network = models.MODELS[model](rng=0, dtype=np.dtype(dtype))
    paired = False
    for layer in _layers_of(network):
        if isinstance(layer, layers._ConvNd):
            group_out, group_in = layer.weight.shape[0] // layer._options()["groups"], layer.weight.shape[1]
            taps = int(np.prod(layer.weight.shape[2:]))
            paired |= (takes_paired(group_out, group_in * taps) or takes_paired(group_in, group_out * taps)
                       or takes_paired(group_out, tuning.PAIRED_MIN_REDUCTION))
        if isinstance(layer, layers.Linear):
            paired |= streams_weight(layer.weight)
    paired_shape = (tuning.PAIRED_LANES, tuning.PAIRED_COLUMNS)
    rows = _row_widths(network, models.INPUT_SHAPES[model])
    return ([shape for shape in tuning.SHAPES if paired or shape != paired_shape]
            + [shape for shape in tuning.ROW_SHAPES if shape[1] in rows]
            + [shape for shape in tuning.WIDE_ROW_SHAPES if any(width % shape[0] == 0 for width in rows)])


def _row_widths(network, input_shape: tuple) -> set:
    """The widths of the input and output rows of ``network``'s convolutions at stride 1 along their rows, for an
    input of ``input_shape`` (without the batch axis)."""
    from numconv import layers

    widths = set()
    shape = (1,) + tuple(input_shape)
    for _, layer in network.named_layers():
        out_shape = layer.output_shape(shape)
        if isinstance(layer, layers._ConvNd) and np.ravel(layer.stride)[-1] == 1:
            widths |= {shape[-1], out_shape[-1]}
        shape = out_shape
    return widths


def _layers_of(network):
    """Every layer of ``network``, itself and its children's, depth first."""
    pending = [network]
    while pending:
        layer = pending.pop()
        pending.extend(layer.children())
        yield layer


def _in_cache(kernel) -> bool:
    """Whether Numba's cache holds any compiled version of the blocked ``kernel``'s task and of the loop that it
    shares with the others (their indexes for the current source)."""
    try:
        return all(part._cache._cache_file._load_index() for part in (kernel.loop, kernel.task))
    except (AttributeError, OSError):  # another Numba's internals, or an unreadable cache: compile in-process
        return True


def run_once(shape: tuple, dtype: str, split: bool = False) -> None:
    """Run a one-output-row convolution through the blocked kernel of ``shape`` (with ``split``, its variant that
    splits the sum, on a sum long enough to take it), as a real call does, so that the kernel is compiled for
    ``dtype`` and saved to Numba's cache (what a :func:`compile_ahead` process runs)."""
    from numconv.kernels.cpu import conv

    lanes = shape[0]
    if split:
        channels = 2 * tuning.SPLIT_CHUNK_BYTES // (lanes * np.dtype(dtype).itemsize)  # two chunks
        x = np.ones((1, channels, 1, 1, 1), dtype)
        out = np.empty((1, lanes, 1, 1, 1), dtype)
        conv.conv_forward_split(x, np.ones((lanes, channels, 1, 1, 1), dtype), None, out, (1, 1, 1), (0, 0, 0),
                                (1, 1, 1), 1)
        return
    if shape == (tuning.WIDE_LANES, tuning.WIDE_COLUMNS) or shape in tuning.WIDE_ROW_SHAPES:  # a row of positions
        out = np.empty((1, 1, 1, 1, lanes), dtype)
        conv.conv_forward_wide(np.ones(out.shape, dtype), np.ones((1, 1, 1, 1, 1), dtype), None, out, (1, 1, 1),
                               (0, 0, 0), (1, 1, 1), 1)
        return
    # output channels as lanes, on this kernel: the automatic choice would take 16 x 14 for a sum of one product,
    # however many the channels
    out = np.empty((1, lanes, 1, 1, 1), dtype)
    conv._conv_forward(np.ones((1, 1, 1, 1, 1), dtype), np.ones((lanes, 1, 1, 1, 1), dtype), None, out, (1, 1, 1),
                       (0, 0, 0), (1, 1, 1), 1, conv._Forced(algorithm="lanes", lanes_shape=shape))


@lru_cache(maxsize=64)
def zeros(size: int, dtype: str) -> np.ndarray:
    """A shared array of zeros; the kernels only read it."""
    return np.zeros(size, dtype)


_workspaces = threading.local()


def workspace(tag: str, size: int, dtype) -> np.ndarray:
    """A flat scratch array of ``size`` elements, kept per thread and per ``tag`` and reused by later calls.

    Fresh memory costs a page fault per page on first touch (on a small virtual machine that was measured at more
    than the time to fill it), so the padded inputs and packed operands of the convolutions reuse their buffers.
    A tag is used by one step of one call at a time; the contents are garbage on return. The largest buffer of each
    tag stays allocated (a 3D layer's packed output gradient can take hundreds of megabytes):
    :func:`release_workspaces` frees them.
    """
    cache = getattr(_workspaces, "arrays", None)
    if cache is None:
        cache = _workspaces.arrays = {}
    dtype = np.dtype(dtype)
    array = cache.get((tag, dtype.str))
    if array is None or array.size < size:
        array = _aligned(size, dtype)
        cache[(tag, dtype.str)] = array
    return array[:size]


#: the workspaces start on a cache line: a 64-byte vector load from a packed operand then never spans two lines
#: (NumPy aligns to 16 bytes; a misaligned packed weight array was measured 1.3-1.4x slower in the 32 x 7 kernel)
ALIGNMENT = 64


def _aligned(size: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised (size,) array of ``dtype`` whose data starts at a multiple of ``ALIGNMENT`` bytes."""
    raw = np.empty(size * dtype.itemsize + ALIGNMENT, np.uint8)
    skip = -raw.ctypes.data % ALIGNMENT
    return raw[skip:skip + size * dtype.itemsize].view(dtype)


def release_workspaces() -> None:
    """Free this thread's scratch buffers (they are allocated again when next needed)."""
    _workspaces.arrays = {}


def _owner(array: np.ndarray) -> np.ndarray:
    """The array at the end of ``array``'s chain of views: the one whose ``base`` is not an array."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


#: id of a frozen array's owner -> (a weak reference to it, {key: value derived from its memory})
_frozen = {}


def freeze(array: np.ndarray) -> None:
    """Take the caller's word that the elements of ``array`` (and of every view of its memory) never change again:
    values derived from them (:func:`derived`, :func:`prepared`) are then computed once and kept while that memory
    lives. An ONNX session's private copies of its stored weights are frozen so."""
    owner = _owner(array)
    entry = _frozen.get(id(owner))
    if entry is None or entry[0]() is not owner:
        _frozen[id(owner)] = (weakref.ref(owner, lambda _, at=id(owner): _frozen.pop(at, None)), {})


def _remembered(source: np.ndarray):
    """The values derived from the frozen memory that ``source`` views, or None where it is not frozen."""
    owner = _owner(source)
    entry = _frozen.get(id(owner))
    return entry[1] if entry is not None and entry[0]() is owner else None


def is_frozen(array: np.ndarray) -> bool:
    """Whether ``array`` views frozen memory (:func:`freeze`): what is prepared from it is computed once."""
    return _remembered(array) is not None


def derived(source: np.ndarray, key: tuple, compute):
    """``compute()``, a value that depends on ``source``'s elements and on ``key`` alone: remembered where
    ``source`` views frozen memory (:func:`freeze`; the view's place, shape and dtype are part of the key),
    computed on every call otherwise."""
    values = _remembered(source)
    return compute() if values is None else _kept(values, source, key, compute)


def _kept(values: dict, source: np.ndarray, key: tuple, compute):
    """``compute()`` for the view ``source`` and ``key``, kept in ``values`` (its frozen memory's)."""
    view = (source.__array_interface__["data"][0], source.shape, source.strides, source.dtype.str) + key
    value = values.get(view)
    if value is None:
        value = values[view] = compute()
    return value


def derived_array(source: np.ndarray, key: tuple, compute) -> np.ndarray:
    """:func:`derived` for an array computed from ``source`` (a weight rearranged): where ``source`` is frozen, the
    result is frozen too, so that what is derived from it in turn is kept as well."""
    if _remembered(source) is None:
        return compute()

    def frozen_compute():
        array = compute()
        freeze(array)
        return array

    return derived(source, key, frozen_compute)


def prepared(source: np.ndarray, tag: str, size: int, dtype, fill, key: tuple = ()) -> np.ndarray:
    """A flat array of ``size`` elements of ``dtype`` that ``fill(array)`` writes from ``source`` (packed or
    transformed weights; ``key`` the other parameters it depends on): kept for a frozen ``source``
    (:func:`derived`), and otherwise written on every call into this thread's scratch buffer ``tag``."""
    values = _remembered(source)
    if values is None:
        array = workspace(tag, size, dtype)
        fill(array)
        return array

    def compute():
        array = _aligned(size, np.dtype(dtype))
        fill(array)  # left writeable: a read-only array is another type to Numba, which would compile again
        return array

    return _kept(values, source, (tag, size, np.dtype(dtype).str) + key, compute)


def _zero_output(V, voff, vb, X, xr, xc, xb, rlo, rhi, out, *rest):
    """Stands in for a blocked kernel in :func:`run_model_once`: its output, all zeros."""
    out[:] = 0


#: the parts of a training run that :func:`run_model_once` can run
MODEL_PARTS = ("passes", "rest", "evaluation")


def run_model_once(model: str, dtype: str, part: str, batch: int | None = None,
                   evaluation_batch: int | None = None) -> None:
    """Run ``part`` of a training run of the zoo model ``model`` on a batch of ``batch`` samples (by default
    ``dense.DOT_MAX_BATCH + 1``, the dense layers' path of a training batch), with every blocked kernel replaced by
    zeros: "passes", the forward and backward passes of a training step; "rest", the dense layers' passes on their
    own (the passes reach them only after the convolutions and poolings of the forward pass), the cross-entropy and
    its gradient, an SGD step with momentum and weight decay; "evaluation", an evaluation of ``evaluation_batch``
    samples (by default ``train.EVALUATION_BATCH``, ``evaluate``'s), whose convolutions run kernels that the passes
    compile too. The sizes are to be the run's, since they pick each parallel kernel's version (``parallel.py``): a
    run passes the batch its evaluation takes (for AlexNet's 100 test images, all of them: the process running the
    evaluation peaked at 1.7 GB, against 2.8 GB with 256 images). What :func:`compile_ahead` runs to compile, and save
    to Numba's cache, the model's other kernels."""
    import numconv.functional as F
    from numconv import layers, models, optim
    from numconv.kernels.cpu.dense import DOT_MAX_BATCH
    from numconv.train import EVALUATION_BATCH

    if part not in MODEL_PARTS:
        raise ValueError(f"part must be one of {MODEL_PARTS}, got {part!r}")
    network = models.MODELS[model](rng=0, dtype=np.dtype(dtype))
    batch = batch or DOT_MAX_BATCH + 1
    x = np.ones((batch,) + models.INPUT_SHAPES[model], dtype)
    saved, saved_split = dict(KERNELS), dict(SPLIT_KERNELS)
    KERNELS.update(dict.fromkeys(KERNELS, _zero_output))
    SPLIT_KERNELS.update(dict.fromkeys(SPLIT_KERNELS, _zero_output))
    try:
        if part == "evaluation":
            network.eval()
            network.forward(np.ones((evaluation_batch or EVALUATION_BATCH,) + models.INPUT_SHAPES[model], dtype))
            return
        if part == "passes":
            network.train()
            logits = network.forward(x)
            network.backward(np.ones_like(logits), needs_input_grad=False)
            return
        for layer in _layers_of(network):
            if isinstance(layer, layers.Linear):
                layer.backward(np.ones_like(layer.forward(np.ones((batch, layer.weight.shape[1]), dtype))))
        logits = np.ones(network.output_shape(x.shape), dtype)
        target = np.zeros(batch, np.int64)
        F.cross_entropy(logits, target, reduction="sum")
        F.cross_entropy_backward(0.5, logits, target, reduction="sum")
        optim.SGD(network, lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True).step()
    finally:
        KERNELS.update(saved)
        SPLIT_KERNELS.update(saved_split)
