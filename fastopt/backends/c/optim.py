"""The ``c`` backend: the optimizer steps of ``csrc/optim.c``, run in place through cffi.

Each step has the kernel signature of :mod:`fastopt.backends` and computes the formula of the same
name in :mod:`fastopt.optim.reference`, in the arrays' precision and with the same operation order, so it
matches the numpy backend bit for bit on any number of threads. It calls the ``_f32`` or ``_f64``
C function for ``param.dtype``, with pointers to the arrays' own memory (no copies) and ``NULL``
for state the mode does not use, which is never touched and may be empty or ``None``. Like every
kernel it trusts the caller's validation (:mod:`fastopt._core.validate`).

Steps of 32768 elements or more run on OpenMP threads when the extension was built with OpenMP; see
:func:`build_info`, :func:`max_threads` and :func:`set_num_threads`. The C call releases the GIL.

Importing this module raises ``ImportError`` when the extension ``fastopt.backends.c._fastopt_c`` was not
built (no C compiler at install time); the dispatcher reports that as the reason ``c`` is
unavailable.
"""

import functools

import numpy as np

from fastopt.backends.c._fastopt_c import ffi, lib

#: Float hyperparameters may arrive as Python floats: cffi rounds each to the C function's float
#: or double exactly as numpy's cast does (see :mod:`fastopt.backends`, the contract).
TAKES_PYTHON_FLOATS = True

_NULL = ffi.NULL
_buffer = ffi.from_buffer  # the array's memory as a typed cdata, read-only arrays allowed

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOAT, _DOUBLE = ffi.typeof("float[]"), ffi.typeof("double[]")
_INT64 = ffi.typeof("int64_t[]")


def _by_dtype(name):
    """dtype -> (C function ``fastopt_<name>_f32`` or ``_f64``, cdata type of its arrays)"""
    return {_F32: (getattr(lib, f"fastopt_{name}_f32"), _FLOAT),
            _F64: (getattr(lib, f"fastopt_{name}_f64"), _DOUBLE)}


_SGD, _SGD_NORM = _by_dtype("sgd"), _by_dtype("sgd_with_norm")
_ADAGRAD, _ADAGRAD_NORM = _by_dtype("adagrad"), _by_dtype("adagrad_with_norm")
_RMSPROP, _RMSPROP_NORM = _by_dtype("rmsprop"), _by_dtype("rmsprop_with_norm")
_ADAM, _ADAM_NORM = _by_dtype("adam"), _by_dtype("adam_with_norm")
_ADAMAX, _ADAMAX_NORM = _by_dtype("adamax"), _by_dtype("adamax_with_norm")
_NADAM, _NADAM_NORM = _by_dtype("nadam"), _by_dtype("nadam_with_norm")
_RADAM, _RADAM_NORM = _by_dtype("radam"), _by_dtype("radam_with_norm")
_ADADELTA, _ADADELTA_NORM = _by_dtype("adadelta"), _by_dtype("adadelta_with_norm")
_LION, _LION_NORM = _by_dtype("lion"), _by_dtype("lion_with_norm")
_LAMB = _by_dtype("lamb")
_SUM_OF_SQUARES = _by_dtype("sum_of_squares")


# ---- The arguments of each C step: arrays as cdata of ctype, NULL for state the mode does not use

def _sgd_args(ctype, param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov,
              maximize, first_step, grad_scale):
    buf = _buffer(ctype, momentum_buffer) if momentum != 0 else _NULL
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), buf, lr, weight_decay,
            momentum, dampening, nesterov, maximize, first_step, grad_scale)


def _adagrad_args(ctype, param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, state_sum),
            weight_decay, eps, maximize, clr, grad_scale)


def _rmsprop_args(ctype, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                  weight_decay, momentum, centered, maximize, grad_scale):
    avg = _buffer(ctype, grad_avg) if centered else _NULL
    buf = _buffer(ctype, momentum_buffer) if momentum > 0 else _NULL
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, square_avg),
            avg, buf, lr, alpha, eps, weight_decay, momentum, centered, maximize, grad_scale)


def _adam_args(ctype, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
               weight_decay, amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt,
               grad_scale):
    vmax = _buffer(ctype, max_exp_avg_sq) if amsgrad else _NULL
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
            _buffer(ctype, exp_avg_sq), vmax, lr, beta1, beta2, eps, weight_decay, amsgrad,
            maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale)


def _adamax_args(ctype, param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize,
                 clr, grad_scale):
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
            _buffer(ctype, exp_inf), beta1, beta2, eps, weight_decay, maximize, clr, grad_scale)


def _nadam_args(ctype, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                maximize, decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
            _buffer(ctype, exp_avg_sq), lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
            grad_coef, exp_avg_coef, bias_correction2, grad_scale)


