r"""Mixed-precision steps: float32 master weights, a float16/bfloat16 model copy, one pass.

Each step updates the float32 ``master`` weights and their state in place, exactly as the float32
step of :mod:`fastopt.functional` would, and in the same pass writes ``model``, the master weights
rounded to the model's format: to nearest, ties to even, or stochastically (``rounding=
"stochastic"``), with random bits from a counter-based stream keyed on ``(seed, step, index)``, so
runs are reproducible and restartable bit for bit, and identical on every backend.

Formats follow the dtypes: ``float16`` arrays are float16; ``uint16`` arrays hold bfloat16 bit
patterns (numpy has no bfloat16; see :func:`fastopt.lowp.to_bfloat16`); ``float32`` is float32.
The gradient may be float32, float16 or bfloat16; the state float32, or bfloat16 to halve its
traffic (stored rounded to nearest; the step itself computes in float32).
"""

import numpy as np

from . import _algorithms, lowp
from ._dispatch import choose, kernels
from ._validate import as_device_array, as_host_array, check_number, check_step
from ._validate import _check_no_overlap
from .backends._bits import BFLOAT16, FLOAT16, FLOAT32

_F32, _F16, _U16 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint16)
_MODEL_FORMATS = {_F16: FLOAT16, _U16: BFLOAT16}
_GRAD_FORMATS = {_F32: FLOAT32, _F16: FLOAT16, _U16: BFLOAT16}
_STATE_FORMATS = {_F32: FLOAT32, _U16: BFLOAT16}


def _as_bits(a, fmt):
    """The integer view the kernels read and write: float32 bits as uint32, 16-bit as uint16."""
    return a.view(np.uint32 if fmt == FLOAT32 else np.uint16)


def _checked(named, written, on_device, formats):
    """Zero-copy views, each checked for shape, layout, writability and an allowed dtype."""
    shape = None
    out = []
    for name, x in named.items():
        if x is None:
            out.append(None)
            continue
        a, readonly = as_device_array(name, x) if on_device else (as_host_array(name, x), None)
        if readonly is None:
            readonly = not a.flags.writeable
        dtype = np.dtype(a.dtype)
        allowed = formats[name]
        if dtype not in allowed:
            raise TypeError(f"{name}: expected dtype {' or '.join(map(str, allowed))}, got {dtype}")
        shape = tuple(a.shape) if shape is None else shape
        if tuple(a.shape) != shape:
            raise ValueError(f"{name}: shape {tuple(a.shape)} does not match master's shape {shape}")
        contiguous = a.size == 0 or (a.is_c_contiguous() if on_device else a.flags.c_contiguous)
        if not contiguous:
            raise ValueError(f"{name}: expected a C-contiguous array")
        if readonly and name in written:
            raise ValueError(f"{name}: array is read-only but the step writes it")
        out.append(a)
    _check_no_overlap([(n, a) for n, a in zip(named, out) if a is not None and a.size], written)
    return out


def _adam(algorithm, master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq, step, hyper,
          rounding, seed, grad_scale, backend):
    grad_scale = check_number("grad_scale", grad_scale, 0.0)
    hyper = algorithm.check(hyper)
    step = check_step(step)
    if rounding not in lowp.ROUNDINGS:
        raise ValueError(f"rounding: expected 'nearest' or 'stochastic', got {rounding!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    if hyper["amsgrad"] and max_exp_avg_sq is None:
        raise ValueError("max_exp_avg_sq: amsgrad needs a max_exp_avg_sq state array, got None")
    named = {"master": master, "grad": grad, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq,
             "max_exp_avg_sq": max_exp_avg_sq if hyper["amsgrad"] else None, "model": model}
    state_dtypes = tuple(_STATE_FORMATS)
    formats = {"master": (_F32,), "grad": tuple(_GRAD_FORMATS), "exp_avg": state_dtypes,
               "exp_avg_sq": state_dtypes, "max_exp_avg_sq": state_dtypes,
               "model": tuple(_MODEL_FORMATS)}
    written = {"master", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "model"}
    name = choose(named, backend)
    on_device = name == "cuda"
    master, grad, m, v, vmax, model = _checked(named, written, on_device, formats)
    state_fmt = _STATE_FORMATS[np.dtype(m.dtype)]
    for label, a in (("exp_avg_sq", v), ("max_exp_avg_sq", vmax)):
        if a is not None and _STATE_FORMATS[np.dtype(a.dtype)] != state_fmt:
            raise TypeError(f"{label}: dtype {a.dtype} does not match exp_avg's {m.dtype}; "
                            "the state arrays share one format")
    launch_adam(kernels(name, "mixed"), master, grad, m, v, m[:0] if vmax is None else vmax, model,
                algorithm.scalars(hyper, step, False), grad_scale, rounding == "stochastic",
                lowp.stream_key(seed, step))


def launch_adam(module, master, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, model, scalars,
                grad_scale, stochastic, key):
    """Runs the mixed-precision Adam kernel of ``module`` on checked arrays, with the formats
    their dtypes say and the scalars of ``fastopt._algorithms.ADAM(W).scalars``."""
    grad_fmt = _GRAD_FORMATS[np.dtype(grad.dtype)]
    state_fmt = _STATE_FORMATS[np.dtype(exp_avg.dtype)]
    model_fmt = _MODEL_FORMATS[np.dtype(model.dtype)]
    lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled, step_size, bc2 = scalars
    f32 = np.float32
    module.adam(master, _as_bits(grad, grad_fmt), grad_fmt, _as_bits(exp_avg, state_fmt),
                _as_bits(exp_avg_sq, state_fmt), _as_bits(max_exp_avg_sq, state_fmt), state_fmt,
                _as_bits(model, model_fmt), model_fmt, f32(lr), f32(beta1), f32(beta2), f32(eps),
                f32(weight_decay), amsgrad, maximize, decoupled, f32(step_size), f32(bc2),
                f32(grad_scale), stochastic, key)


def grad_sum_of_squares(module, grad):
    """The squared norm of a float32, float16 or bfloat16 (uint16) gradient."""
    fmt = _GRAD_FORMATS[np.dtype(grad.dtype)]
    return module.sum_of_squares(_as_bits(grad, fmt), fmt)


def adam(master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq=None, *, step, lr=1e-3,
         betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
         rounding="nearest", seed=0, grad_scale=1.0, backend=None):
    r"""One mixed-precision Adam step: :func:`fastopt.functional.adam` on the float32 ``master``
    weights, then ``model`` :math:`\leftarrow` round(master) in the same pass."""
    _adam(_algorithms.ADAM, master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq, step,
          dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
               maximize=maximize), rounding, seed, grad_scale, backend)


def adamw(master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq=None, *, step, lr=1e-3,
          betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
          rounding="nearest", seed=0, grad_scale=1.0, backend=None):
    r"""One mixed-precision AdamW step: :func:`fastopt.functional.adamw` on the float32 ``master``
    weights, then ``model`` :math:`\leftarrow` round(master) in the same pass."""
    _adam(_algorithms.ADAMW, master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq, step,
          dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
               maximize=maximize), rounding, seed, grad_scale, backend)
