r"""Mixed-precision steps: float32 master weights, a float16/bfloat16 model copy, one pass.

Each step updates the float32 ``master`` weights and their state in place, exactly as the float32
step of :mod:`fastopt.functional` of the same name would, and in the same pass writes
``model``, the master weights rounded to the model's format: to nearest, ties to even, or
stochastically (``rounding="stochastic"``), with random bits from a counter-based stream keyed on
``(seed, step, index)``, so runs are reproducible and restartable bit for bit, and identical on
every backend.

Formats follow the dtypes: ``float16`` arrays are float16; ``uint16`` arrays hold bfloat16 bit
patterns (numpy has no bfloat16; see :func:`fastopt.lowp.to_bfloat16`); ``float32`` is
float32. The gradient may be float32, float16 or bfloat16; the state float32, or bfloat16 to halve
its traffic (stored rounded to nearest; the step itself computes in float32). All state arrays of
a step share one format.

Every optimizer of :mod:`fastopt.functional` but LAMB has its step here, with the same
hyperparameters and defaults plus ``rounding`` and ``seed``. Arguments: ``master``, ``grad``, the
state arrays the step always needs, ``model``, then the state arrays that only some modes need
(SGD's ``momentum_buffer``, RMSprop's ``grad_avg`` and ``momentum_buffer``, Adam's
``max_exp_avg_sq``), e.g. ``adam(master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq=None)``.

LAMB has no mixed-precision step: its second pass recomputes the update from the moments the
first pass stored, which in bfloat16 would no longer be the float32 step's.
"""

from inspect import Parameter, Signature

import numpy as np

from fastopt.optim import _api, algorithms as alg
from fastopt._core import memory as _memory, lowp
from fastopt._core.dispatch import choose, kernels
from fastopt.optim._step import check_hyper
from fastopt._core.validate import _check_no_overlap, as_device_array, as_host_array, check_number
from fastopt._core.validate import check_step
from fastopt.backends.elements.bits import BFLOAT16, FLOAT16, FLOAT32

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
            raise ValueError(f"{name}: shape {tuple(a.shape)} does not match master's shape "
                             f"{shape}")
        contiguous = a.size == 0 or (a.is_c_contiguous() if on_device else a.flags.c_contiguous)
        if not contiguous:
            raise ValueError(f"{name}: expected a C-contiguous array")
        if readonly and name in written:
            raise ValueError(f"{name}: array is read-only but the step writes it")
        out.append(a)
    _check_no_overlap([(n, a) for n, a in zip(named, out) if a is not None and a.size], written)
    return out


