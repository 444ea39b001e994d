"""The table of optimizers: hyperparameters, checks, state, and the host-side scalars of a step.

One :class:`Algorithm` per public optimizer drives the functional API, the optimizer classes and
the tests. Defaults, names and checks are ``torch.optim``'s; every float is also checked finite.
``scalars`` turns validated hyperparameters and the step count into the kernel's scalar arguments
(see :mod:`fastopt.backends`), doing the step-dependent arithmetic (bias corrections, learning-rate
decay) once on the host.
"""

import math
from dataclasses import dataclass
from typing import Callable

from ._validate import check_betas, check_flag, check_number


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

ALGORITHMS = {a.name: a for a in (SGD, ADAGRAD, RMSPROP, ADAM, ADAMW)}
