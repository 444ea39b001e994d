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


def best_lr_indices(result):
    """Each optimizer's learning rate (index) of lowest median final value over the starts."""
    final = np.median(result.final_loss, axis=2)
    return np.argmin(np.where(np.isnan(final), np.inf, final), axis=1)


def _zoo_axes(plt, result, lr_index, levels):
    """The figure of :func:`zoo_trajectories` without the paths: ``(fig, ax, colors, chosen)``,
    ``chosen`` each optimizer's learning-rate index."""
    s = result.function
    X, Y, F = s.grid(200)
    fig, ax = plt.subplots(figsize=(7, 6))
    low = F.min()
    shifted = F - low + 1e-3  # the levels are log-spaced above the lowest value on the grid
    ax.contour(X, Y, shifted, levels=np.geomspace(shifted.min(), shifted.max(), levels),
               cmap="Greys", linewidths=0.6)
    colors = plt.get_cmap("tab20" if len(result.optimizers) > 10 else "tab10")
    chosen = best_lr_indices(result) if lr_index is None else \
        np.full(len(result.optimizers), lr_index)
    ax.plot(result.starts[:, 0], result.starts[:, 1], "ko", ms=4)
    if len(s.minima):
        ax.plot(s.minima[:, 0], s.minima[:, 1], "r*", ms=12)
    x0, x1, y0, y1 = s.domain
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y",
           title=f"{s.name}, {result.steps} steps" + (
               "" if lr_index is None else f", lr = {result.lrs[lr_index]:g}"))
    return fig, ax, colors, chosen


def zoo_trajectories(result, lr_index=None, path=None, levels=30):
    """The runs of a :class:`fastopt.dynamics.zoo.ZooResult` over the test function's contours
    (log-spaced levels), one color per optimizer, minima as stars; at the learning rate of index
    ``lr_index``, or each optimizer at its best (:func:`best_lr_indices`) when ``None``."""
    plt = pyplot()
    fig, ax, colors, chosen = _zoo_axes(plt, result, lr_index, levels)
    for o, label in enumerate(result.optimizers):
        for j in range(result.starts.shape[0]):
            p = result.paths[o, chosen[o], j]
            ax.plot(p[:, 0], p[:, 1], color=colors(o), lw=1.2,
                    label=f"{label} (lr {result.lrs[chosen[o]]:.2g})" if j == 0 else None)
    ax.legend(fontsize=8, loc="best")
    return _finish(plt, fig, path)


def zoo_animation(result, path, lr_index=None, frames=40, fps=12, levels=30):
    """:func:`zoo_trajectories` as an animated GIF at ``path``: frame ``k`` draws the runs up to
    its step (``frames`` frames spread over the steps, the last at the end), each run's current
    point as a dot. The contours are drawn once and each frame only adds the paths (blitting on
    the Agg canvas); Pillow writes the GIF (the ``plot`` extra). Returns ``path``."""
    plt = pyplot()
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("an animated GIF needs Pillow: pip install fastopt[plot]") from error

    frames = int(frames)
    if frames < 1:
        raise ValueError(f"frames: expected an integer >= 1, got {frames}")
    fig, ax, colors, chosen = _zoo_axes(plt, result, lr_index, levels)
    fig.set_dpi(80)
    runs = []  # (path, line, head) per run
    for o, label in enumerate(result.optimizers):
        for j in range(result.starts.shape[0]):
            line, = ax.plot([], [], color=colors(o), lw=1.2, animated=True,
                            label=f"{label} (lr {result.lrs[chosen[o]]:.2g})" if j == 0 else None)
            head, = ax.plot([], [], "o", color=colors(o), ms=4, animated=True)
            runs.append((result.paths[o, chosen[o], j], line, head))
    legend = ax.legend(fontsize=8, loc="best")
    legend.set_animated(True)
    fig.tight_layout()
    canvas = fig.canvas
    canvas.draw()  # the animated artists are left out: this is the background
    background = canvas.copy_from_bbox(fig.bbox)
    images = []
    for end in np.unique(np.linspace(0, result.steps, frames).round().astype(int)):
        canvas.restore_region(background)
        for p, line, head in runs:
            line.set_data(p[:end + 1, 0], p[:end + 1, 1])
            head.set_data(p[end:end + 1, 0], p[end:end + 1, 1])
            ax.draw_artist(line)
            ax.draw_artist(head)
        ax.draw_artist(legend)
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
    plt.close(fig)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps),
                   loop=0, optimize=True)
    return path


