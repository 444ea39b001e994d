r"""Gradient noise: per-example gradient norms in closed form, the gradient noise scale, and the
variance of the minibatch gradient against batch size.

For a dense layer :math:`z_i = x_i W + b`, the gradient of example :math:`i`'s loss is the outer
product :math:`x_i^\top \delta_i` and :math:`\delta_i`, where :math:`\delta_i = \partial
\ell_i / \partial z_i`; so

.. math::
    \lVert \nabla_W \ell_i \rVert^2 = \lVert x_i\rVert^2 \lVert\delta_i\rVert^2, \qquad
    \lVert \nabla_b \ell_i \rVert^2 = \lVert\delta_i\rVert^2

from the activations and deltas that one forward and backward pass of the batch already keeps
(the model's own kernels, any backend): no per-example gradient is formed.

The simple noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training")
is :math:`B_{\mathrm{simple}} = \operatorname{tr}(\Sigma) / \lVert G\rVert^2`, the batch size at
which the minibatch gradient's noise is as large as the gradient. From per-example gradients
:math:`g_i` of a batch of :math:`B` and their mean :math:`G_B`, the unbiased estimates (their
appendix A.1 with :math:`B_{\mathrm{small}} = 1`, :math:`B_{\mathrm{big}} = B`) are

.. math::
    \widehat{\operatorname{tr}\Sigma} = \frac{B}{B-1}\Big(\overline{\lVert g_i\rVert^2}
        - \lVert G_B\rVert^2\Big), \qquad
    \widehat{\lVert G\rVert^2} = \frac{B\lVert G_B\rVert^2 - \overline{\lVert g_i\rVert^2}}{B-1}

each averaged over batches before their ratio is taken (the ratio of averages, as the paper
does, is less biased than the average of ratios).
"""

from dataclasses import dataclass

import numpy as np

from fastopt._core import memory as _memory
from fastopt.dynamics.network import check_model

__all__ = ["per_example_grad_norms", "noise_scale", "NoiseScale", "minibatch_variance"]


def _layer_squares(model, X, y):
    """``(loss, squares (B, layers), mean gradient)`` of one checked batch on the model's side."""
    loss, _ = model._loss_and_grad(X, y)
    return loss, squares_after_backward(model, X), \
        _memory.to_host(model.grads).astype(np.float64)


def squares_after_backward(model, X):
    """``(B, layers)``: each row's squared gradient norm per layer, read from the activations
    and deltas that the model's last forward and backward pass on the batch ``X`` (checked, on
    the model's side) left in its buffers."""
    batch = X.shape[0]
    outs, _, deltas = model._reserve(batch)
    squares = np.empty((batch, model.n_layers))
    x = _memory.to_host(X).astype(np.float64)
    for layer in range(model.n_layers):
        # The kernels leave dL/dZ of the mean loss: example i's own is batch times its row.
        d = _memory.to_host(deltas[layer]).astype(np.float64) * batch
        a = x if layer == 0 else _memory.to_host(outs[layer - 1]).astype(np.float64)
        squares[:, layer] = (np.einsum("ij,ij->i", a, a) + 1.0) * np.einsum("ij,ij->i", d, d)
    return squares


def per_example_grad_norms(model, X, y, per_layer=False):
    """The norms :math:`\\lVert\\nabla_\\theta \\ell_i\\rVert` of each row's loss gradient (one
    forward and backward pass of the batch; fills ``model.grads`` with the mean gradient).
    With ``per_layer``, the ``(B, layers)`` norms of each layer's weights and bias together."""
    check_model(model)
    X, y = model._check(X, y)
    _, squares, _ = _layer_squares(model, X, y)
    return np.sqrt(squares) if per_layer else np.sqrt(squares.sum(axis=1))


@dataclass
class NoiseScale:
    """The simple noise scale ``b_simple`` with its standard error ``stderr`` (delta method over
    the batches), and the estimates it is made of: ``trace_sigma`` (per-example gradient
    covariance trace) and ``grad_sq`` (squared norm of the true gradient), averaged over
    ``batches`` batches of ``batch_size`` rows."""

    b_simple: float
    stderr: float
    trace_sigma: float
    grad_sq: float
    batches: int
    batch_size: int


def unbiased_estimates(mean_square, grad_sq, batch):
    """``(tr Sigma, |G|^2)`` estimated from one batch of ``batch`` rows: ``mean_square`` the
    mean of the rows' squared gradient norms, ``grad_sq`` the squared norm of their mean
    (module docstring)."""
    return (batch / (batch - 1) * (mean_square - grad_sq),
            (batch * grad_sq - mean_square) / (batch - 1))


def record_training_step(model, X, grad_norm, into, step):
    """Appends the estimates of a training step to ``into`` (``history.noise`` of
    :func:`fastopt.train` with ``track_noise_every``): ``step``, ``trace_sigma``, ``grad_sq``,
    from the step's own forward and backward pass (``X`` its batch on the model's side, the
    gradient's norm as the step measured it). Batches of one row are skipped."""
    batch = X.shape[0]
    if batch < 2:
        return
    trace, grad_sq = unbiased_estimates(squares_after_backward(model, X).sum(axis=1).mean(),
                                        grad_norm * grad_norm, batch)
    into["step"].append(step)
    into["trace_sigma"].append(float(trace))
    into["grad_sq"].append(float(grad_sq))


