r"""The element updates of the optimizer steps, written once for numba's CPU and CUDA targets.

:func:`make_elements` compiles them with a target's device-function decorator
(``numba.njit(error_model="numpy")`` on the CPU, ``cuda.jit(device=True)`` on CUDA) and returns
them as a module object, so that compiled kernels call them as ``E.adam_at(...)``.

Two layers per algorithm:

- the **element** (``sgd``, ``adam``, ...) works on scalars: it takes one parameter value, the
  gradient value as stored, and the state values, and returns the new parameter and state values.
  It reads and writes no memory, so a mixed-precision kernel can decode 16-bit values, call it in
  float32 and encode the results;
- the **array step** (``sgd_at``, ``adam_at``, ...) runs the element on index ``i`` of the arrays:
  loads, element, stores. It never touches a state array that the mode does not use (it may be
  empty); such an argument of the element gets a placeholder value that the element ignores.

The contract of every element:

- values and hyperparameters are of one float type, the arrays' (float32 or float64), and flags are
  ``bool``: the results have that type, and no integer literal enters the arithmetic (in numba,
  ``1 - x`` with a float32 ``x`` is float64), which is why ``1 - beta`` style constants are
  arguments;
- the gradient enters as ``d = g * scale``: ``scale`` unscales and clips it and carries the sign of
  ``maximize`` (``-(g*s) == g*(-s)`` exactly);
- the operations, and their order, are those of :mod:`fastopt.optim.reference`; the maxima of Adamax and
  AMSGrad are numba's ``max`` written out (``new if new > old else old``), the same on both
  targets, where ``numpy.maximum`` would also propagate a NaN ``new`` into the state.

LAMB, whose update needs per-tensor norms first, has two elements used by two passes:
:func:`lamb_moments` and :func:`lamb_direction`.
"""

import math
import types


