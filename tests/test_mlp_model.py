"""fastopt.MLP: the flat parameter arena, initialization, the API, and bad input."""

import numpy as np
import pytest

import fastopt
from fastopt import init
from fastopt.nn.mlp import MLP
from test_mlp_backends import BACKENDS, HOST_BACKENDS
from conftest import to_host


def data(sizes, rows=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, sizes[0])), rng.integers(0, sizes[-1], rows)


def test_parameters_and_gradients_are_views_of_one_vector():
    model = MLP([4, 6, 3], backend="numpy", seed=1)
    assert model.num_params == 4 * 6 + 6 + 6 * 3 + 3 == model.params.size == model.grads.size
    assert [w.shape for w in model.weights] == [(4, 6), (6, 3)]
    assert [b.shape for b in model.biases] == [(6,), (3,)]
    for view in [*model.weights, *model.biases]:
        assert np.shares_memory(view, model.params)
    for view in [*model.weight_grads, *model.bias_grads]:
        assert np.shares_memory(view, model.grads)
    model.params[:] = 0.5
    assert (model.weights[1] == 0.5).all()
    X, y = data(model.sizes)
    model.loss_and_grad(X, y)
    offset = 4 * 6 + 6
    np.testing.assert_array_equal(model.grads[offset:offset + 18].reshape(6, 3),
                                  model.weight_grads[1])


def test_params_can_be_set_copied_and_saved(tmp_path):
    model = MLP([5, 7, 2], activation="tanh", init="xavier_normal", backend="numpy", seed=2)
    vector = model.get_params()
    assert vector is not model.params and np.array_equal(vector, model.params)
    views = model.weights
    model.params = np.arange(model.num_params, dtype=np.float64)
    assert model.weights[0] is not None and views[0][0, 0] == 0 and views[0][0, 1] == 1
    clone = model.copy()
    clone.params[:] = 0
    assert model.params[1] == 1  # independent
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert loaded.sizes == model.sizes and loaded.activation == "tanh"
    np.testing.assert_array_equal(loaded.params, model.params)
    with pytest.raises(ValueError, match="params: expected a vector of"):
        model.params = np.zeros(3)
    with pytest.raises(ValueError, match="finite"):
        model.params = np.full(model.num_params, np.nan)


def test_an_optimizer_steps_the_whole_network_with_one_array():
    model = MLP([6, 8, 3], backend="numpy", seed=0)
    opt = fastopt.SGD([model.params], lr=0.1)
    X, y = data(model.sizes)
    before = model.get_params()
    model.loss_and_grad(X, y)
    opt.step([model.grads])
    np.testing.assert_allclose(model.params, before - np.float32(0.1) * model.grads, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_gives_the_same_network_on_every_backend_and_dtype(backend):
    a = MLP([9, 11, 4], init="he_uniform", backend=backend, seed=5)
    b = MLP([9, 11, 4], init="he_uniform", backend="numpy", dtype=np.float64, seed=5)
    np.testing.assert_array_equal(to_host(a.params), b.params.astype(np.float32))
    w0 = init.he_uniform((9, 11), np.random.default_rng(5), np.float32)
    np.testing.assert_array_equal(to_host(a.weights[0]), w0)
    assert (to_host(a.biases[0]) == 0).all()
    c = MLP([9, 11, 4], init="he_uniform", backend=backend, seed=6)
    assert not np.array_equal(to_host(c.params), to_host(a.params))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_forward_predict_evaluate(backend):
    model = MLP([5, 8, 8, 3], activation="gelu", backend=backend, seed=3)
    X, y = data(model.sizes, rows=23)
    out = model.forward(X)
    assert out.shape == (23, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(model.predict(X), out.argmax(1))
    loss, error = model.evaluate(X, y, batch_size=7)
    value, batch_error = model.loss_and_grad(X, y, return_error=True)
    assert loss == pytest.approx(value, rel=1e-5) and error == batch_error
    assert 0 <= error <= 1


def test_mse_accepts_labels_and_targets():
    model = MLP([4, 5, 3], loss="mse", backend="numpy", seed=0)
    X, y = data(model.sizes)
    a = model.loss_and_grad(X, y)
    b = model.loss_and_grad(X, np.eye(3)[y])
    assert a == b


def test_grad_norm_and_scale():
    model = MLP([4, 5, 3], backend="numpy", seed=0)
    model.loss_and_grad(*data(model.sizes))
    norm = model.grad_norm()
    assert norm == pytest.approx(float(np.linalg.norm(model.grads.astype(np.float64))))
    model.scale_grads(0.5)
    assert model.grad_norm() == pytest.approx(norm / 2, rel=1e-6)


# --------------------------------------------------------------------------------- bad input

BAD_INPUT = [  # (X, y, error type, message fragment)
    (lambda X, y: (X[:, :-1], y), ValueError, "X: expected 6 features per row"),
    (lambda X, y: (X[0], y[:1]), ValueError, "X: expected a 2-D array"),
    (lambda X, y: (X[:0], y[:0]), ValueError, "X: empty batch"),
    (lambda X, y: (np.where(X > 1, np.nan, X), y), ValueError, "X: contains NaN or infinity"),
    (lambda X, y: (np.where(X > 1, np.inf, X), y), ValueError, "X: contains NaN or infinity"),
    (lambda X, y: (X.astype(str), y), TypeError, "X: expected numbers"),
    (lambda X, y: (X, np.where(y == 0, 3, y)), ValueError, "y: labels must lie in [0, 3)"),
    (lambda X, y: (X, y - 1), ValueError, "y: labels must lie in [0, 3)"),
    (lambda X, y: (X, y + 0.5), TypeError, "y: expected integer class labels"),
    (lambda X, y: (X, y[:-1]), ValueError, "y: expected 10 rows"),
    (lambda X, y: (X, y.reshape(5, 2)), ValueError, "y: expected 10 rows"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spoil,error,words", BAD_INPUT, ids=[w for _, _, w in BAD_INPUT])
def test_bad_input_is_named_and_nothing_is_written(backend, spoil, error, words):
    model = MLP([6, 4, 3], backend=backend, seed=0)
    X, y = data(model.sizes)
    X, y = spoil(X, y)
    if backend != "cuda":
        model.grads[...] = 7
    before = to_host(model.grads).copy()
    with pytest.raises(error) as info:
        model.loss_and_grad(X, y)
    assert words in str(info.value)
    np.testing.assert_array_equal(to_host(model.grads), before)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(ValueError, match="activation"):
        MLP([3, 2], activation="softplus")
    with pytest.raises(ValueError, match="loss"):
        MLP([3, 2], loss="hinge")
    with pytest.raises(TypeError, match="dtype"):
        MLP([3, 2], dtype=np.float16)
    with pytest.raises(ValueError, match="init"):
        MLP([3, 2], init="zeros")
    with pytest.raises(ValueError, match="backend"):
        MLP([3, 2], backend="tpu")
    with pytest.raises(ValueError, match="y: expected targets of shape"):
        MLP([3, 2], loss="mse").loss_and_grad(np.zeros((2, 3)), np.zeros((2, 5)))