def record_steps(squares, norms, sizes, first_step, every, into):
    """Appends to ``into`` (``history.noise``) the estimates of each ``every``-th of the steps
    ``first_step + 1, ...`` of a compiled epoch, from their rows' mean squared gradient norms
    ``squares``, gradient norms ``norms`` and batch sizes ``sizes`` (the epoch kernel's outputs;
    :func:`record_training_step` takes the same from one step). Batches of one row are skipped."""
    steps = first_step + 1 + np.arange(len(squares))
    sizes = np.asarray(sizes)
    keep = (steps % every == 0) & (sizes >= 2)
    trace, grad_sq = unbiased_estimates(np.asarray(squares)[keep],
                                        np.asarray(norms)[keep] ** 2, sizes[keep])
    into["step"].extend(steps[keep].tolist())
    into["trace_sigma"].extend(trace.tolist())
    into["grad_sq"].extend(grad_sq.tolist())


def b_simple(history, window=None):
    """The noise scale from ``history.noise``: the mean ``trace_sigma`` over the mean
    ``grad_sq`` of the last ``window`` records (all by default)."""
    noise = history.noise if hasattr(history, "noise") else history
    if not noise["step"]:
        raise ValueError("history: no noise records (train with track_noise_every=k)")
    window = len(noise["step"]) if window is None else int(window)
    return float(np.mean(noise["trace_sigma"][-window:]) / np.mean(noise["grad_sq"][-window:]))


def noise_scale(model, X, y, batch_size=None, batches=8, seed=0):
    """:math:`B_{\\mathrm{simple}}` of ``model`` on ``(X, y)`` from ``batches`` random batches of
    ``batch_size`` rows (default: one batch of every row), without replacement within a batch.
    Leaves ``model.grads`` holding the last batch's gradient."""
    check_model(model)
    Xc, yc = model._check(X, y)
    n = Xc.shape[0]
    batch_size = n if batch_size is None else int(batch_size)
    if not 2 <= batch_size <= n:
        raise ValueError(f"batch_size: expected 2..{n} rows (an estimate needs two), got "
                         f"{batch_size}")
    if batch_size == n:
        batches = 1
    if int(batches) < 1:
        raise ValueError(f"batches: expected an integer >= 1, got {batches!r}")
    rng = np.random.default_rng(seed)
    host_X, host_y = _memory.to_host(Xc), _memory.to_host(yc)
    S, G = [], []
    for _ in range(int(batches)):
        rows = np.sort(rng.choice(n, batch_size, replace=False)) if batch_size < n else \
            np.arange(n)
        xb, yb = model._check(host_X[rows], host_y[rows])
        _, squares, mean = _layer_squares(model, xb, yb)
        # the mean of |g_i|^2 and |G_B|^2
        trace, grad_sq = unbiased_estimates(squares.sum(axis=1).mean(), float(mean @ mean),
                                            batch_size)
        S.append(trace)
        G.append(grad_sq)
    S, G = np.array(S), np.array(G)
    s, g = S.mean(), G.mean()
    value = s / g
    if len(S) > 1:
        cov = np.cov(S, G) / len(S)
        relative = cov[0, 0] / s ** 2 + cov[1, 1] / g ** 2 - 2 * cov[0, 1] / (s * g)
        stderr = float(abs(value) * np.sqrt(max(relative, 0.0)))
    else:
        stderr = float("nan")
    return NoiseScale(float(value), stderr, float(s), float(g), len(S), batch_size)


def minibatch_variance(model, X, y, batch_sizes, samples=32, seed=0):
    r"""The variance :math:`\mathbb{E}\lVert G_B - G\rVert^2` of the minibatch gradient about the
    full-batch one, for each batch size: measured over ``samples`` random batches (without
    replacement), and predicted from the per-example gradients as
    :math:`\operatorname{tr}(\Sigma_n)\,(n - B) / (B (n-1))`, :math:`\Sigma_n` their covariance
    over the :math:`n` rows (sampling without replacement from a finite set). Returns
    ``(batch_sizes, measured, predicted)`` arrays: larger batches estimate the gradient better,
    as :math:`1/B`."""
    check_model(model)
    Xc, yc = model._check(X, y)
    n = Xc.shape[0]
    sizes = np.asarray(batch_sizes, dtype=np.int64).ravel()
    if sizes.size == 0 or sizes.min() < 1 or sizes.max() > n:
        raise ValueError(f"batch_sizes: expected sizes in 1..{n}, got {batch_sizes!r}")
    _, squares, full = _layer_squares(model, Xc, yc)
    trace_n = squares.sum(axis=1).mean() - float(full @ full)  # (1/n) sum |g_i - G|^2
    predicted = trace_n * (n - sizes) / (sizes * max(n - 1, 1))
    rng = np.random.default_rng(seed)
    host_X, host_y = _memory.to_host(Xc), _memory.to_host(yc)
    measured = np.empty(sizes.size)
    for k, B in enumerate(sizes):
        total = 0.0
        for _ in range(samples):
            rows = rng.choice(n, int(B), replace=False)
            xb, yb = model._check(host_X[rows], host_y[rows])
            model._loss_and_grad(xb, yb)
            diff = _memory.to_host(model.grads).astype(np.float64) - full
            total += float(diff @ diff)
        measured[k] = total / samples
    return sizes, measured, predicted
