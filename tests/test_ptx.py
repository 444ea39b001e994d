"""Every CUDA kernel, in every signature the entry points launch, compiled to PTX for sm_80 and
sm_90 without a GPU (:mod:`fastopt.backends.cuda.ptx`, in a process without the simulator), and
what a device would run checked from the PTX:

- the kernels that must match the reference bit for bit (:mod:`fastopt.backends.cuda.exact`) hold
  no ``fma`` (contraction fuses a product and a sum into one rounding), unless their docstring
  says why (libdevice's own);
- a kernel on float32 or 16-bit data does no float64 arithmetic unless its docstring says why
  (the norm accumulators, the capturable steps' float64 block);
- ptxas (``nvidia-cuda-nvcc``) reports no local-memory spill.

Needs the ``nvidia-nvvm`` and ``nvidia-cuda-nvrtc`` wheels (the ``test`` extra); skipped without
them.
"""

import collections
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest


def _missing_wheels():
    missing = []
    for name in ("numba-cuda", "nvidia-nvvm", "nvidia-cuda-nvrtc"):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


pytestmark = pytest.mark.skipif(
    bool(_missing_wheels()),
    reason=f"compiling PTX needs the wheels {', '.join(_missing_wheels())} "
           "(pip install -e '.[test]')")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("ptx") / "rows.json"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "fastopt.backends.cuda.ptx", "--json", str(out),
                           "--jobs", str(max(1, min(2, os.cpu_count() or 1)))],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def _where(row):
    return f"{row['kernel']} {row['types']} {row['cc']}"


def test_every_kernel_compiles_for_sm80_and_sm90(rows):
    by_signature = collections.defaultdict(set)
    for row in rows:
        by_signature[(row["kernel"], row["types"])].add(row["cc"])
    assert all(ccs == {"sm_80", "sm_90"} for ccs in by_signature.values())
    names = {kernel for kernel, _ in by_signature}
    for expected in ("_step_adam_110", "_step_with_norm_adam_111", "_step_sgd_0", "_step_lion_1",
                     "_mixed_step_adam_110", "_mixed_step_rprop_11", "_capturable_adamw_111",
                     "finalize", "_lamb_moments", "_lamb_update", "_partial_sums_of_squares",
                     "_sum_in_order", "_max_magnitude_bits", "_fill", "_decode_to_f32", "gemm",
                     "softmax_xent", "column_sums", "derivative"):
        assert expected in names
    dtypes = {row["dtype"] for row in rows if row["kernel"] == "_mixed_step_adam_110"}
    assert dtypes == {"float32"}
    # the mixed steps: float32 or 16-bit gradients, float32 or bfloat16 state
    assert len({row["types"] for row in rows if row["kernel"] == "_mixed_step_adam_110"}) == 4
    assert {row["dtype"] for row in rows if row["kernel"] == "_max_magnitude_bits"} == {
        "int32", "int64", "uint16"}


def test_bit_exact_kernels_hold_no_fma(rows):
    exact = [row for row in rows if row["exact"]]
    assert {row["kernel"] for row in exact} >= {"_step_adam_110", "_mixed_step_adam_110",
                                                 "_capturable_adam_110", "_lamb_moments"}
    assert all(row["compiles_exact"] for row in exact)  # what a launch compiles, too
    fused = [_where(row) for row in exact if row["fma"] and "libdevice" not in row["doc"]]
    assert not fused


def test_no_float64_arithmetic_in_low_precision_kernels_unless_documented(rows):
    low = [row for row in rows if row["dtype"] != "float64"]
    assert len(low) > 100
    promoted = [f"{_where(row)}: {row['f64_ops']}" for row in low
                if row["f64_arithmetic"] and "float64" not in row["doc"]]
    assert not promoted


def test_no_local_memory_spills(rows):
    usage = [row for row in rows if row["ptxas"] is not None]
    if not usage:
        pytest.skip("no ptxas (the nvidia-cuda-nvcc wheel): registers and spills not checked")
    spilled = [f"{_where(row)}: {row['ptxas']}" for row in usage
               if row["ptxas"]["spill_stores"] or row["ptxas"]["spill_loads"]]
    assert not spilled
