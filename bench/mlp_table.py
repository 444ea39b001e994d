"""MLP benchmark table: dense-layer GFLOP/s against numpy's BLAS product, and the whole training
step (forward, softmax cross-entropy, backward, Adam) against PyTorch eager and hand-written
numpy+BLAS.

Run ``python bench/mlp_table.py`` (``--quick`` for short measurements, ``--json PATH`` to keep the
numbers). ``bench/test_mlp_bench.py`` times the same callables with pytest-benchmark.

What is timed (float32, all on the host; threads: each library's default, every core, unless
``--threads N`` pins numpy's BLAS, torch, numba and OpenMP to N; on a machine shared with other
work, ``--threads 1`` gives the steadiest comparison):

- ``dense``: one fused dense forward (``x @ w + b``, identity) of each backend, and ``np.matmul``
  on the same shapes; GFLOP/s = 2 * rows * fan_in * fan_out / time.
- ``torch eager``: ``nn.Sequential`` of ``Linear``/``ReLU``, ``F.cross_entropy``, ``zero_grad``,
  ``backward``, ``torch.optim.Adam`` (its default implementation on CPU).
- ``numpy+BLAS``: the same step written by hand with numpy (matrix products through BLAS, in-place
  elementwise work, Adam over each array).
- ``fastopt <backend>``: ``model._loss_and_grad`` (the kernels that ``fastopt.train`` runs per step,
  data checked once beforehand) then ``optimizer.step([model.grads])``, one Adam kernel over the
  flat parameter vector.
- ``fused <backend>``: one epoch of 64 steps in one compiled call (the backend's ``train_epoch``:
  shuffled batch gather, forward, backward, gradient norm, the Adam kernel of the backend's
  optimizer family), time per step.

Each figure is the median of several rounds (``--repeat``), each the mean time of one call over
many calls; the callables of one row are measured in interleaved rounds (see
:func:`measure_interleaved`), so the ratios within a row are the comparison to trust on a shared
machine.
"""

import argparse
import json
import statistics
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastopt  # noqa: E402
from fastopt._core import dispatch as _dispatch  # noqa: E402
from fastopt.nn.mlp import MLP  # noqa: E402
from fastopt.nn.reference import IDENTITY  # noqa: E402

#: (name, layer sizes, batch) of the training-step comparison.
NETWORKS = [("784-128-10", [784, 128, 10], 128), ("64-256-256-10", [64, 256, 256, 10], 256),
            ("64-64-10", [64, 64, 10], 64)]
#: (rows, fan_in, fan_out) of the dense-layer comparison: every layer of NETWORKS.
DENSE_SHAPES = sorted({(batch, a, b) for _, sizes, batch in NETWORKS
                       for a, b in zip(sizes[:-1], sizes[1:])}, key=lambda s: -np.prod(s))
FUSED_STEPS = 64


def measure(fn, seconds=0.3, repeat=5):
    """Median over ``repeat`` rounds of the mean time of one call, each round about
    ``seconds / repeat`` long (after one warm-up call)."""
    return measure_interleaved({"fn": fn}, seconds, repeat)["fn"]


#: Pause before each round of :func:`measure_interleaved`: the thread pools of the library measured
#: just before (OpenBLAS's, torch's, OpenMP's) keep spinning for a while after their last call,
#: and on a 2-CPU machine a spinning thread takes the core the next library's second thread needs.
SETTLE_SECONDS = 0.2


def measure_interleaved(fns, seconds=0.3, repeat=5, settle=SETTLE_SECONDS):
    """``{name: median time of one call}`` of the callables ``fns``, measured in ``repeat``
    rounds that each time every callable once (about ``seconds / repeat`` each, after a pause of
    ``settle`` seconds) in turn: on a machine shared with other work, a slow spell then falls on
    all of them alike instead of on whichever was being measured, so ratios within one run stay
    comparable."""
    numbers = {}
    for name, fn in fns.items():  # warm up, then size a round
        fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        numbers[name] = max(1, int(seconds / repeat / once))
    rounds = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            time.sleep(settle)
            fn()  # wakes this library's threads
            start = time.perf_counter()
            for _ in range(numbers[name]):
                fn()
            rounds[name].append((time.perf_counter() - start) / numbers[name])
    return {name: statistics.median(r) for name, r in rounds.items()}


