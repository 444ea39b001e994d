r"""fastopt's Adam and AdamW for JAX: optax-compatible gradient transformations whose update runs
fastopt's C kernel (``libfastopt``) on CPU arrays through an XLA FFI handler.

.. code-block:: python

    import jax.numpy as jnp
    import fastopt.jax

    tx = fastopt.jax.adamw(learning_rate=1e-3, weight_decay=1e-2)
    params = {"w": jnp.ones((256, 256)), "b": jnp.zeros(256)}
    state = tx.init(params)
    params, state = tx.step(params, grads, state)     # in place: the old params, state are donated

    updates, state = tx.update(grads, state, params)   # the optax protocol (optax.chain, ...)
    params = optax.apply_updates(params, updates)

``tx`` is a ``(init, update)`` pair shaped like ``optax.GradientTransformation``, with the
hyperparameter names and defaults of ``optax.adam`` / ``optax.adamw`` (``learning_rate`` a number
or a schedule of the step count, as in optax), plus ``tx.step(params, grads, state) -> (params,
state)``. Each parameter leaf is one call of the handler, which runs ``fastopt_adam_f32`` (or
``_f64``) of ``fastopt.h`` with the update

.. math::
    m &\leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
    \theta &\leftarrow \theta (1 - \eta\lambda) - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{v} / \sqrt{1-\beta_2^t} + \epsilon}

(optax's ``adamw``: :math:`\theta - \eta(\hat m / (\sqrt{\hat v} + \epsilon) + \lambda\theta)`,
the same up to float rounding; ``adam`` has no :math:`\lambda`). The bias corrections are
computed in JAX from the traced step count and passed with the learning rate as a runtime array:
schedules and the step count never recompile.

**No copies.** ``tx.step`` is jitted with ``params`` and ``state`` donated, and the handler's
outputs are aliased to its parameter and state inputs (``input_output_aliases``): XLA hands the
donated buffers to the kernel, which updates them where they are, as fastopt's ``c`` backend
does with numpy arrays. The arrays passed in are deleted, as with any donation; use the ones
returned. Called inside a jitted function of your own, ``tx.step`` is inlined: donate that
function's parameters and state for the same effect (otherwise XLA copies them first, and the
results are the same). ``tx.update`` follows the optax protocol, returning ``updates`` to add: its
kernel steps a copy of ``params`` and the update is the difference (one more array per leaf).

**Where it runs.** The handler is built with the C++ compiler when this module is first imported
(:mod:`fastopt.jax._ffi` explains how and where it is cached). If it cannot be built (no C++
compiler, no ``libfastopt``, headers of a jax too old for ``jax.ffi``) or ``FASTOPT_JAX_FFI=0``,
the import warns with the cause and the steps run through ``jax.pure_callback`` instead: the
arrays are copied to numpy, stepped by :func:`fastopt.functional.adam`, and copied back; same
results, no donation. :data:`FFI_ERROR` holds the cause (``None`` when the handler is in use).
Arrays on other devices (GPU) are not supported by the handler.

**Non-finite gradients.** A step whose gradients hold an inf or NaN (anywhere in the tree) is
skipped whole, as fastopt's optimizer classes do: parameters and state keep their values, the
step count does not advance, and ``state.skipped`` counts it, so that none passes unseen (read it
when you log). The check is one more read of the gradients in XLA. ``skip_nonfinite=False``
leaves it out: the inf or NaN then goes into the parameters and moments, as in optax.
"""

import os
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fastopt.jax import _ffi

__all__ = ["adam", "adamw", "AdamState", "GradientTransformation", "FFI_ERROR"]

FFI_ERROR = None
if os.environ.get("FASTOPT_JAX_FFI", "1") == "0":
    FFI_ERROR = "FASTOPT_JAX_FFI=0"
else:
    try:
        _ffi.register()
    except Exception as exc:  # any failure to build or load leaves the copying path
        FFI_ERROR = f"{type(exc).__name__}: {exc}"
