r"""The optimizer zoo: fastopt's optimizers on 2-D test functions, many runs per compiled call.

::

    result = fastopt.zoo.run("rosenbrock", ["sgd", "momentum", "adam"], lrs=[1e-3, 1e-2],
                             starts=[(-1.5, 2.5)], steps=500)
    result.losses.shape      # (optimizers, lrs, starts, steps + 1)

Every optimizer × learning rate × start runs in one compiled call per optimizer family (an
algorithm and the state arrays its settings use; :mod:`fastopt.backends.cpu.zoo`), stepping with
the element functions the optimizer kernels use, on float64 points: a run equals, bit for bit,
the sequence of :mod:`fastopt.functional` steps on a 2-element float64 array whose gradient is
the test function's. A run that leaves the box ``|x|, |y| <= bound`` or stops being finite is
recorded as diverged (:attr:`ZooResult.diverged`), not an error.
"""

from dataclasses import dataclass

import numpy as np

from fastopt.dynamics.surfaces import Surface, surface as make_surface
from fastopt.optim.algorithms import ALGORITHMS

__all__ = ["run", "ZooResult", "OPTIMIZERS", "DEFAULT_OPTIMIZERS"]

#: Optimizer presets by name: ``(algorithm, hyperparameters)``; any name of the optimizer table
#: but LAMB (whose trust ratio needs a tensor) is also accepted, with its defaults.
OPTIMIZERS = {
    "sgd": ("sgd", {}),
    "momentum": ("sgd", {"momentum": 0.9}),
    "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}),
    **{name: (name, {}) for name, a in ALGORITHMS.items() if not a.segmented and name != "sgd"},
}
#: The eleven optimizers of the zoo's figures and benchmark.
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamax",
                      "nadam", "radam", "adadelta", "lion")


@dataclass
class ZooResult:
    """What :func:`run` recorded, indexed ``[optimizer, lr, start, step]``.

    ``paths``: the points, ``(O, L, S, steps + 1, 2)``, ``paths[..., 0, :]`` the starts;
    ``losses`` and ``grad_norms``: the function value and gradient norm at each point; after a
    divergence, NaN. ``diverged_at``: the step at which a run stopped (``-1``: it did not).
    """

    function: Surface
    optimizers: list
    lrs: np.ndarray
    starts: np.ndarray
    steps: int
    paths: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    diverged_at: np.ndarray

    @property
    def diverged(self):
        """``(O, L, S)`` bool: the runs that diverged."""
        return self.diverged_at >= 0

    @property
    def final_loss(self):
        """``(O, L, S)``: the function value after the last step (``inf`` for diverged runs)."""
        return np.where(self.diverged, np.inf, self.losses[..., -1])

    def steps_to(self, tolerance):
        """``(O, L, S)``: the first step whose value is within ``tolerance`` of the function's
        minimum (``-1``: never)."""
        if self.function.minimum is None:
            raise ValueError(f"tolerance: {self.function.name} has no minimum")
        hit = self.losses - self.function.minimum <= tolerance
        return np.where(hit.any(axis=-1), hit.argmax(axis=-1), -1)


def _optimizer_spec(k, spec):
    """``(label, algorithm, hyper)`` of ``optimizers[k]``: a preset name or ``(name, dict)``."""
    if isinstance(spec, str):
        label, overrides = spec, {}
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        label, overrides = spec
    else:
        raise TypeError(f"optimizers[{k}]: expected a name or (name, hyperparameters), got "
                        f"{spec!r}")
    if label not in OPTIMIZERS:
        raise ValueError(f"optimizers[{k}]: expected one of {', '.join(OPTIMIZERS)}, got "
                         f"{label!r}")
    name, preset = OPTIMIZERS[label]
    algorithm = ALGORITHMS[name]
    hyper = {**algorithm.defaults, **preset, **overrides}
    if "lr" in overrides:
        raise ValueError(f"optimizers[{k}]: the learning rates are run()'s lrs, not a "
                         "hyperparameter")
    unknown = set(hyper) - set(algorithm.defaults)
    if unknown:
        raise ValueError(f"optimizers[{k}]: {name} has no hyperparameter "
                         f"{', '.join(sorted(unknown))}")
    return label, algorithm, hyper


def _tables(algorithm, hypers, steps):
    """The kernel's per-row tables for the checked hyperparameters ``hypers`` (one per row):
    ``floats (rows, steps, 1 + n_float_args + 1)`` (1, the float kernel scalars, grad_scale 1),
    ``flags (rows, steps, n_flags)``, ``initial (rows, n_states)``: the scalars of
    ``Algorithm.scalars`` for steps 1..steps, the host state advanced as a functional caller
    advances it."""
    names = algorithm.kernel_args
    float_at = [k for k, a in enumerate(names) if a in algorithm.float_args]
    flag_at = [k for k, a in enumerate(names) if a in algorithm.flag_args]
    rows = len(hypers)
    floats = np.ones((rows, steps, len(float_at) + 2))
    flags = np.zeros((rows, steps, len(flag_at)), np.bool_)
    initial = np.empty((rows, len(algorithm.state)))
    for lo, hi in _same_but_lr(hypers):
        try:
            _fill_rows(algorithm, hypers[lo:hi], steps, float_at, flag_at,
                       floats[lo:hi], flags[lo:hi], initial[lo:hi])
        except (TypeError, ValueError):  # scalars that take no array: one row at a time
            for i in range(lo, hi):
                _fill_rows(algorithm, hypers[i:i + 1], steps, float_at, flag_at,
                           floats[i:i + 1], flags[i:i + 1], initial[i:i + 1])
    return floats, flags, initial


