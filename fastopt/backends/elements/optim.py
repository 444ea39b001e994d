r"""The element updates of the optimizer steps, written once for numba's CPU and CUDA targets.

One function per algorithm, named as its kernel, with one signature for all of them::

    <algo>(p, g, s, c, uses) -> (p, s)

It takes one parameter value ``p``, the gradient value as stored ``g``, the tuple ``s`` of the
algorithm's state values (``Algorithm.state`` order) and the tuple ``c`` of its element constants
(``Algorithm.constants``, derived from the step's hyperparameters once per launch), and returns the
new parameter value and state values. ``uses`` says which state arrays the step reads and writes
(``Algorithm.uses``): a kernel specializes on it, so it is a compile-time constant there, and an
unused entry of ``s`` holds a placeholder the element ignores. An element reads and writes no
memory: the float kernels load and store float32/float64 arrays around it, the mixed-precision
kernels decode 16-bit values into float32 and encode the results (:mod:`.mixed`), and the CUDA
capturable steps read their constants from the device (:mod:`fastopt.backends.cuda.capturable`).

The contract of every element:

- values and constants are of one float type, the arrays' (float32 or float64), and no integer
  literal enters the arithmetic (in numba, ``1 - x`` with a float32 ``x`` is float64), which is
  why ``1 - beta`` style constants are computed by ``Algorithm.constants``;
- the gradient enters as ``d = g * scale``: ``scale`` unscales and clips it and carries the sign of
  ``maximize`` (``-(g*s) == g*(-s)`` exactly);
- the operations, and their order, are those of :mod:`fastopt.optim.reference`; the maxima of
  Adamax and AMSGrad are ``numpy.maximum``'s (a NaN on either side wins, as in ``torch.optim``).

:func:`make_elements` compiles them with a target's device-function decorator
(``numba.njit(error_model="numpy")`` on the CPU, ``cuda.jit(device=True)`` on CUDA) and returns
them as a module object, so that kernels call ``E.adam(...)``. :data:`ELEMENTS` maps each kernel
name to its Python function. LAMB, whose update needs per-tensor norms first, has two elements
used by two passes: :func:`lamb_moments` and :func:`lamb_direction`.
"""

import math
import types

from fastopt.optim.algorithms import ALGORITHMS


def maximum(a, b):
    """``numpy.maximum(a, b)`` on scalars: ``a`` when it is NaN or not below ``b``, else ``b``"""
    return a if a >= b or a != a else b


def minimum(a, b):
    """``numpy.minimum(a, b)`` on scalars whose ``b`` is not NaN: ``a`` when it is NaN or not
    above ``b``, else ``b``"""
    return a if a <= b or a != a else b


def sgd(p, g, s, c, uses):
    r"""SGD: ``s = (momentum_buffer,)``, used when ``momentum != 0`` and ignored on the first
    step.

    .. math::
        d &= s g + \lambda p \\
        b &\leftarrow d \text{ (first step) or } \mu b + (1-\tau) d \quad (\mu \ne 0) \\
        d &\leftarrow d + \mu b \text{ (Nesterov) or } b \quad (\mu \ne 0) \\
        p &\leftarrow p - \eta d
    """
    (b,) = s
    lr, weight_decay, momentum, one_minus_dampening, nesterov, first_step, scale = c
    d = g * scale
    if weight_decay != 0:
        d += weight_decay * p
    if uses[0]:
        b = d if first_step else momentum * b + one_minus_dampening * d
        d = d + momentum * b if nesterov else b
    return p - lr * d, (b,)


def adagrad(p, g, s, c, uses):
    r"""Adagrad: ``s = (sum,)``.

    .. math::
        d = s g + \lambda p, \quad S \leftarrow S + d^2, \quad
        p \leftarrow p - \mathrm{clr}\; d / (\sqrt{S} + \epsilon)
    """
    (state_sum,) = s
    weight_decay, eps, clr, scale = c
    d = g * scale
    if weight_decay != 0:
        d += weight_decay * p
    state_sum = state_sum + d * d
    return p - clr * d / (math.sqrt(state_sum) + eps), (state_sum,)


def rmsprop(p, g, s, c, uses):
    r"""RMSprop: ``s = (square_avg, grad_avg, momentum_buffer)``, ``grad_avg`` used when centered,
    the buffer when ``momentum > 0``.

    .. math::
        d &= s g + \lambda p, \quad v \leftarrow \alpha v + (1-\alpha) d^2 \\
        \bar g &\leftarrow \alpha \bar g + (1-\alpha) d \quad\text{(centered)} \\
        q &= \sqrt{v - \bar g^2} + \epsilon \text{ (centered) or } \sqrt{v} + \epsilon \\
        b &\leftarrow \mu b + d / q, \; p \leftarrow p - \eta b \quad (\mu > 0), \quad
        p \leftarrow p - \eta d / q \quad (\mu = 0)
    """
    square_avg, grad_avg, b = s
    lr, alpha, one_minus_alpha, eps, weight_decay, momentum, scale = c
    d = g * scale
    if weight_decay != 0:
        d += weight_decay * p
    square_avg = alpha * square_avg + one_minus_alpha * d * d
    v = square_avg
    if uses[1]:
        grad_avg = alpha * grad_avg + one_minus_alpha * d
        v = v - grad_avg * grad_avg
    denom = math.sqrt(v) + eps
    if uses[2]:
        b = momentum * b + d / denom
        p = p - lr * b
    else:
        p = p - lr * d / denom
    return p, (square_avg, grad_avg, b)


