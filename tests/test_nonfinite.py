"""Non-finite values through the functional steps, which do not skip them: nan, +inf and -inf in a
gradient, +inf in a state array (the rows of ``cases.NONFINITE``), on every backend against the
numpy reference, and the reference against torch.optim.

A comparison asserts, for the parameter and every state array: NaN at the same elements, +inf and
-inf at the same elements, and the finite elements equal: exactly for float64 on the host backends
(the same operations in the same order, rounded the same way; LAMB excepted, whose norms the
reference sums pairwise and the kernels by chunks), within ``cases.TOLERANCE`` otherwise (float32
kernels may keep a product in a register; on a GPU, NVVM contracts multiply-adds into FMAs by
default).

The maxima of AMSGrad (``max_exp_avg_sq``) and Adamax (``exp_inf``) follow ``torch.maximum``: a NaN
on either side wins.
"""

import math

import numpy as np
import pytest
from numba import config as numba_config

from fastopt import functional
from fastopt.optim import algorithms as _algorithms
from cases import (LR, NONFINITE, NONFINITE_SIZE, TOLERANCE, nonfinite_indices,
                   nonfinite_problem)
from conftest import AVAILABLE, to_backend, to_host

STEPS = 3
BACKENDS = [b for b in AVAILABLE if b != "numpy"]
ROWS = [row for rows in NONFINITE.values() for row in rows]
#: The algorithms torch.optim has, by its class names.
TORCH = {name: a.torch for name, a in _algorithms.ALGORITHMS.items() if a.torch}

SIMULATOR = numba_config.ENABLE_CUDASIM

# Non-finite arithmetic is the point here: numpy's warnings about it are expected.
pytestmark = pytest.mark.filterwarnings(
    "ignore:(invalid value|overflow|divide by zero) encountered:RuntimeWarning")


def run(row, backend, param, grads, state):
    """STEPS functional steps numbered from ``row.first``; host copies of the parameter and the
    state afterwards, in the step's argument order."""
    param = to_backend(backend, param)
    state = [to_backend(backend, s) for s in state]
    for k, g in enumerate(grads):
        getattr(functional, row.name)(param, to_backend(backend, g), *state, step=row.first + k,
                                      lr=LR[row.name], backend=backend, **row.options)
    return [to_host(param)] + [to_host(s) for s in state]


def assert_same_values(got, expected, rtol, atol, what):
    """NaN, +inf and -inf at the same elements; the finite elements within (rtol, atol), exactly
    when both are 0."""
    for kind, mask in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        differ = np.flatnonzero(mask(got) != mask(expected))
        at = differ[:8]
        assert differ.size == 0, (f"{what}: {kind} at different elements: at {at} expected "
                                  f"{expected.flat[at]}, got {got.flat[at]}")
    finite = np.isfinite(expected)
    if rtol == atol == 0:
        np.testing.assert_array_equal(got[finite], expected[finite], err_msg=what)
    else:
        np.testing.assert_allclose(got[finite], expected[finite], rtol=rtol, atol=atol,
                                   err_msg=what)


def _names(name):
    return ("param",) + _algorithms.ALGORITHMS[name].state


def _simulator_marks(backend, row):
    """Centered RMSprop with an infinite ``grad_avg`` takes the square root of ``v - grad_avg**2``
    = -inf: NaN on a device and in numpy, but the CUDA simulator runs ``math.sqrt`` in Python,
    which raises."""
    if backend == "cuda" and SIMULATOR and row.name == "rmsprop" and row.where == "grad_avg":
        return [pytest.mark.xfail(raises=ValueError, strict=True,
                                  reason="the CUDA simulator's math.sqrt raises on -inf")]
    return []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend,row", [
    pytest.param(b, row, id=f"{b}-{row.id}", marks=_simulator_marks(b, row))
    for b in BACKENDS for row in ROWS])
def test_backend_matches_reference(backend, row, dtype):
    """The parameter and every state array after three steps, as the module docstring says."""
    size = NONFINITE_SIZE["cuda" if backend == "cuda" else "host"]
    param, grads, state = nonfinite_problem(row, size, dtype, STEPS)
    expected = run(row, "numpy", param, grads, state)
    got = run(row, backend, param, grads, state)
    exact = dtype is np.float64 and backend != "cuda" and row.name != "lamb"
    rtol, atol = (0, 0) if exact else TOLERANCE[np.dtype(dtype)]
    for name, e, g in zip(_names(row.name), expected, got):
        assert g.dtype == e.dtype
        assert_same_values(g, e, rtol, atol, f"{backend} {row.id} {name}")


