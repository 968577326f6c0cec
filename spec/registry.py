"""Every kernel that must be checked, how to call it, and the configurations to try.

An :class:`Entry` names a kernel (module and function, the same on every backend) and builds a
:class:`spec.check.Case` for each configuration: the symbolic inputs, the expected expressions from
:mod:`spec.ops`, and a ``call`` that runs the kernel on numpy arrays. A backend's kernels are looked up by name, so
a kernel missing on one backend fails the check instead of escaping it.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import sympy as sp

from spec import ops
from spec.check import Case
from spec.ops import ConvConfig, PoolConfig, ShapeConfig, symbol_array

#: configurations small enough for the one-call-per-input connectivity probe
PROBE_LIMIT = 96


def _five(array: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) with 1 to 3 spatial axes viewed as (N, C, D, H, W)."""
    return array.reshape(array.shape[:2] + (1,) * (5 - array.ndim) + array.shape[2:])


def _triple(values, fill: int) -> tuple:
    return (fill,) * (3 - len(values)) + tuple(int(v) for v in values)


def _probe(case_inputs: dict, name: str, probe: tuple):
    return probe if case_inputs[name].size <= PROBE_LIMIT else None


# --- convolution ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _conv_spec(cfg: ConvConfig):
    inputs, y = ops.conv(cfg)
    g, grads = ops.gradients(y, inputs)
    return inputs, y, g, grads


def _conv_args(cfg: ConvConfig) -> tuple:
    axes = cfg.window.axes
    return (_triple([a.stride for a in axes], 1), _triple([a.pad_left for a in axes], 0),
            _triple([a.dilation for a in axes], 1), cfg.groups)


def conv_forward_case(cfg: ConvConfig) -> Case:
    inputs, y, _, _ = _conv_spec(cfg)

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(_five(a["x"]), _five(a["weight"]), a["bias"], _five(out), *_conv_args(cfg))
        return {"y": out}

    return Case(inputs, {"y": y}, call, degree=2, probe=_probe(inputs, "x", ("x", "weight", "y")))


def conv_grad_input_case(cfg: ConvConfig) -> Case:
    inputs, _, g, grads = _conv_spec(cfg)
    case_inputs = {"g": g, "weight": inputs["weight"]}

    def call(kernel, a):
        out = np.empty(inputs["x"].shape, a["g"].dtype)
        kernel(_five(a["g"]), _five(a["weight"]), _five(out), *_conv_args(cfg))
        return {"grad_input": out}

    return Case(case_inputs, {"grad_input": grads["x"]}, call, degree=2,
                probe=_probe(case_inputs, "g", ("g", "weight", "grad_input")))


def conv_grad_weight_case(cfg: ConvConfig) -> Case:
    inputs, _, g, grads = _conv_spec(cfg)
    case_inputs = {"g": g, "x": inputs["x"]}

    def call(kernel, a):
        out = np.empty(inputs["weight"].shape, a["g"].dtype)
        kernel(_five(a["g"]), _five(a["x"]), _five(out), *_conv_args(cfg))
        return {"grad_weight": out}

    return Case(case_inputs, {"grad_weight": grads["weight"]}, call, degree=2,
                probe=_probe(case_inputs, "g", ("g", "x", "grad_weight")))


def bias_grad_case(cfg: ShapeConfig) -> Case:
    """The bias's gradient of y[n, c, s] = b[c] + ...: (N, C, S) -> (C,)."""
    batch, channels, size = cfg.shape
    b = symbol_array("b", (channels,))
    y = np.empty(cfg.shape, dtype=object)
    for n, c, s in np.ndindex(*cfg.shape):
        y[n, c, s] = b[c]
    g, grads = ops.gradients(y, {"bias": b})

    def call(kernel, a):
        out = np.empty(channels, a["g"].dtype)
        kernel(a["g"], out)
        return {"grad_bias": out}

    return Case({"g": g}, {"grad_bias": grads["bias"]}, call, degree=1)


