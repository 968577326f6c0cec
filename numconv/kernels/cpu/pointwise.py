"""Element-wise kernels for the CPU on flat (size,) views: ReLU, dropout, addition, gradient accumulation and the
SGD step; and the copies of a concatenation along channels. Arrays are C-contiguous. The kernels that write a new
array element by element do it through ``map_part``, so that large outputs stream past the caches
(``streaming.py``)."""
from numba import prange

from numconv.kernels.cpu.parallel import parallel_kernel
from numconv.kernels.cpu.streaming import element_parts, map_part
from numconv.kernels.scalar import add, masked_scale, relu, relu_gradient, sgd_parameter, sgd_velocity

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "relu_forward", "relu_backward", "dropout_forward", "dropout_backward", "accumulate", "sgd_update",
    "add_forward", "concat_channels_forward", "concat_channels_backward",
]


@parallel_kernel(cache=True, streams=True)
def relu_forward(x, out):
    """out = max(x, 0); NaN stays NaN. x and out (size,): one array (in place) or two that do not overlap."""
    if x.ctypes.data == out.ctypes.data:
        # LLVM vectorises a loop only behind a check that its arrays do not overlap, which one array passed twice
        # fails: the loop then ran one element at a time, 4x slower (196,608 elements: 61 against 17 us)
        for i in prange(x.shape[0]):
            x[i] = relu(x[i])
    else:
        for part in prange(element_parts(out.shape[0])):
            map_part(relu, out, part, x)


@parallel_kernel(cache=True, streams=True)
def relu_backward(grad_output, x, grad_input):
    """grad_input = grad_output except where x <= 0 (where it is 0; a NaN x passes the gradient). All (size,)."""
    for part in prange(element_parts(grad_input.shape[0])):
        map_part(relu_gradient, grad_input, part, grad_output, x)


@parallel_kernel(cache=True, streams=True)
def dropout_forward(x, mask, scale, out):
    """out = x * mask * scale (inverted dropout: kept units are scaled by 1 / (1 - p) in training; a dropped NaN
    stays NaN). x and out (size,); mask (size,) of 0/1; scale a float."""
    for part in prange(element_parts(out.shape[0])):
        map_part(masked_scale, out, part, x, mask, scale)


@parallel_kernel(cache=True, streams=True)
def dropout_backward(grad_output, mask, scale, grad_input):
    """grad_input = grad_output * mask * scale. All (size,); mask of 0/1."""
    for part in prange(element_parts(grad_input.shape[0])):
        map_part(masked_scale, grad_input, part, grad_output, mask, scale)


@parallel_kernel(cache=True)
def accumulate(total, term):
    """total += term, in place (a layer adding one backward's parameter gradient to its running sum). Both (size,)."""
    for i in prange(total.shape[0]):
        total[i] += term[i]


@parallel_kernel(cache=True)
def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov, lr_in_velocity):
    """One SGD step with momentum and weight decay (``sgd_velocity`` then ``sgd_parameter``: PyTorch's form, or
    AlexNet's with the learning rate inside the velocity), in place on flat (size,) arrays."""
    for i in prange(param.shape[0]):
        velocity[i] = sgd_velocity(param[i], grad[i], velocity[i], lr, momentum, weight_decay, lr_in_velocity)
        param[i] = sgd_parameter(param[i], grad[i], velocity[i], lr, momentum, weight_decay, nesterov,
                                 lr_in_velocity)


@parallel_kernel(cache=True, streams=True)
def add_forward(a, b, out):
    """out = a + b (a residual connection). All (size,)."""
    for part in prange(element_parts(out.shape[0])):
        map_part(add, out, part, a, b)


@parallel_kernel(cache=True)
def concat_channels_forward(part, out, offset):
    """out[n, offset + c, s] = part[n, c, s]: one input of a concatenation along channels put in its place.
    part (N, C, S); out (N, C_total, S); offset its first channel."""
    batch, channels, size = part.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane - n * channels
        source, target = part[n, c], out[n, offset + c]
        for s in range(size):
            target[s] = source[s]


@parallel_kernel(cache=True)
def concat_channels_backward(grad_output, grad_part, offset):
    """grad_part[n, c, s] = grad_output[n, offset + c, s]: the gradient of one input of a concatenation.
    grad_output (N, C_total, S); grad_part (N, C, S)."""
    batch, channels, size = grad_part.shape
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane - n * channels
        source, target = grad_output[n, offset + c], grad_part[n, c]
        for s in range(size):
            target[s] = source[s]
