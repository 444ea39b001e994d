"""Mixed precision: float32 master weights, float16/bfloat16 model copies and bfloat16 state, for
every optimizer but LAMB, on every backend, bit for bit against the numpy reference."""

import numpy as np
import pytest

import fastopt
import cases
from fastopt.optim import _api, algorithms as _algorithms, optimizers
from fastopt import functional, lowp, mixed
from fastopt.backends.cuda.optim import SIMULATOR
from conftest import AVAILABLE, to_backend, to_host

GRAD = {"float32": lambda g: g, "float16": lambda g: g.astype(np.float16),
        "bfloat16": lowp.to_bfloat16}
MODEL = {"float16": np.float16, "bfloat16": np.uint16}
STATE = {"float32": np.float32, "bfloat16": np.uint16}

#: The main options of each algorithm with a mixed-precision step (LAMB has none); any other
#: gets its richest option set of the test table.
_OPTIONS = {
    "sgd": [dict(momentum=0.9, dampening=0.3, weight_decay=0.1),
            dict(momentum=0.9, nesterov=True, maximize=True), dict()],
    "adagrad": [dict(lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5)],
    "rmsprop": [dict(centered=True, momentum=0.9, weight_decay=0.1), dict(maximize=True)],
    "adam": [dict(amsgrad=True, weight_decay=0.1), dict(maximize=True)],
    "adamw": [dict(amsgrad=True), dict(weight_decay=0.1)],
    "adamax": [dict(weight_decay=0.1, maximize=True)],
    "nadam": [dict(weight_decay=0.1),
              dict(decoupled_weight_decay=True, weight_decay=0.1, momentum_decay=0.5)],
    "radam": [dict(weight_decay=0.1), dict(decoupled_weight_decay=True, weight_decay=0.1,
                                            maximize=True)],
    "adadelta": [dict(weight_decay=0.1)],
    "lion": [dict(weight_decay=0.1, maximize=True)],
}
MIXED = [name for name, a in _algorithms.ALGORITHMS.items() if a.mixed]
OPTIONS = {name: _OPTIONS.get(name) or [cases.RICHEST[name]] for name in MIXED}
LR = {name: cases.LR[name] for name in MIXED}
#: RAdam rectifies from step 6 on: 7 steps cover both of its branches.
STEPS = {"radam": 7}
#: How many state arrays come before ``model`` in the functional signature (the ones the default
#: hyperparameters use); the others follow it.
REQUIRED = {name: len(_api.state_args(_algorithms.ALGORITHMS[name])[0]) for name in MIXED}
CLASSES = {name: optimizers.CLASSES[name] for name in MIXED}

#: (grad format, model format, state format, rounding, host size, simulator size): every format
#: and rounding of each kind, every (grad, state) array type once, and sizes that hit a single
#: element, tails, several C blocks (512) and the parallel path (from 32768) on the host. The
#: CUDA simulator runs each thread in Python, so it gets small arrays spanning several blocks.
FORMATS = [("float32", "float16", "float32", "nearest", 40_009, 100),
           ("float16", "float16", "bfloat16", "stochastic", 4099, 257),
           ("bfloat16", "bfloat16", "float32", "stochastic", 257, 33),
           ("float32", "bfloat16", "bfloat16", "nearest", 1, 1)]
#: Each option case in every format; the host's parallel size only for each algorithm's richest
#: option case (the others at a serial size spanning several C blocks): compiling the numba
#: parallel kernels costs most of this file's time, and their template is the serial one's.
CASES = [(name, o, f if o is OPTIONS[name][-1] or f[4] != 40_009 else (*f[:4], 10_007, f[5]))
         for name in OPTIONS for o in OPTIONS[name] for f in FORMATS]


def case_id(name, options, formats):
    opts = ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"
    return f"{name}[{opts}]-{'-'.join(map(str, formats[:4]))}-n{formats[4]}"


def new_states(name, options, size, state_fmt):
    """Every state array of ``name``, as it starts, in the state format."""
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = {**algorithm.defaults, **options}
    dtype = STATE[state_fmt]
    return [np.full(size, mixed.state_fill(algorithm.initial_state(hyper, s), dtype), dtype)
            for s in algorithm.state]


