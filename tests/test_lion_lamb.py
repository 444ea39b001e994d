"""Lion and LAMB against two-step trajectories computed by hand from their papers' formulas; LAMB's
per-tensor trust ratio over arenas (segmented reduction); and, for the six optimizers added with
them (Adamax, NAdam, RAdam, Adadelta, Lion, LAMB), unscaling, clipping, non-finite skips and NAdam's
host-scalar state."""

import math

import numpy as np
import pytest

import fastopt
from fastopt import functional
from fastopt.optim import optimizers
from cases import problem
from conftest import AVAILABLE, HAS_CUDA, HOST, to_backend, to_host

NEW = {"adamax": optimizers.Adamax, "nadam": optimizers.NAdam, "radam": optimizers.RAdam,
       "adadelta": optimizers.Adadelta, "lion": optimizers.Lion, "lamb": optimizers.LAMB}


# ---- Lion: Chen et al. (2023), arXiv:2302.06675, Program 1 ---------------------------------------

@pytest.mark.parametrize("backend", AVAILABLE)
def test_lion_two_steps_by_hand(backend):
    """lr = 0.1, betas = (0.9, 0.99), weight decay 0.1, so p is scaled by 1 - 0.1 * 0.1 = 0.99:

    step 1 (m = 0):      c = 0.1 g1 = [0.05, -0.1, 0, 0.2], sign [1, -1, 0, 1]
                         p = 0.99 [1, -2, 0.5, 0] - 0.1 sign = [0.89, -1.88, 0.495, -0.1]
                         m = 0.01 g1 = [0.005, -0.01, 0, 0.02]
    step 2:              c = 0.9 m + 0.1 g2 = [-0.0255, 0.011, 0, -0.082], sign [-1, 1, 0, -1]
                         p = 0.99 p - 0.1 sign = [0.9811, -1.9612, 0.49005, 0.001]
                         m = 0.99 m + 0.01 g2 = [0.00195, -0.0079, 0, 0.0098]

    The third element has c = 0 exactly: sign(0) = 0, so only the decay moves it. Step 2's sign
    comes from the beta1 interpolation (element 0: the momentum alone is positive, c is not)."""
    p = to_backend(backend, np.array([1.0, -2.0, 0.5, 0.0]))
    m = to_backend(backend, np.zeros(4))
    grads = [np.array([0.5, -1.0, 0.0, 2.0]), np.array([-0.3, 0.2, 0.0, -1.0])]
    for t, g in enumerate(grads, start=1):
        functional.lion(p, to_backend(backend, g), m, step=t, lr=0.1, betas=(0.9, 0.99),
                        weight_decay=0.1, backend=backend)
    np.testing.assert_allclose(to_host(p), [0.9811, -1.9612, 0.49005, 0.001], rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(to_host(m), [0.00195, -0.0079, 0.0, 0.0098], rtol=1e-12,
                               atol=1e-15)


def test_lion_defaults_are_the_papers():
    opt = optimizers.Lion([np.zeros(3)])
    assert {k: opt.defaults[k] for k in ("lr", "betas", "weight_decay")} == dict(
        lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)


# ---- LAMB: You et al. (2019), arXiv:1904.00962, Algorithm 2 --------------------------------------

def _lamb_by_hand(p, grads, lr, beta1, beta2, eps, wd):
    """Algorithm 2 on one tensor in plain Python floats: Adam moments with bias correction,
    u = m_hat / (sqrt(v_hat) + eps) + wd * p, r = ||p|| / ||u||, p = p - lr * r * u."""
    p = list(p)
    m, v = [0.0] * len(p), [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, g)]
        u = [(mi / (1 - beta1 ** t)) / (math.sqrt(vi / (1 - beta2 ** t)) + eps) + wd * pi
             for mi, vi, pi in zip(m, v, p)]
        r = math.sqrt(sum(x * x for x in p)) / math.sqrt(sum(x * x for x in u))
        p = [pi - lr * r * ui for pi, ui in zip(p, u)]
    return p, m, v


