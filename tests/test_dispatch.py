"""Backend availability, the choice that follows the data, and its overrides."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt._core import dispatch as _dispatch
from fastopt import functional
from conftest import HOST, requires_cuda


def test_available_backends_in_preference_order():
    available = fastopt.available_backends()
    assert available[-1] == "numpy"
    assert available == [b for b in ("cuda", "cpu", "c", "numpy") if b in available]
    status = fastopt.backend_status()
    assert set(status) == {"cuda", "cpu", "c", "numpy"}
    for name, reason in status.items():
        assert (reason == "available") == (name in available), (name, reason)


def test_host_arrays_go_to_the_first_host_backend(monkeypatch):
    monkeypatch.delenv("FASTOPT_BACKEND", raising=False)
    assert _dispatch.choose({"param": np.ones(2)}) == HOST[0]
    assert fastopt.SGD([np.ones(2)]).backend == HOST[0]


@pytest.mark.parametrize("backend", HOST)
def test_environment_variable_and_argument_override(monkeypatch, backend):
    monkeypatch.setenv("FASTOPT_BACKEND", backend)
    assert _dispatch.choose({"param": np.ones(2)}) == backend
    assert _dispatch.choose({"param": np.ones(2)}, "numpy") == "numpy"  # the argument wins
    monkeypatch.setenv("FASTOPT_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="backend: expected one of cuda, cpu, c, numpy"):
        functional.sgd(np.ones(2), np.ones(2), step=1)


def test_a_repeated_step_follows_a_changed_environment_variable(monkeypatch):
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    monkeypatch.setenv("FASTOPT_BACKEND", HOST[0])
    functional.sgd(p, g, step=1)  # the same arrays again below: the memo must not decide
    monkeypatch.setenv("FASTOPT_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="backend: expected one of"):
        functional.sgd(p, g, step=2)
    monkeypatch.delenv("FASTOPT_BACKEND")
    assert _dispatch.requested_by_environment() is None


def test_cuda_unavailable_is_explained(monkeypatch):
    from numba import cuda

    # No device, faked: the probes start afresh and numba-cuda finds none.
    monkeypatch.setattr(_dispatch, "_status", {})
    monkeypatch.setattr(_dispatch, "_modules", {})
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.setattr(_dispatch, "_numba_cuda_installed", lambda: True)
    with pytest.raises(ValueError, match="backend 'cuda' needs device arrays"):
        functional.sgd(np.ones(2), np.ones(2), step=1, backend="cuda")
    assert "CUDA" in fastopt.backend_status()["cuda"]
    assert "cuda" not in fastopt.available_backends()
    with pytest.raises(fastopt.BackendUnavailableError, match="no usable CUDA device"):
        _dispatch.choose({}, "cuda")


@requires_cuda
def test_device_arrays_go_to_cuda_and_mixing_is_refused():
    from numba import cuda

    p = cuda.to_device(np.ones(4, np.float32))
    g_host = np.ones(4, np.float32)
    assert _dispatch.choose({"param": p}) == "cuda"
    with pytest.raises(ValueError, match="grad: is a host array but param is a CUDA device"):
        functional.sgd(p, g_host, step=1)
    with pytest.raises(ValueError, match="backend 'cpu' runs on the host but param is a CUDA"):
        functional.sgd(p, cuda.to_device(g_host), step=1, backend="cpu")
    with pytest.raises(ValueError, match="backend 'cuda' needs device arrays but param is a host"):
        functional.sgd(g_host.copy(), g_host, step=1, backend="cuda")
    assert np.array_equal(p.copy_to_host(), np.ones(4, np.float32))


def _run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True).stdout


def test_import_works_without_the_c_extension():
    code = ("import sys; sys.modules['fastopt.backends.c._fastopt_c'] = None\n"
            "import numpy as np, fastopt\n"
            "print(fastopt.backend_status()['c'])\n"
            "print('c' in fastopt.available_backends())\n"
            "p = np.ones(3, np.float32)\n"
            "fastopt.SGD([p], lr=0.5, backend='numpy').step([p * 0 + 1])\n"
            "print(p[0])\n"
            "try:\n    fastopt.functional.sgd(p, p.copy(), step=1, backend='c')\n"
            "except fastopt.BackendUnavailableError as e:\n    print('refused:', e)\n")
    out = _run_python(code).splitlines()
    assert re.match(r"(ModuleNotFound|Import)Error: .*fastopt\.backends\.c\._fastopt_c",
                    out[0]), out[0]
    assert out[1] == "False"
    assert out[2] == "0.5"
    assert out[3].startswith("refused: backend 'c' is not available: "), out[3]


def test_host_step_does_not_import_numba_cuda():
    code = ("import sys, numpy as np, fastopt\n"
            "p = np.ones(3); fastopt.functional.sgd(p, p.copy(), step=1)\n"
            "print('numba.cuda' in sys.modules)\n")
    assert _run_python(code, FASTOPT_BACKEND="").strip() == "False"


def test_torch_cpu_tensors_are_updated_in_place_zero_copy():
    torch = pytest.importorskip("torch")
    p = torch.ones(5, dtype=torch.float32)
    g = torch.full((5,), 2.0)
    opt = fastopt.SGD([p], lr=0.25)
    opt.step([g])
    assert torch.equal(p, torch.full((5,), 0.5))
