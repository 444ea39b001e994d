"""The ``c`` backend: the optimizer steps of ``csrc/optim.c``, run in place through cffi.

Each step has the kernel signature of :mod:`fastopt.backends` and computes the formula of the same
name in :mod:`fastopt.reference`, in the arrays' precision and with the same operation order, so it
matches the numpy backend bit for bit on any number of threads. It calls the ``_f32`` or ``_f64``
C function for ``param.dtype``, with pointers to the arrays' own memory (no copies) and ``NULL``
for state the mode does not use, which is never touched and may be empty or ``None``. Like every
kernel it trusts the caller's validation (:mod:`fastopt._validate`).

Steps of 32768 elements or more run on OpenMP threads when the extension was built with OpenMP; see
:func:`build_info`, :func:`max_threads` and :func:`set_num_threads`. The C call releases the GIL.

Importing this module raises ``ImportError`` when the extension ``fastopt._fastopt_c`` was not
built (no C compiler at install time); the dispatcher reports that as the reason ``c`` is
unavailable.
"""

import numpy as np

from .._fastopt_c import ffi, lib

_NULL = ffi.NULL
_buffer = ffi.from_buffer  # the array's memory as a typed cdata, read-only arrays allowed

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOAT, _DOUBLE = ffi.typeof("float[]"), ffi.typeof("double[]")

# dtype -> (C function, cdata type of its arrays)
_SGD = {_F32: (lib.fastopt_sgd_f32, _FLOAT), _F64: (lib.fastopt_sgd_f64, _DOUBLE)}
_ADAGRAD = {_F32: (lib.fastopt_adagrad_f32, _FLOAT), _F64: (lib.fastopt_adagrad_f64, _DOUBLE)}
_RMSPROP = {_F32: (lib.fastopt_rmsprop_f32, _FLOAT), _F64: (lib.fastopt_rmsprop_f64, _DOUBLE)}
_ADAM = {_F32: (lib.fastopt_adam_f32, _FLOAT), _F64: (lib.fastopt_adam_f64, _DOUBLE)}
_ADAMAX = {_F32: (lib.fastopt_adamax_f32, _FLOAT), _F64: (lib.fastopt_adamax_f64, _DOUBLE)}
_NADAM = {_F32: (lib.fastopt_nadam_f32, _FLOAT), _F64: (lib.fastopt_nadam_f64, _DOUBLE)}
_RADAM = {_F32: (lib.fastopt_radam_f32, _FLOAT), _F64: (lib.fastopt_radam_f64, _DOUBLE)}
_ADADELTA = {_F32: (lib.fastopt_adadelta_f32, _FLOAT),
             _F64: (lib.fastopt_adadelta_f64, _DOUBLE)}
_LION = {_F32: (lib.fastopt_lion_f32, _FLOAT), _F64: (lib.fastopt_lion_f64, _DOUBLE)}
_LAMB = {_F32: (lib.fastopt_lamb_f32, _FLOAT), _F64: (lib.fastopt_lamb_f64, _DOUBLE)}
_INT64 = ffi.typeof("int64_t[]")
_SUM_OF_SQUARES = {_F32: (lib.fastopt_sum_of_squares_f32, _FLOAT),
                   _F64: (lib.fastopt_sum_of_squares_f64, _DOUBLE)}


def _with_norm(name):
    """dtype -> (C function, cdata type) of the step ``name`` that also writes the norm"""
    return {_F32: (getattr(lib, f"fastopt_{name}_with_norm_f32"), _FLOAT),
            _F64: (getattr(lib, f"fastopt_{name}_with_norm_f64"), _DOUBLE)}


_SGD_NORM = _with_norm("sgd")
_ADAGRAD_NORM = _with_norm("adagrad")
_RMSPROP_NORM = _with_norm("rmsprop")
_ADAM_NORM = _with_norm("adam")
_ADAMAX_NORM = _with_norm("adamax")
_NADAM_NORM = _with_norm("nadam")
_RADAM_NORM = _with_norm("radam")
_ADADELTA_NORM = _with_norm("adadelta")
_LION_NORM = _with_norm("lion")