def call(name, master, grad, states, model, **kwargs):
    """The functional mixed step of ``name``, with its arrays in signature order."""
    k = REQUIRED.get(name, len(states))
    return getattr(mixed, name)(master, grad, *states[:k], model, *states[k:], **kwargs)


def run(backend, name, options, grad_fmt, model_fmt, state_fmt, rounding, size):
    steps = STEPS.get(name, 3)
    rng = np.random.default_rng(0)
    master = to_backend(backend, rng.standard_normal(size).astype(np.float32))
    states = [to_backend(backend, s) for s in new_states(name, options, size, state_fmt)]
    model = to_backend(backend, np.zeros(size, MODEL[model_fmt]))
    mu_product = 1.0
    for t in range(1, steps + 1):
        grad = GRAD[grad_fmt]((rng.standard_normal(size) * 0.1).astype(np.float32))
        kwargs = dict(step=t, lr=LR[name], rounding=rounding, seed=42, backend=backend,
                      **options)
        if name == "nadam":
            kwargs["mu_product"] = mu_product
        out = call(name, master, to_backend(backend, grad), states, model, **kwargs)
        mu_product = out if name == "nadam" else None
    return [to_host(a) for a in (master, model, *states)]


@pytest.mark.parametrize("backend", [b for b in AVAILABLE if b != "numpy"])
@pytest.mark.parametrize("name,options,formats", CASES,
                         ids=[case_id(*case) for case in CASES])
def test_backend_gives_the_bits_of_the_reference(backend, name, options, formats):
    grad_fmt, model_fmt, state_fmt, rounding, size, simulator_size = formats
    if backend == "cuda" and SIMULATOR:
        size = simulator_size
    expected = run("numpy", name, options, grad_fmt, model_fmt, state_fmt, rounding, size)
    got = run(backend, name, options, grad_fmt, model_fmt, state_fmt, rounding, size)
    for what, e, g in zip(["master", "model", *_algorithms.ALGORITHMS[name].state], expected, got):
        assert_same_bits(e, g, backend, name, what)


@pytest.mark.parametrize("backend", [b for b in AVAILABLE if b != "numpy"])
@pytest.mark.parametrize("name,options", [("adam", dict(amsgrad=True)), ("adamax", {})])
def test_maxima_let_nan_win_as_numpy_maximum(backend, name, options):
    """A NaN gradient element makes AMSGrad's max_exp_avg_sq and Adamax's exp_inf NaN there for
    good, as numpy.maximum does in the reference; the other elements keep the reference's bits.
    NaNs are compared as NaNs: a GPU does not keep their payloads."""
    size = 33
    rng = np.random.default_rng(4)
    master0 = rng.standard_normal(size).astype(np.float32)
    grads = [(rng.standard_normal(size) * 0.1).astype(np.float16) for _ in range(3)]
    grads[1][[3, 20]] = np.nan
    results = []
    for b in ("numpy", backend):
        master = to_backend(b, master0)
        states = [to_backend(b, s) for s in new_states(name, options, size, "float32")]
        model = to_backend(b, np.zeros(size, np.float16))
        for t, g in enumerate(grads, start=1):
            call(name, master, to_backend(b, g), states, model, step=t, lr=LR[name], backend=b,
                 **options)
        results.append([to_host(a) for a in (master, model, *states)])
    what = ["master", "model", *_algorithms.ALGORITHMS[name].state]
    assert np.isnan(results[0][-1][[3, 20]]).all()  # the maximum's state, NaN from step 2 on
    for w, expected, got in zip(what, *results):
        nan = np.isnan(expected)
        assert np.array_equal(nan, np.isnan(got)), w
        assert expected[~nan].tobytes() == got[~nan].tobytes(), w


