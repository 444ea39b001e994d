r"""Wide networks and the neural tangent kernel: the empirical NTK of an MLP, and a width ×
seed sweep of full-batch gradient descent showing lazy training.

The empirical NTK of a network :math:`f_\theta: \mathbb{R}^d \to \mathbb{R}^C` is
:math:`K(x, x')_{cc'} = \sum_p s_p\, \partial_p f_c(x)\, \partial_p f_{c'}(x')`, :math:`s_p` the
parameterization's per-layer learning-rate scale. A dense layer's weight gradient is an outer
product, so the Jacobian never has to be formed: with :math:`a_{l-1}(x)` the layer's input and
:math:`\delta^c_l(x) = \partial f_c / \partial z_l`,

.. math::
    K(x, x')_{cc'} = \sum_l \big(s_{W_l}\, a_{l-1}(x) \cdot a_{l-1}(x') + s_{b_l}\big)\,
        \delta^c_l(x) \cdot \delta^{c'}_l(x')

— one Gram product of the activations and one of the deltas per layer. For one hidden layer
:math:`f = \sigma(xW_1 + b_1) W_2 + b_2`, :math:`\delta^c_2 = e_c` and
:math:`\delta^c_1 = \sigma'(z_1) \odot W_{2,:c}`, which is :func:`ntk_one_hidden`'s closed form.
:func:`jacobian` forms the Jacobian itself, for checks and small networks.

Parameterizations (:data:`PARAMETERIZATIONS`): ``"standard"`` is PyTorch's default
(``nn.Linear``: weights and biases :math:`U(\pm 1/\sqrt{\text{fan\_in}})`, plain gradients);
``"ntk"`` is Jacot et al.'s: :math:`W = \omega/\sqrt{\text{fan\_in}}`, :math:`b = \beta\omega_b`,
:math:`\omega \sim N(0, 1)`, :math:`\beta = 0.1`, trained on :math:`\omega`, which is plain
training of :math:`W, b` with the gradients scaled by :math:`1/\text{fan\_in}` and
:math:`\beta^2`. Kernels are indexed ``(row, output)`` flattened: ``K[i*C + c, j*C + c']``.
"""

import math
from dataclasses import dataclass

import numpy as np

from fastopt.dynamics import network as net
from fastopt.nn import reference as ref

__all__ = ["ntk", "ntk_one_hidden", "jacobian", "make_model", "gradient_scales",
           "PARAMETERIZATIONS", "sweep", "WideRun", "linearized_prediction"]

#: The parameterizations of :func:`make_model` and :func:`sweep`.
PARAMETERIZATIONS = ("ntk", "standard")
#: The bias multiplier of the NTK parameterization.
BETA = 0.1


