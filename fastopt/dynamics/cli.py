"""The ``fastopt dynamics`` command: each experiment writes its arrays (``.npz``) and plots
(``.png``) to a folder, with defaults that run on the embedded digits in under a minute.

::

    fastopt dynamics zoo --function rosenbrock --out runs/
    fastopt dynamics wide --widths 16,64,256,1024 --seeds 3
    fastopt dynamics sharpness --lr 0.5
    fastopt dynamics noise
"""

import os
import time

import numpy as np

EXPERIMENTS = ("zoo", "wide", "sharpness", "noise")


def add_cli_arguments(parser, types):
    """The options of ``fastopt dynamics``; ``types`` maps ``positive_int``, ``positive_float``
    and ``widths`` to argument types that refuse bad values."""
    from fastopt.dynamics.surfaces import NAMES
    from fastopt.dynamics.wide import PARAMETERIZATIONS
    from fastopt.dynamics.zoo import DEFAULT_OPTIMIZERS, OPTIMIZERS

    positive_int, positive_float = types["positive_int"], types["positive_float"]
    frames = lambda text: 0 if text.strip() == "0" else positive_int(text)  # noqa: E731
    parser.add_argument("experiment", choices=EXPERIMENTS,
                        help="zoo: optimizers on a 2-D test function; wide: width sweep and "
                             "the NTK; sharpness: the Hessian's top eigenvalue against 2/lr "
                             "during full-batch GD; noise: the gradient noise scale")
    parser.add_argument("--out", default="dynamics", metavar="DIR",
                        help="folder for the arrays and plots (created; default ./dynamics)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=positive_int,
                        help="optimizer steps (default: zoo 500, wide 200, sharpness 1500)")
    z = parser.add_argument_group("zoo")
    z.add_argument("--function", choices=NAMES, default="rosenbrock")
    z.add_argument("--gif-frames", type=frames, default=40, metavar="N",
                   help="frames of the animated trajectories (ZOO_paths.gif; 0: none)")
    z.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS), metavar="LIST",
                   help="comma-separated, from " + ",".join(OPTIMIZERS))
    z.add_argument("--lrs", type=positive_int, default=20,
                   help="learning rates, log-spaced over --lr-range (default 20)")
    z.add_argument("--lr-range", default="1e-4,1", metavar="LO,HI",
                   help="default 1e-4,1")
    w = parser.add_argument_group("wide")
    w.add_argument("--widths", type=types["widths"], default=[16, 64, 256, 1024],
                   help="hidden widths (default 16,64,256,1024)")
    w.add_argument("--seeds", type=positive_int, default=2, help="seeds per width (default 2)")
    w.add_argument("--depth", type=positive_int, default=1, help="hidden layers (default 1)")
    w.add_argument("--parameterization", choices=PARAMETERIZATIONS, default="ntk")
    w.add_argument("--rows", type=positive_int,
                   help="training rows of the digits (default: wide 64, sharpness 500, "
                        "noise all)")
    s = parser.add_argument_group("sharpness")
    s.add_argument("--lr", type=positive_float, default=0.6,
                   help="full-batch GD learning rate (default 0.6: the MSE network sharpens "
                        "up to 2/lr)")
    s.add_argument("--loss", choices=["mse", "cross_entropy"], default="mse")
    s.add_argument("--every", type=positive_int, default=25,
                   help="measure the top eigenvalue every this many steps (default 25)")


def _lr_range(parser, text):
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        parser.error(f"--lr-range: expected LO,HI such as 1e-4,1, got {text!r}")
    if not 0 < lo <= hi < np.inf:
        parser.error(f"--lr-range: expected 0 < LO <= HI, got {text!r}")
    return lo, hi


