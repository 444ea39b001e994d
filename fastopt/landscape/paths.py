r"""The training path seen from the straight line: the α/β projection of the iterates, the loss
with the output layer scaled, and Safran & Shamir's monotone path."""

import math

import numpy as np

from fastopt.nn import reference as ref
from fastopt.nn.mlp import MLP
from fastopt.landscape.evaluate import Evaluator, logits_along, losses_of_logits
from fastopt.landscape.models import check_grid, check_model, check_vector, params_of
from fastopt.landscape.results import MonotonePathResult, ProjectionResult, ScaledResult
from fastopt.landscape.surfaces import data_meta

__all__ = ["project", "scaled_last_layer", "monotone_path"]


def project(theta_init, theta_final, thetas, steps=None, chunk=256):
    r"""The α/β projection of recorded iterates onto the line from ``theta_init`` to
    ``theta_final``:

    .. math::
        u = \frac{\theta_{final} - \theta_{init}}{\lVert\theta_{final} - \theta_{init}\rVert},
        \quad \alpha_t = (\theta_t - \theta_{init}) \cdot u, \quad
        \beta_t = \lVert \theta_t - \theta_{init} - \alpha_t u \rVert

    α is the progress along the line (``α = ‖θ_final − θ_init‖`` at the end), β the distance
    from it. ``thetas``: the iterates ``(T, P)``, read in chunks of ``chunk`` rows (a memory
    map from ``fastopt.train(..., record_to=path)`` works without loading it); ``steps``: the
    step of each iterate (default ``0 .. T-1``). A :class:`ProjectionResult`.
    """
    a = check_vector(None, theta_init, "theta_init")
    b = check_vector(None, theta_final, "theta_final")
    if a.shape != b.shape:
        raise ValueError(f"theta_final: expected {a.size} values (as theta_init), got {b.size}")
    if not hasattr(thetas, "shape"):
        thetas = np.asarray(thetas)
    if len(thetas.shape) != 2 or thetas.shape[1] != a.size or thetas.shape[0] == 0:
        raise ValueError(f"thetas: expected a non-empty array of iterates (T, {a.size}), got "
                         f"shape {tuple(thetas.shape)}")
    length = np.linalg.norm(b - a)
    if length == 0:
        raise ValueError("theta_final: equals theta_init; the line between them has no direction")
    u = (b - a) / length
    alpha = np.empty(thetas.shape[0])
    beta = np.empty(thetas.shape[0])
    for start in range(0, thetas.shape[0], chunk):
        r = np.asarray(thetas[start:start + chunk], np.float64) - a
        if not np.isfinite(r).all():
            raise ValueError("thetas: contains NaN or infinity")
        al = r @ u
        alpha[start:start + len(r)] = al
        beta[start:start + len(r)] = np.linalg.norm(r - al[:, None] * u[None], axis=1)
    steps = np.arange(len(alpha)) if steps is None else np.asarray(steps)
    if steps.shape != alpha.shape:
        raise ValueError(f"steps: expected {len(alpha)} values (one per iterate), got shape "
                         f"{steps.shape}")
    return ProjectionResult({"alpha": alpha, "beta": beta, "step": steps},
                            {"experiment": "projection", "distance": float(length),
                             "iterates": int(len(alpha))})


def _last_layer_mask(model):
    """The direction that scales the output layer: the center's own output weights and bias,
    zero elsewhere, as a slice of the vector."""
    if isinstance(model, MLP):
        arena = model.param_arena
        return slice(arena.offsets[-2], arena.size)
    if model.last_layer is None:
        raise ValueError("model: this FunctionModel has no last_layer (the slice of the output "
                         "layer's parameters)")
    return model.last_layer


