"""Inputs meant to corrupt memory or give a silently wrong result: each is refused with a clear
error naming the argument, reported, or handled, and never writes where it should not."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastopt
from fastopt import functional
from fastopt.optim import algorithms as alg
from conftest import HOST

try:
    import torch
except ImportError:  # the torch cases are skipped
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


# ---- Tensors re-pointed after the optimizer viewed them --------------------------------------

@requires_torch
@pytest.mark.parametrize("backend", HOST)
def test_a_re_pointed_tensor_is_viewed_again_and_nothing_else_is_written(backend):
    t, g = torch.ones(1 << 16), torch.ones(1 << 16)
    opt = fastopt.SGD([t], lr=0.5, backend=backend)
    opt.step([g])
    t.data = torch.zeros(1 << 16)  # the storage the optimizer viewed is freed
    victim = torch.full((1 << 16,), 7.0)
    opt.step([g])
    assert torch.all(t == -0.5)
    assert torch.all(victim == 7.0)
    t.set_(torch.full((1 << 16,), 2.0))
    opt.step([g])
    assert torch.all(t == 1.5)


@requires_torch
@pytest.mark.parametrize("backend", HOST)
def test_a_resized_tensor_is_refused_before_anything_is_written(backend):
    t, g = torch.ones(100), torch.ones(100)
    opt = fastopt.Adam([t], lr=0.1, backend=backend)
    opt.step([g])
    before = {k: v.copy() for k, v in opt.state[0].items() if hasattr(v, "copy")}
    t.resize_(10)
    with pytest.raises(ValueError, match=r"params\[0\]: now float32 of shape \(10,\)"):
        opt.step([g[:10]])
    assert opt.state[0]["step"] == 1
    for k, v in before.items():
        assert np.array_equal(opt.state[0][k], v)


# ---- Parameters sharing memory ------------------------------------------------------------------

@pytest.mark.parametrize("backend", HOST)
def test_parameters_that_share_memory_are_refused_naming_both(backend):
    p = np.zeros(10, np.float32)
    q = np.zeros(10, np.float32)
    for params in ([p, p], [q, p, p[:]], [p[:6], p[4:]]):
        with pytest.raises(ValueError, match=r"params\[\d\] and params\[\d\]: parameters share"):
            fastopt.SGD(params, lr=0.1, backend=backend)
    opt = fastopt.SGD([p[:5]], lr=0.1, backend=backend)
    with pytest.raises(ValueError, match=r"params\[0\] and params\[1\]: parameters share"):
        opt.add_param_group({"params": [p[2:4]]})
    assert len(opt.param_groups) == 1
    fastopt.SGD([p[:5], p[5:]], lr=0.1, backend=backend)  # adjacent, not overlapping


# ---- Precision: scales and hyperparameters past float32, and float64 norms that overflow -----

@pytest.mark.parametrize("backend", HOST)
def test_a_grad_scale_whose_inverse_overflows_float32_is_refused(backend):
    p = np.ones(8, np.float32)
    opt = fastopt.Adam([p], backend=backend)
    with pytest.raises(ValueError, match=r"grad_scale: 1/grad_scale = 1e\+40 overflows float32"):
        opt.step([np.ones(8, np.float32)], grad_scale=1e-40)
    assert np.all(p == 1.0) and 0 not in opt.state


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("name", ["lr", "eps", "weight_decay"])
def test_a_hyperparameter_past_float32_is_refused_for_float32_parameters(name, backend):
    p = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=f"{name}: 1e\\+39 overflows float32"):
        fastopt.Adam([p], backend=backend, **{name: 1e39})
    opt = fastopt.Adam([p], backend=backend)
    opt.param_groups[0][name] = 1e39
    with pytest.raises(ValueError, match=rf"param_groups\[0\]: {name}: 1e\+39 overflows"):
        opt.step([np.ones(8, np.float32)])
    assert np.all(p == 1.0)
    fastopt.Adam([np.ones(8)], backend=backend, **{name: 1e39})  # float64 holds it


@pytest.mark.parametrize("backend", HOST)
def test_a_scaled_float32_gradient_that_overflows_is_reported_and_skipped(backend):
    p = np.ones(8, np.float32)
    opt = fastopt.SGD([p], lr=1e-3, backend=backend)
    info = opt.step([np.full(8, 1e30, np.float32)], grad_scale=1e-10)
    assert info.found_inf and info.skipped
    assert np.all(p == 1.0)


@pytest.mark.parametrize("backend", HOST)
def test_finite_float64_gradients_whose_norm_overflows_are_stepped(backend):
    p = np.ones(8)
    opt = fastopt.SGD([p], lr=1e-200, backend=backend)
    info = opt.step([np.full(8, 1e200)], return_norm=True)
    assert info.grad_norm == np.inf and not info.found_inf and not info.skipped
    assert np.all(p == 0.0)  # 1 - 1e-200 * 1e200
    info = opt.step([np.full(8, 1e200)])  # the check alone: the largest magnitude is finite
    assert info.grad_norm is None and not info.found_inf and not info.skipped
    assert np.all(p == -1.0)
    for norm_asked in (False, True):
        info = opt.step([np.array([np.inf, *[1e200] * 7])], return_norm=norm_asked)
        assert info.found_inf and info.skipped and np.all(p == -1.0)


# ---- Threads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", HOST)
def test_one_optimizer_stepped_from_two_threads_counts_every_step(backend):
    p = np.zeros(1 << 16)
    g = np.ones(1 << 16)
    opt = fastopt.SGD([p], lr=0.5, backend=backend)

    def steps():
        for _ in range(25):
            opt.step([g])

    threads = [threading.Thread(target=steps) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opt.state[0]["step"] == 50
    assert np.all(p == -25.0)


def test_parallel_steps_from_two_threads_on_the_workqueue_layer_do_not_abort():
    program = """
