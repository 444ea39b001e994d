"""Every optimizer, option combination, backend, dtype and shape against the numpy reference."""

import numpy as np
import pytest

from fastopt import functional
from cases import LR, OPTIONS, TOLERANCE, case_ids, new_state, problem
from conftest import AVAILABLE, HOST, to_backend, to_host

STEPS = 3
HOST_SHAPES = [(1,), (7,), (257,), (3, 5, 7), (10_007,), (40_009,)]  # the last is above the
CUDA_SHAPES = [(1,), (7,), (3, 11)]  # numba parallel threshold; the simulator runs thread by thread
PARALLEL_SHAPE = HOST_SHAPES[-1]
BACKENDS = [b for b in AVAILABLE if b != "numpy"]


def run(name, options, backend, param, grads, state):
    """STEPS functional steps, halving lr before the last; returns host copies of everything."""
    param = to_backend(backend, param)
    state = [to_backend(backend, s) for s in state]
    for t, g in enumerate(grads, start=1):
        lr = LR[name] * (0.5 if t == len(grads) else 1.0)
        getattr(functional, name)(param, to_backend(backend, g), *state, step=t, lr=lr,
                                  backend=backend, **options)
    return [to_host(param)] + [to_host(s) for s in state]


def cases_for(backend):
    """Every option case on every shape; on ``cpu``, whose parallel kernels are compiled (numba)
    and cost most of the suite's time, the parallel shape only for each algorithm's first and last
    (plainest and richest) option cases: its parallel kernel is its serial one's template under
    ``prange``, and the state arrays a mode uses are the same in both."""
    shapes = CUDA_SHAPES if backend == "cuda" else HOST_SHAPES
    cases = []
    for name in OPTIONS:
        ends = (OPTIONS[name][0], OPTIONS[name][-1])
        for opts, oid in zip(OPTIONS[name], case_ids(name)):
            for shape in shapes:
                if backend == "cpu" and shape == PARALLEL_SHAPE and all(
                        opts is not end for end in ends):
                    continue
                cases.append(pytest.param(name, opts, shape, id=f"{name}[{oid}]-{shape}"))
    return cases


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend,name,options,shape", [
    pytest.param(b, *c.values, id=f"{b}-{c.id}") for b in BACKENDS for c in cases_for(b)])
def test_backend_matches_reference(backend, name, options, shape, dtype):
    param, grads = problem(shape, dtype, STEPS)
    state = new_state(name, options, param)
    expected = run(name, options, "numpy", param, grads, state)
    got = run(name, options, backend, param, grads, state)
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
    assert not np.array_equal(expected[0], param), "the step changed nothing"


@pytest.mark.parametrize("backend", HOST)
def test_host_backends_bit_identical_across_runs(backend):
    param, grads = problem((100_003,), np.float32, STEPS)
    first = run("adam", {"amsgrad": True}, backend, param, grads, new_state("adam", {}, param))
    again = run("adam", {"amsgrad": True}, backend, param, grads, new_state("adam", {}, param))
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
