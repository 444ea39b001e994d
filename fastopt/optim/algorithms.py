"""The table of optimizers: hyperparameters, checks, state, and the host-side scalars of a step.

One :class:`Algorithm` per public optimizer drives the functional API, the optimizer classes and
the tests. Defaults, names and checks are ``torch.optim``'s; every float is also checked finite.
``scalars`` turns validated hyperparameters and the step count into the kernel's scalar arguments,
named by ``kernel_args`` (see :mod:`fastopt.backends`), doing the step-dependent arithmetic (bias
corrections, learning-rate decay, RAdam's rectification) once on the host. Per-parameter host
scalars (NAdam's ``mu_product``) are ``host_state``: ``advance`` moves them one step, and
``scalars`` reads the advanced values. ``constants`` derives the element constants of the numba
kernels (:mod:`fastopt.backends.elements.optim`) from the kernel's scalars in the arrays' dtype;
the C kernels derive the same ones in ``csrc/optim_template.h``. Lion and LAMB, which
``torch.optim`` lacks, follow their papers.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

from fastopt._core.validate import check_betas, check_flag, check_number


#: The kernel arguments that are mode flags (``bool``); every other kernel scalar is a float.
FLAG_ARGS = frozenset({"nesterov", "maximize", "first_step", "centered", "amsgrad", "decoupled",
                       "rectify"})


@dataclass(frozen=True)
class Algorithm:
    name: str
    kernel: str  # the kernel's name in every backend module
    state: tuple  # state array names, in kernel argument order
    defaults: dict
    check: Callable  # hyper dict -> validated hyper dict (floats and bools)
    # Which state arrays the step reads and writes, from a mapping holding the validated
    # hyperparameters or the kernel's scalars (both name the values it reads alike).
    uses: Callable
    scalars: Callable  # (validated hyper, step, fresh state) -> kernel scalars, as kernel_args
    # The names of the kernel's scalar arguments after its arrays (grad_scale follows them).
    kernel_args: tuple
    # The element constants of the numba kernels, ``constants(h, f)``: ``h`` holds 1, the float
    # kernel arguments and grad_scale, in kernel_args order, rounded to the arrays' dtype; ``f``
    # the flags. Compiled by numba, so written with no integer literal (one - one is 0) and no
    # call; numpy scalars of the dtype give the same bits on the host.
    constants: Callable = None
    initial_state: Callable = lambda hyper, name: 0.0  # fill value of a new state array
    # Per-parameter host scalars kept in the optimizer state beside the arrays (NAdam's
    # mu_product): name -> value before the first step.
    host_state: dict = field(default_factory=dict)
    # (validated hyper, step, host values before this step) -> host values after it, which
    # ``scalars`` then receives as keyword arguments.
    advance: Callable = lambda hyper, step, host: {}
    # The kernel takes ``segment_offsets`` (int64 tensor starts + end) after the state arrays.
    segmented: bool = False
    # The kernel arguments that ``uses`` reads (none: every state array is always used).
    uses_args: tuple = ()

    @property
    def float_args(self):
        """The float kernel arguments, in order (grad_scale, last, is not among them)."""
        return tuple(a for a in self.kernel_args if a not in FLAG_ARGS)

    @property
    def flag_args(self):
        """The flag kernel arguments, in order."""
        return tuple(a for a in self.kernel_args if a in FLAG_ARGS)


def _numbers(hyper, **bounds):
    """Validated copy of ``hyper``: floats for ``bounds`` (name -> (low, high)), flags as bools."""
    out = {}
    for name, value in hyper.items():
        if name in bounds:
            out[name] = check_number(name, value, *bounds[name])
        elif name == "betas":
            out[name] = check_betas(value)
        else:
            out[name] = check_flag(name, value)
    return out


def _sgd_constants(h, f):
    one, lr, weight_decay, momentum, dampening, grad_scale = h
    nesterov, maximize, first_step = f
    # -(g*s) == g*(-s) exactly: maximize signs the gradient's factor, as every algorithm does.
    return (lr, weight_decay, momentum, one - dampening, nesterov, first_step,
            -grad_scale if maximize else grad_scale)


def _check_sgd(hyper):
    h = _numbers(hyper, lr=(0.0, None), momentum=(0.0, None), dampening=(None, None),
                 weight_decay=(0.0, None))
    if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
        raise ValueError("nesterov: Nesterov momentum requires momentum > 0 and dampening == 0, "
                         f"got momentum={h['momentum']}, dampening={h['dampening']}")
    return h


SGD = Algorithm(
    name="sgd", kernel="sgd", state=("momentum_buffer",),
    defaults=dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                  maximize=False),
    check=_check_sgd,
    uses=lambda h: (h["momentum"] != 0,), uses_args=("momentum",),
    # The momentum buffer starts as the first gradient, so a fresh buffer needs no fill value.
    scalars=lambda h, step, fresh: (h["lr"], h["weight_decay"], h["momentum"], h["dampening"],
                                    h["nesterov"], h["maximize"], fresh),
    kernel_args=("lr", "weight_decay", "momentum", "dampening", "nesterov", "maximize",
                 "first_step"),
    constants=_sgd_constants,
)

def _adagrad_constants(h, f):
    one, weight_decay, eps, clr, grad_scale = h
    (maximize,) = f
    return weight_decay, eps, clr, -grad_scale if maximize else grad_scale


ADAGRAD = Algorithm(
    name="adagrad", kernel="adagrad", state=("sum",),
    defaults=dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                  eps=1e-10, maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), lr_decay=(0.0, None),
                                 weight_decay=(0.0, None),
                                 initial_accumulator_value=(0.0, None), eps=(0.0, None)),
    uses=lambda h: (True,),
    scalars=lambda h, step, fresh: (h["weight_decay"], h["eps"], h["maximize"],
                                    h["lr"] / (1 + (step - 1) * h["lr_decay"])),
    kernel_args=("weight_decay", "eps", "maximize", "clr"),
    constants=_adagrad_constants,
    initial_state=lambda h, name: h["initial_accumulator_value"],
)

def _rmsprop_constants(h, f):
    one, lr, alpha, eps, weight_decay, momentum, grad_scale = h
    centered, maximize = f
    return (lr, alpha, one - alpha, eps, weight_decay, momentum,
            -grad_scale if maximize else grad_scale)


RMSPROP = Algorithm(
    name="rmsprop", kernel="rmsprop", state=("square_avg", "grad_avg", "momentum_buffer"),
    defaults=dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                  maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), alpha=(0.0, None), eps=(0.0, None),
                                 weight_decay=(0.0, None), momentum=(0.0, None)),
    uses=lambda h: (True, h["centered"], h["momentum"] > 0), uses_args=("centered", "momentum"),
    scalars=lambda h, step, fresh: (h["lr"], h["alpha"], h["eps"], h["weight_decay"],
                                    h["momentum"], h["centered"], h["maximize"]),
    kernel_args=("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"),
    constants=_rmsprop_constants,
)


def _adam_scalars(decoupled):
    def scalars(h, step, fresh):
        beta1, beta2 = h["betas"]
        step_size = h["lr"] / (1 - beta1 ** step)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        return (h["lr"], beta1, beta2, h["eps"], h["weight_decay"], h["amsgrad"], h["maximize"],
                decoupled, step_size, bias_correction2_sqrt)
    return scalars


def _adam_constants(h, f):
    one, lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt, grad_scale = h
    amsgrad, maximize, decoupled = f
    # Decoupled decay scales p by 1 - lr*wd and adds no L2 term (0 as one - one); L2 scales by 1
    # and adds wd*p.
    decay, l2 = (one - lr * weight_decay, one - one) if decoupled else (one, weight_decay)
    return (beta1, one - beta1, beta2, one - beta2, eps, l2, decay, step_size,
            bias_correction2_sqrt, -grad_scale if maximize else grad_scale)


_ADAM_BOUNDS = dict(lr=(0.0, None), eps=(0.0, None), weight_decay=(0.0, None))
_ADAM_DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                      maximize=False)
_ADAM_ARGS = ("lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize", "decoupled",
              "step_size", "bias_correction2_sqrt")

ADAM = Algorithm(
    name="adam", kernel="adam", state=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    defaults=_ADAM_DEFAULTS,
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True, h["amsgrad"]), uses_args=("amsgrad",),
    scalars=_adam_scalars(decoupled=False),
    kernel_args=_ADAM_ARGS, constants=_adam_constants,
)

ADAMW = Algorithm(
    name="adamw", kernel="adam", state=ADAM.state,
    defaults={**_ADAM_DEFAULTS, "weight_decay": 1e-2},
    check=ADAM.check, uses=ADAM.uses, uses_args=ADAM.uses_args,
    scalars=_adam_scalars(decoupled=True),
    kernel_args=_ADAM_ARGS, constants=_adam_constants,
)

def _adamax_constants(h, f):
    one, beta1, beta2, eps, weight_decay, clr, grad_scale = h
    (maximize,) = f
    return (beta1, one - beta1, beta2, eps, weight_decay, clr,
            -grad_scale if maximize else grad_scale)


ADAMAX = Algorithm(
    name="adamax", kernel="adamax", state=("exp_avg", "exp_inf"),
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True),
    scalars=lambda h, step, fresh: (*h["betas"], h["eps"], h["weight_decay"], h["maximize"],
                                    h["lr"] / (1 - h["betas"][0] ** step)),
    kernel_args=("beta1", "beta2", "eps", "weight_decay", "maximize", "clr"),
    constants=_adamax_constants,
)


def nadam_mu(beta1, momentum_decay, step):
    """NAdam's momentum coefficient of ``step``: ``beta1 * (1 - 0.5 * 0.96**(step * psi))``."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