#: The state arrays that hold a running maximum, by algorithm.
RUNNING_MAX = {"adam": "max_exp_avg_sq", "adamw": "max_exp_avg_sq", "adamax": "exp_inf"}
#: The rows where a NaN gradient meets a running maximum.
MAXIMA = [pytest.param(row, RUNNING_MAX[name], id=row.id) for name in RUNNING_MAX
          for row in NONFINITE[name] if row.where == "grad" and math.isnan(row.value)
          and (name == "adamax" or row.options.get("amsgrad"))]


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("row,state", MAXIMA)
def test_nan_gradient_wins_the_running_maximum(backend, row, state):
    """A NaN gradient makes the running maximum NaN (torch.maximum: NaN wins), at the elements
    of the NaN and nowhere else, and later finite gradients leave it NaN."""
    size = NONFINITE_SIZE["cuda" if backend == "cuda" else "host"]
    param, grads, states = nonfinite_problem(row, size, np.float64, STEPS)
    out = dict(zip(_names(row.name), run(row, backend, param, grads, states)))
    assert np.flatnonzero(np.isnan(out[state])).tolist() == nonfinite_indices(size)
    assert np.flatnonzero(np.isnan(out["param"])).tolist() == nonfinite_indices(size)


def _torch_state(torch, row, state, uses):
    """torch.optim's per-parameter state before the step numbered ``row.first``."""
    algorithm = _algorithms.ALGORITHMS[row.name]
    out = {key: torch.tensor(s) for key, s, used in zip(algorithm.state, state, uses) if used}
    if row.name != "sgd":  # SGD keeps no step count
        out["step"] = torch.tensor(float(row.first - 1))
    if algorithm.host_state:  # NAdam's mu_product, ASGD's eta and mu, as of this step
        hyper = algorithm.check({**algorithm.defaults, **row.options})
        out.update((k, torch.tensor(v)) for k, v in algorithm.host_at(hyper, row.first).items())
    return out


#: The first moments torch.optim updates with ``Tensor.lerp_``: ``m + w (g - m)``, with
#: ``w = 1 - beta1`` (``1 - alpha`` for RMSprop's ``grad_avg``).
LERP = {"adam": "exp_avg", "adamw": "exp_avg", "adamax": "exp_avg", "nadam": "exp_avg",
        "radam": "exp_avg", "rmsprop": "grad_avg"}


def _uses(row):
    """Which state arrays the row's options use, in the step's order."""
    algorithm = _algorithms.ALGORITHMS[row.name]
    return algorithm.uses(algorithm.check({**algorithm.defaults, **row.options}))


def _lerp_marks(row):
    """The reference computes the first moment as ``beta m + (1 - beta) g``, torch as
    ``m + (1 - beta) (g - m)``: the same up to rounding for finite values, but an infinite
    ``m`` meeting a finite ``g`` stays infinite in the reference and is NaN in torch
    (``inf - inf``). That difference outlasts the three steps where an infinite gradient or
    moment is followed by finite gradients, unless L2 weight decay adds the parameter, by then
    non-finite, to the gradient, which makes the moment NaN on both sides."""
    algorithm = _algorithms.ALGORITHMS[row.name]
    moment = LERP.get(row.name)
    hyper = {**algorithm.defaults, **row.options}
    decoupled = row.name == "adamw" or hyper.get("decoupled_weight_decay", False)
    l2 = hyper.get("weight_decay", 0) != 0 and not decoupled
    if (moment is not None and dict(zip(algorithm.state, _uses(row)))[moment] and not l2
            and math.isinf(row.value) and row.where in ("grad", moment)):
        return [pytest.mark.xfail(raises=AssertionError, strict=True,
                                  reason=f"torch's lerp makes an infinite {moment} NaN")]
    return []


@pytest.mark.parametrize("row", [pytest.param(row, id=row.id, marks=_lerp_marks(row))
                                 for row in ROWS if row.name in TORCH])
def test_reference_matches_torch(row):
    """float64 on both sides, torch's scalars too (its default dtype); torch's state is set
    from ours when the first step run is not the first step."""
    torch = pytest.importorskip("torch")
    uses = _uses(row)
    param, grads, state = nonfinite_problem(row, NONFINITE_SIZE["host"], np.float64, STEPS)
    expected = dict(zip(_names(row.name), run(row, "numpy", param, grads, state)))
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        tp = torch.tensor(param, requires_grad=True)
        theirs = getattr(torch.optim, TORCH[row.name])([tp], lr=LR[row.name], foreach=False,
                                                       **row.options)
        if row.first > 1:
            theirs.state[tp] = _torch_state(torch, row, state, uses)
        for g in grads:
            tp.grad = torch.tensor(g)
            theirs.step()
    finally:
        torch.set_default_dtype(before)
    rtol, atol = 1e-12, 1e-14  # torch's lerp and fused multiply-adds round differently
    assert_same_values(tp.detach().numpy(), expected["param"], rtol, atol, f"{row.id} param")
    compared = 0
    for key, value in theirs.state[tp].items():
        host_state = _algorithms.ALGORITHMS[row.name].host_state
        if key != "step" and key not in host_state and value is not None:
            assert_same_values(value.numpy(), expected[key], rtol, atol, f"{row.id} {key}")
            compared += 1
    assert compared == sum(uses)
