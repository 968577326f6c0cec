"""Softmax cross-entropy for the CPU, fused: loss = logsumexp(z) - z[target], computed after subtracting the row's
maximum so that logits of any magnitude neither overflow nor lose the loss to cancellation."""
import math

from numba import njit, prange

from numconv.kernels.scalar import cross_entropy_gradient, cross_entropy_loss

#: the kernels of this module: what the spec registry must cover
__all__ = [
    "cross_entropy_forward", "cross_entropy_backward",
]


@njit(cache=True)
def _top_and_exp_sum(row):
    """The row's maximum and the sum of exp(logit - maximum), in float64."""
    top = row[0]
    for j in range(1, row.shape[0]):
        if row[j] > top:
            top = row[j]
    total = 0.0
    for j in range(row.shape[0]):
        total += math.exp(row[j] - top)
    return top, total


@njit(parallel=True, cache=True)
def cross_entropy_forward(logits, target, losses):
    """losses[n] = -log softmax(logits[n])[target[n]]. logits (N, K); target (N,) int64; losses (N,)."""
    for n in prange(logits.shape[0]):
        top, total = _top_and_exp_sum(logits[n])
        losses[n] = cross_entropy_loss(total, top, logits[n, target[n]])


@njit(parallel=True, cache=True)
def cross_entropy_backward(grad_losses, logits, target, grad_logits):
    """grad_logits[n] = grad_losses[n] * (softmax(logits[n]) - onehot(target[n])).
    grad_losses (N,); logits (N, K); target (N,) int64; grad_logits (N, K)."""
    for n in prange(logits.shape[0]):
        top, total = _top_and_exp_sum(logits[n])
        for j in range(logits.shape[1]):
            grad_logits[n, j] = cross_entropy_gradient(grad_losses[n], logits[n, j], top, total, j == target[n])