def gradient_scales(model, parameterization):
    """``[(s_W, s_b), ...]`` per layer: how a step on the parameterization's own parameters
    scales the gradient of the model's ``W`` and ``b``."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: expected one of {', '.join(PARAMETERIZATIONS)}, "
                         f"got {parameterization!r}")
    if parameterization == "standard":
        return [(1.0, 1.0)] * model.n_layers
    return [(1.0 / fan_in, BETA * BETA) for fan_in in model.sizes[:-1]]


def make_model(sizes, parameterization="ntk", activation="relu", seed=0, dtype=np.float64,
               backend=None):
    """An MSE :class:`fastopt.MLP` initialized as ``parameterization`` says (see the module)."""
    from fastopt.nn.mlp import MLP

    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: expected one of {', '.join(PARAMETERIZATIONS)}, "
                         f"got {parameterization!r}")
    model = MLP(sizes, activation=activation, dtype=dtype, backend=backend, loss="mse",
                seed=seed)
    rng = np.random.default_rng(seed)
    pairs = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if parameterization == "ntk":
            w = rng.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in)
            b = BETA * rng.standard_normal(fan_out)
        else:
            bound = 1.0 / math.sqrt(fan_in)
            w = rng.uniform(-bound, bound, (fan_in, fan_out))
            b = rng.uniform(-bound, bound, fan_out)
        pairs.append((w, b))
    model.set_params(net.flatten(pairs))
    return model


def _deltas_per_output(pairs, names, inputs, pres):
    """``deltas[l]`` of shape ``(n, C, width_l)``: :math:`\\partial f_c / \\partial z_l` for each
    row and output, by backpropagating each unit vector :math:`e_c`."""
    n, C = pres[-1].shape
    d = np.broadcast_to(np.eye(C), (n, C, C))
    out = [None] * len(pairs)
    for layer in reversed(range(len(pairs))):
        d = d * ref.activation_grad(pres[layer], names[layer])[:, None, :]
        out[layer] = d
        if layer:  # one matrix product for every (row, output) pair
            w = pairs[layer][0]
            d = (d.reshape(n * C, -1) @ w.T).reshape(n, C, w.shape[0])
    return out


def _passes(model, X):
    pairs = net.layers(model)
    names = net.activations(model)
    X, _ = net.checked_data(model, X, None)
    inputs, pres, _ = net.forward(pairs, names, X)
    return pairs, names, inputs, pres


def ntk(model, X, X2=None, parameterization="standard"):
    """The empirical NTK ``(n*C, n2*C)`` of ``model`` between the rows of ``X`` and ``X2``
    (default ``X``), from the layers' activation and delta Gram products (module docstring), in
    float64; ``parameterization`` sets the per-layer scales (:func:`gradient_scales`)."""
    net.check_model(model)
    scales = gradient_scales(model, parameterization)
    pairs, names, inputs, pres = _passes(model, X)
    deltas = _deltas_per_output(pairs, names, inputs, pres)
    if X2 is None:
        inputs2, deltas2 = inputs, deltas
    else:
        _, _, inputs2, pres2 = _passes(model, X2)
        deltas2 = _deltas_per_output(pairs, names, inputs2, pres2)
    n, n2, C = inputs[0].shape[0], inputs2[0].shape[0], model.sizes[-1]
    K = np.zeros((n, C, n2, C))
    for (sw, sb), a, a2, d, d2 in zip(scales, inputs, inputs2, deltas, deltas2):
        gram = sw * (a @ a2.T) + sb  # (n, n2)
        K += gram[:, None, :, None] * (d.reshape(n * C, -1) @ d2.reshape(n2 * C, -1).T
                                       ).reshape(n, C, n2, C)
    return K.reshape(n * C, n2 * C)


def ntk_one_hidden(model, X, X2=None, parameterization="standard"):
    r"""The closed form of :func:`ntk` for one hidden layer (``sizes = [d, h, C]``):

    .. math::
        K_{(i,c),(j,c')} = (s_{W_2}\, a_i \cdot a_j + s_{b_2})\,[c = c'] +
            (s_{W_1}\, x_i \cdot x_j + s_{b_1}) \sum_k \sigma'(z_{ik})\sigma'(z_{jk})
            W_{2,kc} W_{2,kc'}

    two Gram products of the hidden layer: its activations, and its derivatives weighted by the
    output weights."""
    net.check_model(model)
    if model.n_layers != 2:
        raise ValueError(f"model: expected one hidden layer, got sizes {model.sizes}")
    (s1w, s1b), (s2w, s2b) = gradient_scales(model, parameterization)
    (w1, b1), (w2, _) = net.layers(model)
    name = model.activation
    X, _ = net.checked_data(model, X, None)
    X2 = X if X2 is None else net.checked_data(model, X2, None)[0]
    z, z2 = X @ w1 + b1, X2 @ w1 + b1
    a, a2 = ref.activation(z, name), ref.activation(z2, name)
    n, n2, C = X.shape[0], X2.shape[0], w2.shape[1]
    # E[(i, c), k] = sigma'(z_ik) W2[k, c]: the hidden layer's deltas of each output
    e = (ref.activation_grad(z, name)[:, None, :] * w2.T[None]).reshape(n * C, -1)
    e2 = (ref.activation_grad(z2, name)[:, None, :] * w2.T[None]).reshape(n2 * C, -1)
    first = np.repeat(np.repeat(s1w * (X @ X2.T) + s1b, C, axis=0), C, axis=1) * (e @ e2.T)
    second = np.kron(s2w * (a @ a2.T) + s2b, np.eye(C))
    return first + second


def jacobian(model, X):
    """The Jacobian ``(n, C, num_params)`` of the outputs with respect to the flat parameters
    (:attr:`fastopt.MLP.params` layout), formed from the outer products of each layer's inputs
    and per-output deltas."""
    net.check_model(model)
    pairs, names, inputs, pres = _passes(model, X)
    deltas = _deltas_per_output(pairs, names, inputs, pres)
    parts = []
    for a, d in zip(inputs, deltas):
        n, C, w = d.shape
        parts.append(np.einsum("ik,icw->ickw", a, d).reshape(n, C, -1))
        parts.append(d)
    return np.concatenate(parts, axis=2)


def linearized_prediction(K_train, K_test_train, f0_train, f0_test, Y, lr, steps):
    r"""The prediction of the network linearized at initialization after ``steps`` steps of GD
    with ``lr`` on the MSE :math:`\frac{1}{nC}\lVert f - Y\rVert^2`: with :math:`r_0 = f_0 - Y`
    and :math:`K = U\Lambda U^\top`,

    .. math::
        r_T = (I - \eta c K)^T r_0, \quad c = 2/(nC), \quad
        f_T(x) = f_0(x) - K(x, X)\, U \frac{1 - (1 - \eta c \lambda)^T}{\lambda} U^\top r_0

    (the fraction :math:`\eta c T` where :math:`\lambda = 0`). Returns ``(f_T(X), f_T(x))``."""
    r0 = (f0_train - Y).ravel()
    c = 2.0 / r0.size
    lam, U = np.linalg.eigh(K_train)
    lam = np.maximum(lam, 0.0)
    positive = lam > 1e-12 * max(lam.max(), 1e-300)
    factor = np.where(positive, (1.0 - (1.0 - lr * c * lam) ** steps)
                      / np.where(positive, lam, 1.0), lr * c * steps)
    coef = U @ (factor * (U.T @ r0))
    train = f0_train.ravel() - K_train @ coef
    test = f0_test.ravel() - K_test_train @ coef
    return train.reshape(f0_train.shape), test.reshape(f0_test.shape)


@dataclass
class WideRun:
    """One run of :func:`sweep`: ``losses`` (steps + 1) of full-batch GD, ``weight_change`` per
    layer :math:`\\lVert W_T - W_0\\rVert_F / \\lVert W_0\\rVert_F`, ``ntk_drift``
    :math:`\\lVert K_T - K_0\\rVert_F / \\lVert K_0\\rVert_F`, the learning rate used, and the
    test MSE of the trained network, of the kernel regression with :math:`K_0`
    (``linear_test_loss``) and the mean squared gap between their test predictions."""

    width: int
    seed: int
    lr: float
    losses: np.ndarray
    weight_change: np.ndarray
    ntk_drift: float
    test_loss: float = math.nan
    linear_test_loss: float = math.nan
    linear_gap: float = math.nan


def _descend(models, X, Y, scales, lrs, steps):
    """``steps`` full-batch GD steps of each of ``models`` (one architecture) on ``(X, Y)``, the
    gradient scaled per layer by ``scales`` and by ``-lr``; returns their losses ``(S, steps +
    1)``, before each step and after the last. On the ``cpu`` backend every model's steps run in
    one compiled call (:mod:`fastopt.backends.cpu.fullbatch`, the same operations); elsewhere
    step by step through the model's kernels."""
    if not models:
        return np.empty((0, steps + 1))
    first = models[0]
    if first.backend == "cpu":
        from fastopt.backends.cpu.fullbatch import gradient_descent

        arena, codes = first.param_arena, np.array(first._codes, np.int64)
        layout = np.array([(arena.offsets[2 * l], first.sizes[l], first.sizes[l + 1],
                            arena.offsets[2 * l + 1]) for l in range(first.n_layers)], np.int64)
        params = np.stack([m.get_params() for m in models]).astype(first.dtype)
        losses = gradient_descent(X.astype(first.dtype), Y.astype(first.dtype), layout, codes,
                                  params, np.array(scales, np.float64), np.array(lrs), steps)
        for model, p in zip(models, params):
            model.params = p
        return losses
    return _descend_stepwise(models, X, Y, scales, lrs, steps)


def _descend_stepwise(models, X, Y, scales, lrs, steps):
    """:func:`_descend` one step at a time, through each model's kernels (any backend)."""
    losses = np.empty((len(models), steps + 1))
    for model, lr, row in zip(models, lrs, losses):
        views = list(zip(model.weight_grads, model.bias_grads))
        for t in range(steps):
            row[t] = model.loss_and_grad(X, Y)
            for (gw, gb), (sw, sb) in zip(views, scales):
                if sw != 1.0:
                    model._kernels.scale(gw.reshape(-1), model.dtype.type(sw))
                if sb != 1.0:
                    model._kernels.scale(gb, model.dtype.type(sb))
            model._kernels.scale(model.grads, model.dtype.type(-lr))
            model.params[...] += model.grads
        row[-1] = model.evaluate(X, Y)[0]
    return losses


def sweep(X, Y, widths=(16, 64, 256, 1024), seeds=(0, 1, 2), depth=1, steps=300,
          lr_factor=0.5, parameterization="ntk", activation="relu", X_test=None, Y_test=None,
          backend=None, progress=None):
    r"""Full-batch GD with MSE on ``(X, Y)`` (``Y``: ``(n, C)`` targets) for every width × seed,
    ``depth`` hidden layers of that width, recording :class:`WideRun` per run.

    The learning rate of each run is ``lr_factor`` times the stability limit of GD on the
    linearized model, :math:`nC / \lambda_{\max}(K_0)` (the kernel in the parameterization's
    scales), so that runs of every width and either parameterization are comparable; the
    gradients are scaled per layer as the parameterization trains. Each step is the model's
    forward and backward kernels and one scaling of the gradient's views. With ``X_test``, also
    the linearized (kernel regression) prediction against the trained network. ``backend``:
    the models' (float64; by default the first available host backend). On ``cpu`` a width's
    seeds run all their steps in one compiled call, in parallel
    (:mod:`fastopt.backends.cpu.fullbatch`: the same bits as the step-by-step loop).
    ``progress``: called with each :class:`WideRun` as it completes.
    """
    from fastopt.dynamics.curvature import lanczos

    X = np.ascontiguousarray(X, np.float64)
    Y = np.ascontiguousarray(Y, np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"X, Y: expected (n, d) rows and (n, C) targets, got {X.shape} and "
                         f"{Y.shape}")
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"widths: expected widths >= 1, got {widths}")
    if int(depth) < 1 or int(steps) < 1:
        raise ValueError(f"depth, steps: expected >= 1, got {depth}, {steps}")
    if not lr_factor > 0:
        raise ValueError(f"lr_factor: expected > 0, got {lr_factor}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: expected one of {', '.join(PARAMETERIZATIONS)}, "
                         f"got {parameterization!r}")
    runs = []
    for width in widths:
        sizes = [X.shape[1], *[width] * int(depth), Y.shape[1]]
        models = [make_model(sizes, parameterization, activation, seed, np.float64, backend)
                  for seed in seeds]
        starts = []
        for model in models:
            K0 = ntk(model, X, parameterization=parameterization)
            lr = lr_factor * Y.size / lanczos(K0, tol=1e-6).value
            start = {"K0": K0, "lr": lr, "p0": model.get_params(), "f0": model.forward(X)}
            if X_test is not None:
                start["f0_test"] = model.forward(X_test)
                start["K0_test"] = ntk(model, X_test, X, parameterization=parameterization)
            starts.append(start)
        scales = gradient_scales(models[0], parameterization) if models else []
        all_losses = _descend(models, X, Y, scales, [s["lr"] for s in starts], int(steps))
        for model, seed, start, losses in zip(models, seeds, starts, all_losses):
            K0, lr = start["K0"], start["lr"]
            p1 = model.get_params()
            change = [np.linalg.norm(w1 - w0) / np.linalg.norm(w0)
                      for (w0, _), (w1, _) in zip(net.layers(model, start["p0"]),
                                                  net.layers(model, p1))]
            KT = ntk(model, X, parameterization=parameterization)
            run = WideRun(width, int(seed), lr, losses, np.array(change),
                          float(np.linalg.norm(KT - K0) / np.linalg.norm(K0)))
            if X_test is not None:
                _, lin = linearized_prediction(K0, start["K0_test"], start["f0"],
                                               start["f0_test"], Y, lr, int(steps))
                trained = model.forward(X_test)
                run.test_loss = float(np.mean((trained - Y_test) ** 2))
                run.linear_test_loss = float(np.mean((lin - Y_test) ** 2))
                run.linear_gap = float(np.mean((trained - lin) ** 2))
            runs.append(run)
            if progress:
                progress(run)
    return runs
