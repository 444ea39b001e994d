"""The ``cpu`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba ``njit(parallel=True)``)."""

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from . import _bits
from ._mixed_element import make_adam_element
from ._numba_compile import serial_and_parallel
from .cpu_optim import PARALLEL_THRESHOLD, REDUCTION_CHUNK


@intrinsic
def _f32_from_bits(typingctx, u):
    """The float32 whose bit pattern is the low 32 bits of the integer u."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32)) if u.bitwidth > 32 else args[0]
        return builder.bitcast(low, ir.FloatType())

    return types.float32(u), codegen


@intrinsic
def _bits_from_f32(typingctx, x):
    """The bit pattern of the float32 x, as a non-negative int64."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(x), codegen


_adam_element = make_adam_element(numba.njit(inline="always", error_model="numpy"),
                                  _f32_from_bits, _bits_from_f32)


def _adam_body(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
               model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
               decay, amsgrad, step_size, bias_correction2_sqrt, scale, stochastic, key):
    """The mixed-precision Adam step over every element (see _mixed_element.adam_element)"""
    for i in prange(master.size):
        _adam_element(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt,
                      model, model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                      weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt, scale,
                      stochastic, key)


_adam_serial, _adam_parallel = serial_and_parallel(_adam_body)


def adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
         model_fmt, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled, step_size,
         bias_correction2_sqrt, grad_scale, stochastic, key):
    """Mixed-precision Adam/AdamW in place; formula in :func:`fastopt.backends.numpy_mixed.adam`."""
    one, zero = np.float32(1), np.float32(0)
    decay, l2 = (one - lr * weight_decay, zero) if decoupled else (one, weight_decay)
    scale = -grad_scale if maximize else grad_scale
    kernel = _adam_parallel if master.size >= PARALLEL_THRESHOLD else _adam_serial
    kernel(master.reshape(-1), grad.reshape(-1), grad_fmt, exp_avg.reshape(-1),
           exp_avg_sq.reshape(-1), max_exp_avg_sq.reshape(-1), state_fmt, model.reshape(-1),
           model_fmt, beta1, one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad, step_size,
           bias_correction2_sqrt, scale, stochastic, key)


def _sum_of_squares_body(grad, grad_fmt, chunk):
    """sum(g_i^2) in float64 of decoded gradient bits, in fixed chunks summed in order"""
    n_chunks = (grad.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        s = 0.0
        for i in range(c * chunk, min(grad.size, (c + 1) * chunk)):
            x = np.float64(_f32_from_bits(_bits.decode(np.int64(grad[i]), grad_fmt)))
            s += x * x
        partial[c] = s
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


_sum_serial, _sum_parallel = serial_and_parallel(_sum_of_squares_body)


def sum_of_squares(grad, grad_fmt):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic)."""
    kernel = _sum_parallel if grad.size >= PARALLEL_THRESHOLD else _sum_serial
    return float(kernel(grad.reshape(-1), grad_fmt, REDUCTION_CHUNK))
