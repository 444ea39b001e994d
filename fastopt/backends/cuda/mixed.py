"""The ``cuda`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba-cuda, grid-stride).

Signatures as in :mod:`fastopt.backends.numpy.mixed`; each kernel runs the mixed-precision array
step of :mod:`fastopt.backends.elements.mixed` around the float32 element of
:mod:`fastopt.backends.elements.optim`.
"""

import functools

import numpy as np
from numba import cuda

from fastopt.backends.elements import bits as _bits
from fastopt.backends.cuda import optim as cuda_optim
from fastopt.backends.elements.mixed import make_mixed_elements, mixed_step
from fastopt.backends.elements.args import flat
from fastopt.backends.elements.optim_legacy import make_elements
from fastopt.backends.cuda.optim import SIMULATOR, launch

if SIMULATOR:  # the simulator runs device functions as Python, without libdevice
    def _f32_from_bits(u):
        return np.array([u & 0xFFFFFFFF], np.uint32).view(np.float32)[0]

    def _bits_from_f32(x):
        return int(np.array([x], np.float32).view(np.uint32)[0])
else:
    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def _f32_from_bits(u):
        return libdevice.int_as_float(np.int32(u & 0xFFFFFFFF))

    @cuda.jit(device=True)
    def _bits_from_f32(x):
        return np.int64(libdevice.float_as_int(x)) & 0xFFFFFFFF

M = make_mixed_elements(cuda.jit(device=True), _f32_from_bits, _bits_from_f32,
                        make_elements(cuda.jit(device=True)))

# One grid-stride kernel per algorithm over M.<algo>_at; arguments as in _mixed_element (the
# element constants).


