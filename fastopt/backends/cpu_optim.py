"""The ``cpu`` backend: numba ``njit(parallel=True)`` optimizer kernels, cached on disk.

Each kernel is compiled twice from one source: a ``prange`` version for large arrays and a serial one
below :data:`PARALLEL_THRESHOLD`, where starting the thread pool costs more than the update. The
launchers take the kernels' arguments from :mod:`fastopt.backends._optim_args`: flat views of the
arrays and ``1 - beta`` style constants computed in the arrays' dtype.

The math of each step is its element in :mod:`fastopt.backends._optim_element`, shared with the
``cuda`` backend. A kernel runs it over blocks of :data:`BLOCK` elements, one vectorized loop per
block. ``<algo>_with_norm`` runs the same update and returns the gradient's sum of squares with the
bits of :func:`sum_of_squares`, from the same pass over memory. Both kernels of every algorithm
are expanded from the templates :func:`_step` and :func:`_step_with_norm` (see :func:`_steps`).
"""

import functools
import math

import numba
import numpy as np
from numba import prange

from . import _kernel_templates as templates
from . import _optim_args as kernel_args
from ._numba_compile import serial_and_parallel
from ._optim_args import flat, signed
from ._optim_element import make_elements

#: Inlined into its callers in numba's IR: a kernel's loops then see its mode flags as constants.
_inline = numba.njit(inline="always", error_model="numpy")
#: The element updates (see :mod:`fastopt.backends._optim_element`), left for LLVM to inline
#: (inlining them in numba's IR too gives the same machine code, compiled about 1.5 times slower).
E = make_elements(numba.njit(error_model="numpy"))

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


#: The kernels work on blocks of this many elements (a multiple of 8 that divides REDUCTION_CHUNK):
#: a block is one vectorized loop, and the fused kernels add the squares of a block's gradient
#: right after updating it, while it is in cache.
BLOCK = 1 << 10


# ---- The global gradient norm: alone, or computed in the update pass ---------------------------
#
# Both sum fixed chunks of REDUCTION_CHUNK elements (in parallel), then the chunk sums in order, so
# the result does not depend on the number of threads. A chunk keeps 8 running sums (element i goes
# to sum (i - start) % 8, the chunk's last (size % 8) elements to the first), added pairwise at the
# end, so that the additions pipeline instead of waiting on one another. The sums are set by this
# order alone (no fastmath), so a fused kernel, which adds each BLOCK of elements right
# after updating it (the gradient still in cache), gets the same bits as _chunked_sum_of_squares.

_NO_SUMS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@_inline
def _add_squares(g, lo, hi, sums):
    """sums + the squares of g[lo:hi] in float64: g[i] to sums[(i - lo) % 8], the (hi - lo) % 8
    last ones to sums[0]"""
    s0, s1, s2, s3, s4, s5, s6, s7 = sums
    g = g[lo:hi]  # indices from 0: numba's negative-index wraparound folds away
    stop = g.size // 8 * 8
    for i in range(0, stop, 8):
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
    for i in range(stop, g.size):
        x = np.float64(g[i])
        s0 += x * x
    return s0, s1, s2, s3, s4, s5, s6, s7


@_inline
def _total(sums):
    """The 8 running sums of a chunk, added pairwise"""
    s0, s1, s2, s3, s4, s5, s6, s7 = sums
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@_inline
def _sum_in_order(partial):
    """partial[0] + partial[1] + ... in order"""
    total = 0.0
    for c in range(partial.size):
        total += partial[c]
    return total


