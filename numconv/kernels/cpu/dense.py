"""Fully-connected kernels for the CPU: y = x W^T + b and its gradients, and the bias gradient that convolution
shares. Arrays are C-contiguous and already validated."""
from numba import njit, prange


@njit(parallel=True, cache=True)
def linear_forward(x, weight, bias, out):
    """out[n, o] = bias[o] + sum_i x[n, i] * weight[o, i]. x (N, I); weight (O, I); bias (O,); out (N, O)."""
    batch, in_features = x.shape
    out_features = weight.shape[0]
    for task in prange(batch * out_features):
        n = task // out_features
        o = task % out_features
        total = 0.0
        for i in range(in_features):
            total += x[n, i] * weight[o, i]
        out[n, o] = total + bias[o]


@njit(parallel=True, cache=True)
def linear_grad_input(grad_output, weight, grad_input):
    """grad_input[n, i] = sum_o grad_output[n, o] * weight[o, i]. grad_output (N, O); weight (O, I); grad_input (N, I)."""
    batch, out_features = grad_output.shape
    in_features = weight.shape[1]
    for n in prange(batch):
        grad_input[n] = 0.0
        for o in range(out_features):
            g = grad_output[n, o]
            for i in range(in_features):
                grad_input[n, i] += g * weight[o, i]


@njit(parallel=True, cache=True)
def linear_grad_weight(grad_output, x, grad_weight):
    """grad_weight[o, i] = sum_n grad_output[n, o] * x[n, i]. grad_output (N, O); x (N, I); grad_weight (O, I)."""
    batch, out_features = grad_output.shape
    in_features = x.shape[1]
    for o in prange(out_features):
        grad_weight[o] = 0.0
        for n in range(batch):
            g = grad_output[n, o]
            for i in range(in_features):
                grad_weight[o, i] += g * x[n, i]


@njit(parallel=True, cache=True)
def bias_grad(grad_output, grad_bias):
    """grad_bias[c] = sum over n and s of grad_output[n, c, s]: the bias gradient of linear (S = 1) and of
    convolution (S = flattened output positions). grad_output (N, C, S); grad_bias (C,)."""
    batch, channels, size = grad_output.shape
    for c in prange(channels):
        total = 0.0
        for n in range(batch):
            for s in range(size):
                total += grad_output[n, c, s]
        grad_bias[c] = total
