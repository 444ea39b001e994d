r"""The numpy reference of the MLP kernels: the specification every backend is tested against.

Plain, non-mutating functions written straight from the formulas, in the arrays' dtype. A dense
layer maps a batch of rows :math:`X \in \mathbb{R}^{B \times K}` to

.. math::
    Z = X W + \mathbf{1} b^\top, \qquad A = \sigma(Z), \qquad
    W \in \mathbb{R}^{K \times N},\; b \in \mathbb{R}^N

with ``W`` stored ``(fan_in, fan_out)``, the transpose of ``torch.nn.Linear.weight``, so the forward
pass is ``X @ W`` and every kernel loop runs along contiguous rows. Given the gradient
:math:`\bar A = \partial L / \partial A` of the layer's output,

.. math::
    \bar Z = \bar A \odot \sigma'(Z), \qquad \bar W = X^\top \bar Z, \qquad
    \bar b = \textstyle\sum_i \bar Z_{i,:}, \qquad \bar X = \bar Z W^\top.

The kernel family ``mlp`` (``fastopt.backends.<backend>_mlp``; same names and argument order on
every backend, arrays first, C-contiguous, one float dtype; the kernels trust their inputs, which
:mod:`fastopt.nn.mlp` validates) computes these in place::

    dense_forward(x, w, b, out, pre, activation)
        out = act(x @ w + b); pre = x @ w + b when NEEDS_PRE[activation] (else pre is empty)
    dense_backward(x, w, out, pre, dout, dw, db, dx, activation)
        dout <- dout * act'(.)  (dout is overwritten with dZ); dw = x^T dZ; db = column sums of dZ;
        dx = dZ @ w^T, skipped when dx is empty (the first layer)
    softmax_xent(logits, labels, dlogits, stats, scale)
        dlogits = scale * (softmax(logits) - onehot(labels));
        stats[0] = sum over rows of the cross-entropy, stats[1] = rows whose argmax is not the label
    mse(out, target, dout, stats, scale)
        dout = scale * 2 * (out - target); stats[0] = sum of squared errors,
        stats[1] = rows whose argmax differs from the target's
    sum_squares(x, stats)      stats[0] = sum of x^2 (x 1-D)
    scale(x, s)                x *= s (x 1-D)

``activation`` is an index into :data:`ACTIVATIONS`; ``labels`` are int64; ``stats`` is a float64
array of length 2; ``scale`` and ``s`` are scalars of the arrays' dtype. The derivative of relu,
tanh and sigmoid is taken from ``out`` (``out > 0``, ``1 - out^2``, ``out (1 - out)``); gelu's
needs ``pre``.

The ``cpu`` and ``c`` backends also run a whole epoch of minibatch training in one call (what
:func:`fastopt.train` does per step, with no Python between the steps)::

    train_epoch(X, labels, targets, order, batch_size, layout, codes, loss, params, grads,
                optimizer, states, scalars, max_norm, skip_nonfinite, squares=False)
        -> (losses, wrongs, norms[, squares]), one entry per step run

For each batch of ``batch_size`` rows of ``X`` in the order ``order`` (the last may be smaller):
gather; forward; the loss ``LOSSES[loss]`` against ``labels`` (int64, cross-entropy) or ``targets``
(rows of the dtype, MSE; the unused one is empty), whose mean is ``losses[step]`` (the sum times
``1.0 / rows``, or ``1.0 / (rows * classes)``); backward; the gradient norm (``sum_squares``), and
``grads *= max_norm / (norm + 1e-6)`` when ``max_norm > 0`` and the norm exceeds it; then one step
of the optimizer kernel ``EPOCH_OPTIMIZERS[optimizer]`` of the backend's optimizer family over the
whole vector, with ``grad_scale`` 1, its state arrays ``states`` (``fastopt.optim.algorithms``
order, ``None`` where unused) and the step's row of ``scalars`` (steps x k, the dtype): the kernel's
scalars as ``Algorithm.scalars`` gives them, flags as 0 or 1. With ``skip_nonfinite``, a step whose
norm is not finite updates nothing and ends the call (the caller recomputes the scalars of the
following steps, whose step count is one lower). ``layout`` is int64, one row per layer: weight
offset, fan_in, fan_out, bias offset into ``params``/``grads``; ``codes`` the layer activations.
With ``squares``, also each step's mean over its ``B`` rows of the squared per-example gradient
norm, :math:`\sum_{\text{layers}} \frac1B \sum_i (\lVert x_i\rVert^2 + 1) \lVert B
\delta_i\rVert^2` in float64 (``x`` the layer's input, ``delta`` its ``dZ`` after backward; what
:func:`fastopt.dynamics.noise.squares_after_backward` gives, summed over layers and averaged).
"""

import math

import numpy as np

from fastopt.optim.algorithms import ALGORITHMS

#: Activation names; a kernel receives the index.
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "gelu")
IDENTITY, RELU, TANH, SIGMOID, GELU = range(len(ACTIVATIONS))
#: Whether backward needs the pre-activation ``Z`` (else ``A`` suffices).
NEEDS_PRE = tuple(name == "gelu" for name in ACTIVATIONS)

LOSSES = ("cross_entropy", "mse")
CROSS_ENTROPY, MSE = range(len(LOSSES))

#: The optimizer kernels (``Algorithm.kernel``) a compiled epoch runs; it receives the index:
#: every elementwise kernel of the algorithm table in its order, then the segmented one (LAMB),
#: the order of C's table too (``fastopt_mlp_epoch_optimizers``). Every optimizer class maps to
#: one (Adam and AdamW share ``adam``).
EPOCH_OPTIMIZERS = tuple(dict.fromkeys(
    [a.kernel for a in ALGORITHMS.values() if not a.segmented]
    + [a.kernel for a in ALGORITHMS.values() if a.segmented]))

