"""fastopt.functional.bind: a step bound to its arrays gives the functional step's bits, and still
refuses what the functional step refuses, before writing anything."""

import numpy as np
import pytest
from cases import LR, all_cases, new_state, problem
from conftest import HOST, requires_cuda, to_backend

import fastopt.functional as F

STEPS = 4


def functional_run(name, options, param, grads, states, backend, lrs=None):
    """``STEPS`` functional steps in place (``lrs``: a learning rate per step)."""
    mu_product = None
    for t, g in enumerate(grads, start=1):
        kwargs = {"lr": lrs[t - 1] if lrs else LR[name], **options, "backend": backend}
        if name == "nadam":
            kwargs["mu_product"] = mu_product
        out = getattr(F, name)(param, g, *states, step=t, **kwargs)
        if name == "nadam":
            mu_product = out


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", all_cases(),
                         ids=[f"{n}[{','.join(f'{k}={v}' for k, v in o.items())}]"
                              for n, o in all_cases()])
def test_a_bound_step_gives_the_functional_bits(name, options, dtype, backend):
    param, grads = problem((3, 41), dtype, STEPS)
    expected, expected_states = param.copy(), new_state(name, options, param)
    functional_run(name, options, expected, grads, expected_states, backend)

    got, states = param.copy(), new_state(name, options, param)
    grad = np.empty_like(param)  # one buffer, written before each step, as a trainer does
    step = F.bind(name, got, grad, *states, lr=LR[name], **options, backend=backend)
    for t, g in enumerate(grads, start=1):
        grad[...] = g
        step(t)
    assert same_bits(got, expected)
    for s, e in zip(states, expected_states):
        assert same_bits(s, e)


@pytest.mark.parametrize("backend", HOST)
def test_hyperparameters_given_to_a_call_are_kept(backend):
    param, grads = problem(50, np.float32, STEPS)
    lrs = [0.1, 0.05, 0.05, 0.01]
    expected, expected_states = param.copy(), new_state("adam", {}, param)
    functional_run("adam", {}, expected, grads, expected_states, backend, lrs)
    got, states = param.copy(), new_state("adam", {}, param)
    grad = np.empty_like(param)
    step = F.bind(F.adam, got, grad, *states[:2], backend=backend)  # max_exp_avg_sq left out
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        grad[...] = g
        if t in (1, 2, 4):  # a new rate; step 3 keeps step 2's
            step(t, lr=lr)
        else:
            step(t)
    assert same_bits(got, expected)


@pytest.mark.parametrize("backend", HOST)
def test_a_step_bound_to_numpy_arrays_is_bound_to_their_memory(backend):
    param, grads = problem(64, np.float32, 2)
    expected, expected_states = param.copy(), new_state("adam", {}, param)
    functional_run("adam", {}, expected, grads, expected_states, backend)
    m, v = np.zeros_like(param), np.zeros_like(param)
    grad = np.empty_like(param)
    step = F.bind("adam", param, grad, m, v, lr=LR["adam"], backend=backend)
    grad[...] = grads[0]
    step(1)
    # Changes to the array objects after binding: the step still updates the memory it was bound
    # to, as 64 float32 elements, as a numpy view made at binding would.
    grad.shape = (8, 8)
    grad[...] = grads[1].reshape(8, 8)
    m.shape = (2, 32)
    v.dtype = np.int32
    step(2)
    m.shape, v.dtype = (64,), np.float32
    for a, b in zip((param, m, v), (expected, *expected_states)):
        assert same_bits(a, b)


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_bound_step_above_the_parallel_threshold_gives_the_functional_bits(name, backend):
    from fastopt.backends.cpu.optim import PARALLEL_THRESHOLD

    options = {"momentum": 0.9} if name == "sgd" else {}
    param, grads = problem(PARALLEL_THRESHOLD + 3, np.float32, 2)
    expected, expected_states = param.copy(), new_state(name, options, param)
    functional_run(name, options, expected, grads, expected_states, backend)
    states = new_state(name, options, param)
    grad = np.empty_like(param)
    step = F.bind(name, param, grad, *states, lr=LR[name], **options, backend=backend)
    for t, g in enumerate(grads, start=1):
        grad[...] = g
        step(t)
    for a, b in zip((param, *states), (expected, *expected_states)):
        assert same_bits(a, b)