def assert_same_bits(expected, got, backend, name, what):
    """The same dtype and bits; except for Adadelta under the CUDA simulator, which runs the
    elements as Python, where math.sqrt returns a Python float: sqrt(a + eps) / sqrt(v + eps) is
    then divided in float64 and rounded once, where float32 arithmetic rounds each square root and
    the quotient (a few ulps after a few steps; a 16-bit copy may round the other way)."""
    assert expected.dtype == got.dtype, what
    ulps = 16 if backend == "cuda" and SIMULATOR and name == "adadelta" else 0
    bits = np.uint32 if expected.dtype.itemsize == 4 else np.uint16
    apart = np.abs(expected.view(bits).astype(np.int64) - got.view(bits).astype(np.int64))
    assert apart.max(initial=0) <= (ulps if bits is np.uint32 else min(ulps, 1)), what


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("model_fmt", list(MODEL))
def test_reference_is_the_float32_step_then_rounding(name, model_fmt):
    """float32 gradient and state: the master weights and state are the float32 step's exactly,
    the model copy is the new master weights rounded to nearest even."""
    options = OPTIONS[name][0]
    rng = np.random.default_rng(1)
    master = rng.standard_normal(1000).astype(np.float32)
    grad = rng.standard_normal(1000).astype(np.float32)
    hyper = dict(step=1, lr=LR[name], backend="numpy", **options)
    p32, s32 = master.copy(), new_states(name, options, 1000, "float32")
    k = REQUIRED.get(name, len(s32))
    optional = dict(zip(_algorithms.ALGORITHMS[name].state[k:], s32[k:]))
    getattr(functional, name)(p32, grad, *s32[:k], **optional, **hyper)
    states, model = new_states(name, options, 1000, "float32"), np.zeros(1000, MODEL[model_fmt])
    call(name, master, grad, states, model, **hyper)
    assert master.tobytes() == p32.tobytes()
    assert all(s.tobytes() == e.tobytes() for s, e in zip(states, s32))
    expected = p32.astype(np.float16) if model_fmt == "float16" else lowp.to_bfloat16(p32)
    assert model.view(np.uint16).tobytes() == expected.view(np.uint16).tobytes()


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


def test_stochastic_rounding_of_a_training_run_is_reproducible():
    args = ("numpy", "adam", {}, "float32", "bfloat16", "float32", "stochastic", 64)
    full, again = run(*args), run(*args)
    assert not np.array_equal(full[0], np.random.default_rng(0).standard_normal(64))
    for a, b in zip(full, again):
        assert a.tobytes() == b.tobytes()


# --- the classes -----------------------------------------------------------------------------


def class_run(name, backend, model_fmt, state_dtype, rounding, steps=4, resume_at=None):
    """A class over one float16/bfloat16 parameter; with ``resume_at``, the state dict is moved
    into a new optimizer after that many steps. Returns the model copy, the master weights and
    the final state dict."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal((4, 6)).astype(np.float32)
    model0 = values.astype(np.float16) if model_fmt == "float16" else lowp.to_bfloat16(values)
    grads = [GRAD[model_fmt]((rng.standard_normal((4, 6)) * 0.1).astype(np.float32))
             for _ in range(steps)]
    options = dict(lr=LR[name], rounding=rounding, seed=9, state_dtype=state_dtype,
                   backend=backend, **OPTIONS[name][0])
    model = to_backend(backend, model0)
    opt = CLASSES[name]([model], **options)
    for t, g in enumerate(grads):
        if t == resume_at:
            model = to_backend(backend, to_host(model))
            saved = opt.state_dict()
            opt = CLASSES[name]([model], **{**options, "lr": 123.0})
            opt.load_state_dict(saved)
        opt.step([to_backend(backend, g)])
    state = opt.state_dict()
    return to_host(model), state["state"][0]["master"], state


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("model_fmt,state_dtype", [("float16", "bfloat16"),
                                                   ("bfloat16", "float32")])
def test_class_is_the_functional_step(name, model_fmt, state_dtype):
    """With nearest rounding (the stream does not matter), the class on a float16/bfloat16
    parameter equals the functional mixed step on its master copy, bit for bit: state created
    with the right fill and format, step counts, NAdam's mu_product."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal((4, 6)).astype(np.float32)
    model0 = values.astype(np.float16) if model_fmt == "float16" else lowp.to_bfloat16(values)
    grads = [GRAD[model_fmt]((rng.standard_normal((4, 6)) * 0.1).astype(np.float32))
             for _ in range(4)]
    master = lowp.from_bits(model0, model_fmt)
    states = [s.reshape(4, 6) for s in new_states(name, OPTIONS[name][0], 24, state_dtype)]
    expected = model0.copy()
    mu_product = 1.0
    for t, g in enumerate(grads, start=1):
        kwargs = dict(step=t, lr=LR[name], backend="numpy", **OPTIONS[name][0])
        if name == "nadam":
            kwargs["mu_product"] = mu_product
        mu_product = call(name, master, g, states, expected, **kwargs)
    model, got_master, state = class_run(name, "numpy", model_fmt, state_dtype, "nearest")
    assert model.view(np.uint16).tobytes() == expected.view(np.uint16).tobytes()
    assert got_master.tobytes() == master.tobytes() and state["state"][0]["step"] == 4
    dtype = np.dtype(STATE[state_dtype])
    for s, e in zip(_algorithms.ALGORITHMS[name].state, states):
        if s in state["state"][0]:
            got = state["state"][0][s]
            assert got.dtype == dtype and got.tobytes() == e.tobytes(), s
    if name == "nadam":
        assert state["state"][0]["mu_product"] == mu_product


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", list(CLASSES))
def test_class_resumes_from_its_state_dict_bit_for_bit_on_every_backend(backend, name):
    """Stochastic rounding, a stream per parameter: every backend gives the numpy class's bits,
    and a state dict taken mid-run resumes its own run exactly."""
    i = list(CLASSES).index(name)
    model_fmt, state_dtype = [("float16", "bfloat16"), ("bfloat16", "float32")][i % 2]
    expected = class_run(name, "numpy", model_fmt, state_dtype, "stochastic")
    straight = class_run(name, backend, model_fmt, state_dtype, "stochastic")
    resumed = class_run(name, backend, model_fmt, state_dtype, "stochastic", resume_at=2)
    assert resumed[2]["param_groups"][0]["lr"] == LR[name]  # from the state dict, not 123
    # The resumed run against the uninterrupted one on its backend (exact, as numpy against
    # itself), then that one against numpy's.
    for got, other, versus in ((resumed, straight, "numpy"), (straight, expected, backend)):
        assert_same_bits(other[0], got[0], versus, name, "model")
        assert_same_bits(other[1], got[1], versus, name, "master")
        assert got[2]["state"][0].keys() == other[2]["state"][0].keys()
        for key, value in other[2]["state"][0].items():
            if key == "step" or key in _algorithms.ALGORITHMS[name].host_state:
                assert got[2]["state"][0][key] == value, key
            else:
                assert_same_bits(value, got[2]["state"][0][key], versus, name, key)


