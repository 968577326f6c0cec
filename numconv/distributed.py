"""Training on many processes through MPI (mpi4py), in the pattern of Horovod and ChainerMN.

Start the program under an MPI launcher (``mpiexec -n 4 numconv train …``, or ``mpiexec -n 4 python script.py``
around :func:`numconv.train.fit`) and training runs on all the processes:

- **Data parallel** (the default): rank 0's parameters are broadcast once; every process draws the same global
  batch order from the run's seed and takes its own contiguous share of every global batch; after the backward
  pass the gradients, each already scaled by 1 / (global batch size), are summed with in-place ``Allreduce`` over
  a few large contiguous buffers (buckets); every process then takes the same SGD step. Dropout masks depend only
  on a sample's global row (``F.dropout``'s ``batch_share``), so N processes compute what one would.
- **Columns** (:func:`split_columns`, ``numconv train --columns 2``): AlexNet's two-GPU model parallelism. Process
  r holds column r, its share of the filters (or units) of every layer. Layers whose groups match the columns
  (AlexNet's conv2, conv4, conv5 and its per-column response normalisation) need no communication; a layer that
  takes all of the previous layer's maps (conv3, the fully-connected layers) is preceded by a
  :class:`ColumnGather` (``Allgatherv`` forward, ``Reduce_scatter`` of the gradients backward).

Only rank 0 writes files. An uncaught exception on any process prints its message and ends every process
(``MPI_Abort``), so that no process waits forever in a collective for one that has died.

mpi4py (``pip install 'numconv[mpi]'``) is imported only when the launcher started more than one process: this
module itself needs nothing beyond numpy, and in one process everything runs as without MPI.
"""
from __future__ import annotations

import copy
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from numconv import backend, functional as F
from numconv.layers import (
    AvgPool1d, AvgPool2d, AvgPool3d, Conv1d, Conv2d, Conv3d, Dropout, Flatten, GlobalAvgPool, Linear,
    LocalResponseNorm, MaxPool1d, MaxPool2d, MaxPool3d, Module, ReLU, Sequential,
)

__all__ = [
    "World", "world", "launched_processes", "share", "strategy", "Local", "DataParallel", "Columns",
    "ColumnGather", "ColumnModel", "split_columns", "bind_device", "end_all",
]

#: environment variables in which MPI launchers announce the number of processes (Open MPI, MPICH and Intel MPI
#: through PMI, MVAPICH)
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
#: variables that only say a launcher (PMIx, PMI) started this process
_RANK_VARIABLES = ("PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")

#: the bucket size of the gradient all-reduce (PyTorch DDP's default is 25 MB)
BUCKET_BYTES = 25 * 2 ** 20


