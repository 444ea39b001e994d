"""Stateless in-place optimizer steps: what other trainers embed.

Each function updates ``param`` and its state arrays in place for one step and returns ``None``.
Arrays may be numpy arrays, DLPack host arrays (e.g. CPU torch tensors) or CUDA arrays exposing
``__cuda_array_interface__`` (CuPy, torch, numba), all viewed without copying. ``step`` is the
1-based number of this step (PyTorch's ``state["step"]`` after its increment). Hyperparameters
follow ``torch.optim`` (names, defaults, checks, ``foreach=False`` update rules). ``grad_scale``
multiplies the gradient inside the kernel before anything else (unscaling a mixed-precision loss
scale, clipping by a norm computed with :func:`grad_norm`). ``backend`` overrides the choice that
follows the arrays (see :func:`fastopt.available_backends`).

Every argument is checked before anything is written: a call that raises leaves all arrays as they
were. The gradient's values are not inspected: a non-finite gradient makes non-finite parameters and
state. The optimizer classes skip such steps; here, check :func:`max_abs` (one read at memory
speed) or :func:`grad_norm` first where that matters."""

import functools
import math
from inspect import Parameter, Signature

import numpy as np

from fastopt.optim import _api, algorithms as alg
from fastopt._core import memory as _memory
from fastopt._core.dispatch import choose, is_device_array, kernels
from fastopt.optim._step import checked_step, launch, max_abs as _max_abs, resolve
from fastopt._core.validate import check_arrays, check_number, check_step


def _step(algorithm, param, grad, states, step, backend, hyper, host=None):
    """Checks everything, then runs one step; returns the host state after it (``{}`` for most).
    ``states`` follows ``algorithm.state``; ``host`` holds the host state before the step (NAdam's
    ``mu_product``); ``hyper`` also holds ``grad_scale`` and ``segment_offsets`` (LAMB)."""
    grad_scale = hyper["grad_scale"]
    if type(grad_scale) is not float or not 0.0 <= grad_scale < math.inf:  # else checked already
        grad_scale = check_number("grad_scale", grad_scale, 0.0)
    checked, uses = checked_step(algorithm, hyper)
    step = check_step(step)
    module, arrays, on_device = resolve(algorithm, checked, param, grad, states, backend, uses)
    if algorithm.segmented:
        arrays += (_checked_offsets(hyper["segment_offsets"], arrays[0].size, on_device),)
    # One launch of unbound arrays: binding (views, pointers, the kernel chosen) pays only when
    # the arrays come back, as in fastopt.functional.bind and the classes.
    run = functools.partial(_launch_all, module, algorithm, arrays)
    fresh = step == 1  # the state arrays are new: SGD's momentum buffer takes the gradient
    if host is None:  # no host state (all but NAdam)
        run(*algorithm.scalars(checked, step, fresh), grad_scale)
        return {}
    run(*algorithm.scalars(checked, step, fresh, **host), grad_scale)
    return algorithm.advance(checked, step, host)


def _launch_all(module, algorithm, arrays, *scalars):
    launch(module, algorithm, arrays, scalars[:-1], scalars[-1])


def _checked_offsets(offsets, n, on_device):
    """``segment_offsets`` as an int64 array on the step's side: ``[0, n]`` when ``None``."""
    if offsets is None:
        offsets = (0, n)
    try:
        host = np.asarray(offsets)
    except Exception:  # ragged or otherwise not array-like: refused below
        host = np.empty(0, object)
    ok = host.ndim == 1 and host.size >= 2 and np.issubdtype(host.dtype, np.integer)
    if not ok or host[0] != 0 or host[-1] != n or np.any(np.diff(host) < 0):
        raise ValueError(f"segment_offsets: expected nondecreasing integer offsets of the tensors "
                         f"in param, from 0 to param.size ({n}), got {offsets!r}")
    return _memory.from_host(on_device, host.astype(np.int64))


