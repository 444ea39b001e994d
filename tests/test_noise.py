"""Per-example gradient norms and the noise scale against per-example gradients computed one by
one with model.loss_and_grad."""

import numpy as np
import pytest

import fastopt
from fastopt.dynamics import noise

from conftest import HOST, requires_cuda


def _data(seed=0, n=9):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.integers(0, 3, n)


def _one_by_one(model, X, y):
    rows = []
    for i in range(len(X)):
        model.loss_and_grad(X[i:i + 1], y[i:i + 1])
        rows.append(model.grads.astype(np.float64).copy())
    return np.array(rows)


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_per_example_norms_equal_materialized_gradients(backend, loss):
    X, y = _data()
    model = fastopt.MLP([5, 6, 4, 3], activation="tanh", dtype=np.float64, backend=backend,
                        loss=loss, seed=1)
    g = _one_by_one(model, X, y)
    np.testing.assert_allclose(noise.per_example_grad_norms(model, X, y),
                               np.linalg.norm(g, axis=1), rtol=1e-10)
    per_layer = noise.per_example_grad_norms(model, X, y, per_layer=True)
    offsets = np.cumsum([0] + [a * b + b for a, b in zip(model.sizes[:-1], model.sizes[1:])])
    for layer in range(model.n_layers):
        part = g[:, offsets[layer]:offsets[layer + 1]]
        np.testing.assert_allclose(per_layer[:, layer], np.linalg.norm(part, axis=1), rtol=1e-10)


@requires_cuda
def test_per_example_norms_on_cuda():
    X, y = _data(n=5)
    model = fastopt.MLP([5, 4, 3], dtype=np.float64, backend="cuda", seed=0)
    reference = model.copy(backend="numpy")
    np.testing.assert_allclose(noise.per_example_grad_norms(model, X, y),
                               noise.per_example_grad_norms(reference, X, y), rtol=1e-12)


def test_noise_scale_equals_its_definition():
    X, y = _data(n=12)
    model = fastopt.MLP([5, 6, 3], activation="relu", dtype=np.float64, backend="numpy", seed=2)
    g = _one_by_one(model, X, y)
    est = noise.noise_scale(model, X, y)  # one batch of every row
    n, G = len(X), g.mean(axis=0)
    trace = ((g - G) ** 2).sum() / (n - 1)  # the unbiased trace of the covariance
    grad_sq = G @ G - trace / n  # E|G_B|^2 = |G|^2 + tr(Sigma)/B
    assert np.isclose(est.trace_sigma, trace, rtol=1e-10)
    assert np.isclose(est.grad_sq, grad_sq, rtol=1e-10)
    assert np.isclose(est.b_simple, trace / grad_sq, rtol=1e-10)
    several = noise.noise_scale(model, X, y, batch_size=6, batches=5)
    assert several.batches == 5 and np.isfinite(several.stderr) and several.stderr > 0
    with pytest.raises(ValueError, match="batch_size"):
        noise.noise_scale(model, X, y, batch_size=1)


def test_minibatch_variance_falls_as_one_over_b():
    X, y = _data(n=40)
    model = fastopt.MLP([5, 8, 3], activation="tanh", dtype=np.float64, backend="numpy", seed=0)
    g = _one_by_one(model, X, y)
    sizes, measured, predicted = noise.minibatch_variance(model, X, y, [1, 4, 40], samples=200)
    trace_n = ((g - g.mean(axis=0)) ** 2).sum(axis=1).mean()
    np.testing.assert_allclose(predicted, trace_n * (40 - sizes) / (sizes * 39), rtol=1e-10)
    assert measured[-1] < 1e-20 and predicted[-1] == 0  # the full batch is the gradient
    # 200 random batches: the measured variance within 25% of its expectation
    np.testing.assert_allclose(measured[:2], predicted[:2], rtol=0.25)


def test_dynamics_noise_command(tmp_path):
    pytest.importorskip("matplotlib")
    from fastopt.cli import main

    assert main(["dynamics", "noise", "--rows", "60", "--out", str(tmp_path)]) == 0
    with np.load(tmp_path / "noise.npz") as f:
        assert f["batch_sizes"][-1] == 60 and np.isfinite(f["b_simple"])
        np.testing.assert_allclose(f["measured"][:-1], f["predicted"][:-1], rtol=0.7)
    assert (tmp_path / "noise.png").exists()


def test_train_tracks_noise_from_its_own_steps():
    X, y = _data(n=12)
    model = fastopt.MLP([5, 6, 3], activation="tanh", dtype=np.float64, backend="numpy", seed=0)
    probe = model.copy()
    opt = fastopt.SGD([model.params], lr=0.1)
    history = fastopt.train(model, opt, X, y, epochs=2, batch_size=5, shuffle=False,
                            track_noise_every=2, progress=False)
    assert history.noise["step"] == [2, 4, 6]
    # step 2 is the second batch (rows 5..9) at the parameters after step 1
    fastopt.train(probe, fastopt.SGD([probe.params], lr=0.1), X[:5], y[:5], epochs=1,
                  batch_size=5, progress=False)
    g = _one_by_one(probe, X[5:10], y[5:10])
    G = g.mean(axis=0)
    trace = ((g - G) ** 2).sum() / 4
    assert np.isclose(history.noise["trace_sigma"][0], trace, rtol=1e-9)
    assert np.isclose(history.noise["grad_sq"][0], G @ G - trace / 5, rtol=1e-9)
    window = noise.b_simple(history, window=2)
    assert np.isclose(window, np.mean(history.noise["trace_sigma"][-2:])
                      / np.mean(history.noise["grad_sq"][-2:]))


@pytest.mark.parametrize("backend", [b for b in HOST if b in ("cpu", "c")])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_compiled_epochs_track_noise_as_single_steps(backend, loss):
    """The epoch kernels' per-step squares give the estimates that steps run one by one give
    (the last batch of 2 rows included, a batch of 1 skipped: 12 rows in batches of 5, 2)."""
    X, y = _data(n=12)
    histories = []
    for fused in (None, False):
        model = fastopt.MLP([5, 6, 4, 3], activation="tanh", dtype=np.float64, backend=backend,
                            seed=0, loss=loss)
        opt = fastopt.Adam([model.params], lr=0.01, backend=backend)
        histories.append(fastopt.train(model, opt, X, y, epochs=2, batch_size=5, fused=fused,
                                       track_noise_every=1, progress=False).noise)
    compiled, single = histories
    assert compiled["step"] == single["step"] == [1, 2, 3, 4, 5, 6]
    for key in ("trace_sigma", "grad_sq"):
        np.testing.assert_allclose(compiled[key], single[key], rtol=1e-10)
    model = fastopt.MLP([5, 6, 3], dtype=np.float64, backend=backend, seed=0)
    history = fastopt.train(model, fastopt.SGD([model.params], lr=0.1, backend=backend), X[:11],
                            y[:11], epochs=1, batch_size=5, track_noise_every=1, progress=False)
    assert history.noise["step"] == [1, 2]  # the third batch has one row