def test_low_precision_parameters_skip_nonfinite_steps_and_clip():
    model = np.ones(4, np.float16)
    opt = fastopt.SGD([model], lr=0.1, momentum=0.9)
    info = opt.step([np.array([1, np.inf, 1, 1], np.float16)])
    assert info.skipped and np.array_equal(model, np.ones(4, np.float16))
    assert opt.state[0].keys() == {"master"}
    info = opt.step([np.ones(4, np.float16)], max_norm=1.0)
    assert info.grad_norm == pytest.approx(2.0) and info.clip_coef == pytest.approx(0.5, 1e-5)
    assert np.all(model < 1) and opt.state[0]["step"] == 1


def test_low_precision_and_float32_parameters_mix_in_one_optimizer():
    rng = np.random.default_rng(4)
    half = rng.standard_normal(5).astype(np.float16)
    full = rng.standard_normal(3).astype(np.float32)
    ga, gb = rng.standard_normal(5).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    opt = fastopt.RMSprop([half, full], lr=0.01, momentum=0.9, backend="numpy")
    p, states = full.copy(), [np.zeros(3, np.float32) for _ in range(3)]
    opt.step([ga, gb])
    functional.rmsprop(p, gb, states[0], momentum_buffer=states[2], step=1, lr=0.01,
                       momentum=0.9, backend="numpy")
    assert np.array_equal(full, p) and "master" not in opt.state[1]
    assert opt.state[0]["master"].dtype == np.float32 and half.dtype == np.float16


# --- refusals: checked before anything is written --------------------------------------------


def arrays_for(name, size=8):
    """Valid arrays of a mixed step of ``name`` with all its options' state: (named, states)."""
    states = {s: np.zeros(size, np.float32) for s in _algorithms.ALGORITHMS[name].state}
    return dict(master=np.ones(size, np.float32), grad=np.ones(size, np.float32),
                model=np.zeros(size, np.float16)), states


RICH = {"sgd": dict(momentum=0.9), "rmsprop": dict(centered=True, momentum=0.9),
        "adam": dict(amsgrad=True), "adamw": dict(amsgrad=True)}
