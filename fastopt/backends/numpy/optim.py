"""The ``numpy`` backend: the reference formulas of :mod:`fastopt.optim.reference`, applied in place."""

from fastopt.optim import reference

#: The reference computes in the dtype of the scalars it is given: they come cast to the arrays'.
TAKES_PYTHON_FLOATS = False


def _write_back(outputs, targets):
    for target, value in zip(targets, outputs):
        if target is not value and target.size:
            target[...] = value


def sgd(param, grad, momentum_buffer, *hyper):
    _write_back(reference.sgd(param, grad, momentum_buffer, *hyper), (param, momentum_buffer))


def adagrad(param, grad, state_sum, *hyper):
    _write_back(reference.adagrad(param, grad, state_sum, *hyper), (param, state_sum))


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, *hyper):
    _write_back(reference.rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, *hyper),
                (param, square_avg, grad_avg, momentum_buffer))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *hyper):
    _write_back(reference.adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *hyper),
                (param, exp_avg, exp_avg_sq, max_exp_avg_sq))


def adamax(param, grad, exp_avg, exp_inf, *hyper):
    _write_back(reference.adamax(param, grad, exp_avg, exp_inf, *hyper), (param, exp_avg, exp_inf))


def nadam(param, grad, exp_avg, exp_avg_sq, *hyper):
    _write_back(reference.nadam(param, grad, exp_avg, exp_avg_sq, *hyper),
                (param, exp_avg, exp_avg_sq))


def radam(param, grad, exp_avg, exp_avg_sq, *hyper):
    _write_back(reference.radam(param, grad, exp_avg, exp_avg_sq, *hyper),
                (param, exp_avg, exp_avg_sq))


def adadelta(param, grad, square_avg, acc_delta, *hyper):
    _write_back(reference.adadelta(param, grad, square_avg, acc_delta, *hyper),
                (param, square_avg, acc_delta))


def lion(param, grad, exp_avg, *hyper):
    _write_back(reference.lion(param, grad, exp_avg, *hyper), (param, exp_avg))


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, *hyper):
    _write_back(reference.lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, *hyper),
                (param, exp_avg, exp_avg_sq))


#: The sum of squares, accumulated in float64 (see :func:`fastopt.optim.reference.sum_of_squares`).
sum_of_squares = reference.sum_of_squares


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


sgd_with_norm = _with_norm(sgd)
adagrad_with_norm = _with_norm(adagrad)
rmsprop_with_norm = _with_norm(rmsprop)
adam_with_norm = _with_norm(adam)
adamax_with_norm = _with_norm(adamax)
nadam_with_norm = _with_norm(nadam)
radam_with_norm = _with_norm(radam)
adadelta_with_norm = _with_norm(adadelta)
lion_with_norm = _with_norm(lion)
lamb_with_norm = _with_norm(lamb)