def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    """In place: :func:`fastopt.reference.sgd`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _SGD[param.dtype]
    buf = _buffer(ctype, momentum_buffer) if momentum != 0 else _NULL
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), buf,
           lr, weight_decay, momentum, dampening, nesterov, maximize, first_step, grad_scale)


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    """In place: :func:`fastopt.reference.adagrad`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _ADAGRAD[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, state_sum),
           weight_decay, eps, maximize, clr, grad_scale)


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    """In place: :func:`fastopt.reference.rmsprop`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _RMSPROP[param.dtype]
    avg = _buffer(ctype, grad_avg) if centered else _NULL
    buf = _buffer(ctype, momentum_buffer) if momentum > 0 else _NULL
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, square_avg), avg, buf,
           lr, alpha, eps, weight_decay, momentum, centered, maximize, grad_scale)


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    """In place: :func:`fastopt.reference.adam`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _ADAM[param.dtype]
    vmax = _buffer(ctype, max_exp_avg_sq) if amsgrad else _NULL
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_avg_sq), vmax, lr, beta1, beta2, eps, weight_decay,
           amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale)


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    """In place: :func:`fastopt.reference.adamax`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _ADAMAX[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_inf), beta1, beta2, eps, weight_decay, maximize, clr, grad_scale)


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    """In place: :func:`fastopt.reference.nadam`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _NADAM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_avg_sq), lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
           grad_coef, exp_avg_coef, bias_correction2, grad_scale)


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    """In place: :func:`fastopt.reference.radam`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _RADAM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_avg_sq), lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
           rectify, step_size, bias_correction2_sqrt, grad_scale)


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    """In place: :func:`fastopt.reference.adadelta`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _ADADELTA[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, square_avg),
           _buffer(ctype, acc_delta), lr, rho, eps, weight_decay, maximize, grad_scale)


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    """In place: :func:`fastopt.reference.lion`."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _LION[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg), lr, beta1,
           beta2, weight_decay, maximize, grad_scale)


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """In place: :func:`fastopt.reference.lamb`, two passes; raises ``MemoryError`` (having
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
    """:func:`fastopt.reference.sum_of_squares`, in chunks independent of the thread count."""
    kernel, ctype = _SUM_OF_SQUARES[grad.dtype]
    return kernel(grad.size, _buffer(ctype, grad)) if grad.size else 0.0


# ---- Steps that also compute the gradient's sum of squares --------------------------------------

def sgd_with_norm(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov,
                  maximize, first_step, grad_scale, norm_out):
    """:func:`sgd`, also setting ``norm_out[0] = sum_of_squares(grad)`` (bit for bit, a float64
    array) from the same pass over memory."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _SGD_NORM[param.dtype]
    buf = _buffer(ctype, momentum_buffer) if momentum != 0 else _NULL
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), buf, lr, weight_decay, momentum,
           dampening, nesterov, maximize, first_step, grad_scale, _buffer(_DOUBLE, norm_out))


def adagrad_with_norm(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale,
                      norm_out):
    """:func:`adagrad` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _ADAGRAD_NORM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, state_sum), weight_decay,
           eps, maximize, clr, grad_scale, _buffer(_DOUBLE, norm_out))


def rmsprop_with_norm(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                      weight_decay, momentum, centered, maximize, grad_scale, norm_out):
    """:func:`rmsprop` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _RMSPROP_NORM[param.dtype]
    avg = _buffer(ctype, grad_avg) if centered else _NULL
    buf = _buffer(ctype, momentum_buffer) if momentum > 0 else _NULL
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, square_avg), avg, buf, lr,
           alpha, eps, weight_decay, momentum, centered, maximize, grad_scale,
           _buffer(_DOUBLE, norm_out))


def adam_with_norm(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                   weight_decay, amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt,
                   grad_scale, norm_out):
    """:func:`adam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _ADAM_NORM[param.dtype]
    vmax = _buffer(ctype, max_exp_avg_sq) if amsgrad else _NULL
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_avg_sq), vmax, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
           decoupled, step_size, bias_correction2_sqrt, grad_scale, _buffer(_DOUBLE, norm_out))


def adamax_with_norm(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
                     grad_scale, norm_out):
    """:func:`adamax` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _ADAMAX_NORM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_inf), beta1, beta2, eps, weight_decay, maximize, clr, grad_scale,
           _buffer(_DOUBLE, norm_out))


def nadam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
                    decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale, norm_out):
    """:func:`nadam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _NADAM_NORM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_avg_sq), lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
           grad_coef, exp_avg_coef, bias_correction2, grad_scale, _buffer(_DOUBLE, norm_out))


def radam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
                    decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale, norm_out):
    """:func:`radam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _RADAM_NORM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
           _buffer(ctype, exp_avg_sq), lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
           rectify, step_size, bias_correction2_sqrt, grad_scale, _buffer(_DOUBLE, norm_out))


def adadelta_with_norm(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
                       grad_scale, norm_out):
    """:func:`adadelta` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _ADADELTA_NORM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, square_avg),
           _buffer(ctype, acc_delta), lr, rho, eps, weight_decay, maximize, grad_scale,
           _buffer(_DOUBLE, norm_out))


def lion_with_norm(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale,
                   norm_out):
    """:func:`lion` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    n = param.size
    if n == 0:
        norm_out[0] = 0.0
        return
    kernel, ctype = _LION_NORM[param.dtype]
    kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg), lr, beta1,
           beta2, weight_decay, maximize, grad_scale, _buffer(_DOUBLE, norm_out))



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
