"""Softmax cross-entropy for CUDA, fused: loss = logsumexp(z) - z[target], after subtracting the row's maximum (as
numconv.kernels.cpu.loss). One block per row: the threads stride over the classes, then a shared-memory tree finds
the row's maximum and a second tree sums the exponentials (in float64)."""
import math

from numba import cuda

from numconv.kernels.scalar import cross_entropy_gradient, cross_entropy_loss

from numconv.kernels.cuda.support import FLOAT64, launch, numba_type, reduce_threads, specialise, tree_max, tree_sum

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "cross_entropy_forward", "cross_entropy_backward",
]


@specialise
def _kernel(threads, dtype_name, backward):
    value = numba_type(dtype_name)

    @cuda.jit(cache=True)
    def cross_entropy(grad_losses, logits, target, out):
        # out is (N, K) for the backward pass and the (N, 1) losses for the forward pass
        tops = cuda.shared.array(threads, value)
        sums = cuda.shared.array(threads, FLOAT64)
        n = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        classes = logits.shape[1]
        top = logits[n, 0]
        for j in range(tid, classes, threads):
            if logits[n, j] > top:
                top = logits[n, j]
        tops[tid] = top
        cuda.syncthreads()
        tree_max(tops, tid, threads)
        top = tops[0]
        acc = 0.0
        for j in range(tid, classes, threads):
            acc += math.exp(logits[n, j] - top)
        sums[tid] = acc
        cuda.syncthreads()
        tree_sum(sums, tid, threads)
        total = sums[0]
        label = target[n]
        if backward:
            for j in range(tid, classes, threads):
                out[n, j] = cross_entropy_gradient(grad_losses[n], logits[n, j], top, total, j == label)
        elif tid == 0:
            out[n, 0] = cross_entropy_loss(total, top, logits[n, label])

    return cross_entropy


def cross_entropy_forward(logits, target, losses):
    """losses[n] = -log softmax(logits[n])[target[n]]. logits (N, K); target (N,) int64; losses (N,)."""
    threads = reduce_threads(logits.shape[1])
    kernel = _kernel(threads, logits.dtype.name, False)
    launch(kernel, logits.shape[0], threads, losses, logits, target, losses.reshape(-1, 1))


def cross_entropy_backward(grad_losses, logits, target, grad_logits):
    """grad_logits[n] = grad_losses[n] * (softmax(logits[n]) - onehot(target[n])).
    grad_losses (N,); logits (N, K); target (N,) int64; grad_logits (N, K)."""
    threads = reduce_threads(logits.shape[1])
    kernel = _kernel(threads, logits.dtype.name, True)
    launch(kernel, logits.shape[0], threads, grad_losses, logits, target, grad_logits)
