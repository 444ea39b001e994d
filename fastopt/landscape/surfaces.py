r"""Loss along lines and over planes of parameter space (Goodfellow et al.'s interpolation, Li et
al.'s random-direction surfaces), every point evaluated by one batched pass
(:class:`fastopt.landscape.evaluate.Evaluator`)."""

import numpy as np

from fastopt.landscape import progress as _progress
from fastopt.landscape.directions import Directions
from fastopt.landscape.evaluate import Evaluator
from fastopt.landscape.models import check_grid, check_model, check_vector, params_of
from fastopt.landscape.results import LineResult, PlaneResult

__all__ = ["interpolate", "line", "plane", "data_meta"]

#: Goodfellow et al.'s range: a half step before the start and past the end.
DEFAULT_ALPHAS = np.linspace(-0.5, 1.5, 81)


def data_meta(model, train, test):
    """The metadata every result carries: the model and the data sizes."""
    meta = {"model": repr(model), "train_rows": train.rows,
            "loss": getattr(model, "loss_name", "function")}
    if test is not None:
        meta["test_rows"] = test.rows
    return meta


def _evaluators(model, X, y, test):
    train = Evaluator(model, X, y)
    if test is None:
        return train, None
    if not isinstance(test, (tuple, list)) or len(test) != 2:
        raise TypeError("test: expected a pair (X_test, y_test)")
    return train, Evaluator(model, test[0], test[1], "test[0]", "test[1]")


def _run(train, test, center, dirs, coords, progress, description):
    """``{"loss", "error"[, "test_loss", "test_error"]}`` at ``center + coords @ dirs``."""
    total = len(coords) * (1 if test is None else 2)
    out = {}
    with _progress.bar(total, progress, description) as update:
        out["loss"], out["error"] = train.affine(center, dirs, coords, update)
        if test is not None:
            out["test_loss"], out["test_error"] = test.affine(center, dirs, coords, update)
    return out


def _direction_vectors(model, directions, count, name):
    """``(vectors (count, P), metadata)`` of a :class:`Directions` or of plain vectors."""
    meta = {}
    if isinstance(directions, Directions):
        meta = {f"directions_{k}": v for k, v in directions.meta.items()}
        directions = directions.vectors
    if count == 1:
        vectors = [directions[0] if np.ndim(directions) == 2 else directions]
    else:
        if len(directions) != count:
            raise ValueError(f"{name}: expected {count} directions, got {len(directions)}")
        vectors = list(directions)
    return np.array([check_vector(model, v, f"{name}[{k}]" if count > 1 else name)
                     for k, v in enumerate(vectors)]), meta


def interpolate(model, theta_a, theta_b, X, y, alphas=None, test=None, progress=None):
    r"""Goodfellow et al.'s linear interpolation: the loss and 0-1 error at

    .. math:: \theta(\alpha) = \theta_a + \alpha\,(\theta_b - \theta_a)

    for each ``alpha`` (default 81 values in :math:`[-0.5, 1.5]`), on ``(X, y)`` and, with
    ``test=(X_test, y_test)``, on the test set too; a :class:`LineResult` (``coords`` are the
    alphas).

    Reference: I. Goodfellow, O. Vinyals, A. Saxe, *Qualitatively characterizing neural network
    optimization problems*, ICLR 2015.
    """
    check_model(model)
    theta_a = check_vector(model, theta_a, "theta_a")
    theta_b = check_vector(model, theta_b, "theta_b")
    alphas = check_grid(alphas, "alphas", DEFAULT_ALPHAS)
    train, test = _evaluators(model, X, y, test)
    values = _run(train, test, theta_a, (theta_b - theta_a)[None], alphas[:, None], progress,
                  "interpolation")
    meta = {**data_meta(model, train, test), "experiment": "interpolation",
            "distance": float(np.linalg.norm(theta_b - theta_a))}
    return LineResult({"coords": alphas, **values}, meta)


def line(model, X, y, direction, xs, center=None, test=None, progress=None):
    r"""The loss and 0-1 error at :math:`\theta_c + x_i d` for each ``xs[i]``; a
    :class:`LineResult`.

    ``direction``: a vector or a :class:`Directions` (its first row is used, its seed and
    normalization recorded); ``center``: default the model's parameters.
    """
    check_model(model)
    d, meta = _direction_vectors(model, direction, 1, "direction")
    center = params_of(model) if center is None else check_vector(model, center, "center")
    xs = check_grid(xs, "xs")
    train, test = _evaluators(model, X, y, test)
    values = _run(train, test, center, d, xs[:, None], progress, "line")
    return LineResult({"coords": xs, **values},
                      {**data_meta(model, train, test), **meta, "experiment": "line"})


def plane(model, X, y, directions, xs, ys, center=None, test=None, trajectory=None,
          progress=None):
    r"""The loss and 0-1 error over a plane:

    .. math:: \mathrm{loss}[i, j] = L(\theta_c + x_i d_1 + y_j d_2)

    ``directions``: a :class:`Directions` of two rows or a pair of vectors; ``center``: default the
    model's parameters; ``trajectory``: optional iterates ``(T, P)`` whose least-squares
    coordinates in the plane, :math:`\arg\min_{a} \lVert \theta_t - \theta_c - [d_1\,d_2]\,a
    \rVert`, are stored as ``trajectory`` ``(T, 2)`` for the plots. A :class:`PlaneResult`.
    """
    check_model(model)
    D, meta = _direction_vectors(model, directions, 2, "directions")
    center = params_of(model) if center is None else check_vector(model, center, "center")
    xs, ys = check_grid(xs, "xs"), check_grid(ys, "ys")
    train, test = _evaluators(model, X, y, test)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    coords = np.stack([gx.ravel(), gy.ravel()], axis=1)
    values = _run(train, test, center, D, coords, progress, "plane")
    values = {k: v.reshape(len(xs), len(ys)) for k, v in values.items()}
    arrays = {"xs": xs, "ys": ys, **values}
    if trajectory is not None:
        arrays["trajectory"] = plane_coordinates(model, trajectory, center, D)
    return PlaneResult(arrays, {**data_meta(model, train, test), **meta, "experiment": "plane"})


def plane_coordinates(model, thetas, center, D, chunk=256):
    """The least-squares coordinates ``(T, 2)`` of the rows of ``thetas`` in the plane through
    ``center`` spanned by the rows of ``D`` (read in chunks: ``thetas`` may be a memory map)."""
    thetas = np.asarray(thetas) if not isinstance(thetas, np.memmap) else thetas
    if thetas.ndim != 2 or thetas.shape[1] != model.num_params:
        raise ValueError(f"trajectory: expected iterates of shape (T, {model.num_params}), got "
                         f"{thetas.shape}")
    gram_inverse = np.linalg.pinv(D @ D.T)
    out = np.empty((len(thetas), len(D)))
    for start in range(0, len(thetas), chunk):
        rows = np.asarray(thetas[start:start + chunk], np.float64) - center
        if not np.isfinite(rows).all():
            raise ValueError("trajectory: contains NaN or infinity")
        out[start:start + len(rows)] = rows @ D.T @ gram_inverse
    return out
