"""The ``numpy`` backend's mixed-precision steps: the float32 reference, then rounding.

Stored values are bit patterns in integer arrays (``uint32`` views of float32, ``uint16`` float16 or
bfloat16), with format codes as in :mod:`fastopt.backends._bits`; the master weights are float32.
"""

import numpy as np

from .. import lowp, reference

_NAMES = {code: name for name, code in lowp.FORMATS.items()}


def _load(bits, fmt):
    if fmt == lowp.FORMATS["float32"]:
        return bits.view(np.float32)
    return lowp.from_bits(bits, _NAMES[fmt])


def _store(target, values, fmt, rounding="nearest", key=0):
    if fmt == lowp.FORMATS["float32"]:
        target[...] = np.asarray(values, np.float32).view(np.uint32)
    else:
        target[...] = lowp.round_bits(values, _NAMES[fmt], rounding, key)


def adam(master, grad, grad_fmt, exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt, model,
         model_fmt, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled, step_size,
         bias_correction2_sqrt, grad_scale, stochastic, key):
    r"""Mixed-precision Adam/AdamW: :func:`fastopt.reference.adam` in float32 on the master
    weights, with gradients and state decoded from their stored formats; then the new state is
    stored rounded to nearest, and the model copy as the new master weights rounded to
    ``model_fmt`` (nearest even, or stochastically from ``random32(key, i)``)."""
    g = _load(grad, grad_fmt)
    m, v, vmax = (_load(a, state_fmt) if a.size else a for a in (exp_avg, exp_avg_sq,
                                                                 max_exp_avg_sq))
    p, m, v, vmax = reference.adam(master, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay,
                                   amsgrad, maximize, decoupled, step_size,
                                   bias_correction2_sqrt, grad_scale)
    master[...] = p
    _store(exp_avg, m, state_fmt)
    _store(exp_avg_sq, v, state_fmt)
    if amsgrad:
        _store(max_exp_avg_sq, vmax, state_fmt)
    _store(model, p, model_fmt, "stochastic" if stochastic else "nearest", key)


def sum_of_squares(grad, grad_fmt):
    """:func:`fastopt.reference.sum_of_squares` of gradient bits stored in format ``grad_fmt``."""
    return reference.sum_of_squares(_load(grad, grad_fmt))
