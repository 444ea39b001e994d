"""Figures of the dynamics experiments and of a training run, drawn with matplotlib (the
``plot`` extra: ``pip install fastopt[plot]``), imported only when a figure is made.

Each function returns the matplotlib ``Figure`` and, given ``path``, saves it there (PNG by the
extension) and closes it.
"""

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend; a clear ImportError without it."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install fastopt[plot]") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def zoo_trajectories(result, lr_index=0, path=None, levels=30):
    """The runs of a :class:`fastopt.dynamics.zoo.ZooResult` at one learning rate over the test
    function's contours (log-spaced levels), one color per optimizer, minima as stars."""
    plt = pyplot()
    s = result.function
    X, Y, F = s.grid(200)
    fig, ax = plt.subplots(figsize=(7, 6))
    low = F.min()
    shifted = F - low + 1e-3  # the levels are log-spaced above the lowest value on the grid
    ax.contour(X, Y, shifted, levels=np.geomspace(shifted.min(), shifted.max(), levels),
               cmap="Greys", linewidths=0.6)
    colors = plt.get_cmap("tab20" if len(result.optimizers) > 10 else "tab10")
    for o, label in enumerate(result.optimizers):
        for j in range(result.starts.shape[0]):
            p = result.paths[o, lr_index, j]
            ax.plot(p[:, 0], p[:, 1], color=colors(o), lw=1.2,
                    label=label if j == 0 else None)
    ax.plot(result.starts[:, 0], result.starts[:, 1], "ko", ms=4)
    if len(s.minima):
        ax.plot(s.minima[:, 0], s.minima[:, 1], "r*", ms=12)
    x0, x1, y0, y1 = s.domain
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y",
           title=f"{s.name}, lr = {result.lrs[lr_index]:g}, {result.steps} steps")
    ax.legend(fontsize=8, loc="best")
    return _finish(plt, fig, path)


def zoo_loss_map(result, path=None):
    """The final value (median over starts; diverged runs dark) as a map over learning rate ×
    optimizer."""
    plt = pyplot()
    final = np.median(result.final_loss, axis=2)
    shown = np.log10(np.maximum(final - (result.function.minimum or 0.0), 1e-16))
    shown = np.where(np.isfinite(final), shown, np.nan)
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(result.optimizers) + 1.5))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("black")
    image = ax.imshow(shown, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_yticks(range(len(result.optimizers)), result.optimizers)
    ticks = np.unique(np.linspace(0, result.lrs.size - 1, min(8, result.lrs.size)).astype(int))
    ax.set_xticks(ticks, [f"{result.lrs[k]:.2g}" for k in ticks])
    ax.set(xlabel="learning rate", title=f"{result.function.name}: log10(final - min), "
           f"median over {result.starts.shape[0]} starts (black: diverged)")
    fig.colorbar(image, ax=ax)
    return _finish(plt, fig, path)


def training_history(history, path=None, title=None):
    """Loss, 0-1 error and gradient norm of a :class:`fastopt.History` against steps (log scale
    for the loss and the norm): a gradient norm that does not fall while the loss stalls marks a
    critical point that is not a minimum."""
    plt = pyplot()
    s = history.as_arrays()["step"]
    steps = np.arange(1, s["loss"].size + 1)
    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    for ax, key, label, log in zip(axes, ("loss", "error", "grad_norm"),
                                   ("loss", "error (batch)", "gradient norm"),
                                   (True, False, True)):
        ax.plot(steps, s[key], lw=0.8)
        if log and (s[key] > 0).any():
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    if title:
        axes[0].set_title(title)
    return _finish(plt, fig, path)


def sharpness(history, path=None, title=None):
    """The Hessian's top eigenvalue recorded by ``fastopt.train(..., track_sharpness_every=k)``
    against steps, with :math:`2/\\eta` (the stability threshold of GD on a quadratic) and the
    loss."""
    plt = pyplot()
    a = history.as_arrays()
    s, steps = a["sharpness"], a["step"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(s["step"], s["top_eigenvalue"], "o-", ms=3, label="top eigenvalue of the Hessian")
    if steps["lr"].size:
        top.plot(np.arange(1, steps["lr"].size + 1), 2 / steps["lr"], "k--", lw=1,
                 label="2 / lr")
    top.set_ylabel("sharpness")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(np.arange(1, steps["loss"].size + 1), steps["loss"], lw=0.8)
    bottom.set(xlabel="step", ylabel="loss", yscale="log")
    bottom.grid(alpha=0.3)
    if title:
        top.set_title(title)
    return _finish(plt, fig, path)
