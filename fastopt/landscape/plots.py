"""Figures of the landscape results (matplotlib, the ``plot`` extra), drawn off-screen (Agg).

One function per result kind, each returning a ``Figure``: :func:`plot_line` (loss and 0-1
error, train and test), :func:`plot_plane` (filled contours and contour lines with the center and
the trajectory), :func:`plot_surface` (the same plane as a 3-D surface), :func:`plot_projection`
(α/β colored by step), :func:`plot_scaled_last_layer`, :func:`plot_monotone_path` (Safran &
Shamir's path against the straight one). :func:`save_figure` writes PNG or SVG by suffix.
"""

import sys

import numpy as np

__all__ = ["plot_line", "plot_plane", "plot_surface", "plot_projection",
           "plot_scaled_last_layer", "plot_monotone_path", "save_figure", "pyplot"]

TRAIN_COLOR, TEST_COLOR = "#1f77b4", "#d62728"


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or an ``ImportError`` saying what to install."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("the landscape plots need matplotlib: pip install fastopt[plot]") \
            from exc
    if "matplotlib.pyplot" not in sys.modules:  # off-screen, unless the caller chose a backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, dpi=130):
    """Saves ``figure`` to ``path`` (``.png`` or ``.svg``) and closes it; returns the path."""
    suffix = str(path).rsplit(".", 1)[-1].lower()
    if suffix not in ("png", "svg"):
        raise ValueError(f"path: expected a .png or .svg file name, got {path}")
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
    return path


def _subtitle(result):
    meta = result.meta
    parts = []
    if "directions_normalization" in meta:
        parts.append(f"{meta['directions_normalization']}-normalized directions, seed "
                     f"{meta['directions_seed']}, biases {meta['directions_biases']}")
    if "train_rows" in meta:
        parts.append(f"{meta['train_rows']:,} train rows"
                     + (f", {meta['test_rows']:,} test" if "test_rows" in meta else ""))
    return "; ".join(parts)


def plot_line(result, title=None, xlabel=None):
    """Loss (left) and 0-1 error (right) along the line, train and (if measured) test."""
    plt = pyplot()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = result.coords
    interpolation = result.meta.get("experiment") == "interpolation"
    xlabel = xlabel or (r"$\alpha$ in $\theta_{init} + \alpha(\theta_{final} - \theta_{init})$"
                        if interpolation else "step along the direction")
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_err, "error", "0-1 error")):
        ax.plot(x, result.arrays[key], color=TRAIN_COLOR, lw=2, label="train")
        if f"test_{key}" in result.arrays:
            ax.plot(x, result.arrays[f"test_{key}"], color=TEST_COLOR, lw=2, ls="--",
                    label="test")
        for mark in ((0.0, 1.0) if interpolation else (0.0,)):
            ax.axvline(mark, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    ax_err.set_ylim(-0.02, 1.02)
    fig.suptitle(title or ("Linear interpolation from initial to final weights"
                           if interpolation else "Loss along a direction"), fontsize=12)
    sub = _subtitle(result)
    if sub:
        fig.text(0.5, -0.02, sub, ha="center", fontsize=8, color="0.35")
    fig.tight_layout()
    return fig


def _levels(loss, count=30):
    finite = loss[np.isfinite(loss)]
    low, high = float(finite.min()), float(np.percentile(finite, 98))
    return np.linspace(low, high if high > low else low + 1.0, count)


def plot_plane(result, title=None, key="loss", log=False):
    """Filled contours (a heatmap of ``key``), contour lines labeled, the center marked, and the
    trajectory (if the result has one) drawn from start (circle) to end (star)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    values = result.arrays[key].T  # rows: ys, columns: xs
    values = np.log10(values) if log else values
    levels = _levels(values)
    X, Y = np.meshgrid(result.xs, result.ys)
    filled = ax.contourf(X, Y, np.clip(values, None, levels[-1]), levels=levels,
                         cmap="viridis", extend="max")
    lines = ax.contour(X, Y, values, levels=levels[::3], colors="white", linewidths=0.6,
                       alpha=0.8)
    ax.clabel(lines, fontsize=7, fmt="%.2f")
    bar = fig.colorbar(filled, ax=ax)
    bar.set_label(("log10 " if log else "") + key.replace("_", " "))
    ax.plot(0, 0, marker="+", color="red", ms=14, mew=2, label="center")
    if "trajectory" in result.arrays:
        t = result.trajectory
        ax.plot(t[:, 0], t[:, 1], color="orange", lw=1.5, label="trajectory")
        ax.plot(t[0, 0], t[0, 1], "o", color="orange", ms=6)
        ax.plot(t[-1, 0], t[-1, 1], "*", color="orange", ms=12)
    ax.set_xlabel(r"$x$ along $d_1$")
    ax.set_ylabel(r"$y$ along $d_2$")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_title(title or f"{key.replace('_', ' ').capitalize()} over a plane", fontsize=12)
    sub = _subtitle(result)
    if sub:
        ax.text(0.5, -0.16, sub, transform=ax.transAxes, ha="center", fontsize=8, color="0.35")
    fig.tight_layout()
    return fig


def plot_surface(result, title=None, key="loss"):
    """The plane's ``key`` as a 3-D surface, clipped at its 98th percentile."""
    plt = pyplot()
    fig = plt.figure(figsize=(7, 5.6))
    ax = fig.add_subplot(projection="3d")
    values = result.arrays[key].T
    levels = _levels(values)
    X, Y = np.meshgrid(result.xs, result.ys)
    surf = ax.plot_surface(X, Y, np.clip(values, None, levels[-1]), cmap="viridis",
                           linewidth=0, antialiased=True, rstride=1, cstride=1)
    fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.1, label=key.replace("_", " "))
    ax.set_xlabel(r"$x$ along $d_1$")
    ax.set_ylabel(r"$y$ along $d_2$")
    ax.set_zlabel(key.replace("_", " "))
    ax.view_init(elev=35, azim=-60)
    ax.set_title(title or f"{key.replace('_', ' ').capitalize()} surface", fontsize=12)
    fig.tight_layout()
    return fig


