"""Stateless in-place optimizer steps: what other trainers embed.

Each function updates ``param`` and its state arrays in place for one step and returns ``None``.
Arrays may be numpy arrays, DLPack host arrays (e.g. CPU torch tensors) or CUDA arrays exposing
``__cuda_array_interface__`` (CuPy, torch, numba), all viewed without copying. ``step`` is the
1-based number of this step (PyTorch's ``state["step"]`` after its increment). Hyperparameters
follow ``torch.optim`` (names, defaults, checks, ``foreach=False`` update rules). ``grad_scale``
multiplies the gradient inside the kernel before anything else (unscaling a mixed-precision loss
scale, clipping by a norm computed with :func:`grad_norm`). ``backend`` overrides the choice that
follows the arrays (see :func:`fastopt.available_backends`).

Every argument is checked before anything is written: a call that raises leaves all arrays as they
were. The gradient's values are not inspected: a non-finite gradient makes non-finite parameters and
state. The optimizer classes skip such steps; here, check :func:`grad_norm` first where that
matters."""

import functools
import math

import numpy as np

from fastopt.optim import algorithms as alg
from fastopt._core import memory as _memory
from fastopt._core.dispatch import choose, is_device_array, kernels
from fastopt.optim._step import check_hyper, checked_step, launch, resolve
from fastopt._core.validate import check_arrays, check_number, check_step


def _step(algorithm, param, grad, states, step, backend, hyper, fresh=False, host=None,
          segment_offsets=None):
    """Checks everything, then runs one step; returns the host state after it (``{}`` for most).
    ``host`` holds the host state before the step (NAdam's ``mu_product``)."""
    grad_scale = hyper["grad_scale"]
    if type(grad_scale) is not float or not 0.0 <= grad_scale < math.inf:  # else checked already
        grad_scale = check_number("grad_scale", grad_scale, 0.0)
    hyper, uses = checked_step(algorithm, hyper)
    step = check_step(step)
    module, arrays, on_device = resolve(algorithm, hyper, param, grad, states, backend, uses)
    if algorithm.segmented:
        arrays += (_checked_offsets(segment_offsets, arrays[0].size, on_device),)
    # One launch of unbound arrays: binding (views, pointers, the kernel chosen) pays only when
    # the arrays come back, as in fastopt.functional.bind and the classes.
    run = functools.partial(_launch_all, module, algorithm, arrays)
    if host is None:  # no host state (all but NAdam)
        run(*algorithm.scalars(hyper, step, fresh), grad_scale)
        return {}
    run(*algorithm.scalars(hyper, step, fresh, **host), grad_scale)
    return algorithm.advance(hyper, step, host)


def _launch_all(module, algorithm, arrays, *scalars):
    launch(module, algorithm, arrays, scalars[:-1], scalars[-1])


def _checked_offsets(offsets, n, on_device):
    """``segment_offsets`` as an int64 array on the step's side: ``[0, n]`` when ``None``."""
    if offsets is None:
        offsets = (0, n)
    try:
        host = np.asarray(offsets)
    except Exception:  # ragged or otherwise not array-like: refused below
        host = np.empty(0, object)
    ok = host.ndim == 1 and host.size >= 2 and np.issubdtype(host.dtype, np.integer)
    if not ok or host[0] != 0 or host[-1] != n or np.any(np.diff(host) < 0):
        raise ValueError(f"segment_offsets: expected nondecreasing integer offsets of the tensors "
                         f"in param, from 0 to param.size ({n}), got {offsets!r}")
    return _memory.from_host(on_device, host.astype(np.int64))


def bind(step, param, grad, *states, backend=None, **hyper):
    """``step`` (a name such as ``"adam"``, or a step of this module) bound to its arrays and
    hyperparameters, checked now: a :class:`fastopt.optim.bound.BoundStep`, whose call ``bound(t)``
    runs step ``t`` in place as this module's step would, bit for bit, at a fraction of the cost of
    a call (see :mod:`fastopt.optim.bound`). ``states`` are the step's state arrays in its argument
    order; trailing unused ones may be left out. ``segment_offsets`` (LAMB) and ``mu_product``
    (NAdam) are keywords, as here."""
    from fastopt.optim.bound import BoundStep

    return BoundStep(step, param, grad, *states, backend=backend, **hyper)


