"""Running an ONNX graph on numconv's kernels, with ONNX Runtime's calling convention.

``Session(model).run(output_names or None, {input_name: array})`` returns a list of arrays, as
``onnxruntime.InferenceSession.run`` does. The inputs may be NumPy arrays (the CPU kernels) or arrays on the GPU
(the CUDA kernels, and the outputs stay there); the weights follow the inputs, moved to the device once.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

import numconv.functional as F
from numconv import backend
from numconv.onnx.graph import Step, read_graph, resolve_padding, shape_of

__all__ = ["Session", "NodeArg"]

_ONNX_TYPE_NAMES = {np.dtype(np.float32): "tensor(float)", np.dtype(np.float64): "tensor(double)",
                    np.dtype(np.int64): "tensor(int64)"}
#: ONNX element types as ONNX Runtime names them, for describing the outputs
_ELEMENT_NAMES = {1: "tensor(float)", 11: "tensor(double)", 7: "tensor(int64)"}


class NodeArg(NamedTuple):
    """A graph input or output as ONNX Runtime describes it: name, shape (None or a name where not fixed), type."""
    name: str
    shape: list
    type: str


class Session:
    """An ONNX model ready to run on numconv's kernels (see :func:`numconv.onnx.load`)."""

    def __init__(self, model):
        self._steps, initializers, self._inputs, self._outputs = read_graph(model)
        # private, writeable copies (ONNX's are read-only, which the kernels would copy on every run), frozen: the
        # CPU convolutions prepare each weight once per session instead of on every run
        self._initializers = {name: np.array(value) for name, value in initializers.items()}
        F.freeze(*(value for value in self._initializers.values() if value.dtype.kind == "f"))
        constants = {name for step in self._steps if step.op == "Constant" for name in step.outputs}
        for step in self._steps:
            given = set(self._initializers) | constants | {name for name, _, _ in self._inputs}
            if step.op == "Reshape" and step.inputs[1] not in given:
                raise ValueError(f"node {step.name} (Reshape): the shape {step.inputs[1]!r} must be stored in the "
                                 "model or be an input")
        self._on_backend = {}  # backend -> {name: float initializer there}
        self._weight_ids = set()  # the identities of the arrays of ``_on_backend``
        self._prepared = {}  # (step name, backend) -> (weight, bias) for Gemm and MatMul
        # (Conv step's identity, backend, input shape, dtype, ReLU fused) -> (its convolution checked once
        # (F.bind_conv), the stored weight and bias it reads)
        self._bound = {}
        self._described = [NodeArg(value.name, shape_of(value), _ELEMENT_NAMES.get(
            value.type.tensor_type.elem_type, "tensor")) for value in model.graph.output]
        self._values = {name for step in self._steps for name in step.outputs if name} | set(self._initializers) | {
            name for name, _, _ in self._inputs}
        # the index of the last step that reads each value: intermediate results are freed after it
        self._last_reader = {name: index for index, step in enumerate(self._steps) for name in step.inputs if name}
        self._computed = {name for step in self._steps if step.op != "Constant" for name in step.outputs if name}
        # Conv step -> the Relu step that alone reads its output: the ReLU is fused into the convolution (as ONNX
        # Runtime fuses it) wherever a run does not ask for the convolution's own output
        readers = {}
        for index, step in enumerate(self._steps):
            for name in set(step.inputs):
                readers.setdefault(name, []).append(index)
        self._relu_after = {}
        for index, step in enumerate(self._steps):
            only = readers.get(step.outputs[0], []) if step.op == "Conv" else []
            if len(only) == 1 and self._steps[only[0]].op == "Relu":
                self._relu_after[index] = only[0]

    def get_inputs(self) -> list:
        return [NodeArg(name, None if shape is None else list(shape), _ONNX_TYPE_NAMES[dtype])
                for name, shape, dtype in self._inputs]

    def get_outputs(self) -> list:
        return list(self._described)

    def run(self, output_names, input_feed: dict, run_options=None) -> list:
        """The values of ``output_names`` (every graph output when None) for the inputs ``input_feed``."""
        if not isinstance(input_feed, dict):
            raise TypeError(f"input_feed must be a dict of input name -> array, got {type(input_feed).__name__}")
        names = list(self._outputs if output_names is None else output_names)
        absent = [name for name in names if name not in self._values]
        if absent:
            raise ValueError(f"output_names {absent} are not values of the graph")
        expected = {name: dtype for name, _, dtype in self._inputs}
        shapes = {name: shape for name, shape, _ in self._inputs}
        unknown = sorted(set(input_feed) - set(expected))
        missing = sorted(set(expected) - set(input_feed))
        if unknown or missing:
            raise ValueError(f"input_feed must give exactly the inputs {sorted(expected)}; unknown {unknown}, "
                             f"missing {missing}")
        feeds = {}
        for name, value in input_feed.items():
            array = backend.as_device_array(value) if backend.is_device_array(value) else np.asarray(value)
            if array.dtype != expected[name]:
                raise TypeError(f"input {name!r} must have dtype {expected[name]}, got {array.dtype}")
            declared = shapes[name]
            if declared is not None and (len(declared) != len(array.shape) or any(
                    isinstance(want, int) and want != got for want, got in zip(declared, array.shape))):
                raise ValueError(f"input {name!r} must have shape {list(declared)} (a name or None: any size), got "
                                 f"{tuple(array.shape)}")
            feeds[name] = array if backend.is_device_array(array) else np.ascontiguousarray(array)
        # the floats choose the backend; shapes and axes (int64) stay on the host
        where = backend.backend_of(*(value for value in feeds.values() if value.dtype.kind == "f"))
        # the values of this run that are not stored weights: the inputs, the constants and what the steps computed
        live = dict(feeds)
        weights = self._weights(where)
        kept = set(names) | set(self._initializers)
        # memory this run must not write to, even once its name is let go: the caller's inputs and the model's
        # constants (an Identity or a Reshape passes them on under a computed name)
        external = [value for value in feeds.values() if isinstance(value, np.ndarray)]
        fused = set()  # the Relu steps fused into the Conv before them in this run
        for index, step in enumerate(self._steps):
            if index in fused:
                continue
            if step.op == "Constant":
                live[step.outputs[0]] = _on(step.params["value"], where)
                external.append(live[step.outputs[0]])
                continue
            # two dictionaries rather than a ChainMap, whose lookups run in Python (NiN: 41 a run)
            arguments = [(live[name] if name in live else weights[name]) if name else None for name in step.inputs]
            outputs = step.outputs
            relu = self._relu_after.get(index)
            if relu is not None and step.outputs[0] not in kept:
                fused.add(relu)
                outputs, results = self._steps[relu].outputs, _conv(self, step, arguments, where, relu=True)
            elif step.op == "Relu" and self._spent(step.inputs[0], index, kept, live, external):
                results = [F.relu(arguments[0], inplace=True)]  # as ONNX Runtime fuses it into the step before
            else:
                results = _OPS[step.op](self, step, arguments, where)
            for name, value in zip(outputs, results):
                if name:
                    live[name] = value
            for name in step.inputs:  # a value no later step reads is let go now, not at the end of the run
                if name and self._last_reader.get(name) == index and name not in kept:
                    live.pop(name, None)
        return [live[name] if name in live else weights[name] for name in names]

    def _spent(self, name: str, index: int, kept: set, live: dict, external: list) -> bool:
        """Whether the value ``name`` may be overwritten by step ``index``: a host array that an earlier step of this
        run computed, that no later step reads, that is not asked for, and that shares no memory with another of the
        run's ``live`` values (a view that a Reshape or an Identity made) nor with ``external`` arrays. A view is
        never overwritten, nor a weight that an Identity passed on; any other array shares no memory with the
        model's weights, which are then not compared (comparing each of NiN's 18 took half of its ReLUs' 11 us)."""
        value = live.get(name)
        if not (name in self._computed and self._last_reader[name] == index and name not in kept
                and isinstance(value, np.ndarray) and not isinstance(value.base, np.ndarray)
                and id(value) not in self._weight_ids):
            return False
        others = [other for other_name, other in live.items() if other_name != name] + external
        return not any(isinstance(other, np.ndarray) and np.may_share_memory(other, value) for other in others)

    def _weights(self, where: str) -> dict:
        if where not in self._on_backend:
            self._on_backend[where] = {name: _on(value, where) for name, value in self._initializers.items()}
            self._weight_ids.update(id(value) for value in self._on_backend[where].values())
        return self._on_backend[where]

    def _dense(self, step: Step, where: str, arguments: list) -> tuple:
        """(weight (out, in), bias (out,) or None, addend or None) of a Gemm or MatMul step, on ``where``. Stored
        operands are prepared once; operands computed at run time are prepared on each run, through the host."""
        stored = all(name in self._initializers for name in step.inputs[1:] if name)
        key = (step.name, where)
        if stored and key in self._prepared:
            return self._prepared[key]
        operands = [None if not name else self._initializers[name] if name in self._initializers else
                    backend.to_host(value) for name, value in zip(step.inputs, arguments)]
        weight, bias, addend = dense_form(step, np.asarray(operands[1]),
                                           operands[2] if len(operands) > 2 else None)
        # the addend is broadcast on the host when added: it stays there
        prepared = (_on(weight, where), None if bias is None else _on(bias, where), addend)
        if stored:
            self._prepared[key] = prepared
        return prepared


