"""The dynamics section: the experiments of :mod:`fastopt.dynamics` against the way they are
usually run.

- zoo: :func:`fastopt.zoo.run` of 11 optimizers × 50 learning rates × 10 starts × 1,000 steps
  on Rosenbrock in one call per optimizer family, against ``torch.optim`` loops (one optimizer,
  one learning rate, one start per loop, autograd for the gradient) timed on a subset and scaled
  to the same number of runs;
- entk: the closed-form empirical NTK of a 784-1024-10 MLP on 64 examples
  (:func:`fastopt.wide.ntk_one_hidden`) against the ``torch.func`` recipe (``vmap(jacrev)``, then
  the Jacobians' products), with the Jacobian's size as the recipe's memory;
- lanczos: the Hessian-vector products that :func:`fastopt.curvature.lanczos` needs for the top
  eigenvalue of a 784-128-10 MLP on 2,000 examples to 1e-3 relative residual, against power
  iteration to the same residual (at most 200 products);
- noise: the cost of ``fastopt.train(..., track_noise_every=k)`` on the digits MLP (64-64-10,
  Adam, batch 32) for k = 1 and 10 over the same training without it, the estimates computed
  inside the compiled epoch, and beside it the step-by-step loop that records them from each
  step's buffers (``fused=False``), on each host backend with a compiled epoch; the epochs of
  the four configurations interleaved, medians.

``small=True`` runs every case at toy sizes (to check the section runs).
"""

import time

import numpy as np

from fastopt.dynamics.zoo import DEFAULT_OPTIMIZERS

FULL = dict(zoo=(11, 50, 10, 1000), zoo_torch=(3, 2, 2), entk=((784, 1024, 10), 64),
            lanczos=((784, 128, 10), 2000), noise=(None, 15))
SMALL = dict(zoo=(3, 4, 2, 50), zoo_torch=(2, 1, 1), entk=((20, 32, 3), 8),
             lanczos=((20, 16, 3), 100), noise=(200, 2))

#: fastopt zoo preset -> (torch.optim class name, keyword arguments)
_TORCH = {"sgd": ("SGD", {}), "momentum": ("SGD", {"momentum": 0.9}),
          "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}), "adagrad": ("Adagrad", {}),
          "rmsprop": ("RMSprop", {}), "adam": ("Adam", {}), "adamax": ("Adamax", {}),
          "nadam": ("NAdam", {}), "radam": ("RAdam", {}), "adadelta": ("Adadelta", {})}


def _timed(f):
    start = time.perf_counter()
    out = f()
    return time.perf_counter() - start, out


def zoo_case(optimizers, lrs, starts, steps, torch_subset):
    """``{"runs", "steps", "fastopt_s", "torch_s" (scaled), "speedup"}``."""
    from fastopt.dynamics import zoo

    names = DEFAULT_OPTIMIZERS[:optimizers]
    lr_grid = np.geomspace(1e-4, 1e-1, lrs)
    points = np.random.default_rng(0).uniform([-2, -1], [2, 3], (starts, 2))
    zoo.run("rosenbrock", names, lr_grid, points, steps=2)  # compiles (or loads) the kernels
    fastopt_s, _ = _timed(lambda: zoo.run("rosenbrock", names, lr_grid, points, steps=steps))
    out = {"runs": len(names) * lrs * starts, "steps": steps, "fastopt_s": fastopt_s}
    try:
        import torch
    except ImportError:
        return {**out, "torch_s": None, "speedup": None, "note": "torch not installed"}
    subset = [n for n in names if n in _TORCH][:torch_subset[0]]
    runs = 0

    def torch_loops():
        nonlocal runs
        for name in subset:
            cls, kwargs = _TORCH[name]
            for lr in lr_grid[:torch_subset[1]]:
                for start in points[:torch_subset[2]]:
                    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
                    opt = getattr(torch.optim, cls)([p], lr=float(lr), **kwargs)
                    for _ in range(steps):
                        opt.zero_grad()
                        x, y = p[0], p[1]
                        loss = (1 - x) ** 2 + 100 * (y - x * x) ** 2
                        loss.backward()
                        opt.step()
                    runs += 1

    torch_loops()  # warm-up: torch's first calls (dispatch, autograd) are slow
    runs = 0
    torch_s, _ = _timed(torch_loops)
    scaled = torch_s / runs * out["runs"]
    return {**out, "torch_runs_timed": runs, "torch_s": scaled, "speedup": scaled / fastopt_s}


def entk_case(sizes, n):
    """``{"fastopt_s", "torch_s", "speedup", "jacobian_bytes", "max_abs_diff"}``."""
    from fastopt.dynamics import wide

    X = np.random.default_rng(0).standard_normal((n, sizes[0]))
    model = wide.make_model(list(sizes), "standard", "relu", seed=0)
    wide.ntk_one_hidden(model, X[:2])  # warm
    fastopt_s, K = _timed(lambda: wide.ntk_one_hidden(model, X))
    out = {"sizes": list(sizes), "rows": n, "fastopt_s": fastopt_s,
           "jacobian_bytes": n * sizes[-1] * model.num_params * 8}
    try:
        import torch
        from torch.func import functional_call, jacrev, vmap
    except ImportError:
        return {**out, "torch_s": None, "speedup": None, "note": "torch not installed"}
    from fastopt.dynamics import network

    (w1, b1), (w2, b2) = network.layers(model)
    net = torch.nn.Sequential(torch.nn.Linear(sizes[0], sizes[1]), torch.nn.ReLU(),
                              torch.nn.Linear(sizes[1], sizes[2])).double()
    params = {"0.weight": torch.tensor(w1.T.copy()), "0.bias": torch.tensor(b1.copy()),
              "2.weight": torch.tensor(w2.T.copy()), "2.bias": torch.tensor(b2.copy())}
    x = torch.tensor(X)

    def recipe():
        # the torch.func tutorial's empirical NTK: Jacobians by vmap(jacrev), then their products
        jac = vmap(jacrev(lambda p, xi: functional_call(net, p, (xi[None],))[0]),
                   (None, 0))(params, x)
        flat = [j.reshape(n, sizes[-1], -1) for j in jac.values()]
        return sum(torch.einsum("Naf,Mbf->NaMb", j, j) for j in flat)

    torch_s, Kt = _timed(recipe)
    diff = float(np.abs(Kt.reshape(K.shape).numpy() - K).max())
    return {**out, "torch_s": torch_s, "speedup": torch_s / fastopt_s, "max_abs_diff": diff}