def grad_norm(grads, backend=None):
    r"""The global L2 norm :math:`\sqrt{\sum_i \lVert g_i \rVert^2}` of a list of gradients,
    accumulated in float64; ``inf`` or ``nan`` when any element is non-finite. One read of each
    gradient; deterministic for a given backend whatever the thread count."""
    grads = [grads] if hasattr(grads, "shape") or is_device_array(grads) else list(grads)
    named = {f"grads[{i}]": g for i, g in enumerate(grads)}
    name = choose(named, backend)
    module = kernels(name)
    total = 0.0
    for key, g in named.items():
        (g,) = check_arrays({key: g}, (), name == "cuda")
        total += module.sum_of_squares(g)
    return math.sqrt(total)


def sgd(param, grad, momentum_buffer=None, *, step, lr=1e-3, momentum=0.0, dampening=0.0,
        weight_decay=0.0, nesterov=False, maximize=False, grad_scale=1.0, backend=None):
    r"""One SGD step, with optional momentum, dampening, Nesterov and L2 weight decay.

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
    """
    _step(alg.SGD, param, grad, (momentum_buffer,), step, backend, locals(), fresh=step == 1)


def adagrad(param, grad, state_sum, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
            initial_accumulator_value=0.0, eps=1e-10, maximize=False, grad_scale=1.0, backend=None):
    r"""One Adagrad step; ``state_sum`` starts filled with ``initial_accumulator_value``.

    .. math::
        g = \pm\nabla + \lambda\theta, \quad s \leftarrow s + g^2, \quad
        \theta \leftarrow \theta - \frac{\eta}{1 + (t-1)\,\delta}\,\frac{g}{\sqrt{s} + \epsilon}
    """
    _step(alg.ADAGRAD, param, grad, (state_sum,), step, backend, locals())


def rmsprop(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, step, lr=1e-2,
            alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False,
            grad_scale=1.0, backend=None):
    r"""One RMSprop step; ``grad_avg`` is needed when centered, ``momentum_buffer`` when
    ``momentum > 0``; all state starts at zero.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad v \leftarrow \alpha v + (1-\alpha) g^2, \quad
        \bar g \leftarrow \alpha \bar g + (1-\alpha) g \\
        d &= \sqrt{v - \bar g^2} + \epsilon \text{ (centered)}, \quad \sqrt{v} + \epsilon
        \text{ (otherwise)} \\
        \theta &\leftarrow \theta - \eta\, b,\ b \leftarrow \mu b + g/d \ (\mu > 0), \quad
        \theta \leftarrow \theta - \eta\, g/d \ (\mu = 0)
    """
    _step(alg.RMSPROP, param, grad, (square_avg, grad_avg, momentum_buffer), step, backend,
          locals())


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=1e-3,
         betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
         grad_scale=1.0, backend=None):
    r"""One Adam step with L2 weight decay (added to the gradient); AMSGrad needs
    ``max_exp_avg_sq``. All state starts at zero.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \hat v &= \max(\hat v, v) \text{ (AMSGrad) else } v, \quad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    Note the placement of :math:`\epsilon` (outside the bias-corrected square root), as in PyTorch.
    """
    _step(alg.ADAM, param, grad, (exp_avg, exp_avg_sq, max_exp_avg_sq), step, backend, locals())


def adamw(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=1e-3,
          betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
          grad_scale=1.0, backend=None):
    r"""One AdamW step: Adam with decoupled weight decay,
    :math:`\theta \leftarrow \theta(1 - \eta\lambda)` before the Adam update of :func:`adam`
    (whose gradient then carries no :math:`\lambda\theta` term)."""
    _step(alg.ADAMW, param, grad, (exp_avg, exp_avg_sq, max_exp_avg_sq), step, backend, locals())


