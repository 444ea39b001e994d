r"""Batched evaluation: the loss and 0-1 error of a model at ``K`` parameter points of an affine
family, in one pass over the data.

Every landscape experiment evaluates points of the form

.. math::
    \theta_k = c + \textstyle\sum_{j=1}^{m} a_{kj} d_j \qquad (m = 0, 1, 2)

(a line, a plane, the straight path between two iterates). For an :class:`fastopt.MLP` the first
layer's pre-activations are affine in the coordinates,

.. math::
    Z^{(1)}_k = X W_c + \textstyle\sum_j a_{kj}\, X D_j + (b_c + \sum_j a_{kj} e_j),

so the products ``X W_c`` and ``X D_j`` (the expensive ones: ``n x fan_in x fan_out`` each) are
computed once, and each point costs only the combination and the rest of the network. The later
layers run for a chunk of ``k`` points at once: ``H_k W_k = H_k W_c + sum_j a_kj H_k D_j``, one
product of the chunk's stacked activations ``(k n, fan_in)`` with ``[W_c | D_1 | D_2]`` rather
than ``k`` small ones. Every matrix product is the model's backend kernel (``dense_forward`` with
the identity and a zero bias: the numba, C or CUDA kernels, or numpy's BLAS); the combinations,
activations and losses are elementwise numpy. On the ``cpu`` and ``c`` backends a one-hidden-layer
MLP runs the rest of the network and the loss as one fused kernel, in parallel over the points
(:mod:`fastopt.backends.cpu.landscape`, ``csrc/landscape.c``), storing no activations. The losses are those
of :meth:`fastopt.MLP.evaluate`: mean softmax cross-entropy over the rows, or mean squared error
over rows and outputs (integer labels as one-hot targets); the 0-1 error is the fraction of rows
whose argmax output is not the label.

Agreement with the per-point evaluation (``model.params = theta; model.evaluate(X, y)``): the
sums are grouped differently (``X (W + a D)`` against ``X W + a X D``) and the per-point path
rounds ``theta`` to the model's dtype first, so losses agree to a relative ``1e-4`` in float32
and ``1e-9`` in float64 (tests/test_landscape.py); an error count can differ only where two
outputs tie to within that rounding.
"""

import numpy as np

from fastopt._core import memory as _memory
from fastopt._core.dispatch import kernels
from fastopt.nn import reference as ref
from fastopt.nn.mlp import MLP, check_batch
from fastopt.landscape.models import FunctionModel

__all__ = ["Evaluator", "logits_along", "losses_of_logits"]

#: Bytes of intermediate activations a chunk of points may hold (chooses the chunk size: small
#: enough that a chunk's activations stay in cache between the layers).
CHUNK_BYTES = 8 << 20


def _combine(parts, weights, bias):
    """``sum_j weights[:, j] parts[j] + bias`` for each point: ``(k, n, width)``, elementwise
    (``parts[j]``: ``(n, width)`` shared by the points or ``(k, n, width)``)."""
    k = len(weights)
    shape = (k,) + parts[0].shape[-2:]
    Z = np.empty(shape, weights.dtype)
    Z[...] = parts[0] * weights[:, 0, None, None] if parts[0].ndim == 3 else parts[0]
    for j in range(1, len(parts)):
        Z += weights[:, j, None, None] * parts[j]
    Z += bias[:, None, :]
    return Z


def _activate(Z, code):
    """The hidden layer's activation of ``Z``, in place where it can be."""
    if code == ref.RELU:
        return np.maximum(Z, 0, out=Z)
    if code == ref.TANH:
        return np.tanh(Z, out=Z)
    return ref.activation(Z, ref.ACTIVATIONS[code]).astype(Z.dtype, copy=False)


def losses_of_logits(Z, y, loss_name):
    r"""Per-point mean loss and 0-1 error of logits ``Z`` of shape ``(K, n, C)``.

    Cross-entropy: :math:`\frac1n\sum_i \log\sum_c e^{Z_{ic}} - Z_{i y_i}`; MSE:
    :math:`\frac{1}{nC}\sum_{i,c}(Z_{ic} - T_{ic})^2` with ``y`` the targets ``T`` ``(n, C)``.
    Sums accumulate in float64."""
    K, n, C = Z.shape
    if loss_name == "cross_entropy":
        shifted = Z - Z.max(axis=2, keepdims=True)
        lse = np.log(np.exp(shifted).sum(axis=2, dtype=np.float64))
        picked = np.take_along_axis(shifted, y[None, :, None], axis=2)[..., 0]
        loss = (lse - picked).sum(axis=1, dtype=np.float64) / n
        wrong = np.count_nonzero(Z.argmax(axis=2) != y[None, :], axis=1)
    else:
        diff = (Z - y[None]).astype(np.float64, copy=False)
        loss = np.einsum("kic,kic->k", diff, diff) / (n * C)
        wrong = np.count_nonzero(Z.argmax(axis=2) != y.argmax(axis=1)[None, :], axis=1)
    return loss, wrong / n


