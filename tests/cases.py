"""The table that drives the tests: every optimizer with every combination of its options.

The grids below are written out for the optimizers they list; every other algorithm of
``fastopt.optim.algorithms.ALGORITHMS`` gets the valid combinations of its table ``modes``, its
default learning rate and, for the non-finite rows, no options and its richest option set."""

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from fastopt.optim import algorithms as _algorithms


def _grid(**axes):
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def _valid_sgd(o):
    return not o["nesterov"] or (o["momentum"] > 0 and o["dampening"] == 0)


def _modes_grid(algorithm):
    """The combinations of ``algorithm.modes`` that its check accepts."""
    out = []
    for options in _grid(**algorithm.modes):
        try:
            algorithm.check({**algorithm.defaults, **options})
        except ValueError:
            continue
        out.append(options)
    return out


def _richest(options):
    """The option set that sets the most options (so uses the most state)."""
    return max(options, key=lambda o: sum(bool(v) for v in o.values()))


_OPTIONS = {
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
OPTIONS = {name: _OPTIONS.get(name) or _modes_grid(a)
           for name, a in _algorithms.ALGORITHMS.items()}

_LR = {"sgd": 0.1, "adagrad": 0.1, "rmsprop": 0.01, "adam": 0.01, "adamw": 0.01, "adamax": 0.01,
      "nadam": 0.01, "radam": 0.01, "adadelta": 1.0, "lion": 0.01, "lamb": 0.01}
LR = {name: _LR.get(name, a.defaults["lr"]) for name, a in _algorithms.ALGORITHMS.items()}

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


# ---- Non-finite rows -----------------------------------------------------------------------------

#: Option sets for the non-finite rows: together they use every state array of each algorithm,
#: with the modes that change how a non-finite value travels (AMSGrad's maximum, centered RMSprop's
#: subtraction, momentum and Nesterov, weight decay reading the parameter, maximize's sign).
_NONFINITE_OPTIONS = {
    "sgd": [{}, dict(momentum=0.9, dampening=0.3, weight_decay=0.1),
            dict(momentum=0.9, nesterov=True, maximize=True)],
    "adagrad": [{}, dict(lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5,
                         maximize=True)],
    "rmsprop": [{}, dict(centered=True, weight_decay=0.1),
                dict(centered=True, momentum=0.9, maximize=True)],
    "adam": [{}, dict(amsgrad=True), dict(amsgrad=True, weight_decay=0.1, maximize=True)],
    "adamw": [{}, dict(amsgrad=True), dict(amsgrad=True, weight_decay=0.1, maximize=True)],
    "adamax": [{}, dict(weight_decay=0.1, maximize=True)],
    "nadam": [{}, dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)],
    "radam": [{}, dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)],
    "adadelta": [{}, dict(weight_decay=0.1, maximize=True)],
    "lion": [{}, dict(weight_decay=0.1, maximize=True)],
    "lamb": [{}, dict(weight_decay=0.1, maximize=True)],
}


#: The option set of each algorithm that sets the most options (so uses the most state).
RICHEST = {name: _richest(OPTIONS[name]) for name in OPTIONS}


def _nonfinite_options(name):
    return [{}, RICHEST[name]] if RICHEST[name] else [{}]


NONFINITE_OPTIONS = {name: _NONFINITE_OPTIONS.get(name) or _nonfinite_options(name)
                     for name in OPTIONS}

#: Element counts of the non-finite rows' arrays: odd, so that vector loops have a tail; small on
#: CUDA, where the simulator runs every thread in Python.
NONFINITE_SIZE = {"host": 257, "cuda": 33}


def nonfinite_indices(size):
    """Where a row puts its non-finite value: the first, the middle and the last element."""
    return [0, size // 2, size - 1]


@dataclass(frozen=True)
class Nonfinite:
    """One non-finite row: ``value`` at :func:`nonfinite_indices` of ``where``, the gradient of the
    first step run (``"grad"``) or a state array (its name) before it; every other element finite.
    The steps run are numbered from ``first``."""

    name: str
    options: dict = field(hash=False)
    where: str
    value: float
    first: int

    @property
    def id(self):
        options = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}[{options}]-{self.where}={self.value}"


def _first_step(name, where):
    """RAdam's rows run steps 4-6, so that the last is rectified (rho_t > 5 from step 6); a state
    row starts at step 2 at least, where SGD reads its momentum buffer instead of overwriting it."""
    first = 4 if name == "radam" else 1
    return first if where == "grad" else max(first, 2)


def _nonfinite_rows(name):
    algorithm = _algorithms.ALGORITHMS[name]
    rows = []
    for options in NONFINITE_OPTIONS[name]:
        uses = algorithm.uses(algorithm.check({**algorithm.defaults, **options}))
        rows += [Nonfinite(name, options, "grad", value, _first_step(name, "grad"))
                 for value in (math.nan, math.inf, -math.inf)]
        rows += [Nonfinite(name, options, state, math.inf, _first_step(name, state))
                 for state, used in zip(algorithm.state, uses) if used]
    return rows


#: The non-finite rows of every algorithm: nan, +inf and -inf in the gradient, and +inf in each
#: state array that an option set uses.
NONFINITE = {name: _nonfinite_rows(name) for name in OPTIONS}


def nonfinite_problem(row, size, dtype, steps):
    """The parameter, one gradient per step and the state of ``row``, with its non-finite value
    written at :func:`nonfinite_indices`."""
    param, grads = problem((size,), dtype, steps)
    state = new_state(row.name, row.options, param)
    if row.where == "grad":
        target = grads[0]
    else:
        target = state[_algorithms.ALGORITHMS[row.name].state.index(row.where)]
    target[nonfinite_indices(size)] = row.value
    return param, grads, state
