"""The ``fastopt landscape`` command: train (or load) an MLP while recording its iterates, run
every landscape experiment on it, and write the report folder (:mod:`fastopt.landscape.report`).

With no options: the embedded digits, a 64-64-10 ReLU MLP trained by Adam for 10 epochs of batch
32, iterates recorded every 5 steps, 21 x 21 planes, written to ``landscape-report/``.
"""

import os
import sys
import time

import numpy as np

__all__ = ["add_cli_arguments", "prepare_cli", "run_cli", "run_experiments"]


def add_cli_arguments(parser, types=None):
    """The options of ``fastopt landscape`` (``types`` as for ``fastopt train``'s)."""
    from fastopt.nn.train import optimizer_names

    types = types or {}
    plain = types.get
    parser.add_argument("--data", default="digits", type=plain("data", str),
                        help="'digits' (embedded, default) or a directory of MNIST IDX files")
    parser.add_argument("--load", metavar="PATH", type=plain("existing_file", str),
                        help="a model saved by 'fastopt train --save' (.npz) to study instead of "
                             "training one; its start is a fresh initialization (--seed) unless "
                             "--iterates gives the recorded path")
    parser.add_argument("--iterates", metavar="PATH", type=plain("existing_file", str),
                        help="with --load: the recorded iterates (.npy, rows of parameters, the "
                             "first the initial point)")
    parser.add_argument("--out", default="landscape-report", metavar="DIR",
                        help="the report folder (default landscape-report)")
    parser.add_argument("--optimizer", choices=optimizer_names(), default="adam", metavar="NAME",
                        help="optimizer of the training run (default adam)")
    parser.add_argument("--lr", type=plain("positive_float", float),
                        help="learning rate (default: one per optimizer)")
    parser.add_argument("--epochs", type=plain("positive_int", int), default=10,
                        help="default 10")
    parser.add_argument("--batch-size", type=plain("batch_size", int), default=32,
                        help="rows per step; 0: full batch (default 32)")
    parser.add_argument("--widths", type=plain("widths", str), default=[64],
                        help="hidden layer widths, comma-separated (default 64)")
    parser.add_argument("--record-every", type=plain("positive_int", int), default=5,
                        help="record the parameters every this many steps (default 5)")
    parser.add_argument("--grid", type=plain("positive_int", int), default=21,
                        help="points per side of the planes (default 21)")
    parser.add_argument("--points", type=plain("positive_int", int), default=81,
                        help="points of the interpolation and the line (default 81)")
    parser.add_argument("--backend", choices=["cpu", "c", "numpy", "cuda"],
                        help="where the model runs (default: the first available of cpu, c, "
                             "numpy)")
    parser.add_argument("--formats", default="png,svg", type=plain("formats", str),
                        help="figure formats, comma-separated: png, svg (default png,svg)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initialization, the shuffling and the directions")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _widths(value):
    return [int(w) for w in value.split(",") if w.strip()] if isinstance(value, str) else value


def prepare_cli(args):
    """``(data, model, theta_init, iterates, steps)`` of the arguments: the model built (to be
    trained by :func:`run_cli`) or loaded, with the recorded iterates of ``--iterates`` (else
    ``None``); ``ValueError``/``OSError`` saying what is wrong."""
    from fastopt.nn.datasets import load
    from fastopt.nn.mlp import MLP

    data = load(args.data)
    if args.iterates and not args.load:
        raise ValueError("--iterates: goes with --load (a trained run records its own)")
    if args.load:
        model = MLP.load(args.load, backend=args.backend)
        if model.sizes[0] != data.n_features or model.sizes[-1] != data.classes:
            raise ValueError(f"--load: the model {model.sizes} does not fit the data "
                             f"({data.n_features} features, {data.classes} classes)")
        if args.iterates:
            iterates = np.load(args.iterates, mmap_mode="r")
            if iterates.ndim != 2 or iterates.shape[1] != model.num_params or not len(iterates):
                raise ValueError(f"--iterates: expected rows of {model.num_params} parameters "
                                 f"(the model's count), got shape {iterates.shape}")
            return data, model, np.asarray(iterates[0], np.float64), iterates, None
        fresh = MLP(model.sizes, model.activation, "he", model.dtype, model.backend, args.seed,
                    model.loss_name)
        return data, model, fresh.get_params(), None, None
    model = MLP([data.n_features, *_widths(args.widths), data.classes], dtype=np.float32,
                backend=args.backend, seed=args.seed)
    return data, model, model.get_params(), None, None