def lanczos_case(sizes, n, tol=1e-3):
    """``{"lanczos_products", "power_products", "value", "seconds"}`` at initialization on
    random rows and labels."""
    import fastopt
    from fastopt.dynamics import curvature

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, sizes[0])), rng.integers(0, sizes[-1], n)
    model = fastopt.MLP(list(sizes), dtype=np.float64, seed=0, backend="numpy")
    H = curvature.Hessian(model, X, y)
    seconds, top = _timed(lambda: curvature.lanczos(H, tol=tol))
    power = curvature.power_iteration(H, tol=tol, max_products=200)
    return {"sizes": list(sizes), "rows": n, "tol": tol, "value": top.value,
            "residual": top.residual, "lanczos_products": top.products, "seconds": seconds,
            "power_products": power.products, "power_value": power.value}


#: The noise case's configurations: name -> keyword arguments of fastopt.train.
NOISE_RUNS = {"none": {}, "every 1": {"track_noise_every": 1},
              "every 10": {"track_noise_every": 10},
              "every 1, step by step": {"track_noise_every": 1, "fused": False}}


def noise_case(rows, repeat):
    """Per host backend with a compiled epoch: the median seconds of one epoch of each of
    :data:`NOISE_RUNS` (digits MLP, Adam, batch 32; ``rows`` training rows, all by default)."""
    import fastopt
    from fastopt.nn.datasets import load_digits

    data = load_digits()
    X, y = data.X_train[:rows], data.y_train[:rows]
    out = {}
    for backend in ("cpu", "c"):
        if backend not in fastopt.available_backends():
            continue
        times = {name: [] for name in NOISE_RUNS}
        for round_ in range(repeat + 1):  # the first round compiles and warms up
            for name, options in NOISE_RUNS.items():
                model = fastopt.MLP([64, 64, 10], seed=0, backend=backend)
                opt = fastopt.Adam([model.params], lr=1e-3, backend=backend)
                seconds, _ = _timed(lambda: fastopt.train(model, opt, X, y, epochs=1,
                                                          batch_size=32, progress=False,
                                                          **options))
                if round_:
                    times[name].append(seconds)
        out[backend] = {name: float(np.median(t)) for name, t in times.items()}
    return {"rows": len(y), "backends": out}


def dynamics(small=False, progress=None):
    """The three cases at :data:`FULL` (or :data:`SMALL`) sizes, as a dict by case."""
    sizes = SMALL if small else FULL
    say = progress or (lambda what: None)
    say("dynamics: zoo")
    out = {"zoo": zoo_case(*sizes["zoo"], sizes["zoo_torch"])}
    say("dynamics: empirical NTK")
    out["entk"] = entk_case(*sizes["entk"])
    say("dynamics: Lanczos")
    out["lanczos"] = lanczos_case(*sizes["lanczos"])
    say("dynamics: noise tracking")
    out["noise"] = noise_case(*sizes["noise"])
    return out


def format_dynamics(d):
    """The section as text lines."""
    def x(v):
        return "-" if v is None else f"{v:,.0f}x"

    z, e, l = d["zoo"], d["entk"], d["lanczos"]
    lines = ["dynamics:",
             f"  zoo: {z['runs']:,} runs x {z['steps']:,} steps on Rosenbrock in "
             f"{z['fastopt_s']:.3f} s; torch.optim loops (scaled from "
             f"{z.get('torch_runs_timed', 0)} runs) "
             + ("-" if z["torch_s"] is None else f"{z['torch_s']:.1f} s") + f": {x(z['speedup'])}",
             f"  empirical NTK {'-'.join(map(str, e['sizes']))} on {e['rows']} rows: closed form "
             f"{e['fastopt_s'] * 1e3:.1f} ms; torch.func recipe "
             + ("-" if e["torch_s"] is None else f"{e['torch_s'] * 1e3:.0f} ms") + ": "
             + x(e["speedup"]) + f" (its Jacobian alone {e['jacobian_bytes'] / 2**30:.2f} GiB)",
             f"  top Hessian eigenvalue {'-'.join(map(str, l['sizes']))} on {l['rows']} rows: "
             f"{l['value']:.4g}, residual {l['residual']:.1e} in {l['lanczos_products']} "
             f"Hessian-vector products ({l['seconds']:.2f} s); power iteration "
             f"{l['power_products']} products"]
    noise = d.get("noise", {"backends": {}})
    for backend, t in noise["backends"].items():
        base = t["none"]
        costs = ", ".join(f"{name} {100 * (t[name] / base - 1):+.0f}%" for name in NOISE_RUNS
                          if name != "none")
        lines.append(f"  noise tracking, digits 64-64-10 ({noise['rows']:,} rows, Adam, batch "
                     f"32), {backend}: epoch {base * 1e3:.1f} ms; {costs}")
    return "\n".join(lines)