def host_mlp_backends():
    out = []
    for b in _dispatch.available_backends():
        if b == "cuda":
            continue
        try:
            _dispatch.kernels(b, "mlp")
        except ImportError:
            continue
        out.append(b)
    return out


def batch_data(sizes, batch, seed=0, rows=None):
    rng = np.random.default_rng(seed)
    rows = batch if rows is None else rows
    return (rng.standard_normal((rows, sizes[0])).astype(np.float32),
            rng.integers(0, sizes[-1], rows).astype(np.int64))


def step_flops(sizes, batch):
    """Multiply-adds x 2 of a step: forward, dW of every layer, dX of all but the first."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * batch * (2 * sum(macs) + sum(macs[1:]))


# ------------------------------------------------------------------------------ dense layers

def make_dense(backend, shape, seed=0):
    rows, fan_in, fan_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, fan_in)).astype(np.float32)
    w = rng.standard_normal((fan_in, fan_out)).astype(np.float32)
    b = np.zeros(fan_out, np.float32)
    out = np.empty((rows, fan_out), np.float32)
    if backend == "numpy matmul":
        return lambda: np.matmul(x, w, out=out)
    k = _dispatch.kernels(backend, "mlp")
    pre = np.empty((0, fan_out), np.float32)
    return lambda: k.dense_forward(x, w, b, out, pre, IDENTITY)


# ------------------------------------------------------------------------------ training steps

def make_torch_step(sizes, batch):
    import torch

    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X, y = (torch.from_numpy(a) for a in batch_data(sizes, batch))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()

    return step


def make_numpy_step(sizes, batch, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """A training step as one would write it with numpy: BLAS products, in-place elementwise."""
    model = MLP(sizes, backend="numpy", seed=0)
    params = [p.copy() for p in model.param_arena.views]
    grads = [np.empty_like(p) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    X, y = batch_data(sizes, batch)
    rows = np.arange(batch)
    t = [0]
    layers = len(sizes) - 1

    def step():
        acts = [X]
        for layer in range(layers):
            z = acts[-1] @ params[2 * layer]
            z += params[2 * layer + 1]
            if layer < layers - 1:
                np.maximum(z, 0, out=z)
            acts.append(z)
        logits = acts[-1]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        total = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - np.log(e[rows, y])))  # noqa: F841
        d = e / total
        d[rows, y] -= 1
        d /= batch
        for layer in reversed(range(layers)):
            np.matmul(acts[layer].T, d, out=grads[2 * layer])
            np.sum(d, axis=0, out=grads[2 * layer + 1])
            if layer > 0:
                d = d @ params[2 * layer].T
                d *= acts[layer] > 0
        t[0] += 1
        step_size = lr / (1 - betas[0] ** t[0])
        bias2 = np.sqrt(1 - betas[1] ** t[0])
        for p, g, mi, vi in zip(params, grads, m, v):
            mi *= betas[0]
            mi += (1 - betas[0]) * g
            vi *= betas[1]
            vi += (1 - betas[1]) * g * g
            p -= step_size * mi / (np.sqrt(vi) / bias2 + eps)

    return step


def make_fastopt_step(sizes, batch, backend):
    model = MLP(sizes, backend=backend, seed=0)
    opt = fastopt.Adam([model.params], lr=1e-3, backend=backend)
    X, y = batch_data(sizes, batch)
    X, y = model._check(X, y)

    def step():
        model._loss_and_grad(X, y)
        opt.step([model.grads])

    return step


def make_fused_epoch(sizes, batch, backend="cpu", steps=FUSED_STEPS):
    """One compiled epoch of ``steps`` Adam steps; call it and divide by ``steps``."""
    from fastopt.nn.train import _FusedEpochs

    model = MLP(sizes, backend=backend, seed=0)
    opt = fastopt.Adam([model.params], lr=1e-3)
    X, y = batch_data(sizes, batch, rows=batch * steps)
    runner = _FusedEpochs(model, opt, batch)
    rng = np.random.default_rng(0)

    def epoch():
        runner.run(X, y, rng.permutation(len(X)), None, 0, None)

    return epoch


# ------------------------------------------------------------------------------------ tables

def dense_table(seconds, repeat=5):
    backends = host_mlp_backends()
    rows = []
    for shape in DENSE_SHAPES:
        flops = 2 * np.prod(shape)
        times = measure_interleaved({name: make_dense(name, shape)
                                     for name in ["numpy matmul", *backends]}, seconds, repeat)
        rows.append({"shape": "x".join(map(str, shape)),
                     **{name: flops / t / 1e9 for name, t in times.items()}})
    return rows


def step_table(seconds, repeat=5):
    backends = host_mlp_backends()
    rows = []
    for label, sizes, batch in NETWORKS:
        row = {"network": label, "batch": batch, "flops": step_flops(sizes, batch)}
        fns = {}
        try:
            fns["torch eager"] = make_torch_step(sizes, batch)
        except ImportError:
            row["torch eager"] = float("nan")
        fns["numpy+BLAS"] = make_numpy_step(sizes, batch)
        for b in backends:
            fns[f"fastopt {b}"] = make_fastopt_step(sizes, batch, b)
        fused = [b for b in backends if hasattr(_dispatch.kernels(b, "mlp"), "train_epoch")]
        for b in fused:
            fns[f"fused {b}"] = make_fused_epoch(sizes, batch, b)
        times = measure_interleaved(fns, seconds, repeat)
        for name, t in times.items():
            row[name] = t / FUSED_STEPS if name.startswith("fused") else t
        rows.append(row)
    return rows


def format_tables(dense, steps):
    lines = ["dense forward (x @ w + b), GFLOP/s, float32:"]
    names = [k for k in dense[0] if k != "shape"]
    lines.append(f"{'rows x in x out':<18}" + "".join(f"{n:>14}" for n in names))
    for row in dense:
        lines.append(f"{row['shape']:<18}" + "".join(f"{row[n]:>14.1f}" for n in names))
    lines.append("")
    lines.append("training step (forward, cross-entropy, backward, Adam), microseconds per step "
                 "(speed-up over torch eager), float32:")
    names = [k for k in steps[0] if k not in ("network", "batch", "flops")]
    lines.append(f"{'network':<15}{'batch':>6}" + "".join(f"{n:>19}" for n in names))
    for row in steps:
        torch_time = row["torch eager"]
        cells = []
        for n in names:
            us = row[n] * 1e6
            cells.append(f"{us:>9.1f} ({torch_time / row[n]:>5.2f}x)")
        lines.append(f"{row['network']:<15}{row['batch']:>6}" + "".join(f"{c:>19}" for c in cells))
    lines.append("")
    lines.append("training step GFLOP/s (2 x multiply-adds of forward, dW, dX):")
    for row in steps:
        cells = "  ".join(f"{n} {row['flops'] / row[n] / 1e9:.1f}" for n in names)
        lines.append(f"  {row['network']:<15}{cells}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.1 s per measurement")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--repeat", type=int, default=5,
                        help="rounds per measurement, interleaved across the callables compared "
                             "(the figure is their median)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--only", choices=["dense", "steps"], help="one table only")
    parser.add_argument("--threads", type=int,
                        help="threads for every library (numpy's BLAS, torch, numba, OpenMP); "
                             "re-runs this script with the environment variables set")
    args = parser.parse_args(argv)
    if args.threads and os.environ.get("FASTOPT_BENCH_THREADS") != str(args.threads):
        env = dict(os.environ, FASTOPT_BENCH_THREADS=str(args.threads))
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS"):
            env[name] = str(args.threads)
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)
    seconds = 0.1 if args.quick else args.seconds
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    print(f"fastopt MLP benchmark; {os.cpu_count()} CPUs; torch threads: {threads}; "
          f"backends: {', '.join(host_mlp_backends())}", flush=True)
    dense = dense_table(seconds, args.repeat) if args.only != "steps" else [{"shape": "-"}]
    steps = step_table(seconds, args.repeat) if args.only != "dense" else None
    if steps is None:
        print(format_tables(dense, [{"network": "-", "batch": 0, "flops": 0,
                                     "torch eager": 1.0}]).split("\n\n")[0])
    else:
        print(format_tables(dense, steps) if args.only != "steps" else
              format_tables([{"shape": "-"}], steps).split("\n\n", 1)[1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dense_gflops": dense, "step_seconds": steps}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
