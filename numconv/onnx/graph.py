"""Reading an ONNX graph into steps numconv can run, and refusing at load time what it cannot.

A :class:`Step` is one node with its attributes read and checked: the op, the names of its inputs and outputs, and
the numconv parameters it maps to. Every check that can be made without the input's shape is made here, so that an
unsupported op, attribute or dtype is an error naming the node when the model is loaded, not at its first run.
PyTorch's exporter writes LocalResponseNorm as ten nodes (Mul, Reshape, Pad, AveragePool, Squeeze, Mul, Add, Pow,
Div); :func:`fuse_local_response_norm` finds that pattern and makes it one ``LRN`` step on numconv's kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from numconv import geometry

__all__ = ["Step", "read_graph", "resolve_padding", "shape_of", "SUPPORTED_OPS", "OPSETS"]

#: the ONNX operator set versions of the default domain that numconv reads: the ops below mean the same from 11
#: to 25 (later versions added element types, and moved Squeeze's, Unsqueeze's and ReduceMean's axes to an input)
OPSETS = range(11, 26)
SUPPORTED_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN",
                 "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "Gemm", "MatMul", "Add", "Mul", "Concat",
                 "ReduceMean", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "BatchNormalization", "Dropout",
                 "Identity", "Constant")
_FLOAT_TYPES = {1: np.float32, 11: np.float64}
_INT64 = 7
#: (op, input position) of the inputs that hold shapes and axes: the only ones an int64 graph input may feed
_INDEX_INPUTS = {("Reshape", 1), ("Squeeze", 1), ("Unsqueeze", 1), ("ReduceMean", 1)}


@dataclass
class Step:
    """One node of the graph as numconv runs it."""
    op: str
    name: str
    inputs: list
    outputs: list
    params: dict = field(default_factory=dict)


class _Node:
    """A node's attributes, read with ONNX's defaults, and errors that name the node."""

    def __init__(self, node):
        import onnx

        self.node = node
        self.label = f"node {node.name or '(unnamed)'} ({node.op_type})"
        self.attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def error(self, what: str) -> ValueError:
        return ValueError(f"{self.label}: {what}")

    def get(self, name, default=None):
        value = self.attributes.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def only(self, **allowed) -> None:
        """Refuse every attribute whose value numconv cannot honour (``allowed``: name -> the values it can)."""
        for name, values in allowed.items():
            value = self.get(name, values[0])
            if value not in values:
                raise self.error(f"{name}={value!r} is not supported (numconv supports {', '.join(map(repr, values))})")


def _window(node: _Node, dims: int | None, pooling: bool) -> dict:
    """kernel, stride, padding and dilation from a Conv or pooling node's attributes. The padding is what numconv's
    ops take (an int, per-axis (before, after) pairs, or 'same'), or ``("auto", extra_at_end)`` for ONNX's
    SAME_UPPER/SAME_LOWER where the sides depend on the input's size, resolved when it is known."""
    kernel = tuple(node.get("kernel_shape", ()))
    if pooling and not kernel:
        raise node.error("kernel_shape is required")
    given = [len(node.get(name)) // (2 if name == "pads" else 1) for name in ("strides", "dilations", "pads")
             if node.get(name) is not None]
    dims = len(kernel) if kernel else given[0] if given else None
    auto_pad = node.get("auto_pad", "NOTSET")
    if dims is None:  # nothing says how many axes: the weight will, and one value serves them all
        if auto_pad not in ("NOTSET", "VALID"):
            raise node.error(f"auto_pad={auto_pad} needs kernel_shape")
        return {"kernel": kernel, "stride": 1, "padding": 0, "dilation": 1}
    stride = tuple(node.get("strides", (1,) * dims))
    dilation = tuple(node.get("dilations", (1,) * dims))
    pads = tuple(node.get("pads", (0,) * (2 * dims)))
    if auto_pad == "VALID":
        padding = (0,) * dims
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        extents = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if all(s == 1 for s in stride) and not any(e % 2 for e in extents):
            padding = tuple(e // 2 for e in extents)
        else:
            padding = ("auto", auto_pad == "SAME_UPPER")
    elif auto_pad == "NOTSET":
        padding = pads[:dims] if pads[:dims] == pads[dims:] else tuple(zip(pads[:dims], pads[dims:]))
        extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        if pooling and any(max(pads[a], pads[a + dims]) >= extents[a] for a in range(dims)):
            raise node.error(f"pads={list(pads)} reach a whole window {extents} (windows of padding alone), which "
                             "numconv does not support")
    else:
        raise node.error(f"auto_pad={auto_pad!r} is not an ONNX padding mode")
    return {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}


def resolve_padding(params: dict, spatial: tuple, kernel: tuple):
    """The padding of a window step for an input of spatial shape ``spatial``: ``params['padding']`` itself, or
    ONNX's SAME padding for that shape as (before, after) pairs."""
    padding = params["padding"]
    if not (isinstance(padding, tuple) and padding and padding[0] == "auto"):
        return padding
    ndim = len(spatial)
    stride, dilation = (np.broadcast_to(params[name], ndim) for name in ("stride", "dilation"))
    return geometry.same_padding(spatial, kernel, stride, dilation, extra_at_end=padding[1])


def _read_node(node, opset: int) -> Step:
    entry = _Node(node)
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise entry.error(f"the operator domain {node.domain!r} is not supported (numconv runs the default domain)")
    inputs, outputs = list(node.input), list(node.output)
    if op not in SUPPORTED_OPS:  # an error unless it is part of a pattern that fusion replaces
        error = entry.error(f"the operator {op} is not supported (numconv runs {', '.join(SUPPORTED_OPS)})")
        return Step(op, node.name or op, inputs, outputs, {"unsupported": error})
    params = {}
    if op == "Conv":
        params = _window(entry, None, pooling=False)
        params["groups"] = int(entry.get("group", 1))
    elif op == "ConvTranspose":
        if entry.get("output_shape") is not None:
            raise entry.error("output_shape is not supported: give pads and output_padding instead")
        if entry.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise entry.error(f"auto_pad={entry.get('auto_pad')} is not supported for ConvTranspose: give pads")
        params = _window(entry, None, pooling=False)
        if isinstance(params["padding"], tuple) and any(isinstance(p, tuple) for p in params["padding"]):
            raise entry.error(f"pads={entry.get('pads')} differ between the start and the end of an axis, which "
                              "numconv's transposed convolution does not support")
        params["groups"] = int(entry.get("group", 1))
        params["output_padding"] = tuple(entry.get("output_padding", ())) or 0
    elif op == "MaxPool":
        entry.only(storage_order=(0,))
        params = _window(entry, None, pooling=True)
        params["ceil_mode"] = bool(entry.get("ceil_mode", 0))
    elif op == "AveragePool":
        params = _window(entry, None, pooling=True)
        if any(d != 1 for d in params["dilation"]):
            raise entry.error(f"dilations={list(params['dilation'])} are not supported in average pooling")
        params["ceil_mode"] = bool(entry.get("ceil_mode", 0))
        params["count_include_pad"] = bool(entry.get("count_include_pad", 0))
    elif op == "LRN":
        size = int(entry.get("size"))
        if size % 2 == 0:
            raise entry.error(f"size={size}: an even window is centred differently in ONNX and in numconv "
                              "(PyTorch's rule); only odd sizes are supported")
        params = {"size": size, "alpha": float(entry.get("alpha", 1e-4)), "beta": float(entry.get("beta", 0.75)),
                  "k": float(entry.get("bias", 1.0))}
    elif op == "Gemm":
        params = {"alpha": float(entry.get("alpha", 1.0)), "beta": float(entry.get("beta", 1.0)),
                  "trans_a": bool(entry.get("transA", 0)), "trans_b": bool(entry.get("transB", 0))}
    elif op == "Flatten":
        params["axis"] = int(entry.get("axis", 1))
    elif op == "LeakyRelu":
        params["slope"] = float(entry.get("alpha", 0.01))
    elif op == "Softmax":
        # before opset 13 Softmax flattened the input to 2D at ``axis`` (default 1); from 13 it is one axis (-1)
        params["axis"] = int(entry.get("axis", -1 if opset >= 13 else 1))
        params["flatten"] = opset < 13
    elif op == "Reshape":
        entry.only(allowzero=(0, 1))
        params["allowzero"] = bool(entry.get("allowzero", 0))
    elif op == "Concat":
        params["axis"] = int(entry.get("axis"))
        if params["axis"] >= 0 and params["axis"] != 1:
            raise entry.error(f"axis={params['axis']}: numconv concatenates along the channel axis (1) only")
    elif op == "ReduceMean":
        entry.only(noop_with_empty_axes=(0,))
        params = {"axes": entry.get("axes"), "keepdims": bool(entry.get("keepdims", 1))}
    elif op in ("Squeeze", "Unsqueeze"):
        params["axes"] = entry.get("axes")  # an attribute before opset 13, an input after
    elif op == "BatchNormalization":
        entry.only(training_mode=(0,))
        if len([name for name in outputs if name]) > 1:
            raise entry.error("the running mean and variance outputs are not supported (numconv runs models for "
                              "inference)")
        params["eps"] = float(entry.get("epsilon", 1e-5))
    elif op == "Dropout":
        if len(outputs) > 1 and outputs[1]:
            raise entry.error("the mask output is not supported (numconv runs models for inference)")
        if len(inputs) > 2 and inputs[2]:
            params["training_mode"] = inputs[2]
    elif op == "Constant":
        if "value" not in entry.attributes:
            raise entry.error(f"only a tensor 'value' is supported, got {sorted(entry.attributes)}")
        params["value"] = _array(entry.attributes["value"], entry.label)
    return Step(op, node.name or f"{op}_{id(node)}", inputs, outputs, params)


def _array(tensor, where: str) -> np.ndarray:
    from onnx import numpy_helper

    value = numpy_helper.to_array(tensor)
    if value.dtype.kind == "f" and value.dtype not in (np.float32, np.float64):
        raise ValueError(f"{where}: tensor {tensor.name or ''} has dtype {value.dtype}; numconv computes in float32 "
                         "and float64")
    return value


def shape_of(value):
    """A graph value's declared shape as ONNX Runtime lists it (sizes, names where symbolic, None where unknown), or
    None when the model declares none."""
    if not value.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value.type.tensor_type.shape.dim]


