"""Property-based fuzzing of the functional and class APIs on the host backends (hypothesis, a
fixed seed and a bounded number of examples): any call either raises ``TypeError`` or
``ValueError`` having written nothing, or steps exactly as the numpy backend does."""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import fastopt  # noqa: E402
from fastopt import functional  # noqa: E402
from fastopt.optim.algorithms import ALGORITHMS  # noqa: E402
from fastopt.optim.optimizers import Optimizer  # noqa: E402
from conftest import HOST  # noqa: E402

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

#: Values that are wrong for some hyperparameter or other.
BAD_NUMBERS = [float("nan"), float("inf"), -1.0, 1e39, 10**400, "0.1", None, True, [0.9, 0.99],
               (0.9,), 2.0]
BAD_STEPS = [0, -1, 2**63, 10**400, 1.5, True, "1", None]
SPOILERS = [None, "dtype", "shape", "readonly", "strided", "alias", "ints", "list", "misaligned",
            "missing"]

# The cpu backend compiles a kernel per algorithm and mode: fuzz it on a few.
CPU_ALGORITHMS = ("sgd", "adam", "adamw", "lion")


def _classes():
    found, todo = {}, [Optimizer]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if getattr(cls, "algorithm", None) is not None and cls.__module__.startswith("fastopt."):
            found.setdefault(cls.algorithm.name, cls)
    return found


CLASSES = _classes()
FUNCTIONS = [name for name in ALGORITHMS if hasattr(functional, name)]


def _misaligned(shape, dtype):
    raw = np.zeros(int(np.prod(shape)) * np.dtype(dtype).itemsize + 1, np.uint8)
    return np.ndarray(shape, dtype, raw.data, offset=1)


def _spoiled(array, how, dtype):
    if how == "dtype":
        return array.astype(np.float32 if dtype == np.float64 else np.float64)
    if how == "shape":
        return np.zeros(array.size + 1, dtype)
    if how == "readonly":
        array = array.copy()
        array.flags.writeable = False
        return array
    if how == "strided":
        return np.zeros(array.size * 2, dtype)[::2]
    if how == "ints":
        return array.astype(np.int64)
    if how == "list":
        return array.tolist()
    if how == "misaligned":
        out = _misaligned(array.shape, dtype)
        out[...] = array
        return out
    return array


