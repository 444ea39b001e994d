"""The element updates of the mixed-precision steps, written once for numba CPU and CUDA.

No optimizer math here: :func:`make_mixed_elements` wraps the float32 elements of
:mod:`fastopt.backends.elements.optim` (``E.adam``, ...), which take and return values. The
mixed-precision array step ``<algo>_at(i, ...)`` decodes element ``i`` of the gradient and of the
state it uses into float32, runs the element, stores the new state rounded to nearest in its format,
the new master weight, and the model copy rounded to the model's format (nearest even, or
stochastically from ``random32(key, i)``). A state array the mode does not use is not touched.

Stored values are bit patterns in integer arrays (:mod:`fastopt.backends.elements.bits`): gradients and
state as float32 (``uint32`` views), float16 or bfloat16 (``uint16``), the model copy as float16 or
bfloat16. The float32 master weights are a float32 array. Argument order: that of the mixed kernels
(:mod:`fastopt.backends.numpy.mixed`) with the element's constants (:data:`CONSTANTS`) in place of
the contract's scalars.
"""

import types

import numpy as np

from fastopt.optim.algorithms import ALGORITHMS
from fastopt.backends.elements import bits as _bits
from fastopt.backends.elements.args import flat
from fastopt.backends.numpy.mixed import split_args

_one, _zero = np.float32(1), np.float32(0)


def _scale(grad_scale, maximize):
    return -grad_scale if maximize else grad_scale  # -(g*s) == g*(-s) exactly


def _decay_and_l2(lr, weight_decay, decoupled):
    # Decoupled decay scales p by (1 - lr*wd) and adds no L2 term; L2 scales by 1 and adds wd*p.
    return (_one - lr * weight_decay, _zero) if decoupled else (_one, weight_decay)


def _sgd(lr, weight_decay, momentum, dampening, nesterov, maximize, first_step, grad_scale):
    return (lr, weight_decay, momentum, _one - dampening, nesterov, first_step,
            _scale(grad_scale, maximize))


def _adagrad(weight_decay, eps, maximize, clr, grad_scale):
    return weight_decay, eps, clr, _scale(grad_scale, maximize)


def _rmsprop(lr, alpha, eps, weight_decay, momentum, centered, maximize, grad_scale):
    return (lr, alpha, _one - alpha, eps, weight_decay, momentum, centered,
            _scale(grad_scale, maximize))


def _adam(lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled, step_size,
          bias_correction2_sqrt, grad_scale):
    decay, l2 = _decay_and_l2(lr, weight_decay, decoupled)
    return (beta1, _one - beta1, beta2, _one - beta2, eps, l2, decay, amsgrad, step_size,
            bias_correction2_sqrt, _scale(grad_scale, maximize))


def _adamax(beta1, beta2, eps, weight_decay, maximize, clr, grad_scale):
    return beta1, _one - beta1, beta2, eps, weight_decay, clr, _scale(grad_scale, maximize)


def _nadam(lr, beta1, beta2, eps, weight_decay, maximize, decoupled, grad_coef, exp_avg_coef,
           bias_correction2, grad_scale):
    decay, l2 = _decay_and_l2(lr, weight_decay, decoupled)
    return (beta1, _one - beta1, beta2, _one - beta2, eps, l2, decay, grad_coef, exp_avg_coef,
            bias_correction2, _scale(grad_scale, maximize))


def _radam(lr, beta1, beta2, eps, weight_decay, maximize, decoupled, rectify, step_size,
           bias_correction2_sqrt, grad_scale):
    decay, l2 = _decay_and_l2(lr, weight_decay, decoupled)
    return (beta1, _one - beta1, beta2, _one - beta2, eps, l2, decay, rectify, step_size,
            bias_correction2_sqrt, _scale(grad_scale, maximize))


def _adadelta(lr, rho, eps, weight_decay, maximize, grad_scale):
    return lr, rho, _one - rho, eps, weight_decay, _scale(grad_scale, maximize)


def _lion(lr, beta1, beta2, weight_decay, maximize, grad_scale):
    return (lr, beta1, _one - beta1, beta2, _one - beta2, _one - lr * weight_decay,
            _scale(grad_scale, maximize))


