"""numconv models to ONNX files: each layer of a (nested) Sequential becomes the ONNX node that computes the same
thing in inference, its weights initializers under PyTorch's state-dict keys."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from numconv import backend, checks, geometry, layers
from numconv.files import atomic_write

__all__ = ["export", "to_model", "OPSET"]

#: the operator set the files are written for (ONNX Runtime 1.16 and later run it)
OPSET = 17


def _pads(padding, dims: int) -> dict:
    """ONNX's padding attributes for numconv's ``padding`` (an int, a tuple, (before, after) pairs, 'valid' or
    'same')."""
    if padding == "same":
        return {"auto_pad": "SAME_UPPER"}
    if padding == "valid":
        return {"pads": [0] * (2 * dims)}
    before, after = geometry.padding_sides(padding, dims)
    return {"pads": list(before) + list(after)}


def _tuple(value, dims: int) -> list:
    return [int(value)] * dims if isinstance(value, (int, np.integer)) else [int(v) for v in value]


class _Builder:
    def __init__(self, dtype):
        self.nodes, self.initializers, self.dtype = [], [], dtype
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def weight(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(backend.to_host(value)), name))
        return name

    def node(self, op: str, inputs: list, label: str, **attributes) -> str:
        from onnx import helper

        output = self.name(label)
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _layer(builder: _Builder, name: str, layer, x: str, shape: tuple) -> str:
    """The ONNX nodes of ``layer`` (named ``name`` in the model) applied to the value ``x`` of shape ``shape``;
    returns the name of their output."""
    if isinstance(layer, (layers._ConvNd, layers._ConvTransposeNd)):
        dims = layer._ndim
        inputs = [x, builder.weight(f"{name}.weight", layer.weight)]
        if layer.bias is not None:
            inputs.append(builder.weight(f"{name}.bias", layer.bias))
        transposed = isinstance(layer, layers._ConvTransposeNd)
        extra = {"output_padding": _tuple(layer.output_padding, dims)} if transposed else {}
        return builder.node("ConvTranspose" if transposed else "Conv", inputs, name,
                            kernel_shape=list(layer.kernel_size), strides=_tuple(layer.stride, dims),
                            dilations=_tuple(layer.dilation, dims), group=layer.groups,
                            **_pads(layer.padding, dims), **extra)
    if isinstance(layer, layers._PoolNd):
        dims = layer._ndim
        kernel = _tuple(layer.kernel_size, dims)
        stride = kernel if layer.stride is None else _tuple(layer.stride, dims)
        common = dict(kernel_shape=kernel, strides=stride, ceil_mode=int(bool(layer.ceil_mode)),
                      **_pads(layer.padding, dims))
        if isinstance(layer, layers._MaxPoolNd):
            return builder.node("MaxPool", [x], name, dilations=_tuple(layer.dilation, dims), **common)
        return builder.node("AveragePool", [x], name, count_include_pad=int(bool(layer.count_include_pad)), **common)
    if isinstance(layer, layers.GlobalAvgPool):
        return builder.node("Flatten", [builder.node("GlobalAveragePool", [x], name)], name, axis=1)
    if isinstance(layer, layers.Linear):
        inputs = [x, builder.weight(f"{name}.weight", layer.weight)]
        if layer.bias is not None:
            inputs.append(builder.weight(f"{name}.bias", layer.bias))
        return builder.node("Gemm", inputs, name, transB=1)
    if isinstance(layer, layers._BatchNormNd):
        if layer.running_mean is None:
            raise TypeError(f"layer {name!r} ({type(layer).__name__}) keeps no running statistics "
                            "(track_running_stats=False): ONNX's BatchNormalization needs them in inference")
        channels = layer.num_features
        dtype = layer.running_mean.dtype
        scale = layer.weight if layer.weight is not None else np.ones(channels, dtype)
        shift = layer.bias if layer.bias is not None else np.zeros(channels, dtype)
        inputs = [x] + [builder.weight(f"{name}.{key}", value) for key, value in
                        (("weight", scale), ("bias", shift), ("running_mean", layer.running_mean),
                         ("running_var", layer.running_var))]
        return builder.node("BatchNormalization", inputs, name, epsilon=float(layer.eps))
    if isinstance(layer, layers.ReLU):
        return builder.node("Relu", [x], name)
    if isinstance(layer, layers.LeakyReLU):
        return builder.node("LeakyRelu", [x], name, alpha=float(layer.negative_slope))
    if isinstance(layer, (layers.Sigmoid, layers.Tanh)):
        return builder.node(type(layer).__name__, [x], name)
    if isinstance(layer, layers.Softmax):
        return builder.node("Softmax", [x], name, axis=layer.dim)
    if isinstance(layer, layers.Dropout):
        return x  # the identity in inference
    if isinstance(layer, layers.Flatten):
        return builder.node("Flatten", [x], name, axis=1)
    if isinstance(layer, layers.LocalResponseNorm):
        lrn = dict(size=layer.size, alpha=float(layer.alpha), beta=float(layer.beta), bias=float(layer.k))
        if layer.groups == 1:
            return builder.node("LRN", [x], name, **lrn)
        # each group of maps on its own (AlexNet's columns): the groups seen as samples, as numconv's layer does
        keep = [0] * (len(shape) - 2)
        grouped = builder.weight(f"{name}.grouped_shape", np.array([-1, shape[1] // layer.groups] + keep, np.int64))
        joined = builder.weight(f"{name}.joined_shape", np.array([-1, shape[1]] + keep, np.int64))
        normalised = builder.node("LRN", [builder.node("Reshape", [x, grouped], name)], name, **lrn)
        return builder.node("Reshape", [normalised, joined], name)
    raise TypeError(f"layer {name!r} ({type(layer).__name__}) has no ONNX form in numconv's exporter")


def to_model(model, input_shape):
    """The ONNX ModelProto of ``model`` (a numconv Sequential) for inputs of ``input_shape`` (the batch axis is left
    free): input ``input``, output ``output``."""
    import onnx
    from onnx import helper

    if not isinstance(model, layers.Sequential):
        raise TypeError(f"model must be a numconv Sequential, got {type(model).__name__}")
    input_shape = tuple(checks.integer(size, "input_shape", 1) for size in input_shape)
    parameters = model.parameters()
    dtype = np.dtype(parameters[0].dtype) if parameters else np.dtype(np.float32)
    element = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.float64): onnx.TensorProto.DOUBLE}[dtype]
    builder = _Builder(dtype)
    x, shape = "input", input_shape
    for name, layer in model.named_layers():
        x = _layer(builder, name, layer, x, shape)
        shape = layer.output_shape(shape)
    builder.nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    output_shape = model.output_shape(input_shape)
    graph = helper.make_graph(
        builder.nodes, "numconv", [helper.make_tensor_value_info("input", element, ["N", *input_shape[1:]])],
        [helper.make_tensor_value_info("output", element, ["N", *output_shape[1:]])], builder.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="numconv")
    proto.ir_version = min(proto.ir_version, 9)  # readable by every ONNX Runtime that runs opset 17
    onnx.checker.check_model(proto)
    return proto


def export(model, path, input_shape) -> Path:
    """Write ``model`` to the ONNX file ``path`` (atomically), for inputs of ``input_shape`` = (N, C, *spatial);
    returns the path. Runs in ONNX Runtime and in :func:`numconv.onnx.load`."""
    proto = to_model(model, input_shape)
    return atomic_write(path, lambda file: file.write(proto.SerializeToString()))
