r"""Learning-rate schedules: small immutable host-side callables that feed the runtime ``lr``.

A schedule maps the step (or epoch) index ``t = 0, 1, 2, ...`` to a **multiplicative factor**, never
to a learning rate; the learning rate of each parameter group is its base learning rate times that
factor:

.. math::

    \eta^{(g)}_t = \eta^{(g)}_0 \cdot f(t)

This is ``torch.optim.lr_scheduler``'s convention (every scheduler scales each group's
``initial_lr``), so one schedule drives groups with different base learning rates. The kernels take
``lr`` as a runtime scalar, so changing it every step recompiles nothing.

:class:`LRScheduler` applies a schedule to any object with ``param_groups`` (fastopt's optimizers,
``torch.optim`` optimizers)::

    opt = fastopt.SGD(params, lr=0.1)
    sched = schedules.LRScheduler(opt, schedules.linear_warmup(5, 0.1, then=schedules.cosine(95)))
    for t in range(100):
        opt.step(grads)        # step t runs with lr = 0.1 * f(t)
        sched.step()           # then t -> t + 1, as torch's schedulers

Schedules: :func:`constant`, :func:`step`, :func:`multistep`, :func:`exponential`, :func:`cosine`,
:func:`linear_warmup` (a ramp, then another schedule), and the decreasing schedules of stochastic
approximation :func:`inverse_time`, :func:`inverse_sqrt` and their family :func:`inverse_power`.
Schedules compare equal when their arguments do, hash, and print as the call that makes them.

Background. Dillhoff's notes [1]_ ("Gradient Descent and its Variants") observe that with a
constant :math:`\eta` SGD "will jump around the true minimum point", which "is usually remedied in
part by setting up a decreasing learning rate schedule", and that choosing "the best annealing
schedule" is guesswork; Hegde's notes [2]_ list "how to pick step size" among the questions about
(S)GD's convergence, and cite Li and Arora's exponential schedule [3]_ among the tweaks that shape
the optimization problem. The notes name no formula; the decreasing schedules here are the
classical ones of stochastic approximation [4]_ [5]_.

References:
    .. [1] A. Dillhoff, *Optimization for Deep Learning* (lecture notes), 2022.
    .. [2] C. Hegde, *Foundations of Deep Learning*, chapters 4 (Optimization basics) and 5
       (Optimizing wide networks), 2022.
    .. [3] Z. Li and S. Arora, *An exponential learning rate schedule for deep learning*, ICLR 2020,
       https://arxiv.org/abs/1910.07454.
    .. [4] H. Robbins and S. Monro, *A stochastic approximation method*, Ann. Math. Statist. 22,
       1951.
    .. [5] L. Bottou, *Stochastic gradient descent tricks*, in Neural Networks: Tricks of the Trade,
       2nd ed., 2012.
"""

import math
import numbers
from bisect import bisect_right
from dataclasses import dataclass, fields
from typing import Callable, ClassVar

import numpy as np

from fastopt._core.validate import check_number

__all__ = ["Schedule", "LRScheduler", "constant", "step", "multistep", "exponential", "cosine",
           "linear_warmup", "inverse_time", "inverse_sqrt", "inverse_power"]


# --------------------------------------------------------------------------------------------------
# Argument checks (one place; the schedules trust their fields)


def _check_int(name, value, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def _check_positive(name, value):
    value = check_number(name, value)
    if value <= 0.0:
        raise ValueError(f"{name}: expected a value > 0, got {value}")
    return value


def _check_t(t):
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
        raise TypeError(f"t: expected the step index (an int >= 0), got {type(t).__name__}")
    if t < 0:
        raise ValueError(f"t: expected the step index (an int >= 0), got {t}")
    return int(t)


# --------------------------------------------------------------------------------------------------
# The schedules


@dataclass(frozen=True, repr=False)
class Schedule:
    """Base class: an immutable callable ``schedule(t) -> float``, the factor at step index ``t``.

    Make schedules with the functions of this module; a subclass sets ``maker`` (the name of the
    function that makes it) and implements ``factor(t)`` for a checked ``int`` ``t >= 0``.
    """

    maker: ClassVar[str] = "Schedule"

    def __call__(self, t):
        return float(self.factor(_check_t(t)))

    def factor(self, t):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.maker}({args})"


@dataclass(frozen=True, repr=False)
class _Constant(Schedule):
    maker: ClassVar[str] = "constant"

    def factor(self, t):
        return 1.0


