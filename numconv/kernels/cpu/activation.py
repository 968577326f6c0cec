"""Activations and the element-wise product for the CPU: LeakyReLU, the logistic sigmoid, tanh, the product of two
arrays, and the softmax of each row. Element-wise kernels take flat (size,) views; the softmax takes (rows, K) and
normalises each row in float64 after subtracting its maximum. Arrays are C-contiguous. The element-wise kernels
write through ``map_part``, so that large outputs stream past the caches (``streaming.py``)."""
import math

from numba import prange

from numconv.kernels.cpu.parallel import parallel_kernel
from numconv.kernels.cpu.streaming import element_parts, map_part
from numconv.kernels.scalar import (
    leaky_relu, leaky_relu_gradient, product, sigmoid, sigmoid_gradient, tanh, tanh_gradient,
)

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "leaky_relu_forward", "leaky_relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward",
    "tanh_backward", "multiply_forward", "softmax_forward", "softmax_backward",
]


@parallel_kernel(cache=True, streams=True)
def leaky_relu_forward(x, slope, out):
    """out = x where x > 0, else slope * x. x and out (size,)."""
    for part in prange(element_parts(out.shape[0])):
        map_part(leaky_relu, out, part, x, slope)


@parallel_kernel(cache=True, streams=True)
def leaky_relu_backward(grad_output, x, slope, grad_input):
    """grad_input = grad_output where x > 0, else slope * grad_output. All (size,)."""
    for part in prange(element_parts(grad_input.shape[0])):
        map_part(leaky_relu_gradient, grad_input, part, grad_output, x, slope)


@parallel_kernel(cache=True, streams=True)
def sigmoid_forward(x, out):
    """out = 1 / (1 + exp(-x)). x and out (size,)."""
    for part in prange(element_parts(out.shape[0])):
        map_part(sigmoid, out, part, x)


@parallel_kernel(cache=True, streams=True)
def sigmoid_backward(grad_output, y, grad_input):
    """grad_input = grad_output * y * (1 - y), from the forward's output y. All (size,)."""
    for part in prange(element_parts(grad_input.shape[0])):
        map_part(sigmoid_gradient, grad_input, part, grad_output, y)


@parallel_kernel(cache=True, streams=True)
def tanh_forward(x, out):
    """out = tanh(x). x and out (size,)."""
    for part in prange(element_parts(out.shape[0])):
        map_part(tanh, out, part, x)


@parallel_kernel(cache=True, streams=True)
def tanh_backward(grad_output, y, grad_input):
    """grad_input = grad_output * (1 - y^2), from the forward's output y. All (size,)."""
    for part in prange(element_parts(grad_input.shape[0])):
        map_part(tanh_gradient, grad_input, part, grad_output, y)


@parallel_kernel(cache=True, streams=True)
def multiply_forward(a, b, out):
    """out = a * b, element-wise (also each factor's gradient: grad_output times the other). All (size,)."""
    for part in prange(element_parts(out.shape[0])):
        map_part(product, out, part, a, b)


@parallel_kernel(cache=True)
def softmax_forward(x, out):
    """out[r] = exp(x[r] - max x[r]) / sum of the same over the row. x and out (rows, K)."""
    for r in prange(x.shape[0]):
        top = x[r, 0]
        for j in range(1, x.shape[1]):
            if x[r, j] > top:
                top = x[r, j]
        total = 0.0
        for j in range(x.shape[1]):
            total += math.exp(x[r, j] - top)
        for j in range(x.shape[1]):
            out[r, j] = math.exp(x[r, j] - top) / total


@parallel_kernel(cache=True)
def softmax_backward(grad_output, y, grad_input):
    """grad_input[r] = y[r] * (grad_output[r] - sum_j grad_output[r, j] * y[r, j]), from the forward's output y.
    All (rows, K)."""
    for r in prange(y.shape[0]):
        dot = 0.0
        for j in range(y.shape[1]):
            dot += grad_output[r, j] * y[r, j]
        for j in range(y.shape[1]):
            grad_input[r, j] = y[r, j] * (grad_output[r, j] - dot)
