"""One validated optimizer step on one parameter array, shared by the functional API and classes."""

import functools
import operator
import struct
from itertools import compress

import numpy as np

from fastopt._core import memory as _memory
from fastopt._core.dispatch import choose, kernels, requested_by_environment
from fastopt._core.validate import CheckMemo, check_arrays

# Successful checks of a step's host arrays: a repeated call skips them (see CheckMemo).
_RESOLVED = CheckMemo()
# Validated hyperparameters by their raw values (with types: True, 1 and 1.0 are told apart).
_HYPER = {}
# The same, by the identities of the raw objects (see checked_step).
_BY_ID = {}
_HYPER_LIMIT = 256
#: Algorithm name -> ``hyper -> tuple of its values named in algorithm.defaults``.
_RAW_GETTERS = {}


def _key(algorithm, values):
    """A cache key of raw hyperparameter values with their types (True, 1 and 1.0 are told apart,
    also inside a tuple such as betas); raises ``TypeError`` for an unhashable value."""
    kinds = tuple(map(type, values))
    if tuple in kinds:
        kinds += tuple(tuple(map(type, v)) for v in values if type(v) is tuple)
    return (algorithm.name, values, kinds)


def checked_step(algorithm, hyper):
    """``(validated hyperparameters, which state arrays they use)`` of ``algorithm`` from ``hyper``
    (extra keys are ignored), shared by every call with the same raw values: callers must not
    modify the dict."""
    getter = _RAW_GETTERS.get(algorithm.name)
    if getter is None:
        getter = _RAW_GETTERS[algorithm.name] = operator.itemgetter(*algorithm.defaults)
    raw = getter(hyper)
    # First by the identity of the raw objects (a loop passing the same objects again): the entry
    # holds them, so an id in it cannot have been reused by another object.
    by_id = (algorithm.name, *map(id, raw))
    hit = _BY_ID.get(by_id)
    if hit is not None:
        return hit[1]
    try:
        key = _key(algorithm, raw)
        checked = _HYPER.get(key)
    except TypeError:  # an unhashable value (a list of betas): checked every time
        key = checked = None
    if checked is None:
        valid = algorithm.check(dict(zip(algorithm.defaults, raw)))
        checked = (valid, tuple(algorithm.uses(valid)))
        if key is not None:
            if len(_HYPER) >= _HYPER_LIMIT:
                _HYPER.clear()
            _HYPER[key] = checked
    if all(map(_immutable, raw)):  # a list could change its values under the same id
        if len(_BY_ID) >= _HYPER_LIMIT:
            _BY_ID.clear()
        _BY_ID[by_id] = (raw, checked)
    return checked


def _immutable(value):
    if type(value) is tuple:
        return all(map(_immutable, value))
    return isinstance(value, (int, float, str, type(None), np.generic))


def check_hyper(algorithm, hyper):
    """Validated hyperparameters of ``algorithm`` from ``hyper`` (extra keys are ignored).

    A successful check is remembered by the values' types and values, so a loop stepping with the
    same hyperparameters validates them once. Unhashable values (a list of betas) are checked
    every time."""
    return dict(checked_step(algorithm, hyper)[0])


def resolve(algorithm, hyper, param, grad, states, backend, uses=None):
    """Checks one step's arrays; returns ``(kernel module, arrays, on_device)``, ``arrays`` a
    tuple in kernel order.

    ``states`` follows ``algorithm.state``; an entry the mode does not use may be ``None`` and is
    replaced by an empty array. ``uses`` is ``algorithm.uses(hyper)`` when the caller has it.
    Nothing is written.
    """
    if param is None or grad is None:
        raise TypeError(f"{'param' if param is None else 'grad'}: expected a float32 or float64 "
                        "array, got None")
    if uses is None:
        uses = tuple(algorithm.uses(hyper))
    # The arrays the step uses (the context says which): a repeated call matches its memo entry.
    given = (param, grad, *compress(states, uses))
    context = (algorithm.kernel, uses, backend or requested_by_environment())
    seen = _RESOLVED.seen(context, given)
    if seen is not None:
        module, in_kernel_order = seen
        return module, in_kernel_order(given), False
    named = {"param": param, "grad": grad}
    written = {"param"}
    for name, used, array in zip(algorithm.state, uses, states):
        if used:
            if array is None:
                raise ValueError(f"{name}: this {algorithm.name} configuration needs a {name} "
                                 "state array, got None")
            written.add(name)
        named[name] = array if used else None
    name = choose(named, backend)
    module = kernels(name)
    on_device = name == "cuda"
    checked = tuple(a for a in check_arrays(named, written, on_device) if a is not None)
    in_kernel_order = _kernel_order(uses, on_device, checked[0].dtype)
    if not on_device:
        _RESOLVED.remember(context, given, (module, in_kernel_order))
    return module, in_kernel_order(checked), on_device


def _kernel_order(uses, on_device, dtype):
    """``(param, grad, used states...) -> (param, grad, every state)``, an empty array standing
    for each unused one."""
    if all(uses):
        return tuple
    empty = _memory.empty(on_device, dtype)
    picks = iter(range(2, 2 + sum(uses)))
    # Index 2 + sum(uses) is the empty array, appended after the given ones.
    getter = operator.itemgetter(0, 1, *[next(picks) if used else 2 + sum(uses)
                                         for used in uses])
    return lambda given: getter((*given, empty))


