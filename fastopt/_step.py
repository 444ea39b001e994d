"""One validated optimizer step on one parameter array, shared by the functional API and classes."""

import os

from . import _memory
from ._dispatch import choose, kernels
from ._validate import CheckMemo, check_arrays

# Successful checks of a step's host arrays: a repeated call skips them (see CheckMemo).
_RESOLVED = CheckMemo()
# Validated hyperparameters by their raw values (with types: True, 1 and 1.0 are told apart).
_HYPER = {}
_HYPER_LIMIT = 256


def _typed(value):
    kind = type(value)
    return (kind, value) if kind is not tuple else (kind, tuple(map(type, value)), value)


def check_hyper(algorithm, hyper):
    """Validated hyperparameters of ``algorithm`` from ``hyper`` (extra keys are ignored).

    A successful check is remembered by the values' types and values, so a loop stepping with the
    same hyperparameters validates them once. Unhashable values (a list of betas) are checked
    every time."""
    raw = {name: hyper[name] for name in algorithm.defaults}
    try:
        key = (algorithm.name, *map(_typed, raw.values()))
        checked = _HYPER.get(key)
    except TypeError:
        return algorithm.check(raw)
    if checked is None:
        checked = algorithm.check(raw)
        if len(_HYPER) >= _HYPER_LIMIT:
            _HYPER.clear()
        _HYPER[key] = checked
    return dict(checked)


def resolve(algorithm, hyper, param, grad, states, backend):
    """Checks one step's arrays; returns ``(kernel module, arrays, on_device)``.

    ``states`` follows ``algorithm.state``; an entry the mode does not use may be ``None`` and is
    replaced by an empty array. Nothing is written.
    """
    uses = algorithm.uses(hyper)
    given = (param, grad, *(s if used else None for s, used in zip(states, uses)))
    context = (algorithm.kernel, uses, backend, os.environ.get("FASTOPT_BACKEND"))
    seen = _RESOLVED.seen(context, given)
    if seen is not None:
        module, empty = seen
        return module, [empty if a is None else a for a in given], False
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
    arrays = check_arrays(named, written, on_device)
    empty = None
    for i, a in enumerate(arrays):
        if a is None:
            empty = empty if empty is not None else _memory.empty(on_device, arrays[0].dtype)
            arrays[i] = empty
    if not on_device:
        _RESOLVED.remember(context, given, (module, empty))
    return module, arrays, on_device


def _cast(arrays, scalars, grad_scale):
    """The kernel's scalars in the arrays' dtype (flags stay ``bool``), ``grad_scale`` last."""
    to_dtype = arrays[0].dtype.type
    return [s if type(s) is bool else to_dtype(s) for s in scalars] + [to_dtype(grad_scale)]


def launch(module, algorithm, arrays, scalars, grad_scale=1.0):
    """Runs the kernel with scalars cast to the arrays' dtype (flags stay ``bool``): one compiled
    kernel per dtype, whatever the values. ``grad_scale`` multiplies the gradient in the kernel."""
    getattr(module, algorithm.kernel)(*arrays, *_cast(arrays, scalars, grad_scale))


def launch_with_norm(module, algorithm, arrays, scalars, grad_scale, norm_out):
    """:func:`launch`, also setting ``norm_out[0]`` to ``module.sum_of_squares(arrays[1])``, bit
    for bit: the squared norm of the gradient as given (before ``grad_scale``), computed in the
    update's pass over memory (LAMB: in a pass of its own before its two).

    ``norm_out`` is a float64 array of at least one element on the arrays' side: a numpy array on
    the host, a device array on ``cuda`` (written by a kernel: nothing is copied back and nothing
    waits). For several parameters, give each its own element (``out[k:k + 1]``) and add the
    elements in parameter order, as ``sum(module.sum_of_squares(g) for g in grads)`` does."""
    getattr(module, algorithm.kernel + "_with_norm")(*arrays, *_cast(arrays, scalars, grad_scale),
                                                     norm_out)
