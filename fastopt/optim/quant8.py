r"""Optimizer steps with 8-bit blockwise state (Dettmers et al. 2022, bitsandbytes' 8-bit
optimizers), for float32 parameters.

Each state array of ``n`` values is kept as ``n`` uint8 codes (``state[name]``) and one float32
absmax per block of 256 elements (``state[name + "_absmax"]``): 1 byte + 4/256 per value, so
Adam's state is 2.03 bytes per parameter against 8 in float32. A step decodes the state block
by block, runs the float32 step on it and encodes it again, in one pass over memory; the
quantization (the dynamic tree maps, signed for moments and momenta, unsigned for second moments
and sums; nearest code per block-normalized value) is defined in
:mod:`fastopt.backends.numpy.quant8`, and every backend gives its bits.

Algorithms: ``adam``, ``adamw``, ``sgd`` (with momentum), ``rmsprop``, ``lion``, ``adagrad``.

.. code-block:: python

    from fastopt import quant8
    state = quant8.init("adam", w)                 # codes and absmax of every state array
    quant8.step("adam", w, grad, state, step=1, lr=1e-3)

The optimizer classes take ``state_dtype="int8"`` for the same steps (``fastopt.Adam(params,
state_dtype="int8")``); their state dicts and checkpoints hold the codes and the absmax arrays.
"""

import math

import numpy as np

from fastopt._core import memory as _memory
from fastopt._core.dispatch import choose, is_device_array, kernels
from fastopt._core.validate import as_device_array, as_host_array, check_disjoint
from fastopt.backends.numpy import quant8 as _reference
from fastopt.optim import algorithms as _algorithms
from fastopt.optim._step import check_hyper

#: Elements per block (one float32 absmax per block and state array).
BLOCK = _reference.BLOCK
#: The algorithms with 8-bit state.
ALGORITHMS = _reference.ALGORITHMS


def algorithm(name):
    """The table entry of ``name``; ``ValueError`` for an algorithm without 8-bit state."""
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm: 8-bit state is available for {', '.join(ALGORITHMS)}; "
                         f"got {name!r}")
    return _algorithms.ALGORITHMS[name]


def state_maps(entry):
    """The map names (``"signed"``/``"unsigned"``) of ``entry``'s state arrays, in order."""
    return _reference.STATE_MAPS[entry.kernel]


def bytes_per_parameter(name, **hyper):
    """Bytes of state per parameter of ``name``'s 8-bit step with ``hyper``: a byte and
    4/256 bytes (the absmax) per state array the step uses."""
    entry = algorithm(name)
    used = sum(map(bool, entry.uses(check_hyper(entry, {**entry.defaults, **hyper}))))
    return used * (1 + 4 / BLOCK)


_MAPS = {}


def map_arrays(kind, on_device):
    """``(map, lookup table)`` of the map ``kind`` as the kernels take them, on the host or the
    device (made once)."""
    key = (kind, on_device)
    if key not in _MAPS:
        _MAPS[key] = (_memory.from_host(on_device, _reference.MAPS[kind]),
                      _memory.from_host(on_device, _reference.LUTS[kind]))
    return _MAPS[key]


def new_state(entry, hyper, shape, on_device, uses=None):
    """Fresh state of ``entry`` for a parameter of ``shape``: ``{name: codes, name_absmax:
    absmax}`` for each state array that ``uses`` (or the validated ``hyper``) uses, holding the
    algorithm's initial value."""
    uses = tuple(entry.uses(hyper)) if uses is None else uses
    size = math.prod(shape)
    out = {}
    for name, used, kind in zip(entry.state, uses, state_maps(entry)):
        if used:
            fill = np.full(size, entry.initial_state(hyper, name), np.float32)
            codes, absmax = _reference.quantize(fill, _reference.MAPS[kind])
            out[name] = _memory.from_host(on_device, codes.reshape(shape))
            out[name + "_absmax"] = _memory.from_host(on_device, absmax)
    return out


