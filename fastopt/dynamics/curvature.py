r"""The curvature of an MLP's loss: exact Hessian-vector products, the top eigenvalue of the
Hessian by Lanczos or power iteration, and its tracking during training against 2/lr.

Gradient descent with step :math:`\eta` on an :math:`L`-smooth loss decreases it when
:math:`\eta < 2/L`; on a quadratic it diverges along the top eigenvector when :math:`\eta >
2/\lambda_{\max}`. Full-batch GD on a network sharpens progressively until
:math:`\lambda_{\max} \approx 2/\eta`, then trains on at that edge of stability (Cohen et al.
2021). :class:`Hessian` gives the products :math:`Hv` exactly (Pearlmutter's R-operator:
forward-mode differentiation of the backward pass, in float64), no finite differences::

    H = fastopt.curvature.Hessian(model, X, y)
    top = fastopt.curvature.lanczos(H, tol=1e-3)
    top.value, top.residual, top.products
"""

from dataclasses import dataclass

import numpy as np

from fastopt.dynamics import network as net
from fastopt.nn import reference as ref

__all__ = ["Hessian", "Eigen", "lanczos", "power_iteration", "full_hessian", "top_eigenvalue"]


class Hessian:
    r"""The Hessian of ``model``'s mean loss on ``(X, y)`` at its current parameters, as an
    operator on flat parameter vectors (:attr:`fastopt.MLP.params` layout), in float64.

    :meth:`matvec` runs the R-operator: with :math:`v = (V_l, c_l)` and :math:`R\{\cdot\}` the
    directional derivative along :math:`v`,

    .. math::
        R Z_l &= R A_{l-1} W_l + A_{l-1} V_l + c_l, \quad R A_l = \sigma'(Z_l) \odot R Z_l,
        \quad R A_0 = 0 \\
        R \delta_L &= \nabla^2_{o}\ell \; R Z_L \quad
            \big(\text{cross-entropy: } (p \odot R z - p\, (p \cdot R z)) / B;
            \text{ MSE: } 2 R z / (BC)\big) \\
        R\delta_{l-1} &= (R\delta_l W_l^\top + \delta_l V_l^\top) \odot \sigma'(Z_{l-1})
            + (\delta_l W_l^\top) \odot \sigma''(Z_{l-1}) \odot R Z_{l-1} \\
        (Hv)_{W_l} &= R A_{l-1}^\top \delta_l + A_{l-1}^\top R\delta_l, \quad
        (Hv)_{b_l} = \textstyle\sum_i (R\delta_l)_i

    where :math:`\delta_l = \partial L / \partial Z_l`. ReLU's :math:`\sigma''` is taken as 0.
    :attr:`products` counts the products made.
    """

    def __init__(self, model, X, y):
        self.model = net.check_model(model)
        self.X, self.y = net.checked_data(model, X, y)
        self.names = net.activations(model)
        self.size = model.num_params
        self.products = 0
        self.update()

    def update(self):
        """Re-reads the model's parameters (after training steps)."""
        self.pairs = net.layers(self.model)
        self.inputs, self.pres, out = net.forward(self.pairs, self.names, self.X)
        self.loss, d = net.loss_gradient(self.model.loss_name, out, self.y)
        self.out = out
        if self.model.loss_name == "cross_entropy":
            shifted = out - out.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            self.probs = e / e.sum(axis=1, keepdims=True)
        self.deltas = [None] * len(self.pairs)  # dL/dZ_l
        for layer in reversed(range(len(self.pairs))):
            d = d * ref.activation_grad(self.pres[layer], self.names[layer])
            self.deltas[layer] = d
            d = d @ self.pairs[layer][0].T
        self.gradient = net.flatten([(x.T @ dz, dz.sum(axis=0))
                                     for x, dz in zip(self.inputs, self.deltas)])
        return self

    def matvec(self, v):
        """:math:`Hv` for a flat vector ``v`` of :attr:`size` values."""
        v = np.asarray(v, np.float64)
        if v.shape != (self.size,):
            raise ValueError(f"v: expected a vector of {self.size} values, got shape {v.shape}")
        self.products += 1
        dirs = net.layers(self.model, v)
        rzs, ra = [], None
        for layer, ((w, b), (vw, vb)) in enumerate(zip(self.pairs, dirs)):
            rz = self.inputs[layer] @ vw + vb
            if ra is not None:
                rz += ra @ w
            rzs.append(rz)
            ra = ref.activation_grad(self.pres[layer], self.names[layer]) * rz
        rz = rzs[-1]
        if self.model.loss_name == "cross_entropy":
            p = self.probs
            rd = (p * rz - p * (p * rz).sum(axis=1, keepdims=True)) / rz.shape[0]
        else:
            rd = 2 * rz / rz.size
        out = [None] * len(self.pairs)
        for layer in reversed(range(len(self.pairs))):
            a = self.inputs[layer]
            ra = None if layer == 0 else ref.activation_grad(
                self.pres[layer - 1], self.names[layer - 1]) * rzs[layer - 1]
            gw = a.T @ rd
            if ra is not None:
                gw += ra.T @ self.deltas[layer]
            out[layer] = (gw, rd.sum(axis=0))
            if layer:
                w, vw = self.pairs[layer][0], dirs[layer][0]
                z, name = self.pres[layer - 1], self.names[layer - 1]
                back = self.deltas[layer] @ w.T  # dL/dA_{l-1}
                rd = ((rd @ w.T + self.deltas[layer] @ vw.T) * ref.activation_grad(z, name)
                      + back * net.second_derivative(z, name) * rzs[layer - 1])
        return net.flatten(out)

    __matmul__ = matvec


