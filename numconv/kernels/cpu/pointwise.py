"""Element-wise kernels for the CPU on flat (size,) views: ReLU, dropout, gradient accumulation and the SGD step.
Arrays are C-contiguous."""
from numba import njit, prange

from numconv.kernels.scalar import masked_scale, relu_gradient, sgd_parameter, sgd_velocity

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "relu_forward", "relu_backward", "dropout_forward", "dropout_backward", "accumulate", "sgd_update",
]


@njit(parallel=True, cache=True)
def relu_forward(x, out):
    """out = max(x, 0); NaN stays NaN. x and out (size,)."""
    for i in prange(x.shape[0]):
        value = x[i]
        out[i] = value if not value <= 0.0 else 0.0


@njit(parallel=True, cache=True)
def relu_backward(grad_output, x, grad_input):
    """grad_input = grad_output except where x <= 0 (where it is 0; a NaN x passes the gradient). All (size,)."""
    for i in prange(x.shape[0]):
        grad_input[i] = relu_gradient(grad_output[i], x[i])


@njit(parallel=True, cache=True)
def dropout_forward(x, mask, scale, out):
    """out = x * mask * scale (inverted dropout: kept units are scaled by 1 / (1 - p) in training; a dropped NaN
    stays NaN). x and out (size,); mask (size,) of 0/1; scale a float."""
    for i in prange(x.shape[0]):
        out[i] = masked_scale(x[i], mask[i], scale)


@njit(parallel=True, cache=True)
def dropout_backward(grad_output, mask, scale, grad_input):
    """grad_input = grad_output * mask * scale. All (size,); mask of 0/1."""
    for i in prange(grad_output.shape[0]):
        grad_input[i] = masked_scale(grad_output[i], mask[i], scale)


@njit(parallel=True, cache=True)
def accumulate(total, term):
    """total += term, in place (a layer adding one backward's parameter gradient to its running sum). Both (size,)."""
    for i in prange(total.shape[0]):
        total[i] += term[i]


@njit(parallel=True, cache=True)
def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov, lr_in_velocity):
    """One SGD step with momentum and weight decay (``sgd_velocity`` then ``sgd_parameter``: PyTorch's form, or
    AlexNet's with the learning rate inside the velocity), in place on flat (size,) arrays."""
    for i in prange(param.shape[0]):
        velocity[i] = sgd_velocity(param[i], grad[i], velocity[i], lr, momentum, weight_decay, lr_in_velocity)
        param[i] = sgd_parameter(param[i], grad[i], velocity[i], lr, momentum, weight_decay, nesterov,
                                 lr_in_velocity)
