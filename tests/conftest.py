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
