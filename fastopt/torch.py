"""Drop-in ``torch.optim`` optimizers that step with fastopt's kernels.

``fastopt.torch.AdamW(model.parameters(), lr=1e-3)`` is a :class:`torch.optim.Optimizer`: torch's
constructor (the same arguments, defaults and checks, positional ones included), parameter groups,
``step(closure=None)``, ``zero_grad``, ``add_param_group``, hooks, every
``torch.optim.lr_scheduler``, and ``state`` keyed by parameter **in torch's own format** (the same
keys, ``step`` as a scalar tensor), so ``state_dict()`` loads into ``torch.optim.AdamW`` and back
and training continues identically. Each parameter is stepped in place by the kernel of
:mod:`fastopt.functional` on zero-copy views of the tensors (DLPack on the CPU,
``__cuda_array_interface__`` on CUDA), the backend chosen as fastopt chooses it, or ``backend=``.

Beyond torch: before writing anything, each step checks the gradients for inf and NaN (one read at
memory speed, :func:`fastopt.functional.max_abs`) and skips the whole step if it finds one
(``skip_nonfinite=False`` turns that off); skipped steps are counted in ``skipped_steps`` and the
first of a run of them warns. With :class:`torch.amp.GradScaler` the optimizer takes the scaler's
fused path (``_step_supports_amp_scaling``): the scaler's ``found_inf`` skips the step, and its
scale is divided out inside the update kernel, with no unscaling pass of its own.

``flat=True`` (or :func:`flatten`) packs each group's parameters into one contiguous buffer and
their gradients into another (an arena: the parameters are re-pointed at views of it with
``p.data``, the gradients are views that backward accumulates into and :meth:`Optimizer.zero_grad`
zeroes in one fill, whatever ``set_to_none``), and the optimizer state into buffers of the same
layout, so a step is one kernel launch per group. ``state`` keeps torch's format: each
parameter's state tensors are views of the group's buffers. Whatever moved out of the arena since
the last step (a gradient made anew after ``model.zero_grad()``, a loaded state dict, a parameter
re-pointed by ``p.data = ...``) is copied back in before the step; a group where a parameter has no
gradient is stepped parameter by parameter, on the same views.

``torch.bfloat16`` and ``torch.float16`` parameters (on the CPU) keep float32 master weights in
their state (``state[p]["master"]``) and float32 optimizer state: each step updates the master
weights as the float32 step would and writes the parameter rounded to its format in the same pass
(:mod:`fastopt.mixed`; ``rounding="stochastic"`` and ``seed=`` choose the rounding). Their
gradients may be float32 or of the parameter's format.

``torch`` is an optional dependency (the ``oracle`` extra); this module imports it.
"""

import inspect
import math
import warnings

import numpy as np
import torch

from fastopt import lowp
from fastopt._core.dispatch import choose, kernels
from fastopt.optim import functional, mixed
from fastopt.optim._step import max_abs as _max_abs
from fastopt.optim.algorithms import ALGORITHMS

__all__ = ["Optimizer", "flatten"]

#: Parameter dtypes that get float32 master weights.
_LOW_PRECISION = (torch.bfloat16, torch.float16)

#: Constructor arguments of torch's classes that choose how torch computes, not what: accepted
#: for compatibility and kept in the groups (so state dicts carry them), with the values fastopt
#: can honour.
_EXECUTION = {"foreach": (None, False, True), "fused": (None, False, True),
              "capturable": (False,), "differentiable": (False,)}