def run_cli(args, parser):
    """Runs ``fastopt dynamics``; returns the exit status."""
    from fastopt.dynamics.plots import pyplot

    try:
        pyplot()
    except ImportError as exc:
        parser.error(str(exc))
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out: {exc}")
    start = time.perf_counter()
    written = {"zoo": _zoo, "wide": _wide, "sharpness": _sharpness,
               "noise": _noise}[args.experiment](args, parser)
    print(f"\n{args.experiment}: {time.perf_counter() - start:.1f} s; wrote")
    for path in written:
        print(f"  {path}")
    return 0


def _zoo(args, parser):
    from fastopt.dynamics import plots, zoo

    names = [n for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in zoo.OPTIMIZERS]
    if unknown or not names:
        parser.error(f"--optimizers: unknown {', '.join(unknown) or '(none given)'}; choose "
                     f"from {','.join(zoo.OPTIMIZERS)}")
    lo, hi = _lr_range(parser, args.lr_range)
    lrs = np.geomspace(lo, hi, args.lrs)
    result = zoo.run(args.function, names, lrs, steps=args.steps or 500)
    base = os.path.join(args.out, f"zoo_{args.function}")
    np.savez_compressed(base + ".npz", optimizers=np.array(result.optimizers), lrs=result.lrs,
                        starts=result.starts, paths=result.paths, losses=result.losses,
                        grad_norms=result.grad_norms, diverged_at=result.diverged_at)
    plots.zoo_trajectories(result, path=base + "_paths.png")
    plots.zoo_loss_map(result, path=base + "_loss_map.png")
    written = [base + ".npz", base + "_paths.png", base + "_loss_map.png"]
    if args.gif_frames:
        written.append(plots.zoo_animation(result, base + "_paths.gif", frames=args.gif_frames))
    if result.function.minimum is not None:
        plots.zoo_loss_map(result, base + "_steps_to_1e-4.png", tolerance=1e-4)
        written.append(base + "_steps_to_1e-4.png")
    best = plots.best_lr_indices(result)
    print(f"{'optimizer':<10}{'best lr':>10}{'median final':>14}{'diverged runs':>15}")
    for o, name in enumerate(result.optimizers):
        final = np.median(result.final_loss[o, best[o]])
        print(f"{name:<10}{result.lrs[best[o]]:>10.3g}{final:>14.3g}"
              f"{int(result.diverged[o].sum()):>9} of {result.diverged[o].size}")
    return written


def _digits(rows, seed):
    from fastopt.nn.datasets import load_digits

    data = load_digits(dtype=np.float64, seed=seed)
    n = len(data.y_train) if rows is None else min(rows, len(data.y_train))
    return data, data.X_train[:n], data.y_train[:n]


def _wide(args, parser):
    from fastopt.dynamics import plots, wide

    data, X, y = _digits(args.rows or 64, args.seed)
    Y = np.eye(data.classes)[y]
    print(f"{'width':>6}{'seed':>5}{'lr':>9}{'loss 0':>9}{'loss T':>10}{'dW/W (layers)':>22}"
          f"{'NTK drift':>11}{'test MSE':>10}{'kernel':>9}")

    def report(r):
        change = " ".join(f"{c:.3g}" for c in r.weight_change)
        print(f"{r.width:>6}{r.seed:>5}{r.lr:>9.3g}{r.losses[0]:>9.4f}{r.losses[-1]:>10.2e}"
              f"{change:>22}{r.ntk_drift:>11.3g}{r.test_loss:>10.4f}{r.linear_test_loss:>9.4f}",
              flush=True)

    test = slice(0, 200)
    runs = wide.sweep(X, Y, args.widths, range(args.seed, args.seed + args.seeds), args.depth,
                      args.steps or 200, parameterization=args.parameterization,
                      X_test=data.X_test[test], Y_test=np.eye(data.classes)[data.y_test[test]],
                      progress=report)
    base = os.path.join(args.out, "wide")
    np.savez_compressed(base + ".npz", widths=[r.width for r in runs],
                        seeds=[r.seed for r in runs], lrs=[r.lr for r in runs],
                        losses=np.array([r.losses for r in runs]),
                        weight_change=np.array([r.weight_change for r in runs]),
                        ntk_drift=[r.ntk_drift for r in runs],
                        test_loss=[r.test_loss for r in runs],
                        linear_test_loss=[r.linear_test_loss for r in runs],
                        linear_gap=[r.linear_gap for r in runs])
    plots.wide_sweep(runs, base + ".png")
    return [base + ".npz", base + ".png"]


