"""The empirical NTK against a brute-force Jacobian (finite differences in float64), the
one-hidden-layer closed form, and the width sweep's lazy training."""

import numpy as np
import pytest

import fastopt
from fastopt.dynamics import network, wide

from conftest import AVAILABLE


def _data(n=5, d=3, C=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, C))


def _finite_difference_jacobian(model, X, h=1e-6):
    p = model.get_params()
    clone = model.copy(backend="numpy")
    columns = []
    for k in range(p.size):
        e = np.zeros_like(p)
        e[k] = h
        clone.set_params(p + e)
        up = clone.forward(X)
        clone.set_params(p - e)
        columns.append((up - clone.forward(X)) / (2 * h))
    return np.stack(columns, axis=-1)  # (n, C, P)


@pytest.mark.parametrize("sizes,activation", [([3, 6, 2], "tanh"), ([3, 5, 4, 2], "sigmoid"),
                                              ([3, 4, 4, 4, 2], "gelu")])
@pytest.mark.parametrize("parameterization", wide.PARAMETERIZATIONS)
def test_ntk_equals_jacobian_gram(sizes, activation, parameterization):
    X, _ = _data()
    X2 = _data(n=3, seed=1)[0]
    model = wide.make_model(sizes, parameterization, activation, seed=2)
    J = _finite_difference_jacobian(model, X)
    np.testing.assert_allclose(wide.jacobian(model, X), J, atol=1e-8)
    scales = np.concatenate([np.r_[np.full(a * b, sw), np.full(b, sb)] for (a, b), (sw, sb) in
                             zip(zip(sizes[:-1], sizes[1:]),
                                 wide.gradient_scales(model, parameterization))])
    n, C, P = J.shape
    Jf = J.reshape(n * C, P)
    np.testing.assert_allclose(wide.ntk(model, X, parameterization=parameterization),
                               (Jf * scales) @ Jf.T, atol=1e-7)
    J2 = wide.jacobian(model, X2).reshape(3 * C, P)
    np.testing.assert_allclose(wide.ntk(model, X, X2, parameterization=parameterization),
                               (Jf * scales) @ J2.T, atol=1e-7)
    if len(sizes) == 3:
        np.testing.assert_allclose(wide.ntk_one_hidden(model, X, X2, parameterization),
                                   (Jf * scales) @ J2.T, atol=1e-7)


def test_ntk_against_torch_func():
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, jacrev, vmap

    X, _ = _data(n=4, d=3, C=3)
    model = wide.make_model([3, 7, 3], "standard", "relu", seed=0)
    (w1, b1), (w2, b2) = network.layers(model)
    net = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    net = net.double()
    params = {"0.weight": torch.tensor(w1.T), "0.bias": torch.tensor(b1),
              "2.weight": torch.tensor(w2.T), "2.bias": torch.tensor(b2)}
    x = torch.tensor(X)
    jac = vmap(jacrev(lambda p, xi: functional_call(net, p, (xi[None],))[0]),
               (None, 0))(params, x)
    rows = torch.cat([j.reshape(4, 3, -1) for j in jac.values()], dim=2).reshape(12, -1)
    np.testing.assert_allclose(wide.ntk_one_hidden(model, X), (rows @ rows.T).numpy(),
                               atol=1e-10)


def test_sweep_trains_lazily_when_wide():
    d = fastopt.datasets.load_digits(dtype=np.float64)
    X, Y = d.X_train[:24], np.eye(10)[d.y_train[:24]]
    runs = wide.sweep(X, Y, widths=(8, 512), seeds=(0,), steps=40, X_test=d.X_test[:10],
                      Y_test=np.eye(10)[d.y_test[:10]])
    narrow, wider = runs
    for r in runs:
        assert r.losses.shape == (41,) and r.losses[-1] < 0.5 * r.losses[0]
        assert r.weight_change.shape == (2,) and np.isfinite(r.linear_gap)
    assert (wider.weight_change < 0.5 * narrow.weight_change).all()
    assert wider.ntk_drift < 0.5 * narrow.ntk_drift
    assert wider.linear_gap < narrow.linear_gap
    with pytest.raises(ValueError, match="parameterization"):
        wide.sweep(X, Y, widths=(4,), parameterization="mup")
    with pytest.raises(ValueError, match="widths"):
        wide.sweep(X, Y, widths=(0,))


def test_linearized_prediction_is_gd_on_the_linear_model():
    # On a linear model f = X W the NTK is exact: the prediction equals GD itself.
    X, Y = _data(n=6, d=4, C=2)
    model = wide.make_model([4, 2], "standard", seed=0)
    K = wide.ntk(model, X)
    f0 = model.forward(X)
    lr, steps = 0.05, 30
    for _ in range(steps):
        model.loss_and_grad(X, Y)
        model.params[...] -= lr * model.grads
    train, test = wide.linearized_prediction(K, K, f0, f0, Y, lr, steps)
    np.testing.assert_allclose(train, model.forward(X), atol=1e-10)


def test_dynamics_wide_command(tmp_path):
    pytest.importorskip("matplotlib")
    from fastopt.cli import main

    assert main(["dynamics", "wide", "--widths", "4,32", "--seeds", "1", "--steps", "5",
                 "--rows", "12", "--out", str(tmp_path)]) == 0
    with np.load(tmp_path / "wide.npz") as f:
        assert list(f["widths"]) == [4, 32] and f["losses"].shape == (2, 6)
    assert (tmp_path / "wide.png").exists()


@pytest.mark.skipif("cpu" not in AVAILABLE, reason="needs the cpu backend (numba)")
@pytest.mark.parametrize("depth,parameterization,seeds", [(1, "ntk", (0, 1)),
                                                           (2, "standard", (0,))])
def test_compiled_descent_equals_steps_bit_for_bit(depth, parameterization, seeds):
    """One compiled call for a width's seeds (in parallel; one seed: the parallel layer
    kernels) gives the losses and parameters of the step-by-step loop on the same kernels."""
    d = fastopt.datasets.load_digits(dtype=np.float64)
    X, Y = d.X_train[:21], np.eye(10)[d.y_train[:21]]
    sizes = [64, *[12] * depth, 10]
    models = [wide.make_model(sizes, parameterization, "tanh", s, backend="cpu") for s in seeds]
    copies = [m.copy() for m in models]
    scales = wide.gradient_scales(models[0], parameterization)
    lrs = [0.3, 0.2][:len(seeds)]
    compiled = wide._descend(models, X, Y, scales, lrs, 7)
    stepwise = wide._descend_stepwise(copies, X, Y, scales, lrs, 7)
    assert compiled.shape == (len(seeds), 8) and np.array_equal(compiled, stepwise)
    for a, b in zip(models, copies):
        assert np.array_equal(a.get_params(), b.get_params())