def scaled_last_layer(model, X, y, cs, center=None):
    r"""The loss and 0-1 error with the output layer's weights and bias multiplied by ``c``:

    .. math:: L(c) = \tfrac1n \textstyle\sum_i \ell(c\, f_\theta(x_i), y_i)

    The output layer is linear, so its outputs are ``c`` times those at ``c = 1``: one forward
    pass serves every ``c`` (for an :class:`fastopt.MLP`). A :class:`ScaledResult`.
    """
    check_model(model)
    cs = check_grid(cs, "cs")
    center = params_of(model) if center is None else check_vector(model, center, "center")
    ev = Evaluator(model, X, y)
    if isinstance(model, MLP):
        Z = logits_along(ev, center, np.empty((0, center.size)), np.empty((1, 0)))[0]
        loss, error = _scaled_losses(model, Z, ev.y, cs)
    else:
        direction = np.zeros_like(center)
        mask = _last_layer_mask(model)
        direction[mask] = center[mask]
        loss, error = ev.affine(center, direction[None], (cs - 1)[:, None])
    return ScaledResult({"cs": cs, "loss": loss, "error": error},
                        {**data_meta(model, ev, None), "experiment": "scaled_last_layer"})


def _scaled_losses(model, Z, y, cs):
    """``(loss, error)`` of the outputs ``c Z`` for each ``c`` of ``cs``: the ``cpu`` backend's
    fused kernel, else numpy on chunks of ``c``."""
    cross_entropy = model.loss_name == "cross_entropy"
    n, classes = Z.shape
    if model.backend == "cpu":
        from fastopt.backends.cpu.landscape import scaled_losses

        loss = np.empty(len(cs))
        wrong = np.empty(len(cs), np.int64)
        scaled_losses(Z, cs.astype(Z.dtype), y if cross_entropy else np.zeros(0, np.int64),
                      np.zeros((0, classes), Z.dtype) if cross_entropy else y,
                      ref.LOSSES.index(model.loss_name), loss, wrong)
        return loss / (n * (1 if cross_entropy else classes)), wrong / n
    loss, error = np.empty(len(cs)), np.empty(len(cs))
    step = max(1, (32 << 20) // max(1, Z.nbytes))
    for start in range(0, len(cs), step):
        c = cs[start:start + step].astype(Z.dtype)
        loss[start:start + len(c)], error[start:start + len(c)] = losses_of_logits(
            c[:, None, None] * Z[None], y, model.loss_name)
    return loss, error


# ------------------------------------------------------------------------- the monotone path

def _loss_and_slope(Z, y, c, loss_name):
    r"""``(L(c), L'(c))`` for each point: logits ``c_p Z_p`` (``Z`` ``(P, n, C)``, ``c`` ``(P,)``),
    in float64: cross-entropy :math:`L' = \frac1n\sum_i (\sum_k s_{ik} Z_{ik} - Z_{iy_i})` with
    :math:`s = \mathrm{softmax}(cZ)`; MSE :math:`L' = \frac{2}{nC}\sum (cZ - T) Z`."""
    c = np.asarray(c, np.float64)[:, None, None]
    if loss_name == "cross_entropy":
        s = c * Z
        s -= s.max(axis=2, keepdims=True)
        e = np.exp(s)
        total = e.sum(axis=2)
        picked = np.take_along_axis(Z, y[None, :, None], axis=2)[..., 0]
        picked_s = np.take_along_axis(s, y[None, :, None], axis=2)[..., 0]
        loss = np.mean(np.log(total) - picked_s, axis=1)
        slope = np.mean((e * Z).sum(axis=2) / total - picked, axis=1)
        return loss, slope
    diff = c * Z - y[None]
    return np.mean(diff * diff, axis=(1, 2)), 2 * np.mean(diff * Z, axis=(1, 2))


#: Newton steps at most per root (each evaluates the loss and its slope at every point).
NEWTON_STEPS = 100


def _newton(F, points, start, increasing):
    r"""For each of ``points``, the root of the convex ``f`` on one side of its minimum, by
    Newton's method from ``start`` where ``f >= 0``: on a convex function the tangent's zero never
    passes the root, so the iterates approach it monotonically. ``increasing``: the branch where
    ``f' > 0`` (the root right of the minimum), else ``f' < 0``. NaN where the slope turns before
    ``f`` reaches zero (the minimum is above zero: no root on that side). ``F(c, points) ->
    (f, f')`` evaluates only the points still iterating."""
    c = start.astype(np.float64)
    root = np.full(len(c), np.nan)
    active = np.arange(len(c))
    for _ in range(NEWTON_STEPS):
        f, g = F(c[active], points[active])
        met = f <= 1e-14 * np.maximum(1.0, np.abs(f))
        turned = ~met & ((g <= 0) if increasing else (g >= 0))
        step = f / np.where(g == 0, 1.0, g)
        small = ~met & ~turned & (np.abs(step) <= 4e-16 * np.maximum(1.0, c[active]))
        root[active[met | small]] = c[active[met | small]]
        going = ~(met | turned | small)
        c[active[going]] = np.maximum(c[active[going]] - step[going], 0.0)
        active = active[going]
        if not len(active):
            break
    return root


def _roots_by_newton(Z, y, loss_name, targets, c_max):
    """For each point, the roots ``c >= 0`` of ``L(c) = target`` (``L`` convex in ``c``): the one
    left of the minimum (Newton from ``c = 0``, where ``L(0) >= target``) and the one right of
    it (Newton from the first of ``1, 2, 4, ...`` where ``L >= target`` and rising), as two
    arrays, NaN where none."""
    def F(c, points):
        loss, slope = _loss_and_slope(Z[points], y, c, loss_name)
        return loss - targets[points], slope

    P = len(Z)
    every = np.arange(P)
    f0, g0 = F(np.zeros(P), every)
    left = np.full(P, np.nan)
    down = every[(f0 >= 0) & (g0 < 0)]
    left[down] = _newton(F, down, np.zeros(len(down)), False)
    left[(f0 >= 0) & (g0 >= 0) & (f0 <= 1e-14)] = 0.0
    hi = np.ones(P)
    short = every
    for _ in range(int(np.ceil(np.log2(c_max))) + 1):
        f, g = F(hi[short], short)
        short = short[((f < 0) | (g <= 0)) & (hi[short] < c_max)]
        if not len(short):
            break
        hi[short] *= 2
    f, g = F(hi, every)
    up = every[(f >= 0) & (g > 0)]
    right = np.full(P, np.nan)
    right[up] = _newton(F, up, hi[up], True)
    return left, right


def _roots_closed_form(Z, T, target):
    r"""The roots ``c >= 0`` of the MSE :math:`A c^2 - 2Bc + E = t` with :math:`A = \overline{Z^2}`,
    :math:`B = \overline{Z T}`, :math:`E = \overline{T^2}` (means over rows and outputs):
    :math:`c = (B \pm \sqrt{B^2 - A(E - t)})/A`."""
    Z64, T64 = Z.astype(np.float64), T.astype(np.float64)
    A, B, E = np.mean(Z64 * Z64), np.mean(Z64 * T64), np.mean(T64 * T64)
    if A == 0:
        return [0.0] if E == target else []
    disc = B * B - A * (E - target)
    if disc < 0:
        return []
    root = math.sqrt(disc)
    return sorted({c for c in ((B - root) / A, (B + root) / A) if c >= 0})


def monotone_path(model, theta_init, theta_final, X, y, alphas=None, target=None,
                  method="auto", branch="nearest", c_max=1e6):
    r"""Safran & Shamir's monotone path: for each point :math:`\theta(\alpha) = \theta_{init} +
    \alpha(\theta_{final} - \theta_{init})` of the straight path, the scale :math:`c \ge 0` of the
    output layer (weights and bias) at which the loss meets a monotone decreasing target,

    .. math::
        L_\alpha(c) = \tfrac1n\textstyle\sum_i \ell(c\, f_{\theta(\alpha)}(x_i), y_i)
        = t(\alpha), \qquad t(\alpha) = (1 - \alpha) L(\theta_{init}) + \alpha L(\theta_{final}).

    :math:`L_\alpha` is convex in ``c`` (a convex loss of outputs linear in ``c``), so there are
    at most two roots, one on each side of its minimum: ``branch="left"`` takes the smaller (the
    outputs shrunk toward the zero predictor), ``"right"`` the larger, ``"nearest"`` (default)
    the root nearest the previous point's ``c``, starting from ``c = 1``, which meets the target
    at :math:`\alpha = 0` (the path is then continuous wherever the target stays off the
    minimum). MSE is quadratic in ``c`` (closed form, :func:`_roots_closed_form`);
    cross-entropy's roots are found by Newton's method from either side of the minimum, which on
    a convex function approaches each root monotonically (``method="root"``, also for MSE).
    Where the loss cannot go down to the target (its minimum over ``c`` is above it) there is no
    such ``c``: ``feasible`` is false and ``c`` NaN.

    Arguments: ``alphas`` in ``[0, 1]`` (default 51 points); ``target``: ``None`` (the linear
    target above) or an array of one value per alpha; ``method``: ``"auto"``, ``"closed_form"``
    (MSE only) or ``"root"``; ``c_max``: the largest ``c`` searched. Only for
    :class:`fastopt.MLP` models. A :class:`MonotonePathResult`.

    Reference: I. Safran, O. Shamir, *On the Quality of the Initial Basin in Overspecified Neural
    Networks*, ICML 2016.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: monotone_path needs a fastopt.MLP, got {type(model).__name__}")
    a = check_vector(model, theta_init, "theta_init")
    b = check_vector(model, theta_final, "theta_final")
    alphas = check_grid(alphas, "alphas", np.linspace(0.0, 1.0, 51))
    if alphas.min() < 0 or alphas.max() > 1:
        raise ValueError("alphas: expected values in [0, 1] (the straight path from theta_init "
                         "to theta_final)")
    if branch not in ("nearest", "left", "right"):
        raise ValueError(f"branch: expected 'nearest', 'left' or 'right', got {branch!r}")
    if method not in ("auto", "closed_form", "root"):
        raise ValueError(f"method: expected 'auto', 'closed_form' or 'root', got {method!r}")
    if method == "closed_form" and model.loss_name != "mse":
        raise ValueError("method: 'closed_form' holds for the MSE loss only (the loss is then "
                         "quadratic in c); use 'root'")
    closed = method == "closed_form" or (method == "auto" and model.loss_name == "mse")
    ev = Evaluator(model, X, y)
    Z = logits_along(ev, a, (b - a)[None], np.concatenate([alphas, [0.0, 1.0]])[:, None])
    straight, _ = losses_of_logits(Z, ev.y, model.loss_name)
    loss_init, loss_final = straight[-2], straight[-1]
    Z, straight = Z[:-2], straight[:-2]
    if target is None:
        targets = (1 - alphas) * loss_init + alphas * loss_final
    else:
        targets = check_grid(target, "target")
        if targets.shape != alphas.shape:
            raise ValueError(f"target: expected {len(alphas)} values (one per alpha), got "
                             f"{targets.size}")
    Z = Z.astype(np.float64)
    if closed:
        both = [_roots_closed_form(Z[k], ev.y, targets[k]) for k in range(len(alphas))]
        both = np.array([(r + [np.nan] * 2)[:2] if len(r) < 2 else r for r in both])
    else:
        both = np.stack(_roots_by_newton(Z, ev.y, model.loss_name, targets, c_max), axis=1)
    c = np.full(len(alphas), np.nan)
    previous = 1.0
    for k, roots in enumerate(both):
        roots = roots[np.isfinite(roots)]
        if len(roots):
            pick = {"left": np.argmin(roots), "right": np.argmax(roots),
                    "nearest": np.argmin(np.abs(roots - previous))}[branch]
            c[k] = previous = roots[pick]
    loss = np.full(len(alphas), np.nan)
    ok = np.isfinite(c)
    if ok.any():
        loss[ok] = _loss_and_slope(Z[ok], ev.y, c[ok], model.loss_name)[0]
    return MonotonePathResult(
        {"alphas": alphas, "c": c, "target": targets, "loss": loss, "straight_loss": straight,
         "feasible": np.isfinite(c)},
        {**data_meta(model, ev, None), "experiment": "monotone_path",
         "method": "closed_form" if closed else "root", "branch": branch,
         "loss_init": float(loss_init),
         "loss_final": float(loss_final)})