def check_options(rounding, seed):
    """Validated ``rounding`` and ``seed`` (an int)."""
    if rounding not in lowp.ROUNDINGS:
        raise ValueError(f"rounding: expected 'nearest' or 'stochastic', got {rounding!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    return rounding, int(seed)


def state_fill(value, dtype):
    """The stored value of a new state array of ``dtype`` (float32, or uint16 bfloat16 bits)
    starting at ``value``."""
    if np.dtype(dtype) == _U16:
        return int(lowp.to_bfloat16(np.float32(value)))
    return value


def _step(algorithm, master, grad, model, states, step, hyper, host=None):
    """Checks everything, then runs one mixed-precision step of ``algorithm``; returns the host
    state after it (``{}`` for most). ``states`` follows ``algorithm.state``; ``hyper`` also holds
    ``rounding``, ``seed``, ``grad_scale`` and ``backend``."""
    grad_scale = check_number("grad_scale", hyper["grad_scale"], 0.0)
    rounding, seed = check_options(hyper["rounding"], hyper["seed"])
    checked = check_hyper(algorithm, hyper)
    step = check_step(step)
    named = {"master": master, "grad": grad}
    written = {"master", "model"}
    for name, used, array in zip(algorithm.state, algorithm.uses(checked), states):
        if used:
            if array is None:
                raise ValueError(f"{name}: this {algorithm.name} configuration needs a {name} "
                                 "state array, got None")
            written.add(name)
        named[name] = array if used else None
    named["model"] = model
    formats = {name: tuple(_STATE_FORMATS) for name in algorithm.state}
    formats.update(master=(_F32,), grad=tuple(_GRAD_FORMATS), model=tuple(_MODEL_FORMATS))
    backend = choose(named, hyper["backend"])
    on_device = backend == "cuda"
    master, grad, *states, model = _checked(named, written, on_device, formats)
    used = [(name, a) for name, a in zip(algorithm.state, states) if a is not None]
    state_dtype = np.dtype(used[0][1].dtype) if used else _F32
    for name, a in used[1:]:
        if np.dtype(a.dtype) != state_dtype:
            raise TypeError(f"{name}: dtype {a.dtype} does not match {used[0][0]}'s "
                            f"{state_dtype}; the state arrays share one format")
    states = [_memory.empty(on_device, state_dtype) if a is None else a for a in states]
    host = host or {}
    launch(kernels(backend, "mixed"), algorithm, master, grad, states, model,
           algorithm.scalars(checked, step, step == 1, **host), grad_scale,
           rounding == "stochastic", lowp.stream_key(seed, step))
    return algorithm.advance(checked, step, host)


def launch(module, algorithm, master, grad, states, model, scalars, grad_scale, stochastic, key):
    """Runs the mixed-precision kernel of ``algorithm`` in ``module`` on checked arrays, with the
    formats their dtypes say, ``algorithm.scalars`` (floats cast to float32) and ``grad_scale``.
    ``states`` follows ``algorithm.state``, one dtype, empty where the mode does not use one."""
    grad_fmt = _GRAD_FORMATS[np.dtype(grad.dtype)]
    state_fmt = _STATE_FORMATS[np.dtype(states[0].dtype)]
    model_fmt = _MODEL_FORMATS[np.dtype(model.dtype)]
    cast = [s if type(s) is bool else np.float32(s) for s in scalars]
    getattr(module, algorithm.kernel)(
        master, _as_bits(grad, grad_fmt), grad_fmt, *(_as_bits(s, state_fmt) for s in states),
        state_fmt, _as_bits(model, model_fmt), model_fmt, *cast, np.float32(grad_scale),
        bool(stochastic), key)


def grad_sum_of_squares(module, grad):
    """The squared norm of a float32, float16 or bfloat16 (uint16) gradient."""
    fmt = _GRAD_FORMATS[np.dtype(grad.dtype)]
    return module.sum_of_squares(_as_bits(grad, fmt), fmt)


_NOTE = (r"""

    The float32 ``master`` weights and the state are updated as by
    :func:`fastopt.functional.{0}` (formula there), then ``model`` :math:`\leftarrow`
    round(master), in the same pass.
    ``rounding``: ``"nearest"`` (ties to even) or ``"stochastic"``, from the random stream of
    ``(seed, step)``.
    """)


def _mixed_step(algorithm):
    """The mixed-precision step of ``algorithm``: ``name(master, grad, states..., model, optional
    states..., *, step, ...)`` (see :mod:`fastopt.optim._api`)."""
    required, optional = _api.state_args(algorithm)
    signature = Signature([*_api.arrays(("master", "grad", *required, "model"), optional),
                           *_api.step_keywords(algorithm),
                           Parameter("rounding", _api.KEYWORD, default="nearest"),
                           Parameter("seed", _api.KEYWORD, default=0),
                           Parameter("grad_scale", _api.KEYWORD, default=1.0),
                           Parameter("backend", _api.KEYWORD, default=None)])
    defaults = _api.keyword_defaults(signature)
    n_keywords = len(defaults)
    low, high = len(required) + 1, len(required) + len(optional) + 1
    missing = (None,) * high
    summary = algorithm.mixed_doc or f"One mixed-precision {_api.class_name(algorithm)} step."

    def step_function(master, grad, *arrays, step, **keywords):
        hyper = {**defaults, **keywords}
        # An unknown keyword makes hyper longer; arrays passed by keyword are unknown here too.
        if len(hyper) != n_keywords or not low <= len(arrays) <= high:
            keywords["step"] = step
            (master, grad, *arrays), hyper = _api.bind(
                algorithm.name, signature, (master, grad, *arrays), keywords)
        elif len(arrays) < high:
            arrays += missing[len(arrays):]
        model = arrays[low - 1]
        states = (*arrays[:low - 1], *arrays[low:])
        if algorithm.host_state:
            host = _api.host_values(algorithm, hyper, step)
            return _api.host_result(_step(algorithm, master, grad, model, states, step, hyper,
                                          host=host))
        _step(algorithm, master, grad, model, states, step, hyper)

    doc = _api.text(summary) + _NOTE.format(algorithm.name)
    return _api.named(step_function, algorithm.name, signature, doc)


for _algorithm in alg.ALGORITHMS.values():
    if _algorithm.mixed:
        globals()[_algorithm.name] = _mixed_step(_algorithm)
del _algorithm
