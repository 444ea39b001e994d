"""The ``cpu`` launchers' hyperparameters: Python floats or numpy scalars of float dtypes up to
float64, rounded to the arrays' dtype once (as ``dtype.type(x)``, in the kernel), flags as ``bool``
or ``numpy.bool_``; the kernels' prologue derives the element constants as the table's
``Algorithm.constants`` does on the host."""

import numba
import numpy as np
import pytest

from fastopt.optim import algorithms as _algorithms
from fastopt.optim.algorithms import ALGORITHMS
from fastopt.backends.cpu import optim as cpu_optim
from cases import LR, OPTIONS, case_ids, new_state, problem

STEPS = 3
SHAPES = [(257,), (3, 5, 7), (40_009,)]  # the last runs the parallel kernels

#: How a launcher may receive the host's floats, unrounded: rounded by the launcher, they must give
#: the bits of the scalars that _step casts for a module that does not round them itself.
FLOAT_KINDS = {"python": float, "float64": np.float64}


def run(name, options, shape, dtype, as_float, as_flag=bool, with_norm=False):
    """STEPS cpu launches of ``name``'s kernel with the host scalars of Algorithm.scalars, floats
    passed as ``as_float(x)``, flags as ``as_flag(b)``, the gradient scale alternating; returns the
    arrays (and the norms)."""
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = algorithm.check({**algorithm.defaults, "lr": LR[name], **options})
    param, grads = problem(shape, dtype, STEPS)
    states = [s if used else np.empty(0, dtype)
              for s, used in zip(new_state(name, options, param), algorithm.uses(hyper))]
    offsets = [np.array([0, param.size // 3, param.size], np.int64)] if algorithm.segmented else []
    launcher = getattr(cpu_optim, algorithm.kernel + ("_with_norm" if with_norm else ""))
    host, norms = algorithm.initial_host(hyper), []
    for t, g in enumerate(grads, start=1):
        scalars = [*algorithm.scalars(hyper, t, t == 1, **host), 0.37 if t % 2 else 1.0]
        host = algorithm.advance(hyper, t, host)
        scalars = [as_flag(s) if type(s) is bool else as_float(s) for s in scalars]
        if with_norm:
            norms.append(np.zeros(1))
            launcher(param, g, *states, *offsets, *scalars, norms[-1])
        else:
            launcher(param, g, *states, *offsets, *scalars)
    return [param, *states, *norms]


def assert_same_bits(expected, got):
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape
        assert g.tobytes() == e.tobytes()


def cases():
    """Every option case on the serial shapes; each algorithm's last (richest) one on the parallel
    shape too (the parallel kernels of every mode are compiled and run by test_backends.py)."""
    return [pytest.param(name, o, shape, id=f"{name}[{oid}]-{shape}")
            for name in OPTIONS for o, oid in zip(OPTIONS[name], case_ids(name))
            for shape in (SHAPES if o is OPTIONS[name][-1] else SHAPES[:-1])]


@pytest.mark.parametrize("with_norm", [False, True], ids=["step", "with_norm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options,shape", cases())
def test_python_floats_and_numpy_scalars_give_the_same_bits(name, options, dtype, shape,
                                                            with_norm):
    # The scalars as _step cast them for a module that does not round floats itself.
    expected = run(name, options, shape, dtype, np.dtype(dtype).type, with_norm=with_norm)
    for as_float in FLOAT_KINDS.values():
        got = run(name, options, shape, dtype, as_float, as_flag=np.bool_, with_norm=with_norm)
        assert_same_bits(expected, got)


def test_a_kernel_compiles_once_per_dtype_whatever_the_scalars_types():
    for dtype in (np.float32, np.float64):
        run("adam", {"amsgrad": True}, (10,), dtype, float)
    kernel = cpu_optim._kernels("adam", (True, True, True))[0].serial
    compiled = len(kernel.signatures)
    for dtype in (np.float32, np.float64):
        for as_float in (float, np.float64, np.float32, np.float16):
            run("adam", {"amsgrad": True}, (10,), dtype, as_float, as_flag=np.bool_)
    assert len(kernel.signatures) == compiled


def test_float64_scalars_into_a_float32_step_round_as_the_dtype_does():
    # 1 + 2**-24 and 1 + 3 * 2**-25 are ties or near-ties in float32: rounded once, to nearest even.
    p = np.ones(4, np.float32)
    for lr in (1e-3, 1 + 2.0 ** -24, 1 + 3 * 2.0 ** -25, 0.1):
        expected, got = p.copy(), p.copy()
        cpu_optim.sgd(expected, np.ones(4, np.float32), np.empty(0, np.float32), np.float32(lr),
                      np.float32(0), np.float32(0), np.float32(0), False, False, True,
                      np.float32(1))
        cpu_optim.sgd(got, np.ones(4, np.float32), np.empty(0, np.float32), np.float64(lr), 0.0,
                      0.0, 0.0, False, False, True, np.float64(1))
        assert got.tobytes() == expected.tobytes() == (p - np.float32(lr)).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamax", "nadam", "radam",
                                  "adadelta", "lion"])
def test_the_kernels_constants_are_the_tables_on_the_host(name, dtype):
    """The prologue compiled by numba derives, in the dtype, the constants that the table's
    derivation gives on the host with numpy scalars of the dtype, for every flag setting."""
    algorithm = ALGORITHMS[name]
    dtype = np.dtype(dtype)
    compiled = numba.njit(algorithm.constants)
    rng = np.random.default_rng(0)
    flags = algorithm.flag_args
    for setting in range(2 ** len(flags)):
        f = tuple(bool(setting >> k & 1) for k in range(len(flags)))
        h = (dtype.type(1), *[dtype.type(rng.uniform(0.01, 2.0)) for _ in algorithm.float_args],
             dtype.type(rng.uniform(0.01, 2.0)))
        expected = algorithm.constants(h, f)
        got = compiled(h, f)
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            if type(e) is bool:
                assert g is e
            else:
                assert type(e) is dtype.type and np.array(g, dtype).tobytes() == e.tobytes()
        # Computed in the dtype: numba returns float32 boxed as a Python float.
        returned = compiled.nopython_signatures[-1].return_type
        assert {str(t) for t in returned} <= {dtype.name, "bool"}


def test_lamb_takes_python_floats_and_rounds_lr_before_the_trust_ratio():
    options = {"weight_decay": 0.1}
    expected = run("lamb", options, (1000,), np.float32, np.float32)
    assert_same_bits(expected, run("lamb", options, (1000,), np.float32, float, np.bool_))
    assert_same_bits(expected, run("lamb", options, (1000,), np.float32, np.float64, np.bool_))
