"""AdamW from fastopt's C kernel in a JAX training loop: a linear model fitted by least squares,
stepped in place by ``fastopt.jax.adamw`` and, for comparison, by ``optax.adamw``.

    python examples/jax_adamw.py

Needs the ``jax`` extra (``pip install fastopt[jax]``).
"""

import jax
import jax.numpy as jnp
import optax

import fastopt.jax


def loss(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def main(steps=200):
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (256, 8))
    y = x @ jax.random.normal(kw, (8, 1)) + 0.5
    start = {"w": jnp.zeros((8, 1)), "b": jnp.zeros(1)}
    grad = jax.jit(jax.grad(loss))

    tx = fastopt.jax.adamw(learning_rate=5e-2, weight_decay=1e-4)
    params, state = jax.tree.map(jnp.copy, start), tx.init(start)
    for _ in range(steps):
        params, state = tx.step(params, grad(params, x, y), state)   # in place, donated

    reference = optax.adamw(learning_rate=5e-2, weight_decay=1e-4)
    theirs, their_state = start, reference.init(start)
    for _ in range(steps):
        updates, their_state = reference.update(grad(theirs, x, y), their_state, theirs)
        theirs = optax.apply_updates(theirs, updates)

    difference = max(float(jnp.max(jnp.abs(params[k] - theirs[k]))) for k in params)
    print(f"loss after {steps} steps: fastopt {float(loss(params, x, y)):.3g}, "
          f"optax {float(loss(theirs, x, y)):.3g}; largest parameter difference {difference:.2e}")
    return params, theirs


if __name__ == "__main__":
    main()
