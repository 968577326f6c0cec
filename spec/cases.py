"""How each kernel is checked: a case builder per kernel turns a configuration into a :class:`spec.check.Case`,
the symbolic inputs, the expected expressions from :mod:`spec.ops`, and a ``call`` that runs a kernel on numpy
arrays (every array with three spatial axes, as the kernels take them)."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy as sp

from spec import ops
from spec.check import DTYPES, Case, sample_ranges
from spec.ops import ConvConfig, PoolConfig, ShapeConfig, TransposedConvConfig, symbol_array


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


def conv_forward_relu_case(cfg: ConvConfig) -> Case:
    """``conv_forward`` with its ReLU fused, y = max(conv, 0): piecewise, on integers drawn as the identity test of
    ``conv_forward`` draws them (every sum exact in each dtype), so that each output is either the convolution's
    exact value or, where that is negative, 0. No connectivity probe: a one-hot input's negative products are 0."""
    plain = conv_forward_case(cfg)
    rectified = np.vectorize(lambda v: sp.Max(v, 0, evaluate=False), otypes=[object])(plain.outputs["y"])
    radii = sample_ranges(plain, DTYPES)

    def sample(rng, dtype):
        radius = radii[dtype]
        return {name: rng.integers(-radius, radius + 1, size=symbols.shape) for name, symbols in plain.inputs.items()}

    return Case(plain.inputs, {"y": rectified}, plain.call, kind="piecewise", sample=sample)


def conv_grad_input_case(cfg: ConvConfig) -> Case:
    inputs, _, g, grads = _conv_spec(cfg)
    case_inputs = {"g": g, "weight": inputs["weight"]}

    def call(kernel, a):
        out = np.empty(inputs["x"].shape, a["g"].dtype)
        kernel(_five(a["g"]), _five(a["weight"]), _five(out), *_conv_args(cfg))
        return {"grad_input": out}

    return Case(case_inputs, {"grad_input": grads["x"]}, call, degree=2,
                probe=_probe(case_inputs, "g", ("g", "weight", "grad_input")))


def conv_transpose_case(cfg: TransposedConvConfig) -> Case:
    """The convolution's input-gradient kernel as a transposed convolution, held to the transposed window equations
    (derived on their own, not by differentiating the convolution) with output_padding."""
    inputs, out = ops.conv_transpose(cfg)
    stride, padding, dilation = (_triple(values, fill) for values, fill in
                                 ((cfg.stride, 1), (cfg.padding, 0), (cfg.dilation, 1)))

    def call(kernel, a):
        result = np.empty(out.shape, a["x"].dtype)
        kernel(_five(a["x"]), _five(a["weight"]), _five(result), stride, padding, dilation, cfg.groups)
        return {"y": result}

    return Case(inputs, {"y": out}, call, degree=2, probe=_probe(inputs, "x", ("x", "weight", "y")))


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


def bias_add_case(cfg: ShapeConfig) -> Case:
    """y[n, c, s] + b[c] added in place: (N, C, S) and (C,) -> (N, C, S)."""
    channels = cfg.shape[1]
    y, b = symbol_array("y", cfg.shape), symbol_array("b", (channels,))
    expected = np.empty(cfg.shape, dtype=object)
    for n, c, s in np.ndindex(*cfg.shape):
        expected[n, c, s] = y[n, c, s] + b[c]

    def call(kernel, a):
        out = a["y"].copy()
        kernel(out, a["b"])
        return {"out": out}

    return Case({"y": y, "b": b}, {"out": expected}, call, degree=1)


# --- pooling -------------------------------------------------------------------------------------------------------


def _pool_args(cfg: PoolConfig) -> tuple:
    axes = cfg.window.axes
    return (_triple(cfg.kernel, 1), _triple([a.stride for a in axes], 1), _triple([a.pad_left for a in axes], 0))


def _pool_padding_end(cfg: PoolConfig) -> tuple:
    return _triple([a.right for a in cfg.window.axes], 0)


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


def max_pool_forward_values_case(cfg: PoolConfig) -> Case:
    """max_pool_forward_values: the maxima alone, the same values as max_pool_forward's (ties and padding as there);
    the tie trials hold it to the first of equal values."""
    inputs, y, _, _ = _max_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(_five(a["x"]), _five(out), *_pool_args(cfg), _triple([axis.dilation for axis in cfg.window.axes], 1))
        return {"y": out}

    return Case(inputs, {"y": y}, call, kind="piecewise", probe=_probe(inputs, "x", ("x", None, "y")), tie_trials=2)


