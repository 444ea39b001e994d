"""The ``cpu`` backend: numba ``njit(parallel=True)`` optimizer kernels, cached on disk.

Each kernel is compiled twice from one source: a ``prange`` version for large arrays and a serial one
below :data:`PARALLEL_THRESHOLD`, where starting the thread pool costs more than the update. The
launchers flatten the arrays (a view for C-contiguous arrays) and precompute ``1 - beta`` style
constants in the array dtype: in numba, ``1 - beta1`` with an integer literal would promote float32
to float64 and halve the vector width.
"""

import functools
import math

import numba
import numpy as np
from numba import prange

#: Below this many elements a step runs on one thread.
PARALLEL_THRESHOLD = 1 << 15
#: The reduction sums fixed chunks of this many elements in parallel, then the chunk sums in order:
#: the result does not depend on the number of threads.
REDUCTION_CHUNK = 1 << 14


def _compile_serial_and_parallel(body):
    # error_model="numpy": IEEE division (x/0 = inf, as in the reference) instead of a zero check
    # per division, which would keep the loop from vectorizing.
    options = dict(cache=True, nogil=True, error_model="numpy")
    serial = numba.njit(**options)(body)
    parallel = numba.njit(parallel=True, **options)(body)

    def launch(n, *args):
        return (parallel if n >= PARALLEL_THRESHOLD else serial)(*args)

    launch.serial, launch.parallel = serial, parallel
    return functools.update_wrapper(launch, body)


@_compile_serial_and_parallel
def _sgd(p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov, first_step,
         scale):
    """d = s*g + wd*p; b = d (first step) or mu*b + (1-tau)*d; d = d + mu*b (Nesterov) or b; p -= lr*d"""
    for i in prange(p.size):
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        if momentum != 0:
            b = d if first_step else momentum * buf[i] + one_minus_dampening * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@_compile_serial_and_parallel
def _adagrad(p, g, state_sum, weight_decay, eps, clr, scale):
    """d = s*g + wd*p; v += d^2; p -= clr * d / (sqrt(v) + eps)"""
    for i in prange(p.size):
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] -= clr * d / (math.sqrt(s) + eps)


@_compile_serial_and_parallel
def _rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay,
             momentum, centered, scale):
    """v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v - gbar^2 or v) + eps;
    b = mu*b + d/den, p -= lr*b  (mu > 0)  or  p -= lr*d/den"""
    for i in prange(p.size):
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        v = alpha * square_avg[i] + one_minus_alpha * d * d
        square_avg[i] = v
        if centered:
            a = alpha * grad_avg[i] + one_minus_alpha * d
            grad_avg[i] = a
            v = v - a * a
        denom = math.sqrt(v) + eps
        if momentum > 0:
            b = momentum * buf[i] + d / denom
            buf[i] = b
            p[i] -= lr * b
        else:
            p[i] -= lr * d / denom


@_compile_serial_and_parallel
def _adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1, beta2,
          one_minus_beta2, eps, weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt,
          scale):
    """p *= decay (AdamW) or d = s*g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) + eps)"""
    for i in prange(p.size):
        d = g[i] * scale
        x = p[i] * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        p[i] = x - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


def _flat(a):
    return a.reshape(-1)


def _signed(grad_scale, maximize):
    # -(g*s) == g*(-s) exactly, so maximize costs nothing inside the loop.
    return -grad_scale if maximize else grad_scale


def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    """SGD step in place; formula in :func:`fastopt.reference.sgd`."""
    one = param.dtype.type(1)
    _sgd(param.size, _flat(param), _flat(grad), _flat(momentum_buffer), lr, weight_decay, momentum,
         one - dampening, nesterov, first_step, _signed(grad_scale, maximize))


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    """Adagrad step in place; formula in :func:`fastopt.reference.adagrad`."""
    _adagrad(param.size, _flat(param), _flat(grad), _flat(state_sum), weight_decay, eps, clr,
             _signed(grad_scale, maximize))


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    """RMSprop step in place; formula in :func:`fastopt.reference.rmsprop`."""
    one = param.dtype.type(1)
    _rmsprop(param.size, _flat(param), _flat(grad), _flat(square_avg), _flat(grad_avg),
             _flat(momentum_buffer), lr, alpha, one - alpha, eps, weight_decay, momentum, centered,
             _signed(grad_scale, maximize))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    """Adam/AdamW step in place; formula in :func:`fastopt.reference.adam`."""
    one, zero = param.dtype.type(1), param.dtype.type(0)
    # AdamW scales p by (1 - lr*wd) and adds no L2 term; Adam scales by 1 and adds wd*p.
    decay, l2 = (one - lr * weight_decay, zero) if decoupled else (one, weight_decay)
    _adam(param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq),
          _flat(max_exp_avg_sq), beta1, one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad,
          step_size, bias_correction2_sqrt, _signed(grad_scale, maximize))


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _chunked_sum_of_squares(g, chunk):
    """sum(g_i^2) in float64, as fixed chunks summed in parallel, then the chunk sums in order"""
    n_chunks = (g.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        s = 0.0
        for i in range(c * chunk, min(g.size, (c + 1) * chunk)):
            x = np.float64(g[i])
            s += x * x
        partial[c] = s
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


def sum_of_squares(grad):
    """The squared global norm in float64; formula in :func:`fastopt.reference.sum_of_squares`."""
    return float(_chunked_sum_of_squares(_flat(grad), REDUCTION_CHUNK))