class Optimizer(torch.optim.Optimizer):
    """Base class: a ``torch.optim.Optimizer`` whose ``step`` runs fastopt's kernel of
    :attr:`algorithm` on every parameter with a gradient (see the module's documentation)."""

    #: The :class:`fastopt.optim.algorithms.Algorithm` of the class (set by each subclass).
    algorithm = None
    #: The torch class whose constructor and state format this class follows.
    torch_class = None
    #: torch.amp.GradScaler passes its scale and found_inf instead of unscaling the gradients.
    _step_supports_amp_scaling = True

    def __init__(self, params, *args, backend=None, skip_nonfinite=True, flat=False,
                 rounding="nearest", seed=0, **kwargs):
        signature = inspect.signature(self.torch_class.__init__)
        try:
            bound = signature.bind(self, params, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}: {exc}") from None
        bound.apply_defaults()
        options = dict(bound.arguments)
        del options["self"], options["params"]
        for key, allowed in _EXECUTION.items():
            if key in options and options[key] not in allowed:
                raise ValueError(f"{key}: fastopt.torch.{type(self).__name__} supports "
                                 f"{' or '.join(map(repr, allowed))}, got {options[key]!r}")
        # torch's own checks of the hyperparameters, from a throwaway instance of its class.
        self.torch_class([torch.zeros(1)], **options)
        self.backend = backend
        self.skip_nonfinite = bool(skip_nonfinite)
        #: Each group's parameters, gradients and state in one buffer each (see the module).
        self.flat = bool(flat)
        self._arenas = {}  # id of a group's first parameter -> its _Arena
        self._rounding, self._seed = mixed.check_options(rounding, seed)
        #: Steps skipped because a gradient was not finite (by fastopt's check or GradScaler's).
        self.skipped_steps = 0
        self._skipping = False
        super().__init__(params, options)

    def add_param_group(self, param_group):
        """torch's ``add_param_group``; with ``flat=True``, the group's parameters are packed
        into an arena (see the module)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            if p.dtype in _LOW_PRECISION and p.device.type != "cpu":
                raise TypeError(f"fastopt.torch.{type(self).__name__}: {p.dtype} parameters "
                                "get float32 master weights on the CPU only; got one on "
                                f"{p.device}")
            if p.dtype in _LOW_PRECISION and not self.algorithm.mixed:
                raise TypeError(f"fastopt.torch.{type(self).__name__}: {p.dtype} parameters "
                                "need float32 master weights, which this optimizer does not keep")
        if self.flat:
            params = group["params"]
            if len({(p.dtype, p.device) for p in params}) != 1:
                raise ValueError(f"fastopt.torch.{type(self).__name__}(flat=True): a group's "
                                 "parameters share one dtype and device, got "
                                 f"{sorted({str(p.dtype) for p in params})}")
            self._arenas[id(params[0])] = _Arena(params)

    @torch.no_grad()
    def zero_grad(self, set_to_none=True):
        """torch's ``zero_grad``; the gradients of a flat group are zeroed in one fill and kept
        in the arena whatever ``set_to_none``."""
        flat = set()
        for group in self.param_groups:
            arena = self._arena(group)
            if arena is not None:
                arena.grad.zero_()
                for k, p in enumerate(arena.params):
                    if p.grad is None or not arena.holds_grad(k):
                        p.grad = arena.grad_view(k)
                flat.update(map(id, group["params"]))
        if not flat:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) not in flat and p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.detach_().requires_grad_(False).zero_()

    def _arena(self, group):
        """The arena of a flat group, while it holds the group's parameters."""
        params = group["params"]
        arena = self._arenas.get(id(params[0])) if params else None
        if arena is None or len(arena.params) != len(params):
            return None
        return arena if all(a is b for a, b in zip(arena.params, params)) else None

    def _kernel(self, group):
        """The fastopt algorithm of a group: Adam's with decoupled weight decay is AdamW's."""
        name = self.algorithm.name
        if name == "adam" and group.get("decoupled_weight_decay"):
            return ALGORITHMS["adamw"]
        return self.algorithm

    def _skip(self, why):
        self.skipped_steps += 1
        if not self._skipping:
            warnings.warn(f"fastopt.torch.{type(self).__name__}: step skipped ({why}); "
                          "skipped_steps counts them", RuntimeWarning, stacklevel=3)
        self._skipping = True

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"fastopt.torch.{type(self).__name__} does not support "
                                       "sparse gradients")
                work.append((group, p))
        found_inf = getattr(self, "found_inf", None)  # set by GradScaler.step
        if found_inf is not None and float(found_inf) != 0.0:
            self._skip("GradScaler found inf or NaN in the gradients")
            return loss
        grad_scale = getattr(self, "grad_scale", None)
        factor = 1.0 if grad_scale is None else 1.0 / float(grad_scale)
        flat = {}
        for group in self.param_groups:
            arena = self._arena(group)
            if arena is not None and arena.gather(self.state):
                flat[id(group)] = arena
        if self.skip_nonfinite and found_inf is None and work:
            grads = [a.grad for a in flat.values()] + [
                p.grad for g, p in work if id(g) not in flat]
            if not math.isfinite(self._max_abs(grads) * factor):
                self._skip("a gradient holds inf or NaN")
                return loss
        for group in self.param_groups:
            if id(group) in flat:
                self._step_arena(group, flat[id(group)], factor)
        for group, p in work:
            if id(group) not in flat:
                self._step_parameter(group, p, factor)
        self._skipping = False
        return loss

    def _max_abs(self, grads):
        """The largest magnitude of the gradients (16-bit ones through their bits)."""
        floats = [g.detach() for g in grads if g.dtype not in _LOW_PRECISION]
        largest = functional.max_abs(floats, backend=self.backend) if floats else 0.0
        for g in grads:
            if g.dtype in _LOW_PRECISION:
                bits = _host(g)
                top = _max_abs(kernels(choose({"grad": bits}, self.backend)), bits)
                if not top <= largest:
                    largest = top
        return largest

    def _step_arena(self, group, arena, factor):
        """One launch over a flat group's buffers (:class:`_Arena`, gathered)."""
        algorithm = self._kernel(group)
        hyper = {k: group[k] for k in algorithm.defaults}
        first = self.state[arena.params[0]]
        step = [self._step_count(algorithm, hyper, self.state[p]) for p in arena.params][0]
        states = arena.states(algorithm, hyper, self.state)
        host = {name: float(first[name]) for name in algorithm.host_state}
        self._run(algorithm, hyper, arena.data, arena.grad, states, arena.master, step, factor,
                  host)
        for p in arena.params:
            self._count(algorithm, hyper, self.state[p], step, host)

    def _step_parameter(self, group, p, factor):
        algorithm = self._kernel(group)
        hyper = {k: group[k] for k in algorithm.defaults}
        state = self.state[p]
        low = p.dtype in _LOW_PRECISION
        if low and state.get("master") is None:
            state["master"] = p.detach().float()
        step = self._step_count(algorithm, hyper, state)
        states = []
        for name, used in zip(algorithm.state, algorithm.uses(hyper)):
            if used and state.get(name) is None:
                state[name] = torch.full_like(p, algorithm.initial_state(hyper, name),
                                              dtype=torch.float32 if low else p.dtype,
                                              memory_format=torch.preserve_format)
            states.append(state[name] if used else None)
        host = {name: float(state[name]) for name in algorithm.host_state}
        self._run(algorithm, hyper, p, p.grad, states, state.get("master"), step, factor, host)
        self._count(algorithm, hyper, state, step, host)

    def _step_count(self, algorithm, hyper, state):
        """The count of the step about to run, the state's scalars created at the first."""
        if algorithm.name == "sgd":  # torch's SGD counts no steps: the buffer starts it
            return 2 if state.get("momentum_buffer") is not None else 1
        if state.get("step") is None:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            for name, value in algorithm.initial_host(hyper).items():
                state[name] = torch.tensor(value, dtype=_scalar_dtype())
        return int(state["step"]) + 1

    @staticmethod
    def _count(algorithm, hyper, state, step, host):
        """Records a step that ran in the state's scalars (torch's ``step``, host values)."""
        if algorithm.name != "sgd":
            state["step"].fill_(step)
            for name, value in algorithm.advance(hyper, step, host).items():
                state[name].fill_(value)

    def _run(self, algorithm, hyper, param, grad, states, master, step, factor, host):
        """The step of ``algorithm`` on tensors: fastopt.functional's, or with float32
        ``master`` weights fastopt.mixed's (``param`` then the rounded 16-bit copy)."""
        if master is None:
            # detach(): the same memory, without the autograd flag that DLPack refuses.
            getattr(functional, algorithm.name)(param.detach(), grad, *states, step=step,
                                                grad_scale=factor, backend=self.backend,
                                                **host, **hyper)
            return
        named = {name: _host(s) for name, s in zip(algorithm.state, states) if s is not None}
        getattr(mixed, algorithm.name)(_host(master), _host(grad), model=_host(param), **named,
                                       step=step, grad_scale=factor, backend=self.backend,
                                       rounding=self._rounding, seed=self._seed, **host,
                                       **hyper)