@dataclass
class Eigen:
    """An eigenpair estimate: ``value``, unit ``vector``, the relative residual
    :math:`\\lVert Hv - \\lambda v\\rVert / |\\lambda|`, and the Hessian-vector products used."""

    value: float
    vector: np.ndarray
    residual: float
    products: int


def _operator(H):
    if isinstance(H, np.ndarray):
        if H.ndim != 2 or H.shape[0] != H.shape[1]:
            raise ValueError(f"H: expected a square matrix, got shape {H.shape}")
        return (lambda v: H @ v), H.shape[0]
    if not hasattr(H, "matvec"):
        raise TypeError("H: expected a Hessian, a square array, or an object with matvec and "
                        "size")
    return H.matvec, H.size


def _start(n, v0, seed):
    v = np.random.default_rng(seed).standard_normal(n) if v0 is None else \
        np.array(v0, np.float64)
    if v.shape != (n,) or not np.isfinite(v).all() or not np.any(v):
        raise ValueError(f"v0: expected a nonzero finite vector of {n} values")
    return v / np.linalg.norm(v)


def lanczos(H, tol=1e-3, max_products=100, v0=None, seed=0):
    r"""The largest (algebraic) eigenvalue of the symmetric operator ``H`` by the Lanczos
    iteration with full reorthogonalization.

    After :math:`k` products, :math:`T_k = Q_k^\top H Q_k` is tridiagonal; its top eigenpair
    :math:`(\theta, s)` gives the Ritz vector :math:`Q_k s`, whose residual is
    :math:`\lVert H Q_k s - \theta Q_k s\rVert = \beta_k |s_k|`. Stops when that over
    :math:`|\theta|` is at most ``tol``, or after ``max_products``. ``H``: a :class:`Hessian`,
    a square array, or an object with ``matvec`` and ``size``."""
    matvec, n = _operator(H)
    if not (tol > 0 and max_products >= 1):
        raise ValueError(f"tol, max_products: expected > 0 and >= 1, got {tol}, {max_products}")
    q = _start(n, v0, seed)
    Q, alphas, betas = [q], [], []
    for k in range(min(max_products, n)):
        w = matvec(Q[-1])
        if not np.isfinite(w).all():  # a diverged model: nothing to estimate
            return Eigen(float("nan"), np.full(n, np.nan), float("nan"), k + 1)
        alphas.append(float(Q[-1] @ w))
        basis = np.array(Q)
        w -= basis.T @ (basis @ w)  # full reorthogonalization, twice for stability
        w -= basis.T @ (basis @ w)
        beta = float(np.linalg.norm(w))
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        thetas, S = np.linalg.eigh(T)
        theta, s = thetas[-1], S[:, -1]
        residual = beta * abs(s[-1]) / max(abs(theta), np.finfo(float).tiny)
        if residual <= tol or beta == 0 or k + 1 == min(max_products, n):
            vector = basis.T @ s
            return Eigen(float(theta), vector / np.linalg.norm(vector), float(residual), k + 1)
        betas.append(beta)
        Q.append(w / beta)


def power_iteration(H, tol=1e-3, max_products=1000, v0=None, seed=0):
    r"""The eigenvalue of largest magnitude of ``H`` by power iteration: :math:`v \leftarrow
    Hv / \lVert Hv \rVert`, :math:`\lambda = v^\top H v`, until the relative residual
    :math:`\lVert Hv - \lambda v\rVert / |\lambda|` is at most ``tol``. It converges as
    :math:`(\lambda_2/\lambda_1)^k`: many more products than :func:`lanczos`, and stopping on the
    change of :math:`\lambda` instead (as PyHessian does) stops early, low."""
    matvec, n = _operator(H)
    v = _start(n, v0, seed)
    w = matvec(v)
    for k in range(1, max_products + 1):
        value = float(v @ w)
        residual = float(np.linalg.norm(w - value * v)) / max(abs(value), np.finfo(float).tiny)
        if residual <= tol or k == max_products:
            return Eigen(value, v, residual, k)
        v = w / np.linalg.norm(w)
        w = matvec(v)


def full_hessian(model, X, y):
    """The full Hessian matrix, built column by column from products with the unit vectors
    (for small networks: ``num_params`` products)."""
    H = Hessian(model, X, y)
    eye = np.eye(H.size)
    return np.column_stack([H.matvec(e) for e in eye])


def top_eigenvalue(model, X, y, tol=1e-3, max_products=100, seed=0):
    """The top eigenvalue of the Hessian of ``model``'s loss on ``(X, y)`` (:func:`lanczos`)."""
    return lanczos(Hessian(model, X, y), tol, max_products, seed=seed)


class SharpnessTracker:
    """The top eigenvalue of the Hessian on fixed data, measured again and again as a model
    trains, each Lanczos search started from the previous eigenvector (fewer products when the
    top direction turns slowly)."""

    def __init__(self, model, X, y, tol=1e-3, max_products=100):
        self.hessian = Hessian(model, X, y)
        self.tol, self.max_products = tol, max_products
        self.vector = None

    def measure(self):
        """The :class:`Eigen` at the model's current parameters (NaN where they or the loss are
        not finite)."""
        with np.errstate(all="ignore"):
            H = self.hessian.update()
            if not (np.isfinite(H.loss) and np.isfinite(H.gradient).all()):
                return Eigen(float("nan"), None, float("nan"), 0)
            top = lanczos(H, self.tol, self.max_products, v0=self.vector)
        self.vector = top.vector if np.isfinite(top.value) else None
        return top

    def record(self, into, step):
        """Appends ``step``, ``top_eigenvalue`` and ``residual`` to the lists of ``into``."""
        top = self.measure()
        into["step"].append(step)
        into["top_eigenvalue"].append(top.value)
        into["residual"].append(top.residual)
