"""The landscape section: :mod:`fastopt.landscape`'s batched evaluation against per-point loops.

The per-point loops are written as the loss-landscape tools write them (tomgoldstein/loss-landscape,
``loss-landscapes``): for every grid point, load the parameters into the network, then forward the
whole data set and compute the loss and the 0-1 error; in PyTorch (``vector_to_parameters``, then
the module under ``torch.no_grad``) and in plain numpy. Their time per point is measured on a row of
the grid and multiplied by the number of points.

Cases (each a ratio in one run):

- a 21 x 21 filter-normalized plane of a 784-128-10 ReLU MLP on 2,000 synthetic rows and of the
  digits MLP (64-64-10 on the 1,438 training rows), on each host backend, against both loops;
- the 51 x 51 plane against the 21 x 21 one;
- Goodfellow's 101-point interpolation plus the α/β projection of 1,000 iterates against one
  training epoch of the same model (digits, Adam, batch 32);
- the scaled last layer at 201 values of c against one forward pass.
"""

import numpy as np

from fastopt.bench.timing import median_time

__all__ = ["landscape", "format_landscape"]


def _synthetic(rows=2000, features=784, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, features)).astype(np.float32),
            rng.integers(0, classes, rows))


def _numpy_loop(model, X, y, center, d1, d2, coords):
    """Per point: unflatten the parameters, forward the whole set, cross-entropy and error."""
    shapes, offsets = model.param_arena.shapes, model.param_arena.offsets
    out = []
    for a, b in coords:
        theta = (center + a * d1 + b * d2).astype(np.float32)
        arrays = [theta[o:o + int(np.prod(s))].reshape(s) for o, s in zip(offsets, shapes)]
        h = X
        for layer in range(0, len(arrays), 2):
            h = h @ arrays[layer] + arrays[layer + 1]
            if layer + 2 < len(arrays):
                h = np.maximum(h, 0)
        shifted = h - h.max(axis=1, keepdims=True)
        loss = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y])
        out.append((loss, np.mean(h.argmax(axis=1) != y)))
    return out