# --- pooling -------------------------------------------------------------------------------------------------------


def _pool_args(cfg: PoolConfig) -> tuple:
    axes = cfg.window.axes
    return (_triple(cfg.kernel, 1), _triple([a.stride for a in axes], 1), _triple([a.pad_left for a in axes], 0))


def _argmax_indices(cfg: PoolConfig, x: np.ndarray) -> np.ndarray:
    """Where each window's maximum sits, flat within its (n, c) plane, from the spec's windows."""
    window = cfg.window
    indices = np.empty((cfg.batch, cfg.channels) + window.out_shape, dtype=np.int64)
    for n, c in np.ndindex(cfg.batch, cfg.channels):
        for position in window.outputs():
            inside = [index for _, index, ok in window.window(position) if ok]
            best = max(inside, key=lambda index: x[(n, c) + index])
            indices[(n, c) + position] = np.ravel_multi_index(best, cfg.input_shape)
    return indices


@lru_cache(maxsize=None)
def _max_pool_spec(cfg: PoolConfig):
    inputs, y = ops.max_pool(cfg)
    g, grads = ops.gradients(y, inputs, polynomial=False)
    return inputs, y, g, grads


def max_pool_forward_case(cfg: PoolConfig) -> Case:
    inputs, y, _, _ = _max_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        indices = np.empty(y.shape, np.int64)
        kernel(_five(a["x"]), _five(out), _five(indices), *_pool_args(cfg),
               _triple([axis.dilation for axis in cfg.window.axes], 1))
        return {"y": out, "indices": indices}

    outputs = {"y": y, "indices": lambda values: _argmax_indices(cfg, values["x"])}
    return Case(inputs, outputs, call, kind="piecewise", probe=_probe(inputs, "x", ("x", None, "y")), tie_trials=2)


def max_pool_backward_case(cfg: PoolConfig) -> Case:
    inputs, y, g, grads = _max_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(inputs["x"].shape, a["g"].dtype)
        kernel(_five(a["g"]), _five(a["indices"]), _five(out))
        return {"grad_input": out}

    return Case({"g": g, "x": inputs["x"]}, {"grad_input": grads["x"]}, call, kind="piecewise",
                prepare=lambda values: {"indices": _argmax_indices(cfg, values["x"])})


@lru_cache(maxsize=None)
def _avg_pool_spec(cfg: PoolConfig):
    inputs, y = ops.avg_pool(cfg)
    g, grads = ops.gradients(y, inputs)
    # a common multiple of every window's divisor: inputs scaled by it make each average an integer
    divisor = math.lcm(*(int(sp.fraction(sp.together(e))[1]) for e in y.flat))
    return inputs, y, g, grads, divisor


def avg_pool_forward_case(cfg: PoolConfig) -> Case:
    inputs, y, _, _, divisor = _avg_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(_five(a["x"]), _five(out), *_pool_args(cfg), cfg.count_include_pad)
        return {"y": out}

    return Case(inputs, {"y": y}, call, scale={"x": divisor}, probe=_probe(inputs, "x", ("x", None, "y")))


def avg_pool_backward_case(cfg: PoolConfig) -> Case:
    inputs, _, g, grads, divisor = _avg_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(inputs["x"].shape, a["g"].dtype)
        kernel(_five(a["g"]), _five(out), *_pool_args(cfg), cfg.count_include_pad)
        return {"grad_input": out}

    return Case({"g": g}, {"grad_input": grads["x"]}, call, scale={"g": divisor})


@lru_cache(maxsize=None)
def _global_avg_pool_spec(cfg: ShapeConfig):
    inputs, y = ops.global_avg_pool(cfg)
    g, grads = ops.gradients(y, inputs)
    return inputs, y, g, grads


def global_avg_pool_forward_case(cfg: ShapeConfig) -> Case:
    inputs, y, _, _ = _global_avg_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(a["x"], out)
        return {"y": out}

    return Case(inputs, {"y": y}, call, scale={"x": cfg.shape[2]})


