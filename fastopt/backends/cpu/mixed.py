"""The ``cpu`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba ``njit(parallel=True)``).

Signatures as in :mod:`fastopt.backends.numpy.mixed`; each loop runs the mixed-precision array step
of :mod:`fastopt.backends.elements.mixed` around the float32 element of
:mod:`fastopt.backends.elements.optim`.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from fastopt.backends.elements import bits as _bits
from fastopt.backends.elements.mixed import make_mixed_elements, mixed_step
from fastopt.backends._numba.compile import serial_and_parallel
from fastopt.backends.cpu.optim import (PARALLEL_THRESHOLD, REDUCTION_CHUNK,
                                        _compile_serial_and_parallel)
from fastopt.backends.elements.optim_legacy import make_elements

E = make_elements(numba.njit(error_model="numpy"))


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


#: The mixed-precision array steps around the float32 elements E of the float kernels.
M = make_mixed_elements(numba.njit(inline="always", error_model="numpy"), _f32_from_bits,
                        _bits_from_f32, E)

# One loop per algorithm over M.<algo>_at; arguments as in _mixed_element (the element constants).


def _sgd(master, grad, grad_fmt, buf, state_fmt, model, model_fmt, lr, weight_decay, momentum,
         one_minus_dampening, nesterov, first_step, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.sgd_at decodes grad and state, runs the
    float32 step d = s*g + wd*p; b = d (first step) or mu*b + (1-tau)*d; d = d + mu*b (Nesterov)
    or b; p -= lr*d on master, stores the state in state_fmt and model = master rounded to
    model_fmt"""
    for i in prange(master.size):
        M.sgd_at(i, master, grad, grad_fmt, buf, state_fmt, model, model_fmt, lr, weight_decay,
                 momentum, one_minus_dampening, nesterov, first_step, scale, stochastic, key)


def _adagrad(master, grad, grad_fmt, state_sum, state_fmt, model, model_fmt, weight_decay, eps,
             clr, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.adagrad_at decodes grad and state, runs the
    float32 step d = s*g + wd*p; v += d^2; p -= clr * d / (sqrt(v) + eps) on master, stores the
    state in state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.adagrad_at(i, master, grad, grad_fmt, state_sum, state_fmt, model, model_fmt,
                     weight_decay, eps, clr, scale, stochastic, key)


def _rmsprop(master, grad, grad_fmt, square_avg, grad_avg, buf, state_fmt, model, model_fmt, lr,
             alpha, one_minus_alpha, eps, weight_decay, momentum, centered, scale, stochastic,
             key):
    """Mixed precision, every element in parallel: M.rmsprop_at decodes grad and state, runs the
    float32 step d = s*g + wd*p; v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v -
    gbar^2 or v) + eps; b = mu*b + d/den, p -= lr*b (mu > 0) or p -= lr*d/den on master, stores
    the state in state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.rmsprop_at(i, master, grad, grad_fmt, square_avg, grad_avg, buf, state_fmt, model,
                     model_fmt, lr, alpha, one_minus_alpha, eps, weight_decay, momentum,
                     centered, scale, stochastic, key)


def _adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
          model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
          amsgrad, step_size, bias_correction2_sqrt, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.adam_at decodes grad and state, runs the
    float32 step p *= decay (AdamW) or d = s*g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v +
    (1-b2)*d^2; vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) +
    eps) on master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.adam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt,
                  model, model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                  weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt, scale,
                  stochastic, key)


def _adamax(master, grad, grad_fmt, exp_avg, exp_inf, state_fmt, model, model_fmt, beta1,
            one_minus_beta1, beta2, eps, weight_decay, clr, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.adamax_at decodes grad and state, runs the
    float32 step d = s*g + wd*p; m = b1*m + (1-b1)*d; u = max(b2*u, |d| + eps); p -= clr * m / u
    on master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.adamax_at(i, master, grad, grad_fmt, exp_avg, exp_inf, state_fmt, model, model_fmt,
                    beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale, stochastic, key)


def _nadam(master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt, beta1,
           one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, grad_coef,
           exp_avg_coef, bias_correction2, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.nadam_at decodes grad and state, runs the
    float32 step p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v +
    (1-b2)*d^2; den = sqrt(v / (1-b2^t)) + eps; p -= grad_coef * d / den + exp_avg_coef * m /
    den on master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.nadam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                   beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                   grad_coef, exp_avg_coef, bias_correction2, scale, stochastic, key)


def _radam(master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt, beta1,
           one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, rectify, step_size,
           bias_correction2_sqrt, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.radam_at decodes grad and state, runs the
    float32 step p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v +
    (1-b2)*d^2; p -= step_size * m * sqrt(1-b2^t) / (sqrt(v) + eps) (rectified) or step_size * m
    on master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.radam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                   beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                   rectify, step_size, bias_correction2_sqrt, scale, stochastic, key)


def _adadelta(master, grad, grad_fmt, square_avg, acc_delta, state_fmt, model, model_fmt, lr, rho,
              one_minus_rho, eps, weight_decay, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.adadelta_at decodes grad and state, runs
    the float32 step d = s*g + wd*p; v = rho*v + (1-rho)*d^2; delta = sqrt(a + eps) / sqrt(v +
    eps) * d; a = rho*a + (1-rho)*delta^2; p -= lr * delta on master, stores the state in
    state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.adadelta_at(i, master, grad, grad_fmt, square_avg, acc_delta, state_fmt, model,
                      model_fmt, lr, rho, one_minus_rho, eps, weight_decay, scale, stochastic, key)


def _lion(master, grad, grad_fmt, exp_avg, state_fmt, model, model_fmt, lr, beta1,
          one_minus_beta1, beta2, one_minus_beta2, decay, scale, stochastic, key):
    """Mixed precision, every element in parallel: M.lion_at decodes grad and state, runs the
    float32 step c = b1*m + (1-b1)*d; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*d on
    master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in prange(master.size):
        M.lion_at(i, master, grad, grad_fmt, exp_avg, state_fmt, model, model_fmt, lr, beta1,
                  one_minus_beta1, beta2, one_minus_beta2, decay, scale, stochastic, key)


sgd = mixed_step("sgd", _compile_serial_and_parallel(_sgd))
adagrad = mixed_step("adagrad", _compile_serial_and_parallel(_adagrad))
rmsprop = mixed_step("rmsprop", _compile_serial_and_parallel(_rmsprop))
adam = mixed_step("adam", _compile_serial_and_parallel(_adam))
adamax = mixed_step("adamax", _compile_serial_and_parallel(_adamax))
nadam = mixed_step("nadam", _compile_serial_and_parallel(_nadam))
radam = mixed_step("radam", _compile_serial_and_parallel(_radam))
adadelta = mixed_step("adadelta", _compile_serial_and_parallel(_adadelta))
lion = mixed_step("lion", _compile_serial_and_parallel(_lion))


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