def test_bad_bindings_and_calls_raise_before_writing():
    param, (g,) = problem(16, np.float32, 1)
    m, v = np.zeros_like(param), np.zeros_like(param)
    with pytest.raises(ValueError, match="step: expected one of"):
        F.bind("adamm", param, g, m, v)
    with pytest.raises(ValueError, match="step: expected one of"):
        F.bind(np.add, param, g, m, v)  # a function of another module, whatever its name
    with pytest.raises(TypeError, match="not a hyperparameter of adam"):
        F.bind("adam", param, g, m, v, momentum=0.9)
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        F.bind("adam", param, g, m, v, betas=(1.5, 0.9))
    with pytest.raises(ValueError, match="exp_avg_sq: this adam configuration needs"):
        F.bind("adam", param, g, m)
    step = F.bind("adam", param, g, m, v)
    before = param.copy()
    with pytest.raises(ValueError, match="step: expected the 1-based number"):
        step(0)
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        step(1, lr=float("nan"))
    with pytest.raises(ValueError, match="other state arrays"):
        step(1, amsgrad=True)
    assert same_bits(param, before)
    step(1)  # the failed calls changed nothing bound
    assert not same_bits(param, before)


def test_torch_tensors_are_viewed_again_at_every_call():
    torch = pytest.importorskip("torch")
    param, grads = problem(32, np.float32, STEPS)
    expected, expected_states = param.copy(), new_state("sgd", {"momentum": 0.9}, param)
    functional_run("sgd", {"momentum": 0.9}, expected, grads, expected_states, None)
    p, buf = torch.from_numpy(param.copy()), torch.zeros(32)
    grad = torch.empty(32)
    step = F.bind("sgd", p, grad, buf, lr=LR["sgd"], momentum=0.9)
    for t, g in enumerate(grads, start=1):
        grad.copy_(torch.from_numpy(g))
        step(t)
    assert same_bits(p.numpy(), expected)


def test_lamb_segments_and_nadam_mu_product_are_bound_too():
    param, grads = problem(30, np.float32, STEPS)
    offsets = [0, 10, 10, 30]
    expected, m1, v1 = param.copy(), np.zeros(30, np.float32), np.zeros(30, np.float32)
    for t, g in enumerate(grads, start=1):
        F.lamb(expected, g, m1, v1, step=t, segment_offsets=offsets)
    got, m2, v2 = param.copy(), np.zeros(30, np.float32), np.zeros(30, np.float32)
    grad = np.empty_like(param)
    step = F.bind("lamb", got, grad, m2, v2, segment_offsets=offsets)
    for t, g in enumerate(grads, start=1):
        grad[...] = g
        step(t)
    assert same_bits(got, expected)
    with pytest.raises(TypeError, match="segment_offsets: adam has no segments"):
        F.bind("adam", got, grad, m2, v2, segment_offsets=offsets)
    with pytest.raises(TypeError, match="mu_product: adam keeps none"):
        F.bind("adam", got, grad, m2, v2, mu_product=0.5)
    with pytest.raises(ValueError, match="mu_product: expected a value <= 1.0"):
        F.bind("nadam", got, grad, m2, v2, mu_product=1.5)


@requires_cuda
def test_a_bound_step_on_device_arrays_gives_the_functional_bits():
    param, grads = problem(300, np.float32, STEPS)
    runs = []
    for bound in (False, True):
        p, m, v = (to_backend("cuda", a) for a in (param, *new_state("adam", {}, param)[:2]))
        grad = to_backend("cuda", np.zeros_like(param))
        step = F.bind("adam", p, grad, m, v, lr=LR["adam"]) if bound else None
        for t, g in enumerate(grads, start=1):
            grad.copy_to_device(g)
            if bound:
                step(t)
            else:
                F.adam(p, grad, m, v, step=t, lr=LR["adam"])
        runs.append([a.copy_to_host() for a in (p, m, v)])
    for a, b in zip(*runs):
        assert same_bits(a, b)