import threading
import numpy as np
import fastopt
def run():
    p, g = np.zeros(1 << 17, np.float32), np.ones(1 << 17, np.float32)
    opt = fastopt.Adam([p], lr=1e-3, backend="cpu")
    for _ in range(20):
        opt.step([g])
threads = [threading.Thread(target=run) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print("done")
"""
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "done"


# ---- NAdam's product of momentum coefficients --------------------------------------------------

def test_nadam_mu_product_without_the_previous_one_takes_constant_time():
    for step in (2 * 10**6, 2**62):
        start = time.perf_counter()
        product = alg.nadam_mu_product(0.9, 4e-3, step)
        assert time.perf_counter() - start < 0.05
        assert 0.0 <= product < 2.0**-64
    p = np.ones(4, np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    functional.nadam(p, np.ones(4, np.float32), m, v, step=2**62)
    assert np.all(np.isfinite(p))


def test_nadam_mu_product_matches_the_step_by_step_product():
    for beta1, psi in ((0.9, 4e-3), (0.9999999, 10.0), (0.99999, 0.5)):
        product = 1.0
        for t in range(1, 20_001):
            product *= alg.nadam_mu(beta1, psi, t)
            if t in (1, 10, 9_999):
                got = alg.nadam_mu_product(beta1, psi, t)
                assert got == product or product < 2.0**-64 and got < 2.0**-64
        assert alg.nadam_mu_product(beta1, psi, 20_000) == pytest.approx(product, rel=1e-11,
                                                                         abs=1e-300)


# ---- A kernel that fails in the middle of a list ---------------------------------------------

@pytest.mark.parametrize("backend", HOST)
def test_a_failing_launch_advances_the_step_counts_of_the_parameters_stepped_only(backend):
    params = [np.zeros(n) for n in range(1, 6)]
    grads = [np.ones(n) for n in range(1, 6)]
    opt = fastopt.SGD(params, lr=0.5, backend=backend)
    opt.step(grads)
    real = opt._kernels

    class Failing:  # the backend module, failing on the third parameter
        TAKES_PYTHON_FLOATS = real.TAKES_PYTHON_FLOATS
        sum_of_squares = staticmethod(real.sum_of_squares)
        max_magnitude_bits = staticmethod(real.max_magnitude_bits)

        @staticmethod
        def sgd(param, *rest):
            if param.size == 3:
                raise RuntimeError("launch failed")
            real.sgd(param, *rest)

    opt._kernels, opt._bound = Failing, {}
    with pytest.raises(RuntimeError, match="launch failed"):
        opt.step(grads)
    assert [opt.state[i]["step"] for i in range(5)] == [2, 2, 1, 1, 1]


# ---- Errors that name the argument -----------------------------------------------------------

def test_numbers_past_the_float_range_raise_value_errors_naming_them():
    p = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        fastopt.SGD([p], lr=10**400)
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        functional.sgd(p, np.ones(4, np.float32), step=1, lr=10**400)
    with pytest.raises(ValueError, match="step: expected the 1-based number"):
        functional.adam(p, np.ones(4, np.float32), np.zeros(4, np.float32),
                        np.zeros(4, np.float32), step=10**400)
    with pytest.raises(ValueError, match="step: expected the 1-based number"):
        functional.adam(p, np.ones(4, np.float32), np.zeros(4, np.float32),
                        np.zeros(4, np.float32), step=2**63)
    assert np.all(p == 0.0)


def test_a_non_integer_layer_width_is_refused():
    with pytest.raises(TypeError, match=r"sizes\[1\]: expected an int layer width, got 2.7"):
        fastopt.MLP([4, 2.7, 3])


@pytest.mark.parametrize("backend", HOST)
def test_a_misaligned_array_is_refused_before_anything_is_written(backend):
    raw = np.zeros(4 * 9 + 1, np.uint8)
    p = np.ndarray((9,), np.float32, raw.data, offset=1)  # starts inside a float
    assert not p.flags.aligned
    with pytest.raises(ValueError, match="param: expected an array aligned to its dtype"):
        functional.sgd(p, np.ones(9, np.float32), step=1, lr=0.1, backend=backend)
    assert not raw.any()