def nadam_mu_product(beta1, momentum_decay, steps):
    """The product of the momentum coefficients of steps ``1..steps`` (1 for none), as NAdam's
    ``mu_product`` state holds it after ``steps`` steps with constant hyperparameters."""
    product = 1.0
    for t in range(1, steps + 1):
        product *= nadam_mu(beta1, momentum_decay, t)
        if product == 0.0:  # underflowed (mu_t < beta1 < 1): it stays 0
            break
    return product


def _nadam_scalars(h, step, fresh, mu_product):
    # mu_product already includes this step's mu (see NADAM.advance), as in torch.
    beta1, beta2 = h["betas"]
    mu = nadam_mu(beta1, h["momentum_decay"], step)
    mu_next = nadam_mu(beta1, h["momentum_decay"], step + 1)
    grad_coef = h["lr"] * (1.0 - mu) / (1.0 - mu_product)
    exp_avg_coef = h["lr"] * mu_next / (1.0 - mu_product * mu_next)
    return (h["lr"], beta1, beta2, h["eps"], h["weight_decay"], h["maximize"],
            h["decoupled_weight_decay"], grad_coef, exp_avg_coef, 1 - beta2 ** step)


def _nadam_constants(h, f):
    (one, lr, beta1, beta2, eps, weight_decay, grad_coef, exp_avg_coef, bias_correction2,
     grad_scale) = h
    maximize, decoupled = f
    decay, l2 = (one - lr * weight_decay, one - one) if decoupled else (one, weight_decay)
    return (beta1, one - beta1, beta2, one - beta2, eps, l2, decay, grad_coef, exp_avg_coef,
            bias_correction2, -grad_scale if maximize else grad_scale)


