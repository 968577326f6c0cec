"""Every kernel that must be checked: an :class:`Entry` names a kernel (module and function, the same on every
backend), its case builder (:mod:`spec.cases`) and its configurations (:mod:`spec.configs`). A backend's kernels
are looked up by name, so a kernel missing on one backend fails the check instead of escaping it, and each kernel
module's ``__all__`` must be exactly what the registry checks there (:func:`coverage_gaps`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from spec.cases import (
    leaky_relu_backward_case, leaky_relu_forward_case, multiply_case, sigmoid_backward_case, sigmoid_forward_case,
    softmax_backward_case, softmax_forward_case, tanh_backward_case, tanh_forward_case,
    accumulate_case, add_case, avg_pool_backward_case, avg_pool_forward_case, batch_norm_backward_case,
    batch_norm_forward_case, batch_norm_statistics_case, bias_add_case, bias_grad_case, running_average_case,
    conv_forward_case, conv_forward_relu_case,
    concat_channels_backward_case, concat_channels_forward_case, conv_grad_input_case, conv_grad_weight_case,
    conv_transpose_case, cross_entropy_backward_case,
    cross_entropy_forward_case,
    dropout_backward_case, dropout_forward_case, global_avg_pool_backward_case, global_avg_pool_forward_case,
    linear_forward_case, linear_grad_input_case, linear_grad_weight_case, lrn_backward_case, lrn_forward_case,
    max_pool_backward_case, max_pool_forward_case, max_pool_forward_values_case, relu_backward_case,
    relu_forward_case, sgd_update_case,
)
from spec.check import Case, VersionsDiffer
from spec.configs import (
    AVG_POOL_CONFIGS, AVG_POOL_ROW_CONFIGS, BATCH_NORM_CONFIGS, BATCH_NORM_ROW_CONFIGS, CHANNEL_CHUNK_CONFIGS,
    CHANNEL_CHUNKS_AUTOMATIC_CONFIGS, CONV_CONFIGS, GRAD_WEIGHT_SPLIT_CONFIGS, LANES_CONFIGS, LINEAR_CONFIGS,
    LINEAR_LONG_ROW_CONFIGS,
    LOSS_CONFIGS, MAX_POOL_CONFIGS, PACKED_CONFIGS, PADDED_ROWS_CONFIGS, PAIRED_AUTOMATIC_CONFIGS,
    PAIRED_GRAD_WEIGHT_AUTOMATIC_CONFIGS, PAIRED_GRAD_WEIGHT_CONFIGS, PAIRED_LANES_CONFIGS, PHASES_AUTOMATIC_CONFIGS,
    PHASES_CONFIGS, PHASE_WINOGRAD_AUTOMATIC_CONFIGS, PHASE_WINOGRAD_CONFIGS,
    POOL_LITERAL_CONFIGS, POOL_PHASE_CONFIGS,
    ROWS_FORWARD_CONFIGS, ROWS_GRAD_INPUT_CONFIGS, ROW_STRIPS_CONFIGS, ROW_WINDOW_CONFIGS, SAMPLES_AUTOMATIC_CONFIGS,
    SAMPLES_CONFIGS,
    SHORT_ROW_CONFIGS, SPLIT_CONFIGS, TAPS_AUTOMATIC_CONFIGS, TAPS_CONFIGS,
    STRIPS_OUTER_CONFIGS, SUBPIXEL_CONFIGS, TILE_CONFIGS, TRANSPOSED_CONFIGS, WIDE_CONFIGS, WIDE_ROW_CONFIGS,
    WIDE_ROW_STRIDED_CONFIGS, WIDE_STRIDED_CONFIGS, WINOGRAD_CONFIGS, WINOGRAD_FORWARD_CONFIGS,
    WINOGRAD_WEIGHT_CONFIGS,
)
from spec.ops import ShapeConfig


@dataclass(frozen=True)
class Entry:
    """One kernel, by module and function name, with its case builder and configurations. ``backends`` lists
    where it must exist: the public kernels are on every backend; an algorithm that only one backend uses behind
    a public kernel is checked there alone."""

    module: str
    name: str
    build: Callable
    configs: tuple
    backends: tuple = ("cpu", "cuda")


ENTRIES = (
    Entry("conv", "conv_forward", conv_forward_case, CONV_CONFIGS),
    Entry("conv", "conv_grad_input", conv_grad_input_case, CONV_CONFIGS),
    Entry("conv", "conv_grad_weight", conv_grad_weight_case, CONV_CONFIGS),
    # conv_transpose1d/2d/3d run the input-gradient kernel forwards: held to the transposed equations as well
    Entry("conv", "conv_grad_input", conv_transpose_case, TRANSPOSED_CONFIGS),
    # the CPU's algorithms behind the three public convolution kernels, each forced onto configurations it serves
    Entry("conv", "conv_forward_rows", conv_forward_case, ROWS_FORWARD_CONFIGS + PADDED_ROWS_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_grad_input_rows", conv_grad_input_case, ROWS_GRAD_INPUT_CONFIGS + PADDED_ROWS_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_forward_wide", conv_forward_case,
          WIDE_CONFIGS + PADDED_ROWS_CONFIGS[1:2] + STRIPS_OUTER_CONFIGS[1:] + WIDE_ROW_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_wide", conv_grad_input_case,
          WIDE_CONFIGS + PADDED_ROWS_CONFIGS[1:2] + WIDE_STRIDED_CONFIGS + WIDE_ROW_STRIDED_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_grad_input_subpixel", conv_grad_input_case, SUBPIXEL_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_samples", conv_grad_input_case, SAMPLES_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input", conv_grad_input_case, SAMPLES_AUTOMATIC_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_lanes", conv_forward_case, LANES_CONFIGS + STRIPS_OUTER_CONFIGS[:1],
          backends=("cpu",)),
    Entry("conv", "conv_forward_winograd", conv_forward_case, WINOGRAD_CONFIGS + WINOGRAD_FORWARD_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_grad_input_winograd", conv_grad_input_case, WINOGRAD_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_weight_winograd", conv_grad_weight_case, WINOGRAD_WEIGHT_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_phase_winograd", conv_forward_case, PHASE_WINOGRAD_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_phases", conv_forward_case, PHASES_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_lanes", conv_grad_input_case, LANES_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_gather", conv_grad_input_case, CONV_CONFIGS),
    Entry("conv", "conv_grad_weight_split", conv_grad_weight_case,
          (CONV_CONFIGS[0], CONV_CONFIGS[4], CONV_CONFIGS[7], LANES_CONFIGS[-1]), backends=("cpu",)),
    # the same, each chunk's rows of the output gradient packed just before its sum (runs that cross samples, groups)
    Entry("conv", "conv_grad_weight_streamed", conv_grad_weight_case,
          (CONV_CONFIGS[0], CONV_CONFIGS[4], CONV_CONFIGS[7], LANES_CONFIGS[-1]), backends=("cpu",)),
    Entry("dense", "bias_grad", bias_grad_case, (ShapeConfig((2, 3, 4)), ShapeConfig((3, 2, 1)))),
    Entry("dense", "bias_add", bias_add_case, (ShapeConfig((2, 3, 4)), ShapeConfig((3, 2, 1)))),
    Entry("pool", "max_pool_forward", max_pool_forward_case, MAX_POOL_CONFIGS),
    Entry("pool", "max_pool_backward", max_pool_backward_case, MAX_POOL_CONFIGS),
    Entry("pool", "avg_pool_forward", avg_pool_forward_case, AVG_POOL_CONFIGS),
    Entry("pool", "avg_pool_backward", avg_pool_backward_case, AVG_POOL_CONFIGS),
    Entry("pool", "global_avg_pool_forward", global_avg_pool_forward_case,
          (ShapeConfig((2, 3, 6)), ShapeConfig((1, 2, 9)))),
    Entry("pool", "global_avg_pool_backward", global_avg_pool_backward_case,
          (ShapeConfig((2, 3, 6)), ShapeConfig((1, 2, 9)))),
    Entry("dense", "linear_forward", linear_forward_case, LINEAR_CONFIGS),
    Entry("dense", "linear_grad_input", linear_grad_input_case, LINEAR_CONFIGS),
    Entry("dense", "linear_grad_weight", linear_grad_weight_case, LINEAR_CONFIGS),
    Entry("pointwise", "relu_forward", relu_forward_case,
          (ShapeConfig((37,)), ShapeConfig((37,), (("in_place", True),)))),
    Entry("pointwise", "relu_backward", relu_backward_case, (ShapeConfig((37,)),)),
    Entry("pointwise", "dropout_forward", dropout_forward_case,
          (ShapeConfig((40,), (("p", 0.5),)), ShapeConfig((33,), (("p", 0.75),)))),
    Entry("pointwise", "dropout_backward", dropout_backward_case,
          (ShapeConfig((40,), (("p", 0.5),)), ShapeConfig((33,), (("p", 0.75),)))),
    Entry("pointwise", "accumulate", accumulate_case, (ShapeConfig((37,)),)),
    Entry("norm", "batch_norm_statistics", batch_norm_statistics_case, BATCH_NORM_CONFIGS),
    Entry("norm", "batch_norm_forward", batch_norm_forward_case, BATCH_NORM_CONFIGS),
    Entry("norm", "batch_norm_backward", batch_norm_backward_case,
          tuple(ShapeConfig(cfg.shape, cfg.params + (("training", training),))
                for cfg in BATCH_NORM_CONFIGS for training in (1, 0))),
    Entry("norm", "running_average", running_average_case,
          (ShapeConfig((5,), (("momentum", 0.25), ("correction", 2.0))),)),
    Entry("pointwise", "add_forward", add_case, (ShapeConfig((37,)),)),
    Entry("activation", "leaky_relu_forward", leaky_relu_forward_case, (ShapeConfig((37,), (("slope", 0.25),)),)),
    Entry("activation", "leaky_relu_backward", leaky_relu_backward_case, (ShapeConfig((37,), (("slope", 0.25),)),)),
    Entry("activation", "sigmoid_forward", sigmoid_forward_case, (ShapeConfig((37,), (("magnitude", 8.0),)),)),
    Entry("activation", "sigmoid_backward", sigmoid_backward_case, (ShapeConfig((37,)),)),
    Entry("activation", "tanh_forward", tanh_forward_case, (ShapeConfig((37,), (("magnitude", 4.0),)),)),
    Entry("activation", "tanh_backward", tanh_backward_case, (ShapeConfig((37,)),)),
    Entry("activation", "multiply_forward", multiply_case, (ShapeConfig((37,)),)),
    Entry("activation", "softmax_forward", softmax_forward_case, (
        ShapeConfig((3, 5), (("magnitude", 3.0),)), ShapeConfig((2, 4), (("magnitude", 1000.0),)))),
    Entry("activation", "softmax_backward", softmax_backward_case, (ShapeConfig((3, 5)),)),
    Entry("pointwise", "concat_channels_forward", concat_channels_forward_case,
          (ShapeConfig((2, 5), (("channels", (2, 3, 1)),)),)),
    Entry("pointwise", "concat_channels_backward", concat_channels_backward_case,
          (ShapeConfig((2, 5), (("channels", (2, 3, 1)),)),)),
    Entry("pointwise", "sgd_update", sgd_update_case, tuple(
        ShapeConfig((9,), (("lr", lr), ("momentum", m), ("weight_decay", wd), ("nesterov", nesterov),
                           ("lr_in_velocity", alexnet)))
        for lr, m, wd, nesterov, alexnet in ((0.5, 0.75, 0.125, False, False), (0.25, 0.5, 0.0, True, False),
                                             (0.5, 0.875, 0.25, False, True), (0.125, 0.5, 0.5, True, True))
    )),
    Entry("norm", "lrn_forward", lrn_forward_case, (
        ShapeConfig((1, 7, 2), (("size", 5), ("alpha", 1.0), ("beta", 0.75), ("k", 2.0))),
        ShapeConfig((2, 4, 3), (("size", 2), ("alpha", 0.5), ("beta", 0.5), ("k", 1.0))),
    )),
    Entry("norm", "lrn_backward", lrn_backward_case, (
        ShapeConfig((1, 7, 2), (("size", 5), ("alpha", 1.0), ("beta", 0.75), ("k", 2.0))),
        ShapeConfig((2, 4, 3), (("size", 2), ("alpha", 0.5), ("beta", 0.5), ("k", 1.0))),
        # more positions than one task's chunk (256): the chunks' offsets
        ShapeConfig((1, 2, 257), (("size", 3), ("alpha", 1.0), ("beta", 0.75), ("k", 2.0))),
    )),
    Entry("loss", "cross_entropy_forward", cross_entropy_forward_case, LOSS_CONFIGS),
    Entry("loss", "cross_entropy_backward", cross_entropy_backward_case, LOSS_CONFIGS),
    # last, so that the rows before draw the same random values whatever is added here
    Entry("pool", "max_pool_forward_values", max_pool_forward_values_case, MAX_POOL_CONFIGS),
    Entry("pool", "avg_pool_forward", avg_pool_forward_case, AVG_POOL_ROW_CONFIGS),
    Entry("pool", "avg_pool_backward", avg_pool_backward_case, AVG_POOL_ROW_CONFIGS),
    Entry("norm", "batch_norm_statistics", batch_norm_statistics_case, BATCH_NORM_ROW_CONFIGS),
    Entry("norm", "batch_norm_backward", batch_norm_backward_case,
          # running statistics: the same row sums, without the symbolic cost of statistics that depend on x
          tuple(ShapeConfig(cfg.shape, cfg.params + (("training", 0),)) for cfg in BATCH_NORM_ROW_CONFIGS)),
    Entry("conv", "conv_forward_paired", conv_forward_case, PAIRED_LANES_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_split", conv_forward_case, SPLIT_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_split_strips", conv_forward_case, SPLIT_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_weight_split_tasks", conv_grad_weight_case, GRAD_WEIGHT_SPLIT_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_grad_weight_streamed_split_tasks", conv_grad_weight_case, GRAD_WEIGHT_SPLIT_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_grad_input_paired", conv_grad_input_case, PAIRED_LANES_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_packed", conv_forward_case, PACKED_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_packed", conv_grad_input_case, PACKED_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward", conv_forward_case,
          PAIRED_AUTOMATIC_CONFIGS + PHASES_AUTOMATIC_CONFIGS + PHASE_WINOGRAD_AUTOMATIC_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_grad_weight_paired", conv_grad_weight_case, PAIRED_GRAD_WEIGHT_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_weight", conv_grad_weight_case, PAIRED_GRAD_WEIGHT_AUTOMATIC_CONFIGS, backends=("cpu",)),
    Entry("dense", "linear_forward_paired", linear_forward_case, LINEAR_CONFIGS, backends=("cpu",)),
    Entry("dense", "linear_forward_dot", linear_forward_case, LINEAR_CONFIGS, backends=("cpu",)),
    Entry("dense", "linear_forward_lanes", linear_forward_case, LINEAR_CONFIGS, backends=("cpu",)),
    Entry("dense", "linear_forward", linear_forward_case, LINEAR_LONG_ROW_CONFIGS, backends=("cpu",)),
    Entry("dense", "linear_grad_input_panels", linear_grad_input_case, LINEAR_CONFIGS, backends=("cpu",)),
    Entry("dense", "linear_grad_weight_panels", linear_grad_weight_case, LINEAR_CONFIGS, backends=("cpu",)),
    Entry("pool", "max_pool_forward", max_pool_forward_case, POOL_LITERAL_CONFIGS),
    Entry("pool", "max_pool_forward_values", max_pool_forward_values_case, POOL_LITERAL_CONFIGS),
    Entry("pool", "max_pool_backward", max_pool_backward_case, POOL_LITERAL_CONFIGS),
    Entry("pool", "avg_pool_forward", avg_pool_forward_case, POOL_LITERAL_CONFIGS),
    Entry("pool", "avg_pool_backward", avg_pool_backward_case, POOL_LITERAL_CONFIGS),
    Entry("pool", "max_pool_forward", max_pool_forward_case, ROW_WINDOW_CONFIGS, backends=("cpu",)),
    Entry("pool", "max_pool_forward_values", max_pool_forward_values_case, ROW_WINDOW_CONFIGS, backends=("cpu",)),
    Entry("pool", "avg_pool_forward", avg_pool_forward_case, ROW_WINDOW_CONFIGS, backends=("cpu",)),
    Entry("pool", "max_pool_backward", max_pool_backward_case, ROW_WINDOW_CONFIGS, backends=("cpu",)),
    Entry("pool", "max_pool_forward", max_pool_forward_case, SHORT_ROW_CONFIGS, backends=("cpu",)),
    Entry("pool", "max_pool_forward_values", max_pool_forward_values_case, SHORT_ROW_CONFIGS, backends=("cpu",)),
    Entry("pool", "avg_pool_forward", avg_pool_forward_case, SHORT_ROW_CONFIGS, backends=("cpu",)),
    Entry("pool", "avg_pool_backward", avg_pool_backward_case, TILE_CONFIGS, backends=("cpu",)),
    Entry("pool", "avg_pool_backward", avg_pool_backward_case, POOL_PHASE_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_relu", conv_forward_relu_case, CONV_CONFIGS),
    Entry("conv", "conv_forward_relu", conv_forward_relu_case,
          PAIRED_AUTOMATIC_CONFIGS + PHASES_AUTOMATIC_CONFIGS + PHASE_WINOGRAD_AUTOMATIC_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_forward_channel_chunks", conv_forward_case, CHANNEL_CHUNK_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward", conv_forward_case, CHANNEL_CHUNKS_AUTOMATIC_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_relu", conv_forward_relu_case, CHANNEL_CHUNKS_AUTOMATIC_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_weight_taps", conv_grad_weight_case, TAPS_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_weight", conv_grad_weight_case, TAPS_AUTOMATIC_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_row_strips", conv_forward_case, ROW_STRIPS_CONFIGS + STRIPS_OUTER_CONFIGS[:1],
          backends=("cpu",)),
)


def kernel_function(backend: str, module: str, name: str) -> Callable:
    """The kernel ``numconv.kernels.<backend>.<module>.<name>``, callable with numpy arrays: a CPU kernel runs every
    version it is compiled in (:func:`_every_version`); a CUDA kernel's array arguments are copied to the device for
    the call and every one is copied back afterwards; what the kernel returns is returned."""
    kernel = getattr(importlib.import_module(f"numconv.kernels.{backend}.{module}"), name)
    return _every_version(kernel) if backend == "cpu" else _through_device(kernel)


def _every_version(kernel: Callable) -> Callable:
    """``kernel`` called twice, every parallel loop it reaches first on one thread, then parallel
    (``numconv.kernels.cpu.parallel``: the spec's arrays are small, so that a call would otherwise run the one-thread
    versions alone); the last call's results are returned, and the others' must equal them, NaN for NaN
    (``VersionsDiffer`` otherwise). An element-wise kernel that streams large outputs past the caches is called a
    third time between the two, streamed. With Numba's JIT disabled (the coverage measurement,
    ``spec/coverage.py``) every version is the same Python function, and ``kernel`` is called once."""
    from numba.core import config

    from numconv.kernels.cpu.parallel import every_call

    if config.DISABLE_JIT:
        return kernel
    versions = ("serial", "streamed", "parallel") if getattr(kernel, "streams", False) else ("serial", "parallel")

    def call(*args):
        results = {}
        for version in versions:
            arguments = args if version == "parallel" else _arrays_replaced(args, np.copy)
            with every_call(version):
                results[version] = (arguments, kernel(*arguments))
        arguments, result = results["parallel"]
        for version in versions[:-1]:
            copies, other_result = results[version]
            differing = [position for position, (one, other) in enumerate(zip(copies, arguments))
                         if isinstance(other, np.ndarray) and not np.array_equal(one, other, equal_nan=True)]
            returned_differs = result is not None and not np.array_equal(other_result, result, equal_nan=True)
            if differing or returned_differs:
                raise VersionsDiffer(f"the {'one-thread' if version == 'serial' else version} and parallel versions of "
                                     f"{kernel.__name__} differ in "
                                     f"{f'arguments {differing}' if differing else 'the value returned'}")
        return result

    call.__wrapped__ = kernel
    return call


def _through_device(kernel: Callable) -> Callable:
    from numba import cuda

    def call(*args):
        moved = _arrays_replaced(args, cuda.to_device)
        result = kernel(*moved)
        for original, on_device in zip(args, moved):
            if isinstance(original, np.ndarray):
                on_device.copy_to_host(original)
        return result

    call.__wrapped__ = kernel
    return call


def _arrays_replaced(args: tuple, replace: Callable) -> list:
    """``args`` with each NumPy array replaced by ``replace(array)``; an array passed twice (a kernel run in place)
    is replaced once, so that the kernel still gets one array twice."""
    replaced = {}
    for a in args:
        if isinstance(a, np.ndarray) and id(a) not in replaced:
            replaced[id(a)] = replace(a)
    return [replaced[id(a)] if isinstance(a, np.ndarray) else a for a in args]


def available_backends() -> list[str]:
    """Backends whose kernels can run here: 'cpu' always, 'cuda' when numba-cuda finds a GPU or its simulator."""
    backends = ["cpu"]
    try:
        importlib.import_module("numconv.kernels.cuda")
        from numba import cuda

        if cuda.is_available():
            backends.append("cuda")
    except ImportError:
        pass
    return backends


def coverage_gaps(backend: str) -> tuple[list, list]:
    """How the registry and ``backend``'s kernel modules disagree: (kernels a module lists in its ``__all__`` that no
    entry checks on ``backend``, entries for ``backend`` that name no kernel of a module's ``__all__``), each a list
    of ``module.name``. Both empty: nothing escapes the spec."""
    package = importlib.import_module(f"numconv.kernels.{backend}")
    kernels = {f"{module}.{name}" for module in package.__all__
               for name in getattr(package, module).__all__}
    entries = {f"{e.module}.{e.name}" for e in ENTRIES if backend in e.backends}
    return sorted(kernels - entries), sorted(entries - kernels)


@dataclass(frozen=True)
class Row:
    """One (kernel, backend, configuration) to check."""

    entry: Entry
    backend: str
    config: object

    @property
    def kernel_name(self) -> str:
        return self.entry.name

    @property
    def label(self) -> str:
        return self.config.label()

    def case(self) -> Case:
        return self.entry.build(self.config)

    def kernel(self) -> Callable:
        return kernel_function(self.backend, self.entry.module, self.entry.name)


def rows(backends, quick: bool = False):
    """Every row of the registry for ``backends``; ``quick`` keeps the first configuration of each kernel."""
    for backend in backends:
        for entry in ENTRIES:
            if backend not in entry.backends:
                continue
            for config in entry.configs[:1] if quick else entry.configs:
                yield Row(entry, backend, config)


def entry(name: str) -> Entry:
    """The registry entry of the kernel called ``name``: its first, the one with its own equations (a later entry
    may hold the same kernel to others, as conv_grad_input's second holds it to the transposed convolution's)."""
    return next(e for e in ENTRIES if e.name == name)
