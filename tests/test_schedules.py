"""Learning-rate schedules: closed forms, torch.optim.lr_scheduler, the driver, bad arguments."""

import math
import re

import numpy as np
import pytest

import fastopt
from fastopt import schedules as S

STEPS = 50
# Torch's schedulers update recursively (lr *= gamma, the cosine ratio), ours evaluate the closed
# form: they agree to a few ulps per step, so relative 1e-12 over 50 steps.
RTOL = 1e-12

# name -> (our schedule, torch scheduler from an optimizer, or None where torch has no class).
# Every torch case is compared with two groups of different base lrs, except where PyTorch's
# absolute eta_min differs from our relative one (one group there).


def _torch_cases():
    from torch.optim import lr_scheduler as L

    def warmup(then):
        return lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, 5), then(o)], milestones=[5])

    return {
        "constant": (S.constant(), lambda o: L.LambdaLR(o, lambda t: 1.0), 2),
        "step": (S.step(7, 0.5), lambda o: L.StepLR(o, 7, 0.5), 2),
        "multistep": (S.multistep([30, 5, 12, 12], 0.3),
                      lambda o: L.MultiStepLR(o, [5, 12, 12, 30], 0.3), 2),
        "exponential": (S.exponential(0.93), lambda o: L.ExponentialLR(o, 0.93), 2),
        "exponential_growth": (S.exponential(1.05), lambda o: L.ExponentialLR(o, 1.05), 2),
        "cosine": (S.cosine(20), lambda o: L.CosineAnnealingLR(o, 20), 2),
        "cosine_eta_min": (S.cosine(17, 0.2), lambda o: L.CosineAnnealingLR(o, 17, 0.2 * 0.1), 1),
        "warmup_constant": (S.linear_warmup(5, 0.1),
                            warmup(lambda o: L.LambdaLR(o, lambda t: 1.0)), 2),
        "warmup_cosine": (S.linear_warmup(5, 0.1, then=S.cosine(45)),
                          warmup(lambda o: L.CosineAnnealingLR(o, 45)), 2),
        "warmup_step": (S.linear_warmup(5, 0.1, then=S.step(10, 0.5)),
                        warmup(lambda o: L.StepLR(o, 10, 0.5)), 2),
        "inverse_time": (S.inverse_time(8.0),
                         lambda o: L.LambdaLR(o, lambda t: 1 / (1 + t / 8)), 2),
        "inverse_sqrt": (S.inverse_sqrt(3.0),
                         lambda o: L.LambdaLR(o, lambda t: (1 + t / 3) ** -0.5), 2),
    }


TORCH_CASES = ["constant", "step", "multistep", "exponential", "exponential_growth", "cosine",
               "cosine_eta_min", "warmup_constant", "warmup_cosine", "warmup_step", "inverse_time",
               "inverse_sqrt"]


@pytest.mark.parametrize("name", TORCH_CASES)
def test_matches_torch_lr_scheduler(name):
    torch = pytest.importorskip("torch")
    schedule, make_torch, n_groups = _torch_cases()[name]
    lrs = [0.1, 0.025][:n_groups]

    def optimizer():
        return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
                                for lr in lrs])

    theirs, ours = optimizer(), optimizer()
    their_sched, our_sched = make_torch(theirs), S.LRScheduler(ours, schedule)
    for t in range(STEPS):
        expected = [g["lr"] for g in theirs.param_groups]
        np.testing.assert_allclose([g["lr"] for g in ours.param_groups], expected, rtol=RTOL,
                                   atol=0, err_msg=f"t={t}")
        np.testing.assert_allclose(our_sched.get_last_lr(), expected, rtol=RTOL, atol=0)
        assert [g["initial_lr"] for g in ours.param_groups] == lrs
        theirs.step()
        ours.step()
        their_sched.step()
        our_sched.step()


# (schedule, {t: expected factor}) from the formulas, by hand.
CLOSED_FORM = [
    (S.constant(), {0: 1, 1: 1, 1000: 1}),
    (S.step(3, 0.5), {0: 1, 2: 1, 3: 0.5, 5: 0.5, 6: 0.25, 9: 0.125}),
    (S.multistep([4, 2], 0.1), {0: 1, 1: 1, 2: 0.1, 3: 0.1, 4: 0.01, 100: 0.01}),
    (S.multistep([], 0.1), {0: 1, 7: 1}),
    (S.exponential(0.5), {0: 1, 1: 0.5, 3: 0.125}),
    (S.exponential(2.0), {0: 1, 10: 1024}),
    (S.cosine(10), {0: 1, 5: 0.5, 10: 0, 15: 0.5, 20: 1}),
    (S.cosine(10, 0.2), {0: 1, 5: 0.6, 10: 0.2}),
    (S.linear_warmup(4, 0.2), {0: 0.2, 1: 0.4, 2: 0.6, 3: 0.8, 4: 1, 50: 1}),
    (S.linear_warmup(4, 0.0, then=S.exponential(0.5)), {0: 0, 2: 0.5, 4: 1, 5: 0.5, 6: 0.25}),
    (S.linear_warmup(2, 0.5, then=lambda t: 1 / (t + 1)), {0: 0.5, 1: 0.75, 2: 1, 3: 0.5}),
    (S.inverse_time(10), {0: 1, 10: 0.5, 30: 0.25}),
    (S.inverse_sqrt(), {0: 1, 3: 0.5, 15: 0.25}),
    (S.inverse_sqrt(2.0), {0: 1, 6: 0.5}),
    (S.inverse_power(1.0, 2.0), {0: 1, 1: 0.25, 3: 1 / 16}),
]


