"""Optimizer classes over arrays or flat arenas, with PyTorch's parameter groups and state dicts.

``opt = fastopt.Adam(params, lr=1e-3)`` then ``opt.step(grads)`` updates the parameters in place.
``params`` is a :class:`~fastopt.FlatParams` arena, a list of arrays and arenas, or a list of
parameter-group dicts (``{"params": [...], "lr": ...}``). A group of :data:`LIST_MIN_TENSORS`
numpy arrays or more (float32 or float64, on ``cpu`` or ``c``) is stepped in place with one launch
over a table of their addresses (``fastopt.backends.<backend>.lists``, see
:meth:`Optimizer._prepare_list`), with the bits of a launch per array, which smaller groups and
other arrays get; an arena (or an arena segment, for groups within one arena) is stepped with one
launch over its whole buffer, whatever the number of tensors in it.

``grads`` lists one gradient per parameter (an arena of the same layout for an arena) in
``param_groups`` order; ``None`` skips that parameter for this step, as a missing ``.grad`` does in
PyTorch. Changing a group's hyperparameters between steps takes effect at the next step without
recompiling: they reach the kernels as runtime scalars.

A step makes one pass over memory, or two when it must read the gradients before writing: the
non-finite check that the classes do by default (and any step with ``grad_scale``) reads each
gradient once for its largest magnitude, an exact integer maximum over the bits at memory speed;
clipping by ``max_norm`` (or ``return_norm``) instead sums the squares for the global norm, which
the check then reads off. The update follows with the unscale and clip factor applied inside the
kernel. A step whose gradients hold an inf or nan, or one that unscaling would overflow, is skipped
whole: parameters, state and step counts are left exactly as they were, and the returned
:class:`StepInfo` says so.

The user's arrays are updated in place, never copied: numpy arrays as they are, DLPack host arrays
(CPU torch tensors) and ``__cuda_array_interface__`` arrays (CuPy, torch CUDA, numba) through
zero-copy views. State lives beside the parameters (host or device).
"""

import collections
import copy
import functools
import itertools
import math
import operator
import threading
import warnings
import weakref
from typing import NamedTuple

import numpy as np

from fastopt.optim import _api, algorithms as alg
from fastopt._core import memory as _memory, lowp
from fastopt.optim import mixed, quant8
from fastopt._core.dispatch import choose, is_device_array, kernels
from fastopt.optim import steady
from fastopt.optim._step import (bind_magnitude_bits, bind_max_abs, bound_launch, check_hyper,
                                 launch, launch_with_norm, magnitude, max_abs as _max_abs)
from fastopt._core.validate import (CheckMemo, as_device_array, as_host_array, bfloat16_bits,
                                    check_arrays, check_disjoint, check_number, _address_range)
from fastopt.optim.arena import FlatParams

#: Added to the norm before dividing, as ``torch.nn.utils.clip_grad_norm_`` does.
CLIP_EPS = 1e-6


class StepInfo(NamedTuple):
    """What a step did: the global gradient norm (after unscaling, before clipping; ``None`` when
    the step did not compute it), whether a gradient was non-finite, whether the step was skipped,
    and the clipping coefficient applied (1.0 when none). An immutable record (a named tuple:
    half the cost of a frozen dataclass, which a small step notices)."""

    grad_norm: float | None = None
    found_inf: bool = False
    skipped: bool = False
    clip_coef: float = 1.0


#: What a step without a norm, clipping or skipping did.
_NO_INFO = StepInfo()
_NO_STATE = {}  # a step's new state when it creates none (never written to)

# Parameter views and gradients that passed a step's checks, keyed by backend.
_GRAD_CHECKS = CheckMemo()

#: Parameter dtypes that get float32 master weights: float16, and uint16 holding bfloat16 bits.
_LOW_PRECISION = (np.dtype(np.float16), np.dtype(np.uint16))
_STATE_DTYPES = {"float32": np.float32, "bfloat16": np.uint16}
#: Backends with list steps, and the dtypes they step as lists.
_LIST_BACKENDS = ("cpu", "c")
_LIST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Groups of at least this many tensors are stepped as lists; below, a launch per tensor from the
#: steady record (steady.py) costs less than the list's identity checks and bookkeeping.
LIST_MIN_TENSORS = 8


def _mixed_options(rounding, seed, state_dtype):
    """The checked mixed-precision options of a class (see :class:`Optimizer`)."""
    rounding, seed = mixed.check_options(rounding, seed)
    if state_dtype not in _STATE_DTYPES and state_dtype != "int8":
        raise ValueError("state_dtype: expected 'float32' or 'bfloat16' (or 'int8': 8-bit state), "
                         f"got {state_dtype!r}")
    return dict(rounding=rounding, seed=seed, state_dtype=state_dtype)


def _single(x):
    return hasattr(x, "shape") or is_device_array(x) or isinstance(x, FlatParams)


def _buffer(x):
    """The array a kernel steps: an arena's flat buffer, or the array itself."""
    return x.data if isinstance(x, FlatParams) else x


def _check_range(hyper, largest, precision, where=""):
    """Raises ``ValueError`` for a float hyperparameter past ``largest``, the largest finite
    value of the ``precision`` the steps compute in."""
    for name, value in hyper.items():
        if type(value) is float and abs(value) > largest:
            raise ValueError(f"{where}{name}: {value:g} overflows {precision}, the parameters' "
                             "precision")


def _moved(param, view):
    """Whether ``param``, when it is not a numpy array, has memory or a shape other than its
    ``view`` (a torch tensor re-pointed by ``t.data = ...``, ``set_`` or ``resize_``): its view
    would then read and write memory that may have been freed."""
    buffer = _buffer(param)
    if type(buffer) is np.ndarray or is_device_array(buffer):
        return False  # a numpy or numba array cannot be re-pointed
    data_ptr = getattr(buffer, "data_ptr", None)
    if data_ptr is None:
        return True  # another DLPack producer: viewed again at every step
    return data_ptr() != _address_range(view)[0] or tuple(buffer.shape) != view.shape