def test_lamb_first_step_by_hand():
    """At step 1, m_hat = g and v_hat = g^2, so with eps = 0 and no decay u = sign(g) = [1, -1]:
    r = ||[3, 4]|| / ||u|| = 5 / sqrt(2), and p moves by lr * r = 0.5 / sqrt(2) per element."""
    p, g = np.array([3.0, 4.0]), np.array([0.25, -7.0])
    functional.lamb(p, g, np.zeros(2), np.zeros(2), step=1, lr=0.1, eps=0.0, backend="numpy")
    np.testing.assert_allclose(p, [3 - 0.5 / math.sqrt(2), 4 + 0.5 / math.sqrt(2)], rtol=1e-15)


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lamb_two_steps_by_hand(backend, weight_decay):
    p0, grads = [3.0, 4.0, -1.0], [[1.0, -1.0, 0.5], [2.0, 0.0, -0.25]]
    expected_p, expected_m, expected_v = _lamb_by_hand(p0, grads, lr=0.1, beta1=0.9, beta2=0.999,
                                                       eps=1e-6, wd=weight_decay)
    p, m, v = (to_backend(backend, np.array(a, np.float64)) for a in (p0, [0.0] * 3, [0.0] * 3))
    for t, g in enumerate(grads, start=1):
        functional.lamb(p, to_backend(backend, np.array(g)), m, v, step=t, lr=0.1,
                        weight_decay=weight_decay, backend=backend)
    np.testing.assert_allclose(to_host(p), expected_p, rtol=1e-12)
    np.testing.assert_allclose(to_host(m), expected_m, rtol=1e-12)
    np.testing.assert_allclose(to_host(v), expected_v, rtol=1e-12)


@pytest.mark.parametrize("backend", AVAILABLE)
def test_lamb_trust_ratio_is_one_when_a_norm_is_zero(backend):
    """p = 0: ||p|| = 0, so r = 1 and the step is the plain (Adam) direction times lr."""
    p, zeros = to_backend(backend, np.zeros(3)), lambda n: to_backend(backend, np.zeros(n))
    functional.lamb(p, to_backend(backend, np.array([1.0, -2.0, 3.0])), zeros(3), zeros(3),
                    step=1, lr=0.1, eps=0.0, backend=backend)
    np.testing.assert_allclose(to_host(p), [-0.1, 0.1, -0.1])  # u = sign(g); 0/0 would be nan
    q = to_backend(backend, np.ones(2))  # u = 0 (zero gradient, no decay): r = 1, nothing moves
    functional.lamb(q, zeros(2), zeros(2), zeros(2), step=1, backend=backend)
    assert np.array_equal(to_host(q), np.ones(2))