def global_avg_pool_backward_case(cfg: ShapeConfig) -> Case:
    inputs, _, g, grads = _global_avg_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(cfg.shape, a["g"].dtype)
        kernel(a["g"], out)
        return {"grad_input": out}

    return Case({"g": g}, {"grad_input": grads["x"]}, call, scale={"g": cfg.shape[2]})


# --- dense and element-wise ----------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _linear_spec(cfg: ShapeConfig):
    inputs, y = ops.linear(cfg)
    g, grads = ops.gradients(y, inputs)
    return inputs, y, g, grads


def linear_forward_case(cfg: ShapeConfig) -> Case:
    inputs, y, _, _ = _linear_spec(cfg)

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(a["x"], a["weight"], a["bias"], out)
        return {"y": out}

    return Case(inputs, {"y": y}, call, degree=2, probe=_probe(inputs, "x", ("x", "weight", "y")))


def linear_grad_input_case(cfg: ShapeConfig) -> Case:
    inputs, _, g, grads = _linear_spec(cfg)
    case_inputs = {"g": g, "weight": inputs["weight"]}

    def call(kernel, a):
        out = np.empty(inputs["x"].shape, a["g"].dtype)
        kernel(a["g"], a["weight"], out)
        return {"grad_input": out}

    return Case(case_inputs, {"grad_input": grads["x"]}, call, degree=2,
                probe=_probe(case_inputs, "g", ("g", "weight", "grad_input")))


def linear_grad_weight_case(cfg: ShapeConfig) -> Case:
    inputs, _, g, grads = _linear_spec(cfg)
    case_inputs = {"g": g, "x": inputs["x"]}

    def call(kernel, a):
        out = np.empty(inputs["weight"].shape, a["g"].dtype)
        kernel(a["g"], a["x"], out)
        return {"grad_weight": out}

    return Case(case_inputs, {"grad_weight": grads["weight"]}, call, degree=2,
                probe=_probe(case_inputs, "g", ("g", "x", "grad_weight")))


def relu_forward_case(cfg: ShapeConfig) -> Case:
    inputs, y = ops.relu(cfg)

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(a["x"], out)
        return {"y": out}

    return Case(inputs, {"y": y}, call, kind="piecewise")


def relu_backward_case(cfg: ShapeConfig) -> Case:
    inputs, y = ops.relu(cfg)
    g, grads = ops.gradients(y, inputs, polynomial=False)

    def call(kernel, a):
        out = np.empty(cfg.shape, a["g"].dtype)
        kernel(a["g"], a["x"], out)
        return {"grad_input": out}

    return Case({"g": g, "x": inputs["x"]}, {"grad_input": grads["x"]}, call, kind="piecewise")


def _dropout_mask(cfg: ShapeConfig) -> np.ndarray:
    """A fixed keep-mask for the configuration: the kernel applies a mask, it does not draw one."""
    return np.random.default_rng(sum(cfg.shape)).random(cfg.shape) >= cfg.param("p")


def dropout_forward_case(cfg: ShapeConfig) -> Case:
    mask = _dropout_mask(cfg)
    inputs, y = ops.dropout(cfg, mask)
    scale = 1.0 / (1.0 - cfg.param("p"))

    def call(kernel, a):
        out = np.empty(cfg.shape, a["x"].dtype)
        kernel(a["x"], mask, scale, out)
        return {"y": out}

    return Case(inputs, {"y": y}, call)


def dropout_backward_case(cfg: ShapeConfig) -> Case:
    mask = _dropout_mask(cfg)
    inputs, y = ops.dropout(cfg, mask)
    g, grads = ops.gradients(y, inputs)
    scale = 1.0 / (1.0 - cfg.param("p"))

    def call(kernel, a):
        out = np.empty(cfg.shape, a["g"].dtype)
        kernel(a["g"], mask, scale, out)
        return {"grad_input": out}

    return Case({"g": g}, {"grad_input": grads["x"]}, call)