def _host(t):
    """A CPU tensor as a numpy array of the same memory: bfloat16 as its uint16 bits."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return np.from_dlpack(t.view(torch.int16)).view(np.uint16)
    return np.from_dlpack(t)


class _Arena:
    """A flat group's buffers (see the module): the parameters (``data``), their gradients
    (``grad``), float32 master weights for 16-bit parameters (``master``) and the optimizer
    state, each one tensor of the parameters' sizes back to back; parameter k is
    ``[offsets[k], offsets[k] + sizes[k])`` of each."""

    @torch.no_grad()
    def __init__(self, params):
        self.params = list(params)
        self.sizes = [p.numel() for p in self.params]
        self.offsets = [sum(self.sizes[:k]) for k in range(len(self.sizes))]
        first = self.params[0]
        total = sum(self.sizes)
        self.data = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros(total, dtype=first.dtype, device=first.device)
        low = first.dtype in _LOW_PRECISION
        self.state_dtype = torch.float32 if low else first.dtype
        self.master = torch.empty(total, dtype=torch.float32, device=first.device) if low \
            else None
        self._states = {}
        for k, p in enumerate(self.params):
            self._pack_param(k)
            if p.grad is not None:
                self._view(self.grad, k).copy_(p.grad)
                p.grad = self.grad_view(k)

    def _view(self, buffer, k):
        o = self.offsets[k]
        return buffer[o:o + self.sizes[k]].view(self.params[k].shape)

    def grad_view(self, k):
        return self._view(self.grad, k)

    def _holds(self, tensor, buffer, k):
        return (tensor is not None and tensor.data_ptr() == buffer[self.offsets[k]:].data_ptr()
                and tuple(tensor.shape) == tuple(self.params[k].shape))

    def holds_grad(self, k):
        return self._holds(self.params[k].grad, self.grad, k)

    def _pack_param(self, k):
        p = self.params[k]
        view = self._view(self.data, k)
        view.copy_(p.detach())
        p.data = view

    @torch.no_grad()
    def gather(self, state):
        """Brings back into the buffers what left them since the last step; ``False`` when a
        parameter has no gradient or the parameters' step counts differ (stepped one by one)."""
        for k, p in enumerate(self.params):
            if p.grad is None:
                return False
            if not self._holds(p, self.data, k):
                if tuple(p.shape) != tuple(self._view(self.data, k).shape) or (
                        p.dtype != self.data.dtype):
                    raise ValueError(f"a parameter of a flat group is now {p.dtype} of shape "
                                     f"{tuple(p.shape)}; its arena holds {self.data.dtype} of "
                                     f"shape {tuple(self._view(self.data, k).shape)}")
                self._pack_param(k)
            if not self.holds_grad(k):
                self.grad_view(k).copy_(p.grad)
                p.grad = self.grad_view(k)
        steps = {float(state[p]["step"]) if "step" in state.get(p, {}) else None
                 for p in self.params}
        if len(steps) != 1:
            return False
        if self.master is not None:
            self._adopt(state, "master", lambda p: p.detach().float(), self.master)
        return True

    def _adopt(self, state, name, make, buffer):
        """Makes every parameter's ``state[p][name]`` a view of ``buffer``, copying in a tensor
        that is elsewhere (loaded, or made by the step one by one) or ``make(p)``."""
        for k, p in enumerate(self.params):
            own = state[p].get(name) if p in state else None
            if self._holds(own, buffer, k):
                continue
            view = self._view(buffer, k)
            view.copy_(make(p) if own is None else own)
            state[p][name] = view

    @torch.no_grad()
    def states(self, algorithm, hyper, state):
        """The flat state buffers of the step (``None`` where the mode uses none), every
        parameter's state tensors made views of them."""
        out = []
        for name, used in zip(algorithm.state, algorithm.uses(hyper)):
            if not used:
                out.append(None)
                continue
            buffer = self._states.get(name)
            if buffer is None:
                buffer = self._states[name] = torch.empty(
                    self.data.numel(), dtype=self.state_dtype, device=self.data.device)
            fill = algorithm.initial_state(hyper, name)
            self._adopt(state, name, lambda p: torch.full(p.shape, fill, dtype=self.state_dtype),
                        buffer)
            out.append(buffer)
        return out