def dense_form(step: Step, matrix: np.ndarray, c) -> tuple:
    """Gemm's alpha * A B' + beta * C (B' = B or B transposed) or MatMul's A B as numconv's linear layer: the
    (out, in) weight, a bias when C is one value per output, and otherwise C as an addend (broadcast when added)."""
    if matrix.ndim != 2:
        raise ValueError(f"node {step.name} ({step.op}): numconv multiplies by matrices, the second operand has "
                         f"shape {matrix.shape}")
    if step.op == "MatMul":
        return np.ascontiguousarray(matrix.T), None, None
    p = step.params
    weight = np.ascontiguousarray((matrix if p["trans_b"] else matrix.T) * matrix.dtype.type(p["alpha"]))
    if c is None:
        return weight, None, None
    scaled = np.asarray(c) * np.asarray(c).dtype.type(p["beta"])
    if scaled.size == weight.shape[0] and (scaled.ndim <= 1 or scaled.shape[-1] == scaled.size):
        return weight, np.ascontiguousarray(scaled.reshape(-1)), None
    return weight, None, scaled


def _on(value: np.ndarray, where: str):
    """Float tensors go where the computation is; integer tensors (shapes, axes) stay on the host."""
    return backend.to_backend(value, where) if value.dtype.kind == "f" else value