def read_graph(model) -> tuple:
    """(steps, initializers by name, [(input name, shape, dtype)], [output names]) of an ONNX ModelProto, checked."""
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)
    if opset not in OPSETS:
        raise ValueError(f"the model's opset is {opset}; numconv reads opsets {OPSETS.start} to {OPSETS.stop - 1}")
    graph = model.graph
    initializers = {tensor.name: _array(tensor, f"initializer {tensor.name}") for tensor in graph.initializer}
    inputs = []
    for value in graph.input:
        if value.name in initializers:
            continue
        element = value.type.tensor_type.elem_type
        if element not in _FLOAT_TYPES and element != _INT64:
            raise ValueError(f"graph input {value.name} has ONNX element type {element}; numconv computes in float32 "
                             "and float64")
        shape = shape_of(value)
        dtype = np.dtype(_FLOAT_TYPES.get(element, np.int64))
        inputs.append((value.name, None if shape is None else tuple(shape), dtype))
    steps = [_read_node(node, opset) for node in graph.node]
    for name, _, dtype in inputs:
        readers = [(step, position) for step in steps for position, read in enumerate(step.inputs) if read == name]
        if dtype == np.int64 and any((step.op, position) not in _INDEX_INPUTS for step, position in readers):
            raise ValueError(f"graph input {name} holds int64 values, which numconv takes only as shapes and axes "
                             f"(of {', '.join(sorted({op for op, _ in _INDEX_INPUTS}))})")
    steps = fuse_local_response_norm(steps, initializers)
    for step in steps:
        if "unsupported" in step.params:
            raise step.params["unsupported"]
    known = set(initializers) | {name for name, _, _ in inputs}
    for step in steps:
        missing = [name for name in step.inputs if name and name not in known]
        if missing:
            raise ValueError(f"node {step.name} ({step.op}) reads {missing}, which no earlier node or input gives")
        known.update(step.outputs)
    outputs = [value.name for value in graph.output]
    return steps, initializers, inputs, outputs


