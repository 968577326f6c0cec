"""Fully-connected kernels for CUDA: y = x W^T + b and its gradients as tiled products in shared memory
(numconv.kernels.cuda.gemm), and the bias gradient that convolution shares, one block per channel with a tree
reduction. The launchers have the CPU kernels' signatures and semantics."""
from numba import cuda

from numconv.kernels.cuda import gemm
from numconv.kernels.cuda.support import FLOAT64, launch, launch_flat, reduce_threads, specialise, tree_sum

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "linear_forward", "linear_grad_input", "linear_grad_weight", "bias_grad", "bias_add",
]


def linear_forward(x, weight, bias, out):
    """out[n, o] = bias[o] + sum_i x[n, i] * weight[o, i]. x (N, I); weight (O, I); bias (O,); out (N, O)."""
    batch, features = x.shape
    outputs = weight.shape[0]
    geo = gemm.dense_geometry((features, 1), (1, features), (outputs, 1), has_bias=True)
    gemm.product(gemm.DENSE, x.reshape(-1), weight.reshape(-1), out.reshape(-1), bias, geo, rows=batch,
                 cols=outputs, depth=features, groups=1, a_along_k=True, b_along_k=True)


def linear_grad_input(grad_output, weight, grad_input):
    """grad_input[n, i] = sum_o grad_output[n, o] * weight[o, i]. grad_output (N, O); weight (O, I);
    grad_input (N, I)."""
    batch, outputs = grad_output.shape
    features = weight.shape[1]
    flat = grad_input.reshape(-1)
    geo = gemm.dense_geometry((outputs, 1), (features, 1), (features, 1), has_bias=False)
    gemm.product(gemm.DENSE, grad_output.reshape(-1), weight.reshape(-1), flat, flat, geo, rows=batch,
                 cols=features, depth=outputs, groups=1, a_along_k=True, b_along_k=False)


def linear_grad_weight(grad_output, x, grad_weight):
    """grad_weight[o, i] = sum_n grad_output[n, o] * x[n, i]. grad_output (N, O); x (N, I); grad_weight (O, I)."""
    batch, outputs = grad_output.shape
    features = x.shape[1]
    flat = grad_weight.reshape(-1)
    geo = gemm.dense_geometry((1, outputs), (features, 1), (features, 1), has_bias=False)
    gemm.product(gemm.DENSE, grad_output.reshape(-1), x.reshape(-1), flat, flat, geo, rows=outputs,
                 cols=features, depth=batch, groups=1, a_along_k=False, b_along_k=False)


@specialise
def _bias_grad_kernel(threads):
    @cuda.jit(cache=True)
    def bias_grad(grad_output, grad_bias):
        partial = cuda.shared.array(threads, FLOAT64)
        c = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        channels, size = grad_output.shape[1], grad_output.shape[2]
        acc = 0.0
        for e in range(tid, grad_output.shape[0] * size, threads):
            n = e // size
            acc += grad_output[n, c, e - n * size]
        partial[tid] = acc
        cuda.syncthreads()
        tree_sum(partial, tid, threads)
        if tid == 0 and c < channels:
            grad_bias[c] = partial[0]

    return bias_grad


def bias_grad(grad_output, grad_bias):
    """grad_bias[c] = sum over n and s of grad_output[n, c, s]: the bias gradient of linear (S = 1) and of
    convolution (S = flattened output positions). grad_output (N, C, S); grad_bias (C,)."""
    batch, channels, size = grad_output.shape
    threads = reduce_threads(batch * size)
    launch(_bias_grad_kernel(threads), channels, threads, grad_output, grad_bias)


@cuda.jit(cache=True)
def _bias_add(out, bias):
    e = cuda.grid(1)
    channels, size = out.shape[1], out.shape[2]
    if e < out.shape[0] * channels * size:
        n = e // (channels * size)
        rest = e - n * channels * size
        c = rest // size
        out[n, c, rest - c * size] += bias[c]


def bias_add(out, bias):
    """out[n, c, s] += bias[c]: the bias of a transposed convolution, whose other terms the convolution's input
    gradient kernel writes. out (N, C, S); bias (C,). The adjoint of :func:`bias_grad`."""
    launch_flat(_bias_add, out.size, out, bias)