def max_pool_backward_case(cfg: PoolConfig) -> Case:
    inputs, y, g, grads = _max_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(inputs["x"].shape, a["g"].dtype)
        outside = kernel(_five(a["g"]), _five(a["indices"]), _five(out), *_pool_args(cfg),
                         _triple([axis.dilation for axis in cfg.window.axes], 1))
        if outside != 0:
            raise AssertionError(f"max_pool_backward counted {outside} indices outside their plane, all lie inside")
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
        kernel(_five(a["x"]), _five(out), *_pool_args(cfg), _pool_padding_end(cfg), cfg.count_include_pad)
        return {"y": out}

    return Case(inputs, {"y": y}, call, scale={"x": divisor}, probe=_probe(inputs, "x", ("x", None, "y")))


def avg_pool_backward_case(cfg: PoolConfig) -> Case:
    inputs, _, g, grads, divisor = _avg_pool_spec(cfg)

    def call(kernel, a):
        out = np.empty(inputs["x"].shape, a["g"].dtype)
        kernel(_five(a["g"]), _five(out), *_pool_args(cfg), _pool_padding_end(cfg), cfg.count_include_pad)
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
    """With the parameter ``in_place``, the kernel is given one array as both input and output."""
    inputs, y = ops.relu(cfg)
    in_place = dict(cfg.params).get("in_place", False)

    def call(kernel, a):
        if in_place:
            out = a["x"].copy()
            kernel(out, out)
        else:
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


def leaky_relu_forward_case(cfg: ShapeConfig) -> Case:
    inputs, y = ops.leaky_relu(cfg)
    slope = float(sp.nsimplify(cfg.param("slope")))

    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(a["x"], slope, out)
        return {"y": out}

    return Case(inputs, {"y": y}, call, kind="piecewise")


def leaky_relu_backward_case(cfg: ShapeConfig) -> Case:
    inputs, y = ops.leaky_relu(cfg)
    g, grads = ops.gradients(y, inputs, polynomial=False)
    slope = float(sp.nsimplify(cfg.param("slope")))

    def call(kernel, a):
        out = np.empty(cfg.shape, a["g"].dtype)
        kernel(a["g"], a["x"], slope, out)
        return {"grad_input": out}

    return Case({"g": g, "x": inputs["x"]}, {"grad_input": grads["x"]}, call, kind="piecewise")


def _activation_forward_case(inputs, y, magnitude) -> Case:
    """An activation out = f(x) checked numerically against its expression at ``magnitude``-sized inputs."""
    def call(kernel, a):
        out = np.empty(y.shape, a["x"].dtype)
        kernel(a["x"], out)
        return {"y": out}

    return Case(inputs, {"y": y}, call, kind="numeric", sample=_normal_sample({"x": y.shape}, magnitude))


def sigmoid_forward_case(cfg: ShapeConfig) -> Case:
    return _activation_forward_case(*ops.sigmoid(cfg), cfg.param("magnitude"))


def tanh_forward_case(cfg: ShapeConfig) -> Case:
    return _activation_forward_case(*ops.tanh(cfg), cfg.param("magnitude"))


def softmax_forward_case(cfg: ShapeConfig) -> Case:
    return _activation_forward_case(*ops.softmax(cfg), cfg.param("magnitude"))


def _output_gradient_case(cfg: ShapeConfig, activation: str) -> Case:
    inputs, grad = ops.output_gradient(cfg, activation)

    def call(kernel, a):
        out = np.empty(cfg.shape, a["g"].dtype)
        kernel(a["g"], a["y"], out)
        return {"grad_input": out}

    return Case(inputs, {"grad_input": grad}, call, degree=3)


def sigmoid_backward_case(cfg: ShapeConfig) -> Case:
    return _output_gradient_case(cfg, "sigmoid")


def tanh_backward_case(cfg: ShapeConfig) -> Case:
    return _output_gradient_case(cfg, "tanh")


def softmax_backward_case(cfg: ShapeConfig) -> Case:
    return _output_gradient_case(cfg, "softmax")


def multiply_case(cfg: ShapeConfig) -> Case:
    return _binary_case(cfg, *ops.multiply(cfg), degree=2)


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


def _binary_case(cfg: ShapeConfig, inputs, outputs, degree: int) -> Case:
    """An element-wise kernel of two operands, out = f(a, b), on flat (size,) arrays."""
    def call(kernel, a):
        out = np.empty(cfg.shape, a["a"].dtype)
        kernel(a["a"], a["b"], out)
        return {"out": out}

    return Case(inputs, outputs, call, degree=degree)


