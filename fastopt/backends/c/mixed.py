"""The ``c`` backend's mixed-precision steps (csrc/mixed.c through cffi).

Signatures as in :mod:`fastopt.backends.numpy.mixed`. Each C step decodes blocks of elements into
float32 buffers, runs the float32 step of ``csrc/optim_template.h`` on them and encodes the state
and the model copy back: one pass over memory, and the float32 step's bits.
"""

from fastopt.optim import algorithms as _algorithms
from fastopt.backends.c._fastopt_c import ffi, lib
from fastopt.backends.numpy.mixed import split_args

_NULL = ffi.NULL


def _pointer(array):
    """The array's memory, or NULL for an empty array (a state the mode does not use)."""
    return ffi.from_buffer(array) if array.size else _NULL


def _mixed(algorithm):
    c_step = getattr(lib, f"fastopt_{algorithm.kernel}_mixed")

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


sgd = _mixed(_algorithms.SGD)
adagrad = _mixed(_algorithms.ADAGRAD)
rmsprop = _mixed(_algorithms.RMSPROP)
adam = _mixed(_algorithms.ADAM)
adamax = _mixed(_algorithms.ADAMAX)
nadam = _mixed(_algorithms.NADAM)
radam = _mixed(_algorithms.RADAM)
adadelta = _mixed(_algorithms.ADADELTA)
lion = _mixed(_algorithms.LION)


def sum_of_squares(grad, grad_fmt):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic)."""
    return lib.fastopt_sum_of_squares_mixed(grad.size, _pointer(grad), grad_fmt) if grad.size \
        else 0.0
