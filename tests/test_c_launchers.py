"""The ``c`` backend's launchers, generated from the algorithm table: every C function's arguments
in ``csrc/fastopt.h`` and ``csrc/mixed.h`` are the table's (names and order), the import-time check
catches a table that disagrees with the extension, and a state array the step does not use is
passed as NULL (so it may be ``None``)."""

import dataclasses
import os
import re

import numpy as np
import pytest

from fastopt.optim.algorithms import ALGORITHMS

c_optim = pytest.importorskip("fastopt.backends.c.optim", reason="no C extension")
c_mixed = pytest.importorskip("fastopt.backends.c.mixed", reason="no C extension")

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
HEADER = os.path.join(CSRC, "fastopt.h")
#: The C name of a state array, where it is not the table's (torch's Adagrad calls it ``sum``).
C_STATE_NAMES = {"sum": "state_sum"}
#: The elementwise algorithms with launchers of their own (AdamW runs Adam's).
ELEMENTWISE = [a for a in ALGORITHMS.values() if not a.segmented and a.kernel == a.name]


def header_arguments():
    """``fastopt_<name>_<f32|f64|mixed>`` -> its parameter names, from the declarations of
    fastopt.h and mixed.h as the C preprocessor expands them (most are made by the macros of
    optim_table.h), which is what the build gives cffi."""
    from fastopt.backends.c import build

    text = build.declarations([HEADER, os.path.join(CSRC, "mixed.h")])
    return {name: [re.findall(r"\w+", p)[-1] for p in params.split(",")]
            for name, params in re.findall(r"\b(?:void|int)\s+(fastopt_\w+)\(([^)]*)\);", text)}


def expected(algorithm, extra_before=(), extra_after=()):
    return ["n", "param", "grad", *(C_STATE_NAMES.get(s, s) for s in algorithm.state),
            *extra_before, *algorithm.kernel_args, "grad_scale", *extra_after]


@pytest.mark.skipif(not os.path.exists(HEADER), reason="no csrc/ (an installed package)")
def test_the_c_functions_take_the_tables_arguments_in_order():
    declared = header_arguments()
    for suffix in ("f32", "f64"):
        for algorithm in ELEMENTWISE:
            assert declared[f"fastopt_{algorithm.kernel}_{suffix}"] == expected(algorithm)
            assert declared[f"fastopt_{algorithm.kernel}_with_norm_{suffix}"] == \
                expected(algorithm, extra_after=["norm_out"])
            assert declared[f"fastopt_{algorithm.kernel}_mixed"] == [
                "n", "master", "grad", "grad_fmt",
                *(C_STATE_NAMES.get(s, s) for s in algorithm.state), "state_fmt", "model",
                "model_fmt", *algorithm.kernel_args, "grad_scale", "stochastic", "key"]
        lamb = ALGORITHMS["lamb"]
        assert declared[f"fastopt_lamb_{suffix}"] == \
            expected(lamb, extra_before=["num_segments", "segment_offsets"])


def test_every_algorithm_has_its_launchers():
    for algorithm in ALGORITHMS.values():
        for name in (algorithm.kernel, f"{algorithm.kernel}_with_norm"):
            assert getattr(c_optim, name).__name__ == name
        assert algorithm.segmented or callable(getattr(c_optim, algorithm.kernel).bind)


@pytest.mark.parametrize("change", ["one scalar fewer", "flag and float swapped",
                                    "one state array more"])
def test_a_table_that_disagrees_with_the_c_function_is_refused(change):
    adam = ALGORITHMS["adam"]
    args = list(adam.kernel_args)
    if change == "one scalar fewer":
        wrong = dataclasses.replace(adam, kernel_args=tuple(args[:-1]))
    elif change == "flag and float swapped":  # weight_decay (a float), amsgrad (a flag)
        args[4], args[5] = args[5], args[4]
        wrong = dataclasses.replace(adam, kernel_args=tuple(args))
    else:
        wrong = dataclasses.replace(adam, state=(*adam.state, "extra"))
    with pytest.raises(TypeError, match="fastopt_adam_f32"):
        c_optim._c_function("adam", wrong)
    with pytest.raises(TypeError, match="fastopt_adam_mixed"):
        c_mixed._c_function(wrong)
    assert c_optim._c_function("adam", adam)  # the table's own passes
    assert c_mixed._c_function(adam)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unused_state_is_passed_as_null(dtype):
    """Each mode's unused state given as None: the launcher must not take its buffer."""
    p, g = np.linspace(-1, 1, 9, dtype=dtype), np.linspace(0.5, -0.5, 9, dtype=dtype)
    one = np.ones(9, dtype)
    c_optim.sgd(p, g, None, 0.1, 0.0, 0.0, 0.0, False, False, False, 1.0)
    c_optim.rmsprop(p, g, one.copy(), None, None, 0.01, 0.99, 1e-8, 0.0, 0.0, False, False, 1.0)
    c_optim.adam(p, g, one * 0, one * 0, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False,
                 1e-2, 0.03, 1.0)
    norm_out = np.zeros(1)
    c_optim.adam_with_norm(p, g, one * 0, one * 0, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False,
                           False, False, 1e-2, 0.03, 1.0, norm_out)
    assert norm_out[0] == c_optim.sum_of_squares(g)
    assert np.isfinite(p).all()