@dataclass(frozen=True, repr=False)
class _Step(Schedule):
    step_size: int
    gamma: float
    maker: ClassVar[str] = "step"

    def factor(self, t):
        return _power(self.gamma, t // self.step_size)


@dataclass(frozen=True, repr=False)
class _MultiStep(Schedule):
    milestones: tuple
    gamma: float
    maker: ClassVar[str] = "multistep"

    def factor(self, t):
        return _power(self.gamma, bisect_right(self.milestones, t))


@dataclass(frozen=True, repr=False)
class _Exponential(Schedule):
    gamma: float
    maker: ClassVar[str] = "exponential"

    def factor(self, t):
        return _power(self.gamma, t)


@dataclass(frozen=True, repr=False)
class _Cosine(Schedule):
    t_max: int
    eta_min_factor: float
    maker: ClassVar[str] = "cosine"

    def factor(self, t):
        m = self.eta_min_factor
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * t / self.t_max))


@dataclass(frozen=True, repr=False)
class _LinearWarmup(Schedule):
    warmup_steps: int
    start_factor: float
    then: Callable[[int], float]
    maker: ClassVar[str] = "linear_warmup"

    def factor(self, t):
        if t < self.warmup_steps:
            s = self.start_factor
            return s + (1.0 - s) * t / self.warmup_steps
        return self.then(t - self.warmup_steps)


@dataclass(frozen=True, repr=False)
class _InversePower(Schedule):
    tau: float
    power: float
    maker: ClassVar[str] = "inverse_power"

    def factor(self, t):
        return (1.0 + t / self.tau) ** -self.power


def _power(gamma, n):
    """``gamma ** n``; ``inf`` where it overflows (which :class:`LRScheduler` then rejects)."""
    try:
        return gamma ** n
    except OverflowError:
        return math.inf


def constant():
    r"""The constant schedule: every group keeps its base learning rate.

    .. math::

        f(t) = 1

    PyTorch: no scheduler (or ``LambdaLR(opt, lambda t: 1.0)``).
    """
    return _Constant()


def step(step_size, gamma=0.1):
    r"""Step decay: multiply by ``gamma`` every ``step_size`` steps.

    .. math::

        f(t) = \gamma^{\lfloor t / s \rfloor}

    Args:
        step_size: ``s``, an int >= 1.
        gamma: the decay factor, finite and > 0 (default 0.1).

    PyTorch: ``StepLR(opt, step_size, gamma)``.
    """
    return _Step(_check_int("step_size", step_size, 1), _check_positive("gamma", gamma))


def multistep(milestones, gamma=0.1):
    r"""Decay by ``gamma`` at each milestone.

    .. math::

        f(t) = \gamma^{\#\{i \,:\, m_i \le t\}}

    Args:
        milestones: ints >= 1, in any order; a milestone given twice decays twice, as in PyTorch.
        gamma: the decay factor, finite and > 0 (default 0.1).

    PyTorch: ``MultiStepLR(opt, milestones, gamma)``.
    """
    if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
        raise TypeError(f"milestones: expected a list of ints, got {type(milestones).__name__}")
    checked = tuple(sorted(_check_int(f"milestones[{i}]", m, 1) for i, m in enumerate(milestones)))
    return _MultiStep(checked, _check_positive("gamma", gamma))


def exponential(gamma):
    r"""Exponential decay (or growth): multiply by ``gamma`` every step.

    .. math::

        f(t) = \gamma^{t}

    Args:
        gamma: finite and > 0. ``gamma > 1`` is allowed: Li and Arora [3]_ show that, with
            normalization layers and weight decay, an exponentially *increasing* learning rate
            trains as well as the usual step decay.

    PyTorch: ``ExponentialLR(opt, gamma)``.
    """
    return _Exponential(_check_positive("gamma", gamma))


def cosine(t_max, eta_min_factor=0.0):
    r"""Cosine annealing from the base learning rate down to ``eta_min_factor`` times it at
    ``t_max``.

    .. math::

        f(t) = m + (1 - m)\,\frac{1 + \cos(\pi t / T_{max})}{2}

    Args:
        t_max: :math:`T_{max}`, the step at which the minimum is reached, an int >= 1.
        eta_min_factor: :math:`m`, the minimum as a **fraction of each group's base learning rate**,
            in ``[0, 1]`` (default 0).

    PyTorch: the closed form of ``CosineAnnealingLR(opt, T_max, eta_min)``, which its recursive
    updates follow to rounding. Convention: PyTorch's ``eta_min`` is an *absolute* learning rate,
    the same for every group; here the minimum is relative, so ``eta_min = m * base_lr`` (equal
    for a single group, or for groups sharing one base learning rate). As in PyTorch, past
    ``t_max`` the factor rises again (period ``2 * t_max``); use ``t_max`` >= the number of steps
    to anneal once.
    """
    return _Cosine(_check_int("t_max", t_max, 1),
                   check_number("eta_min_factor", eta_min_factor, 0.0, 1.0))