def _stable_id(value):
    # A lambda's repr holds its address, which differs between test processes.
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))


@pytest.mark.parametrize("schedule, expected", CLOSED_FORM, ids=_stable_id)
def test_closed_form(schedule, expected):
    for t, value in expected.items():
        got = schedule(t)
        assert type(got) is float
        assert math.isclose(got, value, rel_tol=1e-14, abs_tol=1e-15), (t, got, value)
    assert schedule(np.int64(3)) == schedule(3)


def test_schedules_are_immutable_values():
    s = S.linear_warmup(5, 0.1, then=S.cosine(20, 0.1))
    assert s == S.linear_warmup(5, 0.1, then=S.cosine(20, 0.1)) and hash(s) == hash(
        S.linear_warmup(5, 0.1, then=S.cosine(20, 0.1)))
    assert s != S.linear_warmup(5, 0.1, then=S.cosine(20, 0.2))
    assert repr(s) == ("linear_warmup(warmup_steps=5, start_factor=0.1, "
                       "then=cosine(t_max=20, eta_min_factor=0.1))")
    assert eval(repr(S.multistep([9, 3], 0.5)), vars(S)) == S.multistep([3, 9], 0.5)
    with pytest.raises(AttributeError):
        s.warmup_steps = 3
    assert S.inverse_time(4) == S.inverse_power(4, 1)


def test_decreasing_schedules_meet_robbins_monro_numerically():
    """inverse_time: partial sums grow like log T, sums of squares converge (to < tau + 1)."""
    f = S.inverse_time(2.0)
    values = np.array([f(t) for t in range(200_000)])
    assert values.sum() > 2.0 * math.log(1 + 200_000 / 2.0) - 1
    assert (values ** 2).sum() < 2.0 + 1
    assert np.all(np.diff(values) < 0)


BAD = [
    (lambda: S.step(0), ValueError, "step_size"),
    (lambda: S.step(2.5), TypeError, "step_size"),
    (lambda: S.step(True), TypeError, "step_size"),
    (lambda: S.step(3, 0.0), ValueError, "gamma"),
    (lambda: S.step(3, -0.5), ValueError, "gamma"),
    (lambda: S.step(3, math.nan), ValueError, "gamma"),
    (lambda: S.step(3, "0.1"), TypeError, "gamma"),
    (lambda: S.multistep(5), TypeError, "milestones"),
    (lambda: S.multistep([3, 0]), ValueError, "milestones[1]"),
    (lambda: S.multistep([3, 4.0]), TypeError, "milestones[1]"),
    (lambda: S.multistep([3], math.inf), ValueError, "gamma"),
    (lambda: S.exponential(0), ValueError, "gamma"),
    (lambda: S.exponential(math.inf), ValueError, "gamma"),
    (lambda: S.cosine(0), ValueError, "t_max"),
    (lambda: S.cosine(10, 1.5), ValueError, "eta_min_factor"),
    (lambda: S.cosine(10, -0.1), ValueError, "eta_min_factor"),
    (lambda: S.cosine(10, math.nan), ValueError, "eta_min_factor"),
    (lambda: S.linear_warmup(0, 0.1), ValueError, "warmup_steps"),
    (lambda: S.linear_warmup(5, 1.5), ValueError, "start_factor"),
    (lambda: S.linear_warmup(5, -0.1), ValueError, "start_factor"),
    (lambda: S.linear_warmup(5, 0.1, then=0.5), TypeError, "then"),
    (lambda: S.inverse_time(0), ValueError, "tau"),
    (lambda: S.inverse_time(-1.0), ValueError, "tau"),
    (lambda: S.inverse_sqrt(math.inf), ValueError, "tau"),
    (lambda: S.inverse_power(1.0, 0.0), ValueError, "power"),
    (lambda: S.constant()(-1), ValueError, "t"),
    (lambda: S.cosine(5)(1.5), TypeError, "t"),
    (lambda: S.LRScheduler(object(), S.constant()), TypeError, "optimizer"),
    (lambda: S.LRScheduler(_Groups(0.1), 0.5), TypeError, "schedule"),
    (lambda: S.LRScheduler(_Groups(-0.1), S.constant()), ValueError,
     "param_groups[0]['initial_lr']"),
]