NADAM = Algorithm(
    name="nadam", kernel="nadam", state=("exp_avg", "exp_avg_sq"),
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                  decoupled_weight_decay=False, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS, momentum_decay=(0.0, None)),
    uses=lambda h: (True, True),
    scalars=_nadam_scalars,
    kernel_args=("lr", "beta1", "beta2", "eps", "weight_decay", "maximize", "decoupled",
                 "grad_coef", "exp_avg_coef", "bias_correction2"),
    constants=_nadam_constants,
    host_state={"mu_product": 1.0},
    advance=lambda h, step, host: {
        "mu_product": host["mu_product"] * nadam_mu(h["betas"][0], h["momentum_decay"], step)},
)


def _radam_scalars(h, step, fresh):
    beta1, beta2 = h["betas"]
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    rho_inf = 2 / (1 - beta2) - 1  # the maximum length of the approximated SMA
    rho_t = rho_inf - 2 * step * beta2 ** step / bias_correction2
    rectify = rho_t > 5.0  # the variance is tractable: rectify; else plain momentum SGD
    step_size = h["lr"] / bias_correction1
    if rectify:
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                         / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        step_size = h["lr"] * rect / bias_correction1
    return (h["lr"], beta1, beta2, h["eps"], h["weight_decay"], h["maximize"],
            h["decoupled_weight_decay"], rectify, step_size, math.sqrt(bias_correction2))


