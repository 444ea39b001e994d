"""The table that drives the tests: every optimizer with every combination of its options."""

import itertools

import numpy as np

from fastopt.optim import algorithms as _algorithms


def _grid(**axes):
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def _valid_sgd(o):
    return not o["nesterov"] or (o["momentum"] > 0 and o["dampening"] == 0)


OPTIONS = {
    "sgd": [o for o in _grid(momentum=[0.0, 0.9], dampening=[0.0, 0.3], nesterov=[False, True],
                             weight_decay=[0.0, 0.1], maximize=[False, True]) if _valid_sgd(o)],
    "adagrad": _grid(lr_decay=[0.0, 0.1], weight_decay=[0.0, 0.1],
                     initial_accumulator_value=[0.0, 0.5], maximize=[False, True]),
    "rmsprop": _grid(centered=[False, True], momentum=[0.0, 0.9], weight_decay=[0.0, 0.1],
                     maximize=[False, True]),
    "adam": _grid(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True]),
    "adamw": _grid(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True]),
    "adamax": _grid(weight_decay=[0.0, 0.1], maximize=[False, True]),
    "nadam": _grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
                   maximize=[False, True]) + [dict(momentum_decay=0.5, weight_decay=0.1)],
    # RAdam rectifies from step 6 (rho_t > 5) whatever beta2, after these 3 steps:
    # tests/test_torch_oracle.py runs 10-step RAdam trajectories on every backend.
    "radam": _grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
                   maximize=[False, True]),
    "adadelta": _grid(weight_decay=[0.0, 0.1], maximize=[False, True]),
    "lion": _grid(weight_decay=[0.0, 0.1], maximize=[False, True]),
    "lamb": _grid(weight_decay=[0.0, 0.1], maximize=[False, True]),
}

LR = {"sgd": 0.1, "adagrad": 0.1, "rmsprop": 0.01, "adam": 0.01, "adamw": 0.01, "adamax": 0.01,
      "nadam": 0.01, "radam": 0.01, "adadelta": 1.0, "lion": 0.01, "lamb": 0.01}

#: (rtol, atol) for comparing a backend with the reference after a few steps. float32 kernels do the
#: reference's operations in the same order but may round intermediate products differently (e.g. a
#: product kept in a register), and Adam/RMSprop divide by small denominators, which amplifies that.
TOLERANCE = {np.dtype(np.float32): (2e-5, 1e-6), np.dtype(np.float64): (1e-12, 1e-14)}


def case_ids(name):
    return [",".join(f"{k}={v}" for k, v in o.items()) for o in OPTIONS[name]]


def all_cases():
    return [(name, o) for name in OPTIONS for o in OPTIONS[name]]


def new_state(name, options, param):
    """Host state arrays for the functional API, in its positional order."""
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = {**algorithm.defaults, **options}
    return [np.full_like(param, algorithm.initial_state(hyper, s)) for s in algorithm.state]


def problem(shape, dtype, steps, seed=0):
    """A parameter and one gradient per step, reproducible."""
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
    return param, grads
