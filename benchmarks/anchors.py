"""The anchor suite: the layers and models that numconv's CPU speed is measured on, and how to run each of them
with numconv and with PyTorch. Shared by the asv benchmarks (``bench_*.py``) and by ``compare.py``.

float32, PyTorch's layouts (NCL, NCHW, NCDHW). A convolution case lists (dims, N, C, spatial, out channels, kernel,
stride, padding, groups); a pooling case (dims, N, C, spatial, kernel, stride), always with indices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import numconv.functional as F


@dataclass(frozen=True)
class ConvCase:
    name: str
    dims: int
    batch: int
    channels: int
    size: tuple
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def out_size(self) -> tuple:
        return tuple((s + 2 * self.padding - self.kernel) // self.stride + 1 for s in self.size)

    @property
    def flops(self) -> float:
        """Multiply-adds of the forward pass, times two."""
        return (2.0 * self.batch * self.out_channels * math.prod(self.out_size)
                * (self.channels // self.groups) * self.kernel ** self.dims)

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.channels) + self.size

    @property
    def w_shape(self) -> tuple:
        return (self.out_channels, self.channels // self.groups) + (self.kernel,) * self.dims

    @property
    def y_shape(self) -> tuple:
        return (self.batch, self.out_channels) + self.out_size

    @property
    def large(self) -> bool:
        """At least 1 GFLOP forward and 32 input channels per group: where a fraction of the machine's peak is a
        fair target (a first layer's 1 to 3 channels make too short a sum per output to fill the vector units)."""
        return self.flops >= 1e9 and self.channels // self.groups >= 32


@dataclass(frozen=True)
class PoolCase:
    name: str
    dims: int
    batch: int
    channels: int
    size: tuple
    kernel: int
    stride: int

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.channels) + self.size

    @property
    def out_size(self) -> tuple:
        return tuple((s - self.kernel) // self.stride + 1 for s in self.size)

    @property
    def bytes(self) -> float:
        """Bytes read and written: the float32 input, the float32 output and its int64 indices."""
        outputs = self.batch * self.channels * math.prod(self.out_size)
        return 4.0 * math.prod(self.x_shape) + 12.0 * outputs


CONV_CASES = (
    ConvCase("lenet_c1", 2, 64, 1, (28, 28), 6, 5, 1, 2),
    ConvCase("lenet_c2", 2, 64, 6, (14, 14), 16, 5, 1, 0),
    ConvCase("alex_c1", 2, 16, 3, (227, 227), 96, 11, 4, 0),
    ConvCase("alex_c2_g2", 2, 16, 96, (27, 27), 256, 5, 1, 2, 2),
    ConvCase("alex_c3", 2, 16, 256, (13, 13), 384, 3, 1, 1),
    ConvCase("alex_c4_g2", 2, 16, 384, (13, 13), 384, 3, 1, 1, 2),
    ConvCase("nin_1x1", 2, 32, 192, (32, 32), 160, 1),
    ConvCase("audio_c1", 1, 32, 1, (16000,), 128, 80, 4),
    ConvCase("audio_c2", 1, 32, 128, (1000,), 128, 3, 1, 1),
    ConvCase("video_c1", 3, 4, 3, (16, 112, 112), 64, 3, 1, 1),
    ConvCase("video_c2", 3, 4, 64, (8, 56, 56), 128, 3, 1, 1),
)

POOL_CASES = (
    PoolCase("pool_alex", 2, 16, 96, (55, 55), 3, 2),
    PoolCase("pool_lenet", 2, 64, 6, (28, 28), 2, 2),
    PoolCase("pool_audio", 1, 32, 128, (3981,), 4, 4),
    PoolCase("pool_video", 3, 4, 64, (16, 112, 112), 2, 2),
)

CONV_BY_NAME = {case.name: case for case in CONV_CASES}
POOL_BY_NAME = {case.name: case for case in POOL_CASES}

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_BACKWARD = {1: F.conv1d_backward, 2: F.conv2d_backward, 3: F.conv3d_backward}
_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def conv_arrays(case: ConvCase, seed: int = 0):
    """(x, weight, bias, grad_output) in float32, the same numbers for both engines."""
    rng = np.random.default_rng(seed)
    fan_in = case.w_shape[1] * case.kernel ** case.dims
    x = rng.standard_normal(case.x_shape, dtype=np.float32)
    w = (rng.standard_normal(case.w_shape, dtype=np.float32) / np.float32(math.sqrt(fan_in)))
    b = rng.standard_normal(case.out_channels, dtype=np.float32)
    g = rng.standard_normal(case.y_shape, dtype=np.float32)
    return x, w, b, g


def pool_array(case: PoolCase, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(case.x_shape, dtype=np.float32)


# --- numconv ------------------------------------------------------------------------------------------------------


def _numconv_on(device: str, arrays):
    """``arrays`` where numconv computes on ``device`` ('cpu' or 'cuda')."""
    from numconv import backend

    return [backend.to_backend(array, device) for array in arrays]


def numconv_conv(case: ConvCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    """A no-argument callable running the case's forward (and, with ``backward``, both gradients and the bias's)."""
    x, w, b, g = _numconv_on(device, conv_arrays(case, seed))
    options = dict(stride=case.stride, padding=case.padding, groups=case.groups)
    conv, conv_backward = _CONV[case.dims], _CONV_BACKWARD[case.dims]
    if not backward:
        return lambda: conv(x, w, b, **options)

    def step():
        conv(x, w, b, **options)
        return conv_backward(g, x, w, b, **options)

    return step


def numconv_pool(case: PoolCase, seed: int = 0, device: str = "cpu"):
    (x,) = _numconv_on(device, [pool_array(case, seed)])
    pool = _POOL[case.dims]
    return lambda: pool(x, case.kernel, case.stride, return_indices=True)


def numconv_lenet_step(batch: int = 64, seed: int = 0):
    """One LeNet-5 training step (forward, cross-entropy, backward, SGD with momentum) on random 28x28 images."""
    from numconv import models
    from numconv.optim import SGD

    rng = np.random.default_rng(seed)
    model = models.lenet5(rng=seed)
    optimizer = SGD(model, lr=0.01, momentum=0.9)
    images = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch)

    def step():
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        model.zero_grad()
        grad_logits, _ = F.cross_entropy_backward(1.0, logits, labels)
        model.backward(grad_logits, needs_input_grad=False)  # the images need no gradient, as in PyTorch
        optimizer.step()
        return loss

    return step


def numconv_alexnet_forward(batch: int = 16, seed: int = 0):
    """AlexNet's forward pass in evaluation mode on random 227x227 images."""
    from numconv import models

    model = models.alexnet(rng=seed)
    model.eval()
    images = np.random.default_rng(seed).standard_normal((batch, 3, 227, 227), dtype=np.float32)
    return lambda: model(images)


# --- PyTorch ------------------------------------------------------------------------------------------------------


def torch_conv(case: ConvCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    """The same as :func:`numconv_conv` in PyTorch; with ``backward`` the input, weight and bias all get gradients,
    as numconv computes them."""
    import torch

    x, w, b, g = (torch.from_numpy(a).to(device) for a in conv_arrays(case, seed))
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[case.dims]
    options = dict(stride=case.stride, padding=case.padding, groups=case.groups)
    if not backward:
        def forward():
            with torch.no_grad():
                return conv(x, w, b, **options)

        return forward
    leaves = [a.clone().requires_grad_(True) for a in (x, w, b)]

    def step():
        for leaf in leaves:
            leaf.grad = None
        conv(*leaves, **options).backward(g)
        return [leaf.grad for leaf in leaves]

    return step


def torch_pool(case: PoolCase, seed: int = 0, device: str = "cpu"):
    import torch

    x = torch.from_numpy(pool_array(case, seed)).to(device)
    pool = {1: torch.nn.functional.max_pool1d, 2: torch.nn.functional.max_pool2d,
            3: torch.nn.functional.max_pool3d}[case.dims]

    def forward():
        with torch.no_grad():
            return pool(x, case.kernel, case.stride, return_indices=True)

    return forward


def torch_lenet_step(batch: int = 64, seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.standard_normal((batch, 1, 28, 28), dtype=np.float32))
    labels = torch.from_numpy(rng.integers(0, 10, size=batch))

    def step():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step


def torch_alexnet(seed: int = 0):
    """numconv's AlexNet (models.alexnet) in PyTorch, with the response normalisation over all 96 or 256 maps."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    )


def torch_alexnet_forward(batch: int = 16, seed: int = 0):
    import torch

    model = torch_alexnet(seed).eval()
    images = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, 3, 227, 227), dtype=np.float32))

    def forward():
        with torch.no_grad():
            return model(images)

    return forward
