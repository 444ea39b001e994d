"""Flat arenas, the global gradient norm, clipping, unscaling and non-finite skips, every
backend."""

import itertools

import numpy as np
import pytest

import fastopt
from fastopt import functional
from cases import TOLERANCE, problem
from conftest import AVAILABLE, to_backend, to_host

SHAPES = [(3, 4), (5,), (2, 2, 3)]


def tensors(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def arena_on(backend, arrays):
    return fastopt.FlatParams([to_backend(backend, a) for a in arrays])


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_norm_matches_numpy(backend, dtype):
    grads = tensors(dtype)
    expected = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    got = functional.grad_norm([to_backend(backend, g) for g in grads], backend=backend)
    assert got == pytest.approx(expected, rel=1e-12)
    bad = grads[1].copy()
    bad[2] = np.inf
    assert functional.grad_norm([to_backend(backend, bad)], backend=backend) == np.inf
    bad[2] = np.nan
    assert np.isnan(functional.grad_norm([to_backend(backend, bad)], backend=backend))


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_functional_grad_scale_multiplies_the_gradient(backend, name):
    param, (grad,) = problem((37,), np.float64, 1)
    state = [np.zeros_like(param) for _ in range(3 if name in ("rmsprop", "adam", "adamw") else 1)]
    step = getattr(functional, name)
    expected = param.copy()
    step(expected, grad * 0.25, *[s.copy() for s in state], step=1, backend="numpy")
    got = to_backend(backend, param)
    step(got, to_backend(backend, grad), *[to_backend(backend, s) for s in state], step=1,
         grad_scale=0.25, backend=backend)
    np.testing.assert_allclose(to_host(got), expected, *TOLERANCE[np.dtype(np.float64)])


@pytest.mark.parametrize("backend", AVAILABLE)
def test_arena_step_equals_per_array_steps_in_one_launch_per_group(backend, monkeypatch):
    params, grads = tensors(seed=1), tensors(seed=2)
    separate = [to_backend(backend, p) for p in params]
    arena = arena_on(backend, params)
    grad_arena = arena_on(backend, grads)
    one = fastopt.Adam([{"params": arena.segment(0, 2)},
                        {"params": arena.segment(2, 3), "weight_decay": 0.0}],
                       lr=0.01, weight_decay=0.1, backend=backend)
    # The same groups as separate arrays: one launch per array.
    per_array = fastopt.Adam([{"params": separate[:2]},
                              {"params": separate[2:], "weight_decay": 0.0}],
                             lr=0.01, weight_decay=0.1, backend=backend)
    launches = []
    module = fastopt._core.dispatch.kernels(backend)
    original = module.adam
    monkeypatch.setattr(module, "adam", lambda *a: (launches.append(a[0].size), original(*a)))
    for _ in range(3):
        one.step([grad_arena.segment(0, 2), grad_arena.segment(2, 3)])
    assert launches == [17, 12] * 3  # one launch per group, over the whole segment
    monkeypatch.setattr(module, "adam", original)
    for _ in range(3):
        per_array.step([to_backend(backend, g) for g in grads])
    for view, p in zip(arena.views, separate):
        assert np.array_equal(to_host(view), to_host(p))  # elementwise: bit for bit


def test_arena_views_are_the_model_and_layouts_are_checked():
    arena = fastopt.FlatParams(tensors())
    opt = fastopt.SGD(arena, lr=0.5)
    before = arena.data.copy()
    opt.step(fastopt.FlatParams([np.ones(s, np.float32) for s in SHAPES]))
    np.testing.assert_allclose(arena.data, before - 0.5)
    assert np.shares_memory(arena[0], arena.data)
    with pytest.raises(ValueError, match=r"grads\[0\]: arena layout does not match"):
        opt.step(fastopt.FlatParams([np.ones(s, np.float32) for s in reversed(SHAPES)]))
    with pytest.raises(ValueError, match=r"grads\[0\]: expected a FlatParams of the same layout"):
        opt.step([np.ones(3, np.float32)])
    np.testing.assert_allclose(arena.data, before - 0.5)


@pytest.mark.parametrize("backend", AVAILABLE)
def test_nonfinite_gradient_skips_the_whole_step(backend):
    params, grads = tensors(seed=3), tensors(seed=4)
    ps = [to_backend(backend, p) for p in params]
    opt = fastopt.Adam(ps, lr=0.01, amsgrad=True, backend=backend)
    opt.step([to_backend(backend, g) for g in grads])
    saved = opt.state_dict()
    before = [to_host(p).copy() for p in ps]
    for bad_value, norm_asked in itertools.product((np.inf, -np.inf, np.nan), (False, True)):
        bad = [g.copy() for g in grads]
        bad[2].flat[5] = bad_value
        info = opt.step([to_backend(backend, g) for g in bad], return_norm=norm_asked)
        assert info.skipped and info.found_inf
        # The check alone reads the largest magnitude, not the norm.
        assert not np.isfinite(info.grad_norm) if norm_asked else info.grad_norm is None
        for p, b in zip(ps, before):
            assert np.array_equal(to_host(p), b)
        now = opt.state_dict()
        for i in saved["state"]:
            assert now["state"][i]["step"] == 1
            for k, v in saved["state"][i].items():
                assert np.array_equal(now["state"][i][k], v)
    info = opt.step([to_backend(backend, g) for g in grads])
    assert not info.skipped and opt.state[0]["step"] == 2


@pytest.mark.parametrize("backend", AVAILABLE)
def test_unscale_and_clip_match_torch_semantics(backend):
    """grads carry a loss scale of 1024 and are clipped to norm 0.5: as GradScaler.unscale_ then
    clip_grad_norm_ then step, computed here with numpy on the unscaled, clipped gradients."""
    params, grads = tensors(np.float64, seed=5), tensors(np.float64, seed=6)
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    coef = min(1.0, 0.5 / (norm + 1e-6))
    expected = [p.copy() for p in params]
    reference = fastopt.AdamW(expected, lr=0.1, backend="numpy", skip_nonfinite=False)
    reference.step([g * coef for g in grads])
    ps = [to_backend(backend, p) for p in params]
    opt = fastopt.AdamW(ps, lr=0.1, backend=backend)
    info = opt.step([to_backend(backend, g * 1024.0) for g in grads], grad_scale=1024.0,
                    max_norm=0.5)
    assert info.grad_norm == pytest.approx(norm, rel=1e-12)
    assert info.clip_coef == pytest.approx(coef, rel=1e-12) and coef < 1
    for p, e in zip(ps, expected):
        np.testing.assert_allclose(to_host(p), e, rtol=1e-12, atol=1e-14)


def test_clipping_matches_torch_clip_grad_norm():
    torch = pytest.importorskip("torch")
    params, grads = tensors(np.float64, seed=7), tensors(np.float64, seed=8)
    ours = [p.copy() for p in params]
    opt = fastopt.SGD(ours, lr=0.1, momentum=0.9, backend="numpy")
    theirs = [torch.tensor(p, requires_grad=True) for p in params]
    topt = torch.optim.SGD(theirs, lr=0.1, momentum=0.9)
    for t in range(3):
        scaled = [g * (t + 1) for g in grads]
        info = opt.step(scaled, max_norm=1.0)
        for p, g in zip(theirs, scaled):
            p.grad = torch.tensor(g)
        total = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        topt.step()
        assert info.grad_norm == pytest.approx(float(total), rel=1e-12)
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference.detach().numpy(), rtol=1e-12)


def test_step_arguments_are_checked_before_writing():
    p = np.ones(3)
    opt = fastopt.Adam([p])
    for kwargs, words in [(dict(grad_scale=0.0), "grad_scale: expected a value > 0"),
                          (dict(grad_scale=np.nan), "grad_scale: expected a finite"),
                          (dict(max_norm=-1.0), "max_norm: expected a value >= 0.0")]:
        with pytest.raises(ValueError, match=words):
            opt.step([np.ones(3)], **kwargs)
    assert np.array_equal(p, np.ones(3)) and opt.state == {}


def test_skipped_steps_are_counted_and_a_run_of_them_warns_once():
    p = np.zeros(4, np.float32)
    opt = fastopt.SGD([p], lr=0.1)
    bad, good = np.array([1, np.nan, 0, 0], np.float32), np.ones(4, np.float32)
    with pytest.warns(RuntimeWarning, match="skipped") as caught:
        for g in (bad, bad, bad):
            assert opt.step([g]).skipped
    assert len(caught) == 1 and opt.skipped_steps == 3
    opt.step([good])
    with pytest.warns(RuntimeWarning, match="skipped"):  # a new run warns again
        opt.step([bad])
    assert opt.skipped_steps == 4
