"""pytest-benchmark suite: every optimizer × backend × size × dtype, with its yardsticks and peers.

Run with ``make bench`` (or ``pytest bench --benchmark-enable --benchmark-only``); add
``--benchmark-json=PATH`` to keep the numbers. Each group is one optimizer at one size and dtype and
holds:

- the fastopt backends, through a functional call and bound to their arrays
  (``fastopt.functional.bind``), the functional numpy reference being the baseline
  (``extra_info["baseline"]``);
- the same-traffic kernel of the step on ``cpu`` and ``c`` (``roofline cpu``, ``roofline c``),
  which reads and writes exactly the arrays the step does with trivial arithmetic;
- the peers that are installed: numpy as a user writes it, ``torch.optim`` default (on CPU, a loop
  over tensors), ``foreach=True`` and ``fused=True``.

Other groups: STREAM copy/triad per size, 10,000 tensors of 1,000 parameters through the optimizer
classes (list of arrays, flat arena) against one 10^7 tensor and torch, and the call overhead of a
10^3 step. ``extra_info["bytes_per_step"]`` records the bytes each case moves, so GB/s = bytes /
median. ``fastopt bench`` prints the same measurements as one table with the ratios.

Sizes: ``FASTOPT_BENCH_SIZES`` (comma-separated, default 1e3,1e4,...,1e8); dtypes:
``FASTOPT_BENCH_DTYPES`` (default float32,float64). A quick run:
``FASTOPT_BENCH_SIZES=1e5 FASTOPT_BENCH_DTYPES=float32 make bench``.
"""

import os

import numpy as np
import pytest

from fastopt import available_backends
from fastopt.bench.cases import (CONFIGS, Unsupported, bytes_per_step, make_bound_step,
                                 make_class_step, make_step, written_arrays)
from fastopt.bench.many import make_arena_step
from fastopt.bench.peers import PEERS, make_peer, make_torch_step
from fastopt.bench.timing import ROOFLINE_BACKENDS, make_same_traffic, roofline_kernels
from fastopt._core.threads import get_num_threads

SIZES = [int(float(s)) for s in
         os.environ.get("FASTOPT_BENCH_SIZES", "1e3,1e4,1e5,1e6,1e7,1e8").split(",")]
DTYPES = [np.dtype(d) for d in
          os.environ.get("FASTOPT_BENCH_DTYPES", "float32,float64").split(",")]
BACKENDS = available_backends()
HOST_ROOFLINE = [b for b in ROOFLINE_BACKENDS if b in BACKENDS]
MANY = (10_000, 1_000)  # tensors x parameters

config_params = pytest.mark.parametrize("label,name,options", CONFIGS,
                                        ids=[c[0] for c in CONFIGS])
size_params = pytest.mark.parametrize("n", SIZES)
dtype_params = pytest.mark.parametrize("dtype", DTYPES, ids=[d.name for d in DTYPES])


@pytest.fixture(scope="session", autouse=True)
def torch_threads_like_fastopt():
    """torch runs on as many threads as fastopt's host backends."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(get_num_threads())
    yield
    torch.set_num_threads(before)


def _group(label, dtype, n):
    return f"{label} {dtype.name} n={n:.0e}"


@size_params
@dtype_params
@config_params
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("api", ["functional", "bound"])
def test_step(benchmark, api, backend, label, name, options, dtype, n):
    """A functional step, or the same step bound to its arrays (``fastopt.functional.bind``)."""
    if backend == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator says nothing about speed")
    one_step = (make_step if api == "functional" else make_bound_step)(name, options, backend, n,
                                                                      dtype)
    benchmark.group = _group(label, dtype, n)
    benchmark.extra_info["bytes_per_step"] = bytes_per_step(name, options, n, dtype)
    benchmark.extra_info["baseline"] = backend == "numpy" and api == "functional"
    benchmark(one_step)


@size_params
@dtype_params
@config_params
@pytest.mark.parametrize("backend", HOST_ROOFLINE)
def test_same_traffic(benchmark, backend, label, name, options, dtype, n):
    """The step's roofline: the same arrays read and written, one multiply-add per element."""
    written = written_arrays(name, options)
    run = make_same_traffic(written, backend, n, dtype)
    benchmark.group = _group(label, dtype, n)
    benchmark.name = f"roofline {backend} (same traffic, {written} written)"
    benchmark.extra_info["bytes_per_step"] = (2 * written + 1) * n * dtype.itemsize
    benchmark.extra_info["roofline"] = True
    benchmark(run)