def _radam_args(ctype, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                maximize, decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
            _buffer(ctype, exp_avg_sq), lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
            rectify, step_size, bias_correction2_sqrt, grad_scale)


def _adadelta_args(ctype, param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
                   grad_scale):
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, square_avg),
            _buffer(ctype, acc_delta), lr, rho, eps, weight_decay, maximize, grad_scale)


def _lion_args(ctype, param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    return (param.size, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg), lr,
            beta1, beta2, weight_decay, maximize, grad_scale)


# ---- The steps -------------------------------------------------------------------------------

def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    """In place: :func:`fastopt.optim.reference.sgd`."""
    if param.size:
        kernel, ctype = _SGD[param.dtype]
        kernel(*_sgd_args(ctype, param, grad, momentum_buffer, lr, weight_decay, momentum,
                          dampening, nesterov, maximize, first_step, grad_scale))


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    """In place: :func:`fastopt.optim.reference.adagrad`."""
    if param.size:
        kernel, ctype = _ADAGRAD[param.dtype]
        kernel(*_adagrad_args(ctype, param, grad, state_sum, weight_decay, eps, maximize, clr,
                              grad_scale))


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    """In place: :func:`fastopt.optim.reference.rmsprop`."""
    if param.size:
        kernel, ctype = _RMSPROP[param.dtype]
        kernel(*_rmsprop_args(ctype, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                              eps, weight_decay, momentum, centered, maximize, grad_scale))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    """In place: :func:`fastopt.optim.reference.adam`."""
    if param.size:
        kernel, ctype = _ADAM[param.dtype]
        kernel(*_adam_args(ctype, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1,
                           beta2, eps, weight_decay, amsgrad, maximize, decoupled, step_size,
                           bias_correction2_sqrt, grad_scale))


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    """In place: :func:`fastopt.optim.reference.adamax`."""
    if param.size:
        kernel, ctype = _ADAMAX[param.dtype]
        kernel(*_adamax_args(ctype, param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay,
                             maximize, clr, grad_scale))


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    """In place: :func:`fastopt.optim.reference.nadam`."""
    if param.size:
        kernel, ctype = _NADAM[param.dtype]
        kernel(*_nadam_args(ctype, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                            weight_decay, maximize, decoupled, grad_coef, exp_avg_coef,
                            bias_correction2, grad_scale))


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    """In place: :func:`fastopt.optim.reference.radam`."""
    if param.size:
        kernel, ctype = _RADAM[param.dtype]
        kernel(*_radam_args(ctype, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                            weight_decay, maximize, decoupled, rectify, step_size,
                            bias_correction2_sqrt, grad_scale))


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    """In place: :func:`fastopt.optim.reference.adadelta`."""
    if param.size:
        kernel, ctype = _ADADELTA[param.dtype]
        kernel(*_adadelta_args(ctype, param, grad, square_avg, acc_delta, lr, rho, eps,
                               weight_decay, maximize, grad_scale))


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    """In place: :func:`fastopt.optim.reference.lion`."""
    if param.size:
        kernel, ctype = _LION[param.dtype]
        kernel(*_lion_args(ctype, param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize,
                           grad_scale))


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """In place: :func:`fastopt.optim.reference.lamb`, two passes; raises ``MemoryError`` (having
    written nothing) when the C step cannot allocate its per-chunk and per-segment sums."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _LAMB[param.dtype]
    status = kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
                    _buffer(ctype, exp_avg_sq), segment_offsets.size - 1,
                    _buffer(_INT64, segment_offsets), lr, beta1, beta2, eps, weight_decay,
                    maximize, bias_correction1, bias_correction2, grad_scale)
    if status != 0:
        raise MemoryError(f"lamb: the C step could not allocate the sums of {n} elements in "
                          f"{segment_offsets.size - 1} segments")


def sum_of_squares(grad):
    """:func:`fastopt.optim.reference.sum_of_squares`, in chunks independent of the thread count."""
    kernel, ctype = _SUM_OF_SQUARES[grad.dtype]
    return kernel(grad.size, _buffer(ctype, grad)) if grad.size else 0.0


# ---- Steps that also compute the gradient's sum of squares --------------------------------------

def _with_norm(kernel, args, norm_out):
    """``kernel(*args)``, a C step that also writes the gradient's squared norm to ``norm_out`` (a
    float64 array); ``args[0]`` is the number of elements, none of which has a norm to add."""
    if args[0]:
        kernel(*args, _buffer(_DOUBLE, norm_out))
    else:
        norm_out[0] = 0.0


def sgd_with_norm(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov,
                  maximize, first_step, grad_scale, norm_out):
    """:func:`sgd`, also setting ``norm_out[0] = sum_of_squares(grad)`` (bit for bit, a float64
    array) from the same pass over memory."""
    kernel, ctype = _SGD_NORM[param.dtype]
    _with_norm(kernel, _sgd_args(ctype, param, grad, momentum_buffer, lr, weight_decay, momentum,
                                 dampening, nesterov, maximize, first_step, grad_scale), norm_out)


def adagrad_with_norm(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale,
                      norm_out):
    """:func:`adagrad` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _ADAGRAD_NORM[param.dtype]
    _with_norm(kernel, _adagrad_args(ctype, param, grad, state_sum, weight_decay, eps, maximize,
                                     clr, grad_scale), norm_out)