def _hyper(data, algorithm):
    """Hyperparameters: defaults, other valid values, and at most one bad value."""
    hyper = {}
    bad = data.draw(st.sampled_from([None, None, *algorithm.defaults]), label="bad")
    for name, default in algorithm.defaults.items():
        choice = "bad" if name == bad else data.draw(st.sampled_from(["default", "other"]),
                                                     label=name)
        if choice == "other":
            if type(default) is bool:
                hyper[name] = not default
            elif type(default) is tuple:
                hyper[name] = tuple(data.draw(st.floats(0.1, 0.99)) for _ in default)
            else:
                hyper[name] = data.draw(st.floats(0.0, 0.5))
        elif choice == "bad":
            hyper[name] = data.draw(st.sampled_from(BAD_NUMBERS), label=f"bad {name}")
    return hyper


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@FUZZ
@given(data=st.data())
def test_a_functional_step_raises_before_writing_or_matches_the_numpy_backend(data):
    backend = data.draw(st.sampled_from(HOST))
    names = CPU_ALGORITHMS if backend == "cpu" else tuple(FUNCTIONS)
    algorithm = ALGORITHMS[data.draw(st.sampled_from(names))]
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    n = data.draw(st.sampled_from([0, 1, 7, 33]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    names = ("param", "grad", *algorithm.state)
    arrays = {k: rng.standard_normal(n).astype(dtype) for k in names}
    for s in algorithm.state:
        arrays[s] = np.abs(arrays[s])  # second moments and step sizes are not negative
    how = data.draw(st.sampled_from(SPOILERS))
    where = data.draw(st.sampled_from(names))
    given_arrays = dict(arrays)
    if how == "alias":
        other = data.draw(st.sampled_from([k for k in names if k != where]))
        given_arrays[where] = given_arrays[other]
    elif how == "missing":
        given_arrays[where] = None
    elif how is not None:
        given_arrays[where] = _spoiled(arrays[where], how, dtype)
    hyper = _hyper(data, algorithm)
    step = data.draw(st.one_of(st.integers(1, 50), st.sampled_from(BAD_STEPS)))
    extra = {}
    if algorithm.segmented:
        extra["segment_offsets"] = data.draw(st.sampled_from([None, [0, n], [0, n + 1], [n, 0]]))
    before = {k: np.array(v, copy=True) if hasattr(v, "shape") else v
              for k, v in given_arrays.items()}
    function = getattr(functional, algorithm.name)
    states = [given_arrays[s] for s in algorithm.state]
    try:
        function(given_arrays["param"], given_arrays["grad"], *states, step=step,
                 backend=backend, **hyper, **extra)
    except (TypeError, ValueError):
        for k, v in given_arrays.items():
            if hasattr(v, "shape"):
                assert _same(v, before[k]), f"{k} written by a call that raised"
        return
    # It ran: the numpy backend, on copies of what it was given, gives the same values.
    copies = {k: np.array(v, copy=True) for k, v in before.items() if v is not None}
    function(copies["param"], copies["grad"], *[copies.get(s) for s in algorithm.state],
             step=step, backend="numpy", **hyper, **extra)
    for k, v in given_arrays.items():
        if v is not None and hasattr(v, "shape"):
            assert _same(v, copies[k]), f"{k} differs from the numpy backend's"


@FUZZ
@given(data=st.data())
def test_a_class_step_raises_before_changing_anything_or_steps_every_parameter(data):
    backend = data.draw(st.sampled_from(HOST))
    names = CPU_ALGORITHMS if backend == "cpu" else tuple(CLASSES)
    name = data.draw(st.sampled_from(names))
    cls = CLASSES[name]
    algorithm = cls.algorithm
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    sizes = data.draw(st.lists(st.sampled_from([1, 5, 17]), min_size=1, max_size=3))
    params = [rng.standard_normal(s).astype(dtype) for s in sizes]
    hyper = _hyper(data, algorithm)
    try:
        opt = cls(params, backend=backend, **hyper)
    except (TypeError, ValueError):
        return
    grads = [rng.standard_normal(s).astype(dtype) for s in sizes]
    opt.step(grads)  # a first step creates the state
    bad = data.draw(st.sampled_from([None, "nan", "inf", *SPOILERS[1:-2], "none", "count"]))
    where = data.draw(st.integers(0, len(sizes) - 1))
    if bad in ("nan", "inf"):
        grads[where] = grads[where].copy()
        grads[where][0] = np.nan if bad == "nan" else np.inf
    elif bad == "none":
        grads[where] = None
    elif bad == "count":
        grads = grads[:-1] if len(grads) > 1 else grads + grads
    elif bad is not None:
        grads[where] = _spoiled(grads[where], bad, dtype)
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(algorithm.defaults)))
        opt.param_groups[0][key] = data.draw(st.sampled_from(BAD_NUMBERS))
    params_before = [p.copy() for p in params]
    state_before = {i: {k: np.array(v, copy=True) for k, v in s.items()}
                    for i, s in opt.state.items()}
    try:
        info = opt.step(grads)
    except (TypeError, ValueError):
        info = None
    if info is None or info.skipped:
        for p, b in zip(params, params_before):
            assert _same(p, b)
        for i, s in state_before.items():
            for k, v in s.items():
                assert _same(opt.state[i][k], v), f"state[{i}][{k!r}] changed"
    else:
        stepped = [i for i, g in enumerate(grads) if g is not None]
        assert all(opt.state[i]["step"] == 2 for i in stepped)