def adamax(param, grad, exp_avg, exp_inf, *, step, lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
           weight_decay=0.0, maximize=False, grad_scale=1.0, backend=None):
    r"""One Adamax step (Adam with the infinity norm), as ``torch.optim.Adamax``; all state starts
    at zero.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        u \leftarrow \max(\beta_2 u, |g| + \epsilon) \\
        \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, \frac{m}{u}

    Note the placement of :math:`\epsilon`, added to :math:`|g|` inside the maximum as PyTorch does
    (Kingma & Ba's Algorithm 2 has no :math:`\epsilon`; others add it to the denominator).
    """
    _step(alg.ADAMAX, param, grad, (exp_avg, exp_inf), step, backend, locals())


def nadam(param, grad, exp_avg, exp_avg_sq, *, step, mu_product=None, lr=2e-3,
          betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
          decoupled_weight_decay=False, maximize=False, grad_scale=1.0, backend=None):
    r"""One NAdam step (Adam with Nesterov momentum, Dozat 2016) with PyTorch's momentum decay
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
    """
    hyper = dict(locals())
    checked = check_hyper(alg.NADAM, hyper)
    if mu_product is None:
        mu_product = alg.nadam_mu_product(checked["betas"][0], checked["momentum_decay"],
                                          check_step(step) - 1)
    mu_product = check_number("mu_product", mu_product, 0.0, 1.0)
    host = _step(alg.NADAM, param, grad, (exp_avg, exp_avg_sq), step, backend, hyper,
                 host={"mu_product": mu_product})
    return host["mu_product"]


def radam(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
          weight_decay=0.0, decoupled_weight_decay=False, maximize=False, grad_scale=1.0,
          backend=None):
    r"""One RAdam step (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and
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
    """
    _step(alg.RADAM, param, grad, (exp_avg, exp_avg_sq), step, backend, locals())


def adadelta(param, grad, square_avg, acc_delta, *, step, lr=1.0, rho=0.9, eps=1e-6,
             weight_decay=0.0, maximize=False, grad_scale=1.0, backend=None):
    r"""One Adadelta step (Zeiler, 2012), with PyTorch's learning rate; all state starts at zero.
    ``step`` does not enter the update.

    .. math::
        g &= \pm\nabla + \lambda\theta, \quad v \leftarrow \rho v + (1-\rho) g^2 \\
        \Delta &= \frac{\sqrt{a + \epsilon}}{\sqrt{v + \epsilon}}\, g, \quad
        a \leftarrow \rho a + (1-\rho) \Delta^2, \quad
        \theta \leftarrow \theta - \eta\Delta
    """
    _step(alg.ADADELTA, param, grad, (square_avg, acc_delta), step, backend, locals())


def lion(param, grad, exp_avg, *, step, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
         maximize=False, grad_scale=1.0, backend=None):
    r"""One Lion step (EvoLved Sign Momentum): Chen et al. (2023), "Symbolic Discovery of
    Optimization Algorithms", arXiv:2302.06675, Program 1. ``exp_avg`` starts at zero; ``step``
    does not enter the update.

    .. math::
        c &= \beta_1 m + (1-\beta_1) g, \quad g = \pm\nabla \\
        \theta &\leftarrow \theta (1 - \eta\lambda) - \eta\, \operatorname{sign}(c) \\
        m &\leftarrow \beta_2 m + (1-\beta_2) g

    with :math:`\operatorname{sign}(0) = 0`. Weight decay is decoupled, as in the paper; its
    authors suggest a learning rate 3-10x smaller and a weight decay 3-10x larger than AdamW's.
    ``maximize`` is an addition for uniformity with the other steps.
    """
    _step(alg.LION, param, grad, (exp_avg,), step, backend, locals())


def lamb(param, grad, exp_avg, exp_avg_sq, *, step, segment_offsets=None, lr=1e-3,
         betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, maximize=False, grad_scale=1.0,
         backend=None):
    r"""One LAMB step (layer-wise adaptive moments): You et al. (2019), "Large Batch Optimization
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
    """
    _step(alg.LAMB, param, grad, (exp_avg, exp_avg_sq), step, backend, locals(),
          segment_offsets=segment_offsets)