def _host_ints(value) -> list:
    return [int(v) for v in np.asarray(backend.to_host(value) if backend.is_device_array(value) else value).reshape(-1)]


def _dims(x, step: Step) -> int:
    dims = x.ndim - 2
    if dims not in (1, 2, 3):
        raise ValueError(f"node {step.name} ({step.op}): numconv runs 1D, 2D and 3D windows, the input has shape "
                         f"{tuple(x.shape)}")
    return dims


def _conv(session, step, arguments, where, relu=False):
    """Conv, or ConvTranspose (whose steps carry an output_padding); a Conv with ``relu`` followed by its ReLU."""
    x, weight = arguments[0], arguments[1]
    bias = arguments[2] if len(arguments) > 2 else None
    p = step.params
    key = (id(step), where, tuple(x.shape), x.dtype.str, relu)
    bound = session._bound.get(key)
    if bound is not None and bound[1] is weight and bound[2] is bias:
        return [bound[0](x)]
    padding = resolve_padding(p, tuple(x.shape[2:]), tuple(weight.shape[2:]))
    options = dict(stride=p["stride"], padding=padding, dilation=p["dilation"], groups=p["groups"])
    if "output_padding" in p:
        options["output_padding"] = p["output_padding"]
        return [getattr(F, f"conv_transpose{_dims(x, step)}d")(x, weight, bias, **options)]
    call = getattr(F, f"conv{_dims(x, step)}d")
    stored = session._weights(where)
    if any(value is not stored.get(name) for name, value in zip(step.inputs[1:], arguments[1:]) if name):
        return [call(x, weight, bias, relu=relu, **options)]  # a weight computed, or fed, at run time
    # the session's stored weights, the same arrays at every run on this backend: checked once per input shape
    run = F.bind_conv(x, weight, bias, relu=relu, **options)
    session._bound[key] = (run, weight, bias)
    return [run(x)]


