"""pytest-benchmark suite of the MLP kernels: dense layers against numpy's BLAS product, whole
training steps against PyTorch eager and a hand-written numpy+BLAS step.

Run with ``pytest bench/test_mlp_bench.py --benchmark-enable --benchmark-only`` (add
``--benchmark-json=PATH`` to keep the numbers); ``python bench/mlp_table.py`` prints the same
measurements as one table with GFLOP/s and speed-ups. The callables are those of
``bench/mlp_table.py`` (what each times is described there).

Groups:

- ``dense <rows>x<in>x<out>``: the fused dense forward of every host backend and ``np.matmul``
  (the baseline); ``extra_info["flops"]`` = 2 * rows * in * out, so GFLOP/s = flops / mean.
- ``step <network> batch <b>``: ``torch eager`` (the baseline), ``numpy+BLAS``, each backend's
  per-step path and each compiled epoch (timed per epoch of ``FUSED_STEPS`` steps;
  ``extra_info["steps"]`` says how many steps a round holds).
"""

import numpy as np
import pytest

from mlp_table import (DENSE_SHAPES, FUSED_STEPS, NETWORKS, host_mlp_backends, make_dense,
                       make_fastopt_step, make_fused_epoch, make_numpy_step, make_torch_step,
                       step_flops)

BACKENDS = host_mlp_backends()
FUSED = [b for b in BACKENDS if b in ("cpu", "c")]


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=["x".join(map(str, s)) for s in DENSE_SHAPES])
@pytest.mark.parametrize("who", ["numpy matmul", *BACKENDS])
def test_dense_forward(benchmark, who, shape):
    benchmark.group = "dense " + "x".join(map(str, shape))
    benchmark.extra_info.update(flops=int(2 * np.prod(shape)), baseline=who == "numpy matmul")
    fn = make_dense(who, shape)
    fn()  # compile and warm up outside the timing
    benchmark(fn)


NETWORK_IDS = [f"{label}-b{batch}" for label, _, batch in NETWORKS]
STEP_KINDS = ["torch eager", "numpy+BLAS", *[f"fastopt {b}" for b in BACKENDS],
              *[f"fused {b}" for b in FUSED]]


@pytest.mark.parametrize("label,sizes,batch", NETWORKS, ids=NETWORK_IDS)
@pytest.mark.parametrize("kind", STEP_KINDS)
def test_training_step(benchmark, kind, label, sizes, batch):
    benchmark.group = f"step {label} batch {batch}"
    steps = 1
    if kind == "torch eager":
        pytest.importorskip("torch")
        fn = make_torch_step(sizes, batch)
    elif kind == "numpy+BLAS":
        fn = make_numpy_step(sizes, batch)
    elif kind.startswith("fused"):
        fn, steps = make_fused_epoch(sizes, batch, kind.split()[1]), FUSED_STEPS
    else:
        fn = make_fastopt_step(sizes, batch, kind.split()[1])
    benchmark.extra_info.update(flops=step_flops(sizes, batch) * steps, steps=steps,
                                baseline=kind == "torch eager")
    fn()  # compile and warm up outside the timing
    benchmark(fn)
