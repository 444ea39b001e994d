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

from ._numba_compile import serial_and_parallel

#: Below this many elements a step runs on one thread.
PARALLEL_THRESHOLD = 1 << 15
#: The reduction sums fixed chunks of this many elements in parallel, then the chunk sums in order:
#: the result does not depend on the number of threads.
REDUCTION_CHUNK = 1 << 14
#: LAMB's segmented reduction and update work on fixed chunks of this many elements: each chunk's
#: piece of each tensor is summed on one thread, then a tensor's pieces in order.
LAMB_CHUNK = 1 << 14


def _compile_serial_and_parallel(body):
    serial, parallel = serial_and_parallel(body)

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


@_compile_serial_and_parallel
def _adamax(p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale):
    """d = s*g + wd*p; m = b1*m + (1-b1)*d; u = max(b2*u, |d| + eps); p -= clr * m / u"""
    for i in prange(p.size):
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        u = max(beta2 * exp_inf[i], abs(d) + eps)
        exp_avg[i] = m
        exp_inf[i] = u
        p[i] -= clr * m / u


@_compile_serial_and_parallel
def _nadam(p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
           weight_decay, decay, grad_coef, exp_avg_coef, bias_correction2, scale):
    """p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    den = sqrt(v / (1-b2^t)) + eps; p -= grad_coef * d / den + exp_avg_coef * m / den"""
    for i in prange(p.size):
        d = g[i] * scale
        x = p[i] * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = math.sqrt(v / bias_correction2) + eps
        p[i] = x - grad_coef * d / denom - exp_avg_coef * m / denom


@_compile_serial_and_parallel
def _radam(p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
           weight_decay, decay, rectify, step_size, bias_correction2_sqrt, scale):
    """p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    p -= step_size * m * sqrt(1-b2^t) / (sqrt(v) + eps)  (rectified)  or  step_size * m"""
    for i in prange(p.size):
        d = g[i] * scale
        x = p[i] * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if rectify:
            p[i] = x - step_size * m * (bias_correction2_sqrt / (math.sqrt(v) + eps))
        else:
            p[i] = x - step_size * m


@_compile_serial_and_parallel
def _adadelta(p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay, scale):
    """d = s*g + wd*p; v = rho*v + (1-rho)*d^2; delta = sqrt(a + eps) / sqrt(v + eps) * d;
    a = rho*a + (1-rho)*delta^2; p -= lr * delta"""
    for i in prange(p.size):
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        v = rho * square_avg[i] + one_minus_rho * d * d
        a = acc_delta[i]
        delta = math.sqrt(a + eps) / math.sqrt(v + eps) * d
        square_avg[i] = v
        acc_delta[i] = rho * a + one_minus_rho * delta * delta
        p[i] -= lr * delta


@_compile_serial_and_parallel
def _lion(p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay, scale):
    """c = b1*m + (1-b1)*d; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*d"""
    for i in prange(p.size):
        d = g[i] * scale
        m = exp_avg[i]
        c = beta1 * m + one_minus_beta1 * d
        p[i] = p[i] * decay - lr * np.sign(c)
        exp_avg[i] = beta2 * m + one_minus_beta2 * d