if FFI_ERROR is not None:
    warnings.warn(f"fastopt.jax: the XLA FFI handler is not available ({FFI_ERROR}); steps run "
                  "through jax.pure_callback, which copies every array", RuntimeWarning,
                  stacklevel=2)


class AdamState(NamedTuple):
    """The state of :func:`adam` and :func:`adamw`: the count of steps taken (int32), the moments,
    one array per parameter leaf (``mu`` is torch's ``exp_avg``, ``nu`` its ``exp_avg_sq``), and
    the count of steps skipped for non-finite gradients (int32)."""
    count: Any
    mu: Any
    nu: Any
    skipped: Any


class GradientTransformation(NamedTuple):
    """``(init, update)`` as ``optax.GradientTransformation``, plus :meth:`step`."""
    init: Callable
    update: Callable

    def step(self, params: Any, grads: Any, state: AdamState) -> tuple[Any, AdamState]:
        """One step in place: ``(params, state)`` after it; ``params`` and ``state`` are donated."""
        return self.update.step(params, grads, state)


def _adam_leaf_ffi(p, g, m, v, scalars, decoupled):
    call = jax.ffi.ffi_call("fastopt_adam", (jax.ShapeDtypeStruct(p.shape, p.dtype),) * 3,
                            input_output_aliases={0: 0, 2: 1, 3: 2}, vmap_method="sequential")
    return call(p, g, m, v, scalars, decoupled=np.int32(decoupled), maximize=np.int32(0))


def _adam_leaf_callback(p, g, m, v, scalars, decoupled, count):
    """The copying path: fastopt.functional.adam on numpy copies, through jax.pure_callback."""
    from fastopt import functional

    def host(p, g, m, v, scalars, count):
        p, m, v = np.array(p), np.array(m), np.array(v)       # writable copies
        if scalars[7] == 0:                                   # skipped: non-finite gradients
            return p, m, v
        lr, beta1, beta2, eps, weight_decay = (float(x) for x in scalars[:5])
        step = functional.adamw if decoupled else functional.adam
        step(p, np.asarray(g), m, v, step=int(count), lr=lr, betas=(beta1, beta2), eps=eps,
             weight_decay=weight_decay)
        return p, m, v

    shapes = (jax.ShapeDtypeStruct(p.shape, p.dtype),) * 3
    return jax.pure_callback(host, shapes, p, g, m, v, scalars, count,
                             vmap_method="sequential")


def _check_hyperparameters(learning_rate, b1, b2, eps, weight_decay):
    if not callable(learning_rate) and not (np.isfinite(learning_rate) and learning_rate >= 0):
        raise ValueError(f"learning_rate: expected a finite number >= 0 or a schedule, got "
                         f"{learning_rate!r}")
    for name, beta in (("b1", b1), ("b2", b2)):
        if not 0 <= beta < 1:
            raise ValueError(f"{name}: expected 0 <= {name} < 1, got {beta!r}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    if not (np.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a finite number >= 0, got {weight_decay!r}")