def add_case(cfg: ShapeConfig) -> Case:
    return _binary_case(cfg, *ops.add(cfg), degree=1)


def concat_channels_forward_case(cfg: ShapeConfig) -> Case:
    """Every part copied into its channels of the output, one kernel call per part."""
    parts, out = ops.concat_channels(cfg)

    def call(kernel, a):
        result = np.empty(out.shape, a["part0"].dtype)
        offset = 0
        for name in parts:
            kernel(a[name], result, offset)
            offset += a[name].shape[1]
        return {"out": result}

    return Case(parts, {"out": out}, call, degree=1)


def concat_channels_backward_case(cfg: ShapeConfig) -> Case:
    """Each part's gradient: the derivative of sum g*out with respect to the part, one kernel call per part."""
    parts, out = ops.concat_channels(cfg)
    g, grads = ops.gradients(out, parts)

    def call(kernel, a):
        results, offset = {}, 0
        for name, part in parts.items():
            results[name] = np.empty(part.shape, a["g"].dtype)
            kernel(a["g"], results[name], offset)
            offset += part.shape[1]
        return results

    return Case({"g": g}, grads, call, degree=1)


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


def _batch_norm_sample(cfg: ShapeConfig, names):
    """Values whose results are well conditioned, so that the error measured is the kernel's: every variance
    positive (var + eps must be); each channel of x spread about as widely as it is far from zero (the input
    gradient's sensitivity to the rounding of the mean grows as |mean| / std, for any algorithm); running means near
    the batch's; and g leaning along the centred x (the sums of g and of g * x_hat then do not cancel to a small
    fraction of their terms, which would make a few ulps of each term many ulps of the result)."""
    channels = cfg.shape[1]
    shapes = {"x": cfg.shape, "g": cfg.shape, "weight": (channels,), "bias": (channels,), "mean": (channels,),
              "var": (channels,)}

    def sample(rng, dtype):
        values = {name: rng.standard_normal(shapes[name]) for name in names}
        if "var" in values:
            values["var"] = np.abs(values["var"]) + 0.5
        if "x" in values:
            x = values["x"]
            centred = x - x.mean(axis=(0, 2), keepdims=True)
            standard = centred / centred.std(axis=(0, 2), keepdims=True)
            # a centre of 1 to 2 standard deviations, either sign: no mean near zero, whose sum would cancel
            offset = rng.standard_normal((1, channels, 1))
            values["x"] = standard + np.sign(offset) * (1.0 + 0.5 * np.abs(offset))
            if "mean" in values:
                values["mean"] = values["x"].mean(axis=(0, 2)) + 0.3 * values["mean"]
            if "g" in values:
                values["g"] = standard + 1.0 + 0.5 * values["g"]
        return {name: value.astype(dtype) for name, value in values.items()}

    return sample


def batch_norm_statistics_case(cfg: ShapeConfig) -> Case:
    inputs, _, statistics = ops.batch_norm(cfg, statistics_of_x=True)
    channels = cfg.shape[1]

    def call(kernel, a):
        mean, var = np.empty(channels, a["x"].dtype), np.empty(channels, a["x"].dtype)
        kernel(a["x"], mean, var)
        return {"mean": mean, "var": var}

    return Case({"x": inputs["x"]}, statistics, call, kind="numeric", sample=_batch_norm_sample(cfg, ["x"]))


def batch_norm_forward_case(cfg: ShapeConfig) -> Case:
    inputs, y, _ = ops.batch_norm(cfg, statistics_of_x=False)
    eps = float(cfg.param("eps"))

    def call(kernel, a):
        out = np.empty(cfg.shape, a["x"].dtype)
        kernel(a["x"], a["mean"], a["var"], a["weight"], a["bias"], eps, out)
        return {"y": out}

    return Case(inputs, {"y": y}, call, kind="numeric", sample=_batch_norm_sample(cfg, list(inputs)))


