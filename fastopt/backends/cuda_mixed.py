"""The ``cuda`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba-cuda, grid-stride)."""

import numpy as np
from numba import cuda

from . import _bits, cuda_optim
from ._mixed_element import make_adam_element
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

_adam_element = make_adam_element(cuda.jit(device=True), _f32_from_bits, _bits_from_f32)


@cuda.jit
def _adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
          model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay,
          amsgrad, step_size, bias_correction2_sqrt, scale, stochastic, key):
    """The mixed-precision Adam step, one element per thread (see _mixed_element.adam_element)"""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < master.size:
        _adam_element(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt,
                      model, model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                      weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt, scale,
                      stochastic, key)
        i += stride


def _flat(a):
    return a if a.ndim == 1 else a.reshape(a.size)


def adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
         model_fmt, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled, step_size,
         bias_correction2_sqrt, grad_scale, stochastic, key):
    """Mixed-precision Adam/AdamW in place; formula in :func:`fastopt.backends.numpy_mixed.adam`."""
    if master.size == 0:
        return
    one, zero = np.float32(1), np.float32(0)
    decay, l2 = (one - lr * weight_decay, zero) if decoupled else (one, weight_decay)
    scale = -grad_scale if maximize else grad_scale
    launch(_adam, master.size, _flat(master), _flat(grad), grad_fmt, _flat(exp_avg),
           _flat(exp_avg_sq), _flat(max_exp_avg_sq), state_fmt, _flat(model), model_fmt, beta1,
           one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad, step_size,
           bias_correction2_sqrt, scale, stochastic, key)


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