def linear_warmup(warmup_steps, start_factor, then=None):
    r"""A linear ramp from ``start_factor`` to 1 over ``warmup_steps`` steps, then ``then``,
    started afresh at the end of the ramp.

    .. math::

        f(t) = \begin{cases}
            s + (1 - s)\, t / W & t < W \\
            g(t - W) & t \ge W
        \end{cases}

    Args:
        warmup_steps: :math:`W`, an int >= 1.
        start_factor: :math:`s`, the factor at step 0, in ``[0, 1]`` (0 makes step 0 a no-op).
        then: :math:`g`, the schedule after the ramp (default :func:`constant`); any callable
            from an int ``t >= 0`` to a factor.

    The handover is continuous when :math:`g(0) = 1`, as for every schedule of this module.

    PyTorch: ``SequentialLR(opt, [LinearLR(opt, s, 1.0, W), <g's scheduler>], milestones=[W])``
    (PyTorch's ``LinearLR`` needs ``s > 0``).
    """
    warmup_steps = _check_int("warmup_steps", warmup_steps, 1)
    start_factor = check_number("start_factor", start_factor, 0.0, 1.0)
    if then is None:
        then = constant()
    elif not callable(then):
        raise TypeError(f"then: expected a schedule (a callable t -> factor), "
                        f"got {type(then).__name__}")
    return _LinearWarmup(warmup_steps, start_factor, then)


def inverse_power(tau, power):
    r"""Polynomial decay: flat for :math:`t \ll \tau`, then like :math:`t^{-p}`.

    .. math::

        f(t) = \left(1 + \frac{t}{\tau}\right)^{-p}

    For :math:`\tfrac12 < p \le 1` the learning rates meet Robbins and Monro's conditions [4]_,
    :math:`\sum_t \eta_t = \infty` and :math:`\sum_t \eta_t^2 < \infty`: SGD's steps add up to
    any distance while the gradient noise they inject stays bounded, which is what a constant
    :math:`\eta` (jumping around the minimum [1]_) lacks.

    Args:
        tau: :math:`\tau`, the number of steps over which the rate halves (for :math:`p = 1`),
            finite and > 0.
        power: :math:`p`, finite and > 0.

    PyTorch: ``LambdaLR(opt, lambda t: (1 + t / tau) ** -power)``.
    """
    return _InversePower(_check_positive("tau", tau), _check_positive("power", power))


def inverse_time(tau):
    r"""Inverse-time decay, the classical SGD schedule :math:`\eta_0 / (1 + t/\tau)`.

    .. math::

        f(t) = \frac{1}{1 + t/\tau}

    It meets Robbins and Monro's conditions [4]_ (:math:`\sum \eta_t = \infty`,
    :math:`\sum \eta_t^2 < \infty`). Bottou [5]_ writes it :math:`\eta_0 / (1 + \lambda \eta_0 t)`,
    that is :math:`\tau = 1 / (\lambda \eta_0)` for an L2 penalty :math:`\lambda`.

    Args:
        tau: :math:`\tau`, the step at which the rate has halved, finite and > 0.

    PyTorch: ``LambdaLR(opt, lambda t: 1 / (1 + t / tau))``; ``torch.optim.Adagrad``'s
    ``lr_decay`` is the same decay built into the optimizer, with ``tau = 1 / lr_decay``.
    Same as ``inverse_power(tau, 1.0)``.
    """
    return inverse_power(tau, 1.0)


def inverse_sqrt(tau=1.0):
    r"""Inverse-square-root decay, :math:`\eta_t \propto 1/\sqrt{t}` for large ``t``.

    .. math::

        f(t) = \frac{1}{\sqrt{1 + t/\tau}}

    The rate of the standard :math:`O(1/\sqrt{T})` SGD bounds (convex Lipschitz losses, stationary
    points of smooth non-convex ones); it decays more slowly than :func:`inverse_time`, and
    :math:`\sum \eta_t^2` diverges (logarithmically), so it is at the edge of Robbins and Monro's
    conditions [4]_.

    Args:
        tau: :math:`\tau`, finite and > 0 (default 1: :math:`f(t) = 1/\sqrt{t + 1}`).

    PyTorch: ``LambdaLR(opt, lambda t: (1 + t / tau) ** -0.5)``. Same as
    ``inverse_power(tau, 0.5)``.
    """
    return inverse_power(tau, 0.5)


# --------------------------------------------------------------------------------------------------
# The driver