def _max_pool(session, step, arguments, where):
    x = arguments[0]
    p = step.params
    with_indices = len(step.outputs) > 1 and bool(step.outputs[1])
    padding = resolve_padding(p, tuple(x.shape[2:]), p["kernel"])
    pooled = getattr(F, f"max_pool{_dims(x, step)}d")(x, p["kernel"], p["stride"], padding, p["dilation"],
                                                      p["ceil_mode"], return_indices=with_indices)
    if not with_indices:
        return [pooled]
    out, indices = pooled
    # numconv (as PyTorch) counts within each (sample, channel) plane; ONNX counts over the whole input
    planes = x.shape[0] * x.shape[1]
    offsets = (np.arange(planes, dtype=np.int64) * math.prod(x.shape[2:])).reshape(x.shape[:2] + (1,) * (x.ndim - 2))
    host = (backend.to_host(indices) if backend.is_device_array(indices) else indices) + offsets
    return [out, backend.to_backend(host, where)]


def _average_pool(session, step, arguments, where):
    x = arguments[0]
    p = step.params
    padding = resolve_padding(p, tuple(x.shape[2:]), p["kernel"])
    return [getattr(F, f"avg_pool{_dims(x, step)}d")(x, p["kernel"], p["stride"], padding, p["ceil_mode"],
                                                     p["count_include_pad"])]


def _global_average_pool(session, step, arguments, where):
    x = arguments[0]
    _dims(x, step)
    return [F.global_avg_pool(x).reshape(tuple(x.shape[:2]) + (1,) * (x.ndim - 2))]


def _global_max_pool(session, step, arguments, where):
    x = arguments[0]
    spatial = tuple(x.shape[2:])
    return [getattr(F, f"max_pool{_dims(x, step)}d")(x, spatial, spatial)]


def _reduce_mean(session, step, arguments, where):
    x = arguments[0]
    axes = _axes(step, arguments, x.ndim)
    if axes != list(range(2, x.ndim)):
        raise ValueError(f"node {step.name} (ReduceMean): numconv averages over every spatial axis (axes "
                         f"{list(range(2, x.ndim))} of an input of shape {tuple(x.shape)}), got axes {axes}")
    mean = F.global_avg_pool(x)
    return [mean.reshape(tuple(x.shape[:2]) + (1,) * (x.ndim - 2)) if step.params["keepdims"] else mean]


def _lrn(session, step, arguments, where):
    p = step.params
    return [F.local_response_norm(arguments[0], p["size"], p["alpha"], p["beta"], p["k"])]


def _gemm(session, step, arguments, where):
    x = arguments[0]
    if x.ndim != 2:
        raise ValueError(f"node {step.name} ({step.op}): numconv multiplies (batch, features) matrices, the input "
                         f"has shape {tuple(x.shape)}")
    if step.params.get("trans_a"):  # Gemm's A transposed: through the host
        x = backend.to_backend(np.ascontiguousarray(backend.to_host(x).T), where)
    weight, bias, addend = session._dense(step, where, arguments)
    out = F.linear(x, weight, bias)
    if addend is None:
        return [out]
    try:
        full = np.broadcast_to(addend, tuple(out.shape))
    except ValueError:
        raise ValueError(f"node {step.name} (Gemm): C of shape {tuple(addend.shape)} does not broadcast to the "
                         f"output's {tuple(out.shape)}") from None
    return [F.add(out, backend.to_backend(np.ascontiguousarray(full, dtype=out.dtype), where))]


