"""The arguments of the ``cuda`` backend's optimizer kernels, prepared on the host once per step.

``<algo>(param, grad, ...)`` takes the arguments of the backend step of that name (see
:mod:`fastopt.backends`) and returns the kernel's: flat views of the arrays, then the constants of
the element update (:mod:`fastopt.backends.elements.optim`) in the arrays' dtype. ``1 - beta``
style constants are computed here because in numba ``1 - beta1`` with an integer literal would
promote float32 to float64 and halve the vector width.

The ``cpu`` backend computes the same constants, with the same operations in the same order, in
its kernels' prologue (see :mod:`fastopt.backends.cpu.optim`), from the hyperparameters rounded to
the arrays' dtype in one array: fewer arguments to unbox and no numpy scalar arithmetic per call.
Its results are bit-identical to these (``tests/test_cpu_launch.py``). :func:`flat` serves every
numba backend.
"""

import numpy as np

#: dtype -> (1, 0) in that dtype, made once: a numpy scalar costs a call to build.
_ONE_ZERO = {np.dtype(t): (t(1), t(0)) for t in (np.float16, np.float32, np.float64)}


def flat(a):
    """``a`` as a 1-D array: itself, or a view of a C-contiguous array (on the device, numba
    raises rather than copy)."""
    return a if a.ndim == 1 else a.reshape(a.size)


def signed(grad_scale, maximize):
    # -(g*s) == g*(-s) exactly, so maximize costs nothing inside the loop.
    return -grad_scale if maximize else grad_scale


def decay_and_l2(param, lr, weight_decay, decoupled):
    # Decoupled decay scales p by (1 - lr*wd) and adds no L2 term; L2 scales by 1 and adds wd*p.
    one, zero = _ONE_ZERO[param.dtype]
    return (one - lr * weight_decay, zero) if decoupled else (one, weight_decay)


def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    return (flat(param), flat(grad), flat(momentum_buffer), lr, weight_decay, momentum,
            one - dampening, nesterov, first_step, signed(grad_scale, maximize))


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    return (flat(param), flat(grad), flat(state_sum), weight_decay, eps, clr,
            signed(grad_scale, maximize))


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    return (flat(param), flat(grad), flat(square_avg), flat(grad_avg), flat(momentum_buffer), lr,
            alpha, one - alpha, eps, weight_decay, momentum, centered,
            signed(grad_scale, maximize))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    decay, l2 = decay_and_l2(param, lr, weight_decay, decoupled)
    return (flat(param), flat(grad), flat(exp_avg), flat(exp_avg_sq), flat(max_exp_avg_sq),
            beta1, one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad, step_size,
            bias_correction2_sqrt, signed(grad_scale, maximize))


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    return (flat(param), flat(grad), flat(exp_avg), flat(exp_inf), beta1, one - beta1, beta2, eps,
            weight_decay, clr, signed(grad_scale, maximize))


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    decay, l2 = decay_and_l2(param, lr, weight_decay, decoupled)
    return (flat(param), flat(grad), flat(exp_avg), flat(exp_avg_sq), beta1, one - beta1, beta2,
            one - beta2, eps, l2, decay, grad_coef, exp_avg_coef, bias_correction2,
            signed(grad_scale, maximize))


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    decay, l2 = decay_and_l2(param, lr, weight_decay, decoupled)
    return (flat(param), flat(grad), flat(exp_avg), flat(exp_avg_sq), beta1, one - beta1, beta2,
            one - beta2, eps, l2, decay, rectify, step_size, bias_correction2_sqrt,
            signed(grad_scale, maximize))


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    return (flat(param), flat(grad), flat(square_avg), flat(acc_delta), lr, rho, one - rho, eps,
            weight_decay, signed(grad_scale, maximize))


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    one = _ONE_ZERO[param.dtype][0]
    return (flat(param), flat(grad), flat(exp_avg), lr, beta1, one - beta1, beta2, one - beta2,
            one - lr * weight_decay, signed(grad_scale, maximize))