BAD = [
    ("master", np.zeros(8, np.float64), TypeError, "master: expected dtype float32, got float64"),
    ("model", np.zeros(8, np.float32), TypeError, "model: expected dtype float16 or uint16"),
    ("grad", np.zeros(8, np.float64), TypeError,
     "grad: expected dtype float32 or float16 or uint16"),
    ("grad", np.zeros(9, np.float32), ValueError, r"grad: shape \(9,\) does not match"),
    ("state0", np.zeros(8, np.float16), TypeError, "expected dtype float32 or uint16"),
    ("state1", np.zeros(8, np.uint16), TypeError, "dtype uint16 does not match .* the state "
                                                  "arrays share one format"),
    ("rounding", "up", ValueError, "rounding: expected 'nearest' or 'stochastic'"),
    ("seed", 1.5, TypeError, "seed: expected an int"),
    ("lr", -1.0, ValueError, "lr: expected a value >= 0.0"),
]


BAD_CASES = [(name, *bad) for name in OPTIONS for bad in BAD
             if bad[0] != "state1" or len(_algorithms.ALGORITHMS[name].state) > 1]


@pytest.mark.parametrize("name,what,value,error,words", BAD_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[4][:20]}" for c in BAD_CASES])
def test_bad_input_is_refused_before_writing(name, what, value, error, words):
    named, states = arrays_for(name)
    names = list(states)
    if what.startswith("state"):
        states[names[int(what[-1])]] = value
        words = f"{names[int(what[-1])]}: {words}"
    elif what in named:
        named[what] = value
    before = {k: v.copy() for k, v in {**named, **states}.items()}
    options = {what: value} if what in ("rounding", "seed", "lr") else {}
    with pytest.raises(error, match=words):
        call(name, named["master"], named["grad"], list(states.values()), named["model"], step=1,
             backend="numpy", **RICH.get(name, {}), **options)
    for k, v in {**named, **states}.items():
        assert v.tobytes() == before[k].tobytes() and v.dtype == before[k].dtype, k


def test_missing_state_for_the_mode_is_refused():
    named, _ = arrays_for("sgd")
    with pytest.raises(ValueError, match="momentum_buffer: this sgd configuration needs a "
                                         "momentum_buffer state array, got None"):
        mixed.sgd(named["master"], named["grad"], named["model"], step=1, momentum=0.9)
    with pytest.raises(ValueError, match="step: expected the 1-based number"):
        mixed.sgd(named["master"], named["grad"], named["model"], step=0)


def test_lamb_refuses_low_precision_parameters():
    with pytest.raises(TypeError, match=r"params\[1\]: float16 parameters need float32 master "
                                        r"weights, which LAMB does not keep"):
        fastopt.LAMB([np.zeros(3, np.float32), np.zeros(3, np.float16)])
    assert not hasattr(mixed, "lamb")


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("option,value,error,words", [
    ("rounding", "up", ValueError, "rounding: expected 'nearest' or 'stochastic'"),
    ("seed", "0", TypeError, "seed: expected an int"),
    ("state_dtype", "float16", ValueError, "state_dtype: expected 'float32' or 'bfloat16'"),
])
def test_classes_check_their_mixed_precision_options(name, option, value, error, words):
    with pytest.raises(error, match=words):
        CLASSES[name]([np.zeros(3, np.float16)], **{option: value})


def test_a_failed_class_step_writes_nothing():
    a, b = np.ones(4, np.float16), np.ones(4, np.uint16)
    opt = fastopt.Adagrad([a, b], lr=0.1, state_dtype="bfloat16")
    opt.step([np.ones(4, np.float16), np.ones(4, np.uint16)])
    before = opt.state_dict(), a.copy(), b.copy()
    for bad, error, words in [(np.ones(4, np.float64), TypeError,
                               r"grads\[1\]: expected dtype float32 or uint16, got float64"),
                              (np.ones(4, np.float16), TypeError,
                               r"grads\[1\]: expected dtype float32 or uint16, got float16"),
                              (np.ones(5, np.float32), ValueError, r"grads\[1\]: shape")]:
        with pytest.raises(error, match=words):
            opt.step([np.ones(4, np.float16), bad])
        after = opt.state_dict()
        assert np.array_equal(a, before[1]) and np.array_equal(b, before[2])
        for i in (0, 1):
            assert after["state"][i]["step"] == 1
            for key in ("master", "sum"):
                assert after["state"][i][key].tobytes() == before[0]["state"][i][key].tobytes()