class _Groups:
    """The least an optimizer needs for LRScheduler: param_groups."""

    def __init__(self, *lrs):
        self.param_groups = [{"lr": lr} for lr in lrs]


@pytest.mark.parametrize("make, error, name", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_arguments_raise_naming_the_argument(make, error, name):
    with pytest.raises(error) as info:
        make()
    assert str(info.value).startswith(f"{name}: ")


def test_driver_rejects_bad_factors_and_writes_nothing():
    opt = _Groups(0.1, 0.2)
    sched = S.LRScheduler(opt, S.linear_warmup(2, 0.5, then=lambda t: [1.0, -1.0][min(t, 1)]))
    sched.step()
    sched.step()
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match=r"^schedule\(3\)"):
        sched.step()
    assert opt.param_groups == before and sched.t == 2
    overflow = S.LRScheduler(_Groups(1.0), S.exponential(10.0))
    overflow.load_state_dict({"t": 300, "base_lrs": [1.0]})
    with pytest.raises(ValueError, match=r"^schedule\(400\)"):
        overflow.load_state_dict({"t": 400, "base_lrs": [1.0]})
    opt.param_groups.append({"lr": 0.3})
    with pytest.raises(ValueError, match="param_groups"):
        sched.step()


def test_driver_keeps_an_existing_initial_lr_and_round_trips_its_state():
    opt = _Groups(0.4, 0.2)
    opt.param_groups[0]["initial_lr"] = 1.0  # left by an earlier scheduler, as in torch
    sched = S.LRScheduler(opt, S.step(2, 0.5))
    assert sched.base_lrs == (1.0, 0.2) and sched.get_last_lr() == [1.0, 0.2]
    for _ in range(5):
        sched.step()
    assert sched.t == 5 and sched.get_last_lr() == [0.25, 0.05]
    state = sched.state_dict()
    assert state == {"t": 5, "base_lrs": [1.0, 0.2]}

    fresh_opt = _Groups(0.7, 0.7)
    fresh = S.LRScheduler(fresh_opt, S.step(2, 0.5))
    for bad in [{"t": -1, "base_lrs": [1, 1]}, {"t": 1, "base_lrs": [1]}, {"base_lrs": [1, 1]},
                {"t": 1, "base_lrs": [1, math.nan]}, {"t": True, "base_lrs": [1, 1]}]:
        with pytest.raises(ValueError, match="state_dict"):
            fresh.load_state_dict(bad)
        assert fresh.t == 0 and [g["lr"] for g in fresh_opt.param_groups] == [0.7, 0.7]
    fresh.load_state_dict(state)
    assert fresh.t == 5 and [g["lr"] for g in fresh_opt.param_groups] == [0.25, 0.05]
    assert [g["initial_lr"] for g in fresh_opt.param_groups] == [1.0, 0.2]
    for _ in range(3):
        sched.step()
        fresh.step()
        assert fresh.get_last_lr() == sched.get_last_lr()


def test_fastopt_sgd_follows_the_schedule_without_recompiling():
    if "cpu" not in fastopt.available_backends():
        pytest.skip("the cpu (numba) backend is not usable here")
    from fastopt.backends.cpu import optim as cpu_optim

    schedule = S.linear_warmup(3, 0.25, then=S.cosine(6, 0.1))
    w = np.linspace(-1.0, 2.0, 17)
    b = np.full(3, 0.5)
    opt = fastopt.SGD([{"params": [w]}, {"params": [b], "lr": 0.05}], lr=0.2, backend="cpu")
    sched = S.LRScheduler(opt, schedule)
    expected_w, expected_b = w.copy(), b.copy()

    opt.step([w.copy(), 2 * b])  # compiles (or loads from the cache) for float64 first
    expected_w -= 0.2 * schedule(0) * expected_w
    expected_b -= 0.05 * schedule(0) * (2 * expected_b)
    sched.step()
    compiled = len(cpu_optim._kernels("sgd", (False,))[0].serial.signatures)

    seen = set()
    for t in range(1, 10):
        seen.add(opt.param_groups[0]["lr"])
        assert opt.param_groups[0]["lr"] == 0.2 * schedule(t)
        assert opt.param_groups[1]["lr"] == 0.05 * schedule(t)
        opt.step([w.copy(), 2 * b])  # gradient of 0.5 |w|^2 + |b|^2
        expected_w -= 0.2 * schedule(t) * expected_w
        expected_b -= 0.05 * schedule(t) * (2 * expected_b)
        sched.step()
    assert len(seen) == 9  # a different lr every step...
    assert len(cpu_optim._kernels("sgd", (False,))[0].serial.signatures) == compiled  # ...and no new compilation
    # One multiply-add per element per step; the kernel may fuse it (FMA): a few ulps.
    np.testing.assert_allclose(w, expected_w, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(b, expected_b, rtol=1e-14, atol=1e-15)
