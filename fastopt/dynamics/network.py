r"""An MLP's parameters and passes in float64, for the experiments that need more than its
gradient: Hessian-vector products (:mod:`.curvature`) and Jacobians (:mod:`.wide`).

The formulas are :mod:`fastopt.nn.reference`'s (hidden layers :math:`A_l = \sigma(Z_l)`,
:math:`Z_l = A_{l-1} W_l + b_l`, a linear output layer), in float64 whatever the model's dtype.
"""

import math

import numpy as np

from fastopt.nn import reference as ref
from fastopt.nn.mlp import MLP, check_batch


def check_model(model):
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected a fastopt.MLP, got {type(model).__name__}")
    return model


def layers(model, vector=None):
    """``[(W, b), ...]`` in float64: views of ``vector`` (default a copy of the parameters) laid
    out as :attr:`fastopt.MLP.params`."""
    v = np.asarray(model.get_params() if vector is None else vector, np.float64)
    out, at = [], 0
    for fan_in, fan_out in zip(model.sizes[:-1], model.sizes[1:]):
        w = v[at:at + fan_in * fan_out].reshape(fan_in, fan_out)
        at += fan_in * fan_out
        out.append((w, v[at:at + fan_out]))
        at += fan_out
    return out


def flatten(pairs):
    """The flat vector of ``[(W, b), ...]`` (inverse of :func:`layers`)."""
    return np.concatenate([x.ravel() for pair in pairs for x in pair])


def activations(model):
    """The activation name of each layer (the last one linear)."""
    return [model.activation] * (model.n_layers - 1) + ["identity"]


def second_derivative(z, name):
    r""":math:`\sigma''(z)`: 0 for identity and relu, :math:`-2\tanh z\,(1 - \tanh^2 z)`,
    :math:`s(1-s)(1-2s)` for the sigmoid :math:`s`, :math:`\varphi(z)(2 - z^2)` for gelu."""
    if name in ("identity", "relu"):
        return np.zeros_like(z)
    if name == "tanh":
        t = np.tanh(z)
        return -2 * t * (1 - t * t)
    if name == "sigmoid":
        s = ref.activation(z, "sigmoid")
        return s * (1 - s) * (1 - 2 * s)
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (2 - z * z)


def checked_data(model, X, y):
    """``(X, y)`` checked as the model checks a batch, ``X`` in float64; MSE labels one-hot."""
    X, y = check_batch(X, y, model.sizes[0], model.sizes[-1], np.float64, model.loss_name)
    if model.loss_name == "mse" and y is not None and y.ndim == 1:
        y = ref.one_hot(y, model.sizes[-1], np.float64)
    return X, y


def forward(pairs, names, X):
    """``(inputs, pres, out)``: each layer's input, pre-activation, and the network's output."""
    inputs, pres, a = [], [], X
    for (w, b), name in zip(pairs, names):
        inputs.append(a)
        z = a @ w + b
        pres.append(z)
        a = ref.activation(z, name)
    return inputs, pres, a


def loss_gradient(loss, out, y):
    """``(mean loss, dL/d out)``: softmax cross-entropy over rows or MSE over every element."""
    if loss == "cross_entropy":
        value, _, d = ref.softmax_cross_entropy(out, y)
    else:
        value, _, d = ref.mse(out, y)
    return value, d
