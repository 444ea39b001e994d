"""pytest-benchmark suite: one functional step per optimizer × backend × size.

Run with ``make bench`` (or ``pytest bench --benchmark-enable``). Each group is one optimizer at one
size; the numpy reference is in every group as the baseline. ``extra_info`` records the bytes moved,
so GB/s = bytes / median. Sizes: ``FASTOPT_BENCH_SIZES`` (comma-separated), default 1e3,1e5,1e6.
"""

import os

import numpy as np
import pytest

from fastopt import available_backends
from fastopt.benchmark import CONFIGS, bytes_per_step, make_step

SIZES = [int(float(s)) for s in os.environ.get("FASTOPT_BENCH_SIZES", "1e3,1e5,1e6").split(",")]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("label,name,options", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("backend", available_backends())
def test_step(benchmark, backend, label, name, options, n):
    if backend == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator says nothing about speed")
    dtype = np.float32
    one_step = make_step(name, options, backend, n, dtype)
    benchmark.group = f"{label} n={n}"
    benchmark.extra_info["bytes_per_step"] = bytes_per_step(name, options, n, dtype)
    benchmark.extra_info["baseline"] = backend == "numpy"
    benchmark(one_step)
