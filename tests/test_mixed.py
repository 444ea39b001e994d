"""Mixed precision: float32 master weights, float16/bfloat16 model copies and bfloat16 state."""

import itertools

import numpy as np
import pytest

import fastopt
from fastopt import functional, lowp, mixed
from conftest import AVAILABLE, to_backend, to_host

GRAD = {"float32": lambda g: g, "float16": lambda g: g.astype(np.float16),
        "bfloat16": lowp.to_bfloat16}
MODEL = {"float16": np.float16, "bfloat16": np.uint16}
STATE = {"float32": np.float32, "bfloat16": np.uint16}
COMBOS = list(itertools.product(["adam", "adamw"], GRAD, MODEL, STATE, lowp.ROUNDINGS,
                                [False, True]))


def run(backend, name, grad_fmt, model_fmt, state_fmt, rounding, amsgrad, shape, steps=3):
    rng = np.random.default_rng(0)
    master = to_backend(backend, rng.standard_normal(shape).astype(np.float32))
    state = [to_backend(backend, np.zeros(shape, STATE[state_fmt])) for _ in range(3)]
    model = to_backend(backend, np.zeros(shape, MODEL[model_fmt]))
    for t in range(1, steps + 1):
        grad = GRAD[grad_fmt]((rng.standard_normal(shape) * 1e-2).astype(np.float32))
        getattr(mixed, name)(master, to_backend(backend, grad), state[0], state[1], model,
                             state[2], step=t, lr=1e-2, weight_decay=0.1, amsgrad=amsgrad,
                             rounding=rounding, seed=42, backend=backend)
    return [to_host(a) for a in (master, model, *state)]


@pytest.mark.parametrize("backend", [b for b in AVAILABLE if b != "numpy"])
@pytest.mark.parametrize("name,grad_fmt,model_fmt,state_fmt,rounding,amsgrad", COMBOS,
                         ids=["-".join(map(str, c)) for c in COMBOS])
def test_backend_rounds_to_the_same_bits_as_the_reference(backend, name, grad_fmt, model_fmt,
                                                          state_fmt, rounding, amsgrad):
    shape = (3, 5) if backend == "cuda" else (40_009,)  # above the parallel threshold on the host
    expected = run("numpy", name, grad_fmt, model_fmt, state_fmt, rounding, amsgrad, shape)
    got = run(backend, name, grad_fmt, model_fmt, state_fmt, rounding, amsgrad, shape)
    for e, g in zip(expected, got):
        assert np.array_equal(e, g, equal_nan=True)


@pytest.mark.parametrize("model_fmt", list(MODEL))
def test_reference_is_the_float32_step_then_rounding(model_fmt):
    rng = np.random.default_rng(1)
    master = rng.standard_normal(1000).astype(np.float32)
    grad = rng.standard_normal(1000).astype(np.float32)
    p32, m32, v32 = master.copy(), np.zeros_like(master), np.zeros_like(master)
    functional.adamw(p32, grad, m32, v32, step=1, lr=0.1, backend="numpy")
    m, v = np.zeros_like(master), np.zeros_like(master)
    model = np.zeros(1000, MODEL[model_fmt])
    mixed.adamw(master, grad, m, v, model, step=1, lr=0.1, backend="numpy")
    assert np.array_equal(master, p32) and np.array_equal(m, m32) and np.array_equal(v, v32)
    expected = p32.astype(np.float16) if model_fmt == "float16" else lowp.to_bfloat16(p32)
    assert np.array_equal(model.view(np.uint16), expected.view(np.uint16))


def test_bfloat16_state_is_the_rounded_float32_state():
    rng = np.random.default_rng(2)
    master = rng.standard_normal(500).astype(np.float32)
    grad = rng.standard_normal(500).astype(np.float32)
    p32, m32, v32 = master.copy(), np.zeros_like(master), np.zeros_like(master)
    functional.adam(p32, grad, m32, v32, step=1, lr=0.1, backend="numpy")
    m, v = np.zeros(500, np.uint16), np.zeros(500, np.uint16)
    mixed.adam(master, grad, m, v, np.zeros(500, np.uint16), step=1, lr=0.1, backend="numpy")
    assert np.array_equal(master, p32)  # the step computes in float32
    assert np.array_equal(m, lowp.to_bfloat16(m32)) and np.array_equal(v, lowp.to_bfloat16(v32))


@pytest.mark.parametrize("model_fmt", list(MODEL))
def test_stochastic_rounding_is_reproducible_restartable_and_unbiased(model_fmt):
    n = 200_000
    value = np.float32(1 + 2**-12) if model_fmt == "float16" else np.float32(1 + 2**-9)
    bits = [lowp.round_bits(np.full(n, value), model_fmt, "stochastic", lowp.stream_key(s, t))
            for s, t in [(1, 1), (1, 1), (1, 2), (2, 1)]]
    assert np.array_equal(bits[0], bits[1])  # same seed and step: same bits
    assert not np.array_equal(bits[0], bits[2]) and not np.array_equal(bits[0], bits[3])
    up = np.mean(lowp.from_bits(bits[0], model_fmt) > 1)
    assert up == pytest.approx(0.25, abs=0.005)  # value sits a quarter of the way up
    nearest = lowp.from_bits(lowp.round_bits(np.full(n, value), model_fmt), model_fmt)
    assert np.all(nearest == 1)


