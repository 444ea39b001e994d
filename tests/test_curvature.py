"""Hessian-vector products against finite differences of gradients and the full Hessian's
eigenvalues; Lanczos and power iteration; sharpness tracked by fastopt.train."""

import numpy as np
import pytest

import fastopt
from fastopt.dynamics import curvature


def _tiny(activation, loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((7, 3))
    y = rng.integers(0, 3, 7)
    model = fastopt.MLP([3, 4, 3, 3], activation=activation, dtype=np.float64, loss=loss,
                        backend="numpy", seed=seed, init="xavier")
    return model, X, y


def _grad(model, X, y, params):
    clone = model.copy()
    clone.set_params(params)
    clone.loss_and_grad(X, y)
    return clone.grads.astype(np.float64).copy()


@pytest.mark.parametrize("activation,loss", [("tanh", "cross_entropy"), ("relu", "mse"),
                                             ("sigmoid", "mse"), ("gelu", "cross_entropy")])
def test_hvp_matches_finite_differences_of_gradients(activation, loss):
    model, X, y = _tiny(activation, loss)
    H = curvature.Hessian(model, X, y)
    np.testing.assert_allclose(H.gradient, _grad(model, X, y, model.get_params()), atol=1e-12)
    p = model.get_params()
    v = np.random.default_rng(1).standard_normal(p.size)
    h = 1e-5
    fd = (_grad(model, X, y, p + h * v) - _grad(model, X, y, p - h * v)) / (2 * h)
    np.testing.assert_allclose(H.matvec(v), fd, rtol=1e-5, atol=1e-7)


def test_lanczos_and_power_iteration_against_eigvalsh():
    model, X, y = _tiny("tanh", "cross_entropy")
    full = curvature.full_hessian(model, X, y)
    np.testing.assert_allclose(full, full.T, atol=1e-12)  # exact products: a symmetric matrix
    eig = np.linalg.eigvalsh(full)
    H = curvature.Hessian(model, X, y)
    top = curvature.lanczos(H, tol=1e-8)
    assert abs(top.value - eig[-1]) <= 1e-8 * abs(eig[-1])
    assert top.residual <= 1e-8 and top.products == H.products <= H.size
    hv = H.matvec(top.vector)
    assert np.linalg.norm(hv - top.value * top.vector) <= 1e-7 * abs(top.value)
    power = curvature.power_iteration(full, tol=1e-6, max_products=5000)
    magnitude = eig[np.argmax(np.abs(eig))]
    assert abs(power.value - magnitude) <= 1e-6 * abs(magnitude)


def test_gd_on_a_quadratic_diverges_beyond_two_over_L():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = Q @ np.diag([0.1, 0.5, 1.0, 2.0, 3.0, 8.0]) @ Q.T
    L = curvature.lanczos(A, tol=1e-10).value
    assert abs(L - 8.0) < 1e-8
    for factor, converges in ((0.95, True), (1.05, False)):
        x = np.ones(6)
        for t in range(1, 301):
            fastopt.functional.sgd(x, A @ x, step=t, lr=factor * 2 / L, backend="numpy")
        assert (np.linalg.norm(x) < 1e-3) == converges


def test_train_tracks_sharpness():
    model, X, y = _tiny("tanh", "cross_entropy")
    opt = fastopt.SGD([model.params], lr=0.5)
    history = fastopt.train(model, opt, X, y, epochs=6, batch_size=None, shuffle=False,
                            track_sharpness_every=2, progress=False)
    assert history.sharpness["step"] == [2, 4, 6]
    final = curvature.lanczos(curvature.Hessian(model, X, y), tol=1e-8).value
    assert abs(history.sharpness["top_eigenvalue"][-1] - final) <= 1e-3 * abs(final)
    with pytest.raises(ValueError, match="track_sharpness_every"):
        fastopt.train(model, opt, X, y, track_sharpness_every=0)


def test_bad_input():
    model, X, y = _tiny("tanh", "cross_entropy")
    H = curvature.Hessian(model, X, y)
    with pytest.raises(ValueError, match="v: expected a vector of"):
        H.matvec(np.ones(3))
    with pytest.raises(ValueError, match="X"):
        curvature.Hessian(model, X[:, :2], y)
    with pytest.raises(TypeError, match="model"):
        curvature.Hessian("net", X, y)


def test_sharpness_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from fastopt.dynamics import plots

    model, X, y = _tiny("tanh", "cross_entropy")
    history = fastopt.train(model, fastopt.SGD([model.params], lr=0.5), X, y, epochs=4,
                            batch_size=None, track_sharpness_every=1, progress=False)
    plots.sharpness(history, tmp_path / "s.png")
    plots.training_history(history, tmp_path / "h.png")
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "h.png").stat().st_size


def test_dynamics_sharpness_and_train_plot_commands(tmp_path):
    pytest.importorskip("matplotlib")
    from fastopt.cli import main

    assert main(["dynamics", "sharpness", "--rows", "40", "--steps", "20", "--every", "10",
                 "--out", str(tmp_path)]) == 0
    with np.load(tmp_path / "sharpness.npz") as f:
        assert list(f["sharpness_step"]) == [10, 20]
        assert np.isfinite(f["sharpness_top_eigenvalue"]).all()
    assert (tmp_path / "sharpness.png").exists() and (tmp_path / "sharpness_history.png").exists()
    plot = tmp_path / "train.png"
    assert main(["train", "--epochs", "1", "--widths", "8", "--backend", "numpy",
                 "--no-progress", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
