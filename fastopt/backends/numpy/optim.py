"""The ``numpy`` backend: the reference formulas of :mod:`fastopt.optim.reference`, applied in
place."""

import numpy as np

from fastopt.backends.elements.args import MAGNITUDE_BITS
from fastopt.optim import reference
from fastopt.optim.algorithms import ALGORITHMS

#: The reference computes in the dtype of the scalars it is given: they come cast to the arrays'.
TAKES_PYTHON_FLOATS = False


def _step(algorithm):
    """The backend step of ``algorithm``: its reference run, the results written into ``param``
    and the state arrays (an empty unused one is left alone)."""
    reference_step = getattr(reference, algorithm.kernel)
    arrays = 2 + len(algorithm.state) + algorithm.segmented
    written = (0, *range(2, 2 + len(algorithm.state)))

    def step(*args):
        outputs = reference_step(*args)
        for k, value in zip(written, outputs):
            target = args[k]
            if target is not value and target.size:
                target[...] = value

    step.__name__ = step.__qualname__ = algorithm.kernel
    step.__doc__ = (f":func:`fastopt.optim.reference.{algorithm.kernel}` in place: its first "
                    f"{arrays} arguments are the arrays, the rest its scalars.")
    return step


#: The sum of squares, accumulated in float64 (see :func:`fastopt.optim.reference.sum_of_squares`).
sum_of_squares = reference.sum_of_squares


def max_magnitude_bits(grad):
    """The bits of the largest magnitude of ``grad`` (float32, float64, float16, or bfloat16 bits
    as uint16) as an int, decoded by :func:`fastopt.optim._step.max_abs`; 0 when empty."""
    int_type, mask = MAGNITUDE_BITS[grad.dtype.name]
    return int(np.max(grad.reshape(-1).view(int_type) & np.dtype(int_type).type(mask), initial=0))


def _with_norm(step):
    """``step`` with a last argument ``norm_out``, a float64 array: ``norm_out[0]`` is set to
    :func:`sum_of_squares` of the gradient (as given, before ``grad_scale``)."""
    def step_with_norm(param, grad, *rest):
        *hyper, norm_out = rest
        norm_out[0] = sum_of_squares(grad)
        step(param, grad, *hyper)

    step_with_norm.__name__ = step_with_norm.__qualname__ = step.__name__ + "_with_norm"
    step_with_norm.__doc__ = (f":func:`{step.__name__}` and ``norm_out[0] = sum_of_squares(grad)``"
                              " (``norm_out``: the last argument).")
    return step_with_norm


for _algorithm in ALGORITHMS.values():
    if _algorithm.kernel == _algorithm.name:  # AdamW runs Adam's kernel
        globals()[_algorithm.kernel] = _step(_algorithm)
        globals()[_algorithm.kernel + "_with_norm"] = _with_norm(globals()[_algorithm.kernel])
del _algorithm
