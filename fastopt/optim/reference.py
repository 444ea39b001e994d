r"""The numpy reference: the specification every backend is tested against.

One plain, non-mutating function per algorithm, written straight from the update formula of
``torch.optim`` (single-tensor, ``foreach=False`` semantics), or of the paper for the optimizers
``torch.optim`` lacks (Lion, LAMB). Each takes the kernel contract's arguments (see
:mod:`fastopt.backends`) and returns new arrays ``(param, *state)`` in argument order, leaving its
inputs untouched. State arrays that a mode does not use (the momentum buffer of plain SGD,
``grad_avg`` of uncentered RMSprop, ``max_exp_avg_sq`` without AMSGrad) are returned as given.

Every step first multiplies the gradient by ``grad_scale``, the factor that unscales a
mixed-precision loss scale and applies global-norm clipping (1 when neither is used): :math:`\nabla
\leftarrow s\nabla`.

Arithmetic happens in the arrays' dtype: numpy's weak Python scalars keep float32 arrays float32.

Non-finite values are not checked: they go through IEEE arithmetic. The maxima of AMSGrad and
Adamax are ``numpy.maximum``, where a NaN on either side wins, as in ``torch.maximum``. One known
difference from ``torch.optim``: torch interpolates the first moment (``exp_avg``, and RMSprop's
``grad_avg``) with ``lerp``, :math:`m + (1-\beta)(g - m)`, so an infinite :math:`m` meeting a
finite :math:`g` becomes NaN there (``inf - inf``) and stays infinite here, where the formula
:math:`\beta m + (1-\beta) g` is used.
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
        \hat v &\leftarrow \max(\hat v, v) \text{ (AMSGrad; a NaN on either side wins), else }
            \hat v = v \\
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


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    r"""Adamax, as ``torch.optim.Adamax``; ``clr = lr / (1 - beta1**t)`` is computed on the host.

    .. math::
        g &= \pm\nabla + \lambda\theta \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g \\
        u &\leftarrow \max(\beta_2 u, |g| + \epsilon) \quad \text{(a NaN on either side wins)} \\
        \theta &\leftarrow \theta - \mathrm{clr}\; m / u

    Note that :math:`\epsilon` is added to :math:`|g|` inside the maximum (PyTorch's placement), not
    to the denominator as in Kingma & Ba (2015), Algorithm 2.
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    if weight_decay != 0:
        g = g + weight_decay * param
    m = beta1 * exp_avg + (1 - beta1) * g
    u = np.maximum(beta2 * exp_inf, np.abs(g) + eps)
    return param - clr * m / u, m, u


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    r"""NAdam (Dozat, 2016) with PyTorch's momentum decay schedule, L2 or decoupled weight decay.

    The host computes :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})`, the running product
    :math:`\Pi_t = \prod_{k \le t} \mu_k` (kept per parameter as ``mu_product``),
    ``grad_coef`` :math:`= \eta (1-\mu_t) / (1-\Pi_t)`, ``exp_avg_coef``
    :math:`= \eta\mu_{t+1} / (1-\Pi_t\mu_{t+1})` and ``bias_correction2`` :math:`= 1-\beta_2^t`.

    .. math::
        \theta &\leftarrow \theta (1 - \eta\lambda) \text{ (decoupled)}, \quad
            g = \pm\nabla + \lambda\theta \text{ (otherwise)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        d &= \sqrt{v / (1-\beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \frac{\eta(1-\mu_t)}{1-\Pi_t}\,\frac{g}{d}
            - \frac{\eta\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\,\frac{m}{d}
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    p = param
    if decoupled:
        p = param * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * param
    m = beta1 * exp_avg + (1 - beta1) * g
    v = beta2 * exp_avg_sq + (1 - beta2) * g * g
    denom = np.sqrt(v / bias_correction2) + eps
    return p - grad_coef * g / denom - exp_avg_coef * m / denom, m, v


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    r"""RAdam (Liu et al., 2020), L2 or decoupled weight decay, as ``torch.optim.RAdam``.

    The host computes :math:`\rho_\infty = 2/(1-\beta_2) - 1`,
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)` and decides ``rectify``
    (:math:`\rho_t > 5`) for the step, then ``step_size`` :math:`= \eta r_t / (1-\beta_1^t)` with
    :math:`r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}`
    (:math:`\eta / (1-\beta_1^t)` without rectification) and ``bias_correction2_sqrt``
    :math:`= \sqrt{1-\beta_2^t}`.

    .. math::
        \theta &\leftarrow \theta (1 - \eta\lambda) \text{ (decoupled)}, \quad
            g = \pm\nabla + \lambda\theta \text{ (otherwise)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \theta &\leftarrow \theta - \frac{\eta r_t}{1-\beta_1^t}\, m\,
            \frac{\sqrt{1-\beta_2^t}}{\sqrt{v} + \epsilon} \quad (\rho_t > 5), \quad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, m \quad \text{(otherwise)}
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    p = param
    if decoupled:
        p = param * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * param
    m = beta1 * exp_avg + (1 - beta1) * g
    v = beta2 * exp_avg_sq + (1 - beta2) * g * g
    if rectify:
        return p - step_size * m * (bias_correction2_sqrt / (np.sqrt(v) + eps)), m, v
    return p - step_size * m, m, v


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    r"""Adadelta (Zeiler, 2012) with a learning rate, as ``torch.optim.Adadelta``.

    .. math::
        g &= \pm\nabla + \lambda\theta \\
        v &\leftarrow \rho v + (1-\rho) g^2 \\
        \Delta &= \frac{\sqrt{a + \epsilon}}{\sqrt{v + \epsilon}}\, g \\
        a &\leftarrow \rho a + (1-\rho) \Delta^2 \\
        \theta &\leftarrow \theta - \eta \Delta
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    if weight_decay != 0:
        g = g + weight_decay * param
    v = rho * square_avg + (1 - rho) * g * g
    delta = np.sqrt(acc_delta + eps) / np.sqrt(v + eps) * g
    a = rho * acc_delta + (1 - rho) * delta * delta
    return param - lr * delta, v, a


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    r"""Lion (EvoLved Sign Momentum), Chen et al. (2023), "Symbolic Discovery of Optimization
    Algorithms", arXiv:2302.06675, Program 1, with decoupled weight decay.

    .. math::
        g &= \pm\nabla \\
        c &= \beta_1 m + (1-\beta_1) g \\
        \theta &\leftarrow \theta (1 - \eta\lambda) - \eta\, \operatorname{sign}(c) \\
        m &\leftarrow \beta_2 m + (1-\beta_2) g

    with :math:`\operatorname{sign}(0) = 0`.
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    c = beta1 * exp_avg + (1 - beta1) * g
    p = param * (1 - lr * weight_decay) - lr * np.sign(c)
    return p, beta2 * exp_avg + (1 - beta2) * g



def _sign(x):
    """``torch.sign``: -1, 0 or 1 in the dtype of ``x``, and 0 for NaN (where ``numpy.sign``
    gives NaN)."""
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


def rprop(param, grad, prev, step_size, etaminus, etaplus, step_size_min, step_size_max,
          maximize, grad_scale):
    r"""Rprop (resilient backpropagation, Riedmiller & Braun 1993), as ``torch.optim.Rprop``:
    a step size per element, grown while the gradient keeps its sign and shrunk when it flips.

    .. math::
        g &= \pm\nabla, \quad s = \operatorname{sign}(g\, g_{\mathrm{prev}}) \\
        \Delta &\leftarrow \operatorname{clamp}(\Delta \cdot \{\eta_+ \text{ if } s > 0,\
            \eta_- \text{ if } s < 0,\ 1 \text{ otherwise}\},\ \Delta_{\min}, \Delta_{\max}) \\
        g &\leftarrow 0 \text{ where } s < 0, \quad
        \theta \leftarrow \theta - \operatorname{sign}(g)\, \Delta, \quad g_{\mathrm{prev}}
        \leftarrow g

    ``sign`` is ``torch.sign``'s, 0 for NaN: a NaN gradient leaves the step size and the
    parameter as they were (and is kept as ``prev``, so the next step does not grow or shrink
    either), as in PyTorch. ``step_size`` starts filled with ``lr``, ``prev`` with 0.
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    s = _sign(g * prev)
    one = param.dtype.type(1)
    factor = np.where(s > 0, etaplus, np.where(s < 0, etaminus, one))
    new_step_size = np.minimum(np.maximum(step_size * factor, step_size_min), step_size_max)
    g = np.where(s < 0, param.dtype.type(0), g)
    return param - _sign(g) * new_step_size, g, new_step_size


def asgd(param, grad, ax, weight_decay, maximize, eta, decay, mu, grad_scale):
    r"""ASGD (averaged SGD, Polyak & Juditsky 1992), as ``torch.optim.ASGD``.

    The host keeps per parameter the rate :math:`\eta_t` and the averaging weight :math:`\mu_t`
    (PyTorch's ``eta`` and ``mu`` state, set after each step for the next:
    :math:`\eta_{t+1} = \mathrm{lr} / (1 + \lambda\,\mathrm{lr}\, t)^\alpha`,
    :math:`\mu_{t+1} = 1 / \max(1, t - t_0)`) and passes ``decay`` :math:`= 1 - \lambda\eta_t`.

    .. math::
        g &= \pm\nabla + w\theta, \quad
        \theta \leftarrow \theta\,(1 - \lambda\eta_t) - \eta_t\, g \\
        \bar\theta &\leftarrow \theta \text{ if } \mu_t = 1, \text{ else }
            \bar\theta + (\theta - \bar\theta)\,\mu_t
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    if weight_decay != 0:
        g = g + weight_decay * param
    p = param * decay - eta * g
    return p, (p.copy() if mu == 1 else ax + (p - ax) * mu)

def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    r"""LAMB, You et al. (2019), "Large Batch Optimization for Deep Learning: Training BERT in 76
    minutes", arXiv:1904.00962, Algorithm 2, with a trust ratio per tensor.

    ``segment_offsets`` (int64, nondecreasing, ``[0, ..., param.size]``) splits the flattened
    ``param`` into tensors (segments): ``[0, param.size]`` for one tensor, an arena's offsets for
    many. ``bias_correction1 = 1 - beta1**t`` and ``bias_correction2 = 1 - beta2**t`` come from the
    host.

    .. math::
        g &= \pm\nabla, \quad m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
            v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        u &= \frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon} + \lambda\theta \\
        r &= \lVert\theta\rVert / \lVert u\rVert \text{ per segment } (r = 1 \text{ when either
            norm is 0 or NaN}) \\
        \theta &\leftarrow \theta - (\eta r)\, u

    The squared norms are accumulated in float64 and :math:`\eta r` is computed in float64, then
    rounded to the arrays' dtype. Choices where implementations differ: bias correction is on
    (as in the paper's Algorithm 2); the trust ratio is not clamped (:math:`\phi` is the identity);
    :math:`\epsilon` is added outside the square root; weight decay applies to every tensor (give
    biases and norms a parameter group with ``weight_decay=0`` to exclude them).
    """
    g = -(grad * grad_scale) if maximize else grad * grad_scale
    m = beta1 * exp_avg + (1 - beta1) * g
    v = beta2 * exp_avg_sq + (1 - beta2) * g * g
    u = (m / bias_correction1) / (np.sqrt(v / bias_correction2) + eps)
    if weight_decay != 0:
        u = u + weight_decay * param
    flat_p, flat_u = param.reshape(-1), u.reshape(-1)
    new = flat_p.copy()
    for lo, hi in zip(segment_offsets[:-1], segment_offsets[1:]):
        p_norm = np.sqrt(np.sum(np.square(flat_p[lo:hi], dtype=np.float64)))
        u_norm = np.sqrt(np.sum(np.square(flat_u[lo:hi], dtype=np.float64)))
        r = p_norm / u_norm if p_norm > 0 and u_norm > 0 else 1.0
        step = param.dtype.type(np.float64(lr) * r)
        new[lo:hi] = flat_p[lo:hi] - step * flat_u[lo:hi]
    return new.reshape(param.shape), m, v


def sum_of_squares(grad):
    """The sum of the squared gradient elements, accumulated in float64 (the squared global
    norm)."""
    return float(np.sum(np.square(grad, dtype=np.float64)))


def max_abs(grad):
    r"""The largest magnitude :math:`\max_i |g_i|` of the gradient elements: ``inf`` when one is
    infinite, ``nan`` when one is NaN, 0 when there are none. Exact (no rounding), so every backend
    agrees with it; the non-finite check of a step."""
    return float(np.max(np.abs(grad), initial=0.0))
