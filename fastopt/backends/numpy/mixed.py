"""The ``numpy`` backend's mixed-precision steps: the float32 reference, then rounding.

Every optimizer step of :mod:`fastopt.backends` but LAMB has a mixed-precision twin of the same
name here and in the other backends' mixed-precision modules (:mod:`fastopt.backends.cpu.mixed`,
:mod:`fastopt.backends.c.mixed`, :mod:`fastopt.backends.cuda.mixed`), with its arguments in the
same order and these additions::

    <step>(master, grad, grad_fmt, <state arrays...>, state_fmt, model, model_fmt,
           <hyperparameters and host values...>, grad_scale, stochastic, key)

e.g. ``sgd(master, grad, grad_fmt, momentum_buffer, state_fmt, model, model_fmt, lr,
weight_decay, momentum, dampening, nesterov, maximize, first_step, grad_scale, stochastic, key)``.

- ``master``: the float32 master weights (the float32 step's ``param``), updated in place.
- ``grad``, ``grad_fmt``: the gradient's bits and format (:mod:`fastopt.backends.elements.bits`
  codes: 0 float32 as a ``uint32`` view, 1 float16 and 2 bfloat16 as ``uint16``).
- the state arrays and ``state_fmt`` (0 float32 or 2 bfloat16, one format for all of them),
  updated in place and stored rounded to nearest; a state array the mode does not use is empty
  and never touched, as in the float kernels.
- ``model``, ``model_fmt``: the model copy (``uint16`` bits, 1 float16 or 2 bfloat16), written as
  the new master weights rounded to nearest even or, with ``stochastic``, stochastically with
  element ``i``'s random bits ``random32(key, i)``; ``key`` is the step's stream key.
- float hyperparameters are ``numpy.float32``, flags ``bool``, ``key`` an int in ``[0, 2**32)``.

The step computes in float32 exactly as the float32 step of :mod:`fastopt.optim.reference`: every
backend gives the same bits as this one.
"""

import numpy as np

from fastopt.optim import algorithms as _algorithms, reference
from fastopt._core import lowp

_NAMES = {code: name for name, code in lowp.FORMATS.items()}


def _load(bits, fmt):
    if fmt == lowp.FORMATS["float32"]:
        return bits.view(np.float32)
    return lowp.from_bits(bits, _NAMES[fmt])


def _store(target, values, fmt, rounding="nearest", key=0):
    if fmt == lowp.FORMATS["float32"]:
        target[...] = np.asarray(values, np.float32).view(np.uint32)
    else:
        target[...] = lowp.round_bits(values, _NAMES[fmt], rounding, key)


def split_args(algorithm, args):
    """A mixed step's arguments after ``(master, grad, grad_fmt)``, as this module's signatures
    order them: ``(states, state_fmt, model, model_fmt, scalars, stochastic, key)``."""
    count = len(algorithm.state)
    return (args[:count], *args[count:count + 3], args[count + 3:-2], *args[-2:])


def _mixed(algorithm):
    """The mixed-precision step of ``algorithm``: its reference step on decoded float32 values,
    then the state and the model copy stored back."""
    reference_step = getattr(reference, algorithm.kernel)

    def step(master, grad, grad_fmt, *args):
        states, state_fmt, model, model_fmt, hyper, stochastic, key = split_args(algorithm, args)
        decoded = [_load(s, state_fmt) if s.size else s for s in states]
        p, *new = reference_step(master, _load(grad, grad_fmt), *decoded, *hyper)
        master[...] = p
        for target, value in zip(states, new):
            if target.size:  # a state the mode uses
                _store(target, value, state_fmt)
        _store(model, p, model_fmt, "stochastic" if stochastic else "nearest", key)

    step.__name__ = step.__qualname__ = algorithm.kernel
    step.__doc__ = (f"Mixed-precision {algorithm.kernel}: :func:`fastopt.optim.reference."
                    f"{algorithm.kernel}` in float32 on the master weights and the decoded "
                    "gradient and state, then the state stored rounded to nearest and the model "
                    "copy as the new master weights rounded to ``model_fmt``.")
    return step


# Every elementwise algorithm's step (AdamW runs Adam's; LAMB has no mixed-precision step).
for _algorithm in _algorithms.ALGORITHMS.values():
    if not _algorithm.segmented and _algorithm.kernel == _algorithm.name:
        globals()[_algorithm.kernel] = _mixed(_algorithm)
del _algorithm


def sum_of_squares(grad, grad_fmt):
    """:func:`fastopt.optim.reference.sum_of_squares` of gradient bits stored in format
    ``grad_fmt``."""
    return reference.sum_of_squares(_load(grad, grad_fmt))
