"""The anchor suite: the layers and models that numconv's CPU speed is measured on, and how to run each of them
with numconv and with PyTorch. Shared by the asv benchmarks (``bench_*.py``) and by ``compare.py``.

float32, PyTorch's layouts (NCL, NCHW, NCDHW). A convolution case lists (dims, N, C, spatial, out channels, kernel,
stride, padding, groups); a pooling case (dims, N, C, spatial, kernel, stride, kind): max-pooling with indices
(``POOL_CASES``, the original four), without indices, or average pooling (``POOL_VARIANT_CASES``). Besides: AlexNet's
local response normalisation (``LRN_CASES``), dense layers (``DENSE_CASES``) and element-wise ops
(``ELEMENTWISE_CASES``).

Each case runs in up to three engines: numconv (``numconv_*``), PyTorch (``torch_*``) and, forward only, ONNX
Runtime on a one-node ONNX model built with ``onnx.helper`` (``ort_*``: CPU, ``ort_threads()`` intra-op threads that
sleep when idle, one inter-op thread, as ``onnx_import.py`` runs it). Every factory returns a no-argument callable;
a forward callable returns the outputs (ONNX Runtime's: the list ``session.run`` returns).
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace

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


#: pooling kinds: max-pooling returning int64 indices too, max-pooling alone, average pooling
POOL_KINDS = ("max_indices", "max", "avg")


@dataclass(frozen=True)
class PoolCase:
    name: str
    dims: int
    batch: int
    channels: int
    size: tuple
    kernel: int
    stride: int
    kind: str = "max_indices"

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.channels) + self.size

    @property
    def out_size(self) -> tuple:
        return tuple((s - self.kernel) // self.stride + 1 for s in self.size)

    @property
    def y_shape(self) -> tuple:
        return (self.batch, self.channels) + self.out_size

    @property
    def bytes(self) -> float:
        """Bytes read and written: the float32 input, the float32 output and, with indices, its int64 indices."""
        outputs = math.prod(self.y_shape)
        return 4.0 * math.prod(self.x_shape) + (12.0 if self.kind == "max_indices" else 4.0) * outputs

    @property
    def backward_bytes(self) -> float:
        """Bytes the backward alone reads and writes: the float32 output gradient (with max-pooling's int64 indices)
        read, the float32 input gradient written."""
        outputs = math.prod(self.y_shape)
        return 4.0 * math.prod(self.x_shape) + (4.0 if self.kind == "avg" else 12.0) * outputs


@dataclass(frozen=True)
class LrnCase:
    """Local response normalisation across channels, PyTorch's (and ONNX's) formula."""
    name: str
    batch: int
    channels: int
    size: tuple
    n: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.channels) + self.size

    def bytes(self, backward: bool = False) -> float:
        """Bytes read and written: forward x in, y out; the backward pass adds grad_output and x in, grad_input out."""
        return 4.0 * math.prod(self.x_shape) * (5 if backward else 2)


@dataclass(frozen=True)
class DenseCase:
    """y = x W^T + b, x (batch, in_features)."""
    name: str
    batch: int
    in_features: int
    out_features: int

    @property
    def flops(self) -> float:
        """Multiply-adds of the forward pass, times two (the bias's adds not counted)."""
        return 2.0 * self.batch * self.in_features * self.out_features

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.in_features)

    @property
    def w_shape(self) -> tuple:
        return (self.out_features, self.in_features)

    @property
    def y_shape(self) -> tuple:
        return (self.batch, self.out_features)


@dataclass(frozen=True)
class ElementwiseCase:
    """``op`` 'relu' (forward, and forward+backward) or 'add' (of two tensors of ``shape``; forward only: its
    backward is the output gradient itself, no work)."""
    name: str
    op: str
    shape: tuple

    @property
    def backward(self) -> bool:
        return self.op == "relu"

    def bytes(self, backward: bool = False) -> float:
        """Bytes read and written: relu x in, y out (+ grad_output and x in, grad_input out backward); add x and y
        in, the sum out."""
        per_element = {"relu": 20 if backward else 8, "add": 12}[self.op]
        return float(per_element * math.prod(self.shape))


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