def _sharpness(args, parser):
    import fastopt
    from fastopt.dynamics import plots

    data, X, y = _digits(args.rows or 500, args.seed)
    model = fastopt.MLP([data.n_features, 32, data.classes], activation="tanh",
                        dtype=np.float64, seed=args.seed, loss=args.loss, backend="numpy")
    steps = args.steps or 1500
    history = fastopt.train(model, fastopt.SGD([model.params], lr=args.lr), X, y, epochs=steps,
                            batch_size=None, shuffle=False, track_sharpness_every=args.every,
                            progress=False)
    s = history.sharpness
    print(f"full-batch GD, lr {args.lr:g} (2/lr = {2 / args.lr:.3g}), {len(y)} rows, {model}")
    print(f"{'step':>6}{'top eigenvalue':>16}{'residual':>10}{'loss':>10}")
    for step, value, residual in zip(s["step"], s["top_eigenvalue"], s["residual"]):
        print(f"{step:>6}{value:>16.4g}{residual:>10.1e}{history.step['loss'][step - 1]:>10.4f}")
    base = os.path.join(args.out, "sharpness")
    arrays = history.as_arrays()
    np.savez_compressed(base + ".npz", lr=args.lr, **{f"sharpness_{k}": v for k, v in
                                                      arrays["sharpness"].items()},
                        **{f"step_{k}": v for k, v in arrays["step"].items()})
    plots.sharpness(history, base + ".png", title=f"full-batch GD, lr {args.lr:g}")
    plots.training_history(history, base + "_history.png")
    return [base + ".npz", base + ".png", base + "_history.png"]


def _noise(args, parser):
    import fastopt
    from fastopt.dynamics import noise, plots

    data, X, y = _digits(args.rows, args.seed)
    model = fastopt.MLP([data.n_features, 64, data.classes], dtype=np.float64, seed=args.seed,
                        backend="numpy")
    fastopt.train(model, fastopt.SGD([model.params], lr=0.1), X, y, epochs=2, batch_size=32,
                  seed=args.seed, progress=False)
    n = len(y)
    scale = noise.noise_scale(model, X, y, batch_size=min(256, n), batches=8, seed=args.seed)
    sizes = np.unique(np.geomspace(1, n, 10).astype(int))
    sizes, measured, predicted = noise.minibatch_variance(model, X, y, sizes, samples=32,
                                                          seed=args.seed)
    print(f"after 2 epochs of SGD on {n} rows: B_simple = {scale.b_simple:.4g} ± "
          f"{scale.stderr:.2g} (tr Sigma {scale.trace_sigma:.4g}, |G|^2 {scale.grad_sq:.4g}; "
          f"{scale.batches} batches of {scale.batch_size})")
    print(f"{'batch':>7}{'measured':>12}{'predicted':>12}")
    for b, m, p in zip(sizes, measured, predicted):
        print(f"{b:>7}{m:>12.4g}{p:>12.4g}")
    base = os.path.join(args.out, "noise")
    np.savez_compressed(base + ".npz", batch_sizes=sizes, measured=measured, predicted=predicted,
                        b_simple=scale.b_simple, b_simple_stderr=scale.stderr,
                        trace_sigma=scale.trace_sigma, grad_sq=scale.grad_sq)
    plots.noise_variance(sizes, measured, predicted, scale.b_simple, base + ".png")
    return [base + ".npz", base + ".png"]
