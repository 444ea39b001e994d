"""The ``cuda`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba-cuda, grid-stride).

Signatures as in :mod:`fastopt.backends.numpy_mixed`; each kernel runs the mixed-precision array
step of :mod:`fastopt.backends._mixed_element` around the float32 element of
:mod:`fastopt.backends._optim_element`.
"""

import numpy as np
from numba import cuda

from .._algorithms import ALGORITHMS
from . import _bits, cuda_optim
from ._mixed_element import CONSTANTS, make_mixed_elements
from ._optim_element import make_elements
from .cuda_optim import SIMULATOR, launch

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
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.sgd_at(i, master, grad, grad_fmt, buf, state_fmt, model, model_fmt, lr, weight_decay,
                 momentum, one_minus_dampening, nesterov, first_step, scale, stochastic, key)


@cuda.jit
def _adagrad(master, grad, grad_fmt, state_sum, state_fmt, model, model_fmt, weight_decay, eps,
             clr, scale, stochastic, key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adagrad_at(i, master, grad, grad_fmt, state_sum, state_fmt, model, model_fmt,
                     weight_decay, eps, clr, scale, stochastic, key)


@cuda.jit
def _rmsprop(master, grad, grad_fmt, square_avg, grad_avg, buf, state_fmt, model, model_fmt, lr,
             alpha, one_minus_alpha, eps, weight_decay, momentum, centered, scale, stochastic,
             key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.rmsprop_at(i, master, grad, grad_fmt, square_avg, grad_avg, buf, state_fmt, model,
                     model_fmt, lr, alpha, one_minus_alpha, eps, weight_decay, momentum,
                     centered, scale, stochastic, key)


@cuda.jit
def _adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
          model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
          amsgrad, step_size, bias_correction2_sqrt, scale, stochastic, key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt,
                  model, model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                  weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt, scale,
                  stochastic, key)


@cuda.jit
def _adamax(master, grad, grad_fmt, exp_avg, exp_inf, state_fmt, model, model_fmt, beta1,
            one_minus_beta1, beta2, eps, weight_decay, clr, scale, stochastic, key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adamax_at(i, master, grad, grad_fmt, exp_avg, exp_inf, state_fmt, model, model_fmt,
                    beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale, stochastic, key)


@cuda.jit
def _nadam(master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt, beta1,
           one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, grad_coef,
           exp_avg_coef, bias_correction2, scale, stochastic, key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.nadam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                   beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                   grad_coef, exp_avg_coef, bias_correction2, scale, stochastic, key)


@cuda.jit
def _radam(master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt, beta1,
           one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, rectify, step_size,
           bias_correction2_sqrt, scale, stochastic, key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.radam_at(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, state_fmt, model, model_fmt,
                   beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
                   rectify, step_size, bias_correction2_sqrt, scale, stochastic, key)


@cuda.jit
def _adadelta(master, grad, grad_fmt, square_avg, acc_delta, state_fmt, model, model_fmt, lr, rho,
              one_minus_rho, eps, weight_decay, scale, stochastic, key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.adadelta_at(i, master, grad, grad_fmt, square_avg, acc_delta, state_fmt, model,
                      model_fmt, lr, rho, one_minus_rho, eps, weight_decay, scale, stochastic, key)


@cuda.jit
def _lion(master, grad, grad_fmt, exp_avg, state_fmt, model, model_fmt, lr, beta1,
          one_minus_beta1, beta2, one_minus_beta2, decay, scale, stochastic, key):
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        M.lion_at(i, master, grad, grad_fmt, exp_avg, state_fmt, model, model_fmt, lr, beta1,
                  one_minus_beta1, beta2, one_minus_beta2, decay, scale, stochastic, key)


def _flat(a):
    return a if a.ndim == 1 else a.reshape(a.size)


def _launcher(kernel, cuda_kernel):
    """The backend step ``kernel`` (signature of :mod:`fastopt.backends.numpy_mixed`): the
    element constants on the host, then one launch over flat views."""
    constants = CONSTANTS[kernel]
    count = len(ALGORITHMS[kernel].state)

    def step(master, grad, grad_fmt, *args):
        if master.size == 0:
            return
        states, (state_fmt, model, model_fmt) = args[:count], args[count:count + 3]
        scalars, (stochastic, key) = args[count + 3:-2], args[-2:]
        launch(cuda_kernel, master.size, _flat(master), _flat(grad), grad_fmt,
               *(_flat(s) for s in states), state_fmt, _flat(model), model_fmt,
               *constants(*scalars), stochastic, key)

    step.__name__ = step.__qualname__ = kernel
    step.__doc__ = (f"Mixed-precision {kernel} in place; formula in "
                    f":func:`fastopt.backends.numpy_mixed.{kernel}`.")
    return step


sgd = _launcher("sgd", _sgd)
adagrad = _launcher("adagrad", _adagrad)
rmsprop = _launcher("rmsprop", _rmsprop)
adam = _launcher("adam", _adam)
adamax = _launcher("adamax", _adamax)
nadam = _launcher("nadam", _nadam)
radam = _launcher("radam", _radam)
adadelta = _launcher("adadelta", _adadelta)
lion = _launcher("lion", _lion)


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
    launch(_decode_to_f32, grad.size, _flat(grad), grad_fmt, out)
    return cuda_optim.sum_of_squares(out)