def checked_layout(state_dict):
    """``(param_groups, state)`` of a state dict after checking their structure: a dict of
    ``state`` and a list of ``param_groups``, each a dict with a ``params`` list; ``TypeError`` or
    ``ValueError`` naming the entry otherwise."""
    try:
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    except (TypeError, KeyError, IndexError):
        raise ValueError(
            "state_dict: expected a dict with 'state' and 'param_groups'") from None
    if not isinstance(saved_state, dict):
        raise TypeError("state_dict['state']: expected a dict {parameter index: state}, got "
                        f"{type(saved_state).__name__}")
    if not isinstance(saved_groups, (list, tuple)):
        raise TypeError("state_dict['param_groups']: expected a list of dicts, got "
                        f"{type(saved_groups).__name__}")
    for i, saved in enumerate(saved_groups):
        if not isinstance(saved, dict):
            raise TypeError(f"state_dict['param_groups'][{i}]: expected a dict, got "
                            f"{type(saved).__name__}")
        if not isinstance(saved.get("params"), (list, tuple)):
            raise ValueError(f"state_dict['param_groups'][{i}]: expected a 'params' list of "
                             "parameter indices")
    return saved_groups, saved_state


class _BoundParameter:
    """One parameter's step bound to its arrays: the gradient and state array objects it was
    checked and bound with, and the bound kernel."""

    __slots__ = ("param", "grad", "uses", "states", "arrays", "run", "reduce", "bits", "check",
                 "module", "algorithm")

    def __init__(self, param, grad, uses, states, arrays, run, module, algorithm):
        self.param, self.grad, self.uses, self.states = param, grad, uses, states
        self.arrays, self.run, self.module, self.algorithm = arrays, run, module, algorithm
        bind = getattr(module.sum_of_squares, "bind", None)  # a backend's pointer found once
        self.reduce = (bind(arrays[1]) if bind is not None
                       else functools.partial(module.sum_of_squares, arrays[1]))
        self.bits = bind_magnitude_bits(module, arrays[1])
        self.check = bind_max_abs(module, arrays[1], self.bits)

    def run_with(self, scalars, factor, norm_out=None):
        """The bound kernel with ``scalars`` and gradient factor ``factor``; with ``norm_out``,
        the kernel that also sums the gradient's squares into it."""
        if norm_out is None:
            self.run(*scalars, factor)
        else:
            launch_with_norm(self.module, self.algorithm, self.arrays, scalars, factor, norm_out)

    def matches(self, param, grad, uses, state):
        """Whether a step of these objects can run this bound kernel: the same parameter and
        gradient objects, the same used state arrays, all held by ``state``."""
        if grad is not self.grad or param is not self.param or uses != self.uses:
            return False
        get = state.get
        return all([get(name) is array for name, array in self.states.items()])



class _ListState(dict):
    """The state of one parameter of a group stepped as a list (:class:`_BoundList`): a dict that
    counts every change made through it in ``changes``, a counter shared by the group, so that a
    step sees in one comparison whether any of its arrays or counts was replaced."""

    __slots__ = ("changes",)

    def __init__(self, items, changes):
        dict.__init__(self, items)
        self.changes = changes

    def _changed(self):
        self.changes[0] += 1

    def __setitem__(self, key, value):
        self._changed()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        self._changed()
        dict.__delitem__(self, key)

    def update(self, *args, **kwargs):
        self._changed()
        dict.update(self, *args, **kwargs)

    def setdefault(self, key, default=None):
        self._changed()
        return dict.setdefault(self, key, default)

    def pop(self, *args):
        self._changed()
        return dict.pop(self, *args)

    def popitem(self):
        self._changed()
        return dict.popitem(self)

    def clear(self):
        self._changed()
        dict.clear(self)

    def __ior__(self, other):
        self._changed()
        return dict.__ior__(self, other)

    def __reduce__(self):  # pickled and copied as a plain dict
        return dict, (dict(self),)


class _BoundList:
    """A group's list step bound to its arrays (:meth:`Optimizer._prepare_list`): the parameter
    and gradient objects it was checked and bound with, the state dicts it reads and writes, and
    the backend's list step (``listed``)."""

    __slots__ = ("params", "grads", "uses", "listed", "indices", "created", "step", "dicts",
                 "changes", "seen", "getter")

    def __init__(self, params, grads, uses, listed, indices, created, step):
        self.params, self.grads, self.uses, self.listed = list(params), list(grads), uses, listed
        self.indices, self.created, self.step = indices, created, step
        self.dicts = []
        self.changes = [0]
        self.seen = None  # the count of changes after the last step's own
        self.getter = operator.itemgetter(*indices)

    def adopt(self, states, dicts):
        """Makes ``dicts`` (one per parameter, in ``states``) the list's :class:`_ListState`."""
        self.dicts = [_ListState(d, self.changes) for d in dicts]
        for i, d in zip(self.indices, self.dicts):
            states[i] = d
        self.seen = self.changes[0]

    def matches(self, params, grads, uses, states):
        """Whether a step of these objects can run this list: the same parameter and gradient
        objects, uses, state dicts and no change to them since the last step."""
        if uses != self.uses or self.changes[0] != self.seen or self.created is not None:
            return False
        is_ = operator.is_
        if not (all(map(is_, grads, self.grads)) and all(map(is_, params, self.params))):
            return False
        return all(map(is_, self.getter(states), self.dicts))