def adam(p, g, s, c, uses):
    r"""Adam/AdamW: ``s = (exp_avg, exp_avg_sq, max_exp_avg_sq)``, the last used with AMSGrad.
    AdamW has ``decay = 1 - lr*wd`` and ``weight_decay = 0``, Adam ``decay = 1``.

    .. math::
        x &= \text{decay}\; p, \quad d = s g + \lambda x \\
        m &\leftarrow \beta_1 m + (1-\beta_1) d \\
        v &\leftarrow \beta_2 v + (1-\beta_2) d^2 \\
        \hat v &= \max(v_{\max}, v) \to v_{\max} \text{ (AMSGrad), else } v \\
        p &\leftarrow x - \text{step\_size}\;
            m / (\sqrt{\hat v} / \sqrt{1-\beta_2^t} + \epsilon)
    """
    m, v, vmax = s
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, step_size,
     bias_correction2_sqrt, scale) = c
    d = g * scale
    x = p * decay
    if weight_decay != 0:
        d += weight_decay * x
    m = beta1 * m + one_minus_beta1 * d
    v = beta2 * v + one_minus_beta2 * d * d
    v_hat = v
    if uses[2]:
        vmax = maximum(vmax, v)
        v_hat = vmax
    return x - step_size * m / (math.sqrt(v_hat) / bias_correction2_sqrt + eps), (m, v, vmax)


def adamax(p, g, s, c, uses):
    r"""Adamax: ``s = (exp_avg, exp_inf)``.

    .. math::
        d = s g + \lambda p, \quad m \leftarrow \beta_1 m + (1-\beta_1) d, \quad
        u \leftarrow \max(\beta_2 u, |d| + \epsilon), \quad
        p \leftarrow p - \mathrm{clr}\; m / u
    """
    m, u = s
    beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale = c
    d = g * scale
    if weight_decay != 0:
        d += weight_decay * p
    m = beta1 * m + one_minus_beta1 * d
    u = maximum(beta2 * u, abs(d) + eps)
    return p - clr * m / u, (m, u)


def nadam(p, g, s, c, uses):
    r"""NAdam: ``s = (exp_avg, exp_avg_sq)``; ``decay`` as in :func:`adam`.

    .. math::
        x &= \text{decay}\; p, \quad d = s g + \lambda x \\
        m &\leftarrow \beta_1 m + (1-\beta_1) d, \quad v \leftarrow \beta_2 v + (1-\beta_2) d^2,
        \quad q = \sqrt{v / (1-\beta_2^t)} + \epsilon \\
        p &\leftarrow x - \text{grad\_coef}\; d / q - \text{exp\_avg\_coef}\; m / q
    """
    m, v = s
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, grad_coef,
     exp_avg_coef, bias_correction2, scale) = c
    d = g * scale
    x = p * decay
    if weight_decay != 0:
        d += weight_decay * x
    m = beta1 * m + one_minus_beta1 * d
    v = beta2 * v + one_minus_beta2 * d * d
    denom = math.sqrt(v / bias_correction2) + eps
    return x - grad_coef * d / denom - exp_avg_coef * m / denom, (m, v)


def radam(p, g, s, c, uses):
    r"""RAdam: ``s = (exp_avg, exp_avg_sq)``; ``decay`` as in :func:`adam`.

    .. math::
        x &= \text{decay}\; p, \quad d = s g + \lambda x \\
        m &\leftarrow \beta_1 m + (1-\beta_1) d, \quad
            v \leftarrow \beta_2 v + (1-\beta_2) d^2 \\
        p &\leftarrow x - \text{step\_size}\; m\, \sqrt{1-\beta_2^t} / (\sqrt{v} + \epsilon)
        \text{ (rectified) or } x - \text{step\_size}\; m
    """
    m, v = s
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, rectify, step_size,
     bias_correction2_sqrt, scale) = c
    d = g * scale
    x = p * decay
    if weight_decay != 0:
        d += weight_decay * x
    m = beta1 * m + one_minus_beta1 * d
    v = beta2 * v + one_minus_beta2 * d * d
    if rectify:
        return x - step_size * m * (bias_correction2_sqrt / (math.sqrt(v) + eps)), (m, v)
    return x - step_size * m, (m, v)


def adadelta(p, g, s, c, uses):
    r"""Adadelta: ``s = (square_avg, acc_delta)``.

    .. math::
        d &= s g + \lambda p, \quad v \leftarrow \rho v + (1-\rho) d^2, \quad
        \Delta = \sqrt{a + \epsilon} / \sqrt{v + \epsilon}\; d \\
        a &\leftarrow \rho a + (1-\rho) \Delta^2, \quad p \leftarrow p - \eta \Delta
    """
    square_avg, acc_delta = s
    lr, rho, one_minus_rho, eps, weight_decay, scale = c
    d = g * scale
    if weight_decay != 0:
        d += weight_decay * p
    square_avg = rho * square_avg + one_minus_rho * d * d
    delta = math.sqrt(acc_delta + eps) / math.sqrt(square_avg + eps) * d
    acc_delta = rho * acc_delta + one_minus_rho * delta * delta
    return p - lr * delta, (square_avg, acc_delta)