def test_stochastic_rounding_of_a_training_run_resumes_bit_for_bit():
    full = run("numpy", "adam", "float32", "bfloat16", "float32", "stochastic", False, (64,), 4)
    rng_master = np.random.default_rng(0).standard_normal((64,)).astype(np.float32)
    assert not np.array_equal(full[0], rng_master)
    again = run("numpy", "adam", "float32", "bfloat16", "float32", "stochastic", False, (64,), 4)
    for a, b in zip(full, again):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("change,error,words", [
    (dict(model=np.zeros(8, np.float32)), TypeError, "model: expected dtype float16 or uint16"),
    (dict(master=np.zeros(8, np.float64)), TypeError, "master: expected dtype float32"),
    (dict(exp_avg_sq=np.zeros(8, np.uint16)), TypeError, "exp_avg_sq: dtype uint16 does not"),
    (dict(grad=np.zeros(9, np.float32)), ValueError, "grad: shape"),
    (dict(rounding="up"), ValueError, "rounding: expected 'nearest' or 'stochastic'"),
    (dict(seed=1.5), TypeError, "seed: expected an int"),
    (dict(lr=-1.0), ValueError, "lr: expected a value >= 0.0"),
])
def test_bad_input_is_refused_before_writing(change, error, words):
    arrays = dict(master=np.ones(8, np.float32), grad=np.ones(8, np.float32),
                  exp_avg=np.zeros(8, np.float32), exp_avg_sq=np.zeros(8, np.float32),
                  model=np.zeros(8, np.float16))
    arrays.update((k, v) for k, v in change.items() if k in arrays)
    before = {k: v.copy() for k, v in arrays.items()}
    options = {k: v for k, v in change.items() if k not in arrays}
    with pytest.raises(error, match=words):
        mixed.adam(**arrays, step=1, backend="numpy", **options)
    for k, v in arrays.items():
        assert np.array_equal(v, before[k])


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("model_fmt,state_dtype,rounding", [
    ("float16", "float32", "nearest"), ("bfloat16", "bfloat16", "stochastic"),
    ("float16", "bfloat16", "stochastic"), ("bfloat16", "float32", "nearest")])
def test_optimizer_class_keeps_master_weights(backend, model_fmt, state_dtype, rounding):
    """The class on float16/bfloat16 parameters equals the functional mixed step it wraps, bit for
    bit, and a state dict resumes it bit for bit."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal((4, 6)).astype(np.float32)
    model0 = values.astype(np.float16) if model_fmt == "float16" else lowp.to_bfloat16(values)
    grads = [GRAD[model_fmt]((rng.standard_normal((4, 6)) * 0.1).astype(np.float32))
             for _ in range(4)]
    # the reference: the functional step on the master copy, parameter stream 1
    master = lowp.from_bits(model0, model_fmt)
    state = [np.zeros((4, 6), STATE[state_dtype]) for _ in range(2)]
    expected = model0.copy()
    for t, g in enumerate(grads, start=1):
        mixed.adamw(master, g, *state, expected, step=t, lr=0.01, rounding=rounding, seed=9,
                    backend="numpy")  # stream 0; the class uses stream 1 for parameter 0
    model = to_backend(backend, model0)
    opt = fastopt.AdamW([model], lr=0.01, rounding=rounding, seed=9, state_dtype=state_dtype,
                        backend=backend)
    for g in grads[:2]:
        opt.step([to_backend(backend, g)])
    saved = opt.state_dict()
    assert saved["state"][0]["master"].dtype == np.float32
    again = to_backend(backend, to_host(model))
    resumed = fastopt.AdamW([again], lr=0.01, rounding=rounding, seed=9,
                            state_dtype=state_dtype, backend=backend)
    resumed.load_state_dict(saved)
    for g in grads[2:]:
        opt.step([to_backend(backend, g)])
        resumed.step([to_backend(backend, g)])
    assert np.array_equal(to_host(model), to_host(again))
    if rounding == "nearest":  # with nearest rounding the stream does not matter
        assert np.array_equal(to_host(model).view(np.uint16), expected.view(np.uint16))
    np.testing.assert_allclose(opt.state_dict()["state"][0]["master"], master, rtol=1e-6)


def test_low_precision_parameters_need_master_weights_and_skip_nonfinite_steps():
    with pytest.raises(TypeError, match=r"params\[0\]: float16 parameters need float32 master"):
        fastopt.SGD([np.zeros(3, np.float16)])
    model = np.ones(4, np.float16)
    opt = fastopt.Adam([model], lr=0.1)
    info = opt.step([np.array([1, np.inf, 1, 1], np.float16)])
    assert info.skipped and np.array_equal(model, np.ones(4, np.float16))
    info = opt.step([np.ones(4, np.float16)], max_norm=1.0)
    assert info.grad_norm == pytest.approx(2.0) and info.clip_coef == pytest.approx(0.5, 1e-5)
    assert np.all(model < 1) and opt.state[0]["step"] == 1
    with pytest.raises(TypeError, match=r"grads\[0\]: expected dtype float32 or float16"):
        opt.step([np.ones(4, np.float64)])