class LRScheduler:
    r"""Sets every parameter group's ``"lr"`` to its base learning rate times ``schedule(t)``.

    .. math::

        \texttt{group["lr"]} = \texttt{group["initial\_lr"]} \cdot f(t)

    At construction each group's base learning rate is recorded in ``group["initial_lr"]``, which
    is its current ``"lr"`` unless the group already has an ``"initial_lr"`` (left by an earlier
    scheduler), as PyTorch does; then ``t = 0`` and the groups get ``base * f(0)``. Each
    :meth:`step` advances ``t`` by one and sets the groups' learning rates for the next optimizer
    step. Call it after the optimizer's step, as in PyTorch.

    ``optimizer`` is anything with ``param_groups`` (a list of dicts with a float ``"lr"``):
    fastopt's optimizers, whose kernels take ``lr`` as a runtime scalar (nothing recompiles), or
    ``torch.optim`` optimizers. Before writing, every new learning rate is checked to be finite and
    >= 0; if one is not, nothing is written and a ``ValueError`` says which.
    """

    def __init__(self, optimizer, schedule: Callable[[int], float]):
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer: expected an object with param_groups, "
                            f"got {type(optimizer).__name__}")
        if not callable(schedule):
            raise TypeError(f"schedule: expected a callable t -> factor, "
                            f"got {type(schedule).__name__}")
        self.optimizer = optimizer
        self.schedule = schedule
        groups = optimizer.param_groups
        base = [check_number(f"param_groups[{i}]['initial_lr']", g.get("initial_lr", g["lr"]), 0.0)
                for i, g in enumerate(groups)]
        self._base_lrs = tuple(base)
        self._t = 0
        self._last_lr = self._apply()
        for group, b in zip(groups, base):
            group.setdefault("initial_lr", b)

    @property
    def t(self):
        """The step index of the learning rates now set (0 before the first :meth:`step`)."""
        return self._t

    @property
    def base_lrs(self):
        """Each group's base learning rate, as recorded at construction."""
        return self._base_lrs

    def step(self):
        """Advances ``t`` by one and sets every group's ``"lr"`` to ``base * schedule(t)``."""
        self._last_lr = self._apply(self._t + 1)
        self._t += 1

    def get_last_lr(self):
        """The learning rates this scheduler last set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """``{"t": int, "base_lrs": [float, ...]}``; the schedule itself is code, not state."""
        return {"t": self._t, "base_lrs": list(self._base_lrs)}

    def load_state_dict(self, state_dict):
        """Restores ``t`` and the base learning rates and sets the groups' ``"lr"`` (and
        ``"initial_lr"``) to match; checks everything first and changes nothing if it fails."""
        try:
            t, base = state_dict["t"], list(state_dict["base_lrs"])
        except (TypeError, KeyError):
            raise ValueError("state_dict: expected a dict with 't' and 'base_lrs'") from None
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral) or t < 0:
            raise ValueError(f"state_dict['t']: expected an int >= 0, got {t!r}")
        if len(base) != len(self.optimizer.param_groups):
            raise ValueError(f"state_dict['base_lrs']: expected {len(self.optimizer.param_groups)} "
                             f"learning rates (one per group), got {len(base)}")
        base = tuple(check_number(f"state_dict['base_lrs'][{i}]", b, 0.0)
                     for i, b in enumerate(base))
        lrs = self._apply(int(t), base)
        self._t, self._base_lrs, self._last_lr = int(t), base, lrs
        for group, b in zip(self.optimizer.param_groups, base):
            group["initial_lr"] = b

    def _apply(self, t=0, base=None):
        """Sets ``lr = base * schedule(t)`` in every group, all checked first; returns them."""
        base = self._base_lrs if base is None else base
        groups = self.optimizer.param_groups
        if len(groups) != len(base):
            raise ValueError(f"optimizer.param_groups: the scheduler was made for {len(base)} "
                             f"groups, the optimizer now has {len(groups)}")
        factor = self.schedule(t)
        try:
            factor = float(factor)
        except (TypeError, ValueError):
            raise TypeError(f"schedule({t}): expected a number, "
                            f"got {type(factor).__name__}") from None
        lrs = [b * factor for b in base]
        if not (factor >= 0.0 and all(math.isfinite(lr) for lr in lrs)):
            raise ValueError(f"schedule({t}): expected a factor >= 0 giving finite learning "
                             f"rates, got {factor}")
        for group, lr in zip(groups, lrs):
            group["lr"] = lr
        return lrs

    def __repr__(self):
        return (f"LRScheduler(t={self._t}, schedule={self.schedule!r}, "
                f"base_lrs={list(self._base_lrs)})")
