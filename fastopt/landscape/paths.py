r"""The training path seen from the straight line: the α/β projection of the iterates, the loss
with the output layer scaled, and Safran & Shamir's monotone path."""

import math

import numpy as np

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
    a = _vector(theta_init, "theta_init")
    b = _vector(theta_final, "theta_final")
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


def _vector(v, name):
    v = np.asarray(v.copy_to_host() if hasattr(v, "copy_to_host") else v)
    if v.dtype.kind not in "biuf" or v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D vector of numbers, got "
                         f"{v.dtype} {v.shape}")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return v


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
        loss, error = np.empty(len(cs)), np.empty(len(cs))
        step = max(1, (32 << 20) // max(1, Z.nbytes))
        for start in range(0, len(cs), step):
            c = cs[start:start + step].astype(Z.dtype)
            loss[start:start + len(c)], error[start:start + len(c)] = losses_of_logits(
                c[:, None, None] * Z[None], ev.y, model.loss_name)
    else:
        direction = np.zeros_like(center)
        mask = _last_layer_mask(model)
        direction[mask] = center[mask]
        loss, error = ev.affine(center, direction[None], (cs - 1)[:, None])
    return ScaledResult({"cs": cs, "loss": loss, "error": error},
                        {**data_meta(model, ev, None), "experiment": "scaled_last_layer"})


# ------------------------------------------------------------------------- the monotone path

def _loss_and_slope(Z, y, c, loss_name):
    r"""``(L(c), L'(c))`` of logits ``c Z`` (``Z`` ``(n, C)``), in float64:
    cross-entropy :math:`L' = \frac1n\sum_i (\sum_k s_{ik} Z_{ik} - Z_{iy_i})` with
    :math:`s = \mathrm{softmax}(cZ)`; MSE :math:`L' = \frac{2}{nC}\sum (cZ - T) Z`."""
    n, C = Z.shape
    if loss_name == "cross_entropy":
        s = c * Z
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        total = e.sum(axis=1)
        picked = Z[np.arange(n), y]
        loss = np.mean(np.log(total) - s[np.arange(n), y])
        slope = np.mean((e * Z).sum(axis=1) / total - picked)
        return float(loss), float(slope)
    diff = c * Z - y
    return float(np.mean(diff * diff)), float(2 * np.mean(diff * Z))


def _bisect(f, lo, hi, increasing, iterations=200):
    """The root of a monotone ``f`` in ``[lo, hi]`` (``f(lo)``, ``f(hi)`` of opposite signs or
    zero), to the float64 resolution of the bracket."""
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if (f(mid) < 0) == increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _roots_by_bisection(Z, y, loss_name, target, c_max):
    """The roots ``c >= 0`` of ``L(c) = target`` (``L`` convex in ``c``): one on each side of the
    minimum where they exist."""
    L = lambda c: _loss_and_slope(Z, y, c, loss_name)[0]
    slope = lambda c: _loss_and_slope(Z, y, c, loss_name)[1]
    if slope(0.0) >= 0:
        c_min = 0.0
    else:
        hi = 1.0
        while slope(hi) < 0 and hi < c_max:
            hi *= 2
        c_min = hi if slope(hi) < 0 else _bisect(slope, 0.0, hi, True)
    roots = []
    if L(c_min) > target:
        return roots
    if L(0.0) >= target:
        roots.append(_bisect(lambda c: L(c) - target, 0.0, c_min, False))
    hi = max(2 * c_min, 1.0)
    while L(hi) < target and hi < c_max:
        hi *= 2
    if L(hi) >= target and hi > c_min:
        roots.append(_bisect(lambda c: L(c) - target, c_min, hi, True))
    return roots


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
                  method="auto", c_max=1e6):
    r"""Safran & Shamir's monotone path: for each point :math:`\theta(\alpha) = \theta_{init} +
    \alpha(\theta_{final} - \theta_{init})` of the straight path, the scale :math:`c \ge 0` of the
    output layer (weights and bias) at which the loss meets a monotone decreasing target,

    .. math::
        L_\alpha(c) = \tfrac1n\textstyle\sum_i \ell(c\, f_{\theta(\alpha)}(x_i), y_i)
        = t(\alpha), \qquad t(\alpha) = (1 - \alpha) L(\theta_{init}) + \alpha L(\theta_{final}).

    :math:`L_\alpha` is convex in ``c`` (a convex loss of outputs linear in ``c``), so there are
    at most two roots, one on each side of its minimum; the path takes the root nearest the
    previous point's ``c`` (starting from ``c = 1``, which meets the target at
    :math:`\alpha = 0`). MSE is quadratic in ``c`` (closed form, :func:`_roots_closed_form`);
    cross-entropy's roots are bracketed and bisected (``method="root"``, also available for MSE).
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
    c = np.full(len(alphas), np.nan)
    loss = np.full(len(alphas), np.nan)
    previous = 1.0
    for k in range(len(alphas)):
        Zk = Z[k].astype(np.float64)
        roots = (_roots_closed_form(Zk, ev.y, targets[k]) if closed else
                 _roots_by_bisection(Zk, ev.y, model.loss_name, targets[k], c_max))
        if roots:
            c[k] = min(roots, key=lambda r: abs(r - previous))
            previous = c[k]
            loss[k] = _loss_and_slope(Zk, ev.y, c[k], model.loss_name)[0]
    return MonotonePathResult(
        {"alphas": alphas, "c": c, "target": targets, "loss": loss, "straight_loss": straight,
         "feasible": np.isfinite(c)},
        {**data_meta(model, ev, None), "experiment": "monotone_path",
         "method": "closed_form" if closed else "root", "loss_init": float(loss_init),
         "loss_final": float(loss_final)})
