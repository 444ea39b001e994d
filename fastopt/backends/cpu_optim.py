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
from numba import prange

#: Below this many elements a step runs on one thread.
PARALLEL_THRESHOLD = 1 << 15


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
def _sgd(p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov, maximize,
         first_step):
    """d = ±g + wd*p; b = d (first step) or mu*b + (1-tau)*d; d = d + mu*b (Nesterov) or b; p -= lr*d"""
    for i in prange(p.size):
        d = -g[i] if maximize else g[i]
        if weight_decay != 0:
            d += weight_decay * p[i]
        if momentum != 0:
            b = d if first_step else momentum * buf[i] + one_minus_dampening * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@_compile_serial_and_parallel
def _adagrad(p, g, state_sum, weight_decay, eps, maximize, clr):
    """d = ±g + wd*p; s += d^2; p -= clr * d / (sqrt(s) + eps)"""
    for i in prange(p.size):
        d = -g[i] if maximize else g[i]
        if weight_decay != 0:
            d += weight_decay * p[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] -= clr * d / (math.sqrt(s) + eps)


@_compile_serial_and_parallel
def _rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay,
             momentum, centered, maximize):
    """v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v - gbar^2 or v) + eps;
    b = mu*b + d/den, p -= lr*b  (mu > 0)  or  p -= lr*d/den"""
    for i in prange(p.size):
        d = -g[i] if maximize else g[i]
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
          one_minus_beta2, eps, weight_decay, decay, amsgrad, maximize, step_size,
          bias_correction2_sqrt):
    """p *= decay (AdamW) or d = ±g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) + eps)"""
    for i in prange(p.size):
        d = -g[i] if maximize else g[i]
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


def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step):
    """SGD step in place; formula in :func:`fastopt.reference.sgd`."""
    one = param.dtype.type(1)
    _sgd(param.size, _flat(param), _flat(grad), _flat(momentum_buffer), lr, weight_decay, momentum,
         one - dampening, nesterov, maximize, first_step)


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr):
    """Adagrad step in place; formula in :func:`fastopt.reference.adagrad`."""
    _adagrad(param.size, _flat(param), _flat(grad), _flat(state_sum), weight_decay, eps, maximize,
             clr)


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize):
    """RMSprop step in place; formula in :func:`fastopt.reference.rmsprop`."""
    one = param.dtype.type(1)
    _rmsprop(param.size, _flat(param), _flat(grad), _flat(square_avg), _flat(grad_avg),
             _flat(momentum_buffer), lr, alpha, one - alpha, eps, weight_decay, momentum, centered,
             maximize)


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt):
    """Adam/AdamW step in place; formula in :func:`fastopt.reference.adam`."""
    one, zero = param.dtype.type(1), param.dtype.type(0)
    # AdamW scales p by (1 - lr*wd) and adds no L2 term; Adam scales by 1 and adds wd*p.
    decay, l2 = (one - lr * weight_decay, zero) if decoupled else (one, weight_decay)
    _adam(param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq),
          _flat(max_exp_avg_sq), beta1, one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad,
          maximize, step_size, bias_correction2_sqrt)
