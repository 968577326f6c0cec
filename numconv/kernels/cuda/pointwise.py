"""Element-wise kernels for CUDA on flat (size,) device arrays: ReLU, dropout, addition, gradient accumulation and
the SGD step; and the copies of a concatenation along channels.

One thread per element, consecutive threads on consecutive elements (coalesced); the launchers have the CPU
kernels' signatures and semantics.
"""
from numba import cuda

from numconv.kernels.scalar import add, masked_scale, relu, relu_gradient, sgd_parameter, sgd_velocity
from numconv.kernels.cuda.support import launch_flat

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "relu_forward", "relu_backward", "dropout_forward", "dropout_backward", "accumulate", "sgd_update",
    "add_forward", "concat_channels_forward", "concat_channels_backward",
]


@cuda.jit(cache=True)
def _relu_forward(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = relu(x[i])


def relu_forward(x, out):
    """out = max(x, 0); NaN stays NaN. x and out (size,): one array (in place) or two that do not overlap."""
    launch_flat(_relu_forward, x.shape[0], x, out)


@cuda.jit(cache=True)
def _relu_backward(grad_output, x, grad_input):
    i = cuda.grid(1)
    if i < x.shape[0]:
        grad_input[i] = relu_gradient(grad_output[i], x[i])


def relu_backward(grad_output, x, grad_input):
    """grad_input = grad_output except where x <= 0 (where it is 0; a NaN x passes the gradient). All (size,)."""
    launch_flat(_relu_backward, x.shape[0], grad_output, x, grad_input)


@cuda.jit(cache=True)
def _masked_scale(values, mask, scale, out):
    i = cuda.grid(1)
    if i < values.shape[0]:
        out[i] = masked_scale(values[i], mask[i], scale)


def dropout_forward(x, mask, scale, out):
    """out = x * mask * scale (inverted dropout; a dropped NaN stays NaN). x and out (size,); mask (size,) of 0/1
    (bool or uint8); scale a float."""
    launch_flat(_masked_scale, x.shape[0], x, mask, float(scale), out)


def dropout_backward(grad_output, mask, scale, grad_input):
    """grad_input = grad_output * mask * scale. All (size,)."""
    launch_flat(_masked_scale, grad_output.shape[0], grad_output, mask, float(scale), grad_input)


@cuda.jit(cache=True)
def _accumulate(total, term):
    i = cuda.grid(1)
    if i < total.shape[0]:
        total[i] += term[i]


def accumulate(total, term):
    """total += term, in place on flat (size,) device arrays (device arrays have no ``+=``)."""
    launch_flat(_accumulate, total.shape[0], total, term)


@cuda.jit(cache=True)
def _sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov, lr_in_velocity):
    i = cuda.grid(1)
    if i < param.shape[0]:
        velocity[i] = sgd_velocity(param[i], grad[i], velocity[i], lr, momentum, weight_decay, lr_in_velocity)
        param[i] = sgd_parameter(param[i], grad[i], velocity[i], lr, momentum, weight_decay, nesterov,
                                 lr_in_velocity)


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov, lr_in_velocity):
    """One SGD step with momentum and weight decay, in place on flat (size,) device arrays; the CPU kernel's two
    forms (PyTorch's, and AlexNet's with the learning rate inside the velocity)."""
    launch_flat(_sgd_update, param.shape[0], param, grad, velocity, float(lr), float(momentum),
                 float(weight_decay), bool(nesterov), bool(lr_in_velocity))


@cuda.jit(cache=True)
def _add_forward(a, b, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = add(a[i], b[i])


def add_forward(a, b, out):
    """out = a + b (a residual connection). All (size,)."""
    launch_flat(_add_forward, a.shape[0], a, b, out)


@cuda.jit(cache=True)
def _copy_channels(source, target, channels, source_offset, target_offset):
    e = cuda.grid(1)
    batch, size = source.shape[0], source.shape[2]
    if e < batch * channels * size:
        n = e // (channels * size)
        rest = e - n * channels * size
        c = rest // size
        s = rest - c * size
        target[n, target_offset + c, s] = source[n, source_offset + c, s]


def concat_channels_forward(part, out, offset):
    """out[n, offset + c, s] = part[n, c, s]: one input of a concatenation along channels put in its place.
    part (N, C, S); out (N, C_total, S); offset its first channel."""
    launch_flat(_copy_channels, part.size, part, out, part.shape[1], 0, offset)


def concat_channels_backward(grad_output, grad_part, offset):
    """grad_part[n, c, s] = grad_output[n, offset + c, s]: the gradient of one input of a concatenation.
    grad_output (N, C_total, S); grad_part (N, C, S)."""
    launch_flat(_copy_channels, grad_part.size, grad_output, grad_part, grad_part.shape[1], offset, 0)
