"""Optimizer classes over lists of arrays, with PyTorch's parameter groups and state dicts.

``opt = fastopt.Adam(params, lr=1e-3)`` then ``opt.step(grads)`` updates the arrays in place, one
kernel launch per array. ``params`` is a list of arrays or a list of parameter-group dicts
(``{"params": [...], "lr": ...}``); ``grads`` lists one gradient per parameter in ``param_groups``
order (``None`` skips that parameter for this step, as a missing ``.grad`` does in PyTorch).
Changing a group's hyperparameters between steps takes effect at the next step without recompiling:
they reach the kernels as runtime scalars.

The user's arrays are updated in place, never copied: numpy arrays as they are, DLPack host arrays
(CPU torch tensors) and ``__cuda_array_interface__`` arrays (CuPy, torch CUDA, numba) through
zero-copy views. State lives beside the parameters (host or device).
"""

import copy

import numpy as np

from . import _algorithms as alg
from . import _memory
from ._dispatch import choose, is_device_array, kernels
from ._step import check_hyper, launch
from ._validate import check_arrays


class Optimizer:
    """Base class: parameter groups, lazily created per-parameter state, ``step``, state dicts."""

    algorithm = None  # an :class:`fastopt._algorithms.Algorithm`, set by each subclass

    def __init__(self, params, backend=None, **defaults):
        self.defaults = check_hyper(self.algorithm, defaults)
        self.param_groups = []
        self.state = {}  # parameter index (in param_groups order) -> {"step": int, arrays...}
        self._views = []  # (user's object, checked zero-copy view) per parameter
        self._requested_backend = backend
        if hasattr(params, "shape") or is_device_array(params):
            params = [params]
        groups = list(params)
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
        params = [params] if hasattr(params, "shape") or is_device_array(params) else list(params)
        if not params:
            raise ValueError("param_group['params']: got an empty list")
        if any(p is q for p in params for q, _ in self._views):
            raise ValueError("param_group['params']: some parameters appear in more than one group")
        new = {**self.defaults, **group, "params": params}
        check_hyper(self.algorithm, new)
        start = len(self._views)
        names = [f"params[{start + i}]" for i in range(len(params))]
        everything = dict(zip(names, params))
        everything.update((f"params[{i}]", p) for i, (p, _) in enumerate(self._views))
        backend = choose(everything, self._requested_backend)
        on_device = backend == "cuda"
        views = [check_arrays({name: p}, {name}, on_device)[0] for name, p in zip(names, params)]
        self._backend = backend
        self._views.extend(zip(params, views))
        self.param_groups.append(new)

    def step(self, grads):
        """Updates every parameter that has a gradient; checks everything before writing."""
        grads = [grads] if hasattr(grads, "shape") or is_device_array(grads) else list(grads)
        if len(grads) != len(self._views):
            raise ValueError(f"grads: expected {len(self._views)} gradients (one per parameter, "
                             f"in param_groups order), got {len(grads)}")
        module = kernels(self._backend)
        plan = []
        index = 0
        for g_index, group in enumerate(self.param_groups):
            try:
                hyper = check_hyper(self.algorithm, group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{g_index}]: {exc}") from None
            for param in group["params"]:
                if grads[index] is not None:
                    plan.append(self._prepare(index, param, grads[index], hyper))
                index += 1
        for index, new_state, step, arrays, scalars in plan:  # everything checked: now write
            state = self.state.setdefault(index, {})
            state.update(new_state)
            state["step"] = step
            launch(module, self.algorithm, arrays, scalars)

    def _prepare(self, index, param, grad, hyper):
        """The kernel call for one parameter, creating (but not yet storing) missing state."""
        on_device = self._backend == "cuda"
        user_param, view = self._views[index]
        if param is not user_param:  # the user replaced it in param_groups
            view = check_arrays({f"params[{index}]": param}, {f"params[{index}]"}, on_device)[0]
            self._views[index] = (param, view)
        pname, gname = f"params[{index}]", f"grads[{index}]"
        choose({pname: view, gname: grad}, self._backend)
        arrays = check_arrays({pname: view, gname: grad}, {pname}, on_device)
        state = self.state.get(index, {})
        new_state = {}
        fresh = False
        for name, used in zip(self.algorithm.state, self.algorithm.uses(hyper)):
            if not used:
                arrays.append(_memory.empty(on_device, view.dtype))
                continue
            if name not in state:
                fill = self.algorithm.initial_state(hyper, name)
                new_state[name] = _memory.full(on_device, view.shape, view.dtype, fill)
                fresh = True
            arrays.append(new_state.get(name, state.get(name)))
        step = state.get("step", 0) + 1
        return index, new_state, step, arrays, self.algorithm.scalars(hyper, step, fresh)

    def state_dict(self):
        """A copy of the state as ``{"state": {index: {...}}, "param_groups": [...]}``.

        State arrays are copied to numpy whatever the backend, so a state dict loads on any backend.
        """
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            groups.append({**saved, "params": list(range(start, start + n))})
            start += n
        state = {i: {k: (v if k == "step" else _memory.to_host(v)) for k, v in s.items()}
                 for i, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores a :meth:`state_dict`; checks all of it first and changes nothing if it fails."""
        try:
            saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        except (TypeError, KeyError):
            raise ValueError("state_dict: expected a dict with 'state' and 'param_groups'") from None
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
            if not isinstance(index, int) or not 0 <= index < len(params):
                raise ValueError(f"state_dict['state']: no parameter with index {index!r}")
            new_state[index] = self._checked_state(index, params[index], saved, on_device)
        self.param_groups[:] = new_groups
        self.state = new_state

    def _checked_state(self, index, param, saved, on_device):
        where = f"state_dict['state'][{index}]"
        shape = tuple(param.shape)
        dtype = np.dtype(self._views[index][1].dtype)
        out = {}
        for name, value in saved.items():
            if name == "step":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{where}['step']: expected an int >= 0, got {value!r}")
                out[name] = value
                continue
            if name not in self.algorithm.state:
                raise ValueError(f"{where}: unknown state {name!r} for {self.algorithm.name}")
            host = _memory.to_host(value)
            if host.shape != shape or host.dtype != dtype:
                raise ValueError(f"{where}[{name!r}]: expected shape {shape} and dtype {dtype}, "
                                 f"got {host.shape} {host.dtype}")
            out[name] = _memory.from_host(on_device, host)
        return out

    def __repr__(self):
        groups = ", ".join(
            "{" + ", ".join(f"{k}={v!r}" for k, v in g.items() if k != "params")
            + f", params={len(g['params'])}" + "}" for g in self.param_groups)
        return f"{type(self).__name__}(backend={self._backend!r}, groups=[{groups}])"



class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

    A drop-in for ``torch.optim.SGD`` (same hyperparameters, defaults and update); plain full-batch
    gradient descent is ``SGD(params, lr)`` with full-batch gradients. Formula and the mapping from
    the lecture notes' velocity form: :func:`fastopt.functional.sgd`.
    """

    algorithm = alg.SGD

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False, backend=None):
        super().__init__(params, backend, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``; formula: :func:`fastopt.functional.adagrad`."""

    algorithm = alg.ADAGRAD

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, maximize=False, backend=None):
        super().__init__(params, backend, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps,
                         maximize=maximize)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum, as ``torch.optim.RMSprop``; formula:
    :func:`fastopt.functional.rmsprop`."""

    algorithm = alg.RMSPROP

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False, backend=None):
        super().__init__(params, backend, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered, maximize=maximize)


class Adam(Optimizer):
    """Adam with L2 weight decay, optionally AMSGrad, as ``torch.optim.Adam``; formula:
    :func:`fastopt.functional.adam`."""

    algorithm = alg.ADAM

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, backend=None):
        super().__init__(params, backend, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``; formula:
    :func:`fastopt.functional.adamw`."""

    algorithm = alg.ADAMW

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, backend=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         backend=backend)
