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

``torch`` is an optional dependency (the ``oracle`` extra); this module imports it.
"""

import inspect
import math
import warnings

import torch

from fastopt.optim import functional
from fastopt.optim.algorithms import ALGORITHMS

__all__ = ["Optimizer"]

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

    def __init__(self, params, *args, backend=None, skip_nonfinite=True, **kwargs):
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
        #: Steps skipped because a gradient was not finite (by fastopt's check or GradScaler's).
        self.skipped_steps = 0
        self._skipping = False
        super().__init__(params, options)

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
        if self.skip_nonfinite and found_inf is None and work:
            largest = functional.max_abs([p.grad.detach() for _, p in work],
                                         backend=self.backend)
            if not math.isfinite(largest * factor):
                self._skip("a gradient holds inf or NaN")
                return loss
        for group, p in work:
            self._step_parameter(group, p, factor)
        self._skipping = False
        return loss

    def _step_parameter(self, group, p, factor):
        algorithm = self._kernel(group)
        hyper = {k: group[k] for k in algorithm.defaults}
        state = self.state[p]
        fresh = not state
        if fresh and algorithm.name != "sgd":
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            for name, value in algorithm.initial_host(hyper).items():
                state[name] = torch.tensor(value, dtype=_scalar_dtype())
        if algorithm.name == "sgd":  # torch's SGD counts no steps: the buffer starts it
            step = 2 if state.get("momentum_buffer") is not None else 1
        else:
            step = int(state["step"]) + 1
        states = []
        for name, used in zip(algorithm.state, algorithm.uses(hyper)):
            if used and state.get(name) is None:
                state[name] = torch.full_like(p, algorithm.initial_state(hyper, name),
                                              memory_format=torch.preserve_format)
            states.append(state[name] if used else None)
        host = {name: float(state[name]) for name in algorithm.host_state}
        # detach(): the same memory, without the autograd flag that DLPack refuses to export.
        getattr(functional, algorithm.name)(p.detach(), p.grad, *states, step=step,
                                            grad_scale=factor, backend=self.backend, **host,
                                            **hyper)
        if algorithm.name != "sgd":
            state["step"].fill_(step)
            for name, value in algorithm.advance(hyper, step, host).items():
                state[name].fill_(value)


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