@dataclass(frozen=True)
class World:
    """The processes of one run: this one's ``rank`` among ``size``, and among the ``local_size`` processes on its
    machine; ``comm`` is mpi4py's ``COMM_WORLD`` (``None`` in one process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    comm: object = None


_world: World | None = None


def launched_processes() -> int | None:
    """How many processes an MPI launcher started: 1 when none started this one, ``None`` when one did without
    saying how many."""
    for name in _SIZE_VARIABLES:
        if name in os.environ:
            try:
                return int(os.environ[name])
            except ValueError:
                return None
    return None if any(name in os.environ for name in _RANK_VARIABLES) else 1


def world() -> World:
    """This process's :class:`World`, connected on first use: MPI when a launcher started several processes, else
    a world of one. Raises RuntimeError when a launcher started several processes but mpi4py is missing."""
    global _world
    if _world is None:
        _world = _connect()
    return _world


def _connect() -> World:
    count = launched_processes()
    if count == 1:
        return World()
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(f"this process was started by an MPI launcher ({count or 'several'} processes) but "
                           f"mpi4py cannot be imported: pip install 'numconv[mpi]' ({error})") from error
    comm = MPI.COMM_WORLD
    if comm.size == 1:
        return World()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    connected = World(comm.rank, comm.size, node.rank, node.size, comm)
    node.Free()
    _abort_on_uncaught_exception(connected)
    _share_cores(connected)
    return connected


def _abort_on_uncaught_exception(connected: World) -> None:
    """An exception that nothing catches ends every process (mpi4py's advice): otherwise the others would wait
    forever in their next collective for this one."""
    previous = sys.excepthook

    def abort(kind, value, traceback):
        previous(kind, value, traceback)
        _announce_end(connected, f"{kind.__name__}: {value}")
        connected.comm.Abort(1)

    sys.excepthook = abort


def _announce_end(connected: World, reason: str) -> None:
    sys.stderr.write(f"numconv: process {connected.rank} of {connected.size} stopped ({reason}); ending all "
                     f"{connected.size} processes\n")
    sys.stderr.flush()


def end_all(stop: SystemExit) -> None:
    """For a command that stops with ``stop`` (a SystemExit with a message or a non-zero status) while several
    processes run: print the message and why, and end every process. Does nothing in one process or when the
    world was never connected (nothing collective has started, so the others stop on their own)."""
    if _world is None or _world.size == 1 or stop.code in (0, None):
        return
    code = stop.code if isinstance(stop.code, int) else 1
    if not isinstance(stop.code, int):
        sys.stderr.write(f"{stop.code}\n")
    _announce_end(_world, f"exit status {code}")
    _world.comm.Abort(code)


def _share_cores(connected: World) -> None:
    """One compute thread per core this process may use: the cores it is bound to, or its machine's divided among
    the processes there. A NUMBA_NUM_THREADS the user set wins."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return
    import numba

    machine = os.cpu_count() or 1
    bound = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else machine
    cores = bound if bound < machine else machine // connected.local_size
    numba.set_num_threads(max(1, min(cores, numba.config.NUMBA_NUM_THREADS)))


def bind_device(connected: World, device: str) -> None:
    """Give each process on a machine its own GPU (local rank r takes GPU r). A ValueError when a machine runs
    more processes than it has GPUs."""
    if device != "cuda" or connected.size == 1:
        return
    backend.kernels("cuda")  # a RuntimeError here when there is no GPU or numba-cuda
    from numba import cuda

    count = len(cuda.gpus)
    if count < connected.local_size:
        raise ValueError(f"--device cuda with {connected.local_size} processes on this machine needs "
                         f"{connected.local_size} GPUs, one per process, but {count} found")
    cuda.select_device(connected.local_rank)


def share(count: int, rank: int, size: int) -> slice:
    """The rows of ``count`` that process ``rank`` of ``size`` takes: a contiguous run, the runs' lengths differing
    by at most one (the later ranks take the longer ones)."""
    return slice(count * rank // size, count * (rank + 1) // size)


def _mpi():
    from mpi4py import MPI

    return MPI


def _sum_in_place(comm, host: np.ndarray) -> None:
    comm.Allreduce(_mpi().IN_PLACE, host, op=_mpi().SUM)


def _dropout_layers(model: Module) -> list:
    layers = [layer for _, layer in model.named_layers()] if isinstance(model, Sequential) else [model]
    return [layer for layer in layers if isinstance(layer, Dropout)]


# --- how fit runs: one process, data parallel, columns -----------------------------------------------------------


class Local:
    """Training in one process. The hooks that :func:`numconv.train.fit` calls, which the parallel strategies
    override: which rows of a batch this process takes, what happens to the gradients, who writes files."""

    processes = 1
    columns = None
    is_writer = True

    def prepare(self, model: Module, train_size: int, batch_size: int) -> None:
        """Called once before training (and before a checkpoint is loaded)."""

    def begin_step(self, global_rows: int) -> slice:
        """The rows of a global batch of ``global_rows`` samples that this process computes."""
        return slice(0, global_rows)

    def skip_step(self, global_rows: int) -> None:
        """This process holds no row of the global batch: keep its random generators in step with the others."""

    def finish_gradients(self, loss_sum: float) -> float:
        """After the backward pass: combine the gradients; returns the global batch's summed loss."""
        return loss_sum

    def finish(self) -> None:
        """After training, successful or not."""

    def evaluation_rows(self, count: int) -> slice:
        """The rows of an evaluation set of ``count`` samples that this process evaluates."""
        return slice(0, count)

    def total(self, values: np.ndarray) -> np.ndarray:
        """Float64 sums over the processes' evaluation shares."""
        return values

    def from_writer(self, read):
        """``read()`` on the writer, its result (or the exception it raised) on every process."""
        return read()

    def full_state(self, model: Module, optimizer) -> tuple:
        """The whole model's and optimiser's state dicts on the writer (``(None, None)`` elsewhere)."""
        return model.state_dict(), optimizer.state_dict()

    def load_state(self, model: Module, optimizer, model_state: dict, optimizer_state: dict) -> None:
        """Load a whole model's and optimiser's state (a checkpoint) into this process's part."""
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)

    def full_parameter(self, model: Module, name: str):
        """The whole parameter ``name`` as a host array on the writer (``None`` elsewhere)."""
        return backend.to_host(dict(model.named_parameters())[name])


class _Collective(Local):
    """What data-parallel and column training share: the world, the writer, broadcasting what rank 0 reads."""

    def __init__(self, connected: World):
        if connected.size < 2:
            raise ValueError(f"{type(self).__name__} needs several MPI processes, got a world of {connected.size}")
        self.world = connected
        self.processes = connected.size
        self.is_writer = connected.rank == 0

    def from_writer(self, read):
        outcome = None
        if self.is_writer:
            try:
                outcome = (True, read())
            except Exception as error:  # every process raises it, so that none waits for the others
                outcome = (False, error)
        succeeded, value = self.world.comm.bcast(outcome, root=0)
        if not succeeded:
            raise value
        return value


class DataParallel(_Collective):
    """Data-parallel training on the processes of ``connected``: each takes a share of every global batch; the
    gradients are summed in buckets of about ``bucket_bytes`` with in-place ``Allreduce``."""

    def __init__(self, connected: World | None = None, bucket_bytes: int = BUCKET_BYTES, overlap: bool = True):
        super().__init__(connected or world())
        self.bucket_bytes = int(bucket_bytes)
        self.overlap = bool(overlap)
        self.buckets = None
        self.dropouts = []

    def prepare(self, model, train_size, batch_size):
        size = self.world.size
        if train_size < size:
            raise ValueError(f"{size} processes cannot share a training set of {train_size} samples: every process "
                             f"needs at least one")
        if batch_size < size:
            raise ValueError(f"batch_size={batch_size} is smaller than the {size} processes that share each batch; "
                             f"the batch size is the global one: use at least {size}")
        self.dropouts = _dropout_layers(model)
        for layer in self.dropouts:
            F.skip_dropout_draws(layer.rng, 0)  # refuses, now, a generator that cannot skip ahead
        self._broadcast_parameters(model)
        self.buckets = GradientBuckets(model, self.world.comm, self.bucket_bytes, self.overlap)

    def _broadcast_parameters(self, model):
        for parameter in model.parameters():
            host = np.ascontiguousarray(backend.to_host(parameter))
            self.world.comm.Bcast(host, root=0)
            backend.copy_into(parameter, host)

    def begin_step(self, global_rows):
        rows = share(global_rows, self.world.rank, self.world.size)
        for layer in self.dropouts:
            layer.batch_share = (rows.start, global_rows)
        return rows

    def skip_step(self, global_rows):
        for layer in self.dropouts:
            layer.skip_batch(global_rows)

    def finish_gradients(self, loss_sum):
        self.buckets.sum()
        loss = np.array([loss_sum], dtype=np.float64)
        _sum_in_place(self.world.comm, loss)
        return float(loss[0])

    def finish(self):
        for layer in self.dropouts:
            layer.batch_share = None
        if self.buckets is not None:
            self.buckets.detach()

    def evaluation_rows(self, count):
        return share(count, self.world.rank, self.world.size)

    def total(self, values):
        values = np.ascontiguousarray(values, dtype=np.float64)
        _sum_in_place(self.world.comm, values)
        return values

    def full_state(self, model, optimizer):
        # every process holds the same model: the writer's is the whole of it, and no message is needed
        return super().full_state(model, optimizer) if self.is_writer else (None, None)

    def full_parameter(self, model, name):
        return super().full_parameter(model, name) if self.is_writer else None


class GradientBuckets:
    """A model's gradients as views into a few large contiguous buffers, one ``Allreduce`` per buffer.

    Each buffer holds consecutive gradients of one dtype and device, in backward order (the last layer's first),
    up to ``bucket_bytes`` (a larger gradient gets a buffer of its own). The layers accumulate into the views, so
    nothing is copied on the host; a device buffer is copied to the host and back around its all-reduce (MPI here
    is not CUDA-aware). With ``overlap``, a host buffer's all-reduce starts (``Iallreduce``) as soon as the backward
    pass has finished every layer it holds gradients of, and is pushed along after each later layer's backward,
    while the layers below compute; :meth:`sum` waits for the rest.
    """

    def __init__(self, model: Module, comm, bucket_bytes: int = BUCKET_BYTES, overlap: bool = False):
        self.comm = comm
        self.buffers = []
        self._slots = []  # per bucket: how many gradients it holds
        self._bucket_of = {}  # id(layer) -> the bucket of each of its gradients
        bucket, size, kind = [], 0, None
        for layer, attribute in reversed(model.gradient_slots()):
            gradient = getattr(layer, attribute)
            slot_kind = (backend.backend_of(gradient), np.dtype(gradient.dtype))
            nbytes = gradient.size * slot_kind[1].itemsize
            if bucket and (slot_kind != kind or size + nbytes > bucket_bytes):
                self._bind(bucket, kind)
                bucket, size = [], 0
            bucket.append((layer, attribute))
            size, kind = size + nbytes, slot_kind
        if bucket:
            self._bind(bucket, kind)
        self._hooked = []
        if overlap:
            self._hooked = list({id(layer): layer for layer, _ in model.gradient_slots()}.values())
            for layer in self._hooked:
                layer.register_backward_hook(self._layer_done)
        self._reset()

    def _bind(self, slots, kind):
        device, dtype = kind
        total = sum(getattr(layer, attribute).size for layer, attribute in slots)
        buffer = backend.zeros(total, dtype, device)
        offset = 0
        for layer, attribute in slots:
            old = getattr(layer, attribute)
            view = buffer[offset:offset + old.size].reshape(old.shape)
            backend.copy_into(view, backend.to_host(old))
            setattr(layer, attribute, view)
            offset += old.size
            self._bucket_of.setdefault(id(layer), []).append(len(self.buffers))
        self._slots.append(len(slots))
        self.buffers.append(buffer)

    def detach(self) -> None:
        """Stop starting all-reduces from the layers' backward passes (the gradients stay views)."""
        for layer in self._hooked:
            layer.remove_backward_hook(self._layer_done)
        self._hooked = []

    def _reset(self):
        self._waiting = list(self._slots)  # per bucket: gradients whose layer has not finished its backward
        self._requests = [None] * len(self.buffers)

    def _layer_done(self, layer):
        """A layer's backward has finished: start the all-reduce of every bucket now complete, push the others."""
        for index in self._bucket_of.get(id(layer), ()):
            self._waiting[index] -= 1
            if self._waiting[index] == 0 and not backend.is_device_array(self.buffers[index]):
                self._start(index)
        started = [request for request in self._requests if request is not None]
        if started:
            _mpi().Request.Testall(started)

    def _start(self, index: int) -> None:
        # buckets complete in index order (backward order), so every process starts them in the same order, as
        # MPI requires; a process with no rows this step starts them all in sum(), in the same order
        self._requests[index] = self.comm.Iallreduce(_mpi().IN_PLACE, self.buffers[index], op=_mpi().SUM)

    def sum(self) -> None:
        """Replace every gradient by its sum over the processes (waiting for the all-reduces already started)."""
        for index, buffer in enumerate(self.buffers):
            if self._requests[index] is not None:
                continue
            if backend.is_device_array(buffer):
                host = buffer.copy_to_host()
                _sum_in_place(self.comm, host)
                buffer.copy_to_device(host)
            else:
                self._start(index)
        started = [request for request in self._requests if request is not None]
        if started:
            _mpi().Request.Waitall(started)
        self._reset()

    @property
    def nbytes(self) -> int:
        return int(sum(buffer.size * buffer.dtype.itemsize for buffer in self.buffers))


class Columns(_Collective):
    """Column (model-parallel) training of a :class:`ColumnModel`: every process computes every sample through its
    column; each owns its parameters, so nothing is reduced; checkpoints hold the whole model."""

    def __init__(self, model: "ColumnModel"):
        super().__init__(model.world)
        self.columns = model.world.size

    def full_state(self, model, optimizer):
        return model.full_state_dict(), model.full_optimizer_state(optimizer.state_dict())

    def load_state(self, model, optimizer, model_state, optimizer_state):
        model.load_full_state_dict(model_state)
        optimizer.load_state_dict(model.local_optimizer_state(optimizer_state))

    def full_parameter(self, model, name):
        return model.full_parameter(name)


def strategy(model: Module) -> Local:
    """How :func:`numconv.train.fit` trains ``model`` here: :class:`Columns` for a column model, data parallel
    under an MPI launcher with several processes, else in one process."""
    if isinstance(model, ColumnModel):
        return Columns(model)
    connected = world()
    return DataParallel(connected) if connected.size > 1 else Local()


# --- columns --------------------------------------------------------------------------------------------------


def _column_sizes(total: int, columns: int) -> list:
    """``total`` units split into ``columns`` consecutive runs whose lengths differ by at most one."""
    return [share(total, column, columns).stop - share(total, column, columns).start for column in range(columns)]


class ColumnGather(Module):
    """Where the columns meet: each process's (N, c_r, *rest) share of the channels (or, after a flatten, of the
    features) becomes the whole (N, C, *rest), the same on every process (``Allgatherv``).

    ``parts`` are the column sizes in channels before any flatten; a flatten multiplies them all by one factor,
    read from the input. Backward, when ``partial_gradients`` (the layer after the join is split by columns, so
    each process's gradient holds only its column's contribution), the gradients are summed over the processes and
    scattered back to the columns (``Reduce_scatter``); otherwise (only replicated layers follow: the loss is
    computed the same on every process) each process keeps its column's part of the gradient.
    """

    def __init__(self, connected: World, parts, partial_gradients: bool = True):
        super().__init__()
        self.world, self.parts, self.partial_gradients = connected, list(parts), bool(partial_gradients)
        self._local_shape = None

    def _counts(self, local_shape) -> tuple:
        """(width of each column's share along axis 1, elements of each column's share)."""
        factor = local_shape[1] // self.parts[self.world.rank]
        widths = [part * factor for part in self.parts]
        inner = int(np.prod(local_shape[2:]))
        return widths, [local_shape[0] * width * inner for width in widths]

    def forward(self, x):
        self._local_shape = tuple(x.shape)
        host = np.ascontiguousarray(backend.to_host(x))
        widths, counts = self._counts(host.shape)
        received = np.empty(sum(counts), dtype=host.dtype)
        self.world.comm.Allgatherv(host.reshape(-1), [received, counts])
        blocks = np.split(received, np.cumsum(counts)[:-1])
        whole = np.concatenate([block.reshape((host.shape[0], width) + host.shape[2:])
                                for block, width in zip(blocks, widths)], axis=1)
        return backend.to_backend(whole, backend.backend_of(x))

    def backward(self, grad_output):
        host = np.ascontiguousarray(backend.to_host(grad_output))
        widths, counts = self._counts(self._local_shape)
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
        rank = self.world.rank
        if self.partial_gradients:
            outgoing = np.concatenate([host[:, start:start + width].reshape(-1)
                                       for start, width in zip(starts, widths)])
            mine = np.empty(counts[rank], dtype=host.dtype)
            self.world.comm.Reduce_scatter(outgoing, mine, recvcounts=counts, op=_mpi().SUM)
            mine = mine.reshape(self._local_shape)
        else:
            mine = np.ascontiguousarray(host[:, starts[rank]:starts[rank] + widths[rank]])
        return backend.to_backend(mine, backend.backend_of(grad_output))

    def output_shape(self, input_shape):
        factor = input_shape[1] // self.parts[self.world.rank]
        return (input_shape[0], sum(self.parts) * factor) + tuple(input_shape[2:])

    def extra_repr(self):
        return f"parts={self.parts}, partial_gradients={self.partial_gradients}"


class ColumnModel(Sequential):
    """One process's column of a model split by :func:`split_columns`. Its parameters have the whole model's key
    names and hold rows ``rows[i]`` (along the first axis) of the whole model's parameter ``i``;
    ``full_state_dict()`` assembles the whole model on rank 0 (every process must call it)."""

    def __init__(self, layers: OrderedDict, connected: World, row_parts: list):
        super().__init__(layers)
        self.world = connected
        #: for each parameter, in ``parameters()`` order, the number of rows each column holds
        self.row_parts = row_parts

    def _rows(self, index: int) -> slice:
        parts = self.row_parts[index]
        start = sum(parts[:self.world.rank])
        return slice(start, start + parts[self.world.rank])

    def _gather_rows(self, index: int, local) -> np.ndarray | None:
        """Parameter ``index``'s whole array on rank 0 from every column's rows (``Gatherv``); None elsewhere."""
        local = np.ascontiguousarray(backend.to_host(local))
        row_size = int(np.prod(local.shape[1:]))
        counts = [rows * row_size for rows in self.row_parts[index]]
        whole = None
        if self.world.rank == 0:
            whole = np.empty((sum(self.row_parts[index]),) + local.shape[1:], dtype=local.dtype)
        self.world.comm.Gatherv(local.reshape(-1), [whole, counts] if whole is not None else None, root=0)
        return whole

    def full_state_dict(self):
        """The whole model's state dict on rank 0 (host arrays by PyTorch key), None elsewhere."""
        gathered = [(name, self._gather_rows(i, array)) for i, (name, array) in enumerate(self.named_parameters())]
        return OrderedDict(gathered) if self.world.rank == 0 else None

    def load_full_state_dict(self, state: dict):
        """Load this column's rows of a whole model's state dict."""
        names = [name for name, _ in self.named_parameters()]
        missing = [name for name in names if name not in state]
        unexpected = [key for key in state if key not in names]
        if missing or unexpected:
            raise ValueError(f"state_dict keys do not match: missing {missing}, unexpected {unexpected}")
        return self.load_state_dict({name: np.asarray(state[name])[self._rows(i)] for i, name in enumerate(names)})

    def full_parameter(self, name: str):
        """The whole parameter ``name`` on rank 0, None elsewhere (every process must call it)."""
        for index, (key, array) in enumerate(self.named_parameters()):
            if key == name:
                return self._gather_rows(index, array)
        raise KeyError(name)

    def full_optimizer_state(self, local_state: dict):
        """An optimiser's state dict (``velocity.i`` by parameter) for the whole model, on rank 0."""
        whole = {key: value for key, value in local_state.items() if not key.startswith("velocity.")}
        for index in range(len(self.row_parts)):
            whole[f"velocity.{index}"] = self._gather_rows(index, local_state[f"velocity.{index}"])
        return whole if self.world.rank == 0 else None

    def local_optimizer_state(self, full_state: dict):
        """This column's rows of a whole model's optimiser state dict."""
        local = {key: value for key, value in full_state.items() if not key.startswith("velocity.")}
        for index in range(len(self.row_parts)):
            key = f"velocity.{index}"
            if key in full_state:
                local[key] = np.asarray(full_state[key])[self._rows(index)]
        return local


_CHANNEL_LOCAL = (ReLU, MaxPool1d, MaxPool2d, MaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d, GlobalAvgPool, Flatten)
_CONVOLUTIONS = (Conv1d, Conv2d, Conv3d)


def split_columns(model: Sequential, connected: World | None = None) -> ColumnModel:
    """This process's column of ``model`` for column training on the ``connected`` world's processes.

    Every layer with parameters is split by its output units (filters, or rows of a dense layer) into as many
    consecutive, near-equal parts as there are processes; process r keeps part r, with the weights ``model`` has.
    A convolution whose ``groups`` the columns divide, on an input already split, stays within its column (its
    groups are the columns'); so does a ``LocalResponseNorm`` whose groups they divide, and the element-wise,
    pooling and flatten layers. Any other layer needs the whole input: a :class:`ColumnGather` is put before it.
    The model's output is gathered last. Dropout layers are shared with ``model`` (their generators run the same
    on every process, so each draws the one-process mask). A ValueError names a layer that cannot be split.
    """
    connected = connected or world()
    if not isinstance(model, Sequential):
        raise TypeError(f"split_columns takes a Sequential model, got {type(model).__name__}")
    columns = connected.size
    if columns < 2:
        raise ValueError(f"column training needs several MPI processes (one per column), got {columns}")
    layers, row_parts = [], []
    parts = None  # the columns' channel counts while the activation is split; None while it is whole
    for name, layer in model.named_layers():
        if isinstance(layer, _CONVOLUTIONS + (Linear,)):
            groups = getattr(layer, "groups", 1)
            grouped = (parts is not None and groups % columns == 0
                       and parts == [layer.in_channels // columns] * columns)
            if not grouped:
                if groups != 1:
                    raise ValueError(f"layer {name!r} ({layer!r}) has groups={groups}, which cannot follow the "
                                     f"{columns} columns here: its groups must be split as the columns are")
                if parts is not None:
                    layers.append((f"{name}.join", ColumnGather(connected, parts)))
            outputs = layer.out_channels if isinstance(layer, _CONVOLUTIONS) else layer.out_features
            sizes = _column_sizes(outputs, columns)
            if min(sizes) < 1:
                raise ValueError(f"layer {name!r} has {outputs} output units, fewer than the {columns} columns")
            layers.append((name, _column_of(layer, sizes, connected.rank, columns if grouped else 1)))
            row_parts += [sizes] * len(layer.parameters())
            parts = sizes
        elif isinstance(layer, _CHANNEL_LOCAL) or (
                isinstance(layer, LocalResponseNorm) and parts is not None and layer.groups % columns == 0
                and len(set(parts)) == 1):
            if isinstance(layer, LocalResponseNorm):
                layer = copy.copy(layer)
                layer.groups //= columns
            layers.append((name, layer))
        else:
            if layer.parameters():
                raise ValueError(f"layer {name!r} ({type(layer).__name__}) has parameters that split_columns "
                                 f"cannot divide among columns")
            if parts is not None:
                layers.append((f"{name}.join", ColumnGather(connected, parts)))
                parts = None
            layers.append((name, layer))
    if parts is not None:
        layers.append(("output.join", ColumnGather(connected, parts)))
    # a join's gradients are partial when a split layer follows it, whole when only replicated layers do
    for index, (_, layer) in enumerate(layers):
        if isinstance(layer, ColumnGather):
            layer.partial_gradients = any(later.parameters() for _, later in layers[index + 1:])
    split = ColumnModel(OrderedDict(layers), connected, row_parts)
    split.train(model.training)
    return split


def _column_of(layer, sizes: list, rank: int, groups_divisor: int):
    """Column ``rank``'s part of a convolution or dense ``layer``: output rows ``sizes[rank]`` (after the earlier
    columns'); a grouped convolution keeps ``groups / groups_divisor`` groups and as many input channels."""
    start = sum(sizes[:rank])
    rows = slice(start, start + sizes[rank])
    part = copy.copy(layer)
    for attribute in ("weight", "bias"):
        array = getattr(layer, attribute)
        if array is None:
            continue
        local = backend.to_backend(np.ascontiguousarray(backend.to_host(array)[rows]), backend.backend_of(array))
        setattr(part, attribute, local)
        setattr(part, attribute + "_grad", backend.zeros(local.shape, local.dtype, backend.backend_of(local)))
    if isinstance(layer, Linear):
        part.out_features = sizes[rank]
    else:
        part.out_channels = sizes[rank]
        part.groups = layer.groups // groups_divisor
        part.in_channels = layer.in_channels // groups_divisor
    part._input = None
    return part