class Evaluator:
    """A model and a data set ``(X, y)``, checked once, evaluated at many parameter points.

    ``Evaluator(model, X, y).affine(center, dirs, coords)`` returns ``(loss, error)``, arrays of
    ``len(coords)``: the values at ``center + coords @ dirs``. ``model``: a :class:`fastopt.MLP`
    (the parameters are read, never written) or a
    :class:`~fastopt.landscape.models.FunctionModel`.
    """

    def __init__(self, model, X, y, name_x="X", name_y="y"):
        self.model = model
        if isinstance(model, MLP):
            X, y = check_batch(X, y, model.sizes[0], model.sizes[-1], model.dtype,
                               model.loss_name, name_x, name_y)
            if model.loss_name == "mse" and y.ndim == 1:
                y = ref.one_hot(y, model.sizes[-1], model.dtype)
        else:
            X = np.asarray(X)
            y = np.asarray(y)
            if X.shape[:1] != y.shape[:1] or X.shape[0] == 0:
                raise ValueError(f"{name_y}: expected one label per row of {name_x} (and at "
                                 f"least one row), got {X.shape[0]} rows and {y.shape[:1]} labels")
        self.X, self.y = X, y

    @property
    def rows(self):
        return self.X.shape[0]

    # -------------------------------------------------------------------------- the MLP path

    def _product(self, A, B):
        """``A @ B`` (host arrays) through the model's ``dense_forward`` kernel (identity, zero
        bias): the backend's own matrix product, threaded as its kernels are."""
        model = self.model
        on_device = model.backend == "cuda"
        side = lambda a: _memory.from_host(True, a) if on_device else a
        A = np.ascontiguousarray(A, model.dtype)
        B = np.ascontiguousarray(B, model.dtype)
        out = _memory.full(on_device, (A.shape[0], B.shape[1]), model.dtype, 0.0)
        model._kernels.dense_forward(side(A), side(B), side(np.zeros(B.shape[1], model.dtype)),
                                     out, model._empty(B.shape[1]), ref.IDENTITY)
        return _memory.to_host(out)

    def _chunk(self, points):
        widest = max(self.model.sizes[1:])
        per_point = 3 * self.rows * widest * self.model.dtype.itemsize
        return max(1, min(points, CHUNK_BYTES // per_point))

    def mlp_logits(self, center, dirs, coords, progress=None):
        """Yields ``(rows, logits)``: for consecutive chunks of ``coords``, the output layer
        ``(k, n, C)`` at ``center + coords @ dirs`` (see the module's formula)."""
        model = self.model
        dtype = model.dtype
        arena = model.param_arena
        shapes, offsets = arena.shapes, arena.offsets
        unflat = lambda v: [v[o:o + int(np.prod(s))].reshape(s).astype(dtype)
                            for o, s in zip(offsets, shapes)]
        C = unflat(center)
        D = [unflat(d) for d in dirs]
        width = model.sizes[1]
        products = self._product(self.X, np.concatenate([C[0]] + [d[0] for d in D], axis=1))
        parts = [products[:, j * width:(j + 1) * width] for j in range(1 + len(D))]
        first_biases = np.stack([C[1]] + [d[1] for d in D])
        layer_stacks = {layer: np.concatenate([C[2 * layer]] + [d[2 * layer] for d in D], axis=1)
                        for layer in range(1, model.n_layers)}
        bias_stacks = {layer: np.stack([C[2 * layer + 1]] + [d[2 * layer + 1] for d in D])
                       for layer in range(1, model.n_layers)}
        coords = coords.astype(dtype)
        step = self._chunk(len(coords))
        for start in range(0, len(coords), step):
            a = coords[start:start + step]
            k = len(a)
            weights = np.concatenate([np.ones((k, 1), dtype), a], axis=1)  # (k, 1 + m)
            Z = _combine(parts, weights, weights @ first_biases)
            for layer in range(1, model.n_layers):
                H = _activate(Z, model._codes[layer - 1])
                # H_k (W_c + sum_j a_kj D_j) = H_k W_c + sum_j a_kj H_k D_j: one product of the
                # whole chunk with [W_c | D_1 | D_2] instead of k small ones
                fan_in, fan_out = C[2 * layer].shape
                Y = self._product(H.reshape(k * self.rows, fan_in), layer_stacks[layer])
                Y = Y.reshape(k, self.rows, 1 + len(D), fan_out)
                Z = _combine([Y[:, :, j] for j in range(1 + len(D))], weights,
                             weights @ bias_stacks[layer])
            yield slice(start, start + k), Z
            if progress is not None:
                progress(k)

    # ---------------------------------------------------------------------------- both kinds

    def affine(self, center, dirs, coords, progress=None):
        """``(loss, error)`` at ``center + coords @ dirs``: ``center`` ``(P,)``, ``dirs``
        ``(m, P)``, ``coords`` ``(K, m)``; float64 arrays of length ``K``."""
        coords = np.asarray(coords, np.float64).reshape(len(coords), len(dirs))
        loss = np.empty(len(coords))
        error = np.empty(len(coords))
        if isinstance(self.model, FunctionModel):
            step = self.model.chunk
            for start in range(0, len(coords), step):
                a = coords[start:start + step]
                thetas = center[None, :] + a @ np.asarray(dirs).reshape(len(dirs), -1)
                loss[start:start + len(a)], error[start:start + len(a)] = self.model(
                    thetas, self.X, self.y)
                if progress is not None:
                    progress(len(a))
            return loss, error
        if self.model.backend in ("cpu", "c") and self.model.n_layers == 2:
            return self._fused_two_layer(center, dirs, coords, progress)
        for rows, Z in self.mlp_logits(center, dirs, coords, progress):
            loss[rows], error[rows] = losses_of_logits(Z, self.y, self.model.loss_name)
        return loss, error

    #: Points per call of the fused kernel (a progress bar moves between calls).
    FUSED_POINTS = 256

    def _fused_two_layer(self, center, dirs, coords, progress=None):
        """:meth:`affine` of a one-hidden-layer MLP on the ``cpu`` or ``c`` backend: the first
        layer's products once, then the backend's ``affine_two_layer`` (the rest of the network
        and the loss, fused, in parallel over the points)."""
        model = self.model
        affine_two_layer = kernels(model.backend, "landscape").affine_two_layer
        dtype = model.dtype
        arena = model.param_arena
        (fan_in, width), (_, classes) = arena.shapes[0], arena.shapes[2]
        offsets = arena.offsets
        block = lambda v, i: v[offsets[i]:offsets[i] + int(np.prod(arena.shapes[i]))]
        vectors = [center] + list(dirs)
        products = self._product(self.X, np.concatenate(
            [block(v, 0).reshape(fan_in, width) for v in vectors], axis=1))
        parts = np.ascontiguousarray(
            products.reshape(self.rows, len(vectors), width).transpose(1, 0, 2))
        stack = lambda i, shape: np.stack([block(v, i).reshape(shape) for v in vectors])
        b1s, w2s, b2s = stack(1, (width,)), stack(2, (width, classes)), stack(3, (classes,))
        cross_entropy = model.loss_name == "cross_entropy"
        labels = self.y if cross_entropy else np.zeros(0, np.int64)
        targets = np.zeros((0, classes), dtype) if cross_entropy else self.y
        code = model._codes[0]
        denominator = self.rows * (1 if cross_entropy else classes)
        loss = np.empty(len(coords))
        error = np.empty(len(coords))
        for start in range(0, len(coords), self.FUSED_POINTS):
            a = coords[start:start + self.FUSED_POINTS]
            weights = np.concatenate([np.ones((len(a), 1)), a], axis=1)  # float64 combination
            b1 = (weights @ b1s).astype(dtype)
            w2t = np.ascontiguousarray(np.einsum("km,mjc->kcj", weights, w2s), dtype)
            b2 = (weights @ b2s).astype(dtype)
            sums = np.empty(len(a))
            wrong = np.empty(len(a), np.int64)
            affine_two_layer(parts, weights.astype(dtype), b1, w2t, b2, labels, targets,
                             code, ref.LOSSES.index(model.loss_name), sums, wrong)
            loss[start:start + len(a)] = sums / denominator
            error[start:start + len(a)] = wrong / self.rows
            if progress is not None:
                progress(len(a))
        return loss, error


def logits_along(evaluator, center, dirs, coords):
    """The MLP's logits ``(K, n, C)`` at ``center + coords @ dirs`` (all chunks joined)."""
    coords = np.asarray(coords, np.float64).reshape(len(coords), len(dirs))
    return np.concatenate([Z for _, Z in evaluator.mlp_logits(center, dirs, coords)])