@_compile_serial_and_parallel
def _chunked_sum_of_squares(g, chunk):
    """sum(g_i^2) in float64: per chunk, 8 running sums added pairwise; the chunk sums in order"""
    n_chunks = (g.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        lo = c * chunk
        partial[c] = _total(_add_squares(g, lo, min(g.size, lo + chunk), _NO_SUMS))
    return _sum_in_order(partial)


# ---- One algorithm over elements [lo, hi) -------------------------------------------------------
#
# Each runs the array step of _optim_element over [lo, hi) in one loop per use of the optional
# state arrays, with the flags that choose them as constants: each loop is then free of branches
# around loads and stores, and vectorizes (a runtime flag would need LLVM to unswitch the loop,
# which it does not reliably do). The indices are unsigned: numba then drops the negative-index
# wraparound, whose select on every access keeps a loop over [lo, hi) from vectorizing.


@_inline
def _sgd_range(lo, hi, p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov,
               first_step, scale):
    """E.sgd_at over [lo, hi); buf is used when momentum != 0"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if momentum == 0:
        for i in range(lo, hi):
            E.sgd_at(i, p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov,
                     first_step, scale, False)
    else:
        for i in range(lo, hi):
            E.sgd_at(i, p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov,
                     first_step, scale, True)


@_inline
def _adagrad_range(lo, hi, p, g, state_sum, weight_decay, eps, clr, scale):
    """E.adagrad_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.adagrad_at(i, p, g, state_sum, weight_decay, eps, clr, scale)


@_inline
def _rmsprop_range(lo, hi, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered, scale):
    """E.rmsprop_at over [lo, hi); grad_avg is used when centered, buf when momentum > 0"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if centered and momentum > 0:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                         weight_decay, momentum, True, scale, True)
    elif centered:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                         weight_decay, momentum, True, scale, False)
    elif momentum > 0:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                         weight_decay, momentum, False, scale, True)
    else:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                         weight_decay, momentum, False, scale, False)


@_inline
def _adam_range(lo, hi, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                beta2, one_minus_beta2, eps, weight_decay, decay, amsgrad, step_size,
                bias_correction2_sqrt, scale):
    """E.adam_at over [lo, hi); max_exp_avg_sq is used with amsgrad"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if amsgrad:
        for i in range(lo, hi):
            E.adam_at(i, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                      beta2, one_minus_beta2, eps, weight_decay, decay, True, step_size,
                      bias_correction2_sqrt, scale)
    else:
        for i in range(lo, hi):
            E.adam_at(i, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                      beta2, one_minus_beta2, eps, weight_decay, decay, False, step_size,
                      bias_correction2_sqrt, scale)


@_inline
def _adamax_range(lo, hi, p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps,
                  weight_decay, clr, scale):
    """E.adamax_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.adamax_at(i, p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps, weight_decay,
                    clr, scale)


@_inline
def _nadam_range(lo, hi, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, eps, weight_decay, decay, grad_coef, exp_avg_coef,
                 bias_correction2, scale):
    """E.nadam_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.nadam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2,
                   eps, weight_decay, decay, grad_coef, exp_avg_coef, bias_correction2, scale)


@_inline
def _radam_range(lo, hi, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, eps, weight_decay, decay, rectify, step_size,
                 bias_correction2_sqrt, scale):
    """E.radam_at over [lo, hi); a loop per rectify, so the unrectified one has no square root"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if rectify:
        for i in range(lo, hi):
            E.radam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                       one_minus_beta2, eps, weight_decay, decay, True, step_size,
                       bias_correction2_sqrt, scale)
    else:
        for i in range(lo, hi):
            E.radam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                       one_minus_beta2, eps, weight_decay, decay, False, step_size,
                       bias_correction2_sqrt, scale)


@_inline
def _adadelta_range(lo, hi, p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps,
                    weight_decay, scale):
    """E.adadelta_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.adadelta_at(i, p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay,
                      scale)


@_inline
def _lion_range(lo, hi, p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                decay, scale):
    """E.lion_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.lion_at(i, p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay,
                  scale)


# ---- The steps: every block of the arrays, in parallel above PARALLEL_THRESHOLD -----------------
#
# Two templates for every algorithm (see _kernel_templates): ARGS stands for the parameters of the
# algorithm's loop over [lo, hi) after (lo, hi, p, g), and _update for that loop.

def _update(lo, hi, p, g, *args):
    """The algorithm's loop over [lo, hi) in the templates below, bound by _steps"""
    raise NotImplementedError("a template's _update is bound when it is expanded")


