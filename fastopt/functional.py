"""Stateless in-place optimizer steps: what other trainers embed.

Each function updates ``param`` and its state arrays in place for one step and returns ``None``.
Arrays may be numpy arrays, DLPack host arrays (e.g. CPU torch tensors) or CUDA arrays exposing
``__cuda_array_interface__`` (CuPy, torch, numba), all viewed without copying. ``step`` is the
1-based number of this step (PyTorch's ``state["step"]`` after its increment). Hyperparameters follow
``torch.optim`` (names, defaults, checks, ``foreach=False`` update rules). ``grad_scale`` multiplies
the gradient inside the kernel before anything else (unscaling a mixed-precision loss scale,
clipping by a norm computed with :func:`grad_norm`). ``backend`` overrides the choice that follows the
arrays (see :func:`fastopt.available_backends`).

Every argument is checked before anything is written: a call that raises leaves all arrays as they
were. The gradient's values are not inspected: a non-finite gradient makes non-finite parameters and
state. The optimizer classes skip such steps; here, check :func:`grad_norm` first where that matters.
"""

import math

from . import _algorithms as alg
from ._dispatch import choose, is_device_array, kernels
from ._step import check_hyper, launch, resolve
from ._validate import check_arrays, check_number, check_step


def _step(algorithm, param, grad, states, step, backend, hyper, fresh=False):
    grad_scale = check_number("grad_scale", hyper["grad_scale"], 0.0)
    hyper = check_hyper(algorithm, hyper)
    step = check_step(step)
    module, arrays, _ = resolve(algorithm, hyper, param, grad, states, backend)
    launch(module, algorithm, arrays, algorithm.scalars(hyper, step, fresh), grad_scale)


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

    ``momentum_buffer`` is needed when ``momentum != 0``; it is set to the gradient at ``step == 1``,
    as PyTorch does.

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
