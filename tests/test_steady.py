"""The steady step (fastopt/optim/steady.py): a step of the same arrays as the previous one runs
from its record, and gives the bits of the full step whatever changed in between."""

import warnings

import numpy as np
import pytest

import fastopt
from fastopt.optim.optimizers import CLASSES
from fastopt.optim import algorithms as alg

BACKENDS = ["cpu", "c"]
STEADY = [name for name, a in alg.ALGORITHMS.items() if not a.host_state]


def _pair(name, backend, shapes=((7,), (3, 5)), **hyper):
    """Two optimizers over equal arrays: one free to step from its record, one never."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    made = []
    for _ in range(2):
        ps = [p.copy() for p in params]
        made.append((CLASSES[name](ps, backend=backend, **hyper), ps))
    return made, grads


def _step_both(made, grads_of, **kwargs):
    (fast, _), (full, _) = made
    fast.step(grads_of(0), **kwargs)
    full._steady = None
    full.step(grads_of(1), **kwargs)


def _assert_same(made):
    (fast, pf), (full, pc) = made
    for a, b in zip(pf, pc):
        np.testing.assert_array_equal(a, b)
    for i, state in full.state.items():
        for key, value in state.items():
            np.testing.assert_array_equal(fast.state[i][key], value, err_msg=key)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", STEADY)
def test_steady_steps_equal_full_steps(name, backend):
    made, grads = _pair(name, backend)
    copies = [[g.copy() for g in grads] for _ in range(2)]
    for t in range(6):
        for c in copies:  # the same arrays, new values, as a trainer writes them
            for g, g0 in zip(c, grads):
                g[...] = g0 * (1 + t)
        _step_both(made, lambda k: copies[k])
    assert made[0][0]._steady is not None
    _assert_same(made)


@pytest.mark.parametrize("backend", BACKENDS)
def test_changes_between_steps_are_seen(backend):
    made, grads = _pair("adam", backend)
    copies = [[g.copy() for g in grads] for _ in range(2)]
    changes = [
        lambda opt: opt.param_groups[0].__setitem__("betas", [0.9, 0.999]),
        lambda opt: opt.param_groups[0].__setitem__("lr", 0.05),
        lambda opt: opt.param_groups[0]["betas"].__setitem__(0, 0.5),  # a list changed in place
        lambda opt: opt.state[0].__setitem__("exp_avg", np.ones(7, np.float32)),
        lambda opt: opt.param_groups[0].__setitem__("amsgrad", True),  # new state
        lambda opt: opt.state[1].__setitem__("step", 40),
    ]
    for change in changes:
        for opt, _ in made:
            change(opt)
        _step_both(made, lambda k: copies[k])
        _step_both(made, lambda k: copies[k])
        _assert_same(made)


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_gradient_objects_are_used(backend):
    made, grads = _pair("sgd", backend, lr=0.1, momentum=0.9)
    lists = [[g.copy() for g in grads] for _ in range(2)]
    for t in range(3):
        _step_both(made, lambda k: lists[k])
    for lst in lists:  # the list refilled with other arrays
        lst[0] = np.full(7, 2.0, np.float32)
    for t in range(2):
        _step_both(made, lambda k: lists[k])
    _assert_same(made)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_gradient_in_steady_state_is_skipped_and_reported(backend):
    made, grads = _pair("adamw", backend)
    opt, params = made[0]
    for _ in range(3):
        opt.step(grads)
    assert opt._steady is not None
    before = [p.copy() for p in params], {i: dict((k, np.copy(v)) for k, v in s.items())
                                         for i, s in opt.state.items()}
    grads[1][2, 3] = np.nan
    with pytest.warns(RuntimeWarning, match="skipped"):
        info = opt.step(grads)
    assert info.skipped and info.found_inf and opt.skipped_steps == 1
    for a, b in zip(params, before[0]):
        np.testing.assert_array_equal(a, b)
    for i, s in opt.state.items():
        for k, v in s.items():
            np.testing.assert_array_equal(v, before[1][i][k])
    grads[1][2, 3] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not opt.step(grads).skipped
    assert opt.state[0]["step"] == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_loaded_state_dict_is_stepped(backend):
    made, grads = _pair("rmsprop", backend, momentum=0.5)
    for _ in range(3):
        _step_both(made, lambda k: grads)
    saved = made[1][0].state_dict()
    for _ in range(2):
        _step_both(made, lambda k: grads)
    for opt, _ in made:
        opt.load_state_dict(saved)
    for _ in range(2):
        _step_both(made, lambda k: grads)
    _assert_same(made)