_erf = np.vectorize(math.erf, otypes=[np.float64])


def activation(z, name):
    r"""The activation applied elementwise.

    .. math::
        \mathrm{relu}(z) = \max(z, 0), \quad \tanh z, \quad
        \mathrm{sigmoid}(z) = \frac{1}{1 + e^{-z}}, \quad
        \mathrm{gelu}(z) = z\,\Phi(z) = \tfrac{z}{2}\left(1 + \mathrm{erf}(z/\sqrt2)\right)

    gelu is the exact (erf) form, PyTorch's default.
    """
    if name == "identity":
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return np.exp(-np.logaddexp(0, -z))  # 1/(1+e^-z) without overflow warnings
    if name == "gelu":
        return (0.5 * z * (1 + _erf(z / math.sqrt(2)))).astype(z.dtype)
    raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {name!r}")


def activation_grad(z, name):
    r"""The derivative :math:`\sigma'(z)` elementwise.

    .. math::
        \mathrm{relu}' = [z > 0], \quad \tanh' = 1 - \tanh^2 z, \quad
        \mathrm{sigmoid}' = s(1 - s), \quad
        \mathrm{gelu}'(z) = \Phi(z) + z\,\varphi(z), \;
        \varphi(z) = e^{-z^2/2} / \sqrt{2\pi}
    """
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = activation(z, "sigmoid")
        return s * (1 - s)
    if name == "gelu":
        cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
        pdf = np.exp(-0.5 * z.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)
        return (cdf + z * pdf).astype(z.dtype)
    raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {name!r}")


def dense_forward(x, w, b, activation_name):
    """``(A, Z)``: the layer's output :math:`A = \\sigma(XW + b)` and pre-activation ``Z``."""
    z = x @ w + b
    return activation(z, activation_name), z


def dense_backward(x, w, pre, dout, activation_name):
    """``(dW, db, dX)`` of a dense layer from the gradient ``dout`` of its output."""
    dz = dout * activation_grad(pre, activation_name)
    return x.T @ dz, dz.sum(axis=0), dz @ w.T


def softmax_cross_entropy(logits, labels):
    r"""``(loss, wrong, dlogits)``: mean softmax cross-entropy over the batch, the number of rows
    whose argmax is not the label (the 0-1 error count), and the gradient of the mean loss.

    .. math::
        \ell_i = \log\textstyle\sum_c e^{z_{ic}} - z_{i y_i}
               = m_i + \log\sum_c e^{z_{ic} - m_i} - z_{i y_i}, \quad m_i = \max_c z_{ic}

        \partial L / \partial z_{ic} = (\mathrm{softmax}(z_i)_c - [c = y_i]) / B

    Subtracting the row maximum keeps every exponent :math:`\le 0`, so large logits neither
    overflow nor lose the loss.
    """
    batch = logits.shape[0]
    rows = np.arange(batch)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss_rows = np.log(total[:, 0]) - shifted[rows, labels]
    dlogits = exp / total
    dlogits[rows, labels] -= 1
    wrong = int(np.count_nonzero(logits.argmax(axis=1) != labels))
    return float(loss_rows.astype(np.float64).mean()), wrong, dlogits / logits.dtype.type(batch)


def mse(out, target):
    r"""``(loss, wrong, dout)``: mean squared error over all ``B x C`` elements (``torch``'s
    ``MSELoss`` mean), the rows whose argmax differs from the target's (meaningful for one-hot
    targets), and the gradient.

    .. math::
        L = \frac{1}{BC} \sum_{i,c} (o_{ic} - t_{ic})^2, \qquad
        \partial L / \partial o = \frac{2}{BC} (o - t)
    """
    diff = out - target
    wrong = int(np.count_nonzero(out.argmax(axis=1) != target.argmax(axis=1)))
    return float((diff.astype(np.float64) ** 2).mean()), wrong, 2 * diff / out.dtype.type(out.size)


def one_hot(labels, classes, dtype):
    """Rows of the identity: the MSE targets of integer labels."""
    out = np.zeros((len(labels), classes), dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


def forward(weights, biases, x, activation_name):
    """The network's output: hidden layers with the activation, a linear output layer."""
    a = x
    for layer, (w, b) in enumerate(zip(weights, biases)):
        last = layer == len(weights) - 1
        a, _ = dense_forward(a, w, b, "identity" if last else activation_name)
    return a


def loss_and_grad(weights, biases, x, y, activation_name, loss="cross_entropy"):
    """``(loss, wrong, dweights, dbiases)`` of the network on the batch ``(x, y)``.

    ``y`` holds integer labels (both losses; MSE uses their one-hot rows) or, for MSE, float targets
    of the output's shape.
    """
    inputs, pres = [], []
    a = x
    for layer, (w, b) in enumerate(zip(weights, biases)):
        name = "identity" if layer == len(weights) - 1 else activation_name
        inputs.append(a)
        a, z = dense_forward(a, w, b, name)
        pres.append(z)
    if loss == "cross_entropy":
        value, wrong, grad = softmax_cross_entropy(a, y)
    elif loss == "mse":
        target = y if y.ndim == 2 else one_hot(y, a.shape[1], a.dtype)
        value, wrong, grad = mse(a, target)
    else:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    dweights, dbiases = [None] * len(weights), [None] * len(weights)
    for layer in reversed(range(len(weights))):
        name = "identity" if layer == len(weights) - 1 else activation_name
        dweights[layer], dbiases[layer], grad = dense_backward(
            inputs[layer], weights[layer], pres[layer], grad, name)
    return value, wrong, dweights, dbiases
