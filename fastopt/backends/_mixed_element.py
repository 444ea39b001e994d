"""The element update of the mixed-precision Adam step, written once for numba CPU and CUDA.

:func:`make_adam_element` builds it for a target from that target's device-function decorator and
its two bit casts (float32 <-> its 32-bit pattern, as int64). Stored values are bit patterns in
integer arrays: gradients and optimizer state as float32 (``uint32`` views), float16 or bfloat16
(``uint16``), the model copy as float16 or bfloat16. The float32 master weights are a float32 array.
"""

import math

import numpy as np

from . import _bits


def make_adam_element(device_jit, f32_from_bits, bits_from_f32):
    decode, encode, random32 = _bits.decode, _bits.encode, _bits.random32

    def adam_element(i, master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt,
                     model, model_fmt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                     weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt, scale,
                     stochastic, key):
        """Adam in float32 on master weight i (formula: fastopt.reference.adam); the state is
        stored rounded to nearest in state_fmt, model[i] = the new master rounded to model_fmt
        (nearest even, or stochastically from random32(key, i))."""
        g = f32_from_bits(decode(np.int64(grad[i]), grad_fmt)) * scale
        x = master[i] * decay
        if weight_decay != 0:
            g += weight_decay * x
        m = beta1 * f32_from_bits(decode(np.int64(exp_avg[i]), state_fmt)) + one_minus_beta1 * g
        v = beta2 * f32_from_bits(decode(np.int64(exp_avg_sq[i]), state_fmt))
        v += one_minus_beta2 * g * g
        exp_avg[i] = encode(bits_from_f32(m), state_fmt, False, 0)
        exp_avg_sq[i] = encode(bits_from_f32(v), state_fmt, False, 0)
        if amsgrad:
            v = max(f32_from_bits(decode(np.int64(max_exp_avg_sq[i]), state_fmt)), v)
            max_exp_avg_sq[i] = encode(bits_from_f32(v), state_fmt, False, 0)
        p = x - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)
        master[i] = p
        rnd = random32(key, i) if stochastic else 0
        model[i] = encode(bits_from_f32(p), model_fmt, stochastic, rnd)

    return device_jit(adam_element)