def _segment_sizes(backend):
    if backend == "cuda":  # simulator chunks are 16 elements
        return [0, 1, 3, 17, 0, 40, 5]
    # Across the host chunk (16384) and the parallel threshold (32768), empty tensors included.
    return [20_000, 0, 3, 16_384, 12_345, 1, 0]


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lamb_segments_match_the_reference_tensor_by_tensor(backend, dtype):
    sizes = _segment_sizes(backend)
    offsets = [0, *np.cumsum(sizes).tolist()]
    param, grads = problem((offsets[-1],), dtype, 3)
    expected = [param.copy(), np.zeros_like(param), np.zeros_like(param)]
    arrays = [to_backend(backend, a) for a in expected]
    for t, g in enumerate(grads, start=1):
        for lo, hi in zip(offsets[:-1], offsets[1:]):  # the reference, one tensor at a time
            if hi > lo:
                functional.lamb(*(a[lo:hi] for a in expected[:1]), g[lo:hi],
                                *(a[lo:hi] for a in expected[1:]), step=t, lr=0.01,
                                weight_decay=0.1, backend="numpy")
        functional.lamb(arrays[0], to_backend(backend, g), *arrays[1:], step=t, lr=0.01,
                        weight_decay=0.1, segment_offsets=offsets, backend=backend)
    rtol, atol = (2e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    for e, a in zip(expected, arrays):
        np.testing.assert_allclose(to_host(a), e, rtol=rtol, atol=atol)


def test_lamb_cpu_segments_crossing_many_chunks(monkeypatch):
    """Small chunks on the numba backend: tensors spanning several chunks, several tensors in one
    chunk, empty tensors on chunk boundaries."""
    if "cpu" not in AVAILABLE:
        pytest.skip("numba cpu backend unavailable")
    from fastopt.backends.cpu import optim as cpu_optim

    monkeypatch.setattr(cpu_optim, "LAMB_CHUNK", 4)
    offsets = [0, 1, 4, 4, 8, 8, 19, 20, 33]
    param, (g,) = problem((33,), np.float64, 1)
    expected, got = param.copy(), param.copy()
    state = [np.zeros(33) for _ in range(4)]
    functional.lamb(expected, g, *state[:2], step=1, segment_offsets=offsets, backend="numpy")
    functional.lamb(got, g, *state[2:], step=1, segment_offsets=offsets, backend="cpu")
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("offsets,words", [
    ([0, 5], "from 0 to param.size \\(6\\)"), ([1, 6], "segment_offsets"),
    ([0, 4, 2, 6], "nondecreasing"), ([0.0, 6.0], "integer"), ([6], "segment_offsets"),
    ("0,6", "segment_offsets")])
def test_lamb_bad_segment_offsets_rejected_before_writing(offsets, words):
    p = np.ones(6)
    with pytest.raises(ValueError, match=words):
        functional.lamb(p, np.ones(6), np.zeros(6), np.zeros(6), step=1,
                        segment_offsets=offsets)
    assert np.array_equal(p, np.ones(6))


SHAPES = [(3, 4), (5,), (0,), (2, 2, 3), (1,)]


@pytest.mark.parametrize("backend", AVAILABLE)
def test_lamb_arena_one_launch_per_group_with_a_trust_ratio_per_tensor(backend, monkeypatch):
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(3)]
    separate = [to_backend(backend, p) for p in params]
    arena = fastopt.FlatParams([to_backend(backend, p) for p in params])
    one = optimizers.LAMB([{"params": arena.segment(0, 3)},
                           {"params": arena.segment(3, 5), "weight_decay": 0.0}],
                          lr=0.01, weight_decay=0.1, backend=backend)
    per_array = optimizers.LAMB([{"params": separate[:3]},
                                 {"params": separate[3:], "weight_decay": 0.0}],
                                lr=0.01, weight_decay=0.1, backend=backend)
    module = fastopt._core.dispatch.kernels(backend)
    original, launches = module.lamb, []
    monkeypatch.setattr(module, "lamb", lambda *a: (launches.append(a[0].size), original(*a)))
    for gs in grads:
        g = fastopt.FlatParams([to_backend(backend, x) for x in gs])
        one.step([g.segment(0, 3), g.segment(3, 5)])
    assert launches == [17, 13] * 3  # one call per group, over the whole segment
    monkeypatch.setattr(module, "lamb", original)
    for gs in grads:
        per_array.step([to_backend(backend, x) for x in gs])
    for view, p in zip(arena.views, separate):  # the same per-tensor ratios: equal up to the
        np.testing.assert_allclose(to_host(view), to_host(p), rtol=1e-13)  # summation order


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device and no simulator")
def test_lamb_cuda_launch_count_does_not_grow_with_tensor_count(monkeypatch):
    from fastopt.backends.cuda import optim as cuda_optim

    counts = []
    for n_tensors in (2, 12):
        arena = fastopt.FlatParams([to_backend("cuda", np.full(3, 1.0 + i))
                                    for i in range(n_tensors)])
        grad = fastopt.FlatParams([to_backend("cuda", np.ones(3)) for _ in range(n_tensors)])
        opt = optimizers.LAMB(arena, lr=0.01, backend="cuda", skip_nonfinite=False)
        launched = []
        original = cuda_optim.launch
        monkeypatch.setattr(cuda_optim, "launch",
                            lambda kernel, *a, **k: (launched.append(kernel),
                                                     original(kernel, *a, **k)))
        opt.step(grad)
        monkeypatch.setattr(cuda_optim, "launch", original)
        counts.append(len(launched))
        # every tensor is [1 + i] * 3 with gradient 1: u = 1 (eps aside), r = ||p|| / ||u|| = 1 + i
        for i, view in enumerate(arena.views):
            np.testing.assert_allclose(to_host(view), (1.0 + i) * (1 - 0.01), rtol=1e-5)
    assert counts == [3, 3]  # partial sums, per-tensor ratios, update


# ---- The fused step (unscale, clip, non-finite skip) with the new optimizers ---------------------