@size_params
@dtype_params
@config_params
@pytest.mark.parametrize("peer", PEERS)
def test_peer(benchmark, peer, label, name, options, dtype, n):
    try:
        run = make_peer(peer, name, options, n, dtype)
    except Unsupported as exc:
        pytest.skip(str(exc))
    benchmark.group = _group(label, dtype, n)
    benchmark.extra_info["bytes_per_step"] = bytes_per_step(name, options, n, dtype)
    benchmark.extra_info["peer"] = peer
    benchmark(run)


@size_params
@dtype_params
@pytest.mark.parametrize("kind", ["copy", "triad"])
@pytest.mark.parametrize("backend", HOST_ROOFLINE)
def test_stream(benchmark, backend, kind, dtype, n):
    kernels = roofline_kernels(backend)
    a, b, c = np.zeros(n, dtype), np.ones(n, dtype), np.full(n, 2.0, dtype)
    benchmark.group = _group("stream", dtype, n)
    if kind == "copy":
        benchmark.extra_info["bytes_per_step"] = 2 * n * dtype.itemsize
        benchmark(kernels.stream_copy, a, b)
    else:
        benchmark.extra_info["bytes_per_step"] = 3 * n * dtype.itemsize
        benchmark(kernels.stream_triad, a, b, c, 3.0)


def _many_case(case, backend):
    count, size = MANY
    total = count * size
    if case == "one tensor":
        return make_class_step("adam", {}, backend, [(total,)])
    if case == "arrays":
        return make_class_step("adam", {}, backend, [(size,)] * count)
    if case == "arena":
        return make_arena_step("adam", {}, count, size, backend)
    peer, shapes = case.split(" ", 1)
    return make_torch_step(peer, "adam", {}, [(total,)] if shapes == "one tensor"
                           else [(size,)] * count)


@pytest.mark.parametrize("case,backend", [
    *[(c, b) for b in HOST_ROOFLINE for c in ("one tensor", "arena", "arrays")],
    *[(f"{p} {s}", None) for p in ("torch-fused", "torch-foreach", "torch")
      for s in ("one tensor", "tensors")]])
def test_many_tensors(benchmark, case, backend):
    """Adam over 10,000 tensors of 1,000 parameters through the optimizer classes (a flat arena,
    or a list of arrays) against one tensor of 10^7 and against torch.optim."""
    try:
        run = _many_case(case, backend)
    except Unsupported as exc:
        pytest.skip(str(exc))
    count, size = MANY
    benchmark.group = f"adam float32 {count}x{size}"
    benchmark.extra_info["bytes_per_step"] = bytes_per_step("adam", {}, count * size, np.float32)
    benchmark(run)


@pytest.mark.parametrize("path", ["functional", "bound", "class", "class, no non-finite check"])
@pytest.mark.parametrize("backend", HOST_ROOFLINE)
def test_overhead(benchmark, backend, path):
    """A step of 10^3 parameters: mostly call overhead (validation, dispatch, casting)."""
    if path == "functional":
        run = make_step("adam", {}, backend, 1000)
    elif path == "bound":
        run = make_bound_step("adam", {}, backend, 1000)
    else:
        run = make_class_step("adam", {}, backend, [(1000,)],
                              **({"skip_nonfinite": False} if "no" in path else {}))
    benchmark.group = "overhead adam float32 n=1e3"
    benchmark(run)