#: kernel name -> the element's constants from the kernel contract's scalars (hyperparameters and
#: host values as numpy.float32, flags as bool, then grad_scale), computed in float32 as the
#: reference computes them: ``1 - beta``, the decoupled decay ``1 - lr * wd``, the signed scale.
CONSTANTS = {"sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam,
             "adamax": _adamax, "nadam": _nadam, "radam": _radam, "adadelta": _adadelta,
             "lion": _lion}


def mixed_step(kernel, launch):
    """The backend step ``kernel`` (signature of :mod:`fastopt.backends.numpy.mixed`) of a numba
    backend: splits its arguments, computes the element constants on the host (:data:`CONSTANTS`)
    and runs ``launch(n, *args)``, the backend's loop over the ``n`` elements, with the arguments
    of the array step ``<kernel>_at`` after ``i`` (arrays as flat views). An empty ``master`` has
    nothing to update."""
    constants = CONSTANTS[kernel]
    algorithm = ALGORITHMS[kernel]

    def step(master, grad, grad_fmt, *args):
        if master.size == 0:
            return
        states, state_fmt, model, model_fmt, scalars, stochastic, key = split_args(algorithm, args)
        launch(master.size, flat(master), flat(grad), grad_fmt, *map(flat, states), state_fmt,
               flat(model), model_fmt, *constants(*scalars), stochastic, key)

    step.__name__ = step.__qualname__ = kernel
    step.__doc__ = (f"Mixed-precision {kernel} in place; formula in "
                    f":func:`fastopt.backends.numpy.mixed.{kernel}`.")
    return step