def _train(args, data, model, out):
    from fastopt.nn.train import make_optimizer, train

    optimizer = make_optimizer(args.optimizer, [model.params], args.lr, model.backend)
    start = time.perf_counter()
    history = train(model, optimizer, data.X_train, data.y_train, epochs=args.epochs,
                    batch_size=args.batch_size or None, eval_data=(data.X_test, data.y_test),
                    seed=args.seed, progress=False if args.no_progress else None,
                    record_every=args.record_every,
                    record_to=os.path.join(out, "iterates.npy"))
    seconds = time.perf_counter() - start
    return history, optimizer, seconds


def run_experiments(model, data, theta_init, iterates, steps=None, grid=21, points=81, seed=0,
                    progress=None, timings=None):
    """Every experiment of the report as :class:`~fastopt.landscape.report.Section` s, on the
    model's current parameters (the final point) and ``theta_init``."""
    from fastopt import landscape as L
    from fastopt.landscape import plots
    from fastopt.landscape.report import Section

    timings = {} if timings is None else timings
    final = model.get_params().astype(np.float64)
    train, test = (data.X_train, data.y_train), (data.X_test, data.y_test)
    sections = []

    def timed(name, call):
        start = time.perf_counter()
        result = call()
        timings[name] = time.perf_counter() - start
        return result

    curve = timed("interpolation", lambda: L.interpolate(
        model, theta_init, final, *train, np.linspace(-0.5, 1.5, points), test=test,
        progress=progress))
    sections.append(Section(
        "interpolation", "Linear interpolation (Goodfellow et al.)",
        "Loss and 0-1 error at θ_init + α (θ_final − θ_init), train and test: α = 0 is the "
        "initialization, α = 1 the trained network.", curve, [("", plots.plot_line)]))
    if iterates is not None and np.any(final != theta_init):
        projection = timed("projection", lambda: L.project(theta_init, final, iterates, steps))
        sections.append(Section(
            "projection", "The training path against the straight line (α, β)",
            "Each recorded iterate's progress α along the unit vector from θ_init to θ_final and "
            "its distance β from that line, colored by step.", projection,
            [("", plots.plot_projection)]))
    xs = np.linspace(-1.0, 1.0, grid)
    d = L.directions(model, seed=seed, center=final)
    surface = timed("plane", lambda: L.plane(model, *train, d, xs, xs, center=final,
                                             trajectory=iterates, progress=progress))
    sections.append(Section(
        "plane", "Filter-normalized random plane around the trained network (Li et al.)",
        "Train loss at θ_final + x d1 + y d2, d1 and d2 Gaussian directions with each filter "
        "scaled to the norm of the network's filter, biases zero; the recorded iterates "
        "projected on the plane (least squares).", surface,
        [("", plots.plot_plane), ("surface", plots.plot_surface)]))
    if np.any(final != theta_init):
        toward = L.Directions(np.stack([theta_init - final, _orthogonal(d[0], theta_init - final)]),
                              seed, "filter", "zero", True)
        ts = np.linspace(-0.25, 1.25, grid)
        path_plane = timed("trajectory plane", lambda: L.plane(
            model, *train, toward, ts, xs, center=final, trajectory=iterates,
            progress=progress))
        path_plane.meta["experiment"] = "trajectory_plane"
        sections.append(Section(
            "trajectory_plane", "The plane of the initialization and a random direction",
            "Train loss at θ_final + x (θ_init − θ_final) + y d, d the first random direction "
            "made orthogonal to θ_init − θ_final: x = 1 is the initialization, and the path of "
            "the iterates shows.", path_plane, [("", plots.plot_plane)]))
    along = timed("line", lambda: L.line(model, *train, d, np.linspace(-1, 1, points),
                                         center=final, test=test, progress=progress))
    sections.append(Section(
        "line", "A filter-normalized random direction",
        "Loss and 0-1 error at θ_final + x d1, train and test.", along,
        [("", plots.plot_line)]))
    scaled = timed("scaled last layer", lambda: L.scaled_last_layer(
        model, *train, np.linspace(0.0, 3.0, 201), center=final))
    sections.append(Section(
        "scaled_last_layer", "The output layer scaled by c",
        "Train loss and 0-1 error with the output layer's weights and bias multiplied by c "
        "(one forward pass: the outputs are linear in c).", scaled,
        [("", plots.plot_scaled_last_layer)]))
    if np.any(final != theta_init):
        path = timed("monotone path", lambda: L.monotone_path(
            model, theta_init, final, *train, np.linspace(0.0, 1.0, 51)))
        sections.append(Section(
            "monotone_path", "Safran & Shamir's monotone path",
            "For each point of the straight path, the scale c of the output layer at which the "
            "loss meets a target going linearly from the initial to the final loss; where no c "
            "reaches it, the point is marked.", path, [("", plots.plot_monotone_path)]))
    return sections


