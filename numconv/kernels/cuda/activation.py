"""Activations and the element-wise product for CUDA, as numconv.kernels.cpu.activation: one thread per element for
the element-wise kernels (consecutive threads on consecutive elements), one thread per row for the softmax (rows
are a batch's samples; K classes each)."""
import math

from numba import cuda

from numconv.kernels.scalar import (
    leaky_relu, leaky_relu_gradient, product, sigmoid, sigmoid_gradient, tanh, tanh_gradient,
)
from numconv.kernels.cuda.support import launch_flat

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "leaky_relu_forward", "leaky_relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward",
    "tanh_backward", "multiply_forward", "softmax_forward", "softmax_backward",
]


@cuda.jit(cache=True)
def _leaky_relu_forward(x, slope, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = leaky_relu(x[i], slope)


def leaky_relu_forward(x, slope, out):
    """out = x where x > 0, else slope * x. x and out (size,)."""
    launch_flat(_leaky_relu_forward, x.shape[0], x, float(slope), out)


@cuda.jit(cache=True)
def _leaky_relu_backward(grad_output, x, slope, grad_input):
    i = cuda.grid(1)
    if i < x.shape[0]:
        grad_input[i] = leaky_relu_gradient(grad_output[i], x[i], slope)


def leaky_relu_backward(grad_output, x, slope, grad_input):
    """grad_input = grad_output where x > 0, else slope * grad_output. All (size,)."""
    launch_flat(_leaky_relu_backward, x.shape[0], grad_output, x, float(slope), grad_input)


@cuda.jit(cache=True)
def _sigmoid_forward(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = sigmoid(x[i])


def sigmoid_forward(x, out):
    """out = 1 / (1 + exp(-x)). x and out (size,)."""
    launch_flat(_sigmoid_forward, x.shape[0], x, out)


@cuda.jit(cache=True)
def _sigmoid_backward(grad_output, y, grad_input):
    i = cuda.grid(1)
    if i < y.shape[0]:
        grad_input[i] = sigmoid_gradient(grad_output[i], y[i])


def sigmoid_backward(grad_output, y, grad_input):
    """grad_input = grad_output * y * (1 - y), from the forward's output y. All (size,)."""
    launch_flat(_sigmoid_backward, y.shape[0], grad_output, y, grad_input)


@cuda.jit(cache=True)
def _tanh_forward(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = tanh(x[i])


def tanh_forward(x, out):
    """out = tanh(x). x and out (size,)."""
    launch_flat(_tanh_forward, x.shape[0], x, out)


@cuda.jit(cache=True)
def _tanh_backward(grad_output, y, grad_input):
    i = cuda.grid(1)
    if i < y.shape[0]:
        grad_input[i] = tanh_gradient(grad_output[i], y[i])


def tanh_backward(grad_output, y, grad_input):
    """grad_input = grad_output * (1 - y^2), from the forward's output y. All (size,)."""
    launch_flat(_tanh_backward, y.shape[0], grad_output, y, grad_input)


@cuda.jit(cache=True)
def _multiply_forward(a, b, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = product(a[i], b[i])


def multiply_forward(a, b, out):
    """out = a * b, element-wise (also each factor's gradient: grad_output times the other). All (size,)."""
    launch_flat(_multiply_forward, a.shape[0], a, b, out)


@cuda.jit(cache=True)
def _softmax_forward(x, out):
    r = cuda.grid(1)
    if r < x.shape[0]:
        top = x[r, 0]
        for j in range(1, x.shape[1]):
            if x[r, j] > top:
                top = x[r, j]
        total = 0.0
        for j in range(x.shape[1]):
            total += math.exp(x[r, j] - top)
        for j in range(x.shape[1]):
            out[r, j] = math.exp(x[r, j] - top) / total


def softmax_forward(x, out):
    """out[r] = exp(x[r] - max x[r]) / sum of the same over the row. x and out (rows, K)."""
    launch_flat(_softmax_forward, x.shape[0], x, out)


@cuda.jit(cache=True)
def _softmax_backward(grad_output, y, grad_input):
    r = cuda.grid(1)
    if r < y.shape[0]:
        dot = 0.0
        for j in range(y.shape[1]):
            dot += grad_output[r, j] * y[r, j]
        for j in range(y.shape[1]):
            grad_input[r, j] = y[r, j] * (grad_output[r, j] - dot)


def softmax_backward(grad_output, y, grad_input):
    """grad_input[r] = y[r] * (grad_output[r] - sum_j grad_output[r, j] * y[r, j]), from the forward's output y.
    All (rows, K)."""
    launch_flat(_softmax_backward, y.shape[0], grad_output, y, grad_input)