def init(name, param, **hyper):
    """Fresh 8-bit state of algorithm ``name`` for ``param`` with hyperparameters ``hyper`` (the
    state arrays they use, e.g. ``max_exp_avg_sq`` with ``amsgrad=True``), on its side."""
    entry = algorithm(name)
    checked = check_hyper(entry, {**entry.defaults, **hyper})
    on_device = is_device_array(param)
    view = as_device_array("param", param)[0] if on_device else as_host_array("param", param)
    return new_state(entry, checked, tuple(view.shape), on_device)


def _view(name, x, on_device, dtype, shape, writes):
    a, readonly = as_device_array(name, x) if on_device else (as_host_array(name, x), None)
    if readonly is None:
        readonly = not a.flags.writeable
    if np.dtype(a.dtype) != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {np.dtype(a.dtype)}")
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(a.shape)}")
    if a.size and not (a.is_c_contiguous() if on_device else a.flags.c_contiguous):
        raise ValueError(f"{name}: expected a C-contiguous array")
    if readonly and writes:
        raise ValueError(f"{name}: array is read-only but the step writes it")
    return a


def checked_arrays(entry, param, grad, state, uses, on_device):
    """``(param, grad, codes, absmax, maps, luts)`` as the backend steps take them, after
    checking shapes, dtypes, layout, writability and overlaps; nothing is written."""
    p = _view("param", param, on_device, np.float32, np.shape(param), True)
    g = _view("grad", grad, on_device, np.float32, p.shape, False)
    codes, absmax, maps, luts, written = [], [], [], [], [("param", p)]
    for name, used, kind in zip(entry.state, uses, state_maps(entry)):
        table, lut = map_arrays(kind, on_device)
        maps.append(table)
        luts.append(lut)
        if not used:
            codes.append(_memory.empty(on_device, np.uint8))
            absmax.append(_memory.empty(on_device, np.float32))
            continue
        if state.get(name) is None or state.get(name + "_absmax") is None:
            raise ValueError(f"state: {entry.name} with these hyperparameters needs {name!r} and "
                             f"{name + '_absmax'!r} (quant8.init makes them)")
        c = _view(f"state[{name!r}]", state[name], on_device, np.uint8, p.shape, True)
        a = _view(f"state[{name + '_absmax'!r}]", state[name + "_absmax"], on_device,
                  np.float32, (_reference.blocks(p.size),), True)
        codes.append(c)
        absmax.append(a)
        written += [(f"state[{name!r}]", c), (f"state[{name + '_absmax'!r}]", a)]
    check_disjoint(written)
    check_disjoint([("grad", g), *written[:1]])
    return p, g, tuple(codes), tuple(absmax), tuple(maps), tuple(luts)


def step(name, param, grad, state, *, step, grad_scale=1.0, backend=None, **hyper):
    """One 8-bit step of algorithm ``name`` in place: ``param`` (float32) and the codes and absmax
    arrays of ``state`` (:func:`init`) are updated. ``step`` is the 1-based step count (bias
    corrections, SGD's first step, Adagrad's decay); the hyperparameters and their defaults are
    those of :mod:`fastopt.functional`'s step of the same name. Everything is checked before
    anything is written."""
    entry = algorithm(name)
    checked = check_hyper(entry, {**entry.defaults, **hyper})
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step: expected an int >= 1, got {step!r}")
    grad_scale = float(grad_scale)
    if not math.isfinite(grad_scale):
        raise ValueError(f"grad_scale: expected a finite number, got {grad_scale}")
    chosen = choose({"param": param, "grad": grad}, backend)
    uses = tuple(entry.uses(checked))
    arrays = checked_arrays(entry, param, grad, state, uses, chosen == "cuda")
    scalars = entry.scalars(checked, step, step == 1)
    getattr(kernels(chosen, "quant8"), entry.kernel)(*arrays, *scalars, grad_scale)


def _named(name):
    def named(param, grad, state, *, step, grad_scale=1.0, backend=None, **hyper):
        return globals()["step"](name, param, grad, state, step=step, grad_scale=grad_scale,
                                 backend=backend, **hyper)

    named.__name__ = named.__qualname__ = name
    named.__doc__ = (f"One 8-bit {name} step: :func:`step` with ``name={name!r}``; formula in "
                     f":func:`fastopt.functional.{name}`.")
    return named


for _name in ALGORITHMS:
    globals()[_name] = _named(_name)
del _name