def accumulate_case(cfg: ShapeConfig) -> Case:
    inputs, outputs = ops.accumulate(cfg)

    def call(kernel, a):
        total = a["total"].copy()
        kernel(total, a["term"])
        return {"total": total}

    return Case(inputs, outputs, call, degree=1)


def sgd_update_case(cfg: ShapeConfig) -> Case:
    inputs, outputs = ops.sgd_update(cfg)
    args = tuple(cfg.param(name) for name in ("lr", "momentum", "weight_decay", "nesterov", "lr_in_velocity"))

    def call(kernel, a):
        param, velocity = a["param"].copy(), a["velocity"].copy()
        kernel(param, a["grad"], velocity, *args)
        return {"param": param, "velocity": velocity}

    return Case(inputs, outputs, call, degree=1)


# --- numeric ops ---------------------------------------------------------------------------------------------------


def _normal_sample(shape_of: dict, magnitude: float = 1.0):
    def sample(rng, dtype):
        return {name: (rng.standard_normal(shape) * magnitude).astype(dtype) for name, shape in shape_of.items()}

    return sample


def _lrn_args(cfg: ShapeConfig) -> tuple:
    return cfg.param("size"), float(cfg.param("alpha")), float(cfg.param("beta")), float(cfg.param("k"))


@lru_cache(maxsize=None)
def _lrn_spec(cfg: ShapeConfig):
    inputs, y = ops.local_response_norm(cfg)
    g, grads = ops.gradients(y, inputs, polynomial=False)
    return inputs, y, g, grads


def lrn_forward_case(cfg: ShapeConfig) -> Case:
    inputs, y, _, _ = _lrn_spec(cfg)

    def call(kernel, a):
        out = np.empty(cfg.shape, a["x"].dtype)
        kernel(a["x"], out, *_lrn_args(cfg))
        return {"y": out}

    return Case(inputs, {"y": y}, call, kind="numeric", sample=_normal_sample({"x": cfg.shape}))


def lrn_backward_case(cfg: ShapeConfig) -> Case:
    inputs, _, g, grads = _lrn_spec(cfg)

    def call(kernel, a):
        out = np.empty(cfg.shape, a["g"].dtype)
        kernel(a["g"], a["x"], out, *_lrn_args(cfg))
        return {"grad_input": out}

    return Case({"g": g, "x": inputs["x"]}, {"grad_input": grads["x"]}, call, kind="numeric", ulps=16,
                sample=_normal_sample({"g": cfg.shape, "x": cfg.shape}))


def _targets(cfg: ShapeConfig) -> np.ndarray:
    return np.random.default_rng(cfg.shape[1]).integers(0, cfg.shape[1], size=cfg.shape[0])


@lru_cache(maxsize=None)
def _cross_entropy_spec(cfg: ShapeConfig):
    inputs, losses = ops.cross_entropy(cfg, _targets(cfg))
    g, grads = ops.gradients(losses, inputs, polynomial=False)
    return inputs, losses, g, grads


def cross_entropy_forward_case(cfg: ShapeConfig) -> Case:
    inputs, losses, _, _ = _cross_entropy_spec(cfg)
    target = _targets(cfg)

    def call(kernel, a):
        out = np.empty(cfg.shape[:1], a["logits"].dtype)
        kernel(a["logits"], target, out)
        return {"losses": out}

    return Case(inputs, {"losses": losses}, call, kind="numeric",
                sample=_normal_sample({"logits": cfg.shape}, cfg.param("magnitude")))


