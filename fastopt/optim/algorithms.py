"""The table of optimizers: hyperparameters, checks, state, and the host-side scalars of a step.

One :class:`Algorithm` per public optimizer drives the functional API, the optimizer classes and
the tests. Defaults, names and checks are ``torch.optim``'s; every float is also checked finite.
``scalars`` turns validated hyperparameters and the step count into the kernel's scalar arguments
(see :mod:`fastopt.backends`), doing the step-dependent arithmetic (bias corrections, learning-rate
decay, RAdam's rectification) once on the host. Per-parameter host scalars (NAdam's ``mu_product``)
are ``host_state``: ``advance`` moves them one step, and ``scalars`` reads the advanced values.
Lion and LAMB, which ``torch.optim`` lacks, follow their papers.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

from fastopt._core.validate import check_betas, check_flag, check_number


@dataclass(frozen=True)
class Algorithm:
    name: str
    kernel: str  # the kernel's name in every backend module
    state: tuple  # state array names, in kernel argument order
    defaults: dict
    check: Callable  # hyper dict -> validated hyper dict (floats and bools)
    uses: Callable  # validated hyper -> which state arrays the step reads and writes
    scalars: Callable  # (validated hyper, step, fresh state) -> kernel scalars
    initial_state: Callable = lambda hyper, name: 0.0  # fill value of a new state array
    # Per-parameter host scalars kept in the optimizer state beside the arrays (NAdam's
    # mu_product): name -> value before the first step.
    host_state: dict = field(default_factory=dict)
    # (validated hyper, step, host values before this step) -> host values after it, which
    # ``scalars`` then receives as keyword arguments.
    advance: Callable = lambda hyper, step, host: {}
    # The kernel takes ``segment_offsets`` (int64 tensor starts + end) after the state arrays.
    segmented: bool = False


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
    uses=lambda h: (h["momentum"] != 0,),
    # The momentum buffer starts as the first gradient, so a fresh buffer needs no fill value.
    scalars=lambda h, step, fresh: (h["lr"], h["weight_decay"], h["momentum"], h["dampening"],
                                    h["nesterov"], h["maximize"], fresh),
)

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
    initial_state=lambda h, name: h["initial_accumulator_value"],
)

RMSPROP = Algorithm(
    name="rmsprop", kernel="rmsprop", state=("square_avg", "grad_avg", "momentum_buffer"),
    defaults=dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                  maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), alpha=(0.0, None), eps=(0.0, None),
                                 weight_decay=(0.0, None), momentum=(0.0, None)),
    uses=lambda h: (True, h["centered"], h["momentum"] > 0),
    scalars=lambda h, step, fresh: (h["lr"], h["alpha"], h["eps"], h["weight_decay"],
                                    h["momentum"], h["centered"], h["maximize"]),
)


def _adam_scalars(decoupled):
    def scalars(h, step, fresh):
        beta1, beta2 = h["betas"]
        step_size = h["lr"] / (1 - beta1 ** step)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        return (h["lr"], beta1, beta2, h["eps"], h["weight_decay"], h["amsgrad"], h["maximize"],
                decoupled, step_size, bias_correction2_sqrt)
    return scalars


_ADAM_BOUNDS = dict(lr=(0.0, None), eps=(0.0, None), weight_decay=(0.0, None))
_ADAM_DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                      maximize=False)

ADAM = Algorithm(
    name="adam", kernel="adam", state=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    defaults=_ADAM_DEFAULTS,
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True, h["amsgrad"]),
    scalars=_adam_scalars(decoupled=False),
)

ADAMW = Algorithm(
    name="adamw", kernel="adam", state=ADAM.state,
    defaults={**_ADAM_DEFAULTS, "weight_decay": 1e-2},
    check=ADAM.check, uses=ADAM.uses,
    scalars=_adam_scalars(decoupled=True),
)

ADAMAX = Algorithm(
    name="adamax", kernel="adamax", state=("exp_avg", "exp_inf"),
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True),
    scalars=lambda h, step, fresh: (*h["betas"], h["eps"], h["weight_decay"], h["maximize"],
                                    h["lr"] / (1 - h["betas"][0] ** step)),
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


NADAM = Algorithm(
    name="nadam", kernel="nadam", state=("exp_avg", "exp_avg_sq"),
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                  decoupled_weight_decay=False, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS, momentum_decay=(0.0, None)),
    uses=lambda h: (True, True),
    scalars=_nadam_scalars,
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


RADAM = Algorithm(
    name="radam", kernel="radam", state=("exp_avg", "exp_avg_sq"),
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  decoupled_weight_decay=False, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True),
    scalars=_radam_scalars,
)

ADADELTA = Algorithm(
    name="adadelta", kernel="adadelta", state=("square_avg", "acc_delta"),
    defaults=dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), rho=(0.0, 1.0), eps=(0.0, None),
                                 weight_decay=(0.0, None)),
    uses=lambda h: (True, True),
    scalars=lambda h, step, fresh: (h["lr"], h["rho"], h["eps"], h["weight_decay"],
                                    h["maximize"]),
)

LION = Algorithm(
    name="lion", kernel="lion", state=("exp_avg",),
    defaults=dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), weight_decay=(0.0, None)),
    uses=lambda h: (True,),
    scalars=lambda h, step, fresh: (h["lr"], *h["betas"], h["weight_decay"], h["maximize"]),
)

LAMB = Algorithm(
    name="lamb", kernel="lamb", state=("exp_avg", "exp_avg_sq"),
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, **_ADAM_BOUNDS),
    uses=lambda h: (True, True),
    scalars=lambda h, step, fresh: (h["lr"], *h["betas"], h["eps"], h["weight_decay"],
                                    h["maximize"], 1 - h["betas"][0] ** step,
                                    1 - h["betas"][1] ** step),
    segmented=True,
)

ALGORITHMS = {a.name: a for a in (SGD, ADAGRAD, RMSPROP, ADAM, ADAMW, ADAMAX, NADAM, RADAM,
                                  ADADELTA, LION, LAMB)}
