"""pytest-benchmark suite: one functional step per optimizer × backend × size.

Run with ``make bench`` (or ``pytest bench --benchmark-enable``). Each group is one optimizer at one
size; the numpy reference is in every group as the baseline. ``extra_info`` records the bytes moved,
so GB/s = bytes / median. Sizes: ``FASTOPT_BENCH_SIZES`` (comma-separated), default 1e3,1e5,1e6.
"""

import os

import numpy as np
import pytest

from fastopt import _algorithms, _memory, available_backends, functional
from fastopt.benchmark import CONFIGS, bytes_per_step

SIZES = [int(float(s)) for s in os.environ.get("FASTOPT_BENCH_SIZES", "1e3,1e5,1e6").split(",")]


def _synchronize(backend):
    if backend == "cuda":
        from numba import cuda

        cuda.synchronize()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("label,name,options", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("backend", available_backends())
def test_step(benchmark, backend, label, name, options, n):
    if backend == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator says nothing about speed")
    dtype = np.float32
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = algorithm.check({**algorithm.defaults, **options})
    on_device = backend == "cuda"
    rng = np.random.default_rng(0)
    param = _memory.from_host(on_device, rng.standard_normal(n).astype(dtype))
    grad = _memory.from_host(on_device, (rng.standard_normal(n) * 1e-3).astype(dtype))
    state = [_memory.full(on_device, n, dtype, algorithm.initial_state(hyper, s))
             for s in algorithm.state]
    step = getattr(functional, name)
    counter = iter(range(1, 10**9))

    def one_step():
        step(param, grad, *state, step=next(counter), backend=backend, **options)
        _synchronize(backend)

    benchmark.group = f"{label} n={n}"
    benchmark.extra_info["bytes_per_step"] = bytes_per_step(name, options, n, dtype)
    benchmark.extra_info["baseline"] = backend == "numpy"
    benchmark(one_step)