def _radam_constants(h, f):
    one, lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt, grad_scale = h
    maximize, decoupled, rectify = f
    decay, l2 = (one - lr * weight_decay, one - one) if decoupled else (one, weight_decay)
    return (beta1, one - beta1, beta2, one - beta2, eps, l2, decay, rectify, step_size,
            bias_correction2_sqrt, -grad_scale if maximize else grad_scale)


RADAM = Algorithm(
    name="radam", kernel="radam", state=("exp_avg", "exp_avg_sq"),
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  decoupled_weight_decay=False, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True),
    scalars=_radam_scalars,
    kernel_args=("lr", "beta1", "beta2", "eps", "weight_decay", "maximize", "decoupled",
                 "rectify", "step_size", "bias_correction2_sqrt"),
    constants=_radam_constants,
)

def _adadelta_constants(h, f):
    one, lr, rho, eps, weight_decay, grad_scale = h
    (maximize,) = f
    return lr, rho, one - rho, eps, weight_decay, -grad_scale if maximize else grad_scale


ADADELTA = Algorithm(
    name="adadelta", kernel="adadelta", state=("square_avg", "acc_delta"),
    defaults=dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), rho=(0.0, 1.0), eps=(0.0, None),
                                 weight_decay=(0.0, None)),
    uses=lambda h: (True, True),
    scalars=lambda h, step, fresh: (h["lr"], h["rho"], h["eps"], h["weight_decay"],
                                    h["maximize"]),
    kernel_args=("lr", "rho", "eps", "weight_decay", "maximize"),
    constants=_adadelta_constants,
)

def _lion_constants(h, f):
    one, lr, beta1, beta2, weight_decay, grad_scale = h
    (maximize,) = f
    return (lr, beta1, one - beta1, beta2, one - beta2, one - lr * weight_decay,
            -grad_scale if maximize else grad_scale)


LION = Algorithm(
    name="lion", kernel="lion", state=("exp_avg",),
    defaults=dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), weight_decay=(0.0, None)),
    uses=lambda h: (True,),
    scalars=lambda h, step, fresh: (h["lr"], *h["betas"], h["weight_decay"], h["maximize"]),
    kernel_args=("lr", "beta1", "beta2", "weight_decay", "maximize"),
    constants=_lion_constants,
)

LAMB = Algorithm(
    name="lamb", kernel="lamb", state=("exp_avg", "exp_avg_sq"),
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True),
    scalars=lambda h, step, fresh: (h["lr"], *h["betas"], h["eps"], h["weight_decay"],
                                    h["maximize"], 1 - h["betas"][0] ** step,
                                    1 - h["betas"][1] ** step),
    kernel_args=("lr", "beta1", "beta2", "eps", "weight_decay", "maximize", "bias_correction1",
                 "bias_correction2"),
    segmented=True,
)

ALGORITHMS = {a.name: a for a in (SGD, ADAGRAD, RMSPROP, ADAM, ADAMW, ADAMAX, NADAM, RADAM,
                                  ADADELTA, LION, LAMB)}
