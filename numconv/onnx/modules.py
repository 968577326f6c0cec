"""An ONNX graph that is a chain of layers, as a trainable numconv Sequential (``numconv.onnx.to_module``).

Each node becomes the layer that computes the same thing, its weights copied from the model; a layer with weights
is named after them (PyTorch's exporter stores ``features.0.weight``: the layer is ``features.0``, so the module's
state-dict keys are the network's own), the others after their op and position. What a chain of layers cannot hold
(a join such as Add or Concat, an op with no layer) is an error naming the node.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from numconv import layers
from numconv.onnx.graph import Step, read_graph, resolve_padding
from numconv.onnx.runtime import dense_form

__all__ = ["to_module"]

_CONV = {1: layers.Conv1d, 2: layers.Conv2d, 3: layers.Conv3d}
_CONV_TRANSPOSE = {1: layers.ConvTranspose1d, 2: layers.ConvTranspose2d, 3: layers.ConvTranspose3d}
_MAX_POOL = {1: layers.MaxPool1d, 2: layers.MaxPool2d, 3: layers.MaxPool3d}
_AVG_POOL = {1: layers.AvgPool1d, 2: layers.AvgPool2d, 3: layers.AvgPool3d}
_BATCH_NORM = {2: layers.BatchNorm1d, 3: layers.BatchNorm1d, 4: layers.BatchNorm2d, 5: layers.BatchNorm3d}


class _Chain:
    """The layers built so far, the value name they end in and its shape (batch 1)."""

    def __init__(self, value: str, shape: tuple, stored: dict, dtype):
        self.value, self.shape, self.stored, self.dtype = value, shape, stored, dtype
        self.layers = OrderedDict()

    def error(self, step: Step, what: str) -> ValueError:
        return ValueError(f"node {step.name} ({step.op}): {what}")

    def weight(self, step: Step, position: int):
        """The stored array that ``step`` reads at input ``position`` (None where the input is absent)."""
        if position >= len(step.inputs) or not step.inputs[position]:
            return None
        name = step.inputs[position]
        if name not in self.stored:
            raise self.error(step, f"input {name!r} must be a weight stored in the model")
        return np.asarray(self.stored[name])

    def axes(self, step: Step) -> list:
        """A Squeeze's, Unsqueeze's or ReduceMean's axes: an attribute before opset 13, a stored input after."""
        axes = step.params.get("axes")
        if axes is None and len(step.inputs) > 1 and step.inputs[1]:
            axes = [int(v) for v in self.weight(step, 1).reshape(-1)]
        return axes

    def add(self, step: Step, layer, arrays: dict = None) -> None:
        """Append ``layer``, named after its weight where it has one, with ``arrays`` copied into it."""
        name = f"{step.op}_{len(self.layers)}".lower()
        weight_name = step.inputs[1] if len(step.inputs) > 1 else ""
        if arrays and weight_name.endswith(".weight") and weight_name[:-7] not in self.layers:
            name = weight_name[:-7]
        try:
            layer.load_state_dict(arrays or {}, strict=False)
        except (ValueError, TypeError) as error:
            raise self.error(step, str(error)) from None
        self.layers[name] = layer
        self.shape = layer.output_shape(self.shape)


def _window_layer(chain: _Chain, step: Step, classes: dict, dims: int, kernel: tuple, **options):
    """The layer class and options of a window step; ONNX's SAME padding is fixed for the chain's input size."""
    p = step.params
    if dims not in classes:
        raise chain.error(step, f"numconv has {', '.join(f'{d}D' for d in classes)} layers, not {dims}D")
    # a 1D pooling that PyTorch wrapped as 2D sees the chain's (N, C, L) with a unit axis before L
    spatial = (1,) * (len(kernel) - len(chain.shape) + 2) + tuple(chain.shape[2:])
    padding = resolve_padding(p, spatial, kernel)
    return classes[dims], dict(stride=p["stride"], padding=padding, **options)


def _conv(chain: _Chain, step: Step) -> None:
    weight, bias = chain.weight(step, 1), chain.weight(step, 2)
    if weight is None:
        raise chain.error(step, "the weight must be stored in the model")
    dims, p = weight.ndim - 2, step.params
    transposed = step.op == "ConvTranspose"
    cls, options = _window_layer(chain, step, _CONV_TRANSPOSE if transposed else _CONV, dims,
                                 tuple(weight.shape[2:]), dilation=p["dilation"], groups=p["groups"])
    channels = (weight.shape[0], weight.shape[1] * p["groups"]) if transposed else \
        (weight.shape[1] * p["groups"], weight.shape[0])
    if transposed:
        options["output_padding"] = p["output_padding"]
    layer = cls(*channels, tuple(weight.shape[2:]), bias=bias is not None, dtype=chain.dtype, **options)
    chain.add(step, layer, {"weight": weight, **({"bias": bias} if bias is not None else {})})