def _binary(session, step, arguments, where):
    """Add and Mul, of arrays of one shape (numconv does not broadcast)."""
    a, b = arguments
    if tuple(a.shape) != tuple(b.shape):
        verb = "adds" if step.op == "Add" else "multiplies"
        raise ValueError(f"node {step.name} ({step.op}): numconv {verb} arrays of the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return [(F.add if step.op == "Add" else F.mul)(a, b)]


def _concat(session, step, arguments, where):
    if step.params["axis"] % arguments[0].ndim != 1:
        raise ValueError(f"node {step.name} (Concat): numconv concatenates along the channel axis (1), got axis "
                         f"{step.params['axis']}")
    return [F.cat(arguments, 1)]


def _flatten(session, step, arguments, where):
    """(the axes before ``axis`` multiplied, the rest multiplied): a view."""
    x = arguments[0]
    axis = step.params["axis"] + x.ndim if step.params["axis"] < 0 else step.params["axis"]
    return [x.reshape(math.prod(x.shape[:axis]), -1)]


def _reshape(session, step, arguments, where):
    x, shape = arguments[0], _host_ints(arguments[1])
    if not step.params.get("allowzero"):
        shape = [x.shape[axis] if size == 0 else size for axis, size in enumerate(shape)]
    try:
        return [x.reshape(tuple(shape))]
    except ValueError as error:
        raise ValueError(f"node {step.name} (Reshape): an input of shape {tuple(x.shape)} cannot take the shape "
                         f"{shape}: {error}") from None


def _axes(step, arguments, ndim):
    axes = step.params.get("axes")
    if axes is None and len(arguments) > 1 and arguments[1] is not None:
        axes = _host_ints(arguments[1])
    return None if axes is None else sorted(axis % ndim for axis in axes)


def _squeeze(session, step, arguments, where):
    x = arguments[0]
    axes = _axes(step, arguments, x.ndim)
    axes = [axis for axis, size in enumerate(x.shape) if size == 1] if axes is None else axes
    return [x.reshape(tuple(size for axis, size in enumerate(x.shape) if axis not in axes))]


def _unsqueeze(session, step, arguments, where):
    x = arguments[0]
    axes = step.params.get("axes") or _host_ints(arguments[1])
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for axis in sorted(axis % rank for axis in axes):
        shape.insert(axis, 1)
    return [x.reshape(tuple(shape))]


def _dropout(session, step, arguments, where):
    if len(arguments) > 2 and arguments[2] is not None and any(_host_ints(arguments[2])):
        raise ValueError(f"node {step.name} (Dropout): training_mode is true; numconv runs models for inference")
    return [arguments[0]]


def _batch_normalization(session, step, arguments, where):
    x, scale, bias, mean, var = arguments
    return [F.batch_norm(x, mean, var, scale, bias, training=False, eps=step.params["eps"])]


def _relu(session, step, arguments, where):
    return [F.relu(arguments[0])]


def _activation(session, step, arguments, where):
    """LeakyRelu, Sigmoid and Tanh."""
    if step.op == "LeakyRelu":
        return [F.leaky_relu(arguments[0], step.params["slope"])]
    return [getattr(F, step.op.lower())(arguments[0])]


def _softmax(session, step, arguments, where):
    x = arguments[0]
    axis = step.params["axis"] % x.ndim
    if step.params["flatten"]:  # the old form: rows of everything from ``axis`` on
        rows = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
        return [F.softmax(rows, -1).reshape(tuple(x.shape))]
    return [F.softmax(x, axis)]


def _identity(session, step, arguments, where):
    return [arguments[0]]


_OPS = {"Conv": _conv, "ConvTranspose": _conv, "MaxPool": _max_pool, "AveragePool": _average_pool,
        "GlobalAveragePool": _global_average_pool,
        "GlobalMaxPool": _global_max_pool, "LRN": _lrn, "Relu": _relu, "Gemm": _gemm, "MatMul": _gemm,
        "ReduceMean": _reduce_mean, "Add": _binary, "Concat": _concat,
        "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Dropout": _dropout,
        "BatchNormalization": _batch_normalization, "Identity": _identity, "LeakyRelu": _activation,
        "Sigmoid": _activation, "Tanh": _activation, "Softmax": _softmax, "Mul": _binary}