def zoo_loss_map(result, path=None, tolerance=None):
    """A map over learning rate × optimizer of the final value's distance to the minimum (log10,
    median over the starts), or with ``tolerance`` of the median steps until the value is within
    it (:meth:`~fastopt.dynamics.zoo.ZooResult.steps_to`); black: diverged or never."""
    plt = pyplot()
    if tolerance is None and result.function.minimum is None:  # unbounded below: the value
        final = np.median(result.final_loss, axis=2)
        shown = np.where(np.isfinite(final), final, np.nan)
        what = "final value"
    elif tolerance is None:
        final = np.median(result.final_loss, axis=2)
        shown = np.log10(np.maximum(final - result.function.minimum, 1e-16))
        shown = np.where(np.isfinite(final), shown, np.nan)
        what = "log10(final - min)"
    else:
        steps = result.steps_to(tolerance).astype(float)
        steps[steps < 0] = np.nan
        shown = np.median(steps, axis=2)  # NaN where any start never got there
        what = f"steps to within {tolerance:g} of the minimum"
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(result.optimizers) + 1.5))
    cmap = plt.get_cmap("viridis").with_extremes(bad="black")
    image = ax.imshow(shown, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_yticks(range(len(result.optimizers)), result.optimizers)
    ticks = np.unique(np.linspace(0, result.lrs.size - 1, min(8, result.lrs.size)).astype(int))
    ax.set_xticks(ticks, [f"{result.lrs[k]:.2g}" for k in ticks], rotation=45)
    ax.set(xlabel="learning rate", title=f"{result.function.name}: {what}, median over "
           f"{result.starts.shape[0]} starts")
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


def wide_sweep(runs, path=None):
    """Lazy training against width (log-log, mean over seeds, one point per seed): the relative
    weight change of each layer, the NTK's drift, and the loss curves."""
    plt = pyplot()
    widths = np.array(sorted({r.width for r in runs}))
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    layers = runs[0].weight_change.size
    for layer in range(layers):
        points = [(r.width, r.weight_change[layer]) for r in runs]
        mean = [np.mean([c for w, c in points if w == width]) for width in widths]
        left.plot(*zip(*points), ".", alpha=0.4, color=f"C{layer}")
        left.plot(widths, mean, "o-", color=f"C{layer}", label=f"layer {layer + 1}")
    drift = [np.mean([r.ntk_drift for r in runs if r.width == w]) for w in widths]
    middle.plot([r.width for r in runs], [r.ntk_drift for r in runs], ".", alpha=0.4)
    middle.plot(widths, drift, "o-", label="NTK drift")
    for ax, first in ((left, np.mean([r.weight_change[0] for r in runs
                                      if r.width == widths[0]])), (middle, drift[0])):
        ax.plot(widths, first * np.sqrt(widths[0] / widths), "k--", lw=1,
                label="1/sqrt(width)")
        ax.set(xscale="log", yscale="log", xlabel="width")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    left.set_ylabel("||W_T - W_0|| / ||W_0||")
    middle.set_ylabel("||K_T - K_0|| / ||K_0||")
    cmap = plt.get_cmap("viridis")
    for r in runs:
        k = np.searchsorted(widths, r.width) / max(len(widths) - 1, 1)
        right.plot(r.losses, color=cmap(k), lw=0.8,
                   label=f"width {r.width}" if r.seed == runs[0].seed else None)
    right.set(yscale="log", xlabel="step", ylabel="training MSE")
    right.legend(fontsize=8)
    return _finish(plt, fig, path)


def noise_variance(batch_sizes, measured, predicted, b_simple=None, path=None):
    """The minibatch gradient's variance against batch size (log-log), measured and predicted
    (:func:`fastopt.dynamics.noise.minibatch_variance`), with the noise scale marked."""
    plt = pyplot()
    keep = np.asarray(predicted) > 0  # the full batch is the gradient itself: no variance
    batch_sizes, measured, predicted = (np.asarray(a)[keep] for a in
                                        (batch_sizes, measured, predicted))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(batch_sizes, measured, "o", label="measured E|G_B - G|^2")
    ax.plot(batch_sizes, predicted, "-", label="tr(Sigma)(n - B) / (B (n - 1))")
    if b_simple is not None and b_simple > 0:
        ax.axvline(b_simple, color="k", ls="--", lw=1, label=f"B_simple = {b_simple:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="variance")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _finish(plt, fig, path)
