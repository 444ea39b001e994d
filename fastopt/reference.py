r"""The numpy reference: the specification every backend is tested against.

One plain, non-mutating function per algorithm, written straight from the update formula of
``torch.optim`` (single-tensor, ``foreach=False`` semantics). Each takes the kernel contract's
arguments (see :mod:`fastopt.backends`) and returns new arrays ``(param, *state)`` in argument order,
leaving its inputs untouched. State arrays that a mode does not use (the momentum buffer of plain
SGD, ``grad_avg`` of uncentered RMSprop, ``max_exp_avg_sq`` without AMSGrad) are returned as given.

Every step first multiplies the gradient by ``grad_scale``, the factor that unscales a mixed-precision
loss scale and applies global-norm clipping (1 when neither is used): :math:`\nabla \leftarrow s\nabla`.

Arithmetic happens in the arrays' dtype: numpy's weak Python scalars keep float32 arrays float32.
"""

import numpy as np


def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    r"""SGD with optional momentum, dampening, Nesterov and L2 weight decay.

    .. math::
        g &= \pm\nabla + \lambda\theta \\
        b &= g \text{ on the first step, else } \mu b + (1-\tau) g \\
        d &= g + \mu b \text{ (Nesterov) or } b \text{ (heavy ball) or } g \text{ (}\mu = 0\text{)} \\
        \theta &\leftarrow \theta - \eta d
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    if weight_decay != 0:
        g = g + weight_decay * param
    buf = momentum_buffer
    if momentum != 0:
        buf = g.copy() if first_step else momentum * momentum_buffer + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return param - lr * g, buf


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    r"""Adagrad; ``clr = lr / (1 + (step - 1) * lr_decay)`` is computed on the host.

    .. math::
        g &= \pm\nabla + \lambda\theta \\
        s &\leftarrow s + g^2 \\
        \theta &\leftarrow \theta - \mathrm{clr}\; g / (\sqrt{s} + \epsilon)
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    if weight_decay != 0:
        g = g + weight_decay * param
    s = state_sum + g * g
    return param - clr * g / (np.sqrt(s) + eps), s


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    r"""RMSprop, optionally centered and with momentum, as ``torch.optim.RMSprop``.

    .. math::
        g &= \pm\nabla + \lambda\theta \\
        v &\leftarrow \alpha v + (1-\alpha) g^2 \\
        \bar g &\leftarrow \alpha \bar g + (1-\alpha) g \quad\text{(centered)} \\
        d &= \sqrt{v - \bar g^2} + \epsilon \text{ (centered) or } \sqrt{v} + \epsilon \\
        b &\leftarrow \mu b + g / d, \; \theta \leftarrow \theta - \eta b \quad (\mu > 0) \\
        \theta &\leftarrow \theta - \eta g / d \quad (\mu = 0)
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    if weight_decay != 0:
        g = g + weight_decay * param
    v = alpha * square_avg + (1 - alpha) * g * g
    avg = grad_avg
    if centered:
        avg = alpha * grad_avg + (1 - alpha) * g
        denom = np.sqrt(v - avg * avg) + eps
    else:
        denom = np.sqrt(v) + eps
    buf = momentum_buffer
    if momentum > 0:
        buf = momentum * momentum_buffer + g / denom
        return param - lr * buf, v, avg, buf
    return param - lr * g / denom, v, avg, buf


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    r"""Adam (L2 weight decay) or AdamW (``decoupled``), optionally AMSGrad.

    ``step_size = lr / (1 - beta1**t)`` and ``bias_correction2_sqrt = sqrt(1 - beta2**t)`` are
    computed on the host, as ``torch.optim.Adam`` does.

    .. math::
        \theta &\leftarrow \theta (1 - \eta\lambda) \text{ (AdamW)}, \quad
            g = \pm\nabla + \lambda\theta \text{ (Adam)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g \\
        v &\leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \hat v &\leftarrow \max(\hat v, v) \text{ (AMSGrad), else } \hat v = v \\
        \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
            \frac{m}{\sqrt{\hat v} / \sqrt{1-\beta_2^t} + \epsilon}
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    p = param
    if decoupled:
        p = param * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * param
    m = beta1 * exp_avg + (1 - beta1) * g
    v = beta2 * exp_avg_sq + (1 - beta2) * g * g
    vmax = max_exp_avg_sq
    if amsgrad:
        vmax = np.maximum(max_exp_avg_sq, v)
        denom = np.sqrt(vmax) / bias_correction2_sqrt + eps
    else:
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
    return p - step_size * m / denom, m, v, vmax


def sum_of_squares(grad):
    """The sum of the squared gradient elements, accumulated in float64 (the squared global norm)."""
    return float(np.sum(np.square(grad, dtype=np.float64)))