#: the same four layers pooled without indices ("_noidx") and averaged ("avgpool_")
POOL_VARIANT_CASES = (
    tuple(replace(case, name=f"{case.name}_noidx", kind="max") for case in POOL_CASES)
    + tuple(replace(case, name=case.name.replace("pool_", "avgpool_"), kind="avg") for case in POOL_CASES)
)
ALL_POOL_CASES = POOL_CASES + POOL_VARIANT_CASES
#: the cases whose backward is timed: max-pooling from its indices and average pooling (max-pooling without indices
#: has no backward of its own)
POOL_BACKWARD_CASES = tuple(case for case in ALL_POOL_CASES if case.kind != "max")

#: AlexNet's two normalisation layers (after conv1 and conv2) at batch 32
LRN_CASES = (
    LrnCase("lrn_alex1", 32, 96, (55, 55)),
    LrnCase("lrn_alex2", 32, 256, (27, 27)),
)

#: AlexNet's fc6 and fc7 at batch 32, LeNet-5's first dense layer at batch 64
DENSE_CASES = (
    DenseCase("alex_fc6", 32, 9216, 4096),
    DenseCase("alex_fc7", 32, 4096, 4096),
    DenseCase("lenet_fc1", 64, 400, 120),
)

#: on AlexNet's first activation at batch 32 (37 MB a tensor)
ELEMENTWISE_CASES = (
    ElementwiseCase("relu_alex", "relu", (32, 96, 55, 55)),
    ElementwiseCase("add_alex", "add", (32, 96, 55, 55)),
)

CONV_BY_NAME = {case.name: case for case in CONV_CASES}
POOL_BY_NAME = {case.name: case for case in ALL_POOL_CASES}
LRN_BY_NAME = {case.name: case for case in LRN_CASES}
DENSE_BY_NAME = {case.name: case for case in DENSE_CASES}
ELEMENTWISE_BY_NAME = {case.name: case for case in ELEMENTWISE_CASES}

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_BACKWARD = {1: F.conv1d_backward, 2: F.conv2d_backward, 3: F.conv3d_backward}
_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_POOL_BACKWARD = {1: F.max_pool1d_backward, 2: F.max_pool2d_backward, 3: F.max_pool3d_backward}
_AVG_POOL_BACKWARD = {1: F.avg_pool1d_backward, 2: F.avg_pool2d_backward, 3: F.avg_pool3d_backward}


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


def pool_grad_output(case: PoolCase, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).standard_normal(case.y_shape, dtype=np.float32)


def lrn_arrays(case: LrnCase, seed: int = 0):
    """(x, grad_output)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(case.x_shape, dtype=np.float32), rng.standard_normal(case.x_shape, dtype=np.float32)


def dense_arrays(case: DenseCase, seed: int = 0):
    """(x, weight, bias, grad_output), the weight scaled as PyTorch initialises it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape, dtype=np.float32)
    w = rng.standard_normal(case.w_shape, dtype=np.float32) / np.float32(math.sqrt(case.in_features))
    b = rng.standard_normal(case.out_features, dtype=np.float32)
    g = rng.standard_normal(case.y_shape, dtype=np.float32)
    return x, w, b, g


def elementwise_arrays(case: ElementwiseCase, seed: int = 0):
    """(x, y or grad_output): add's two operands, or relu's input and output gradient."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(case.shape, dtype=np.float32), rng.standard_normal(case.shape, dtype=np.float32)


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
    """The case's pooling; max-pooling with indices returns (output, indices)."""
    (x,) = _numconv_on(device, [pool_array(case, seed)])
    if case.kind == "avg":
        avg_pool = _AVG_POOL[case.dims]
        return lambda: avg_pool(x, case.kernel, case.stride)
    pool = _POOL[case.dims]
    indices = case.kind == "max_indices"
    return lambda: pool(x, case.kernel, case.stride, return_indices=indices)


def numconv_pool_backward(case: PoolCase, seed: int = 0, device: str = "cpu"):
    """The case's backward alone: max-pooling's from the forward's indices (computed once, untimed), average
    pooling's from the output gradient."""
    x, g = _numconv_on(device, [pool_array(case, seed), pool_grad_output(case, seed)])
    if case.kind == "avg":
        avg_pool_backward = _AVG_POOL_BACKWARD[case.dims]
        return lambda: avg_pool_backward(g, x, case.kernel, case.stride)
    _, indices = _POOL[case.dims](x, case.kernel, case.stride, return_indices=True)
    pool_backward = _POOL_BACKWARD[case.dims]
    return lambda: pool_backward(g, x, case.kernel, case.stride, indices=indices)


