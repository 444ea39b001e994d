"""The table of optimizers: hyperparameters, checks, state, and the host-side scalars of a step.

One :class:`Algorithm` per public optimizer drives the functional API, the optimizer classes and
the tests. Defaults, names and checks are ``torch.optim``'s; every float is also checked finite.
``scalars`` turns validated hyperparameters and the step count into the kernel's scalar arguments,
named by ``kernel_args`` (see :mod:`fastopt.backends`), doing the step-dependent arithmetic (bias
corrections, learning-rate decay, RAdam's rectification) once on the host. Per-parameter host
scalars (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) are ``host_state``: ``scalars`` reads
their values before the step and ``advance`` moves them past it. ``constants`` derives the element
constants of the numba kernels (:mod:`fastopt.backends.elements.optim`) from the kernel's scalars
in the arrays' dtype; the C elements derive the same ones in ``csrc/optim_template.h``. Lion and
LAMB, which ``torch.optim`` lacks, follow their papers.

The public API is generated from each entry (:mod:`fastopt.optim._api`): the step of
:mod:`fastopt.functional` (``doc``) and of :mod:`fastopt.mixed` (``mixed``, ``mixed_doc``), the
optimizer class (``class_name``, ``class_doc``, ``keyword_only``, ``extends``) and, where there
is one, the capturable class (``capturable_doc``); ``modes`` drives the test grid and ``torch``
names the ``torch.optim`` class the tests and checkpoint converters compare with.
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
    # The public API and the test grid are generated from the fields below (fastopt.optim._api).
    # ``doc`` is the functional step's docstring, the update as a math block: what help() shows.
    # Texts may start on the line after their opening quotes, indented as in a function body. A
    # step takes (param, grad, states..., *, step, host state, segment_offsets,
    # hyperparameters..., grad_scale, backend); the trailing states the defaults leave unused
    # default to None.
    doc: str = ""
    class_name: str = None  # None: the name capitalized
    class_doc: str = None  # None: "<class_name>, as torch.optim.<torch>; formula: ..."
    torch: str = None  # the torch.optim class of the same update, where there is one
    extends: str = None  # the algorithm whose class this one's subclasses (AdamW: Adam)
    # The hyperparameters the classes take as keywords only; the others are positional, in
    # ``defaults`` order, as torch.optim's.
    keyword_only: tuple = ("maximize",)
    state_args: tuple = None  # the state arrays' names as arguments, where not ``state``
    mixed: bool = True  # steps in fastopt.mixed, and master weights for float16 parameters
    mixed_doc: str = None  # the mixed step's summary; None: "One mixed-precision X step."
    capturable_doc: str = None  # the fastopt.capturable class's docstring; None: none
    # Hyperparameter values that take different paths through the kernel (a flag, a coefficient
    # zero or not): name -> values, crossed by the test grid.
    modes: dict = field(default_factory=dict)
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
    host_bounds: dict = field(default_factory=dict)  # name -> (low, high) of a given host value
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
    class_name="SGD", torch="SGD",
    modes=dict(momentum=(0.0, 0.9), dampening=(0.0, 0.3), nesterov=(False, True),
               weight_decay=(0.0, 0.1), maximize=(False, True)),
    doc=r"""
    One SGD step, with optional momentum, dampening, Nesterov and L2 weight decay.

    .. math::
        g &= \pm\nabla f(\theta) + \lambda\theta \\
        b &\leftarrow g \text{ at step 1, else } \mu b + (1-\tau) g \\
        \theta &\leftarrow \theta - \eta\,(g + \mu b) \text{ (Nesterov)}, \quad
        \theta - \eta b \text{ (momentum)}, \quad \theta - \eta g \text{ (}\mu = 0\text{)}

    ``momentum_buffer`` is needed when ``momentum != 0``; it is set to the gradient at ``step ==
    1``, as PyTorch does.

    The lecture notes put the learning rate inside the velocity: :math:`g_t = \alpha g_{t-1} +
    \eta\nabla J(\theta),\ \theta \leftarrow \theta - g_t`. With :math:`\mu = \alpha` and a constant
    :math:`\eta` this is the update above with :math:`g_t = \eta b_t` (when ``lr`` changes, PyTorch's
    form applies the new rate to the whole buffer, the notes' only to the new gradient). The notes'
    Nesterov step evaluates the gradient at the look-ahead point :math:`\phi = \theta - \alpha
    g_{t-1}`; written in :math:`\phi` it becomes :math:`\phi \leftarrow \phi - \eta(\nabla J(\phi)
    + \mu b_t)`, which is ``nesterov=True`` here (the parameter stored is the look-ahead point).
    """,
    class_doc="""
    Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

    A drop-in for ``torch.optim.SGD`` (same hyperparameters, defaults and update); plain full-batch
    gradient descent is ``SGD(params, lr)`` with full-batch gradients. Formula and the mapping from
    the lecture notes' velocity form: :func:`fastopt.functional.sgd`.
    """,
    mixed_doc="""
    One mixed-precision SGD step; ``momentum_buffer`` is needed when ``momentum != 0`` and is
    set to the gradient at ``step == 1``.""",
    capturable_doc=r"""
    Capturable :class:`fastopt.SGD` (momentum, dampening, Nesterov, L2 weight decay).

    .. math::
        g &= \pm\nabla / \mathrm{grad\_scale} \cdot \mathrm{clip} + \lambda\theta \\
        b &\leftarrow g \text{ (first step) or } \mu b + (1-\tau) g, \quad
        \theta \leftarrow \theta - \eta\,(g + \mu b \text{ (Nesterov) or } b)

    Defaults are fastopt's (``lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
    nesterov=False, maximize=False``). ``nesterov``, ``maximize`` and whether ``momentum`` is
    zero are fixed at construction; its value may change.
    """,
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
    class_name="Adagrad", torch="Adagrad",
    state_args=("state_sum",),
    modes=dict(lr_decay=(0.0, 0.1), weight_decay=(0.0, 0.1), initial_accumulator_value=(0.0, 0.5),
               maximize=(False, True)),
    doc=r"""
    One Adagrad step; ``state_sum`` starts filled with ``initial_accumulator_value``.

    .. math::
        g = \pm\nabla + \lambda\theta, \quad s \leftarrow s + g^2, \quad
        \theta \leftarrow \theta - \frac{\eta}{1 + (t-1)\,\delta}\,\frac{g}{\sqrt{s} + \epsilon}
    """,
    mixed_doc="""
    One mixed-precision Adagrad step; ``state_sum`` starts at ``initial_accumulator_value``
    (see :func:`state_fill` for its bfloat16 bits).""",
    capturable_doc=r"""
    Capturable :class:`fastopt.Adagrad`; :math:`\mathrm{clr} = \eta / (1 + (t-1)\,
    \mathrm{lr\_decay})` is computed on the device from the step count. Formula:
    :func:`fastopt.functional.adagrad`; ``maximize`` is fixed at construction, and the
    accumulator is filled with ``initial_accumulator_value`` at construction.""",
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
    class_name="RMSprop", torch="RMSprop",
    modes=dict(centered=(False, True), momentum=(0.0, 0.9), weight_decay=(0.0, 0.1),
               maximize=(False, True)),
    doc=r"""
    One RMSprop step; ``grad_avg`` is needed when centered, ``momentum_buffer`` when
    ``momentum > 0``; all state starts at zero.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad v \leftarrow \alpha v + (1-\alpha) g^2, \quad
        \bar g \leftarrow \alpha \bar g + (1-\alpha) g \\
        d &= \sqrt{v - \bar g^2} + \epsilon \text{ (centered)}, \quad \sqrt{v} + \epsilon
        \text{ (otherwise)} \\
        \theta &\leftarrow \theta - \eta\, b,\ b \leftarrow \mu b + g/d \ (\mu > 0), \quad
        \theta \leftarrow \theta - \eta\, g/d \ (\mu = 0)
    """,
    class_doc="""
    RMSprop, optionally centered and with momentum, as ``torch.optim.RMSprop``; formula:
    :func:`fastopt.functional.rmsprop`.""",
    mixed_doc="""
    One mixed-precision RMSprop step; ``grad_avg`` is needed when centered,
    ``momentum_buffer`` when ``momentum > 0``.""",
    capturable_doc="""
    Capturable :class:`fastopt.RMSprop`; formula: :func:`fastopt.functional.rmsprop`.
    ``centered``, ``maximize`` and whether ``momentum`` is zero are fixed at construction.""",
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
    class_name="Adam", torch="Adam",
    modes=dict(amsgrad=(False, True), weight_decay=(0.0, 0.1), maximize=(False, True)),
    doc=r"""
    One Adam step with L2 weight decay (added to the gradient); AMSGrad needs
    ``max_exp_avg_sq``. All state starts at zero.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \hat v &= \max(\hat v, v) \text{ (AMSGrad) else } v, \quad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    Note the placement of :math:`\epsilon` (outside the bias-corrected square root), as in PyTorch.
    """,
    class_doc="""
    Adam with L2 weight decay, optionally AMSGrad, as ``torch.optim.Adam``; formula:
    :func:`fastopt.functional.adam`. Mixed precision (``rounding``, ``seed``, ``state_dtype``):
    see :class:`Optimizer`.
    """,
    mixed_doc="""
    One mixed-precision Adam step (L2 weight decay); AMSGrad needs ``max_exp_avg_sq``.""",
    capturable_doc=r"""
    Capturable :class:`fastopt.Adam` (L2 weight decay, optionally AMSGrad) on CUDA arrays.

    .. math::
        g &= \pm\nabla / \mathrm{grad\_scale} \cdot \mathrm{clip} + \lambda\theta \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
        \hat v \leftarrow \max(\hat v, v) \text{ (AMSGrad)} \\
        \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
            \frac{m}{\sqrt{\hat v} / \sqrt{1-\beta_2^t} + \epsilon}

    Defaults are ``torch.optim.Adam``'s: ``lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=0.0, amsgrad=False, maximize=False``. ``amsgrad`` and ``maximize`` are fixed at
    construction. See the module docstring for what the step captures.
    """,
)

ADAMW = Algorithm(
    name="adamw", kernel="adam", state=ADAM.state,
    defaults={**_ADAM_DEFAULTS, "weight_decay": 1e-2},
    check=ADAM.check, uses=ADAM.uses, uses_args=ADAM.uses_args,
    scalars=_adam_scalars(decoupled=True),
    kernel_args=_ADAM_ARGS, constants=_adam_constants,
    class_name="AdamW", torch="AdamW",
    extends="adam",
    modes=dict(amsgrad=(False, True), weight_decay=(0.0, 0.1), maximize=(False, True)),
    doc=r"""
    One AdamW step: Adam with decoupled weight decay,
    :math:`\theta \leftarrow \theta(1 - \eta\lambda)` before the Adam update of :func:`adam`
    (whose gradient then carries no :math:`\lambda\theta` term).""",
    class_doc="""
    Adam with decoupled weight decay, as ``torch.optim.AdamW``; formula:
    :func:`fastopt.functional.adamw`. Mixed precision as :class:`Adam`.""",
    mixed_doc="""
    One mixed-precision AdamW step (decoupled weight decay); AMSGrad needs
    ``max_exp_avg_sq``.""",
    capturable_doc=r"""
    Capturable :class:`fastopt.AdamW` (decoupled weight decay: :math:`\theta \leftarrow
    \theta(1 - \eta\lambda)` before the Adam update, no L2 term); defaults are
    ``torch.optim.AdamW``'s (``weight_decay=1e-2``), otherwise as :class:`Adam`.""",
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
    class_name="Adamax", torch="Adamax",
    modes=dict(weight_decay=(0.0, 0.1), maximize=(False, True)),
    doc=r"""
    One Adamax step (Adam with the infinity norm), as ``torch.optim.Adamax``; all state starts
    at zero.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        u \leftarrow \max(\beta_2 u, |g| + \epsilon) \\
        \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, \frac{m}{u}

    Note the placement of :math:`\epsilon`, added to :math:`|g|` inside the maximum as PyTorch does
    (Kingma & Ba's Algorithm 2 has no :math:`\epsilon`; others add it to the denominator).
    """,
    class_doc="""
    Adamax (Adam with the infinity norm), as ``torch.optim.Adamax``; formula and the placement
    of ``eps``: :func:`fastopt.functional.adamax`.""",
    capturable_doc=r"""
    Capturable :class:`fastopt.Adamax`; :math:`\eta / (1 - \beta_1^t)` is computed on the
    device. Formula and the placement of ``eps``: :func:`fastopt.functional.adamax`.""",
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
    advance=lambda h, step, host: {
        "mu_product": host["mu_product"] * nadam_mu(h["betas"][0], h["momentum_decay"], step)},
    host_at=lambda h, step: {"mu_product": nadam_mu_product(h["betas"][0], h["momentum_decay"],
                                                            step - 1)},
    host_bounds={"mu_product": (0.0, 1.0)},
    class_name="NAdam", torch="NAdam",
    modes=dict(weight_decay=(0.0, 0.1), decoupled_weight_decay=(False, True),
               maximize=(False, True)),
    doc=r"""
    One NAdam step (Adam with Nesterov momentum, Dozat 2016) with PyTorch's momentum decay
    schedule, L2 or decoupled weight decay; returns the new ``mu_product``. All state starts at
    zero.

    ``mu_product`` is :math:`\Pi_{t-1}`, the product of the momentum coefficients of the steps
    before this one (1 before the first step): pass the value the previous call returned. When
    ``None``, it is recomputed from ``betas`` and ``momentum_decay`` (exact only if they never
    changed, and a loop over the ``step - 1`` earlier steps).

    .. math::
        \mu_t &= \beta_1 \left(1 - \tfrac12\, 0.96^{t\psi}\right), \quad
        \Pi_t = \Pi_{t-1}\mu_t \\
        \theta &\leftarrow \theta (1 - \eta\lambda) \text{ (decoupled)}, \quad
            g = \pm\nabla + \lambda\theta \text{ (otherwise)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
        d = \sqrt{v / (1-\beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \frac{\eta (1-\mu_t)}{1-\Pi_t}\,\frac{g}{d}
            - \frac{\eta \mu_{t+1}}{1-\Pi_t \mu_{t+1}}\,\frac{m}{d}

    Note the placement of :math:`\epsilon` (outside the bias-corrected square root), as in PyTorch.
    """,
    class_doc="""
    NAdam with PyTorch's momentum decay, L2 or decoupled weight decay, as ``torch.optim.NAdam``;
    formula: :func:`fastopt.functional.nadam`. Each parameter's ``mu_product`` is a float in its
    state (as in PyTorch), advanced on the host at every step it takes.""",
    mixed_doc="""
    One mixed-precision NAdam step; returns the new ``mu_product`` (pass it to the next call;
    ``None`` recomputes it from constant hyperparameters, as
    :func:`fastopt.functional.nadam`).""",
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
    class_name="RAdam", torch="RAdam",
    modes=dict(weight_decay=(0.0, 0.1), decoupled_weight_decay=(False, True),
               maximize=(False, True)),
    doc=r"""
    One RAdam step (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and
    Beyond"), L2 or decoupled weight decay, as ``torch.optim.RAdam``. All state starts at zero.

    .. math::
        \theta &\leftarrow \theta (1 - \eta\lambda) \text{ (decoupled)}, \quad
            g = \pm\nabla + \lambda\theta \text{ (otherwise)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \rho_\infty &= \frac{2}{1-\beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}, \quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}} \\
        \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, m\, r_t\,
            \frac{\sqrt{1-\beta_2^t}}{\sqrt{v} + \epsilon} \quad (\rho_t > 5), \qquad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, m \quad \text{(otherwise)}

    The branch is decided on the host, once per step.
    """,
    class_doc="""
    RAdam, L2 or decoupled weight decay, as ``torch.optim.RAdam``; the rectification branch is
    decided on the host per step. Formula: :func:`fastopt.functional.radam`.""",
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
    class_name="Adadelta", torch="Adadelta",
    modes=dict(weight_decay=(0.0, 0.1), maximize=(False, True)),
    doc=r"""
    One Adadelta step (Zeiler, 2012), with PyTorch's learning rate; all state starts at zero.
    ``step`` does not enter the update.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad v \leftarrow \rho v + (1-\rho) g^2 \\
        \Delta &= \frac{\sqrt{a + \epsilon}}{\sqrt{v + \epsilon}}\, g, \quad
        a \leftarrow \rho a + (1-\rho) \Delta^2, \quad
        \theta \leftarrow \theta - \eta\Delta
    """,
    capturable_doc="""
    Capturable :class:`fastopt.Adadelta`; formula: :func:`fastopt.functional.adadelta`.""",
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
    class_name="Lion",
    modes=dict(weight_decay=(0.0, 0.1), maximize=(False, True)),
    doc=r"""
    One Lion step (EvoLved Sign Momentum): Chen et al. (2023), "Symbolic Discovery of
    Optimization Algorithms", arXiv:2302.06675, Program 1. ``exp_avg`` starts at zero; ``step``
    does not enter the update.

    .. math::
        c &= \beta_1 m + (1-\beta_1) g, \quad g = \pm\nabla \\
        \theta &\leftarrow \theta (1 - \eta\lambda) - \eta\, \operatorname{sign}(c) \\
        m &\leftarrow \beta_2 m + (1-\beta_2) g

    with :math:`\operatorname{sign}(0) = 0`. Weight decay is decoupled, as in the paper; its
    authors suggest a learning rate 3-10x smaller and a weight decay 3-10x larger than AdamW's.
    ``maximize`` is an addition for uniformity with the other steps.
    """,
    class_doc="""
    Lion (Chen et al. 2023, arXiv:2302.06675): the sign of an interpolated momentum, with
    decoupled weight decay; one state array (``exp_avg``). Formula:
    :func:`fastopt.functional.lion`.""",
    capturable_doc="""
    Capturable :class:`fastopt.Lion` (decoupled weight decay); formula:
    :func:`fastopt.functional.lion`.""",
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
    class_name="LAMB",
    mixed=False,
    modes=dict(weight_decay=(0.0, 0.1), maximize=(False, True)),
    doc=r"""
    One LAMB step (layer-wise adaptive moments): You et al. (2019), "Large Batch Optimization
    for Deep Learning: Training BERT in 76 minutes", arXiv:1904.00962, Algorithm 2. All state
    starts at zero.

    ``segment_offsets`` lists where each tensor of ``param`` starts, then its size: the trust ratio
    is per segment. ``None`` (the default) is one tensor, ``[0, param.size]``; for an arena pass
    ``arena.offsets + [arena.size]``. It is a host sequence of ints, copied to the device for a
    CUDA step (the optimizer class keeps its copy on the device).

    .. math::
        g &= \pm\nabla, \quad m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        u &= \frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon} + \lambda\theta \\
        r &= \frac{\lVert\theta\rVert}{\lVert u\rVert} \text{ per tensor (1 when either
        norm is 0)}, \quad \theta \leftarrow \theta - \eta\, r\, u

    Two passes: a segmented reduction (moments, and both norms per tensor) and the update.
    Where implementations differ: bias correction is on, as in the paper's Algorithm 2 (NVIDIA
    apex makes it optional); the trust ratio is not clamped (the paper's :math:`\phi` is the
    identity; some implementations clip :math:`\lVert\theta\rVert` to [0, 10]); :math:`\epsilon`
    is outside the square root; weight decay applies to every tensor given (exclude biases and
    norms with a group of ``weight_decay=0``). ``maximize`` is an addition for uniformity.
    """,
    class_doc="""
    LAMB (You et al. 2019, arXiv:1904.00962, Algorithm 2): Adam directions scaled per tensor by
    the trust ratio ``||p|| / ||u||``. Formula and the choices where implementations differ:
    :func:`fastopt.functional.lamb`.

    An array is one tensor. An arena (or arena segment) is stepped with two launches over its
    whole buffer, a segmented reduction and the update, with one trust ratio per tensor of the
    arena: the same result as stepping its tensors one by one, whatever their number.

    LAMB takes float32 or float64 parameters only: it keeps no float32 master weights for
    float16/bfloat16 ones (its second pass recomputes the update from the moments the first pass
    stored, which in bfloat16 would no longer be the float32 step's).
    """,
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
    class_name="Rprop", torch="Rprop",
    modes=dict(etas=((0.5, 1.2), (0.3, 1.5)), step_sizes=((1e-6, 50.0), (0.005, 0.012)),
               maximize=(False, True)),
    doc=r"""
    One Rprop step (resilient backpropagation, Riedmiller & Braun 1993), as
    ``torch.optim.Rprop``: a step size per element, grown while its gradient keeps its sign and
    shrunk when the sign flips; the gradient's magnitude does not enter. ``prev`` starts at zero,
    ``step_size`` filled with ``lr`` (``lr`` enters nowhere else: a later change has no effect, as
    in PyTorch); ``step`` does not enter the update.

    .. math::
        g &= \pm\nabla, \quad s = \operatorname{sign}(g\, g_{\mathrm{prev}}) \\
        \Delta &\leftarrow \operatorname{clamp}\big(\Delta \cdot \{\eta_+ \ (s > 0),\
            \eta_- \ (s < 0),\ 1 \ (s = 0)\},\ \Delta_{\min}, \Delta_{\max}\big) \\
        g &\leftarrow 0 \text{ where } s < 0, \quad
        \theta \leftarrow \theta - \operatorname{sign}(g)\, \Delta, \quad
        g_{\mathrm{prev}} \leftarrow g

    with ``etas`` :math:`= (\eta_-, \eta_+)` and ``step_sizes`` :math:`= (\Delta_{\min},
    \Delta_{\max})`. ``sign`` is ``torch.sign``'s, 0 for NaN: a NaN gradient leaves the step
    size and the parameter as they were, as in PyTorch.
    """,
    class_doc="""
    Rprop (resilient backpropagation), as ``torch.optim.Rprop``; formula:
    :func:`fastopt.functional.rprop`. Meant for full-batch gradients.""",
    capturable_doc="""
    Capturable :class:`fastopt.Rprop`; formula: :func:`fastopt.functional.rprop`.""",
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
    host_bounds={"eta": (0.0, None), "mu": (0.0, 1.0)},
    class_name="ASGD", torch="ASGD",
    modes=dict(weight_decay=(0.0, 0.1), t0=(1e6, 1.0), maximize=(False, True)),
    doc=r"""
    One ASGD step (averaged stochastic gradient descent, Polyak & Juditsky 1992), as
    ``torch.optim.ASGD``; returns the new ``{"eta": ..., "mu": ...}``. ``ax``, the running
    average of the parameter, starts at zero.

    ``eta`` and ``mu`` are this step's rate and averaging weight, as PyTorch keeps them per
    parameter: pass the values the previous call returned (``None`` before the first step, or to
    recompute them from constant hyperparameters). After step :math:`t`,
    :math:`\eta \leftarrow \mathrm{lr} / (1 + \lambda\,\mathrm{lr}\; t)^{\alpha}` and
    :math:`\mu \leftarrow 1 / \max(1, t - t_0)`, from that step's ``lr``.

    .. math::
        g &= \pm\nabla + w\theta, \quad
        \theta \leftarrow \theta\,(1 - \lambda\eta) - \eta\, g \\
        \bar\theta &\leftarrow \theta \text{ if } \mu = 1, \text{ else }
            \bar\theta + (\theta - \bar\theta)\,\mu

    with ``lambd`` :math:`= \lambda`, ``weight_decay`` :math:`= w`; averaging starts after
    step ``t0``.
    """,
    class_doc="""
    ASGD (averaged SGD), as ``torch.optim.ASGD``; formula: :func:`fastopt.functional.asgd`. The
    average is ``state["ax"]``; ``eta`` and ``mu`` are floats in each parameter's state, as in
    PyTorch, advanced on the host at every step.""",
    mixed_doc="""
    One mixed-precision ASGD step; returns the new ``{"eta": ..., "mu": ...}`` (pass them to the
    next call; ``None`` recomputes them from constant hyperparameters, as
    :func:`fastopt.functional.asgd`).""",
)

ALGORITHMS = {a.name: a for a in (SGD, ADAGRAD, RMSPROP, ADAM, ADAMW, ADAMAX, NADAM, RADAM,
                                  ADADELTA, LION, LAMB, RPROP, ASGD)}


#: The bounds of every host scalar a caller may pass (a functional step, ``bind``, a state dict).
HOST_BOUNDS = {name: bounds for a in ALGORITHMS.values()
               for name, bounds in a.host_bounds.items()}


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