def make_elements(device_jit):
    """The elements and array steps compiled with ``device_jit``, as attributes of a module."""
    E = types.ModuleType("fastopt_optim_elements")

    def sgd(p, g, b, lr, weight_decay, momentum, one_minus_dampening, nesterov, first_step,
            scale):
        r"""SGD on one element: ``(p, b) -> (p, b)``; ``b`` is ignored when ``momentum == 0`` or on
        the first step.

        .. math::
            d &= s g + \lambda p \\
            b &\leftarrow d \text{ (first step) or } \mu b + (1-\tau) d \quad (\mu \ne 0) \\
            d &\leftarrow d + \mu b \text{ (Nesterov) or } b \quad (\mu \ne 0) \\
            p &\leftarrow p - \eta d
        """
        d = g * scale
        if weight_decay != 0:
            d += weight_decay * p
        if momentum != 0:
            b = d if first_step else momentum * b + one_minus_dampening * d
            d = d + momentum * b if nesterov else b
        return p - lr * d, b

    def adagrad(p, g, state_sum, weight_decay, eps, clr, scale):
        r"""Adagrad on one element: ``(p, sum) -> (p, sum)``.

        .. math::
            d = s g + \lambda p, \quad S \leftarrow S + d^2, \quad
            p \leftarrow p - \mathrm{clr}\; d / (\sqrt{S} + \epsilon)
        """
        d = g * scale
        if weight_decay != 0:
            d += weight_decay * p
        state_sum = state_sum + d * d
        return p - clr * d / (math.sqrt(state_sum) + eps), state_sum

    def rmsprop(p, g, square_avg, grad_avg, b, lr, alpha, one_minus_alpha, eps, weight_decay,
                momentum, centered, scale):
        r"""RMSprop on one element: ``(p, v, gbar, b) -> (p, v, gbar, b)``; ``gbar`` is ignored
        unless ``centered``, ``b`` unless ``momentum > 0``.

        .. math::
            d &= s g + \lambda p, \quad v \leftarrow \alpha v + (1-\alpha) d^2 \\
            \bar g &\leftarrow \alpha \bar g + (1-\alpha) d \quad\text{(centered)} \\
            q &= \sqrt{v - \bar g^2} + \epsilon \text{ (centered) or } \sqrt{v} + \epsilon \\
            b &\leftarrow \mu b + d / q, \; p \leftarrow p - \eta b \quad (\mu > 0), \quad
            p \leftarrow p - \eta d / q \quad (\mu = 0)
        """
        d = g * scale
        if weight_decay != 0:
            d += weight_decay * p
        square_avg = alpha * square_avg + one_minus_alpha * d * d
        v = square_avg
        if centered:
            grad_avg = alpha * grad_avg + one_minus_alpha * d
            v = v - grad_avg * grad_avg
        denom = math.sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + d / denom
            p = p - lr * b
        else:
            p = p - lr * d / denom
        return p, square_avg, grad_avg, b

    def adam(p, g, m, v, vmax, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
             weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt, scale):
        r"""Adam/AdamW on one element: ``(p, m, v, vmax) -> (p, m, v, vmax)``; ``vmax`` is
        ignored unless ``amsgrad``. AdamW passes ``decay = 1 - lr*wd`` and ``weight_decay = 0``,
        Adam ``decay = 1``.

        .. math::
            x &= \text{decay}\; p, \quad d = s g + \lambda x \\
            m &\leftarrow \beta_1 m + (1-\beta_1) d \\
            v &\leftarrow \beta_2 v + (1-\beta_2) d^2 \\
            \hat v &= \max(v_{\max}, v) \to v_{\max} \text{ (AMSGrad), else } v \\
            p &\leftarrow x - \text{step\_size}\;
                m / (\sqrt{\hat v} / \sqrt{1-\beta_2^t} + \epsilon)
        """
        d = g * scale
        x = p * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * m + one_minus_beta1 * d
        v = beta2 * v + one_minus_beta2 * d * d
        v_hat = v
        if amsgrad:
            vmax = v if v > vmax else vmax  # max(vmax, v) as numba's max: a NaN vmax stays
            v_hat = vmax
        return x - step_size * m / (math.sqrt(v_hat) / bias_correction2_sqrt + eps), m, v, vmax

    def adamax(p, g, m, u, beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale):
        r"""Adamax on one element: ``(p, m, u) -> (p, m, u)``.

        .. math::
            d = s g + \lambda p, \quad m \leftarrow \beta_1 m + (1-\beta_1) d, \quad
            u \leftarrow \max(\beta_2 u, |d| + \epsilon), \quad
            p \leftarrow p - \mathrm{clr}\; m / u
        """
        d = g * scale
        if weight_decay != 0:
            d += weight_decay * p
        m = beta1 * m + one_minus_beta1 * d
        decayed, fresh = beta2 * u, abs(d) + eps
        u = fresh if fresh > decayed else decayed  # max(decayed, fresh) as numba's max
        return p - clr * m / u, m, u

    def nadam(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
              decay, grad_coef, exp_avg_coef, bias_correction2, scale):
        r"""NAdam on one element: ``(p, m, v) -> (p, m, v)``; ``decay`` as in :func:`adam`.

        .. math::
            x &= \text{decay}\; p, \quad d = s g + \lambda x \\
            m &\leftarrow \beta_1 m + (1-\beta_1) d, \quad v \leftarrow \beta_2 v + (1-\beta_2) d^2,
            \quad q = \sqrt{v / (1-\beta_2^t)} + \epsilon \\
            p &\leftarrow x - \text{grad\_coef}\; d / q - \text{exp\_avg\_coef}\; m / q
        """
        d = g * scale
        x = p * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * m + one_minus_beta1 * d
        v = beta2 * v + one_minus_beta2 * d * d
        denom = math.sqrt(v / bias_correction2) + eps
        return x - grad_coef * d / denom - exp_avg_coef * m / denom, m, v

    def radam(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
              decay, rectify, step_size, bias_correction2_sqrt, scale):
        r"""RAdam on one element: ``(p, m, v) -> (p, m, v)``; ``decay`` as in :func:`adam`.

        .. math::
            x &= \text{decay}\; p, \quad d = s g + \lambda x \\
            m &\leftarrow \beta_1 m + (1-\beta_1) d, \quad
                v \leftarrow \beta_2 v + (1-\beta_2) d^2 \\
            p &\leftarrow x - \text{step\_size}\; m\, \sqrt{1-\beta_2^t} / (\sqrt{v} + \epsilon)
            \text{ (rectified) or } x - \text{step\_size}\; m
        """
        d = g * scale
        x = p * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * m + one_minus_beta1 * d
        v = beta2 * v + one_minus_beta2 * d * d
        if rectify:
            return x - step_size * m * (bias_correction2_sqrt / (math.sqrt(v) + eps)), m, v
        return x - step_size * m, m, v

    def adadelta(p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay, scale):
        r"""Adadelta on one element: ``(p, v, a) -> (p, v, a)``.

        .. math::
            d &= s g + \lambda p, \quad v \leftarrow \rho v + (1-\rho) d^2, \quad
            \Delta = \sqrt{a + \epsilon} / \sqrt{v + \epsilon}\; d \\
            a &\leftarrow \rho a + (1-\rho) \Delta^2, \quad p \leftarrow p - \eta \Delta
        """
        d = g * scale
        if weight_decay != 0:
            d += weight_decay * p
        square_avg = rho * square_avg + one_minus_rho * d * d
        delta = math.sqrt(acc_delta + eps) / math.sqrt(square_avg + eps) * d
        acc_delta = rho * acc_delta + one_minus_rho * delta * delta
        return p - lr * delta, square_avg, acc_delta

    def lion(p, g, m, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay, scale):
        r"""Lion on one element: ``(p, m) -> (p, m)``; ``decay = 1 - lr*wd``.

        .. math::
            d = s g, \quad c = \beta_1 m + (1-\beta_1) d, \quad
            p \leftarrow \text{decay}\; p - \eta \operatorname{sign}(c), \quad
            m \leftarrow \beta_2 m + (1-\beta_2) d

        with :math:`\operatorname{sign}(0) = 0` and :math:`\operatorname{sign}(\mathrm{NaN}) =
        \mathrm{NaN}`.
        """
        d = g * scale
        c = beta1 * m + one_minus_beta1 * d
        one = type(c)(1)  # in c's type (numpy.sign has no CUDA version)
        direction = one if c > 0 else (-one if c < 0 else c)
        return p * decay - lr * direction, beta2 * m + one_minus_beta2 * d

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

    # ---- Array steps: element i of the arrays. The flags that say which state arrays are used
    # (amsgrad, centered, buffered) are constants at a CPU kernel's call sites, so that its loops
    # hold no branch around a load and vectorize.

    def sgd_at(i, p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov,
               first_step, scale, buffered):
        """:func:`sgd` on element i; ``buffered`` (momentum != 0): buf is read and written (its
        value is ignored on the first step)"""
        b = buf[i] if buffered else g[i]  # else a placeholder sgd() ignores
        x, b = E.sgd(p[i], g[i], b, lr, weight_decay, momentum, one_minus_dampening, nesterov,
                     first_step, scale)
        p[i] = x
        if buffered:
            buf[i] = b

    def adagrad_at(i, p, g, state_sum, weight_decay, eps, clr, scale):
        """:func:`adagrad` on element i"""
        p[i], state_sum[i] = E.adagrad(p[i], g[i], state_sum[i], weight_decay, eps, clr, scale)

    def rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered, scale, buffered):
        """:func:`rmsprop` on element i; grad_avg is used only when centered, buf when
        ``buffered`` (momentum > 0)"""
        v = square_avg[i]
        a = grad_avg[i] if centered else v  # else placeholders rmsprop() ignores
        b = buf[i] if buffered else v
        x, v, a, b = E.rmsprop(p[i], g[i], v, a, b, lr, alpha, one_minus_alpha, eps,
                               weight_decay, momentum, centered, scale)
        p[i] = x
        square_avg[i] = v
        if centered:
            grad_avg[i] = a
        if buffered:
            buf[i] = b

    def adam_at(i, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1, beta2,
                one_minus_beta2, eps, weight_decay, decay, amsgrad, step_size,
                bias_correction2_sqrt, scale):
        """:func:`adam` on element i; max_exp_avg_sq is used only with amsgrad"""
        v = exp_avg_sq[i]
        vmax = max_exp_avg_sq[i] if amsgrad else v  # a placeholder adam() ignores
        x, m, v, vmax = E.adam(p[i], g[i], exp_avg[i], v, vmax, beta1, one_minus_beta1, beta2,
                               one_minus_beta2, eps, weight_decay, decay, amsgrad, step_size,
                               bias_correction2_sqrt, scale)
        p[i] = x
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            max_exp_avg_sq[i] = vmax

    def adamax_at(i, p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps, weight_decay,
                  clr, scale):
        """:func:`adamax` on element i"""
        p[i], exp_avg[i], exp_inf[i] = E.adamax(p[i], g[i], exp_avg[i], exp_inf[i], beta1,
                                                one_minus_beta1, beta2, eps, weight_decay, clr,
                                                scale)

    def nadam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2,
                 eps, weight_decay, decay, grad_coef, exp_avg_coef, bias_correction2, scale):
        """:func:`nadam` on element i"""
        p[i], exp_avg[i], exp_avg_sq[i] = E.nadam(p[i], g[i], exp_avg[i], exp_avg_sq[i], beta1,
                                                  one_minus_beta1, beta2, one_minus_beta2, eps,
                                                  weight_decay, decay, grad_coef, exp_avg_coef,
                                                  bias_correction2, scale)

    def radam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2,
                 eps, weight_decay, decay, rectify, step_size, bias_correction2_sqrt, scale):
        """:func:`radam` on element i"""
        p[i], exp_avg[i], exp_avg_sq[i] = E.radam(p[i], g[i], exp_avg[i], exp_avg_sq[i], beta1,
                                                  one_minus_beta1, beta2, one_minus_beta2, eps,
                                                  weight_decay, decay, rectify, step_size,
                                                  bias_correction2_sqrt, scale)

    def adadelta_at(i, p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay,
                    scale):
        """:func:`adadelta` on element i"""
        p[i], square_avg[i], acc_delta[i] = E.adadelta(p[i], g[i], square_avg[i], acc_delta[i],
                                                       lr, rho, one_minus_rho, eps,
                                                       weight_decay, scale)

    def lion_at(i, p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay,
                scale):
        """:func:`lion` on element i"""
        p[i], exp_avg[i] = E.lion(p[i], g[i], exp_avg[i], lr, beta1, one_minus_beta1, beta2,
                                  one_minus_beta2, decay, scale)

    for f in (sgd, adagrad, rmsprop, adam, adamax, nadam, radam, adadelta, lion, lamb_moments,
              lamb_direction, sgd_at, adagrad_at, rmsprop_at, adam_at, adamax_at, nadam_at,
              radam_at, adadelta_at, lion_at):
        setattr(E, f.__name__, device_jit(f))
    return E