def batch_norm_backward_case(cfg: ShapeConfig) -> Case:
    """Training (``training=1``: the batch's statistics, functions of x, as the kernel is given them) or
    evaluation (running statistics, constants)."""
    training = bool(cfg.param("training"))
    inputs, y, statistics = ops.batch_norm(cfg, statistics_of_x=training)
    wrt = {name: inputs[name] for name in ("x", "weight", "bias")}
    g, grads = ops.gradients(y, wrt, polynomial=False)
    eps, channels = float(cfg.param("eps")), cfg.shape[1]
    case_inputs = {"g": g, **{name: symbols for name, symbols in inputs.items() if name != "bias"}}

    def call(kernel, a):
        if training:  # the batch's statistics, as numconv's batch_norm computes them before the backward
            x = a["x"].astype(np.float64)
            mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
            mean, var = mean.astype(a["x"].dtype), var.astype(a["x"].dtype)
        else:
            mean, var = a["mean"], a["var"]
        results = {name: np.empty(shape, a["x"].dtype) for name, shape in
                   (("grad_input", cfg.shape), ("grad_weight", (channels,)), ("grad_bias", (channels,)))}
        kernel(a["g"], a["x"], mean, var, a["weight"], eps, training, results["grad_input"], results["grad_weight"],
               results["grad_bias"])
        return results

    expected = {"grad_input": grads["x"], "grad_weight": grads["weight"], "grad_bias": grads["bias"]}
    # in training the input's gradient is g - mean(g) - x_hat * mean(g * x_hat), whose terms cancel by construction
    # (they sum to zero over the channel), and x_hat = (x - mean) / std carries the mean's rounding to the input's
    # dtype times |mean| / std: a few ulps of each term is many ulps of the small results
    return Case(case_inputs, expected, call, kind="numeric", ulps=32 if training else 16,
                sample=_batch_norm_sample(cfg, list(case_inputs)))


def running_average_case(cfg: ShapeConfig) -> Case:
    inputs, outputs = ops.running_average(cfg)
    momentum, correction = float(cfg.param("momentum")), float(cfg.param("correction"))

    def call(kernel, a):
        running = a["running"].copy()
        kernel(running, a["value"], momentum, correction)
        return {"running": running}

    return Case(inputs, outputs, call, degree=1)


def _targets(cfg: ShapeConfig) -> np.ndarray:
    """Labels drawn from the shape, with the row named by the ``ignored`` parameter (if any) marked -1."""
    target = np.random.default_rng(cfg.shape[1]).integers(0, cfg.shape[1], size=cfg.shape[0])
    ignored = dict(cfg.params).get("ignored")
    if ignored is not None:
        target[ignored] = -1
    return target


def _loss_options(cfg: ShapeConfig):
    """(class weights, label smoothing) of a loss configuration: ones and 0 unless given."""
    params = dict(cfg.params)
    return params.get("weights", (1,) * cfg.shape[1]), params.get("smoothing", 0)


@lru_cache(maxsize=None)
def _cross_entropy_spec(cfg: ShapeConfig):
    inputs, losses = ops.cross_entropy(cfg, _targets(cfg), *_loss_options(cfg))
    g, grads = ops.gradients(losses, inputs, polynomial=False)
    return inputs, losses, g, grads


def _loss_arguments(cfg: ShapeConfig, dtype):
    weights, smoothing = _loss_options(cfg)
    class_weight = np.array([float(sp.nsimplify(w)) for w in weights], dtype=dtype)
    return _targets(cfg), class_weight, float(sp.nsimplify(smoothing))


def cross_entropy_forward_case(cfg: ShapeConfig) -> Case:
    inputs, losses, _, _ = _cross_entropy_spec(cfg)

    def call(kernel, a):
        out = np.empty(cfg.shape[:1], a["logits"].dtype)
        kernel(a["logits"], *_loss_arguments(cfg, a["logits"].dtype), out)
        return {"losses": out}

    return Case(inputs, {"losses": losses}, call, kind="numeric",
                sample=_normal_sample({"logits": cfg.shape}, cfg.param("magnitude")))


def cross_entropy_backward_case(cfg: ShapeConfig) -> Case:
    inputs, _, g, grads = _cross_entropy_spec(cfg)

    def call(kernel, a):
        out = np.empty(cfg.shape, a["logits"].dtype)
        kernel(a["g"], a["logits"], *_loss_arguments(cfg, a["logits"].dtype), out)
        return {"grad_logits": out}

    # with label smoothing a logit's gradient is a difference of two terms of like size (softmax share and the
    # smoothed target): their rounding, a few ulps of each, is many ulps of a small difference
    smoothed = bool(sp.nsimplify(_loss_options(cfg)[1]))
    return Case({"g": g, "logits": inputs["logits"]}, {"grad_logits": grads["logits"]}, call, kind="numeric",
                ulps=16 if smoothed else 8,
                sample=_normal_sample({"g": cfg.shape[:1], "logits": cfg.shape}, cfg.param("magnitude")))