def _step(p, g, ARGS):
    """Template: _update over every BLOCK of the arrays"""
    for c in prange((p.size + BLOCK - 1) // BLOCK):
        lo = c * BLOCK
        _update(lo, min(p.size, lo + BLOCK), p, g, ARGS)


def _step_with_norm(p, g, ARGS, chunk):
    """Template: _step, also adding each block's squares of g right after updating it (in cache),
    in the chunks of _chunked_sum_of_squares: returns the sum with that kernel's bits"""
    partial = np.empty((p.size + chunk - 1) // chunk, np.float64)
    for c in prange(partial.size):
        lo, hi = c * chunk, min(p.size, (c + 1) * chunk)
        sums = _NO_SUMS
        for a in range(lo, hi, BLOCK):
            b = min(a + BLOCK, hi)
            _update(a, b, p, g, ARGS)
            sums = _add_squares(g, a, b, sums)
        partial[c] = _total(sums)
    return _sum_in_order(partial)


def _steps(name, update, formula):
    """``(step, step_with_norm)`` of the loop ``update``: the templates expanded as ``name`` and
    ``name + "_norm"``, compiled serial and parallel. ``step_with_norm`` also returns sum(g_i^2)
    as ``_chunked_sum_of_squares(g, chunk)``, its last argument ``chunk``; ``formula`` is their
    docstring."""
    args = templates.parameters(update, 4)
    fused_doc = (f"{formula}\n\n    and, in the same pass, returns sum(g_i^2) in float64 as "
                 "_chunked_sum_of_squares(g, chunk)")
    return (_compile_serial_and_parallel(templates.expand(_step, name, args, update, formula)),
            _compile_serial_and_parallel(templates.expand(_step_with_norm, name + "_norm", args,
                                                          update, fused_doc)))


_sgd, _sgd_norm = _steps("_sgd", _sgd_range, """
    d = s*g + wd*p; b = d (first step) or mu*b + (1-tau)*d; d = d + mu*b (Nesterov) or b;
    p -= lr*d""")
_adagrad, _adagrad_norm = _steps("_adagrad", _adagrad_range, """
    d = s*g + wd*p; v += d^2; p -= clr * d / (sqrt(v) + eps)""")
_rmsprop, _rmsprop_norm = _steps("_rmsprop", _rmsprop_range, """
    d = s*g + wd*p; v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v - gbar^2 or v) + eps;
    b = mu*b + d/den, p -= lr*b  (mu > 0)  or  p -= lr*d/den""")
_adam, _adam_norm = _steps("_adam", _adam_range, """
    p *= decay (AdamW) or d = s*g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) + eps)""")
_adamax, _adamax_norm = _steps("_adamax", _adamax_range, """
    d = s*g + wd*p; m = b1*m + (1-b1)*d; u = max(b2*u, |d| + eps); p -= clr * m / u""")
_nadam, _nadam_norm = _steps("_nadam", _nadam_range, """
    p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    den = sqrt(v / (1-b2^t)) + eps; p -= grad_coef * d / den + exp_avg_coef * m / den""")
_radam, _radam_norm = _steps("_radam", _radam_range, """
    p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    p -= step_size * m * sqrt(1-b2^t) / (sqrt(v) + eps)  (rectified)  or  step_size * m""")
_adadelta, _adadelta_norm = _steps("_adadelta", _adadelta_range, """
    d = s*g + wd*p; v = rho*v + (1-rho)*d^2; delta = sqrt(a + eps) / sqrt(v + eps) * d;
    a = rho*a + (1-rho)*delta^2; p -= lr * delta""")
_lion, _lion_norm = _steps("_lion", _lion_range, """
    c = b1*m + (1-b1)*d; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*d""")


# ---- LAMB: a segmented reduction, the per-tensor trust ratios, then the update ------------------

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
                m, v = E.lamb_moments(g[i], exp_avg[i], exp_avg_sq[i], beta1, one_minus_beta1,
                                      beta2, one_minus_beta2, scale)
                exp_avg[i] = m
                exp_avg_sq[i] = v
                x = p[i]
                u = E.lamb_direction(x, m, v, eps, weight_decay, bias_correction1,
                                     bias_correction2)
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
                p[i] = x - step * E.lamb_direction(x, exp_avg[i], exp_avg_sq[i], eps,
                                                   weight_decay, bias_correction1,
                                                   bias_correction2)
            s += 1




def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    """SGD step in place; formula in :func:`fastopt.reference.sgd`."""
    _sgd(param.size, *kernel_args.sgd(param, grad, momentum_buffer, lr, weight_decay, momentum,
                                      dampening, nesterov, maximize, first_step, grad_scale))


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    """Adagrad step in place; formula in :func:`fastopt.reference.adagrad`."""
    _adagrad(param.size, *kernel_args.adagrad(param, grad, state_sum, weight_decay, eps, maximize,
                                              clr, grad_scale))


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    """RMSprop step in place; formula in :func:`fastopt.reference.rmsprop`."""
    _rmsprop(param.size, *kernel_args.rmsprop(param, grad, square_avg, grad_avg, momentum_buffer,
                                              lr, alpha, eps, weight_decay, momentum, centered,
                                              maximize, grad_scale))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    """Adam/AdamW step in place; formula in :func:`fastopt.reference.adam`."""
    _adam(param.size, *kernel_args.adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr,
                                        beta1, beta2, eps, weight_decay, amsgrad, maximize,
                                        decoupled, step_size, bias_correction2_sqrt, grad_scale))


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    """Adamax step in place; formula in :func:`fastopt.reference.adamax`."""
    _adamax(param.size, *kernel_args.adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps,
                                            weight_decay, maximize, clr, grad_scale))


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    """NAdam step in place; formula in :func:`fastopt.reference.nadam`."""
    _nadam(param.size, *kernel_args.nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                                          weight_decay, maximize, decoupled, grad_coef,
                                          exp_avg_coef, bias_correction2, grad_scale))


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    """RAdam step in place; formula in :func:`fastopt.reference.radam`."""
    _radam(param.size, *kernel_args.radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                                          weight_decay, maximize, decoupled, rectify, step_size,
                                          bias_correction2_sqrt, grad_scale))


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    """Adadelta step in place; formula in :func:`fastopt.reference.adadelta`."""
    _adadelta(param.size, *kernel_args.adadelta(param, grad, square_avg, acc_delta, lr, rho, eps,
                                                weight_decay, maximize, grad_scale))


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    """Lion step in place; formula in :func:`fastopt.reference.lion`."""
    _lion(param.size, *kernel_args.lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay,
                                        maximize, grad_scale))


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
    p, m, v = flat(param), flat(exp_avg), flat(exp_avg_sq)
    _lamb_moments(n, p, flat(grad), m, v, segment_offsets, partial, chunk, beta1, one - beta1,
                  beta2, one - beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  signed(grad_scale, maximize))
    _lamb_ratios(segment_offsets, partial, chunk, float(lr), ratio)
    _lamb_update(n, p, m, v, segment_offsets, ratio, chunk, eps, weight_decay, bias_correction1,
                 bias_correction2)


