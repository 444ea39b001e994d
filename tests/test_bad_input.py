"""Bad input raises a clear error naming the argument, before anything is written."""

import numpy as np
import pytest

import fastopt
from fastopt import functional
from conftest import HOST


def adam_arrays(n=8, dtype=np.float32):
    rng = np.random.default_rng(1)
    return {k: rng.standard_normal(n).astype(dtype)
            for k in ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")}


def snapshot(arrays):
    return {k: v.copy() for k, v in arrays.items()}


def assert_unchanged(before, arrays):
    for k, v in arrays.items():
        assert np.array_equal(before[k], v, equal_nan=True) and before[k].dtype == v.dtype, k


def _readonly(a):
    a.flags.writeable = False
    return a


BAD_ARRAYS = [  # (argument, how to spoil it, error type, words the message must contain)
    ("grad", lambda a: a[:-1].copy(), ValueError, "grad: shape"),
    ("exp_avg", lambda a: a.reshape(2, 4), ValueError, "exp_avg: shape"),
    ("exp_avg_sq", lambda a: a.astype(np.float64), TypeError, "exp_avg_sq: dtype float64"),
    ("param", lambda a: a.astype(np.int32), TypeError, "param: expected a float32 or float64"),
    ("param", lambda a: a.astype(np.float16), TypeError, "param: expected a float32 or float64"),
    ("grad", lambda a: np.repeat(a, 2)[::2], ValueError, "grad: expected a C-contiguous"),
    ("param", _readonly, ValueError, "param: array is read-only"),
    ("exp_avg", _readonly, ValueError, "exp_avg: array is read-only"),
    ("grad", lambda a: a.tolist(), TypeError, "grad: expected a numpy array"),
    ("max_exp_avg_sq", lambda a: None, ValueError, "max_exp_avg_sq: this adam configuration"),
]


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("arg,spoil,error,words", BAD_ARRAYS,
                         ids=[f"{a}-{w}" for a, _, _, w in BAD_ARRAYS])
def test_bad_array_named_and_nothing_written(backend, arg, spoil, error, words):
    arrays = adam_arrays()
    before = snapshot(arrays)
    call = dict(arrays)
    call[arg] = spoil(arrays[arg].copy())
    with pytest.raises(error, match=words.replace("(", r"\(")):
        functional.adam(**call, step=1, amsgrad=True, backend=backend)
    assert_unchanged(before, arrays)


BAD_HYPER = [  # (functional, keyword arguments, error type, words)
    ("adam", dict(lr=-0.1), ValueError, "lr: expected a value >= 0.0"),
    ("adam", dict(lr=float("nan")), ValueError, "lr: expected a finite number"),
    ("adam", dict(eps=float("inf")), ValueError, "eps: expected a finite number"),
    ("adam", dict(betas=(1.0, 0.999)), ValueError, "betas\\[0\\]: expected a value < 1.0"),
    ("adam", dict(betas=(0.9, -0.1)), ValueError, "betas\\[1\\]: expected a value >= 0.0"),
    ("adam", dict(betas=0.9), ValueError, "betas: expected a pair"),
    ("adam", dict(weight_decay=-1.0), ValueError, "weight_decay: expected a value >= 0.0"),
    ("adam", dict(lr="0.1"), TypeError, "lr: expected a real number"),
    ("adam", dict(amsgrad=1), TypeError, "amsgrad: expected True or False"),
    ("adam", dict(step=0), ValueError, "step: expected the 1-based"),
    ("adam", dict(step=1.5), ValueError, "step: expected the 1-based"),
    ("adamw", dict(lr=float("-inf")), ValueError, "lr: expected a finite number"),
    ("sgd", dict(momentum=-0.5), ValueError, "momentum: expected a value >= 0.0"),
    ("sgd", dict(nesterov=True), ValueError, "nesterov: Nesterov momentum requires"),
    ("sgd", dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "nesterov"),
    ("adagrad", dict(lr_decay=-1.0), ValueError, "lr_decay: expected a value >= 0.0"),
    ("adagrad", dict(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value"),
    ("rmsprop", dict(alpha=-0.1), ValueError, "alpha: expected a value >= 0.0"),
    ("rmsprop", dict(momentum=float("nan")), ValueError, "momentum: expected a finite number"),
    ("adam", dict(backend="tpu"), ValueError, "backend: expected one of"),
    ("adam", dict(backend="cuda"), (ValueError, fastopt.BackendUnavailableError), "cuda"),
]


@pytest.mark.parametrize("name,kwargs,error,words", BAD_HYPER,
                         ids=[f"{n}-{w}" for n, _, _, w in BAD_HYPER])
def test_bad_hyperparameter_named_and_nothing_written(name, kwargs, error, words):
    arrays = adam_arrays()
    before = snapshot(arrays)
    positional = {"adam": 5, "adamw": 5, "sgd": 3, "adagrad": 3, "rmsprop": 5}[name]
    call = {"step": 1, **kwargs}
    with pytest.raises(error, match=words):
        getattr(functional, name)(*list(arrays.values())[:positional], **call)
    assert_unchanged(before, arrays)


@pytest.mark.parametrize("backend", HOST)
def test_overlapping_arrays_rejected(backend):
    arrays = adam_arrays()
    before = snapshot(arrays)
    with pytest.raises(ValueError, match="exp_avg and exp_avg_sq: arrays overlap"):
        functional.adam(arrays["param"], arrays["grad"], arrays["exp_avg"], arrays["exp_avg"],
                        step=1, backend=backend)
    buffer = np.zeros(16, np.float32)  # two halves of one buffer do not overlap: accepted
    functional.adam(arrays["param"], arrays["grad"], buffer[:8], buffer[8:], step=1,
                    backend=backend)
    assert not np.array_equal(before["param"], arrays["param"])


def test_optimizer_step_checks_every_parameter_before_writing():
    params = [np.ones(4, np.float32), np.ones(3, np.float32)]
    opt = fastopt.Adam(params, lr=0.1)
    opt.step([np.ones(4, np.float32), np.ones(3, np.float32)])
    state_before = opt.state_dict()
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=r"grads\[1\] / params\[1\]: grad.*shape|params\[1\]"):
        opt.step([np.ones(4, np.float32), np.ones(5, np.float32)])  # the second one is wrong
    with pytest.raises(ValueError, match="grads: expected 2 gradients"):
        opt.step([np.ones(4, np.float32)])
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr: expected a value >= 0.0"):
        opt.step([np.ones(4, np.float32), np.ones(3, np.float32)])
    for p, b in zip(params, before):
        assert np.array_equal(p, b)
    after = opt.state_dict()
    assert after["state"].keys() == state_before["state"].keys()
    for i, s in state_before["state"].items():
        for k, v in s.items():
            assert np.array_equal(after["state"][i][k], v)


@pytest.mark.parametrize("params,error,words", [
    ([], ValueError, "params: got an empty list"),
    ([np.ones(3, np.int64)], TypeError, r"params\[0\]: expected a float32 or float64"),
    ([np.ones((3, 3), np.float32).T], ValueError, r"params\[0\]: expected a C-contiguous"),
    ([_readonly(np.ones(3, np.float32))], ValueError, r"params\[0\]: array is read-only"),
    ([{"lr": 0.1}], TypeError, "param_group: expected a dict with a 'params' list"),
])
def test_optimizer_construction_rejects_bad_params(params, error, words):
    with pytest.raises(error, match=words):
        fastopt.Adam(params)


def test_optimizer_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="lr: expected a value >= 0.0"):
        fastopt.SGD([np.ones(3)], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        fastopt.Adam([np.ones(3)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="some parameters appear in more than one group"):
        p = np.ones(3)
        fastopt.Adam([{"params": [p]}, {"params": [p]}])
