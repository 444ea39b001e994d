"""Timing of optimizer steps: median of warmed-up repeats, reported as time, params/s and GB/s.

Bytes moved per step count each array once: every array the step reads (param, grad, used state)
and every array it writes (param, used state), which is the traffic of one pass over memory.
"""

import itertools
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import _algorithms, _memory, functional
from ._dispatch import available_backends

#: (row label, optimizer, options): each optimizer in its default configuration, plus momentum SGD.
CONFIGS = [
    ("sgd", "sgd", {}),
    ("sgd momentum", "sgd", {"momentum": 0.9}),
    ("adagrad", "adagrad", {}),
    ("rmsprop", "rmsprop", {}),
    ("adam", "adam", {}),
    ("adamw", "adamw", {}),
]


@dataclass
class Result:
    optimizer: str
    backend: str
    dtype: str
    n: int
    median_s: float
    bytes_per_step: int

    @property
    def params_per_s(self):
        return self.n / self.median_s

    @property
    def gb_per_s(self):
        return self.bytes_per_step / self.median_s / 1e9

    def as_dict(self):
        return {**asdict(self), "params_per_s": self.params_per_s, "gb_per_s": self.gb_per_s}


def bytes_per_step(name, options, n, dtype):
    algorithm = _algorithms.ALGORITHMS[name]
    used = sum(algorithm.uses(algorithm.check({**algorithm.defaults, **options})))
    return (3 + 2 * used) * n * np.dtype(dtype).itemsize


def _synchronize(backend):
    if backend == "cuda":
        from numba import cuda

        cuda.synchronize()


def make_step(name, options, backend, n, dtype=np.float32):
    """A closure running one functional step (step count 1, 2, ...) on fresh arrays of size ``n``,
    synchronized on CUDA so that timing it times the kernel."""
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = algorithm.check({**algorithm.defaults, **options})
    on_device = backend == "cuda"
    rng = np.random.default_rng(0)
    param = _memory.from_host(on_device, rng.standard_normal(n).astype(dtype))
    grad = _memory.from_host(on_device, (rng.standard_normal(n) * 1e-3).astype(dtype))
    state = [_memory.full(on_device, n, dtype, algorithm.initial_state(hyper, s))
             for s in algorithm.state]
    step = getattr(functional, name)
    counter = itertools.count(1)

    def one_step():
        step(param, grad, *state, step=next(counter), backend=backend, **options)
        _synchronize(backend)

    return one_step


def time_step(name, options, backend, n, dtype=np.float32, repeat=10, warmup=3, label=None):
    """Median wall time of one functional step of ``name`` over ``n`` parameters."""
    one_step = make_step(name, options, backend, n, dtype)
    times = []
    for _ in range(warmup + repeat):
        start = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - start)
    return Result(label or name, backend, np.dtype(dtype).name, n,
                  statistics.median(times[warmup:]), bytes_per_step(name, options, n, dtype))


def copy_bandwidth(n, dtype=np.float32, repeat=10):
    """GB/s of ``numpy.copyto`` over ``n`` elements (read + write), a bandwidth yardstick."""
    src = np.ones(n, dtype)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeat + 2):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / statistics.median(times[2:]) / 1e9


def run(n, dtype=np.float32, backends=None, repeat=10, progress=None):
    """Every configuration on every backend; returns the list of :class:`Result`."""
    results = []
    for backend in backends or available_backends():
        for label, name, options in CONFIGS:
            result = time_step(name, options, backend, n, dtype, repeat, label=label)
            results.append(result)
            if progress:
                progress(result)
    return results


def format_table(results, copy_gb_per_s=None):
    header = f"{'optimizer':<14}{'backend':<9}{'dtype':<9}{'N':>11}{'median ms':>11}" \
             f"{'Mparams/s':>11}{'GB/s':>8}"
    lines = [header, "-" * len(header)]
    for r in results:
        ratio = f"{r.gb_per_s / copy_gb_per_s:>8.2f}" if copy_gb_per_s else ""
        lines.append(f"{r.optimizer:<14}{r.backend:<9}{r.dtype:<9}{r.n:>11,}"
                     f"{r.median_s * 1e3:>11.3f}{r.params_per_s / 1e6:>11.1f}{r.gb_per_s:>8.2f}"
                     + ratio)
    if copy_gb_per_s:
        lines[0] += f"{'/copy':>8}"
        lines[1] += "-" * 8
        lines.append(f"numpy copy (read+write) on this machine: {copy_gb_per_s:.2f} GB/s")
    return "\n".join(lines)