def _pool(chain: _Chain, step: Step, dims: int = 0) -> None:
    p = step.params
    dims = dims or len(p["kernel"])
    if step.op == "MaxPool":
        if len(step.outputs) > 1 and step.outputs[1]:
            raise chain.error(step, "the Indices output has no layer")
        cls, options = _window_layer(chain, step, _MAX_POOL, dims, p["kernel"], dilation=p["dilation"],
                                     ceil_mode=p["ceil_mode"])
    else:
        cls, options = _window_layer(chain, step, _AVG_POOL, dims, p["kernel"], ceil_mode=p["ceil_mode"],
                                     count_include_pad=p["count_include_pad"])
    kernel = p["kernel"][-dims:]
    if dims < len(p["kernel"]):  # a 1D pooling that PyTorch wrapped as 2D over a unit axis
        options = {key: value[-dims:] if isinstance(value, tuple) else value for key, value in options.items()}
    chain.add(step, cls(kernel, **options))


def _batch_norm(chain: _Chain, step: Step) -> None:
    scale, bias, mean, var = (chain.weight(step, k) for k in range(1, 5))
    if any(value is None for value in (scale, bias, mean, var)):
        raise chain.error(step, "scale, B, mean and var must be stored in the model")
    if len(chain.shape) not in _BATCH_NORM:
        raise chain.error(step, f"numconv normalises inputs of 2 to 5 dimensions, got shape {chain.shape}")
    layer = _BATCH_NORM[len(chain.shape)](scale.shape[0], eps=step.params["eps"], dtype=chain.dtype)
    chain.add(step, layer, {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var})


def _dense(chain: _Chain, step: Step) -> None:
    if step.params.get("trans_a"):
        raise chain.error(step, "transA=1 transposes the activations, which no layer does")
    weight, bias, addend = dense_form(step, chain.weight(step, 1), chain.weight(step, 2))
    if addend is not None:
        raise chain.error(step, f"C of shape {addend.shape} is not one value per output, which a Linear layer's "
                                "bias would need")
    layer = layers.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=chain.dtype)
    chain.add(step, layer, {"weight": weight, **({"bias": bias} if bias is not None else {})})


def _flattening(chain: _Chain, step: Step, shape: tuple = None) -> bool:
    """Whether a Flatten or a Reshape makes (N, everything else) of an input of ``shape`` (the chain's by default):
    what a Flatten layer does (PyTorch's exporter writes the batch size it was given; the layer takes any)."""
    before = chain.shape if shape is None else shape
    if step.op == "Flatten":
        return step.params["axis"] in (1, 1 - len(before))
    if step.op != "Reshape":
        return False
    target = [int(v) for v in np.asarray(chain.stored.get(step.inputs[1], [])).reshape(-1)]
    return len(target) == 2 and target[0] in (0, -1, before[0]) and target[1] in (-1, int(np.prod(before[1:])))


def _spatial_mean(chain: _Chain, step: Step, following: list) -> int:
    """GlobalAveragePool or ReduceMean over the spatial axes: a GlobalAvgPool layer, which also drops the unit
    axes, so a Flatten (or flattening Reshape) after it is taken with it. Returns how many steps were used."""
    spatial = list(range(2, len(chain.shape)))
    if step.op == "ReduceMean":
        axes = chain.axes(step)
        if sorted(a % len(chain.shape) for a in axes or []) != spatial:
            raise chain.error(step, f"numconv's layer averages over every spatial axis {spatial}, got axes {axes}")
        if not step.params["keepdims"]:
            chain.add(step, layers.GlobalAvgPool())
            return 1
    after = following[0] if following else None
    kept = chain.shape[:2] + (1,) * len(spatial)
    if after is None or not _flattening(chain, after, kept):
        raise chain.error(step, "a global average that keeps its unit axes needs a Flatten after it in a chain of "
                                "layers (numconv's GlobalAvgPool gives (N, C))")
    chain.add(step, layers.GlobalAvgPool())
    return 2


