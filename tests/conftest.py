import os

import numpy as np
import pytest

import fastopt

#: The backends under test: every available one, or those named in FASTOPT_TEST_BACKENDS
#: (comma-separated), as the sanitizer run (make test-sanitize) names numpy and c.
AVAILABLE = [b for b in fastopt.available_backends()
             if b in os.environ.get("FASTOPT_TEST_BACKENDS", b).split(",")]
HOST = [b for b in AVAILABLE if b != "cuda"]
HAS_CUDA = "cuda" in AVAILABLE


def to_backend(backend, a):
    """A copy of the numpy array ``a`` where ``backend`` takes its arrays."""
    if backend == "cuda":
        from numba import cuda

        return cuda.to_device(a)
    return a.copy()


def to_host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device and no simulator "
                                   "(set NUMBA_ENABLE_CUDASIM=1)")


def run_cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``fastopt argv`` run in this process."""
    from fastopt import cli

    try:
        status = cli.main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


#: The files that take longest (most of it compiling kernels), longest first. `make test` hands
#: whole files to its two processes in collection order (pytest-xdist --dist loadfile), so these go
#: first and the short files fill in behind them, instead of a long file starting last.
LONGEST_FIRST = ("test_mlp_train.py", "test_backends.py", "test_cpu_launch.py",
                 "test_mlp_backends.py", "test_nonfinite.py", "test_mixed.py",
                 "test_norm_in_pass.py", "test_ptx.py", "test_capturable.py", "test_threads.py",
                 "test_distributed.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
