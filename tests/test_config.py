"""The tunables of :mod:`fastopt._core.config`: the C extension built with them, the host backends'
reduction chunks equal (the bits of their norms depend on it), the modules reading them, and the
constraints between them."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastopt._core import config

C_MISSING = CPU_MISSING = ""
try:
    from fastopt.backends.c import optim as c_optim
except ImportError as exc:  # the extension was not built (no C compiler at install time)
    c_optim, C_MISSING = None, f"no C extension: {exc}"
try:
    from fastopt.backends.cpu import optim as cpu_optim
except ImportError as exc:
    cpu_optim, CPU_MISSING = None, f"no numba: {exc}"

requires_c = pytest.mark.skipif(c_optim is None, reason=C_MISSING)
requires_cpu = pytest.mark.skipif(cpu_optim is None, reason=CPU_MISSING)

BUILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fastopt",
                     "backends", "c", "build.py")


@requires_c
def test_the_c_extension_was_built_with_the_config_values():
    assert c_optim.build_config() == config.C_DEFINES


@requires_c
@requires_cpu
def test_cpu_and_c_reduce_in_the_same_chunks():
    assert cpu_optim.REDUCTION_CHUNK == c_optim.build_config()["FASTOPT_REDUCTION_CHUNK"]
    # ...so that their norms have the same bits, over several chunks and a ragged tail.
    chunk = config.REDUCTION_CHUNK
    g = np.random.default_rng(0).standard_normal(3 * chunk + 5).astype(np.float32)
    assert cpu_optim.sum_of_squares(g) == c_optim.sum_of_squares(g)


def test_build_py_loads_the_config_without_importing_fastopt():
    """setup.py runs build.py where fastopt may not be importable: it reads config.py by path."""
    pytest.importorskip("cffi")
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('build', {BUILD!r})\n"
            "build = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(build)\n"
            "assert not any(m == 'fastopt' or m.startswith('fastopt.') for m in sys.modules)\n"
            "print(dict(build.tunables()))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(BUILD), timeout=120)
    assert out.returncode == 0, out.stderr
    assert eval(out.stdout) == {name: str(value) for name, value in config.C_DEFINES.items()}


@requires_cpu
def test_the_cpu_modules_read_the_config():
    from fastopt.backends.cpu import mlp as cpu_mlp

    assert (cpu_optim.PARALLEL_THRESHOLD, cpu_optim.REDUCTION_CHUNK, cpu_optim.LAMB_CHUNK,
            cpu_optim.BLOCK) == (config.CPU_PARALLEL_THRESHOLD, config.REDUCTION_CHUNK,
                                 config.CPU_LAMB_CHUNK, config.CPU_BLOCK)
    assert (cpu_mlp.PARALLEL_MACS, cpu_mlp.NARROW, cpu_mlp.BLOCK_ROWS, cpu_mlp.BLOCK_COLS) == \
        (config.CPU_MLP_PARALLEL_MACS, config.CPU_MLP_NARROW, config.CPU_MLP_BLOCK_ROWS,
         config.CPU_MLP_BLOCK_COLS)


def test_the_values_keep_their_constraints():
    # The fused steps add a block's squares after updating it: every block but a chunk's last must
    # be a whole number of the reduction's 8 running sums for the norm to keep its bits.
    for block in (config.REDUCTION_CHUNK, config.CPU_BLOCK, config.C_NORM_BLOCK):
        assert block % 8 == 0
    # A mixed-precision block runs the float32 step on the calling thread.
    assert config.C_MIXED_BLOCK < config.C_PARALLEL_THRESHOLD
    # The register tile of the cpu products is 4 x 2.
    assert config.CPU_MLP_BLOCK_ROWS % 4 == 0 and config.CPU_MLP_BLOCK_COLS % 2 == 0
    for name, value in vars(config).items():
        if name.isupper() and name != "C_DEFINES":
            assert type(value) is int and value > 0, name