class Optimizer:
    """Base class: parameter groups, lazily created per-parameter state, ``step``, state dicts.

    Mixed precision (every class but :class:`LAMB`): float16 parameters, and uint16 arrays holding
    bfloat16 parameters, get float32 master weights (``state["master"]``, from the parameters'
    values at construction). Each step updates the master weights exactly as the float32 step
    would and writes them back rounded in the same pass (:mod:`fastopt.mixed`), to nearest even
    or, with ``rounding="stochastic"``, from a random stream keyed on ``(seed, step, parameter,
    element)``. Their gradients may be float32 or of the parameter's format, and
    ``state_dtype="bfloat16"`` stores their optimizer state as bfloat16 (rounded to nearest).

    8-bit state (Adam, AdamW, SGD, RMSprop, Lion, Adagrad): ``state_dtype="int8"`` keeps each
    state array of a float32 parameter as uint8 codes (``state[name]``) and a float32 absmax per
    block of 256 elements (``state[name + "_absmax"]``), Dettmers et al. (2022)'s blockwise
    quantization (:mod:`fastopt.quant8`); a step decodes, updates and encodes it in one pass.
    """

    algorithm = None  # an :class:`fastopt.optim.algorithms.Algorithm`, set by each subclass
    #: Mixed-precision options (rounding, seed, state_dtype), set by the constructor of every class
    #: but LAMB's, which keep float32 master weights for float16/bfloat16 parameters; None where
    #: float32/float64 is required.
    _mixed = None

    def __init__(self, params, backend=None, skip_nonfinite=True, **defaults):
        self.defaults = check_hyper(self.algorithm, defaults)
        #: Check every step's gradients (one extra read of them) and skip a non-finite step.
        self.skip_nonfinite = bool(skip_nonfinite)
        #: Steps skipped (a gradient not finite, or overflowing once unscaled); the first step of
        #: each run of skipped ones warns (``RuntimeWarning``), so that none passes silently.
        self.skipped_steps = 0
        self._skipping = False
        self.param_groups = []
        self.state = {}  # parameter index (in param_groups order) -> {"step": int, arrays...}
        self._views = []  # (user's object, checked zero-copy view) per parameter
        self._hyper_cache = {}  # group index -> (raw hyperparameters, (validated ones, uses))
        self._segments = {}  # LAMB: parameter index -> (user's object, segment_offsets array)
        self._layouts = {}  # arena parameter index -> weak reference to a checked arena gradient
        self._bound = {}  # parameter index -> its last step's _BoundParameter
        self._bound_lists = {}  # group index -> its last step's _BoundList
        self._empties = {}  # dtype -> an empty array standing for unused state
        self._requested_backend = backend
        self._lock = threading.Lock()
        self._arena_split = None  # (weak reference to an arena of gradients, its segments)
        self._steady = None  # the record of the last step, when it can run the next (steady.py)
        self._binds = 0  # kernels bound so far: a step binding none can be recorded
        groups = [params] if _single(params) else list(params)
        if not groups:
            raise ValueError("params: got an empty list of parameters")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def backend(self):
        """The backend running this optimizer's steps."""
        return self._backend

    def add_param_group(self, group):
        """Adds a group (``{"params": [...], **hyperparameters}``); missing ones take defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("param_group: expected a dict with a 'params' list")
        params = group["params"]
        params = [params] if _single(params) else list(params)
        if not params:
            raise ValueError("param_group['params']: got an empty list")
        if any(p is q for p in params for q, _ in self._views):
            raise ValueError("param_group['params']: some parameters appear in more than one group")
        new = {**self.defaults, **group, "params": params}
        check_hyper(self.algorithm, new)
        start = len(self._views)
        names = [f"params[{start + i}]" for i in range(len(params))]
        everything = {name: _buffer(p) for name, p in zip(names, params)}
        everything.update((f"params[{i}]", v) for i, (_, v) in enumerate(self._views))
        backend = choose(everything, self._requested_backend)
        on_device = backend == "cuda"
        views, masters = [], []
        for name, p in zip(names, params):
            zero_copy = as_device_array(name, _buffer(p))[0] if on_device \
                else as_host_array(name, _buffer(p))
            if np.dtype(zero_copy.dtype) in _LOW_PRECISION:
                view, master = self._low_precision(name, zero_copy, on_device)
            else:
                view, master = check_arrays({name: _buffer(p)}, {name}, on_device)[0], None
                if self._quant8 and np.dtype(view.dtype) != np.float32:
                    raise TypeError(f"{name}: 8-bit state (state_dtype='int8') takes float32 "
                                    f"parameters, got {np.dtype(view.dtype)}")
            views.append(view)
            masters.append(master)
        check_disjoint([(f"params[{i}]", v) for i, (_, v) in enumerate(self._views)]
                       + list(zip(names, views)))
        self._backend = backend
        self._kernels = kernels(backend)
        # The narrowest precision the steps compute in (float32 for 16-bit parameters' masters).
        precision = min((np.finfo(np.float64 if np.dtype(v.dtype) == np.float64 else np.float32)
                         for v in [*views, *(v for _, v in self._views)]), key=lambda f: f.max)
        largest, narrowest = float(precision.max), precision.dtype.name
        for g in [*self.param_groups, new]:
            _check_range(check_hyper(self.algorithm, g), largest, narrowest)
        self._largest, self._narrowest = largest, narrowest
        for i, master in enumerate(masters, start=start):
            if master is not None:
                self.state[i] = {"master": master}
        self._views.extend(zip(params, views))
        self.param_groups.append(new)

    @property
    def _quant8(self):
        """Whether the state is 8-bit (``state_dtype="int8"``)."""
        return self._mixed is not None and self._mixed["state_dtype"] == "int8"

    def _low_precision(self, name, param, on_device):
        """A float16/bfloat16 parameter, checked, and its float32 master copy."""
        if self._quant8:
            raise TypeError(f"{name}: 8-bit state (state_dtype='int8') takes float32 parameters, "
                            f"got {param.dtype}")
        if self._mixed is None:
            raise TypeError(f"{name}: {param.dtype} parameters need float32 master weights, which "
                            f"{type(self).__name__} does not keep (its second pass re-reads the "
                            "stored moments); it takes float32 or float64 parameters")
        (view,) = mixed._checked({name: param}, {name}, on_device, {name: _LOW_PRECISION})
        fmt = "float16" if np.dtype(view.dtype) == np.float16 else "bfloat16"
        master = lowp.from_bits(_memory.to_host(view), fmt)
        return view, _memory.from_host(on_device, master)

    def step(self, grads, *, grad_scale=None, max_norm=None, return_norm=False):
        """Updates every parameter that has a gradient; checks everything before writing.

        ``grad_scale``: the loss scale the gradients carry (they are divided by it, inside the
        update). ``max_norm``: clip the gradients by their global L2 norm, as
        ``torch.nn.utils.clip_grad_norm_`` (coefficient ``max_norm / (norm + 1e-6)``, at most 1).
        ``return_norm``: compute the global norm even when nothing else needs it; when nothing
        else does (and ``skip_nonfinite=False``), each update pass sums its own gradient: no
        reduction pass, and a non-finite norm is reported (``found_inf``) but not skipped.
        Returns a :class:`StepInfo`; its ``grad_norm`` is ``None`` unless ``max_norm`` or
        ``return_norm`` asked for the norm (the non-finite check alone does not compute it).

        Steps of one optimizer from several threads run one after the other (a lock).
        """
        with self._lock:
            record = self._steady
            if record is not None and grad_scale is None and max_norm is None \
                    and not return_norm and record.run(self, grads, self.skip_nonfinite):
                self._skipping = False
                return _NO_INFO
            info = self._step(grads, grad_scale, max_norm, return_norm)
            self._count_skip(info.skipped, stacklevel=4)
            return info

    def _count_skip(self, skipped, stacklevel=2):
        """Counts a skipped step in :attr:`skipped_steps`, warning at the first of a run."""
        if skipped:
            self.skipped_steps += 1
            if not self._skipping:
                warnings.warn(f"{type(self).__name__}.step skipped: a gradient holds inf or NaN, "
                              "or overflows the parameters' precision once unscaled "
                              "(skipped_steps counts them; this warns once per run of skipped "
                              "steps)", RuntimeWarning, stacklevel=stacklevel)
        self._skipping = skipped

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        state["_arena_split"] = None
        state["_bound_lists"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _step(self, grads, grad_scale, max_norm, return_norm):
        inv_scale = 1.0
        if grad_scale is not None:
            grad_scale = check_number("grad_scale", grad_scale)
            if grad_scale <= 0:
                raise ValueError(f"grad_scale: expected a value > 0, got {grad_scale}")
            inv_scale = 1.0 / grad_scale
            if inv_scale > self._largest:
                raise ValueError(f"grad_scale: 1/grad_scale = {inv_scale:g} overflows "
                                 f"{self._narrowest}, the parameters' precision")
        if max_norm is not None:
            max_norm = check_number("max_norm", max_norm, 0.0)
        given = grads
        if type(grads) is not list:
            if isinstance(grads, FlatParams) and len(self._views) > 1:
                grads = self._arena_segments(grads)
            else:
                grads = [grads] if _single(grads) else list(grads)
        if len(grads) != len(self._views):
            raise ValueError(f"grads: expected {len(self._views)} gradients (one per parameter, "
                             f"in param_groups order), got {len(grads)}")
        plan = []
        index = 0
        binds = self._binds
        prepare = self._prepare
        fused = (return_norm and grad_scale is None and max_norm is None
                 and not self.skip_nonfinite)
        for g_index, group in enumerate(self.param_groups):
            hyper, uses = self._checked_hyper(g_index, group)
            if len(group["params"]) >= LIST_MIN_TENSORS:
                entry = self._prepare_list(g_index, index, group["params"], grads, hyper, uses)
                if entry is not None:  # the group in one launch
                    plan.append(entry)
                    index += len(group["params"])
                    continue
            for param in group["params"]:
                grad = grads[index]
                if grad is not None:
                    plan.append(prepare(index, param, grad, hyper, uses, fused))
                index += 1
        info = _NO_INFO
        factor = inv_scale
        if fused and not self._quant8 and not any("master" in self.state.get(i, ())
                                                  for i, *_ in plan):
            # Nothing needs the norm first: each update pass also sums its gradient.
            return self._step_with_norm(plan)
        if max_norm is not None or return_norm:
            # The reduction pass: one read of every gradient, summing its squares.
            total = 0.0
            for entry in plan:
                squares = entry[3]()
                if type(squares) is list:  # a list's, one per tensor, added in order
                    for x in squares:
                        total += x
                else:
                    total += squares
            root = math.sqrt(total)
            norm = root * inv_scale
            if total - total != 0 and (total != math.inf or not self._finite(grads, plan)):
                return StepInfo(norm, True, True)
            # An infinite norm from finite gradients (float64 near 1e200): reported, not skipped.
            clip = 1.0 if max_norm is None else min(1.0, max_norm / (norm + CLIP_EPS))
            factor = inv_scale * clip
            if root * factor > self._largest and (
                    self._largest_scaled(grads, plan, factor) > self._largest):
                # Some gradient times its factor overflows the parameters' precision.
                return StepInfo(norm, True, True)
            info = StepInfo(norm, False, False, clip)
        elif self.skip_nonfinite or grad_scale is not None:
            # The check pass: one read of every gradient for its largest magnitude, exactly (an
            # integer maximum over the bits, at memory speed); no norm needed.
            largest = 0.0
            for entry in plan:
                top = entry[4]()
                if not top <= largest:  # larger, or NaN (which stops the loop's comparisons)
                    largest = top
                    if top != top:
                        break
            if largest != largest or largest * factor > self._largest:
                return StepInfo(None, True, True)  # non-finite, or overflowing once unscaled
        states = self.state
        for index, new_state, step, _, _, run in plan:  # everything checked: now write
            run(factor)
            if type(index) is not int:  # a group in one launch (_prepare_list)
                self._record_list(index, new_state, step)
                continue
            # Recorded after the launch: a failing one leaves its parameter's count as it was.
            state = states.get(index)
            if state is None:
                state = states[index] = {}
            if new_state:
                state.update(new_state)
            state["step"] = step
        if info is _NO_INFO and binds == self._binds and not return_norm:
            self._steady = steady.plan(self, given, grads)
        return info

    def _arena_segments(self, grads):
        """An arena of gradients split as the parameters, segments of one arena of its layout."""
        cached = self._arena_split
        if cached is not None and cached[0]() is grads:
            return cached[1]
        parts = []
        for index, (param, _) in enumerate(self._views):
            root, first = getattr(param, "origin", (None, 0))
            if root is None or root.shapes != grads.shapes:
                raise ValueError(f"grads: an arena of gradients steps parameters that are segments "
                                 f"of one arena of its layout; params[{index}] is not")
            parts.append(grads.segment(first, first + len(param)))
        self._arena_split = (weakref.ref(grads), parts)
        return parts

    def _host_grads(self, grads, plan):
        """The planned gradients as float host arrays (decoded when stored as bfloat16 bits)."""
        out = []
        for index, *_ in plan:
            for i in [index] if type(index) is int else index:
                g = bfloat16_bits(np.asarray(_memory.to_host(_buffer(grads[i]))))
                if g.dtype == np.uint16:
                    g = lowp.from_bits(g, "bfloat16")
                out.append(g)
        return out

    def _finite(self, grads, plan):
        """Whether every planned gradient element is finite (when their sum of squares is not)."""
        return all(np.isfinite(g).all() for g in self._host_grads(grads, plan))

    def _largest_scaled(self, grads, plan, factor):
        """The largest ``|g| * factor`` of the planned gradients, in float64."""
        return max((float(np.max(np.abs(g), initial=0.0)) for g in self._host_grads(grads, plan)),
                   default=0.0) * factor

    def _step_with_norm(self, plan):
        """The update of every planned parameter, each pass also summing its gradient's squares
        into a slot of its own (added in parameter order afterwards, so the norm is the reduction
        pass's, bit for bit). Nothing is skipped: a non-finite norm is reported as ``found_inf``."""
        slots = [1 if type(index) is int else len(index) for index, *_ in plan]
        norms = _memory.full(self._backend == "cuda", (max(sum(slots), 1),), np.float64, 0.0)
        k = 0
        for (index, new_state, step, _, _, run), n in zip(plan, slots):
            run(1.0, norms[k:k + n])
            k += n
            if type(index) is not int:
                self._record_list(index, new_state, step)
                continue
            state = self.state.setdefault(index, {})
            state.update(new_state)
            state["step"] = step
        norm = math.sqrt(sum(_memory.to_host(norms)[:k].tolist()))
        return StepInfo(grad_norm=norm, found_inf=not math.isfinite(norm))

    def _checked_hyper(self, g_index, group):
        """The group's validated hyperparameters and which state they use, checked again only
        when one of them changed."""
        raw = tuple(map(group.__getitem__, self.algorithm.defaults))
        cached = self._hyper_cache.get(g_index)
        # The cache holds a snapshot with lists (betas) as tuples, which no list compares equal
        # to: a list changed in place is compared by its values now.
        if cached is not None and cached[0] == raw:
            return cached[1]
        raw = tuple([tuple(v) if type(v) is list else v for v in raw])
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            hyper = check_hyper(self.algorithm, group)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"param_groups[{g_index}]: {exc}") from None
        _check_range(hyper, self._largest, self._narrowest, f"param_groups[{g_index}]: ")
        checked = (hyper, tuple(self.algorithm.uses(hyper)))
        self._hyper_cache[g_index] = (raw, checked)
        return checked

    def _prepare_list(self, g_index, first, params, grads, hyper, uses):
        """The step of group ``g_index`` (parameters ``first`` on) as one launch, a plan entry
        as :meth:`_prepare`'s with ``range`` of the indices first; ``None`` when the group must
        be stepped parameter by parameter.

        A group of numpy arrays of one float dtype whose gradients are all numpy arrays, on a
        backend with list steps (``fastopt.backends.<backend>.lists``), is stepped as a list: the
        table of its arrays (:class:`_BoundList`) is built once and used again while the same
        parameter, gradient and state objects come back (each checked by identity, the state
        through :class:`_ListState`). Every parameter of the list has the same step count."""
        if self._backend not in _LIST_BACKENDS or self.algorithm.segmented:
            return None
        stop = first + len(params)
        grads = grads[first:stop]
        bound = self._bound_lists.get(g_index)
        if bound is None or not bound.matches(params, grads, uses, self.state):
            bound = self._bind_list(g_index, first, params, grads, hyper, uses)
            if bound is None:
                return None
        algorithm = self.algorithm
        step = bound.step + 1
        fresh = bound.created is not None
        host_new = _NO_STATE
        if algorithm.host_state:  # the same for every tensor of the list (checked at binding)
            host = algorithm.host_before(hyper, bound.dicts[0] if bound.dicts else {})
            scalars = algorithm.scalars(hyper, step, fresh, **host)
            host_new = algorithm.advance(hyper, step, host)
        else:
            scalars = algorithm.scalars(hyper, step, fresh)
        listed = bound.listed

        def run(factor, norm_out=None):
            if norm_out is not None:  # each tensor's sum in its slot, then the update
                norm_out[:] = listed.sums_of_squares()
            listed.run(*scalars, factor)

        dtype = listed.dtype
        return (range(first, stop), (bound, host_new), step, listed.sums_of_squares,
                lambda: magnitude(listed.max_magnitude_bits(), dtype), run)

    def _bind_list(self, g_index, first, params, grads, hyper, uses):
        """A new :class:`_BoundList` of the group after the checks of a step (state the step
        needs but does not have made, not yet stored); ``None`` when the group cannot be stepped
        as a list (its tensors then take :meth:`_prepare`'s path, which raises as it does)."""
        self._bound_lists.pop(g_index, None)
        module = self._list_kernels()
        if module is None:
            return None
        if not all([type(p) is np.ndarray for p in params]) or not all(
                [type(g) is np.ndarray for g in grads]):
            return None
        indices = range(first, first + len(params))
        dtype = self._views[first][1].dtype
        if dtype not in _LIST_DTYPES or any(self._views[i][1].dtype != dtype for i in indices):
            return None  # 16-bit parameters (master weights) or mixed dtypes
        states = self.state
        dicts = [states.get(i) for i in indices]
        with_state = [d is not None and "step" in d for d in dicts]
        if any(with_state) and not all(with_state):
            return None  # some parameters stepped before the others
        algorithm = self.algorithm
        names = [name for name, used in zip(algorithm.state, uses) if used]
        if all(with_state):
            counts = {d["step"] for d in dicts}
            if len(counts) != 1 or any("master" in d for d in dicts) or not all(
                    name in d for d in dicts for name in names):
                return None
            if algorithm.host_state and len({tuple(d.get(h) for h in algorithm.host_state)
                                             for d in dicts}) != 1:
                return None
        views, checked_grads = [], []
        for index, param, grad in zip(indices, params, grads):
            view, grad = self._checked_grad(index, param, self._view(index, param, False), grad,
                                            False)
            views.append(view)
            checked_grads.append(grad)
        if any(v.dtype != dtype for v in views):
            return None  # a parameter re-pointed at memory of another dtype: raises there
        created = None
        if all(with_state):
            arrays = {name: [d[name] for d in dicts] for name in names}
        else:
            created = [{name: _memory.full(False, v.shape, v.dtype,
                                           algorithm.initial_state(hyper, name))
                        for name in names} for v in views]
            arrays = {name: [c[name] for c in created] for name in names}
        listed = module.bind(algorithm, views, checked_grads,
                             tuple(arrays.get(name) for name in algorithm.state), uses)
        bound = _BoundList(params, grads, uses, listed, indices, created,
                           max(counts) if all(with_state) else 0)
        if all(with_state):  # the state dicts as _ListState, which count their changes
            bound.adopt(states, dicts)
        self._bound_lists[g_index] = bound
        return bound

    def _record_list(self, indices, new_state, step):
        """Stores the state of a group stepped as a list (:meth:`_prepare_list`) after its
        launch: the state it created, its step count and host scalars."""
        bound, host_new = new_state
        states = self.state
        if bound.created is not None:  # the first step: the arrays the launch updated
            bound.adopt(states, [states.get(i) or {} for i in indices])
            for d, created in zip(bound.dicts, bound.created):
                dict.update(d, created)
            bound.created = None
        setitem = dict.__setitem__
        collections.deque(map(setitem, bound.dicts, itertools.repeat("step"),
                              itertools.repeat(step)), 0)
        if host_new:
            for d in bound.dicts:
                dict.update(d, host_new)
        bound.step = step

    def _list_kernels(self):
        """The backend's list steps (``fastopt.backends.<backend>.lists``), or ``None``."""
        try:
            return kernels(self._backend, "lists")
        except ImportError:
            return None

    def _prepare(self, index, param, grad, hyper, uses, fused=False):
        """One parameter's step, checked: ``(index, new state, step count, reduce, check, run)``,
        where ``reduce()`` is the gradient's squared norm, ``check()`` its largest magnitude and
        ``run(grad_scale)`` launches the update.
        Missing state is created but not yet stored. ``fused``: ``run`` also takes ``norm_out``
        (:meth:`_step_with_norm`).

        A host parameter whose gradient is the same numpy array (or arena) as at its previous
        step, with the same state arrays and the same used ones, reuses that step's checks and
        its bound kernel (:func:`fastopt.optim._step.bound_launch`): only the scalars are new."""
        state = self.state.get(index, {})
        if "master" in state:
            return self._prepare_mixed(index, grad, hyper, uses, self._backend == "cuda")
        if self._quant8:
            return self._prepare_quant8(index, param, grad, hyper, uses, state)
        algorithm = self.algorithm
        step = state.get("step", 0) + 1
        bound = self._bound.get(index)
        if bound is not None and bound.matches(param, grad, uses, state):
            if not algorithm.host_state:  # the common step: a bound kernel and its scalars
                scalars = algorithm.scalars(hyper, step, False)
                return (index, _NO_STATE, step, bound.reduce, bound.check,
                        functools.partial(bound.run_with, scalars) if fused
                        else functools.partial(bound.run, *scalars))
            new_state, fresh, arrays, run_bound = {}, False, bound.arrays, bound.run
        else:
            new_state, fresh, arrays = self._arrays(index, param, grad, hyper, uses, state)
            run_bound = self._bind(index, param, grad, uses, arrays, new_state)
        if algorithm.host_state:  # host scalars (NAdam's mu_product) advance with the step
            host = algorithm.host_before(hyper, state)
            scalars = algorithm.scalars(hyper, step, fresh, **host)
            new_state.update(algorithm.advance(hyper, step, host))
        else:
            scalars = algorithm.scalars(hyper, step, fresh)
        module = self._kernels

        def run(factor, norm_out=None):
            if norm_out is not None:
                launch_with_norm(module, algorithm, arrays, scalars, factor, norm_out)
            elif run_bound is not None:
                run_bound(*scalars, factor)
            else:
                launch(module, algorithm, arrays, scalars, factor)

        return (index, new_state, step, lambda: module.sum_of_squares(arrays[1]),
                lambda: _max_abs(module, arrays[1]), run)

    def _arrays(self, index, param, grad, hyper, uses, state):
        """``(new state, fresh, arrays)``: the step's arrays in kernel order after the checks,
        state the step needs but does not have created (``new state``, not yet stored)."""
        on_device = self._backend == "cuda"
        algorithm = self.algorithm
        view = self._view(index, param, on_device)
        arrays = self._checked_grad(index, param, view, grad, on_device)
        new_state = {}
        fresh = False
        for name, used in zip(algorithm.state, uses):
            if not used:
                arrays.append(self._empty(view.dtype, on_device))
                continue
            if name not in state:
                fill = algorithm.initial_state(hyper, name)
                new_state[name] = _memory.full(on_device, view.shape, view.dtype, fill)
                fresh = True
            arrays.append(new_state.get(name, state.get(name)))
        if algorithm.segmented:
            arrays.append(self._segment_offsets(index, param, view.size, on_device))
        return new_state, fresh, tuple(arrays)

    def _view(self, index, param, on_device):
        """The checked zero-copy view of parameter ``index`` (``param``, from param_groups), made
        again when the user replaced the parameter, or re-pointed a tensor at other memory
        (``t.data = ...``, ``set_``, ``resize_``); ``ValueError`` when the new memory does not
        have the shape and dtype its state was made for."""
        user_param, view = self._views[index]
        if param is user_param and not _moved(param, view):
            return view
        name = f"params[{index}]"
        new = as_device_array(name, _buffer(param))[0] if on_device \
            else as_host_array(name, _buffer(param))
        if new.dtype in _LOW_PRECISION or view.dtype in _LOW_PRECISION:
            if (new.dtype, tuple(new.shape)) != (view.dtype, view.shape):
                raise ValueError(f"{name}: now {new.dtype} of shape {tuple(new.shape)}; its master "
                                 f"weights are for {view.dtype} of shape {view.shape}")
            (new,) = mixed._checked({name: new}, {name}, on_device, {name: _LOW_PRECISION})
        else:
            new = check_arrays({name: new}, {name}, on_device)[0]
            if index in self.state and (new.dtype, new.shape) != (view.dtype, view.shape):
                raise ValueError(f"{name}: now {new.dtype} of shape {new.shape}; its optimizer "
                                 f"state is for {view.dtype} of shape {view.shape} (a parameter "
                                 "keeps its shape and dtype; build a new optimizer for another)")
        others = [(f"params[{i}]", v) for i, (_, v) in enumerate(self._views) if i != index]
        check_disjoint(others + [(name, new)])
        self._views[index] = (param, new)
        self._bound.pop(index, None)
        return new

    def _bind(self, index, param, grad, uses, arrays, new_state):
        """The kernel bound to ``arrays`` (``run(*scalars, grad_scale)``), remembered for the next
        step, when they are all numpy arrays: a torch tensor or a device array can be re-pointed
        at other memory under the same object, so their steps are checked every time."""
        self._bound.pop(index, None)
        self._binds += 1
        if not all(type(a) is np.ndarray for a in arrays) or (
                type(_buffer(grad)) is not np.ndarray or type(_buffer(param)) is not np.ndarray):
            return None
        run = bound_launch(self._kernels, self.algorithm, arrays)
        named = {name: a for name, used, a in zip(self.algorithm.state, uses, arrays[2:]) if used}
        self._bound[index] = _BoundParameter(param, grad, uses, named, arrays, run,
                                             self._kernels, self.algorithm)
        return run

    def _checked_grad(self, index, param, view, grad, on_device):
        """``[parameter view, gradient buffer]`` after the checks of a step. The checks of a
        gradient array passed unchanged at an earlier step are not repeated (see
        :class:`fastopt._core.validate.CheckMemo`); nor is an arena gradient's layout check."""
        pname, gname = f"params[{index}]", f"grads[{index}]"
        if isinstance(param, FlatParams):
            checked = self._layouts.get(index)
            if checked is None or checked() is not grad:
                if not isinstance(grad, FlatParams) and not (hasattr(grad, "shape")
                                                           and tuple(grad.shape) == view.shape):
                    raise ValueError(f"{gname}: expected a FlatParams of the same layout as "
                                     f"{pname} (or a flat array of {view.size} elements)")
                if isinstance(grad, FlatParams):
                    if grad.shapes != param.shapes:
                        raise ValueError(f"{gname}: arena layout does not match {pname}'s")
                    self._layouts[index] = weakref.ref(grad)  # an arena's layout is fixed
        buffer = _buffer(grad)
        if _GRAD_CHECKS.seen(self._backend, (view, buffer)) is not None:
            return [view, buffer]
        choose({pname: view, gname: buffer}, self._backend)
        arrays = check_arrays({pname: view, gname: buffer}, {pname}, on_device)
        _GRAD_CHECKS.remember(self._backend, (view, buffer), True)
        return arrays

    def _empty(self, dtype, on_device):
        """An empty array standing for state the step does not use, made once per dtype."""
        empty = self._empties.get(dtype)
        if empty is None:
            empty = self._empties[dtype] = _memory.empty(on_device, dtype)
        return empty

    def _prepare_mixed(self, index, grad, hyper, uses, on_device):
        """:meth:`_prepare` for a float16/bfloat16 parameter with float32 master weights."""
        view = self._view(index, self._views[index][0], on_device)
        pname, gname = f"params[{index}]", f"grads[{index}]"
        choose({pname: view, gname: grad}, self._backend)
        _, grad = mixed._checked({pname: view, gname: grad}, set(), on_device,
                                 {pname: _LOW_PRECISION, gname: (np.dtype(np.float32), view.dtype)})
        state = self.state[index]
        state_dtype = _STATE_DTYPES[self._mixed["state_dtype"]]
        new_state, states = {}, []
        fresh = False
        for name, used in zip(self.algorithm.state, uses):
            if used and name not in state:
                fill = mixed.state_fill(self.algorithm.initial_state(hyper, name), state_dtype)
                new_state[name] = _memory.full(on_device, view.shape, state_dtype, fill)
                fresh = True
            states.append(new_state.get(name, state.get(name)) if used
                          else _memory.empty(on_device, state_dtype))
        step = state.get("step", 0) + 1
        host = self.algorithm.host_before(hyper, state)
        scalars = self.algorithm.scalars(hyper, step, fresh, **host)
        new_state.update(self.algorithm.advance(hyper, step, host))
        stochastic = self._mixed["rounding"] == "stochastic"
        key = lowp.stream_key(self._mixed["seed"], step, stream=index + 1)
        module = kernels(self._backend, "mixed")
        master, algorithm = state["master"], self.algorithm
        return (index, new_state, step, lambda: mixed.grad_sum_of_squares(module, grad),
                lambda: _max_abs(kernels(self._backend), grad),
                lambda factor: mixed.launch(module, algorithm, master, grad, states, view,
                                            scalars, factor, stochastic, key))

    def _prepare_quant8(self, index, param, grad, hyper, uses, state):
        """:meth:`_prepare` for 8-bit state: codes and absmax per state array."""
        on_device = self._backend == "cuda"
        view = self._view(index, param, on_device)
        p, g = self._checked_grad(index, param, view, grad, on_device)
        algorithm = self.algorithm
        missing = [name for name, used in zip(algorithm.state, uses)
                   if used and name not in state]
        new_state = quant8.new_state(algorithm, hyper, tuple(view.shape), on_device,
                                     tuple(name in missing for name in algorithm.state))
        arrays = quant8.checked_arrays(algorithm, p, g, {**state, **new_state}, uses, on_device)
        step = state.get("step", 0) + 1
        scalars = algorithm.scalars(hyper, step, bool(missing))
        kernel = getattr(kernels(self._backend, "quant8"), algorithm.kernel)
        module = self._kernels
        return (index, new_state, step, lambda: module.sum_of_squares(g),
                lambda: _max_abs(module, g), lambda factor: kernel(*arrays, *scalars, factor))

    def _segment_offsets(self, index, param, size, on_device):
        """LAMB's per-tensor segments of one parameter, made once on the step's side: an arena's
        tensor offsets (one trust ratio per tensor in one launch), or ``[0, size]`` for an array."""
        cached = self._segments.get(index)
        if cached is None or cached[0] is not param:
            offsets = param.offsets + [size] if isinstance(param, FlatParams) else [0, size]
            cached = (param, _memory.from_host(on_device, np.array(offsets, np.int64)))
            self._segments[index] = cached
        return cached[1]

    def state_dict(self):
        """A copy of the state as ``{"state": {index: {...}}, "param_groups": [...]}``.

        State arrays are copied to numpy whatever the backend, so a state dict loads on any backend;
        host scalars (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) stay Python floats, as
        ``step`` stays an int.
        """
        groups, start = [], 0
        scalars = ("step", *self.algorithm.host_state)
        with self._lock:  # not half of a step running in another thread
            for group in self.param_groups:
                n = len(group["params"])
                saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
                groups.append({**saved, "params": list(range(start, start + n))})
                start += n
            state = {i: {k: (v if k in scalars else _memory.to_host(v)) for k, v in s.items()}
                     for i, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores a :meth:`state_dict`; checks all of it first and changes nothing if it fails."""
        saved_groups, saved_state = checked_layout(state_dict)
        if [len(g["params"]) for g in saved_groups] != [len(g["params"])
                                                          for g in self.param_groups]:
            raise ValueError("state_dict: its parameter groups do not match this optimizer's "
                             "(different number of groups or of parameters per group)")
        new_groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            new = {**group, **{k: v for k, v in saved.items() if k != "params"},
                   "params": group["params"]}
            try:
                check_hyper(self.algorithm, new)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"state_dict['param_groups'][{i}]: {exc}") from None
            new_groups.append(new)
        params = [p for p, _ in self._views]
        on_device = self._backend == "cuda"
        new_state = {}
        for index, saved in saved_state.items():
            if type(index) is not int or not 0 <= index < len(params):  # True is no index
                raise ValueError(f"state_dict['state']: no parameter with index {index!r}")
            new_state[index] = self._checked_state(index, params[index], saved, on_device)
        for index, (_, view) in enumerate(self._views):
            if np.dtype(view.dtype) in _LOW_PRECISION and index not in new_state:
                raise ValueError(f"state_dict['state']: parameter {index} is {view.dtype} and "
                                 "needs its float32 'master' weights")
        with self._lock:
            self.param_groups[:] = new_groups
            self.state = new_state

    def _checked_state(self, index, param, saved, on_device):
        where = f"state_dict['state'][{index}]"
        if not isinstance(saved, dict):
            raise TypeError(f"{where}: expected a dict of state, got {type(saved).__name__}")
        view = self._views[index][1]
        shape = tuple(view.shape)
        dtype = np.dtype(view.dtype)
        low_precision = dtype in _LOW_PRECISION
        if low_precision:  # float32 master weights; state in the chosen dtype
            dtype = np.dtype(_STATE_DTYPES[self._mixed["state_dtype"]])
            if "master" not in saved:
                raise ValueError(f"{where}: a {view.dtype} parameter's state needs its float32 "
                                 "'master' weights")
        out = {}
        if self._quant8:
            return self._checked_quant8_state(where, shape, saved, on_device)
        for name, value in saved.items():
            if name == "step":
                out[name] = _checked_step_count(where, value)
                continue
            if name in self.algorithm.host_state:
                out[name] = check_number(f"{where}[{name!r}]", value, *alg.HOST_BOUNDS[name])
                continue
            if name not in self.algorithm.state and not (low_precision and name == "master"):
                raise ValueError(f"{where}: unknown state {name!r} for {self.algorithm.name}")
            host = _memory.to_host(value)
            expected = np.dtype(np.float32) if name == "master" else dtype
            if host.shape != shape or host.dtype != expected:
                raise ValueError(f"{where}[{name!r}]: expected shape {shape} and dtype "
                                 f"{expected}, got {host.shape} {host.dtype}")
            out[name] = _memory.from_host(on_device, host)
        return out

    def _checked_quant8_state(self, where, shape, saved, on_device):
        """A parameter's saved 8-bit state, checked: codes of the parameter's shape (uint8) and
        absmax of its block count (float32) per state array."""
        out = {}
        blocks = -(-math.prod(shape) // quant8.BLOCK)
        expected = {name: ((shape, np.dtype(np.uint8)), ((blocks,), np.dtype(np.float32)))
                    for name in self.algorithm.state}
        for name, value in saved.items():
            if name == "step":
                out[name] = _checked_step_count(where, value)
                continue
            base = name[:-len("_absmax")] if name.endswith("_absmax") else name
            if base not in expected:
                raise ValueError(f"{where}: unknown state {name!r} for 8-bit "
                                 f"{self.algorithm.name}")
            want_shape, want_dtype = expected[base][base != name]
            host = _memory.to_host(value)
            if host.shape != want_shape or host.dtype != want_dtype:
                raise ValueError(f"{where}[{name!r}]: expected shape {want_shape} and dtype "
                                 f"{want_dtype} (8-bit state), got {host.shape} {host.dtype}")
            out[name] = host
        for name in expected:
            if (name in out) != (name + "_absmax" in out):
                raise ValueError(f"{where}: 8-bit state {name!r} needs both its codes and "
                                 f"{name + '_absmax'!r}")
        return {k: v if k == "step" else _memory.from_host(on_device, v) for k, v in out.items()}

    def __repr__(self):
        groups = ", ".join(
            "{" + ", ".join(f"{k}={v!r}" for k, v in g.items() if k != "params")
            + f", params={len(g['params'])}" + "}" for g in self.param_groups)
        return f"{type(self).__name__}(backend={self._backend!r}, groups=[{groups}])"


def _checked_step_count(where, value):
    """A saved step count: an int >= 0 (``True`` is none)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}['step']: expected an int >= 0, got {value!r}")
    return value


