"""Ready models: LeNet-5, AlexNet, Network in Network, M5 (1D audio) and a small C3D (3D clips), and
``summary`` (each layer's output shape and parameter count, like the tables in the papers).

Every model takes ``rng`` (a numpy Generator or an int seed) for its initial weights and its dropout masks, and
``dtype`` (float32 by default).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from numconv import checks, init
from numconv.layers import (
    AvgPool2d, BatchNorm1d, Conv1d, Conv2d, Conv3d, Dropout, Flatten, GlobalAvgPool, Linear, LocalResponseNorm,
    MaxPool1d, MaxPool2d, MaxPool3d, Module, ReLU, Sequential,
)

__all__ = ["lenet5", "alexnet", "nin", "m5", "c3d_small", "summary", "MODELS", "INPUT_SHAPES"]


def _generator(rng) -> np.random.Generator:
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")


def lenet5(num_classes: int = 10, in_channels: int = 1, rng=None, dtype=np.float32) -> Sequential:
    """LeNet-5 (LeCun et al. 1998) for 28x28 input with ReLU and max-pooling: 6-16-120-84-10, 61,706 parameters.
    Input (N, 1, 28, 28); output (N, num_classes) logits."""
    rng = _generator(rng)
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=2, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Flatten(),
        Linear(16 * 5 * 5, 120, rng=rng, dtype=dtype), ReLU(),
        Linear(120, 84, rng=rng, dtype=dtype), ReLU(),
        Linear(84, num_classes, rng=rng, dtype=dtype),
    )


def alexnet(num_classes: int = 1000, in_channels: int = 3, rng=None, dtype=np.float32,
            paper_init: bool = True, image_size: int = 227, first_layer_scale: float = 1.0) -> Sequential:
    """AlexNet (Krizhevsky, Sutskever and Hinton 2012) as in the paper: 227x227 input, local response
    normalisation after conv1 and conv2, overlapping 3x3 stride-2 max-pooling, dropout 0.5 before fc6 and fc7,
    and the two-GPU split: groups=2 on conv2, conv4 and conv5, and each local response normalisation over its own
    GPU's half of the maps (``LocalResponseNorm(groups=2)``), so that the two columns meet only at conv3 and the
    fully-connected layers. 60,965,224 parameters with 1000 classes.

    ``paper_init`` draws every weight from N(0, 0.01) and sets the biases of conv2, conv4, conv5 and the hidden
    fully-connected layers to 1, the rest to 0 (section 5); otherwise He initialisation. ``image_size`` (227 in
    the paper) sets fc6's input for smaller or larger square images. ``first_layer_scale`` multiplies conv1's
    initial weights: a small one (0.01) lets the filters the first layer learns stand out of its random start
    within a few epochs, where the paper's figure shows them after 90.
    """
    first_layer_scale = checks.real(first_layer_scale, "first_layer_scale", above=0.0)
    rng = _generator(rng)
    # the paper's alpha = 1e-4 multiplies the plain sum of squares; PyTorch's formula divides alpha by size
    lrn = dict(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0, groups=2)
    features = Sequential(
        Conv2d(in_channels, 96, 11, stride=4, rng=rng, dtype=dtype), ReLU(), LocalResponseNorm(**lrn),
        MaxPool2d(3, stride=2),
        Conv2d(96, 256, 5, padding=2, groups=2, rng=rng, dtype=dtype), ReLU(), LocalResponseNorm(**lrn),
        MaxPool2d(3, stride=2),
        Conv2d(256, 384, 3, padding=1, rng=rng, dtype=dtype), ReLU(),
        Conv2d(384, 384, 3, padding=1, groups=2, rng=rng, dtype=dtype), ReLU(),
        Conv2d(384, 256, 3, padding=1, groups=2, rng=rng, dtype=dtype), ReLU(),
        MaxPool2d(3, stride=2),
    )
    _, channels, height, width = features.output_shape((1, in_channels, image_size, image_size))
    classifier = Sequential(
        Dropout(0.5, rng=rng), Linear(channels * height * width, 4096, rng=rng, dtype=dtype), ReLU(),
        Dropout(0.5, rng=rng), Linear(4096, 4096, rng=rng, dtype=dtype), ReLU(),
        Linear(4096, num_classes, rng=rng, dtype=dtype),
    )
    model = Sequential(OrderedDict(features=features, flatten=Flatten(), classifier=classifier))
    if paper_init:
        biases_of_one = {"features.4.bias", "features.10.bias", "features.12.bias", "classifier.1.bias",
                         "classifier.4.bias"}
        for name, array in model.named_parameters():
            if name.endswith("weight"):
                array[...] = init.normal(array.shape, rng, 0.01)
            else:
                array[...] = 1.0 if name in biases_of_one else 0.0
    features[0].weight *= first_layer_scale
    return model


def _mlpconv(in_channels, channels, kernel, padding, rng, dtype):
    """Network in Network's micro network: a k x k convolution followed by two 1x1 convolutions, each with ReLU."""
    first, second, third = channels
    return [Conv2d(in_channels, first, kernel, padding=padding, rng=rng, dtype=dtype), ReLU(),
            Conv2d(first, second, 1, rng=rng, dtype=dtype), ReLU(),
            Conv2d(second, third, 1, rng=rng, dtype=dtype), ReLU()]