def rmsprop_with_norm(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                      weight_decay, momentum, centered, maximize, grad_scale, norm_out):
    """:func:`rmsprop` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _RMSPROP_NORM[param.dtype]
    _with_norm(kernel, _rmsprop_args(ctype, param, grad, square_avg, grad_avg, momentum_buffer, lr,
                                     alpha, eps, weight_decay, momentum, centered, maximize,
                                     grad_scale), norm_out)


def adam_with_norm(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                   weight_decay, amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt,
                   grad_scale, norm_out):
    """:func:`adam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _ADAM_NORM[param.dtype]
    _with_norm(kernel, _adam_args(ctype, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr,
                                  beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled,
                                  step_size, bias_correction2_sqrt, grad_scale), norm_out)


def adamax_with_norm(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
                     grad_scale, norm_out):
    """:func:`adamax` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _ADAMAX_NORM[param.dtype]
    _with_norm(kernel, _adamax_args(ctype, param, grad, exp_avg, exp_inf, beta1, beta2, eps,
                                    weight_decay, maximize, clr, grad_scale), norm_out)


def nadam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
                    decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale, norm_out):
    """:func:`nadam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _NADAM_NORM[param.dtype]
    _with_norm(kernel, _nadam_args(ctype, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                                   weight_decay, maximize, decoupled, grad_coef, exp_avg_coef,
                                   bias_correction2, grad_scale), norm_out)


def radam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
                    decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale, norm_out):
    """:func:`radam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _RADAM_NORM[param.dtype]
    _with_norm(kernel, _radam_args(ctype, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                                   weight_decay, maximize, decoupled, rectify, step_size,
                                   bias_correction2_sqrt, grad_scale), norm_out)


def adadelta_with_norm(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
                       grad_scale, norm_out):
    """:func:`adadelta` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _ADADELTA_NORM[param.dtype]
    _with_norm(kernel, _adadelta_args(ctype, param, grad, square_avg, acc_delta, lr, rho, eps,
                                      weight_decay, maximize, grad_scale), norm_out)


def lion_with_norm(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale,
                   norm_out):
    """:func:`lion` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    kernel, ctype = _LION_NORM[param.dtype]
    _with_norm(kernel, _lion_args(ctype, param, grad, exp_avg, lr, beta1, beta2, weight_decay,
                                  maximize, grad_scale), norm_out)


def lamb_with_norm(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps,
                   weight_decay, maximize, bias_correction1, bias_correction2, grad_scale,
                   norm_out):
    """:func:`lamb` and ``norm_out[0] = sum_of_squares(grad)``; not fused: the sum is a pass of its
    own before LAMB's two."""
    norm_out[0] = sum_of_squares(grad)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale)


def build_info():
    """How the extension was built: compiler, OpenMP version or off, parallel threshold, flags."""
    return ffi.string(lib.fastopt_build_info()).decode()


def max_threads():
    """The number of threads a large step uses (1 without OpenMP)."""
    return lib.fastopt_max_threads()


def set_num_threads(n):
    """Sets the threads of later large steps started from the calling thread (no-op without OpenMP)."""
    lib.fastopt_set_num_threads(n)


# ---- Bound steps: the pointers taken once (see fastopt.optim._step.bound_launch) --------------------

def _binder(by_dtype):
    def bind(param, grad, *states):
        """``run(<hyperparameters>)``: the step on these arrays, the C function and the arrays'
        pointers found once (an empty array, state the mode does not use, as ``NULL``)."""
        if not param.size:
            return lambda *hyper: None
        kernel, ctype = by_dtype[param.dtype]
        pointers = [_buffer(ctype, a) if a.size else _NULL for a in (param, grad, *states)]
        return functools.partial(kernel, param.size, *pointers)
    return bind


# Each C step takes (n, its arrays, its hyperparameters) in the launcher's order.
for _launcher, _by_dtype_of in ((sgd, _SGD), (adagrad, _ADAGRAD), (rmsprop, _RMSPROP),
                                (adam, _ADAM), (adamax, _ADAMAX), (nadam, _NADAM), (radam, _RADAM),
                                (adadelta, _ADADELTA), (lion, _LION)):
    _launcher.bind = _binder(_by_dtype_of)
del _launcher, _by_dtype_of
