"""A functional step bound to its arrays: validated once, then called once per step.

``step = fastopt.functional.bind("adam", param, grad, exp_avg, exp_avg_sq, lr=1e-3)`` checks the
arrays and hyperparameters as :func:`fastopt.functional.adam` does and returns a :class:`BoundStep`;
``step(t)`` then runs step ``t`` in place, as ``fastopt.functional.adam(param, grad, exp_avg,
exp_avg_sq, step=t, lr=1e-3)`` would, bit for bit. What a call costs is what a step of fixed
buffers needs: the step count's check, the step's scalars and the kernel's launch. A trainer that
writes each gradient into the same buffer, as most do, pays it instead of a full functional call.

A step bound to numpy arrays is bound to their memory: it holds views of them made at binding, and
what is done to the array objects afterwards (a new shape, dtype or read-only flag) does not change
what it reads and writes, as for any numpy view made before. Other arrays (torch tensors, device
arrays) are checked and viewed again at every call, since a tensor can be re-pointed at other memory
under the same object.

Hyperparameters given to a call (``step(t, lr=3e-4)``) replace the bound ones from then on, after
the same checks as the functional API's. A call that raises writes nothing. Host scalars (NAdam's
``mu_product``, ASGD's ``eta`` and ``mu``) live in the bound step: from keyword arguments at
binding, else as of the first call's step with constant hyperparameters, then advanced by each
call.
"""

from itertools import compress

import numpy as np

from fastopt.optim import algorithms as alg
from fastopt.optim._step import bound_launch, checked_step, launch, resolve
from fastopt._core.validate import check_number, check_step


def _algorithm(step):
    """The algorithm of ``step``: a name, or a step of :mod:`fastopt.functional`."""
    from fastopt.optim import functional

    name = step if isinstance(step, str) else getattr(step, "__name__", None)
    algorithm = alg.ALGORITHMS.get(name)
    if algorithm is None or not (isinstance(step, str) or getattr(functional, name) is step):
        raise ValueError(f"step: expected one of {', '.join(alg.ALGORITHMS)} (a name or a "
                         f"fastopt.functional step), got {step!r}")
    return algorithm


def _check_names(algorithm, hyper):
    unknown = set(hyper) - set(algorithm.defaults) - {"grad_scale"}
    if unknown:
        raise TypeError(f"{', '.join(sorted(unknown))}: not a hyperparameter of "
                        f"{algorithm.name} (expected some of {', '.join(algorithm.defaults)}, "
                        "grad_scale)")


class BoundStep:
    """One optimizer step of fixed arrays (see :mod:`fastopt.optim.bound`); ``bound(t, **hyper)``
    runs step ``t`` (1-based) in place and returns ``None``."""

    def __init__(self, step, param, grad, *states, backend=None, segment_offsets=None,
                 **hyper):
        from fastopt.optim.functional import _checked_offsets

        algorithm = _algorithm(step)
        if len(states) > len(algorithm.state):
            raise TypeError(f"states: {algorithm.name} takes at most {len(algorithm.state)} state "
                            f"arrays ({', '.join(algorithm.state)}), got {len(states)}")
        states = (*states, *[None] * (len(algorithm.state) - len(states)))
        given_host = {name: hyper.pop(name) for name in list(hyper) if name in alg.HOST_BOUNDS
                      and hyper[name] is not None}
        _check_names(algorithm, hyper)
        if segment_offsets is not None and not algorithm.segmented:
            raise TypeError(f"segment_offsets: {algorithm.name} has no segments (LAMB has)")
        given_host = alg.check_host(algorithm, given_host)
        self.algorithm = algorithm
        self._raw = {**algorithm.defaults, "grad_scale": 1.0, **hyper}
        self._hyper, self._uses = checked_step(algorithm, self._raw)
        uses = self._uses
        self._grad_scale = check_number("grad_scale", self._raw["grad_scale"], 0.0)
        self._given = (param, grad, *states)
        self._backend = backend
        module, arrays, on_device = resolve(algorithm, self._hyper, param, grad, states, backend,
                                            uses)
        if algorithm.segmented:
            arrays += (_checked_offsets(segment_offsets, arrays[0].size, on_device),)
        if all(type(a) is np.ndarray for a in (param, grad, *compress(states, uses))):
            # Views of our own: nothing done to the given objects can change them.
            self._run = bound_launch(module, algorithm, tuple(a.view() for a in arrays))
        else:
            self._run = None
        self._segments = arrays[-1:] if algorithm.segmented else ()
        self._host = given_host  # completed at the first call (Algorithm.host_at)

    def __call__(self, step, **hyper):
        step = check_step(step)
        changed = self._checked_change(hyper) if hyper else None
        run = self._run or self._resolved()
        if changed:  # everything checked: kept from now on
            self._raw, self._hyper, self._grad_scale = changed
        algorithm = self.algorithm
        if algorithm.host_state:
            host = self._host
            if len(host) < len(algorithm.host_state):  # the rest as of this step
                host = {**algorithm.host_at(self._hyper, step), **host}
            run(*algorithm.scalars(self._hyper, step, step == 1, **host), self._grad_scale)
            self._host = algorithm.advance(self._hyper, step, host)
        else:
            run(*algorithm.scalars(self._hyper, step, step == 1), self._grad_scale)

    def _checked_change(self, hyper):
        """``(raw, validated hyperparameters, grad_scale)`` with ``hyper`` changed, checked."""
        _check_names(self.algorithm, hyper)
        raw = {**self._raw, **hyper}
        checked, uses = checked_step(self.algorithm, raw)
        grad_scale = check_number("grad_scale", raw["grad_scale"], 0.0)
        if uses != self._uses:
            raise ValueError(f"{', '.join(sorted(hyper))}: the change would need other state "
                             "arrays than the bound ones; bind the step again")
        return raw, checked, grad_scale

    def _resolved(self):
        """``run`` of :func:`fastopt.optim._step.bound_launch` for arrays that are not numpy's,
        checked and viewed again as a functional step does; raises as it would."""
        param, grad, *states = self._given
        module, arrays, _ = resolve(self.algorithm, self._hyper, param, grad, states,
                                    self._backend)
        arrays += self._segments

        def run(*scalars):
            launch(module, self.algorithm, arrays, scalars[:-1], scalars[-1])
        return run