def make_mixed_elements(device_jit, f32_from_bits, bits_from_f32, E):
    """The mixed-precision array steps, compiled with ``device_jit`` around the float32 elements
    ``E`` (:func:`fastopt.backends.elements.optim.make_elements` of the same target); the two bit
    casts are the target's (float32 <-> its 32-bit pattern as int64). Returned as attributes of a
    module object, as ``E``."""
    M = types.ModuleType("fastopt_mixed_elements")
    decode, encode, random32 = _bits.decode, _bits.encode, _bits.random32

    def load(a, i, fmt):
        """a[i] as float32, from its bits in format fmt"""
        return f32_from_bits(decode(np.int64(a[i]), fmt))

    def store(a, i, x, fmt):
        """a[i] = float32 x in format fmt, rounded to nearest"""
        a[i] = encode(bits_from_f32(x), fmt, False, 0)

    def finish(i, master, p, model, model_fmt, stochastic, key):
        """master[i] = p; model[i] = p rounded to model_fmt"""
        master[i] = p
        rnd = random32(key, i) if stochastic else 0
        model[i] = encode(bits_from_f32(p), model_fmt, stochastic, rnd)

    def sgd_at(i, master, grad, grad_fmt, buf, state_fmt, model, model_fmt, lr, weight_decay,
               momentum, one_minus_dampening, nesterov, first_step, scale, stochastic, key):
        """E.sgd on element i; buf is used only when momentum != 0"""
        g = M.load(grad, i, grad_fmt)
        b = M.load(buf, i, state_fmt) if momentum != 0 and not first_step else g
        p, b = E.sgd(master[i], g, b, lr, weight_decay, momentum, one_minus_dampening, nesterov,
                     first_step, scale)
        if momentum != 0:
            M.store(buf, i, b, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def adagrad_at(i, master, grad, grad_fmt, state_sum, state_fmt, model, model_fmt,
                   weight_decay, eps, clr, scale, stochastic, key):
        """E.adagrad on element i"""
        p, s = E.adagrad(master[i], M.load(grad, i, grad_fmt), M.load(state_sum, i, state_fmt),
                         weight_decay, eps, clr, scale)
        M.store(state_sum, i, s, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def rmsprop_at(i, master, grad, grad_fmt, square_avg, grad_avg, buf, state_fmt, model,
                   model_fmt, lr, alpha, one_minus_alpha, eps, weight_decay, momentum, centered,
                   scale, stochastic, key):
        """E.rmsprop on element i; grad_avg is used only when centered, buf when momentum > 0"""
        v = M.load(square_avg, i, state_fmt)
        a = M.load(grad_avg, i, state_fmt) if centered else v  # placeholders E.rmsprop ignores
        b = M.load(buf, i, state_fmt) if momentum > 0 else v
        p, v, a, b = E.rmsprop(master[i], M.load(grad, i, grad_fmt), v, a, b, lr, alpha,
                               one_minus_alpha, eps, weight_decay, momentum, centered, scale)
        M.store(square_avg, i, v, state_fmt)
        if centered:
            M.store(grad_avg, i, a, state_fmt)
        if momentum > 0:
            M.store(buf, i, b, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def adam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
                model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
                decay, amsgrad, step_size, bias_correction2_sqrt, scale, stochastic, key):
        """E.adam on element i; max_exp_avg_sq is used only with amsgrad"""
        v = M.load(exp_avg_sq, i, state_fmt)
        vmax = M.load(max_exp_avg_sq, i, state_fmt) if amsgrad else v  # a placeholder
        p, m, v, vmax = E.adam(master[i], M.load(grad, i, grad_fmt),
                               M.load(exp_avg, i, state_fmt), v, vmax, beta1, one_minus_beta1,
                               beta2, one_minus_beta2, eps, weight_decay, decay, amsgrad,
                               step_size, bias_correction2_sqrt, scale)
        M.store(exp_avg, i, m, state_fmt)
        M.store(exp_avg_sq, i, v, state_fmt)
        if amsgrad:
            M.store(max_exp_avg_sq, i, vmax, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def adamax_at(i, master, grad, grad_fmt, exp_avg, exp_inf, state_fmt, model, model_fmt,
                  beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale, stochastic, key):
        """E.adamax on element i"""
        p, m, u = E.adamax(master[i], M.load(grad, i, grad_fmt), M.load(exp_avg, i, state_fmt),
                           M.load(exp_inf, i, state_fmt), beta1, one_minus_beta1, beta2, eps,
                           weight_decay, clr, scale)
        M.store(exp_avg, i, m, state_fmt)
        M.store(exp_inf, i, u, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def nadam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                 beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                 grad_coef, exp_avg_coef, bias_correction2, scale, stochastic, key):
        """E.nadam on element i"""
        p, m, v = E.nadam(master[i], M.load(grad, i, grad_fmt), M.load(exp_avg, i, state_fmt),
                          M.load(exp_avg_sq, i, state_fmt), beta1, one_minus_beta1, beta2,
                          one_minus_beta2, eps, weight_decay, decay, grad_coef, exp_avg_coef,
                          bias_correction2, scale)
        M.store(exp_avg, i, m, state_fmt)
        M.store(exp_avg_sq, i, v, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def radam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                 beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                 rectify, step_size, bias_correction2_sqrt, scale, stochastic, key):
        """E.radam on element i"""
        p, m, v = E.radam(master[i], M.load(grad, i, grad_fmt), M.load(exp_avg, i, state_fmt),
                          M.load(exp_avg_sq, i, state_fmt), beta1, one_minus_beta1, beta2,
                          one_minus_beta2, eps, weight_decay, decay, rectify, step_size,
                          bias_correction2_sqrt, scale)
        M.store(exp_avg, i, m, state_fmt)
        M.store(exp_avg_sq, i, v, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def adadelta_at(i, master, grad, grad_fmt, square_avg, acc_delta, state_fmt, model,
                    model_fmt, lr, rho, one_minus_rho, eps, weight_decay, scale, stochastic,
                    key):
        """E.adadelta on element i"""
        p, v, a = E.adadelta(master[i], M.load(grad, i, grad_fmt),
                             M.load(square_avg, i, state_fmt), M.load(acc_delta, i, state_fmt),
                             lr, rho, one_minus_rho, eps, weight_decay, scale)
        M.store(square_avg, i, v, state_fmt)
        M.store(acc_delta, i, a, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    def lion_at(i, master, grad, grad_fmt, exp_avg, state_fmt, model, model_fmt, lr, beta1,
                one_minus_beta1, beta2, one_minus_beta2, decay, scale, stochastic, key):
        """E.lion on element i"""
        p, m = E.lion(master[i], M.load(grad, i, grad_fmt), M.load(exp_avg, i, state_fmt), lr,
                      beta1, one_minus_beta1, beta2, one_minus_beta2, decay, scale)
        M.store(exp_avg, i, m, state_fmt)
        M.finish(i, master, p, model, model_fmt, stochastic, key)

    for f in (load, store, finish, sgd_at, adagrad_at, rmsprop_at, adam_at, adamax_at, nadam_at,
              radam_at, adadelta_at, lion_at):
        setattr(M, f.__name__, device_jit(f))
    return M