def _cast(arrays, scalars, grad_scale):
    """The kernel's scalars in the arrays' dtype (flags stay ``bool``), ``grad_scale`` last, for a
    module that does not round Python floats itself (``TAKES_PYTHON_FLOATS``)."""
    # One conversion of all of them: numpy scalars rounded exactly as dtype.type(x) rounds.
    cast = list(np.array([*scalars, grad_scale], arrays[0].dtype))
    for i, s in enumerate(scalars):
        if type(s) is bool:
            cast[i] = s
    return cast


def launch(module, algorithm, arrays, scalars, grad_scale=1.0):
    """Runs the kernel with scalars in the arrays' dtype (flags stay ``bool``): one compiled
    kernel per dtype, whatever the values. ``grad_scale`` multiplies the gradient in the kernel."""
    if module.TAKES_PYTHON_FLOATS:
        getattr(module, algorithm.kernel)(*arrays, *scalars, grad_scale)
    else:
        getattr(module, algorithm.kernel)(*arrays, *_cast(arrays, scalars, grad_scale))


def bound_launch(module, algorithm, arrays):
    """``run(*scalars, grad_scale)``: :func:`launch` of ``algorithm`` on ``arrays``, those given
    here for every call, with what does not change between calls done once: the launcher's own
    ``bind`` when it has one (see :mod:`fastopt.backends`). The arrays should not be changed in
    place afterwards (a new shape or dtype): give views that no one else holds."""
    launcher = getattr(module, algorithm.kernel)
    bind = getattr(launcher, "bind", None)
    if bind is not None:
        return bind(*arrays)
    if module.TAKES_PYTHON_FLOATS:
        return functools.partial(launcher, *arrays)
    return lambda *scalars: launcher(*arrays, *_cast(arrays, scalars[:-1], scalars[-1]))


def launch_with_norm(module, algorithm, arrays, scalars, grad_scale, norm_out):
    """:func:`launch`, also setting ``norm_out[0]`` to ``module.sum_of_squares(arrays[1])``, bit
    for bit: the squared norm of the gradient as given (before ``grad_scale``), computed in the
    update's pass over memory (LAMB: in a pass of its own before its two).

    ``norm_out`` is a float64 array of at least one element on the arrays' side: a numpy array on
    the host, a device array on ``cuda`` (written by a kernel: nothing is copied back and nothing
    waits). For several parameters, give each its own element (``out[k:k + 1]``) and add the
    elements in parameter order, as ``sum(module.sum_of_squares(g) for g in grads)`` does."""
    kernel = getattr(module, algorithm.kernel + "_with_norm")
    if module.TAKES_PYTHON_FLOATS:
        kernel(*arrays, *scalars, grad_scale, norm_out)
    else:
        kernel(*arrays, *_cast(arrays, scalars, grad_scale), norm_out)


#: Gradient dtype -> (the bits of its largest magnitude as bytes, those bytes as a float, the
#: shift of the bits into those bytes): bfloat16 (uint16 bits) is the top half of a float32.
_MAGNITUDE_DECODING = {"float32": (struct.Struct("<I").pack, struct.Struct("<f").unpack, 0),
                       "float64": (struct.Struct("<Q").pack, struct.Struct("<d").unpack, 0),
                       "float16": (struct.Struct("<H").pack, struct.Struct("<e").unpack, 0),
                       "uint16": (struct.Struct("<I").pack, struct.Struct("<f").unpack, 16)}


def magnitude(bits, dtype):
    """The float of the magnitude bits ``bits`` (a backend's ``max_magnitude_bits``) of a gradient
    of ``dtype`` (uint16: bfloat16 bits); NaN bits give ``nan``."""
    pack, unpack, shift = _MAGNITUDE_DECODING[np.dtype(dtype).name]
    return unpack(pack(bits << shift))[0]


def bind_magnitude_bits(module, grad):
    """``bits()``: ``module.max_magnitude_bits(grad)``, with what can be found once (the C
    pointer, the kernel of its size) found now."""
    bind = getattr(module.max_magnitude_bits, "bind", None)
    return bind(grad) if bind is not None else functools.partial(module.max_magnitude_bits, grad)


def bind_max_abs(module, grad, bits=None):
    """``check()``: :func:`max_abs` of ``grad`` in ``module``, from ``bits`` (its
    :func:`bind_magnitude_bits`) or bound now."""
    if bits is None:
        bits = bind_magnitude_bits(module, grad)
    pack, unpack, shift = _MAGNITUDE_DECODING[np.dtype(grad.dtype).name]
    return lambda: unpack(pack(bits() << shift))[0]


def max_abs(module, grad):
    """The largest magnitude of a checked gradient in the backend ``module``, exactly as
    :func:`fastopt.optim.reference.max_abs`: one read of the gradient at memory speed, an integer
    maximum over its bits (see the backends' ``max_magnitude_bits``)."""
    return magnitude(module.max_magnitude_bits(grad), grad.dtype)