def lion(p, g, s, c, uses):
    r"""Lion: ``s = (exp_avg,)``; ``decay = 1 - lr*wd``.

    .. math::
        d = s g, \quad c = \beta_1 m + (1-\beta_1) d, \quad
        p \leftarrow \text{decay}\; p - \eta \operatorname{sign}(c), \quad
        m \leftarrow \beta_2 m + (1-\beta_2) d

    with :math:`\operatorname{sign}(0) = 0` and :math:`\operatorname{sign}(\mathrm{NaN}) =
    \mathrm{NaN}`.
    """
    (m,) = s
    lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay, scale = c
    d = g * scale
    interpolated = beta1 * m + one_minus_beta1 * d
    one = type(interpolated)(1)  # in its type (numpy.sign has no CUDA version)
    direction = one if interpolated > 0 else (-one if interpolated < 0 else interpolated)
    return p * decay - lr * direction, (beta2 * m + one_minus_beta2 * d,)


def rprop(p, g, s, c, uses):
    r"""Rprop: ``s = (prev, step_size)``; ``sign`` is ``torch.sign``'s (0 for NaN).

    .. math::
        d = s g, \quad r = \operatorname{sign}(d\, d_{\mathrm{prev}}), \quad
        \Delta \leftarrow \operatorname{clamp}(\Delta \cdot \{\eta_+, \eta_-, 1\}_r,
        \Delta_{\min}, \Delta_{\max}) \\
        d \leftarrow 0 \text{ where } r < 0, \quad p \leftarrow p - \operatorname{sign}(d)\,
        \Delta, \quad d_{\mathrm{prev}} \leftarrow d
    """
    prev, step_size = s
    etaminus, etaplus, step_size_min, step_size_max, one, zero, scale = c
    d = g * scale
    product = d * prev
    factor = etaplus if product > zero else (etaminus if product < zero else one)
    step_size = minimum(maximum(step_size * factor, step_size_min), step_size_max)
    if product < zero:
        d = zero
    direction = one if d > zero else (-one if d < zero else zero)
    return p - direction * step_size, (d, step_size)


def asgd(p, g, s, c, uses):
    r"""ASGD: ``s = (ax,)``; ``decay = 1 - lambd*eta``, and ``eta``, ``mu`` this step's.

    .. math::
        d = s g + w p, \quad p \leftarrow \text{decay}\; p - \eta d, \quad
        \bar p \leftarrow p \text{ if } \mu = 1 \text{ else } \bar p + (p - \bar p)\mu
    """
    (ax,) = s
    weight_decay, eta, decay, mu, one, scale = c
    d = g * scale
    if weight_decay != 0:
        d += weight_decay * p
    p = p * decay - eta * d
    return p, (p if mu == one else ax + (p - ax) * mu,)


def lamb_moments(g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, scale):
    r"""LAMB's moments on one element: ``(m, v) -> (m, v)``.

    .. math::
        d = s g, \quad m \leftarrow \beta_1 m + (1-\beta_1) d, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) d^2
    """
    d = g * scale
    return beta1 * m + one_minus_beta1 * d, beta2 * v + one_minus_beta2 * d * d


def lamb_direction(p, m, v, eps, weight_decay, bias_correction1, bias_correction2):
    r"""LAMB's direction on one element, from the updated moments.

    .. math::
        u = \frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon} + \lambda p
    """
    u = (m / bias_correction1) / (math.sqrt(v / bias_correction2) + eps)
    if weight_decay != 0:
        u += weight_decay * p
    return u


#: Kernel name -> the element of the elementwise steps (every algorithm of the table but LAMB's).
ELEMENTS = {a.kernel: globals()[a.kernel] for a in ALGORITHMS.values() if not a.segmented}


def make_elements(device_jit):
    """The elements (and :func:`maximum`, LAMB's two) compiled with ``device_jit``, as attributes
    of a module object; each element finds ``maximum`` compiled for the same target."""
    E = types.ModuleType("fastopt_optim_elements")
    E.maximum, E.minimum = device_jit(maximum), device_jit(minimum)
    for f in (*ELEMENTS.values(), lamb_moments, lamb_direction):
        # A copy whose globals ``maximum`` and ``minimum`` are the compiled ones (numba resolves
        # globals when compiling; a plain Python function cannot be called from a kernel).
        copy = types.FunctionType(f.__code__, {**f.__globals__, "maximum": E.maximum,
                                               "minimum": E.minimum},
                                  f.__name__, f.__defaults__, f.__closure__)
        copy.__doc__, copy.__qualname__ = f.__doc__, f.__qualname__
        setattr(E, f.__name__, device_jit(copy))
    return E
