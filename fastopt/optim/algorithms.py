"""The table of optimizers: hyperparameters, checks, state, and the host-side scalars of a step.

One :class:`Algorithm` per public optimizer drives the functional API, the optimizer classes and
the tests. Defaults, names and checks are ``torch.optim``'s; every float is also checked finite.
``scalars`` turns validated hyperparameters and the step count into the kernel's scalar arguments,
named by ``kernel_args`` (see :mod:`fastopt.backends`), doing the step-dependent arithmetic (bias
corrections, learning-rate decay, RAdam's rectification) once on the host. Per-parameter host
scalars (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) are ``host_state``: ``scalars`` reads
their values before the step and ``advance`` moves them past it. ``constants`` derives the element constants of the numba
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
    # Per-parameter host scalars kept in the optimizer state beside the arrays, as torch keeps
    # them (NAdam's mu_product): name -> value before the first step, or a function of the
    # validated hyperparameters giving it. ``scalars`` receives the values before a step as
    # keyword arguments.
    host_state: dict = field(default_factory=dict)
    # (validated hyper, step, host values before this step) -> host values after it.
    advance: Callable = lambda hyper, step, host: {}
    # (validated hyper, step) -> host values before ``step`` when the hyperparameters never
    # changed: what a functional call given none starts from.
    host_at: Callable = None
    # The kernel takes ``segment_offsets`` (int64 tensor starts + end) after the state arrays.
    segmented: bool = False
    # The kernel arguments that ``uses`` reads (none: every state array is always used).
    uses_args: tuple = ()

    def initial_host(self, hyper):
        """The host values before the first step, from the validated hyperparameters."""
        return {name: value(hyper) if callable(value) else value
                for name, value in self.host_state.items()}

    def host_before(self, hyper, state):
        """The host values before this step: those kept in ``state``, else the initial ones."""
        return {name: state[name] if name in state else value
                for name, value in self.initial_host(hyper).items()}

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


#: Up to this many steps, :func:`nadam_mu_product` multiplies as a step-by-step run does.
NADAM_EXACT_STEPS = 10_000


def nadam_mu_product(beta1, momentum_decay, steps):
    """The product of the momentum coefficients of steps ``1..steps`` (1 for none), as NAdam's
    ``mu_product`` state holds it after ``steps`` steps with constant hyperparameters.

    Up to :data:`NADAM_EXACT_STEPS` steps it is the same product, bit for bit, until it falls
    below 2**-64, where it stops: every NAdam scalar takes ``1 - mu_product`` (times at most 1),
    which is 1.0 from there on. Past that many steps it is a closed form, in constant time:
    ``log mu_t = log beta1 + log(1 - x r**t)`` with ``x = 1/2`` and ``r = 0.96**psi``, whose sum
    over ``t`` is ``steps * log beta1 - sum_j x**j / j * r**j (1 - r**(j steps)) / (1 - r**j)``
    (the series of ``log(1 - y)``, 60 terms for ``x**j`` below 1e-18)."""
    if steps <= NADAM_EXACT_STEPS:
        product = 1.0
        for t in range(1, steps + 1):
            product *= nadam_mu(beta1, momentum_decay, t)
            if product < 2.0**-64:
                break
        return product
    if beta1 == 0.0:
        return 0.0
    r = 0.96 ** momentum_decay
    log_product = steps * math.log(beta1)
    for j in range(1, 61):
        rj = r ** j
        terms = steps if rj == 1.0 else rj * -math.expm1(steps * j * math.log(r)) / (1.0 - rj)
        log_product -= 0.5 ** j / j * terms
    return math.exp(log_product)


def _nadam_scalars(h, step, fresh, mu_product):
    # This step's product, as NADAM.advance computes it (torch advances it before the update).
    beta1, beta2 = h["betas"]
    mu = nadam_mu(beta1, h["momentum_decay"], step)
    mu_product = mu_product * mu
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
    host_at=lambda h, step: {"mu_product": nadam_mu_product(h["betas"][0], h["momentum_decay"],
                                                            step - 1)},
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


def _check_rprop(hyper):
    etas, step_sizes = hyper["etas"], hyper["step_sizes"]
    try:
        etaminus, etaplus = etas
    except (TypeError, ValueError):
        raise ValueError(f"etas: expected a pair (etaminus, etaplus), got {etas!r}") from None
    try:
        low, high = step_sizes
    except (TypeError, ValueError):
        raise ValueError("step_sizes: expected a pair (step_size_min, step_size_max), "
                         f"got {step_sizes!r}") from None
    etaminus = check_number("etas[0]", etaminus, 0.0, 1.0, high_open=True)
    etaplus = check_number("etas[1]", etaplus)
    if not 0.0 < etaminus < 1.0 < etaplus:
        raise ValueError(f"etas: expected 0 < etaminus < 1 < etaplus, got {etas!r}")
    low = check_number("step_sizes[0]", low, 0.0)
    high = check_number("step_sizes[1]", high, low)
    return {"lr": check_number("lr", hyper["lr"], 0.0), "etas": (etaminus, etaplus),
            "step_sizes": (low, high), "maximize": check_flag("maximize", hyper["maximize"])}


def _rprop_constants(h, f):
    one, etaminus, etaplus, step_size_min, step_size_max, grad_scale = h
    (maximize,) = f
    return (etaminus, etaplus, step_size_min, step_size_max, one, one - one,
            -grad_scale if maximize else grad_scale)


RPROP = Algorithm(
    name="rprop", kernel="rprop", state=("prev", "step_size"),
    defaults=dict(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), maximize=False),
    check=_check_rprop,
    uses=lambda h: (True, True),
    scalars=lambda h, step, fresh: (*h["etas"], *h["step_sizes"], h["maximize"]),
    kernel_args=("etaminus", "etaplus", "step_size_min", "step_size_max", "maximize"),
    constants=_rprop_constants,
    # Each element's step size starts at lr (a later lr does not enter the update, as in torch).
    initial_state=lambda h, name: h["lr"] if name == "step_size" else 0.0,
)


def asgd_eta_mu(hyper, steps):
    """ASGD's ``(eta, mu)`` after ``steps`` steps, as ``torch.optim.ASGD`` sets them for the next
    step: ``(lr, 1)`` before the first, then ``lr / (1 + lambd*lr*t)**alpha`` and
    ``1 / max(1, t - t0)`` after step ``t``."""
    if steps == 0:
        return hyper["lr"], 1.0
    lr = hyper["lr"]
    return (lr / ((1 + hyper["lambd"] * lr * steps) ** hyper["alpha"]),
            1 / max(1, steps - hyper["t0"]))


def _asgd_constants(h, f):
    one, weight_decay, eta, decay, mu, grad_scale = h
    (maximize,) = f
    return weight_decay, eta, decay, mu, one, -grad_scale if maximize else grad_scale


def _asgd_advance(h, step, host):
    eta, mu = asgd_eta_mu(h, step)
    return {"eta": eta, "mu": mu}


ASGD = Algorithm(
    name="asgd", kernel="asgd", state=("ax",),
    defaults=dict(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False),
    check=lambda hyper: _numbers(hyper, lr=(0.0, None), lambd=(0.0, None),
                                 alpha=(None, None), t0=(None, None), weight_decay=(0.0, None)),
    uses=lambda h: (True,),
    scalars=lambda h, step, fresh, eta, mu: (h["weight_decay"], h["maximize"], eta,
                                             1 - h["lambd"] * eta, mu),
    kernel_args=("weight_decay", "maximize", "eta", "decay", "mu"),
    constants=_asgd_constants,
    # eta and mu as torch keeps them: set by each step for the next one, from that step's lr.
    host_state={"eta": lambda h: h["lr"], "mu": 1.0},
    host_at=lambda h, step: dict(zip(("eta", "mu"), asgd_eta_mu(h, step - 1))),
    advance=_asgd_advance,
)

#: The bounds of the host scalars a caller may pass (a functional step, ``bind``).
HOST_BOUNDS = {"mu_product": (0.0, 1.0), "eta": (0.0, None), "mu": (0.0, 1.0)}


def check_host(algorithm, given):
    """Validated host values ``given`` by a caller for ``algorithm``; ``TypeError`` for a name it
    keeps none of, ``ValueError`` for a value out of bounds."""
    checked = {}
    for name, value in given.items():
        if name not in algorithm.host_state:
            owners = [a.name for a in ALGORITHMS.values() if name in a.host_state]
            raise TypeError(f"{name}: {algorithm.name} keeps none ({', '.join(owners)} does)")
        checked[name] = check_number(name, value, *HOST_BOUNDS[name])
    return checked


ALGORITHMS = {a.name: a for a in (SGD, ADAGRAD, RMSPROP, ADAM, ADAMW, ADAMAX, NADAM, RADAM,
                                  ADADELTA, LION, LAMB, RPROP, ASGD)}