def plot_projection(result, title=None):
    """β against α, one point per recorded iterate, colored by step; the straight line is the
    horizontal axis from 0 to ``distance``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.plot(result.alpha, result.beta, color="0.7", lw=0.8, zorder=1)
    points = ax.scatter(result.alpha, result.beta, c=result.step, cmap="plasma", s=14, zorder=2)
    fig.colorbar(points, ax=ax, label="step")
    distance = result.meta.get("distance")
    if distance:
        ax.plot([0, distance], [0, 0], color="black", lw=2, label="straight line")
        ax.plot([0], [0], "o", color="black", ms=6)
        ax.plot([distance], [0], "*", color="black", ms=12)
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(r"$\alpha_t$: progress along $\theta_{final} - \theta_{init}$")
    ax.set_ylabel(r"$\beta_t$: distance from the line")
    ax.grid(alpha=0.3)
    ax.set_title(title or r"The training path projected on the straight line ($\alpha$, $\beta$)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def plot_scaled_last_layer(result, title=None):
    """Loss and 0-1 error against the output layer's scale ``c``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(result.cs, result.loss, color=TRAIN_COLOR, lw=2, label="loss")
    ax.axvline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel(r"$c$: scale of the output layer's weights and bias")
    ax.set_ylabel("loss", color=TRAIN_COLOR)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(result.cs, result.error, color=TEST_COLOR, lw=1.5, ls="--", label="0-1 error")
    twin.set_ylabel("0-1 error", color=TEST_COLOR)
    twin.set_ylim(-0.02, 1.02)
    ax.set_title(title or "Loss with the last layer scaled by c", fontsize=12)
    fig.tight_layout()
    return fig


def plot_monotone_path(result, title=None):
    """Left: the loss along the straight path, the monotone target and the loss on Safran &
    Shamir's path (the target where it is reachable). Right: the scale ``c`` at each point;
    unreachable points marked."""
    plt = pyplot()
    fig, (ax, ax_c) = plt.subplots(1, 2, figsize=(10.5, 4))
    a = result.alphas
    ax.plot(a, result.straight_loss, color="0.3", lw=2, label="straight path")
    ax.plot(a, result.target, color="orange", lw=1.5, ls="--", label="monotone target")
    ok = result.feasible.astype(bool)
    ax.plot(a[ok], result.loss[ok], "o", color=TRAIN_COLOR, ms=4,
            label="scaled path (loss at c)")
    if (~ok).any():
        ax.plot(a[~ok], result.target[~ok], "x", color=TEST_COLOR, ms=6,
                label="no c reaches the target")
    ax.set_xlabel(r"$\alpha$ along the straight path")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    ax_c.plot(a[ok], result.c[ok], "o-", color=TRAIN_COLOR, ms=3)
    ax_c.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax_c.set_xlabel(r"$\alpha$")
    ax_c.set_ylabel(r"$c$ (scale of the output layer)")
    ax_c.grid(alpha=0.3)
    fig.suptitle(title or "Safran & Shamir's monotone path against the straight path",
                 fontsize=12)
    fig.tight_layout()
    return fig
