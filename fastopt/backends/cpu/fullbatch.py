r"""The ``cpu`` backend's full-batch gradient descent of several MLPs of one architecture (a
width's seeds in :func:`fastopt.wide.sweep`), all their steps in one compiled call.

For each model ``s`` and step ``t`` on all ``n`` rows of ``X`` with MSE targets ``T`` ``(n, C)``:

.. math::
    L_t = \tfrac{1}{nC}\lVert f_\theta(X) - T\rVert^2, \qquad
    g_l \leftarrow g_l \cdot s_l \ (s_l \ne 1), \qquad
    g \leftarrow g \cdot (-\eta_s), \qquad \theta \leftarrow \theta + g

``s_l`` the per-layer gradient scale of the weights and of the biases (the parameterization's),
``eta_s`` the model's learning rate: the operations of :meth:`fastopt.MLP.loss_and_grad`, the
``scale`` kernel and an addition, in the same order, so each model ends with the bits of that
per-step loop on the ``cpu`` backend. The forward, loss and backward are the compiled epoch's
(:func:`fastopt.backends.cpu.mlp._train_epoch`): the models run in parallel (``prange``), each
with the serial layer kernels; one model runs its layers on the parallel kernels.
"""

import functools

import numba
import numpy as np
from numba import prange

from fastopt.backends.cpu.mlp import (_EPOCH_OPTIONS, GELU, _layer_backward, _layer_forward,
                                      _mse, _pre_view, _scale)

__all__ = ["gradient_descent"]


@numba.njit(**_EPOCH_OPTIONS)
def _descend(X, T, layout, codes, params, grads, outs, deltas, pres, scratch, stats, scales, lr,
             losses, parallel_layers):
    """``losses.size - 1`` steps of one model (``params``, ``grads``: its flat vectors);
    ``losses[t]`` the loss before step ``t``, the last one after the last step."""
    n = X.shape[0]
    layers = layout.shape[0]
    classes = layout[layers - 1, 2]
    scale = params.dtype.type(1.0 / (n * classes))
    for t in range(losses.size):
        x = X
        offset = 0
        for layer in range(layers):  # forward
            w_at, fan_in, fan_out, b_at = layout[layer]
            w = params[w_at:w_at + fan_in * fan_out].reshape((fan_in, fan_out))
            out = outs[offset:offset + n * fan_out].reshape((n, fan_out))
            pre = _pre_view(pres, offset, n, fan_out, codes[layer])
            wt = scratch[:fan_in * fan_out].reshape((fan_out, fan_in))
            _layer_forward(parallel_layers, x, w, params[b_at:b_at + fan_out], out, pre,
                           codes[layer], wt)
            x = out
            offset += n * fan_out
        offset -= n * classes
        dlogits = deltas[offset:offset + n * classes].reshape((n, classes))
        _mse(x, T, dlogits, stats, scale)
        losses[t] = stats[0] * (1.0 / (n * classes))
        if t == losses.size - 1:  # the last as MLP.evaluate rounds it: mean times count / count
            losses[t] = losses[t] * (n * classes) / (n * classes)
            break
        for layer in range(layers - 1, -1, -1):  # backward
            w_at, fan_in, fan_out, b_at = layout[layer]
            w = params[w_at:w_at + fan_in * fan_out].reshape((fan_in, fan_out))
            out = outs[offset:offset + n * fan_out].reshape((n, fan_out))
            pre = _pre_view(pres, offset, n, fan_out, codes[layer])
            delta = deltas[offset:offset + n * fan_out].reshape((n, fan_out))
            dw = grads[w_at:w_at + fan_in * fan_out].reshape((fan_in, fan_out))
            if layer > 0:
                offset -= n * fan_in
                x = outs[offset:offset + n * fan_in].reshape((n, fan_in))
                dx = deltas[offset:offset + n * fan_in].reshape((n, fan_in))
            else:
                x = X
                dx = X[:0]
            xt = scratch[:n * fan_in].reshape((fan_in, n))
            dzt = scratch[n * fan_in:n * (fan_in + fan_out)].reshape((fan_out, n))
            _layer_backward(parallel_layers, x, w, out, pre, delta, dw,
                            grads[b_at:b_at + fan_out], dx, codes[layer], xt, dzt)
        for layer in range(layers):  # the parameterization's per-layer scales
            w_at, fan_in, fan_out, b_at = layout[layer]
            if scales[layer, 0] != 1.0:
                _scale(grads[w_at:w_at + fan_in * fan_out], scales[layer, 0])
            if scales[layer, 1] != 1.0:
                _scale(grads[b_at:b_at + fan_out], scales[layer, 1])
        _scale(grads, -lr)
        for i in range(params.size):
            params[i] += grads[i]


@functools.cache
def _entry(parallel_models):
    """Several models in parallel, each with the serial layer kernels, or one model with the
    parallel ones: a closure per choice, so each compiles only the kernels it runs."""
    if parallel_models:
        @numba.njit(parallel=True, **_EPOCH_OPTIONS)
        def models(X, T, layout, codes, params, grads, outs, deltas, pres, scratch, stats,
                   scales, lrs, losses):
            for s in prange(params.shape[0]):
                _descend(X, T, layout, codes, params[s], grads[s], outs[s], deltas[s], pres[s],
                         scratch[s], stats[s], scales, lrs[s], losses[s], False)
        return models

    @numba.njit(**_EPOCH_OPTIONS)
    def one(X, T, layout, codes, params, grads, outs, deltas, pres, scratch, stats, scales, lrs,
            losses):
        _descend(X, T, layout, codes, params[0], grads[0], outs[0], deltas[0], pres[0],
                 scratch[0], stats[0], scales, lrs[0], losses[0], True)
    return one


def gradient_descent(X, T, layout, codes, params, scales, lrs, steps):
    """Runs ``steps`` full-batch GD steps of each model, in place on ``params`` ``(S, P)`` (the
    rows: the models' flat parameter vectors, contiguous); returns the losses ``(S, steps + 1)``
    (before each step, and after the last, as :meth:`fastopt.MLP.evaluate` gives it). ``X``
    ``(n, d)`` and ``T`` ``(n, C)`` of the parameters' dtype; ``layout``, ``codes`` as
    :func:`fastopt.backends.cpu.mlp.train_epoch` takes them; ``scales`` ``(layers, 2)`` the
    weights' and biases' gradient scales (the dtype); ``lrs`` ``(S,)``."""
    models, size = params.shape
    n = X.shape[0]
    dtype = params.dtype
    widths = layout[:, 2]
    total = int(n * widths.sum())
    fan_in, fan_out = layout[:, 1], layout[:, 2]
    work = int(max((fan_in * fan_out).max(), n * (fan_in + fan_out).max()))
    outs, deltas = np.empty((models, total), dtype), np.empty((models, total), dtype)
    pres = np.empty((models, total if (codes == GELU).any() else 0), dtype)
    losses = np.empty((models, int(steps) + 1))
    _entry(models > 1)(X, T, layout, codes, params, np.empty_like(params), outs, deltas, pres,
                       np.empty((models, work), dtype), np.zeros((models, 2)),
                       np.ascontiguousarray(scales, dtype), np.asarray(lrs, dtype), losses)
    return losses