@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", list(NEW))
def test_unscale_and_clip_with_new_optimizers(backend, name):
    rng = np.random.default_rng(11)
    params = [rng.standard_normal(s) for s in SHAPES]
    grads = [rng.standard_normal(s) for s in SHAPES]
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    coef = min(1.0, 0.5 / (norm + 1e-6))
    expected = [p.copy() for p in params]
    reference = NEW[name](expected, lr=0.01, backend="numpy", skip_nonfinite=False)
    reference.step([g * coef for g in grads])
    ps = [to_backend(backend, p) for p in params]
    opt = NEW[name](ps, lr=0.01, backend=backend)
    info = opt.step([to_backend(backend, g * 1024.0) for g in grads], grad_scale=1024.0,
                    max_norm=0.5)
    assert info.grad_norm == pytest.approx(norm, rel=1e-12) and coef < 1
    for p, e in zip(ps, expected):
        np.testing.assert_allclose(to_host(p), e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", list(NEW))
def test_nonfinite_gradient_skips_new_optimizers(backend, name):
    rng = np.random.default_rng(12)
    params = [rng.standard_normal(s) for s in SHAPES]
    grads = [rng.standard_normal(s) for s in SHAPES]
    ps = [to_backend(backend, p) for p in params]
    opt = NEW[name](ps, lr=0.01, backend=backend)
    opt.step([to_backend(backend, g) for g in grads])
    saved = opt.state_dict()
    before = [to_host(p).copy() for p in ps]
    bad = [g.copy() for g in grads]
    bad[3].flat[5] = np.nan
    info = opt.step([to_backend(backend, g) for g in bad])
    assert info.skipped and info.found_inf
    for p, b in zip(ps, before):
        assert np.array_equal(to_host(p), b)
    now = opt.state_dict()
    for i, s in saved["state"].items():
        assert now["state"][i].keys() == s.keys()
        for k, v in s.items():
            assert np.array_equal(now["state"][i][k], v), (i, k)
    assert opt.step([to_backend(backend, g) for g in grads]).skipped is False
    assert opt.state[0]["step"] == 2


# ---- NAdam's host scalar: mu_product -------------------------------------------------------------

@pytest.mark.parametrize("backend", HOST)
def test_nadam_mu_product_is_a_float_in_the_state_dict_and_round_trips(backend):
    params0, grads = problem((9,), np.float64, 4)
    a = optimizers.NAdam([params0.copy()], lr=0.01, backend=backend)
    for g in grads[:2]:
        a.step([g])
    saved = a.state_dict()
    mu = [0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3)) for t in (1, 2)]
    assert type(saved["state"][0]["mu_product"]) is float
    assert saved["state"][0]["mu_product"] == pytest.approx(mu[0] * mu[1], rel=1e-15)
    b = optimizers.NAdam([np.zeros(9)], backend=backend)
    b.load_state_dict(saved)
    assert b.state[0]["mu_product"] == saved["state"][0]["mu_product"]
    saved["state"][0]["mu_product"] = float("nan")
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['mu_product'\]: expected "
                                         "a finite"):
        b.load_state_dict(saved)


def test_functional_nadam_returns_mu_product_and_recomputes_it_when_omitted():
    param, grads = problem((7,), np.float64, 3)
    threaded, recomputed = param.copy(), param.copy()
    s1, s2 = [np.zeros(7), np.zeros(7)], [np.zeros(7), np.zeros(7)]
    mu_product = 1.0
    for t, g in enumerate(grads, start=1):
        mu_product = functional.nadam(threaded, g, *s1, step=t, mu_product=mu_product, lr=0.01)
        functional.nadam(recomputed, g, *s2, step=t, lr=0.01)
    assert np.array_equal(threaded, recomputed)
    with pytest.raises(ValueError, match="mu_product: expected a value <= 1.0"):
        functional.nadam(threaded, grads[0], *s1, step=4, mu_product=1.5)


BAD_HYPER = [  # torch.optim's checks (Lion, LAMB: the same for the same names), plus finiteness
    ("adamax", dict(weight_decay=-1.0), "weight_decay: expected a value >= 0.0"),
    ("adamax", dict(eps=-1e-8), "eps: expected a value >= 0.0"),
    ("nadam", dict(momentum_decay=-0.1), "momentum_decay: expected a value >= 0.0"),
    ("nadam", dict(decoupled_weight_decay=1), "decoupled_weight_decay: expected True or False"),
    ("radam", dict(betas=(0.9, 1.0)), "betas\\[1\\]: expected a value < 1.0"),
    ("adadelta", dict(rho=1.5), "rho: expected a value <= 1.0"),
    ("adadelta", dict(rho=-0.1), "rho: expected a value >= 0.0"),
    ("lion", dict(betas=(1.0, 0.99)), "betas\\[0\\]: expected a value < 1.0"),
    ("lion", dict(lr=float("nan")), "lr: expected a finite number"),
    ("lamb", dict(eps=-1.0), "eps: expected a value >= 0.0"),
]


@pytest.mark.parametrize("name,kwargs,words", BAD_HYPER, ids=[f"{n}-{w}" for n, _, w in BAD_HYPER])
def test_new_optimizers_reject_bad_hyperparameters_before_writing(name, kwargs, words):
    p = np.ones(4)
    states = [np.zeros(4) for _ in fastopt.optim.algorithms.ALGORITHMS[name].state]
    with pytest.raises((TypeError, ValueError), match=words):
        getattr(functional, name)(p, np.ones(4), *states, step=1, **kwargs)
    with pytest.raises((TypeError, ValueError), match=words):
        NEW[name]([p], **kwargs)
    assert np.array_equal(p, np.ones(4)) and all(not s.any() for s in states)


def test_adadelta_accepts_rho_one_as_torch_does():
    p = np.ones(3)
    functional.adadelta(p, np.ones(3), np.zeros(3), np.zeros(3), step=1, rho=1.0)
    # rho = 1: the averages stay 0, so delta = sqrt(eps) / sqrt(eps) * g = g and p -= lr * g
    assert np.array_equal(p, np.zeros(3))
