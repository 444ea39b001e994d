"""Repeated calls skip the checks they passed before (fastopt._core.validate.CheckMemo and the
hyperparameter cache of fastopt.optim._step): whatever changed since must still be caught."""

import gc

import numpy as np
import pytest

import fastopt
import fastopt.functional as F

BACKENDS = [b for b in ("cpu", "c", "numpy") if b in fastopt.available_backends()]


def arrays(n=64, seed=0):
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal((2, n)).astype(np.float32)
    return p, g, np.zeros_like(p), np.zeros_like(p)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_only_after_a_step_is_refused(backend):
    p, g, m, v = arrays()
    F.adam(p, g, m, v, step=1, backend=backend)
    m.flags.writeable = False
    before = [a.copy() for a in (p, m, v)]
    with pytest.raises(ValueError, match="exp_avg: array is read-only"):
        F.adam(p, g, m, v, step=2, backend=backend)
    for a, b in zip((p, m, v), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_changed_in_place_is_refused(backend):
    p, g, m, v = arrays()
    F.adam(p, g, m, v, step=1, backend=backend)
    g.shape = (8, 8)
    with pytest.raises(ValueError, match="grad: shape"):
        F.adam(p, g, m, v, step=2, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_arrays_are_checked_even_if_ids_repeat(backend):
    # Arrays freed between calls free their ids for reuse (numpy arrays hold no cycles: del frees
    # them at once): the memo must not vouch for new ones.
    for _ in range(5):
        p, g, m, v = arrays()
        F.adam(p, g, m, v, step=1, backend=backend)
        del p, g, m, v
        p, _, m, v = arrays()
        with pytest.raises(ValueError, match="overlap"):
            F.adam(p, p[::-1][::-1], m, v, step=1, backend=backend)


def test_hyperparameter_types_are_not_confused_by_the_cache():
    p, g, m, v = arrays()
    F.adam(p, g, m, v, m.copy(), step=1, amsgrad=True)
    with pytest.raises(TypeError, match="amsgrad"):
        F.adam(p, g, m, v, m.copy(), step=2, amsgrad=1)
    F.adam(p, g, m, v, step=1, betas=(0, 0.5))
    with pytest.raises(TypeError, match=r"betas\[0\]"):
        F.adam(p, g, m, v, step=2, betas=(False, 0.5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_checks_a_changed_gradient(backend):
    p, g, _, _ = arrays()
    opt = fastopt.Adam([p], backend=backend)
    opt.step([g])
    with pytest.raises(TypeError, match=r"grads\[0\]: dtype float64"):
        opt.step([g.astype(np.float64)])
    g.flags.writeable = False  # a read-only gradient is fine: the step only reads it
    opt.step([g])
    assert opt.state[0]["step"] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_checks_a_changed_arena_gradient(backend):
    params = fastopt.FlatParams([np.ones((3, 4), np.float32), np.ones(5, np.float32)])
    opt = fastopt.SGD(params, lr=0.1, backend=backend)
    grads = params.zeros_like()
    opt.step(grads)
    other = fastopt.FlatParams.empty([(4, 3), (5,)])
    with pytest.raises(ValueError, match="layout"):
        opt.step(other)


def test_memo_is_bounded_and_holds_no_arrays():
    import weakref

    from fastopt.optim._step import _RESOLVED

    p, g, m, v = arrays()
    F.adam(p, g, m, v, step=1)
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert ref() is None  # the memo kept no strong reference
    for _ in range(3 * _RESOLVED.LIMIT):
        F.sgd(*arrays(8)[:2], step=1)
    assert len(_RESOLVED._entries) <= _RESOLVED.LIMIT


def test_a_list_hyperparameter_changed_in_place_is_checked_again():
    p, g, m, v = arrays()
    betas = [0.9, 0.999]
    F.adam(p, g, m, v, step=1, betas=betas)
    betas[0] = 1.5  # the same object, now out of range
    before = [a.copy() for a in (p, m, v)]
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        F.adam(p, g, m, v, step=2, betas=betas)
    for a, b in zip((p, m, v), before):
        np.testing.assert_array_equal(a, b)


def test_an_entry_goes_when_one_of_its_arrays_is_freed():
    from fastopt.optim._step import _RESOLVED

    p, g, m, v = arrays()
    F.adam(p, g, m, v, step=1, backend="numpy")
    ids = (id(p), id(g), id(m), id(v))
    mine = [key for key in _RESOLVED._entries if key[1:] == ids]
    assert len(mine) == 1
    del g  # freed now: its weak reference's callback removes the entry
    assert mine[0] not in _RESOLVED._entries
