"""fastopt.jax against optax: Adam and AdamW through the XLA FFI handler (fastopt's C kernel),
in place on donated buffers, jitted, with schedules and pytrees; the optax update protocol; the
copying fallback; bad input; the README's example script."""

import importlib
import os
import runpy

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

import fastopt.jax as fj  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# float32 rounding: the update is the same math in another order (optax divides the moments by
# the bias corrections first), a few ulps a step, accumulated over the steps.
TOL = dict(rtol=2e-5, atol=2e-6)


def tree(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 2)
    return {"w": jax.random.normal(k[0], (257, 3)), "layer": [jax.random.normal(k[1], (5,))]}


def gradient(params, t):
    return jax.tree.map(lambda x: jnp.sin(3 * x + t), params)


def run_optax(tx, params, steps):
    state = tx.init(params)
    for t in range(steps):
        updates, state = tx.update(gradient(params, t), state, params)
        params = optax.apply_updates(params, updates)
    return params


def assert_trees_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


def test_the_ffi_handler_is_in_use():
    assert fj.FFI_ERROR is None


@pytest.mark.parametrize("make, kwargs", [
    ("adamw", dict(learning_rate=1e-2, weight_decay=1e-2)),
    ("adam", dict(learning_rate=optax.linear_schedule(1e-2, 1e-3, 10), b1=0.8, b2=0.99,
                  eps=1e-6)),
])
def test_step_matches_optax_in_place(make, kwargs):
    steps = 12
    expected = run_optax(getattr(optax, make)(**kwargs), tree(), steps)
    tx = getattr(fj, make)(**kwargs)
    params = tree()
    state = tx.init(params)
    for t in range(steps):
        grads = gradient(params, t)
        pointers = [x.unsafe_buffer_pointer() for x in jax.tree.leaves((params, state.mu))]
        old = params
        params, state = tx.step(params, grads, state)
        # donated and aliased: the kernel updated the same buffers
        assert [x.unsafe_buffer_pointer() for x in jax.tree.leaves((params, state.mu))] == pointers
        assert old["w"].is_deleted()
    assert int(state.count) == steps
    assert_trees_close(params, expected)
    assert float(jnp.max(jnp.abs(params["w"] - tree()["w"]))) > 1e-2   # it moved


def test_update_follows_the_optax_protocol_in_a_chain_under_jit():
    steps = 6
    expected = run_optax(optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(3e-2)), tree(),
                         steps)
    tx = optax.chain(optax.clip_by_global_norm(1.0), fj.adamw(3e-2))
    params = tree()
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(steps):
        updates, state = update(gradient(params, t), state, params)
        params = optax.apply_updates(params, updates)
    assert_trees_close(params, expected)


def test_a_step_with_non_finite_gradients_is_skipped_and_counted():
    tx = fj.adamw(1e-2)
    params = tree()
    state = tx.init(params)
    params, state = tx.step(params, gradient(params, 0), state)
    before = jax.tree.map(np.array, (params, state))
    grads = gradient(params, 1)
    grads["layer"][0] = grads["layer"][0].at[2].set(jnp.nan)
    params, state = tx.step(params, grads, state)
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(jax.tree.map(np.array,
                                                                           (params, state)))):
        if x.ndim:                                   # parameters and moments: the same bits
            assert np.array_equal(x, y)
    assert int(state.count) == 1 and int(state.skipped) == 1
    params, state = tx.step(params, gradient(params, 1), state)
    assert int(state.count) == 2 and int(state.skipped) == 1
    unchecked = fj.adamw(1e-2, skip_nonfinite=False)
    _, s = unchecked.step(tree(), jax.tree.map(lambda g: g * jnp.inf, gradient(tree(), 0)),
                          unchecked.init(tree()))
    assert int(s.skipped) == 0 and not np.isfinite(np.asarray(s.nu["w"])).all()


def test_bad_input_is_refused_before_anything_is_consumed():
    with pytest.raises(ValueError, match="b1"):
        fj.adam(b1=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        fj.adamw(learning_rate=-1.0)
    tx = fj.adamw()
    params = tree()
    state = tx.init(params)
    with pytest.raises(ValueError, match="grads"):
        tx.step(params, {"w": params["w"], "layer": [jnp.zeros(4)]}, state)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, state)
    assert not params["w"].is_deleted()
    with pytest.raises(TypeError, match="float32 or float64"):
        tx.step({"i": jnp.zeros(3, jnp.int32)}, {"i": jnp.zeros(3, jnp.int32)},
                tx.init({"i": jnp.zeros(3, jnp.int32)}))


def test_the_copying_fallback_warns_and_matches_optax(monkeypatch):
    expected = run_optax(optax.adamw(1e-2), tree(), 4)
    monkeypatch.setenv("FASTOPT_JAX_FFI", "0")
    try:
        with pytest.warns(RuntimeWarning, match="FASTOPT_JAX_FFI=0.*pure_callback"):
            importlib.reload(fj)
        assert fj.FFI_ERROR == "FASTOPT_JAX_FFI=0"
        tx = fj.adamw(1e-2)
        params = tree()
        state = tx.init(params)
        for t in range(4):
            params, state = tx.step(params, gradient(params, t), state)
        assert_trees_close(params, expected)
    finally:
        monkeypatch.delenv("FASTOPT_JAX_FFI")
        importlib.reload(fj)
    assert fj.FFI_ERROR is None


def test_the_example_script_runs(capsys):
    module = runpy.run_path(os.path.join(ROOT, "examples", "jax_adamw.py"))
    params, theirs = module["main"](steps=50)
    assert_trees_close(params, theirs)
    assert "largest parameter difference" in capsys.readouterr().out