def _same_but_lr(hypers):
    """``(lo, hi)`` of each run of consecutive rows whose hyperparameters differ only in lr."""
    lo = 0
    for i in range(1, len(hypers) + 1):
        if i == len(hypers) or {**hypers[i], "lr": 0} != {**hypers[lo], "lr": 0}:
            yield lo, i
            lo = i


def _fill_rows(algorithm, hypers, steps, float_at, flag_at, floats, flags, initial):
    """Fills the tables of rows that differ only in lr with one call of ``Algorithm.scalars``
    per step: ``lr`` is an object array of the rows' Python floats, so each value is computed
    by the same Python float operations as for one row (bit for bit), without a call per row."""
    h = dict(hypers[0])
    if len(hypers) > 1:
        h["lr"] = np.empty(len(hypers), object)
        h["lr"][:] = [x["lr"] for x in hypers]
    for k, name in enumerate(algorithm.state):
        initial[:, k] = np.asarray(algorithm.initial_state(h, name), np.float64)
    host = algorithm.initial_host(h)
    for t in range(1, steps + 1):
        scalars = algorithm.scalars(h, t, t == 1, **host)
        for j, k in enumerate(float_at, start=1):
            floats[:, t - 1, j] = np.asarray(scalars[k], np.float64)
        for j, k in enumerate(flag_at):
            flags[:, t - 1, j] = np.asarray(scalars[k], np.bool_)
        host = algorithm.advance(h, t, host)


def _checked_points(starts):
    a = np.asarray(starts, dtype=np.float64) if not isinstance(starts, np.ndarray) else starts
    if a.ndim == 1 and a.shape == (2,):
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1:
        raise ValueError(f"starts: expected points (x, y), shape (n, 2), got shape {a.shape}")
    if a.dtype.kind not in "biuf" or not np.isfinite(a).all():
        raise ValueError("starts: expected finite numbers")
    return np.ascontiguousarray(a, np.float64)


def run(function, optimizers=DEFAULT_OPTIMIZERS, lrs=(1e-3, 1e-2, 1e-1), starts=None,
        steps=500, bound=None):
    """Runs every optimizer × learning rate × start for ``steps`` steps on a test function.

    Arguments:
        function: a :class:`~fastopt.dynamics.surfaces.Surface` or a name of
            :data:`fastopt.dynamics.surfaces.NAMES` (its default parameters).
        optimizers: names of :data:`OPTIMIZERS`, or ``(name, hyperparameters)`` pairs, e.g.
            ``("adam", {"betas": (0.8, 0.99)})`` (``torch.optim`` names and defaults).
        lrs: learning rates (each > 0), shared by the optimizers.
        starts: starting points ``(n, 2)``; default: the function's.
        steps: optimizer steps per run.
        bound: a run diverges when ``|x|`` or ``|y|`` exceeds it; default: the function's.

    Returns a :class:`ZooResult`. Runs of one algorithm whose settings use the same state arrays
    (SGD with momentum and Nesterov, Adam and AdamW...) share one compiled call.
    """
    from fastopt.backends.cpu.zoo import kernel

    if isinstance(function, str):
        function = make_surface(function)
    elif not isinstance(function, Surface):
        raise TypeError(f"function: expected a test function name or Surface, got {function!r}")
    one = isinstance(optimizers, str) or (isinstance(optimizers, tuple) and len(optimizers) == 2
                                          and isinstance(optimizers[1], dict))
    if one:  # "adam" or ("adam", {...}) alone
        optimizers = [optimizers]
    specs = [_optimizer_spec(k, o) for k, o in enumerate(optimizers)]
    if not specs:
        raise ValueError("optimizers: expected at least one optimizer")
    lrs = np.atleast_1d(np.asarray(lrs, dtype=np.float64))
    if lrs.ndim != 1 or lrs.size == 0 or not (np.isfinite(lrs).all() and (lrs > 0).all()):
        raise ValueError(f"lrs: expected a non-empty list of finite learning rates > 0, got {lrs}")
    starts = _checked_points(function.starts if starts is None else starts)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    bound = function.bound if bound is None else float(bound)
    if not bound > 0:
        raise ValueError(f"bound: expected a number > 0, got {bound!r}")
    # Every hyperparameter checked, and every row's scalars made, before any kernel runs.
    families = {}
    for o, (label, algorithm, hyper) in enumerate(specs):
        checked = [algorithm.check({**hyper, "lr": float(lr)}) for lr in lrs]
        key = (algorithm.name, tuple(bool(u) for u in algorithm.uses(checked[0])))
        families.setdefault(key, []).append((o, checked))
    O, L, S = len(specs), lrs.size, starts.shape[0]
    # (optimizer, lr) rows; each family's kernel writes its own rows in place
    paths = np.empty((O * L, S, steps + 1, 2))
    losses = np.empty((O * L, S, steps + 1))
    norms = np.empty((O * L, S, steps + 1))
    diverged_at = np.empty((O * L, S), np.int64)
    params = np.asarray(function.params, np.float64)
    for (name, uses), members in families.items():
        hypers = [h for _, checked in members for h in checked]
        floats, flags, initial = _tables(ALGORITHMS[name], hypers, steps)
        rows = np.array([o * L + k for o, _ in members for k in range(L)], np.int64)
        kernel(name, uses, function.name)(starts, floats, flags, initial, params, bound, rows,
                                          paths, losses, norms, diverged_at)
    return ZooResult(function, [label for label, _, _ in specs], lrs, starts, steps,
                     paths.reshape(O, L, S, steps + 1, 2), losses.reshape(O, L, S, steps + 1),
                     norms.reshape(O, L, S, steps + 1), diverged_at.reshape(O, L, S))