def _torch_loop(model, X, y, center, d1, d2, coords):
    """``None`` without torch, else a callable running the per-point loop in PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    layers = []
    for k, (fan_in, fan_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if k + 2 < len(model.sizes):
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).eval()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(np.asarray(y, np.int64))

    def to_torch_order(vector):  # fastopt's (in, out) weights to torch's (out, in)
        arena = model.param_arena
        parts = [vector[o:o + int(np.prod(s))].reshape(s) for o, s in zip(arena.offsets,
                                                                           arena.shapes)]
        return np.concatenate([p.T.ravel() if p.ndim == 2 else p for p in parts])

    c, e1, e2 = (torch.from_numpy(to_torch_order(v).astype(np.float32)) for v in (center, d1, d2))

    def run():
        out = []
        with torch.no_grad():
            for a, b in coords:
                torch.nn.utils.vector_to_parameters(c + a * e1 + b * e2, net.parameters())
                logits = net(Xt)
                loss = torch.nn.functional.cross_entropy(logits, yt).item()
                out.append((loss, (logits.argmax(dim=1) != yt).float().mean().item()))
        return out

    return run


def _plane_case(name, model, X, y, grid, repeat, max_s, loop_points):
    """One plane: fastopt's time, and the loops' times per point x grid points."""
    from fastopt import landscape as L

    d = L.directions(model, seed=0)
    xs = np.linspace(-1, 1, grid)
    fastopt_s = median_time(lambda: L.plane(model, X, y, d, xs, xs, progress=False),
                            repeat=repeat, warmup=1, max_s=max_s)
    center = model.get_params().astype(np.float64)
    coords = [(a, 0.5) for a in np.linspace(-1, 1, loop_points)]
    points = grid * grid
    rows = [{"case": f"{name}: {grid}x{grid} plane, {model.backend}", "seconds": fastopt_s}]
    loop = lambda: _numpy_loop(model, X, y, center, d[0], d[1], coords)
    per_point = median_time(loop, repeat=repeat, warmup=1, max_s=max_s) / loop_points
    rows[0]["numpy_loop_s"] = per_point * points
    torch_run = _torch_loop(model, X, y, center, d[0], d[1], coords)
    if torch_run is not None:
        rows[0]["torch_loop_s"] = median_time(torch_run, repeat=repeat, warmup=1,
                                              max_s=max_s) / loop_points * points
    return rows


def landscape(backends=None, repeat=5, max_s=10.0, grid=21, big_grid=51, loop_points=21,
              rows=2000, iterates=1000, line_points=101, cs=201, progress=None):
    """The section's rows: dicts with ``case``, ``seconds`` (fastopt) and the times compared
    with (``torch_loop_s``, ``numpy_loop_s``, or ``reference``/``reference_s``). The sizes are
    the section's (smaller ones only to check that it runs): ``grid`` and ``big_grid`` points a
    side, ``loop_points`` timed per loop, ``rows`` synthetic rows, ``iterates`` for α/β,
    ``line_points`` of the interpolation, ``cs`` values of c."""
    import fastopt
    from fastopt import landscape as L
    from fastopt.nn.datasets import load_digits

    host = [b for b in (backends or fastopt.available_backends()) if b != "cuda"] or ["numpy"]
    say = progress or (lambda what: None)
    X, y = _synthetic(rows)
    digits = load_digits()
    table = []
    for backend in host:
        say(f"landscape planes, {backend}")
        big = fastopt.MLP([784, 128, 10], seed=0, backend=backend)
        table += _plane_case(f"784-128-10, {rows:,} rows", big, X, y, grid, repeat, max_s,
                             loop_points)
        small = fastopt.MLP([64, 64, 10], seed=0, backend=backend)
        table += _plane_case(f"digits 64-64-10, {len(digits.y_train):,} rows", small,
                             digits.X_train, digits.y_train, grid, repeat, max_s, loop_points)

    backend = host[0]
    model = fastopt.MLP([784, 128, 10], seed=0, backend=backend)
    d = L.directions(model, seed=0)
    say(f"landscape: {big_grid}x{big_grid} against {grid}x{grid}")
    timed = lambda g: median_time(lambda: L.plane(model, X, y, d, np.linspace(-1, 1, g),
                                                  np.linspace(-1, 1, g), progress=False),
                                  repeat=repeat, warmup=1, max_s=max_s)
    table.append({"case": f"784-128-10: {big_grid}x{big_grid} plane, {backend}",
                  "seconds": timed(big_grid), "reference": f"{grid}x{grid} plane",
                  "reference_s": timed(grid), "target": 10.0})

    say("landscape: interpolation and alpha/beta against an epoch")
    small = fastopt.MLP([64, 64, 10], seed=0, backend=backend)
    start = small.get_params()
    end = start + L.directions(small, seed=1, count=1)[0]
    path = np.random.default_rng(0).standard_normal((iterates, small.num_params)).astype(
        np.float32)
    alphas = np.linspace(-0.5, 1.5, line_points)

    def line_and_projection():
        L.interpolate(small, start, end, digits.X_train, digits.y_train, alphas,
                      progress=False)
        L.project(start, end, path)

    def epoch():
        trained = small.copy()
        opt = fastopt.Adam([trained.params], lr=1e-3, backend=backend)
        fastopt.train(trained, opt, digits.X_train, digits.y_train, epochs=1, batch_size=32,
                      progress=False)

    table.append({"case": f"digits: {line_points}-point interpolation + alpha/beta of "
                          f"{iterates:,} iterates",
                  "seconds": median_time(line_and_projection, repeat=repeat, warmup=1,
                                         max_s=max_s),
                  "reference": "one training epoch (Adam, batch 32)",
                  "reference_s": median_time(epoch, repeat=repeat, warmup=1, max_s=max_s),
                  "target": 1.0})

    say("landscape: scaled last layer against a forward pass")
    scales = np.linspace(0, 3, cs)
    table.append({"case": f"784-128-10: scaled last layer, {cs} values of c",
                  "seconds": median_time(lambda: L.scaled_last_layer(model, X, y, scales),
                                         repeat=repeat, warmup=1, max_s=max_s),
                  "reference": "one forward pass", "target": 2.0,
                  "reference_s": median_time(lambda: model.forward(X), repeat=repeat,
                                             warmup=1, max_s=max_s)})
    return table


def format_landscape(rows):
    """The section as text: per plane, fastopt's time and how many times faster than each loop;
    per other case, its time as a multiple of its reference (with the target)."""
    lines = ["landscape (fastopt.landscape, batched, against per-point loops that load the "
             "parameters and forward the whole set; loops timed on a row of the grid, times "
             "per point x points):"]
    for r in rows:
        if "reference" in r:
            ratio = r["seconds"] / r["reference_s"]
            lines.append(f"  {r['case']:<66}{r['seconds'] * 1e3:>10.1f} ms = {ratio:6.2f} x "
                         f"{r['reference']} ({r['reference_s'] * 1e3:.1f} ms; target < "
                         f"{r['target']:g} x)")
        else:
            loops = "".join(f", x{r[k] / r['seconds']:.1f} vs the {name} loop"
                            for k, name in (("torch_loop_s", "torch"),
                                            ("numpy_loop_s", "numpy")) if k in r)
            lines.append(f"  {r['case']:<66}{r['seconds'] * 1e3:>10.1f} ms{loops}")
    return "\n".join(lines)
