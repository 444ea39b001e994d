"""The steady step of an optimizer class: the same arrays as at its previous step, only new scalars.

Most training loops step the same parameter, gradient and state arrays every time. Once a step of
an optimizer has run with every parameter's kernel already bound (no check, view or binding was
new), :func:`plan` records what that step used; the next step with the same gradient objects runs
from the record: per group, its identity, its parameters' and its hyperparameter values compared
with the record (changed values are validated, as the full step validates them); per parameter,
the identities of its state arrays, the non-finite check when the optimizer does it, the step's
scalars and the bound kernel. When anything else differs, or the check finds a gradient not
finite, :meth:`SteadyPlan.run` returns ``False`` having written nothing, and the full step of
:class:`fastopt.optim.optimizers.Optimizer` runs instead, checking everything and deciding what
to do, as it would have without the record.

The record applies to steps without ``grad_scale``, ``max_norm`` or ``return_norm``, of
algorithms without host scalars (NAdam's and ASGD's advance on the host), and of parameters
without master weights (mixed precision has its own launch).
"""

import operator

import numpy as np

#: Gradient dtype -> the magnitude bits of its largest finite value: any larger are inf or NaN.
_LARGEST_FINITE_BITS = {np.dtype(np.float32): 0x7F7FFFFF,
                        np.dtype(np.float64): 0x7FEFFFFFFFFFFFFF,
                        np.dtype(np.float16): 0x7BFF,
                        np.dtype(np.uint16): 0x7F7F}  # bfloat16 bits


class SteadyPlan:
    """What a steady step of one optimizer uses: the gradients given, the state dict, and per
    group ``[group dict, raw hyperparameters, validated ones, parameter list, uses, entries]``,
    per entry ``(index, state dict, state array names, those arrays, run, magnitude bits,
    largest finite bits)``."""

    __slots__ = ("grads", "given", "groups", "state", "raw")

    def __init__(self, opt, given, grads, groups):
        self.given, self.grads, self.groups, self.state = given, grads, groups, opt.state
        self.raw = _raw_getter(opt.algorithm)

    def run(self, opt, grads, check):
        """Steps ``opt`` as its full step would and returns ``True``, or returns ``False`` having
        written nothing when the record does not apply (or ``check`` found a gradient not
        finite)."""
        is_ = operator.is_
        if type(grads) is list:  # the same objects in it (the list may be refilled in place)
            if len(grads) != len(self.grads) or not all(map(is_, grads, self.grads)):
                return False
        elif grads is not self.given:
            return False
        states, groups = opt.state, opt.param_groups
        if states is not self.state or len(groups) != len(self.groups):
            return False
        scalars, raw_of = opt.algorithm.scalars, self.raw
        runs = []
        for group, record in zip(groups, self.groups):
            old, raw, hyper, params, uses, entries = record
            if group is not old or len(group["params"]) != len(params) \
                    or not all(map(is_, group["params"], params)):
                return False
            now = raw_of(group)
            if now != raw:  # changed (a schedule): validated again, remembered
                hyper, now_uses = opt._checked_hyper(self.groups.index(record), group)
                if now_uses != uses:
                    return False
                record[1], record[2] = _snapshot(now), hyper
            last = None
            for index, state, names, arrays, run, bits, largest in entries:
                if states.get(index) is not state or not all(map(is_, map(state.get, names),
                                                                 arrays)):
                    return False
                if check and bits() > largest:
                    return False  # not finite: the full step reports and skips it
                step = state["step"] + 1
                if step != last:
                    last, values = step, scalars(hyper, step, False)
                runs.append((state, step, run, values))
        for state, step, run, values in runs:  # everything checked: now write
            run(*values, 1.0)
            state["step"] = step
        return True


def plan(opt, given, grads):
    """The :class:`SteadyPlan` of ``opt``'s step that just ran with ``given`` (``grads`` as a
    list, one per parameter), every kernel already bound; ``None`` where the record does not
    apply."""
    algorithm = opt.algorithm
    if algorithm.host_state:
        return None
    bound, states = opt._bound, opt.state
    groups, index = [], 0
    for g_index, group in enumerate(opt.param_groups):
        params = list(group["params"])
        hyper, uses = opt._checked_hyper(g_index, group)
        entries = []
        for param, grad in zip(params, grads[index:index + len(params)]):
            if grad is not None:
                b = bound.get(index)
                state = states.get(index)
                if b is None or state is None or "master" in state \
                        or not b.matches(param, grad, uses, state):
                    return None
                largest = _LARGEST_FINITE_BITS.get(np.dtype(b.arrays[1].dtype))
                if largest is None or _largest_value(b.arrays[1].dtype) > opt._largest:
                    return None  # the check's overflow test needs the full step
                names = tuple(b.states)
                entries.append((index, state, names, tuple(b.states.values()), b.run,
                                b.bits, largest))
            index += 1
        groups.append([group, _snapshot(_raw_getter(algorithm)(group)), hyper, params, uses,
                       entries])
    return SteadyPlan(opt, given, list(grads), groups)


def _raw_getter(algorithm):
    """``group -> tuple of its values named in algorithm.defaults``."""
    names = tuple(algorithm.defaults)
    if len(names) == 1:
        return lambda group: (group[names[0]],)
    return operator.itemgetter(*names)


def _snapshot(raw):
    """Raw hyperparameter values with lists (betas) as tuples, which no list equals: a list
    changed in place is seen at the next step."""
    return tuple([tuple(v) if type(v) is list else v for v in raw])


def _largest_value(dtype):
    dtype = np.dtype(dtype)
    return float(np.finfo(np.float32 if dtype == np.uint16 else dtype).max)