def nin(num_classes: int = 10, in_channels: int = 3, rng=None, dtype=np.float32, width: int = 192) -> Sequential:
    """Network in Network (Lin, Chen and Yan 2014), the CIFAR-10 model: three mlpconv blocks, max and average
    pooling with dropout between them, and global average pooling over one feature map per class (no
    fully-connected layer). ``width`` (192 in the paper) scales the hidden channels. Input (N, C, 32, 32) or
    (N, C, 28, 28)."""
    rng = _generator(rng)
    w = width
    layers = (
        _mlpconv(in_channels, (w, w * 5 // 6, w // 2), 5, 2, rng, dtype)
        + [MaxPool2d(3, stride=2, ceil_mode=True), Dropout(0.5, rng=rng)]
        + _mlpconv(w // 2, (w, w, w), 5, 2, rng, dtype)
        + [AvgPool2d(3, stride=2, ceil_mode=True), Dropout(0.5, rng=rng)]
        + _mlpconv(w, (w, w, num_classes), 3, 1, rng, dtype)[:-1]
        + [GlobalAvgPool()]
    )
    return Sequential(*layers)


def m5(num_classes: int = 2, in_channels: int = 1, rng=None, dtype=np.float32, width: int = 128) -> Sequential:
    """M5 (Dai et al. 2017, "Very deep convolutional neural networks for raw waveforms"): a first convolution of
    80 samples with stride 4 (a learned filter bank), then 3-tap convolutions, each convolution followed by batch
    normalisation, ReLU and max-pooling by 4, then global average pooling and one linear layer. ``width`` is the
    first layer's channel count (128 in the paper; it doubles twice). Input (N, 1, L)."""
    rng = _generator(rng)
    w = width

    def block(cin, cout, kernel, stride=1, ceil_mode=False):
        return [Conv1d(cin, cout, kernel, stride=stride, rng=rng, dtype=dtype), BatchNorm1d(cout, dtype=dtype), ReLU(),
                MaxPool1d(4, ceil_mode=ceil_mode)]

    return Sequential(
        *block(in_channels, w, 80, stride=4), *block(w, w, 3), *block(w, 2 * w, 3),
        *block(2 * w, 4 * w, 3, ceil_mode=True),
        GlobalAvgPool(),
        Linear(4 * w, num_classes, rng=rng, dtype=dtype),
    )


def c3d_small(num_classes: int = 4, in_channels: int = 1, rng=None, dtype=np.float32, width: int = 16) -> Sequential:
    """A small C3D-style network (Tran et al. 2015: 3x3x3 convolutions throughout) for short clips or volumes:
    three conv blocks, pooling space first and time later, global average pooling, a linear classifier.
    Input (N, C, T, H, W)."""
    rng = _generator(rng)
    w = width
    return Sequential(
        Conv3d(in_channels, w, 3, padding=1, rng=rng, dtype=dtype), ReLU(), MaxPool3d((1, 2, 2)),
        Conv3d(w, 2 * w, 3, padding=1, rng=rng, dtype=dtype), ReLU(), MaxPool3d(2),
        Conv3d(2 * w, 4 * w, 3, padding=1, rng=rng, dtype=dtype), ReLU(),
        GlobalAvgPool(),
        Linear(4 * w, num_classes, rng=rng, dtype=dtype),
    )


MODELS = {"lenet5": lenet5, "alexnet": alexnet, "nin": nin, "m5": m5, "c3d_small": c3d_small}
#: the input each model was designed for, without the batch axis
INPUT_SHAPES = {"lenet5": (1, 28, 28), "alexnet": (3, 227, 227), "nin": (3, 32, 32), "m5": (1, 8000),
                "c3d_small": (1, 8, 16, 16)}


def summary(model: Module, input_shape: tuple, file=None) -> str:
    """A table of every layer's output shape and parameter count for an input of ``input_shape`` (without the
    batch axis), computed from the window arithmetic alone. Returns the text; prints it when ``file`` is given."""
    shape = (1,) + tuple(input_shape)
    layers = list(model.named_layers()) if isinstance(model, Sequential) else [("", model)]
    rows = [("layer", "output shape", "parameters"), ("input", str(shape[1:]), "")]
    for name, layer in layers:
        shape = layer.output_shape(shape)
        rows.append((f"{name} {type(layer).__name__}".strip(), str(shape[1:]), f"{layer.num_parameters():,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    lines.append(f"total parameters: {model.num_parameters():,}")
    text = "\n".join(lines)
    if file is not None:
        print(text, file=file)
    return text
