"""Softmax cross-entropy for CUDA, fused, with class weights, ignored rows (negative targets) and label smoothing
(as numconv.kernels.cpu.loss). One block per row: the threads stride over the classes, then shared-memory trees find
the row's maximum and sum the exponentials, the class weights and the weighted gaps (in float64)."""
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
    def cross_entropy(grad_losses, logits, target, class_weight, smoothing, out):
        # out is (N, K) for the backward pass and the (N, 1) losses for the forward pass
        tops = cuda.shared.array(threads, value)
        sums = cuda.shared.array(threads, FLOAT64)
        weight_sums = cuda.shared.array(threads, FLOAT64)
        gaps = cuda.shared.array(threads, FLOAT64)
        n = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        classes = logits.shape[1]
        label = target[n]
        if label < 0:  # an ignored row: the whole block leaves together
            if backward:
                for j in range(tid, classes, threads):
                    out[n, j] = 0.0
            elif tid == 0:
                out[n, 0] = 0.0
            return
        top = logits[n, 0]
        for j in range(tid, classes, threads):
            if logits[n, j] > top:
                top = logits[n, j]
        tops[tid] = top
        cuda.syncthreads()
        tree_max(tops, tid, threads)
        top = tops[0]
        acc = 0.0
        weight_acc = 0.0
        gap_acc = 0.0
        for j in range(tid, classes, threads):
            acc += math.exp(logits[n, j] - top)
            weight_acc += class_weight[j]
            gap_acc += class_weight[j] * (top - logits[n, j])
        sums[tid] = acc
        weight_sums[tid] = weight_acc
        gaps[tid] = gap_acc
        cuda.syncthreads()
        tree_sum(sums, tid, threads)
        tree_sum(weight_sums, tid, threads)
        tree_sum(gaps, tid, threads)
        total, weight_sum = sums[0], weight_sums[0]
        if backward:
            for j in range(tid, classes, threads):
                out[n, j] = cross_entropy_gradient(grad_losses[n], logits[n, j], top, total, j == label,
                                                   class_weight[label], class_weight[j], weight_sum, smoothing,
                                                   classes)
        elif tid == 0:
            out[n, 0] = cross_entropy_loss(total, top, logits[n, label], class_weight[label], weight_sum, gaps[0],
                                           smoothing, classes)

    return cross_entropy


def cross_entropy_forward(logits, target, class_weight, smoothing, losses):
    """losses[n], the row's loss (numconv.kernels.cpu.loss). logits (N, K); target (N,) int64, negative for an
    ignored row; class_weight (K,); smoothing in [0, 1]; losses (N,)."""
    threads = reduce_threads(logits.shape[1])
    kernel = _kernel(threads, logits.dtype.name, False)
    launch(kernel, logits.shape[0], threads, losses, logits, target, class_weight, float(smoothing),
           losses.reshape(-1, 1))


def cross_entropy_backward(grad_losses, logits, target, class_weight, smoothing, grad_logits):
    """grad_logits[n] = grad_losses[n] * d loss[n] / d logits[n]; zero for an ignored row.
    grad_losses (N,); logits (N, K); target (N,) int64; class_weight (K,); grad_logits (N, K)."""
    threads = reduce_threads(logits.shape[1])
    kernel = _kernel(threads, logits.dtype.name, True)
    launch(kernel, logits.shape[0], threads, grad_losses, logits, target, class_weight, float(smoothing),
           grad_logits)