def sum_of_squares(grad):
    """The squared global norm in float64; formula in :func:`fastopt.reference.sum_of_squares`."""
    return float(_chunked_sum_of_squares(grad.size, flat(grad), REDUCTION_CHUNK))


# ---- Steps that also compute the gradient's sum of squares --------------------------------------

def sgd_with_norm(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov,
                  maximize, first_step, grad_scale, norm_out):
    """:func:`sgd`, also setting ``norm_out[0] = sum_of_squares(grad)`` (bit for bit) from the
    same pass over memory."""
    args = kernel_args.sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening,
                           nesterov, maximize, first_step, grad_scale)
    norm_out[0] = _sgd_norm(param.size, *args, REDUCTION_CHUNK)


def adagrad_with_norm(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale,
                      norm_out):
    """:func:`adagrad` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr,
                               grad_scale)
    norm_out[0] = _adagrad_norm(param.size, *args, REDUCTION_CHUNK)


def rmsprop_with_norm(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                      weight_decay, momentum, centered, maximize, grad_scale, norm_out):
    """:func:`rmsprop` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                               weight_decay, momentum, centered, maximize, grad_scale)
    norm_out[0] = _rmsprop_norm(param.size, *args, REDUCTION_CHUNK)


def adam_with_norm(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                   weight_decay, amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt,
                   grad_scale, norm_out):
    """:func:`adam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                            weight_decay, amsgrad, maximize, decoupled, step_size,
                            bias_correction2_sqrt, grad_scale)
    norm_out[0] = _adam_norm(param.size, *args, REDUCTION_CHUNK)


def adamax_with_norm(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize,
                     clr, grad_scale, norm_out):
    """:func:`adamax` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay,
                              maximize, clr, grad_scale)
    norm_out[0] = _adamax_norm(param.size, *args, REDUCTION_CHUNK)


def nadam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                    maximize, decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale,
                    norm_out):
    """:func:`nadam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                             maximize, decoupled, grad_coef, exp_avg_coef, bias_correction2,
                             grad_scale)
    norm_out[0] = _nadam_norm(param.size, *args, REDUCTION_CHUNK)


def radam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                    maximize, decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale,
                    norm_out):
    """:func:`radam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                             maximize, decoupled, rectify, step_size, bias_correction2_sqrt,
                             grad_scale)
    norm_out[0] = _radam_norm(param.size, *args, REDUCTION_CHUNK)


def adadelta_with_norm(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
                       grad_scale, norm_out):
    """:func:`adadelta` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay,
                                maximize, grad_scale)
    norm_out[0] = _adadelta_norm(param.size, *args, REDUCTION_CHUNK)


def lion_with_norm(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale,
                   norm_out):
    """:func:`lion` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    args = kernel_args.lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize,
                            grad_scale)
    norm_out[0] = _lion_norm(param.size, *args, REDUCTION_CHUNK)


def lamb_with_norm(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps,
                   weight_decay, maximize, bias_correction1, bias_correction2, grad_scale,
                   norm_out):
    """:func:`lamb` and ``norm_out[0] = sum_of_squares(grad)``; not fused: the sum is a pass of its
    own before LAMB's two."""
    norm_out[0] = sum_of_squares(grad)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale)