def numconv_lrn(case: LrnCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    """The forward pass (and, with ``backward``, the input's gradient after it)."""
    x, g = _numconv_on(device, lrn_arrays(case, seed))
    options = dict(size=case.n, alpha=case.alpha, beta=case.beta, k=case.k)
    if not backward:
        return lambda: F.local_response_norm(x, **options)

    def step():
        F.local_response_norm(x, **options)
        return F.local_response_norm_backward(g, x, **options)

    return step


def numconv_dense(case: DenseCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    """The forward pass (and, with ``backward``, the input's, weight's and bias's gradients after it)."""
    x, w, b, g = _numconv_on(device, dense_arrays(case, seed))
    if not backward:
        return lambda: F.linear(x, w, b)

    def step():
        F.linear(x, w, b)
        return F.linear_backward(g, x, w, b)

    return step


def numconv_elementwise(case: ElementwiseCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    """relu (and, with ``backward``, its input gradient after it) or add."""
    x, other = _numconv_on(device, elementwise_arrays(case, seed))
    if case.op == "add":
        if backward:
            raise ValueError("add's backward does no work (it returns the output gradient): nothing to time")
        return lambda: F.add(x, other)
    if not backward:
        return lambda: F.relu(x)

    def step():
        F.relu(x)
        return F.relu_backward(other, x)

    return step


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
        model.begin_gradients()  # the backward writes the gradients, as PyTorch's after zero_grad() (set to None)
        grad_logits, _ = F.cross_entropy_backward(1.0, logits, labels)
        model.backward(grad_logits, needs_input_grad=False)  # the images need no gradient, as in PyTorch
        model.end_gradients()
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

    functional = torch.nn.functional
    x = torch.from_numpy(pool_array(case, seed)).to(device)
    if case.kind == "avg":
        pool = {1: functional.avg_pool1d, 2: functional.avg_pool2d, 3: functional.avg_pool3d}[case.dims]
        options = {}
    else:
        pool = {1: functional.max_pool1d, 2: functional.max_pool2d, 3: functional.max_pool3d}[case.dims]
        options = dict(return_indices=case.kind == "max_indices")

    def forward():
        with torch.no_grad():
            return pool(x, case.kernel, case.stride, **options)

    return forward


def torch_pool_backward(case: PoolCase, seed: int = 0, device: str = "cpu"):
    """The case's backward alone in PyTorch: the gradient of a kept forward graph (max-pooling's holds its indices),
    ``torch.autograd.grad`` with the graph retained."""
    import torch

    functional = torch.nn.functional
    x = torch.from_numpy(pool_array(case, seed)).to(device).requires_grad_(True)
    g = torch.from_numpy(pool_grad_output(case, seed)).to(device)
    pool = getattr(functional, f"{'avg' if case.kind == 'avg' else 'max'}_pool{case.dims}d")
    y = pool(x, case.kernel, case.stride)
    return lambda: torch.autograd.grad(y, x, g, retain_graph=True)


def _torch_step(function, leaves, grad_output):
    """forward+backward in PyTorch: ``function(*leaves)`` then its backward from ``grad_output``, every leaf's
    gradient computed afresh (not accumulated)."""

    def step():
        for leaf in leaves:
            leaf.grad = None
        function(*leaves).backward(grad_output)
        return [leaf.grad for leaf in leaves]

    return step


def _torch_no_grad(function, *args):
    import torch

    def forward():
        with torch.no_grad():
            return function(*args)

    return forward


def torch_lrn(case: LrnCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    import torch

    x, g = (torch.from_numpy(a).to(device) for a in lrn_arrays(case, seed))

    def lrn(inputs):
        return torch.nn.functional.local_response_norm(inputs, case.n, alpha=case.alpha, beta=case.beta, k=case.k)

    if not backward:
        return _torch_no_grad(lrn, x)
    return _torch_step(lrn, [x.clone().requires_grad_(True)], g)


def torch_dense(case: DenseCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    """The same as :func:`numconv_dense` in PyTorch; with ``backward`` the input, weight and bias get gradients."""
    import torch

    x, w, b, g = (torch.from_numpy(a).to(device) for a in dense_arrays(case, seed))
    if not backward:
        return _torch_no_grad(torch.nn.functional.linear, x, w, b)
    return _torch_step(torch.nn.functional.linear, [a.clone().requires_grad_(True) for a in (x, w, b)], g)


def torch_elementwise(case: ElementwiseCase, backward: bool = False, seed: int = 0, device: str = "cpu"):
    import torch

    x, other = (torch.from_numpy(a).to(device) for a in elementwise_arrays(case, seed))
    if case.op == "add":
        if backward:
            raise ValueError("add's backward does no work (it returns the output gradient): nothing to time")
        return _torch_no_grad(torch.add, x, other)
    if not backward:
        return _torch_no_grad(torch.nn.functional.relu, x)
    return _torch_step(torch.nn.functional.relu, [x.clone().requires_grad_(True)], other)


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


# --- ONNX Runtime -------------------------------------------------------------------------------------------------

#: both packages importable: the ONNX Runtime peer can run
HAS_ORT = all(importlib.util.find_spec(package) is not None for package in ("onnx", "onnxruntime"))
#: the opset of the one-node models (what numconv's exporter writes too)
OPSET = 17
#: the largest difference allowed between numconv's and ONNX Runtime's outputs, relative to the largest output
ORT_TOLERANCE = 1e-4


def ort_threads() -> int:
    """ONNX Runtime's intra-op threads: as many as numconv's (Numba's)."""
    import numba

    return numba.get_num_threads()


def ort_session(model, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` of ``model`` (a ModelProto) on the CPU: ``threads`` intra-op threads
    (default :func:`ort_threads`) told not to spin when idle (spinning, they take the cores from the other
    engines' turns), one inter-op thread, ONNX Runtime's default graph optimisations."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = ort_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _one_node_model(op: str, inputs: dict, outputs: dict, initializers: dict = None, **attributes):
    """A model of one ``op`` node. ``inputs``/``outputs``: name -> shape (float32, except an output named
    'indices', int64); ``initializers``: name -> array, constant inputs (weights), which ONNX Runtime may prepack."""
    from onnx import TensorProto, helper, numpy_helper

    initializers = initializers or {}

    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.INT64 if name == "indices" else TensorProto.FLOAT,
                                             list(shape))

    node = helper.make_node(op, list(inputs) + list(initializers), list(outputs), **attributes)
    graph = helper.make_graph([node], f"anchor_{op.lower()}", [info(n, s) for n, s in inputs.items()],
                              [info(n, s) for n, s in outputs.items()],
                              [numpy_helper.from_array(array, name) for name, array in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="numconv-bench")
    model.ir_version = min(model.ir_version, 9)  # readable by every ONNX Runtime that runs opset 17
    return model


def _ort_runner(model, feed: dict, threads: int | None = None):
    session = ort_session(model, threads)
    return lambda: session.run(None, feed)


def ort_conv(case: ConvCase, seed: int = 0, threads: int | None = None):
    """The forward pass as one ONNX Conv node, the weight and bias constant initializers (as in a real model)."""
    x, w, b, _ = conv_arrays(case, seed)
    model = _one_node_model("Conv", {"x": case.x_shape}, {"y": case.y_shape}, {"w": w, "b": b},
                            kernel_shape=[case.kernel] * case.dims, strides=[case.stride] * case.dims,
                            pads=[case.padding] * (2 * case.dims), group=case.groups)
    return _ort_runner(model, {"x": x}, threads)


def ort_pool(case: PoolCase, seed: int = 0, threads: int | None = None):
    """MaxPool (with its Indices output for 'max_indices': flat over the whole tensor, not per plane as numconv's
    and PyTorch's) or AveragePool."""
    outputs = {"y": case.y_shape}
    if case.kind == "max_indices":
        outputs["indices"] = case.y_shape
    model = _one_node_model("AveragePool" if case.kind == "avg" else "MaxPool", {"x": case.x_shape}, outputs,
                            kernel_shape=[case.kernel] * case.dims, strides=[case.stride] * case.dims)
    return _ort_runner(model, {"x": pool_array(case, seed)}, threads)


def ort_lrn(case: LrnCase, seed: int = 0, threads: int | None = None):
    x, _ = lrn_arrays(case, seed)
    model = _one_node_model("LRN", {"x": case.x_shape}, {"y": case.x_shape}, size=case.n, alpha=case.alpha,
                            beta=case.beta, bias=case.k)
    return _ort_runner(model, {"x": x}, threads)


def ort_dense(case: DenseCase, seed: int = 0, threads: int | None = None):
    """Gemm(x, W, b) with transB=1, the weight and bias constant initializers."""
    x, w, b, _ = dense_arrays(case, seed)
    model = _one_node_model("Gemm", {"x": case.x_shape}, {"y": case.y_shape}, {"w": w, "b": b}, transB=1)
    return _ort_runner(model, {"x": x}, threads)


def ort_elementwise(case: ElementwiseCase, seed: int = 0, threads: int | None = None):
    """Relu, or Add of two inputs."""
    x, other = elementwise_arrays(case, seed)
    if case.op == "add":
        model = _one_node_model("Add", {"x": case.shape, "other": case.shape}, {"y": case.shape})
        return _ort_runner(model, {"x": x, "other": other}, threads)
    model = _one_node_model("Relu", {"x": case.shape}, {"y": case.shape})
    return _ort_runner(model, {"x": x}, threads)


def ort_alexnet_forward(batch: int = 16, seed: int = 0, threads: int | None = None):
    """numconv's AlexNet (the one :func:`numconv_alexnet_forward` runs, same seed, so the same weights) exported with
    ``numconv.onnx.to_model``, on the same images; returns the list ``session.run`` returns."""
    import numconv.onnx
    from numconv import models

    proto = numconv.onnx.to_model(models.alexnet(rng=seed), (1, 3, 227, 227))
    images = np.random.default_rng(seed).standard_normal((batch, 3, 227, 227), dtype=np.float32)
    return _ort_runner(proto, {"input": images}, threads)


def _nin_session_feed(batch: int, seed: int):
    """numconv's NiN (seed ``seed``) exported with ``numconv.onnx.to_model``, and the feed of ``batch`` random 32x32
    images for it."""
    import numconv.onnx
    from numconv import models

    proto = numconv.onnx.to_model(models.nin(rng=seed), (1, 3, 32, 32))
    images = np.random.default_rng(seed).standard_normal((batch, 3, 32, 32), dtype=np.float32)
    return proto, {"input": images}


def numconv_nin_session(batch: int = 1, seed: int = 0):
    """NiN's inference through numconv's ONNX session (``numconv.onnx.load``) on the exported model: at batch 1 the
    case where each call's fixed costs weigh most. Returns the list ``session.run`` returns."""
    import numconv.onnx

    proto, feed = _nin_session_feed(batch, seed)
    session = numconv.onnx.load(proto)
    return lambda: session.run(None, feed)


def ort_nin_session(batch: int = 1, seed: int = 0, threads: int | None = None):
    """The same exported NiN and images as :func:`numconv_nin_session`, in ONNX Runtime."""
    proto, feed = _nin_session_feed(batch, seed)
    return _ort_runner(proto, feed, threads)


def relative_error(ours, theirs) -> float:
    """The largest absolute difference over the largest absolute value of ``theirs`` (0 for two empty arrays)."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    scale = np.abs(theirs).max(initial=0.0)
    difference = np.abs(ours - theirs).max(initial=0.0)
    return float(difference / scale) if scale else float(difference)


def ort_mismatch(case, ours, theirs) -> float:
    """How far ONNX Runtime's outputs ``theirs`` (a list) are from numconv's forward result ``ours``: the relative
    error of the first output; for max-pooling with indices, infinity when the indices differ (ONNX Runtime's
    count over the whole tensor, so they are compared modulo one plane)."""
    if isinstance(case, PoolCase) and case.kind == "max_indices":
        values, indices = ours
        plane = math.prod(case.size)
        if not np.array_equal(np.asarray(theirs[1]) % plane, np.asarray(indices)):
            return math.inf
        return relative_error(values, theirs[0])
    return relative_error(ours, theirs[0])
