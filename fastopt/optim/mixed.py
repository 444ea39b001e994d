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

import numpy as np

from fastopt.optim import algorithms as alg
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


def _step(algorithm, master, grad, model, states, step, hyper, fresh=False, host=None):
    """Checks everything, then runs one mixed-precision step of ``algorithm``; returns the host
    state after it (``{}`` for most). ``states`` follows ``algorithm.state``."""
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
           algorithm.scalars(checked, step, fresh, **host), grad_scale,
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


def _documented(name):
    def decorate(function):
        function.__doc__ += _NOTE.format(name)
        return function
    return decorate


@_documented("sgd")
def sgd(master, grad, model, momentum_buffer=None, *, step, lr=1e-3, momentum=0.0, dampening=0.0,
        weight_decay=0.0, nesterov=False, maximize=False, rounding="nearest", seed=0,
        grad_scale=1.0, backend=None):
    """One mixed-precision SGD step; ``momentum_buffer`` is needed when ``momentum != 0`` and is
    set to the gradient at ``step == 1``."""
    _step(alg.SGD, master, grad, model, (momentum_buffer,), step, locals(), fresh=step == 1)


@_documented("adagrad")
def adagrad(master, grad, state_sum, model, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
            initial_accumulator_value=0.0, eps=1e-10, maximize=False, rounding="nearest", seed=0,
            grad_scale=1.0, backend=None):
    """One mixed-precision Adagrad step; ``state_sum`` starts at ``initial_accumulator_value``
    (see :func:`state_fill` for its bfloat16 bits)."""
    _step(alg.ADAGRAD, master, grad, model, (state_sum,), step, locals())


@_documented("rmsprop")
def rmsprop(master, grad, square_avg, model, grad_avg=None, momentum_buffer=None, *, step,
            lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
            maximize=False, rounding="nearest", seed=0, grad_scale=1.0, backend=None):
    """One mixed-precision RMSprop step; ``grad_avg`` is needed when centered,
    ``momentum_buffer`` when ``momentum > 0``."""
    _step(alg.RMSPROP, master, grad, model, (square_avg, grad_avg, momentum_buffer), step,
          locals())


@_documented("adam")
def adam(master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq=None, *, step, lr=1e-3,
         betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
         rounding="nearest", seed=0, grad_scale=1.0, backend=None):
    """One mixed-precision Adam step (L2 weight decay); AMSGrad needs ``max_exp_avg_sq``."""
    _step(alg.ADAM, master, grad, model, (exp_avg, exp_avg_sq, max_exp_avg_sq), step, locals())


@_documented("adamw")
def adamw(master, grad, exp_avg, exp_avg_sq, model, max_exp_avg_sq=None, *, step, lr=1e-3,
          betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
          rounding="nearest", seed=0, grad_scale=1.0, backend=None):
    """One mixed-precision AdamW step (decoupled weight decay); AMSGrad needs
    ``max_exp_avg_sq``."""
    _step(alg.ADAMW, master, grad, model, (exp_avg, exp_avg_sq, max_exp_avg_sq), step, locals())


@_documented("adamax")
def adamax(master, grad, exp_avg, exp_inf, model, *, step, lr=2e-3, betas=(0.9, 0.999),
           eps=1e-8, weight_decay=0.0, maximize=False, rounding="nearest", seed=0,
           grad_scale=1.0, backend=None):
    """One mixed-precision Adamax step."""
    _step(alg.ADAMAX, master, grad, model, (exp_avg, exp_inf), step, locals())


@_documented("nadam")
def nadam(master, grad, exp_avg, exp_avg_sq, model, *, step, mu_product=None, lr=2e-3,
          betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
          decoupled_weight_decay=False, maximize=False, rounding="nearest", seed=0,
          grad_scale=1.0, backend=None):
    """One mixed-precision NAdam step; returns the new ``mu_product`` (pass it to the next call;
    ``None`` recomputes it from constant hyperparameters, as
    :func:`fastopt.functional.nadam`)."""
    hyper = dict(locals())
    checked = check_hyper(alg.NADAM, hyper)
    if mu_product is None:
        mu_product = alg.nadam_mu_product(checked["betas"][0], checked["momentum_decay"],
                                          check_step(step) - 1)
    mu_product = check_number("mu_product", mu_product, 0.0, 1.0)
    host = _step(alg.NADAM, master, grad, model, (exp_avg, exp_avg_sq), step, hyper,
                 host={"mu_product": mu_product})
    return host["mu_product"]


@_documented("radam")
def radam(master, grad, exp_avg, exp_avg_sq, model, *, step, lr=1e-3, betas=(0.9, 0.999),
          eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, maximize=False,
          rounding="nearest", seed=0, grad_scale=1.0, backend=None):
    """One mixed-precision RAdam step."""
    _step(alg.RADAM, master, grad, model, (exp_avg, exp_avg_sq), step, locals())


@_documented("adadelta")
def adadelta(master, grad, square_avg, acc_delta, model, *, step, lr=1.0, rho=0.9, eps=1e-6,
             weight_decay=0.0, maximize=False, rounding="nearest", seed=0, grad_scale=1.0,
             backend=None):
    """One mixed-precision Adadelta step."""
    _step(alg.ADADELTA, master, grad, model, (square_avg, acc_delta), step, locals())


@_documented("lion")
def lion(master, grad, exp_avg, model, *, step, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
         maximize=False, rounding="nearest", seed=0, grad_scale=1.0, backend=None):
    """One mixed-precision Lion step."""
    _step(alg.LION, master, grad, model, (exp_avg,), step, locals())
