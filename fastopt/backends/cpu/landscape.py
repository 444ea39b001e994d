"""The ``cpu`` backend's landscape kernels: the loss of a one-hidden-layer MLP at many parameter
points of an affine family, fused (no activations stored), one thread per point
(:func:`affine_two_layer`); the loss with the output layer scaled by each of many ``c``, from the
outputs at ``c = 1`` (:func:`scaled_losses`).

For point ``k`` with coordinates ``w_k = (1, a_k1, ..., a_km)`` and each row ``i``:

.. math::
    z = \\textstyle\\sum_q w_{kq} P_q[i] + b^{(1)}_k, \\quad h = \\mathrm{act}(z), \\quad
    o_c = h \\cdot W^{(2)}_k[:, c] + b^{(2)}_{kc}

where ``P_0 = X W_c`` and ``P_q = X D_q`` are the first layer's products, computed once by the
caller; then the row's softmax cross-entropy (or squared error) and whether its argmax is wrong.
Sums over rows accumulate in float64; the rest runs in the data's dtype, as the MLP kernels do.
"""

import math

import numba
import numpy as np
from numba import prange

from fastopt.backends.cpu.mlp import _activate_row
from fastopt.nn.reference import CROSS_ENTROPY

__all__ = ["affine_two_layer", "scaled_losses"]


@numba.njit(inline="always", error_model="numpy")
def _row_loss(o, i, labels, targets, loss):
    """``(loss, wrong)`` of the outputs ``o`` of row ``i``: its softmax cross-entropy against
    ``labels[i]`` (or squared error against ``targets[i]``), and whether its argmax (the first of
    equal ones) is not the label (the targets' argmax)"""
    C = o.size
    best = 0
    for c in range(1, C):
        if o[c] > o[best]:
            best = c
    if loss == CROSS_ENTROPY:
        m = o[best]
        e = 0.0
        for c in range(C):
            e += math.exp(o[c] - m)
        y = labels[i]
        return math.log(e) - (o[y] - m), best != y
    total = 0.0
    target_best = 0
    for c in range(C):
        d = o[c] - targets[i, c]
        total += d * d
        if targets[i, c] > targets[i, target_best]:
            target_best = c
    return total, best != target_best


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy",
            fastmath={"contract", "reassoc"})
def affine_two_layer(parts, weights, b1, w2t, b2, labels, targets, activation, loss, out_loss,
                     out_wrong):
    """Fills ``out_loss[k]`` (sum over rows of the loss) and ``out_wrong[k]`` (rows whose argmax
    output is not the label) for each point ``k``.

    ``parts`` ``(m + 1, n, h)``; ``weights`` ``(K, m + 1)``; ``b1`` ``(K, h)``; ``w2t``
    ``(K, C, h)`` (the output weights transposed, rows contiguous); ``b2`` ``(K, C)``;
    ``labels`` ``(n,)`` (cross-entropy) or ``targets`` ``(n, C)`` (MSE); ``activation``, ``loss``:
    the codes of :mod:`fastopt.nn.reference`."""
    M, n, h = parts.shape
    K = weights.shape[0]
    C = w2t.shape[1]
    for k in prange(K):
        z = np.empty(h, parts.dtype)
        pre = np.empty(h, parts.dtype)
        o = np.empty(C, parts.dtype)
        total = 0.0
        wrong = 0
        for i in range(n):
            for j in range(h):  # the first layer: a combination of the shared products
                z[j] = b1[k, j] + weights[k, 0] * parts[0, i, j]
            for q in range(1, M):
                wq = weights[k, q]
                for j in range(h):
                    z[j] += wq * parts[q, i, j]
            _activate_row(z, pre, activation)
            for c in range(C):  # the output layer: C dot products of length h
                acc = b2[k, c]
                for j in range(h):
                    acc += z[j] * w2t[k, c, j]
                o[c] = acc
            row_loss, row_wrong = _row_loss(o, i, labels, targets, loss)
            total += row_loss
            wrong += row_wrong
        out_loss[k] = total
        out_wrong[k] = wrong


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def scaled_losses(Z, cs, labels, targets, loss, out_loss, out_wrong):
    """For each scale ``cs[k]``: ``out_loss[k]``, the sum over rows of the loss of the outputs
    ``cs[k] Z`` (``Z`` ``(n, C)``, the outputs at ``c = 1``), and ``out_wrong[k]``, the rows
    whose argmax output is not the label (labels for cross-entropy, ``targets`` for MSE)."""
    n, C = Z.shape
    for k in prange(cs.size):
        c = cs[k]
        o = np.empty(C, Z.dtype)
        total = 0.0
        wrong = 0
        for i in range(n):
            for j in range(C):
                o[j] = c * Z[i, j]
            row_loss, row_wrong = _row_loss(o, i, labels, targets, loss)
            total += row_loss
            wrong += row_wrong
        out_loss[k] = total
        out_wrong[k] = wrong