def cross_entropy_backward_case(cfg: ShapeConfig) -> Case:
    inputs, _, g, grads = _cross_entropy_spec(cfg)
    target = _targets(cfg)

    def call(kernel, a):
        out = np.empty(cfg.shape, a["logits"].dtype)
        kernel(a["g"], a["logits"], target, out)
        return {"grad_logits": out}

    return Case({"g": g, "logits": inputs["logits"]}, {"grad_logits": grads["logits"]}, call, kind="numeric",
                sample=_normal_sample({"g": cfg.shape[:1], "logits": cfg.shape}, cfg.param("magnitude")))


# --- the registry --------------------------------------------------------------------------------------------------

CONV_CONFIGS = (
    # the essay's 1D layer, batched, several channels
    ConvConfig(2, 2, 3, (7,), (3,)),
    ConvConfig(1, 2, 2, (9,), (3,), stride=(2,), padding=(1,), dilation=(2,)),
    # 'same' padding with an even kernel: one more on the right
    ConvConfig(1, 1, 2, (6,), (4,), padding=(1,), padding_right=(2,)),
    ConvConfig(1, 2, 2, (5, 6), (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    # AlexNet's two-GPU split: groups=2
    ConvConfig(1, 4, 4, (5, 5), (3, 3), padding=(1, 1), groups=2),
    # depthwise, and a stride larger than the kernel
    ConvConfig(1, 3, 3, (6, 5), (2, 2), stride=(3, 2), groups=3),
    ConvConfig(1, 2, 2, (3, 4, 5), (2, 2, 3), stride=(1, 2, 1), padding=(0, 1, 1)),
    ConvConfig(2, 2, 4, (4, 3, 3), (3, 2, 2), dilation=(1, 2, 1), padding=(1, 0, 1), groups=2),
    # a long reduction (64 output positions) over few blocks: the CUDA weight gradient splits it
    ConvConfig(1, 1, 2, (66,), (3,)),
)

#: CPU formulations that the small configurations above never reach: rows of at least 16 output positions with
#: few output channels (where the CPU's choice of formulation is ``rows``), and a 1x1 convolution over planes
ROWS_FORWARD_CONFIGS = (
    ConvConfig(2, 2, 3, (18,), (3,)),
    ConvConfig(1, 4, 4, (16,), (3,), padding=(1,), groups=2),
    ConvConfig(2, 3, 2, (4, 4), (1, 1)),
    ConvConfig(1, 2, 2, (2, 3, 18), (2, 2, 3), stride=(2, 1, 1), padding=(1, 0, 1)),
    # a whole task: 16 positions x 14 output channels, stored straight from the accumulators
    ConvConfig(1, 1, 14, (18,), (3,)),
)
ROWS_GRAD_INPUT_CONFIGS = ROWS_FORWARD_CONFIGS[:3] + (
    # two phases of 16 positions, written with stride 2
    ConvConfig(1, 1, 2, (32,), (4,), stride=(2,), padding=(1,)),
    ConvConfig(1, 2, 2, (3, 20), (2, 3), padding=(1, 1), dilation=(1, 2)),
)
#: rows of at least 64 output positions, 4 output channels per task (the ``wide`` formulation); for the input
#: gradient, rows of the input
WIDE_CONFIGS = (
    ConvConfig(1, 2, 3, (66,), (3,)),
    ConvConfig(1, 2, 2, (64,), (3,), padding=(2,), dilation=(2,), groups=2),
    ConvConfig(1, 3, 2, (8, 8), (1, 1)),
    # a whole task: 64 positions x 4 output channels, stored straight from the accumulators
    ConvConfig(1, 1, 4, (66,), (3,)),
)
#: the input gradient as one sub-pixel convolution: strided, rows of at least 16 (64 for ``wide``) positions
#: per phase, an input that is not a multiple of the stride (the output is cropped), groups, every phase with taps
#: (k > s) and some without (k < s)
SUBPIXEL_CONFIGS = (
    ConvConfig(1, 1, 2, (66,), (5,), stride=(4,)),
    ConvConfig(1, 2, 2, (64,), (3,), stride=(2,), padding=(1,), groups=2),
    ConvConfig(1, 1, 2, (5, 34), (3, 3), stride=(2, 2), padding=(1, 1)),
    ConvConfig(1, 1, 2, (256,), (6,), stride=(4,)),
    ConvConfig(1, 1, 1, (96,), (2,), stride=(3,), dilation=(2,)),
)
#: stride 1 with rows shorter than a vector: the vectors run along the padded rows of each plane (the columns past
#: the output's width are computed into scratch and dropped); 2D and 3D, groups, dilation
PADDED_ROWS_CONFIGS = (
    ConvConfig(1, 2, 3, (5, 6), (3, 3), padding=(1, 1)),
    ConvConfig(1, 4, 4, (10, 7), (3, 3), padding=(1, 1), dilation=(2, 1), groups=2),
    ConvConfig(1, 1, 2, (3, 4, 6), (2, 3, 3), padding=(0, 1, 1)),
)

#: the same through the ``lanes`` formulation, and padding wider than the kernel (the input gradient then reads a
#: cropped output gradient)
LANES_CONFIGS = ROWS_GRAD_INPUT_CONFIGS + (
    ConvConfig(1, 2, 3, (4, 3), (1, 2), padding=(1, 1)),
    # a whole task: 16 output channels (a full block of packed weights) x 14 consecutive positions, stored lane by
    # lane straight from the accumulators
    ConvConfig(1, 1, 16, (16,), (3,)),
)

#: the fused Winograd F(2x2, 3x3) forward kernel (2D, 3x3, stride 1): output sizes that leave partial edge tiles,
#: asymmetric and wide padding, groups, and more than 16 input and output channels (a second, partial block of each)
WINOGRAD_CONFIGS = (
    ConvConfig(1, 2, 3, (5, 6), (3, 3), padding=(1, 1)),
    ConvConfig(2, 4, 4, (4, 7), (3, 3), groups=2),
    ConvConfig(1, 3, 2, (6, 5), (3, 3), padding=(2, 0), padding_right=(1, 2)),
    ConvConfig(1, 17, 18, (3, 4), (3, 3), padding=(1, 1)),
)

MAX_POOL_CONFIGS = (
    PoolConfig(2, 2, (9,), (3,), (2,), (1,)),
    # AlexNet's overlapping pooling, with ceil_mode
    PoolConfig(1, 2, (7, 6), (3, 3), (2, 2), ceil_mode=True),
    PoolConfig(1, 2, (6, 7), (2, 3), (2, 2), (1, 1), dilation=(2, 1)),
    PoolConfig(1, 2, (4, 5, 5), (2, 2, 2), (2, 2, 2), ceil_mode=True),
    PoolConfig(1, 1, (5, 4), (3, 3), (1, 1), (1, 1)),
    # strides along the rows of 3, 4 and more (each has its own loop on the CPU), and padding along the depth
    PoolConfig(1, 1, (11,), (3,), (3,)),
    PoolConfig(1, 1, (3, 13), (2, 4), (1, 4), (0, 1)),
    PoolConfig(1, 1, (3, 4, 13), (3, 2, 2), (1, 2, 5), (1, 0, 1)),
)

AVG_POOL_CONFIGS = (
    PoolConfig(2, 2, (9,), (3,), (2,), (1,)),
    PoolConfig(1, 2, (7, 6), (3, 3), (2, 2), (1, 1), ceil_mode=True),
    PoolConfig(1, 2, (7, 6), (3, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=False),
    PoolConfig(1, 2, (3, 4, 5), (2, 2, 3), (1, 2, 2), (1, 0, 1)),
    PoolConfig(1, 1, (5, 5), (2, 2), (2, 2)),
    # a stride longer than the window: inputs that no window covers
    PoolConfig(1, 1, (9,), (2,), (3,)),
)


#: (batch, in_features, out_features): rows narrower than a 16-wide vector, exactly one, one and a bit (the CPU's
#: last block overlaps the one before), and more than 16 samples
LINEAR_CONFIGS = (ShapeConfig((3, 5, 4)), ShapeConfig((1, 16, 2)), ShapeConfig((2, 21, 3)), ShapeConfig((18, 3, 2)))


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
    # the CPU's algorithms behind the three public convolution kernels, each forced onto configurations it serves
    Entry("conv", "conv_forward_rows", conv_forward_case, ROWS_FORWARD_CONFIGS + PADDED_ROWS_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_grad_input_rows", conv_grad_input_case, ROWS_GRAD_INPUT_CONFIGS + PADDED_ROWS_CONFIGS,
          backends=("cpu",)),
    Entry("conv", "conv_forward_wide", conv_forward_case, WIDE_CONFIGS + PADDED_ROWS_CONFIGS[1:2],
          backends=("cpu",)),
    Entry("conv", "conv_grad_input_wide", conv_grad_input_case, WIDE_CONFIGS + PADDED_ROWS_CONFIGS[1:2],
          backends=("cpu",)),
    Entry("conv", "conv_grad_input_subpixel", conv_grad_input_case, SUBPIXEL_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_lanes", conv_forward_case, LANES_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_forward_winograd", conv_forward_case, WINOGRAD_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_winograd", conv_grad_input_case, WINOGRAD_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_lanes", conv_grad_input_case, LANES_CONFIGS, backends=("cpu",)),
    Entry("conv", "conv_grad_input_gather", conv_grad_input_case, CONV_CONFIGS),
    Entry("conv", "conv_grad_weight_split", conv_grad_weight_case,
          (CONV_CONFIGS[0], CONV_CONFIGS[4], CONV_CONFIGS[7], LANES_CONFIGS[-1]), backends=("cpu",)),
    Entry("dense", "bias_grad", bias_grad_case, (ShapeConfig((2, 3, 4)), ShapeConfig((3, 2, 1)))),
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
    Entry("pointwise", "relu_forward", relu_forward_case, (ShapeConfig((37,)),)),
    Entry("pointwise", "relu_backward", relu_backward_case, (ShapeConfig((37,)),)),
    Entry("pointwise", "dropout_forward", dropout_forward_case,
          (ShapeConfig((40,), (("p", 0.5),)), ShapeConfig((33,), (("p", 0.75),)))),
    Entry("pointwise", "dropout_backward", dropout_backward_case,
          (ShapeConfig((40,), (("p", 0.5),)), ShapeConfig((33,), (("p", 0.75),)))),
    Entry("pointwise", "accumulate", accumulate_case, (ShapeConfig((37,)),)),
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
    )),
    Entry("loss", "cross_entropy_forward", cross_entropy_forward_case, (
        ShapeConfig((4, 5), (("magnitude", 3.0),)), ShapeConfig((3, 10), (("magnitude", 1000.0),)),
    )),
    Entry("loss", "cross_entropy_backward", cross_entropy_backward_case, (
        ShapeConfig((4, 5), (("magnitude", 3.0),)), ShapeConfig((3, 10), (("magnitude", 1000.0),)),
    )),
)


def kernel_function(backend: str, module: str, name: str) -> Callable:
    """The kernel ``numconv.kernels.<backend>.<module>.<name>``, callable with numpy arrays: a CUDA kernel's
    array arguments are copied to the device for the call and every one is copied back afterwards."""
    kernel = getattr(importlib.import_module(f"numconv.kernels.{backend}.{module}"), name)
    return kernel if backend == "cpu" else _through_device(kernel)


def _through_device(kernel: Callable) -> Callable:
    from numba import cuda

    def call(*args):
        moved = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
        kernel(*moved)
        for original, on_device in zip(args, moved):
            if isinstance(original, np.ndarray):
                on_device.copy_to_host(original)

    call.__wrapped__ = kernel
    return call


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
    """The registry entry of the kernel called ``name``."""
    (found,) = (e for e in ENTRIES if e.name == name)
    return found