def bind(step, param, grad, *states, backend=None, **hyper):
    """``step`` (a name such as ``"adam"``, or a step of this module) bound to its arrays and
    hyperparameters, checked now: a :class:`fastopt.optim.bound.BoundStep`, whose call ``bound(t)``
    runs step ``t`` in place as this module's step would, bit for bit, at a fraction of the cost of
    a call (see :mod:`fastopt.optim.bound`). ``states`` are the step's state arrays in its argument
    order; trailing unused ones may be left out. ``segment_offsets`` (LAMB) and ``mu_product``
    (NAdam) are keywords, as here."""
    from fastopt.optim.bound import BoundStep

    return BoundStep(step, param, grad, *states, backend=backend, **hyper)


def grad_norm(grads, backend=None):
    r"""The global L2 norm :math:`\sqrt{\sum_i \lVert g_i \rVert^2}` of a list of gradients,
    accumulated in float64; ``inf`` or ``nan`` when any element is non-finite. One read of each
    gradient; deterministic for a given backend whatever the thread count."""
    grads = [grads] if hasattr(grads, "shape") or is_device_array(grads) else list(grads)
    named = {f"grads[{i}]": g for i, g in enumerate(grads)}
    name = choose(named, backend)
    module = kernels(name)
    total = 0.0
    for key, g in named.items():
        (g,) = check_arrays({key: g}, (), name == "cuda")
        total += module.sum_of_squares(g)
    return math.sqrt(total)


def max_abs(grads, backend=None):
    r"""The largest magnitude :math:`\max_i |g_i|` over a list of gradients: ``inf`` when an
    element is infinite, ``nan`` when one is NaN, 0 when there are none. Exact (an integer maximum
    over the bits with the sign cleared), so every backend gives the same value; one read of each
    gradient at memory speed, the check to run before a step where a non-finite gradient must
    not reach the parameters."""
    grads = [grads] if hasattr(grads, "shape") or is_device_array(grads) else list(grads)
    named = {f"grads[{i}]": g for i, g in enumerate(grads)}
    name = choose(named, backend)
    module = kernels(name)
    checked = [check_arrays({key: g}, (), name == "cuda")[0] for key, g in named.items()]
    largest = 0.0
    for g in checked:
        top = _max_abs(module, g)
        if top != top:
            return top
        largest = max(largest, top)
    return largest


def _functional_step(algorithm):
    """The step of ``algorithm``: ``name(param, grad, states..., *, step, ...)`` (see
    :mod:`fastopt.optim._api`), its docstring the table's."""
    required, optional = _api.state_args(algorithm)
    signature = Signature([*_api.arrays(("param", "grad", *required), optional),
                           *_api.step_keywords(algorithm),
                           Parameter("grad_scale", _api.KEYWORD, default=1.0),
                           Parameter("backend", _api.KEYWORD, default=None)])
    defaults = _api.keyword_defaults(signature)
    del defaults["backend"]
    n_keywords = len(defaults)
    low, high = len(required), len(required) + len(optional)
    missing = (None,) * high
    has_host = bool(algorithm.host_state)

    def step_function(param, grad, *states, step, backend=None, **keywords):
        hyper = {**defaults, **keywords}
        # An unknown keyword makes hyper longer; states passed by keyword are unknown here too.
        if len(hyper) != n_keywords or not low <= len(states) <= high:
            keywords.update(step=step, backend=backend)
            (param, grad, *states), hyper = _api.bind(
                algorithm.name, signature, (param, grad, *states), keywords)
            states, backend = tuple(states), hyper.pop("backend")
        elif len(states) < high:
            states += missing[len(states):]
        if has_host:
            host = _api.host_values(algorithm, hyper, step)
            return _api.host_result(_step(algorithm, param, grad, states, step, backend, hyper,
                                          host=host))
        _step(algorithm, param, grad, states, step, backend, hyper)

    return _api.named(step_function, algorithm.name, signature, _api.text(algorithm.doc))


for _algorithm in alg.ALGORITHMS.values():
    globals()[_algorithm.name] = _functional_step(_algorithm)
del _algorithm
