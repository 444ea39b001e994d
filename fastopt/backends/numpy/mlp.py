"""The ``numpy`` backend of the MLP family: the formulas of :mod:`fastopt.nn.reference`, written
into the kernel contract's output arrays (matrix products through numpy's BLAS)."""

import numpy as np

from fastopt.nn import reference as ref


def dense_forward(x, w, b, out, pre, activation):
    """In place: ``out = act(x @ w + b)``; ``pre = x @ w + b`` when the activation needs it."""
    name = ref.ACTIVATIONS[activation]
    a, z = ref.dense_forward(x, w, b, name)
    out[...] = a
    if ref.NEEDS_PRE[activation]:
        pre[...] = z


def _derivative(out, pre, activation):
    """``act'`` from what the forward pass kept: ``out`` (relu, tanh, sigmoid) or ``pre`` (gelu)."""
    if activation == ref.IDENTITY:
        return None
    if activation == ref.RELU:
        return out > 0
    if activation == ref.TANH:
        return 1 - out * out
    if activation == ref.SIGMOID:
        return out * (1 - out)
    return ref.activation_grad(pre, "gelu")


def dense_backward(x, w, out, pre, dout, dw, db, dx, activation):
    """In place: ``dout *= act'``, then ``dw``, ``db`` and (unless empty) ``dx``."""
    d = _derivative(out, pre, activation)
    if d is not None:
        dout *= d
    np.matmul(x.T, dout, out=dw)
    db[...] = dout.sum(axis=0)
    if dx.size:
        np.matmul(dout, w.T, out=dx)


def softmax_xent(logits, labels, dlogits, stats, scale):
    """In place: ``dlogits = scale * (softmax - onehot)``; ``stats = (sum of losses, wrong)``."""
    rows = np.arange(logits.shape[0])
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    probs = exp / total
    probs[rows, labels] -= 1
    dlogits[...] = scale * probs
    stats[0] = float(np.sum((np.log(total[:, 0]) - shifted[rows, labels]).astype(np.float64)))
    stats[1] = np.count_nonzero(logits.argmax(axis=1) != labels)


def mse(out, target, dout, stats, scale):
    """In place: ``dout = scale * 2 (out - target)``; ``stats = (sum of squares, wrong)``."""
    diff = out - target
    dout[...] = (2 * scale) * diff
    stats[0] = float(np.sum(diff.astype(np.float64) ** 2))
    stats[1] = np.count_nonzero(out.argmax(axis=1) != target.argmax(axis=1))


def sum_squares(x, stats):
    """``stats[0] = sum(x^2)``, accumulated in float64."""
    x64 = x.astype(np.float64, copy=False)
    stats[0] = float(np.dot(x64, x64))


def scale(x, s):
    """``x *= s`` in place."""
    x *= s
