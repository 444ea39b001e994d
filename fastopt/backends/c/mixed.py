"""The ``c`` backend's mixed-precision steps (csrc/mixed.c through cffi).

Signatures as in :mod:`fastopt.backends.numpy.mixed`. Each C step decodes blocks of elements into
float32 buffers, runs the float32 step of ``csrc/optim_template.h`` on them and encodes the state
and the model copy back: one pass over memory, and the float32 step's bits.

The steps are made from the algorithm table, one for every elementwise algorithm (AdamW runs
Adam's), as the C ones are made from the table of ``csrc/optim_table.h``: importing this module
checks each C function's argument types against :mod:`fastopt.optim.algorithms`
(:func:`_c_function`).
"""

from fastopt.optim.algorithms import ALGORITHMS, FLAG_ARGS
from fastopt.backends.c._fastopt_c import ffi, lib
from fastopt.backends.c.optim import checked_signature
from fastopt.backends.numpy.mixed import split_args

_NULL = ffi.NULL


def _pointer(array):
    """The array's memory, or NULL for an empty array (a state the mode does not use)."""
    return ffi.from_buffer(array) if array.size else _NULL


def _c_function(algorithm):
    """``fastopt_<kernel>_mixed``, after checking that it takes ``(n, master, grad, grad_fmt,
    <algorithm's state arrays>, state_fmt, model, model_fmt, <its kernel_args: flags as int, the
    others as float>, grad_scale, stochastic, key)``; raises ``TypeError`` if not."""
    function = getattr(lib, f"fastopt_{algorithm.kernel}_mixed")
    expected = ["int64_t", "float *", "void *", "int", *["void *"] * len(algorithm.state), "int",
                "uint16_t *", "int",
                *["int" if a in FLAG_ARGS else "float" for a in algorithm.kernel_args], "float",
                "int", "int64_t"]
    return checked_signature(function, algorithm, expected)


def _mixed(algorithm):
    c_step = _c_function(algorithm)

    def step(master, grad, grad_fmt, *args):
        if master.size == 0:
            return
        states, state_fmt, model, model_fmt, scalars, stochastic, key = split_args(algorithm, args)
        c_step(master.size, ffi.from_buffer("float[]", master), _pointer(grad), grad_fmt,
               *map(_pointer, states), state_fmt, ffi.from_buffer("uint16_t[]", model), model_fmt,
               *scalars, stochastic, key)

    step.__name__ = step.__qualname__ = algorithm.kernel
    step.__doc__ = (f"Mixed-precision {algorithm.kernel} in place (fastopt_{algorithm.kernel}"
                    f"_mixed); formula in :func:`fastopt.backends.numpy.mixed.{algorithm.kernel}`.")
    return step


for _algorithm in ALGORITHMS.values():
    if not _algorithm.segmented and _algorithm.kernel == _algorithm.name:
        globals()[_algorithm.kernel] = _mixed(_algorithm)
del _algorithm


def sum_of_squares(grad, grad_fmt):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic)."""
    return lib.fastopt_sum_of_squares_mixed(grad.size, _pointer(grad), grad_fmt) if grad.size \
        else 0.0