def _orthogonal(d, u):
    """``d`` made orthogonal to ``u``, keeping its norm."""
    r = d - (d @ u) / (u @ u) * u
    return r * (np.linalg.norm(d) / np.linalg.norm(r))


def run_cli(args, prepared=None):
    """Runs ``fastopt landscape``: prints what it does and where the report went."""
    from fastopt.landscape.report import write_report

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    total = time.perf_counter()
    data, model, theta_init, iterates, steps = prepared or prepare_cli(args)
    os.makedirs(args.out, exist_ok=True)
    print(f"{data}\n{model}")
    meta = {"data": repr(data), "model": repr(model), "seed": args.seed}
    if args.load:
        meta["loaded from"] = args.load
        if args.iterates:
            meta["iterates from"] = args.iterates
            steps = np.arange(len(iterates))
    else:
        history, optimizer, seconds = _train(args, data, model, args.out)
        iterates, steps = history.iterates, history.iterate_steps
        e = history.epoch
        print(f"trained {args.epochs} epochs in {seconds:.2f} s: test accuracy "
              f"{1 - e['test_error'][-1]:.2%}; {len(iterates)} iterates recorded in "
              f"{os.path.join(args.out, 'iterates.npy')}")
        meta.update({"optimizer": repr(optimizer), "epochs": args.epochs,
                     "batch size": args.batch_size or "full", "training seconds": seconds,
                     "final train loss": e["train_loss"][-1],
                     "final test accuracy": 1 - e["test_error"][-1],
                     "iterates": f"{len(iterates)} (every {args.record_every} steps), "
                                 "iterates.npy"})
    progress = False if args.no_progress else None
    timings = {}
    sections = run_experiments(model, data, theta_init, iterates, steps, args.grid, args.points,
                               args.seed, progress, timings)
    meta["evaluation seconds"] = {k: round(v, 4) for k, v in timings.items()}
    for name, seconds in timings.items():
        print(f"  {name:<18} {seconds:8.3f} s")
    index = write_report(args.out, "fastopt loss landscape", meta, sections, formats)
    print(f"wrote {index} ({len(sections)} experiments, figures as {', '.join(formats)}) in "
          f"{time.perf_counter() - total:.1f} s")
    sys.stdout.flush()
    return 0