class _AdamUpdate:
    """The update of :func:`adam`/:func:`adamw`: callable as optax's ``update``, and ``step``."""

    def __init__(self, learning_rate, b1, b2, eps, weight_decay, decoupled, skip_nonfinite):
        self.learning_rate, self.b1, self.b2 = learning_rate, b1, b2
        self.eps, self.weight_decay, self.decoupled = eps, weight_decay, decoupled
        self.skip_nonfinite = skip_nonfinite
        self.step = jax.jit(self._step, donate_argnums=(0, 2))

    def __call__(self, updates, state, params=None):
        if params is None:
            raise ValueError("params: fastopt.jax's update steps the parameters, so it needs them "
                             "(tx.update(grads, state, params))")
        new_params, state = self._step(params, updates, state)
        return jax.tree.map(lambda new, old: new - old, new_params, params), state

    def _step(self, params, grads, state):
        leaves, tree = jax.tree.flatten(params)
        grad_leaves, grad_tree = jax.tree.flatten(grads)
        if grad_tree != tree:
            raise ValueError(f"grads: expected the structure of params ({tree}), got {grad_tree}")
        for k, (p, g) in enumerate(zip(leaves, grad_leaves)):
            if p.dtype not in (jnp.float32, jnp.float64):
                raise TypeError(f"params: leaf {k} is {p.dtype}; float32 or float64 expected")
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"grads: leaf {k} is {g.dtype}{list(g.shape)}, expected its "
                                 f"parameter's {p.dtype}{list(p.shape)}")
        lr = (self.learning_rate(state.count) if callable(self.learning_rate)
              else self.learning_rate)
        apply = jnp.asarray(True)
        if self.skip_nonfinite and grad_leaves:
            apply = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grad_leaves]))
        count = state.count + apply.astype(jnp.int32)
        mus, nus = tree.flatten_up_to(state.mu), tree.flatten_up_to(state.nu)
        new = []
        for p, g, m, v in zip(leaves, grad_leaves, mus, nus):
            t = count.astype(p.dtype)
            rate = jnp.asarray(lr, p.dtype)
            b1, b2 = jnp.asarray(self.b1, p.dtype), jnp.asarray(self.b2, p.dtype)
            scalars = jnp.stack([rate, b1, b2, jnp.asarray(self.eps, p.dtype),
                                 jnp.asarray(self.weight_decay, p.dtype),
                                 rate / (1 - b1 ** t),           # step_size
                                 jnp.sqrt(1 - b2 ** t),          # bias_correction2_sqrt
                                 apply.astype(p.dtype)])
            if FFI_ERROR is None:
                new.append(_adam_leaf_ffi(p, g, m, v, scalars, self.decoupled))
            else:
                new.append(_adam_leaf_callback(p, g, m, v, scalars, self.decoupled, count))
        params = tree.unflatten([x[0] for x in new])
        state = AdamState(count, tree.unflatten([x[1] for x in new]),
                          tree.unflatten([x[2] for x in new]),
                          state.skipped + (~apply).astype(jnp.int32))
        return params, state


def _init(params):
    return AdamState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params),
                     jax.tree.map(jnp.zeros_like, params), jnp.zeros([], jnp.int32))


def adamw(learning_rate: float | Callable[[Any], Any] = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 1e-4, *,
          skip_nonfinite: bool = True) -> GradientTransformation:
    """AdamW (decoupled weight decay) as ``optax.adamw``, run by fastopt's C kernel.

    learning_rate  a number, or a schedule: a function of the step count (0 at the first step)
    b1, b2         decay rates of the moments (0.9, 0.999)
    eps            added to the denominator, outside the square root (1e-8)
    weight_decay   decoupled decay rate (optax's default 1e-4; torch's AdamW has 1e-2)
    skip_nonfinite skip (and count in ``state.skipped``) a step whose gradients are not all
                   finite (True)

    Returns a :class:`GradientTransformation`; see the module's docstring."""
    _check_hyperparameters(learning_rate, b1, b2, eps, weight_decay)
    return GradientTransformation(_init, _AdamUpdate(learning_rate, b1, b2, eps, weight_decay,
                                                     True, skip_nonfinite))


def adam(learning_rate: float | Callable[[Any], Any] = 1e-3, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8, *, skip_nonfinite: bool = True) -> GradientTransformation:
    """Adam as ``optax.adam`` (no weight decay), run by fastopt's C kernel; the arguments are
    :func:`adamw`'s. Returns a :class:`GradientTransformation`."""
    _check_hyperparameters(learning_rate, b1, b2, eps, 0.0)
    return GradientTransformation(_init, _AdamUpdate(learning_rate, b1, b2, eps, 0.0, False,
                                                     skip_nonfinite))