def _optimizer_class(algorithm, base):
    """The class of ``algorithm`` (see :func:`fastopt.optim._api.optimizer_class`)."""
    options = dict(backend=None, skip_nonfinite=True)
    if algorithm.mixed:
        options.update(rounding="nearest", seed=0, state_dtype="float32")

    def construct(self, a):
        if algorithm.mixed:
            self._mixed = _mixed_options(a["rounding"], a["seed"], a["state_dtype"])
            if self._mixed["state_dtype"] == "int8" and algorithm.name not in quant8.ALGORITHMS:
                raise ValueError(f"state_dtype: 'int8' (8-bit state) is available for "
                                 f"{', '.join(quant8.ALGORITHMS)}, not {algorithm.name}")
        Optimizer.__init__(self, a["params"], a["backend"], a["skip_nonfinite"],
                           **{n: a[n] for n in algorithm.defaults})

    return _api.optimizer_class(algorithm, base, __name__, _api.class_doc(algorithm), options,
                                construct)


#: The optimizer class of each algorithm, by the algorithm's name.
CLASSES = {}
for _algorithm in alg.ALGORITHMS.values():
    _base = CLASSES[_algorithm.extends] if _algorithm.extends else Optimizer
    CLASSES[_algorithm.name] = _optimizer_class(_algorithm, _base)
    globals()[CLASSES[_algorithm.name].__name__] = CLASSES[_algorithm.name]
del _algorithm, _base