def _scalar(name: str, initializers: dict, constants: dict):
    value = initializers.get(name, constants.get(name))
    return None if value is None or np.size(value) != 1 else float(np.reshape(value, -1)[0])


def fuse_local_response_norm(steps: list, initializers: dict) -> list:
    """Replace PyTorch's exported form of LocalResponseNorm (``x / (k + alpha * avg_pool3d(pad(x*x)))**beta``, over
    the channels) by one LRN step. Nodes that are not exactly that pattern are left as they are."""
    constants = {step.outputs[0]: step.params["value"] for step in steps if step.op == "Constant"}
    producer = {output: step for step in steps for output in step.outputs}
    readers = {}
    for step in steps:
        for name in step.inputs:
            readers[name] = readers.get(name, 0) + 1
    fused, removed = {}, set()
    for step in steps:
        if step.op != "Div":
            continue
        chain = _match_lrn(step, producer, readers, initializers, constants)
        if chain is None:
            continue
        x, size, alpha, beta, k, nodes = chain
        fused[id(step)] = Step("LRN", step.name, [x], step.outputs, {"size": size, "alpha": alpha, "beta": beta,
                                                                       "k": k})
        removed.update(id(node) for node in nodes)
    return [fused.get(id(step), step) for step in steps if id(step) not in removed or id(step) in fused]


def _match_lrn(div: Step, producer: dict, readers: dict, initializers: dict, constants: dict):
    def single(name, op):
        step = producer.get(name)
        return step if step is not None and step.op == op and readers.get(name, 0) == 1 else None

    x, denominator = div.inputs
    power = single(denominator, "Pow")
    scaled = power and single(power.inputs[0], "Add")
    product = scaled and single(scaled.inputs[0], "Mul")
    squeeze = product and single(product.inputs[0], "Squeeze")
    pool = squeeze and single(squeeze.inputs[0], "AveragePool")
    pad = pool and single(pool.inputs[0], "Pad")
    view = pad and single(pad.inputs[0], "Reshape")
    square = view and single(view.inputs[0], "Mul")
    if square is None or square.inputs != [x, x]:
        return None
    beta = _scalar(power.inputs[1], initializers, constants)
    k = _scalar(scaled.inputs[1], initializers, constants)
    alpha = _scalar(product.inputs[1], initializers, constants)
    size = pool.params["kernel"][0]
    if None in (alpha, beta, k) or not pool.params.get("count_include_pad") or size % 2 == 0:
        return None
    return x, size, alpha, beta, k, [power, scaled, product, squeeze, pool, pad, view, square]