@_compile_serial_and_parallel
def _lamb_moments(p, g, exp_avg, exp_avg_sq, offsets, partial, chunk, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  scale):
    """m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p;
    partial[c + s] = (sum p^2, sum u^2) in float64 over the part of segment s in chunk c"""
    n_chunks = (p.size + chunk - 1) // chunk
    segments = offsets.size - 1
    for c in prange(n_chunks):
        first, stop = c * chunk, min(p.size, (c + 1) * chunk)
        s = np.searchsorted(offsets, first, side="right") - 1  # the segment holding `first`
        # Walking the array, c + s grows at every chunk or segment boundary: each (chunk,
        # segment) piece has a slot of its own.
        while s < segments and offsets[s] < stop:
            pp = 0.0
            uu = 0.0
            for i in range(max(offsets[s], first), min(offsets[s + 1], stop)):
                d = g[i] * scale
                m = beta1 * exp_avg[i] + one_minus_beta1 * d
                v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
                exp_avg[i] = m
                exp_avg_sq[i] = v
                x = p[i]
                u = (m / bias_correction1) / (math.sqrt(v / bias_correction2) + eps)
                if weight_decay != 0:
                    u += weight_decay * x
                pp += np.float64(x) * np.float64(x)
                uu += np.float64(u) * np.float64(u)
            partial[c + s, 0] = pp
            partial[c + s, 1] = uu
            s += 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lamb_ratios(offsets, partial, chunk, lr, ratio):
    """ratio[s] = lr * ||p_s|| / ||u_s|| (lr alone when either norm is 0), the sums of segment s's
    chunk pieces taken in order"""
    for s in range(offsets.size - 1):
        pp = 0.0
        uu = 0.0
        if offsets[s + 1] > offsets[s]:
            for c in range(offsets[s] // chunk, (offsets[s + 1] - 1) // chunk + 1):
                pp += partial[c + s, 0]
                uu += partial[c + s, 1]
        r = math.sqrt(pp) / math.sqrt(uu) if pp > 0 and uu > 0 else 1.0
        ratio[s] = lr * r  # rounded to the arrays' dtype


@_compile_serial_and_parallel
def _lamb_update(p, exp_avg, exp_avg_sq, offsets, ratio, chunk, eps, weight_decay,
                 bias_correction1, bias_correction2):
    """u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p from the updated moments; p -= ratio[s] * u"""
    n_chunks = (p.size + chunk - 1) // chunk
    segments = offsets.size - 1
    for c in prange(n_chunks):
        first, stop = c * chunk, min(p.size, (c + 1) * chunk)
        s = np.searchsorted(offsets, first, side="right") - 1
        while s < segments and offsets[s] < stop:
            step = ratio[s]
            for i in range(max(offsets[s], first), min(offsets[s + 1], stop)):
                x = p[i]
                u = (exp_avg[i] / bias_correction1) / (math.sqrt(exp_avg_sq[i] / bias_correction2)
                                                       + eps)
                if weight_decay != 0:
                    u += weight_decay * x
                p[i] = x - step * u
            s += 1


def _flat(a):
    return a.reshape(-1)


def _signed(grad_scale, maximize):
    # -(g*s) == g*(-s) exactly, so maximize costs nothing inside the loop.
    return -grad_scale if maximize else grad_scale


def _decay_and_l2(param, lr, weight_decay, decoupled):
    # Decoupled decay scales p by (1 - lr*wd) and adds no L2 term; L2 scales by 1 and adds wd*p.
    one, zero = param.dtype.type(1), param.dtype.type(0)
    return (one - lr * weight_decay, zero) if decoupled else (one, weight_decay)


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
    one = param.dtype.type(1)
    decay, l2 = _decay_and_l2(param, lr, weight_decay, decoupled)
    _adam(param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq),
          _flat(max_exp_avg_sq), beta1, one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad,
          step_size, bias_correction2_sqrt, _signed(grad_scale, maximize))


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    """Adamax step in place; formula in :func:`fastopt.reference.adamax`."""
    one = param.dtype.type(1)
    _adamax(param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_inf), beta1,
            one - beta1, beta2, eps, weight_decay, clr, _signed(grad_scale, maximize))


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    """NAdam step in place; formula in :func:`fastopt.reference.nadam`."""
    one = param.dtype.type(1)
    decay, l2 = _decay_and_l2(param, lr, weight_decay, decoupled)
    _nadam(param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq), beta1,
           one - beta1, beta2, one - beta2, eps, l2, decay, grad_coef, exp_avg_coef,
           bias_correction2, _signed(grad_scale, maximize))


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    """RAdam step in place; formula in :func:`fastopt.reference.radam`."""
    one = param.dtype.type(1)
    decay, l2 = _decay_and_l2(param, lr, weight_decay, decoupled)
    _radam(param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq), beta1,
           one - beta1, beta2, one - beta2, eps, l2, decay, rectify, step_size,
           bias_correction2_sqrt, _signed(grad_scale, maximize))


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    """Adadelta step in place; formula in :func:`fastopt.reference.adadelta`."""
    one = param.dtype.type(1)
    _adadelta(param.size, _flat(param), _flat(grad), _flat(square_avg), _flat(acc_delta), lr, rho,
              one - rho, eps, weight_decay, _signed(grad_scale, maximize))


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    """Lion step in place; formula in :func:`fastopt.reference.lion`."""
    one = param.dtype.type(1)
    _lion(param.size, _flat(param), _flat(grad), _flat(exp_avg), lr, beta1, one - beta1, beta2,
          one - beta2, one - lr * weight_decay, _signed(grad_scale, maximize))


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """LAMB step in place, two passes (segmented reduction, then update); formula in
    :func:`fastopt.reference.lamb`."""
    n, chunk = param.size, LAMB_CHUNK
    if n == 0:
        return
    one = param.dtype.type(1)
    segments = segment_offsets.size - 1
    partial = np.empty(((n + chunk - 1) // chunk + segments, 2), np.float64)
    ratio = np.empty(segments, param.dtype)
    p, m, v = _flat(param), _flat(exp_avg), _flat(exp_avg_sq)
    _lamb_moments(n, p, _flat(grad), m, v, segment_offsets, partial, chunk, beta1, one - beta1,
                  beta2, one - beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  _signed(grad_scale, maximize))
    _lamb_ratios(segment_offsets, partial, chunk, float(lr), ratio)
    _lamb_update(n, p, m, v, segment_offsets, ratio, chunk, eps, weight_decay, bias_correction1,
                 bias_correction2)


@_compile_serial_and_parallel
def _chunked_sum_of_squares(g, chunk):
    """sum(g_i^2) in float64, as fixed chunks summed in parallel, then the chunk sums in order;
    each chunk keeps 8 running sums (element i goes to sum (i - start) % 8, the tail to the first),
    added pairwise at the end, so the additions pipeline instead of waiting on one another."""
    n_chunks = (g.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(g.size, lo + chunk)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        stop = lo + (hi - lo) // 8 * 8
        for i in range(lo, stop, 8):
            x0, x1, x2, x3 = np.float64(g[i]), np.float64(g[i + 1]), np.float64(g[i + 2]), \
                np.float64(g[i + 3])
            x4, x5, x6, x7 = np.float64(g[i + 4]), np.float64(g[i + 5]), np.float64(g[i + 6]), \
                np.float64(g[i + 7])
            s0 += x0 * x0
            s1 += x1 * x1
            s2 += x2 * x2
            s3 += x3 * x3
            s4 += x4 * x4
            s5 += x5 * x5
            s6 += x6 * x6
            s7 += x7 * x7
        for i in range(stop, hi):
            x = np.float64(g[i])
            s0 += x * x
        partial[c] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


def sum_of_squares(grad):
    """The squared global norm in float64; formula in :func:`fastopt.reference.sum_of_squares`."""
    return float(_chunked_sum_of_squares(grad.size, _flat(grad), REDUCTION_CHUNK))
