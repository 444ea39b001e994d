"""The MLP reference (fastopt.nn.reference) against float64 finite differences and torch autograd.

The reference is the specification every backend is tested against (tests/test_mlp_backends.py),
so its gradients are checked here from first principles: every activation and both losses.
"""

import math

import numpy as np
import pytest

from fastopt.nn import reference as ref

ACTIVATIONS = list(ref.ACTIVATIONS)
LOSSES = list(ref.LOSSES)


def network(sizes, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((a, b)) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [0.1 * rng.standard_normal(b) for b in sizes[1:]]
    return weights, biases


def batch(sizes, rows, loss, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, sizes[0]))
    if loss == "mse":
        return X, rng.standard_normal((rows, sizes[-1]))
    return X, rng.integers(0, sizes[-1], rows)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_derivative_matches_central_differences(name):
    z = np.linspace(-4, 4, 161) + 0.013  # avoids relu's kink at exactly 0
    h = 1e-6
    numeric = (ref.activation(z + h, name) - ref.activation(z - h, name)) / (2 * h)
    np.testing.assert_allclose(ref.activation_grad(z, name), numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_grad_matches_central_differences(activation, loss):
    """Every parameter's derivative, in float64, by central differences (step 1e-6: truncation
    error ~1e-12, rounding ~1e-10, hence rtol 1e-6)."""
    sizes = [5, 7, 6, 4]
    weights, biases = network(sizes)
    X, y = batch(sizes, 9, loss)
    value, _, dweights, dbiases = ref.loss_and_grad(weights, biases, X, y, activation, loss)
    h = 1e-6
    for analytic, params in [(dweights, weights), (dbiases, biases)]:
        for grad, p in zip(analytic, params):
            numeric = np.empty_like(p)
            for index in np.ndindex(p.shape):
                saved = p[index]
                p[index] = saved + h
                up = ref.loss_and_grad(weights, biases, X, y, activation, loss)[0]
                p[index] = saved - h
                down = ref.loss_and_grad(weights, biases, X, y, activation, loss)[0]
                p[index] = saved
                numeric[index] = (up - down) / (2 * h)
            np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    assert value == ref.loss_and_grad(weights, biases, X, y, activation, loss)[0]


def test_reference_does_not_mutate_its_inputs():
    sizes = [4, 5, 3]
    weights, biases = network(sizes)
    X, y = batch(sizes, 6, "cross_entropy")
    before = [a.copy() for a in (*weights, *biases, X, y)]
    ref.loss_and_grad(weights, biases, X, y, "gelu")
    for a, b in zip(before, (*weights, *biases, X, y)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_large_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-3e4, 3e4, 3e4 - 2.0], [5.0, 5.0, 5.0]], dtype)
    labels = np.array([0, 2, 1])
    loss, wrong, grad = ref.softmax_cross_entropy(logits, labels)
    # row losses lse - z_y: 0; log(1 + e^-2) + 2; log 3
    expected = np.mean([0.0, math.log(1 + math.exp(-2.0)) + 2.0, math.log(3.0)])
    assert math.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(expected, rel=1e-6)
    assert wrong == 2  # row 1 predicts 1 (label 2); row 2 ties, argmax 0 (label 1)
    assert grad.dtype == dtype


def test_zero_one_error_counts_wrong_argmax():
    logits = np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert ref.softmax_cross_entropy(logits, np.array([1, 1, 1]))[1] == 1
    assert ref.mse(logits, np.eye(2)[[1, 0, 0]])[1] == 1


@pytest.mark.parametrize("name", ["xavier_uniform", "xavier_normal", "he_uniform", "he_normal"])
def test_initializers_have_the_stated_variance_and_are_reproducible(name):
    from fastopt import init

    fan_in, fan_out = 400, 300
    w = init.INITIALIZERS[name]((fan_in, fan_out), seed=3, dtype=np.float64)
    variance = {"xavier": 2.0 / (fan_in + fan_out), "he": 2.0 / fan_in}[name.split("_")[0]]
    assert w.shape == (fan_in, fan_out)
    assert abs(w.mean()) < 0.02 * math.sqrt(variance) * 10
    assert w.var() == pytest.approx(variance, rel=0.02)
    if name.endswith("uniform"):
        assert np.abs(w).max() <= math.sqrt(3 * variance)
    again = init.INITIALIZERS[name]((fan_in, fan_out), seed=3, dtype=np.float32)
    assert again.dtype == np.float32 and np.array_equal(again, w.astype(np.float32))
    assert not np.array_equal(init.INITIALIZERS[name]((fan_in, fan_out), seed=4), again)


def test_initializer_names_and_aliases():
    from fastopt import init

    assert init.get("he") is init.he_normal and init.get("xavier") is init.xavier_uniform
    with pytest.raises(ValueError, match="init: expected one of"):
        init.get("orthogonal")
    with pytest.raises(ValueError, match="shape"):
        init.he_normal((0, 3))


# ------------------------------------------------------------------------- torch autograd oracle

torch = pytest.importorskip("torch")


def torch_activation(name):
    return {"identity": lambda z: z, "relu": torch.relu, "tanh": torch.tanh,
            "sigmoid": torch.sigmoid, "gelu": torch.nn.functional.gelu}[name]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_grad_matches_torch_autograd(activation, loss):
    sizes = [6, 8, 5, 3]
    weights, biases = network(sizes, seed=2)
    X, y = batch(sizes, 11, loss, seed=3)
    value, wrong, dweights, dbiases = ref.loss_and_grad(weights, biases, X, y, activation, loss)
    tw = [torch.tensor(w, requires_grad=True) for w in weights]
    tb = [torch.tensor(b, requires_grad=True) for b in biases]
    a = torch.tensor(X)
    act = torch_activation(activation)
    for layer, (w, b) in enumerate(zip(tw, tb)):
        a = a @ w + b
        if layer < len(tw) - 1:
            a = act(a)
    if loss == "cross_entropy":
        t_loss = torch.nn.functional.cross_entropy(a, torch.tensor(y))
        t_wrong = int((a.argmax(1) != torch.tensor(y)).sum())
    else:
        t_loss = torch.nn.functional.mse_loss(a, torch.tensor(y))
        t_wrong = int((a.argmax(1) != torch.tensor(y).argmax(1)).sum())
    t_loss.backward()
    assert value == pytest.approx(t_loss.item(), rel=1e-12)
    assert wrong == t_wrong
    for ours, theirs in zip([*dweights, *dbiases], [*tw, *tb]):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_large_logit_cross_entropy_matches_torch():
    rng = np.random.default_rng(5)
    logits = 1e3 * rng.standard_normal((16, 7))
    labels = rng.integers(0, 7, 16)
    loss, _, grad = ref.softmax_cross_entropy(logits, labels)
    t = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t, torch.tensor(labels))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), atol=1e-15)