def flatten(model, optimizer_class, *args, **options):
    """``optimizer_class(model.parameters(), *args, flat=True, **options)``: the optimizer of a
    module (or of an iterable of tensors or group dicts) with each group in one arena (see
    :mod:`fastopt.torch`), e.g. ``flatten(model, fastopt.torch.AdamW, lr=1e-3)``."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    return optimizer_class(params, *args, flat=True, **options)


def _scalar_dtype():
    """torch's dtype for scalar state (``step``): float64 when that is the default dtype."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _make_class(algorithm):
    torch_class = getattr(torch.optim, algorithm.torch)
    doc = (f"``torch.optim.{algorithm.torch}`` stepped by fastopt's ``{algorithm.name}`` kernel: "
           f"torch's constructor, groups and state format (see :mod:`fastopt.torch`), plus "
           f"``backend=`` and ``skip_nonfinite=``.\n\n{torch_class.__doc__ or ''}")
    return type(algorithm.torch, (Optimizer,), {
        "algorithm": algorithm, "torch_class": torch_class, "__doc__": doc,
        "__module__": __name__})


for _algorithm in ALGORITHMS.values():
    if _algorithm.torch and hasattr(torch.optim, _algorithm.torch):
        globals()[_algorithm.torch] = _make_class(_algorithm)
        __all__.append(_algorithm.torch)
del _algorithm
