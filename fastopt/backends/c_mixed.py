"""The ``c`` backend's mixed-precision steps (csrc/mixed.c through cffi)."""

from .._fastopt_c import ffi, lib

_NULL = ffi.NULL


def _pointer(array):
    return ffi.from_buffer(array) if array.size else _NULL


def adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
         model_fmt, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled, step_size,
         bias_correction2_sqrt, grad_scale, stochastic, key):
    """Mixed-precision Adam/AdamW in place; formula in :func:`fastopt.backends.numpy_mixed.adam`."""
    if master.size == 0:
        return
    lib.fastopt_adam_mixed(master.size, ffi.from_buffer("float[]", master), _pointer(grad),
                           grad_fmt, _pointer(exp_avg), _pointer(exp_avg_sq),
                           _pointer(max_exp_avg_sq) if amsgrad else _NULL, state_fmt,
                           ffi.from_buffer("uint16_t[]", model), model_fmt, lr, beta1, beta2,
                           eps, weight_decay, amsgrad, maximize, decoupled, step_size,
                           bias_correction2_sqrt, grad_scale, stochastic, key)


def sum_of_squares(grad, grad_fmt):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic)."""
    return lib.fastopt_sum_of_squares_mixed(grad.size, _pointer(grad), grad_fmt) if grad.size \
        else 0.0