@cuda.jit
def _sgd(master, grad, grad_fmt, buf, state_fmt, model, model_fmt, lr, weight_decay, momentum,
         one_minus_dampening, nesterov, first_step, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.sgd_at decodes grad and state, runs the float32
    step d = s*g + wd*p; b = d (first step) or mu*b + (1-tau)*d; d = d + mu*b (Nesterov) or b; p
    -= lr*d on master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.sgd_at(i, master, grad, grad_fmt, buf, state_fmt, model, model_fmt, lr, weight_decay,
                 momentum, one_minus_dampening, nesterov, first_step, scale, stochastic, key)


@cuda.jit
def _adagrad(master, grad, grad_fmt, state_sum, state_fmt, model, model_fmt, weight_decay, eps,
             clr, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.adagrad_at decodes grad and state, runs the
    float32 step d = s*g + wd*p; v += d^2; p -= clr * d / (sqrt(v) + eps) on master, stores the
    state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adagrad_at(i, master, grad, grad_fmt, state_sum, state_fmt, model, model_fmt,
                     weight_decay, eps, clr, scale, stochastic, key)


@cuda.jit
def _rmsprop(master, grad, grad_fmt, square_avg, grad_avg, buf, state_fmt, model, model_fmt, lr,
             alpha, one_minus_alpha, eps, weight_decay, momentum, centered, scale, stochastic,
             key):
    """Mixed precision, a grid-stride loop: M.rmsprop_at decodes grad and state, runs the
    float32 step d = s*g + wd*p; v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v -
    gbar^2 or v) + eps; b = mu*b + d/den, p -= lr*b (mu > 0) or p -= lr*d/den on master, stores
    the state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.rmsprop_at(i, master, grad, grad_fmt, square_avg, grad_avg, buf, state_fmt, model,
                     model_fmt, lr, alpha, one_minus_alpha, eps, weight_decay, momentum,
                     centered, scale, stochastic, key)


@cuda.jit
def _adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
          model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
          amsgrad, step_size, bias_correction2_sqrt, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.adam_at decodes grad and state, runs the float32
    step p *= decay (AdamW) or d = s*g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v +
    (1-b2)*d^2; vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) +
    eps) on master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt,
                  model, model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                  weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt, scale,
                  stochastic, key)


@cuda.jit
def _adamax(master, grad, grad_fmt, exp_avg, exp_inf, state_fmt, model, model_fmt, beta1,
            one_minus_beta1, beta2, eps, weight_decay, clr, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.adamax_at decodes grad and state, runs the float32
    step d = s*g + wd*p; m = b1*m + (1-b1)*d; u = max(b2*u, |d| + eps); p -= clr * m / u on
    master, stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adamax_at(i, master, grad, grad_fmt, exp_avg, exp_inf, state_fmt, model, model_fmt,
                    beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale, stochastic, key)


@cuda.jit
def _nadam(master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt, beta1,
           one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, grad_coef,
           exp_avg_coef, bias_correction2, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.nadam_at decodes grad and state, runs the float32
    step p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    den = sqrt(v / (1-b2^t)) + eps; p -= grad_coef * d / den + exp_avg_coef * m / den on master,
    stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.nadam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                   beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                   grad_coef, exp_avg_coef, bias_correction2, scale, stochastic, key)


@cuda.jit
def _radam(master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt, beta1,
           one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, rectify, step_size,
           bias_correction2_sqrt, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.radam_at decodes grad and state, runs the float32
    step p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; p
    -= step_size * m * sqrt(1-b2^t) / (sqrt(v) + eps) (rectified) or step_size * m on master,
    stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.radam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                   beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                   rectify, step_size, bias_correction2_sqrt, scale, stochastic, key)


@cuda.jit
def _adadelta(master, grad, grad_fmt, square_avg, acc_delta, state_fmt, model, model_fmt, lr, rho,
              one_minus_rho, eps, weight_decay, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.adadelta_at decodes grad and state, runs the
    float32 step d = s*g + wd*p; v = rho*v + (1-rho)*d^2; delta = sqrt(a + eps) / sqrt(v + eps)
    * d; a = rho*a + (1-rho)*delta^2; p -= lr * delta on master, stores the state in state_fmt
    and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adadelta_at(i, master, grad, grad_fmt, square_avg, acc_delta, state_fmt, model,
                      model_fmt, lr, rho, one_minus_rho, eps, weight_decay, scale, stochastic, key)


@cuda.jit
def _lion(master, grad, grad_fmt, exp_avg, state_fmt, model, model_fmt, lr, beta1,
          one_minus_beta1, beta2, one_minus_beta2, decay, scale, stochastic, key):
    """Mixed precision, a grid-stride loop: M.lion_at decodes grad and state, runs the float32
    step c = b1*m + (1-b1)*d; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*d on master,
    stores the state in state_fmt and model = master rounded to model_fmt"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.lion_at(i, master, grad, grad_fmt, exp_avg, state_fmt, model, model_fmt, lr, beta1,
                  one_minus_beta1, beta2, one_minus_beta2, decay, scale, stochastic, key)


sgd = mixed_step("sgd", functools.partial(launch, _sgd))
adagrad = mixed_step("adagrad", functools.partial(launch, _adagrad))
rmsprop = mixed_step("rmsprop", functools.partial(launch, _rmsprop))
adam = mixed_step("adam", functools.partial(launch, _adam))
adamax = mixed_step("adamax", functools.partial(launch, _adamax))
nadam = mixed_step("nadam", functools.partial(launch, _nadam))
radam = mixed_step("radam", functools.partial(launch, _radam))
adadelta = mixed_step("adadelta", functools.partial(launch, _adadelta))
lion = mixed_step("lion", functools.partial(launch, _lion))


@cuda.jit
def _decode_to_f32(grad, grad_fmt, out):
    """out[i] = the float32 value of gradient bits grad[i] in format grad_fmt"""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < grad.size:
        out[i] = _f32_from_bits(_bits.decode(np.int64(grad[i]), grad_fmt))
        i += stride


_decoded = {}


def sum_of_squares(grad, grad_fmt):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic).

    16-bit gradients are decoded into a cached float32 buffer first: one extra pass over the
    gradient, which a fused decoding reduction would save."""
    if grad_fmt == _bits.FLOAT32:
        return cuda_optim.sum_of_squares(grad.view(np.float32))
    if grad.size not in _decoded:
        _decoded.clear()
        _decoded[grad.size] = cuda.device_array(grad.size, np.float32)
    out = _decoded[grad.size]
    launch(_decode_to_f32, grad.size, flat(grad), grad_fmt, out)
    return cuda_optim.sum_of_squares(out)