def _unit_axis_pool(chain: _Chain, step: Step, following: list) -> int:
    """Unsqueeze, then 2D pooling with a unit window on the new axis, then Squeeze: PyTorch's form of 1D pooling."""
    if len(following) >= 2 and following[0].op in ("MaxPool", "AveragePool") and following[1].op == "Squeeze" and \
            len(chain.shape) == 3 and [a % 4 for a in chain.axes(step) or []] == [2] and \
            [a % 4 for a in chain.axes(following[1]) or []] == [2]:
        pool = following[0].params
        if pool["kernel"][0] == 1 and tuple(np.broadcast_to(pool["stride"], 2))[0] == 1 and \
                tuple(np.broadcast_to(pool["padding"], 2))[0] == 0:
            _pool(chain, following[0], dims=1)
            return 3
    raise chain.error(step, "an Unsqueeze is supported only around 1D pooling (Unsqueeze, pooling, Squeeze)")


def _layer_steps(chain: _Chain, steps: list, index: int) -> int:
    """Append the layer of ``steps[index]`` (with any steps that belong to it); returns how many were used."""
    step = steps[index]
    op = step.op
    if op in ("Conv", "ConvTranspose"):
        _conv(chain, step)
    elif op in ("MaxPool", "AveragePool"):
        _pool(chain, step)
    elif op in ("GlobalAveragePool", "ReduceMean"):
        return _spatial_mean(chain, step, steps[index + 1:])
    elif op == "Unsqueeze":
        return _unit_axis_pool(chain, step, steps[index + 1:])
    elif op == "BatchNormalization":
        _batch_norm(chain, step)
    elif op in ("Gemm", "MatMul"):
        _dense(chain, step)
    elif op == "LRN":
        p = step.params
        chain.add(step, layers.LocalResponseNorm(p["size"], p["alpha"], p["beta"], p["k"]))
    elif op == "Relu":
        chain.add(step, layers.ReLU())
    elif op == "LeakyRelu":
        chain.add(step, layers.LeakyReLU(step.params["slope"]))
    elif op in ("Sigmoid", "Tanh"):
        chain.add(step, getattr(layers, op)())
    elif op == "Softmax" and (not step.params["flatten"] or step.params["axis"] % len(chain.shape) ==
                              len(chain.shape) - 1):
        chain.add(step, layers.Softmax(step.params["axis"]))
    elif op in ("Flatten", "Reshape") and _flattening(chain, step):
        chain.add(step, layers.Flatten())
    elif op == "Dropout":
        ratio = chain.weight(step, 1)
        chain.add(step, layers.Dropout(float(ratio) if ratio is not None else 0.5))
    elif op != "Identity":
        raise chain.error(step, "has no numconv layer in a chain (to_module builds Sequentials of layers; "
                                "numconv.onnx.load runs any graph of the supported ops)")
    return 1


def to_module(model) -> layers.Sequential:
    """A trainable :class:`~numconv.layers.Sequential` equal to the ONNX ``model`` (a ModelProto) whose nodes form
    one chain from its one input to its one output; weights copied, dtype the input's."""
    steps, initializers, inputs, outputs = read_graph(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"to_module needs a graph with one input and one output, got inputs "
                         f"{[name for name, _, _ in inputs]} and outputs {outputs}")
    name, shape, dtype = inputs[0]
    if shape is None or len(shape) < 2 or not all(isinstance(size, int) and size > 0 for size in shape[1:]):
        raise ValueError(f"to_module needs the input's sizes after the batch axis, got shape {shape}")
    stored = dict(initializers)
    stored.update((step.outputs[0], step.params["value"]) for step in steps if step.op == "Constant")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    chain = _Chain(name, (batch,) + tuple(shape[1:]), stored, dtype)
    steps = [step for step in steps if step.op != "Constant"]
    index = 0
    while index < len(steps):
        step = steps[index]
        data = [value for value in step.inputs if value and value not in stored]
        if data != [chain.value]:
            raise chain.error(step, f"reads {data}, but in a chain of layers each node reads only the previous "
                                    f"node's output {chain.value!r}: the graph branches or joins here "
                                    "(numconv.onnx.load runs such graphs)")
        used = _layer_steps(chain, steps, index)
        chain.value = steps[index + used - 1].outputs[0]
        index += used
    if chain.value != outputs[0]:
        raise ValueError(f"the graph's output {outputs[0]!r} is not the end of the chain ({chain.value!r})")
    return layers.Sequential(chain.layers)
