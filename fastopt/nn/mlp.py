"""Multilayer perceptrons whose parameters and gradients each live in one flat arena.

``MLP(sizes)`` stacks dense layers with bias: hidden layers apply the activation, the output layer
is linear. Every weight matrix and bias vector is a view of one contiguous parameter vector
(:attr:`MLP.params`), and every gradient a view of one gradient vector (:attr:`MLP.grads`), so
one optimizer kernel steps the whole network::

    model = fastopt.MLP([64, 128, 10], activation="relu", init="he", seed=0)
    opt = fastopt.Adam([model.params], lr=1e-3)
    loss = model.loss_and_grad(X, y)      # forward, loss, backward: fills model.grads
    opt.step([model.grads])

Weights are stored ``(fan_in, fan_out)`` (the forward pass is ``X @ W``, the transpose of
``torch.nn.Linear.weight``). The forward and backward passes run the kernels of the model's backend
(``fastopt.backends.<backend>_mlp``; formulas in :mod:`fastopt.nn.reference`); inputs are checked
here, once, before any kernel runs.
"""

import math
import numbers

import numpy as np

from fastopt._core import memory as _memory
from fastopt.nn import init as _init
from fastopt.nn import reference as ref
from fastopt._core.dispatch import choose, kernels
from fastopt.optim.arena import FlatParams

__all__ = ["MLP", "check_batch"]


def _is_device(backend):
    return backend == "cuda"


def _default_backend():
    """The backend an optimizer step on host arrays gets (:func:`fastopt._core.dispatch.choose`):
    ``FASTOPT_BACKEND`` if set, else the first available of ``cpu``, ``c``, ``numpy``, so that
    ``fastopt.Adam([model.params])`` runs where the model does. The ``c`` kernels run the matrix
    products faster (bench/mlp_table.py); ``backend="c"`` chooses them."""
    return choose({}, None)


def check_batch(X, y, n_features, n_outputs, dtype, loss="cross_entropy", name_x="X",
                name_y="y", allow_empty=False):
    """``(X, y)`` checked and converted for the kernels: C-contiguous ``dtype`` features and int64
    labels (or, for MSE, ``dtype`` targets of shape ``(batch, n_outputs)``); ``y`` may be ``None``.

    Raises ``ValueError``/``TypeError`` naming the argument for a wrong feature count, an empty
    batch, non-finite values, labels out of range or of the wrong kind, or mismatched lengths.
    """
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name_x}: expected numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name_x}: expected a 2-D array (batch, {n_features}), got shape "
                         f"{X.shape}" + ("; use X.reshape(1, -1) for one sample" if X.ndim == 1
                                         else ""))
    if X.shape[1] != n_features:
        raise ValueError(f"{name_x}: expected {n_features} features per row (the model's input "
                         f"size), got {X.shape[1]}")
    if X.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name_x}: empty batch (0 rows)")
    X = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(X).all():
        raise ValueError(f"{name_x}: contains NaN or infinity")
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"{name_y}: expected {X.shape[0]} rows (one per row of {name_x}), "
                         f"got shape {y.shape}")
    if loss == "mse" and y.ndim == 2:
        if y.shape[1] != n_outputs:
            raise ValueError(f"{name_y}: expected targets of shape ({X.shape[0]}, {n_outputs}), "
                             f"got {y.shape}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{name_y}: expected numbers, got dtype {y.dtype}")
        y = np.ascontiguousarray(y, dtype=dtype)
        if not np.isfinite(y).all():
            raise ValueError(f"{name_y}: contains NaN or infinity")
        return X, y
    if y.ndim != 1:
        raise ValueError(f"{name_y}: expected a 1-D array of integer class labels, got shape "
                         f"{y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and y.size and np.isfinite(y).all() and (y == np.round(y)).all():
            pass  # whole numbers stored as floats are accepted as labels
        else:
            raise TypeError(f"{name_y}: expected integer class labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_outputs):
        bad = y[(y < 0) | (y >= n_outputs)][0]
        raise ValueError(f"{name_y}: labels must lie in [0, {n_outputs}) (the model's output "
                         f"size), got {bad!r}")
    return X, np.ascontiguousarray(y, dtype=np.int64)


class MLP:
    """A multilayer perceptron: dense layers with bias, the activation on hidden layers, a linear
    output layer, and a loss.

    Arguments:
        sizes: layer widths ``[n_inputs, hidden..., n_outputs]`` (at least two).
        activation: ``"relu"`` (default), ``"tanh"``, ``"sigmoid"``, ``"gelu"`` (exact, erf) or
            ``"identity"``.
        init: weight initializer, a name in :data:`fastopt.init.INITIALIZERS`
            (``"xavier_uniform"``, ``"xavier_normal"``, ``"he_uniform"``, ``"he_normal"``), an
            alias (``"he"`` is ``he_normal``, ``"xavier"`` is ``xavier_uniform``) or a callable
            ``(shape, rng, dtype) -> array``. Biases start at zero.
        dtype: ``np.float32`` (default) or ``np.float64``.
        backend: ``"c"``, ``"cpu"``, ``"numpy"`` or ``"cuda"``; default: that of an optimizer
            step on host arrays: ``FASTOPT_BACKEND`` if set, else the first available of
            ``cpu``, ``c``, ``numpy``. ``c`` runs the matrix products fastest.
        seed: seed of the initializer (an int or a ``numpy.random.Generator``); the same seed gives
            the same network on every backend and dtype.
        loss: ``"cross_entropy"`` (softmax cross-entropy on integer labels, default) or ``"mse"``
            (mean squared error against float targets, or one-hot rows of integer labels).

    Attributes: :attr:`params` and :attr:`grads` (the flat vectors), :attr:`weights`,
    :attr:`biases`, :attr:`weight_grads`, :attr:`bias_grads` (views of them),
    ``param_arena``/``grad_arena`` (the :class:`fastopt.optim.arena.FlatParams`).
    """

    def __init__(self, sizes, activation="relu", init="he", dtype=np.float32, backend=None,
                 seed=0, loss="cross_entropy"):
        sizes = list(sizes)
        for k, width in enumerate(sizes):
            if isinstance(width, (bool, np.bool_)) or not isinstance(width, numbers.Integral):
                raise TypeError(f"sizes[{k}]: expected an int layer width, got {width!r}")
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes: expected at least two layer widths >= 1, got {sizes}")
        if activation not in ref.ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ref.ACTIVATIONS)}, "
                             f"got {activation!r}")
        if loss not in ref.LOSSES:
            raise ValueError(f"loss: expected one of {', '.join(ref.LOSSES)}, got {loss!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        self.sizes, self.activation, self.loss_name, self.dtype = sizes, activation, loss, dtype
        self.init = init
        self.backend = _default_backend() if backend is None else choose({}, backend)
        self._kernels = kernels(self.backend, "mlp")
        self._on_device = _is_device(self.backend)
        initializer = init if callable(init) else _init.get(init)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        host = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            host.append(np.asarray(initializer((fan_in, fan_out), rng, dtype), dtype))
            host.append(np.zeros(fan_out, dtype))
        self.param_arena = FlatParams.empty([a.shape for a in host], dtype, self._on_device)
        self._write_params(np.concatenate([a.ravel() for a in host]))
        self.grad_arena = self.param_arena.zeros_like()
        codes = [ref.ACTIVATIONS.index(activation)] * (len(sizes) - 2) + [ref.IDENTITY]
        self._codes = codes
        self._capacity = 0
        self._stats = _memory.full(self._on_device, 2, np.float64, 0.0)
        self._empty2d = {}

    # ----------------------------------------------------------------- parameters as one vector

    @property
    def params(self):
        """The parameter vector (a live view: writing it changes the network). Assigning
        ``model.params = v`` copies ``v`` in, keeping every view and optimizer valid."""
        return self.param_arena.data

    @params.setter
    def params(self, vector):
        self.set_params(vector)

    def set_params(self, vector):
        """Copies a vector of :attr:`num_params` finite values into the parameters."""
        host = _memory.to_host(vector) if hasattr(vector, "copy_to_host") else np.asarray(vector)
        if host.shape != (self.num_params,):
            raise ValueError(f"params: expected a vector of {self.num_params} values, got shape "
                             f"{host.shape}")
        if host.dtype.kind not in "biuf" or not np.isfinite(host).all():
            raise ValueError("params: expected finite numbers")
        self._write_params(host.astype(self.dtype, copy=False))

    def _write_params(self, host_vector):
        if self._on_device:
            self.param_arena.data.copy_to_device(np.ascontiguousarray(host_vector))
        else:
            self.param_arena.data[...] = host_vector

    def get_params(self):
        """A numpy copy of the parameter vector (from the device for ``cuda``)."""
        return _memory.to_host(self.params)

    @property
    def grads(self):
        """The gradient vector filled by :meth:`loss_and_grad` (a live view)."""
        return self.grad_arena.data

    @property
    def num_params(self):
        return self.param_arena.size

    @property
    def weights(self):
        return self.param_arena.views[0::2]

    @property
    def biases(self):
        return self.param_arena.views[1::2]

    @property
    def weight_grads(self):
        return self.grad_arena.views[0::2]

    @property
    def bias_grads(self):
        return self.grad_arena.views[1::2]

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def copy(self, backend=None):
        """An independent copy (optionally on another backend) with the same parameters."""
        clone = MLP(self.sizes, self.activation, self.init, self.dtype,
                    backend or self.backend, 0, self.loss_name)
        clone.set_params(self.get_params())
        return clone

    def save(self, path):
        """Saves the architecture and the parameter vector to an ``.npz`` file."""
        np.savez(path, sizes=np.array(self.sizes), activation=self.activation,
                 loss=self.loss_name, dtype=str(self.dtype), params=self.get_params())

    @classmethod
    def load(cls, path, backend=None):
        """A model saved by :meth:`save`."""
        with np.load(path) as f:
            model = cls([int(s) for s in f["sizes"]], str(f["activation"]), "he",
                        np.dtype(str(f["dtype"])), backend, 0, str(f["loss"]))
            model.set_params(f["params"])
        return model

    def __repr__(self):
        widths = "-".join(map(str, self.sizes))
        return (f"MLP({widths}, activation={self.activation!r}, loss={self.loss_name!r}, "
                f"{self.dtype}, backend={self.backend!r}, {self.num_params:,} parameters)")

    # ------------------------------------------------------------------------------ workspace

    def _empty(self, columns):
        """A ``(0, columns)`` array: ``pre`` of a layer that keeps none, ``dx`` of the first."""
        if columns not in self._empty2d:
            self._empty2d[columns] = _memory.full(self._on_device, (0, columns), self.dtype, 0.0)
        return self._empty2d[columns]

    def _reserve(self, batch):
        """Per-layer buffers for ``batch`` rows (grown, never shrunk; views of the first rows)."""
        if batch > self._capacity:
            capacity = max(batch, 2 * self._capacity)
            full = lambda n: _memory.full(self._on_device, (capacity, n), self.dtype, 0.0)
            widths = self.sizes[1:]
            self._outs = [full(n) for n in widths]
            self._deltas = [full(n) for n in widths]
            self._pres = [full(n) if ref.NEEDS_PRE[c] else None
                          for n, c in zip(widths, self._codes)]
            self._capacity = capacity
        widths = self.sizes[1:]
        outs = [a[:batch] for a in self._outs]
        deltas = [a[:batch] for a in self._deltas]
        pres = [self._empty(n) if p is None else p[:batch] for n, p in zip(widths, self._pres)]
        return outs, pres, deltas

    def _to_side(self, a):
        return _memory.from_host(True, a) if self._on_device else a

    # --------------------------------------------------------------------- forward / backward

    def _forward(self, X, outs, pres):
        k = self._kernels
        a = X
        for layer in range(self.n_layers):
            k.dense_forward(a, self.param_arena.views[2 * layer],
                            self.param_arena.views[2 * layer + 1], outs[layer], pres[layer],
                            self._codes[layer])
            a = outs[layer]
        return a

    def _loss(self, out, y, delta):
        """Loss kernel on checked arrays: fills ``delta`` with dL/d(out); ``(loss, wrong)``."""
        batch = out.shape[0]
        if self.loss_name == "cross_entropy":
            scale = self.dtype.type(1.0 / batch)
            self._kernels.softmax_xent(out, y, delta, self._stats, scale)
            total_scale = 1.0 / batch
        else:
            if y.ndim == 1:
                y = self._to_side(ref.one_hot(_memory.to_host(y), self.sizes[-1], self.dtype))
            scale = self.dtype.type(1.0 / out.size)
            self._kernels.mse(out, y, delta, self._stats, scale)
            total_scale = 1.0 / out.size
        stats = _memory.to_host(self._stats)
        return float(stats[0]) * total_scale, int(stats[1])

    def _loss_and_grad(self, X, y):
        """Forward, loss and backward on checked arrays already on the model's side."""
        batch = X.shape[0]
        outs, pres, deltas = self._reserve(batch)
        out = self._forward(X, outs, pres)
        loss, wrong = self._loss(out, y, deltas[-1])
        k = self._kernels
        views, gviews = self.param_arena.views, self.grad_arena.views
        for layer in reversed(range(self.n_layers)):
            x = X if layer == 0 else outs[layer - 1]
            dx = self._empty(self.sizes[0]) if layer == 0 else deltas[layer - 1]
            k.dense_backward(x, views[2 * layer], outs[layer], pres[layer], deltas[layer],
                             gviews[2 * layer], gviews[2 * layer + 1], dx, self._codes[layer])
        return loss, wrong

    def _check(self, X, y=None, allow_empty=False):
        X, y = check_batch(X, y, self.sizes[0], self.sizes[-1], self.dtype, self.loss_name,
                           allow_empty=allow_empty)
        return self._to_side(X), (None if y is None else self._to_side(y))

    def forward(self, X):
        """The network's output (logits for cross-entropy) for the rows of ``X``, a new numpy
        array of shape ``(len(X), sizes[-1])``."""
        X, _ = self._check(X)
        outs, pres, _ = self._reserve(X.shape[0])
        return _memory.to_host(self._forward(X, outs, pres))

    __call__ = forward

    def predict(self, X):
        """Class labels: the argmax of :meth:`forward`."""
        return self.forward(X).argmax(axis=1)

    def loss_and_grad(self, X, y, return_error=False):
        """The mean loss on the batch ``(X, y)``; fills :attr:`grads` with its gradient.

        With ``return_error=True`` returns ``(loss, error)``, ``error`` being the 0-1 error: the
        fraction of rows whose argmax output is not the label.
        """
        X, y = self._check(X, y)
        loss, wrong = self._loss_and_grad(X, y)
        return (loss, wrong / X.shape[0]) if return_error else loss

    def evaluate(self, X, y, batch_size=4096):
        """``(mean loss, 0-1 error)`` over a dataset, in batches; no gradients."""
        X, y = check_batch(X, y, self.sizes[0], self.sizes[-1], self.dtype, self.loss_name)
        total = wrong = 0.0
        for start in range(0, X.shape[0], batch_size):
            xb = self._to_side(X[start:start + batch_size])
            yb = self._to_side(y[start:start + batch_size])
            outs, pres, deltas = self._reserve(xb.shape[0])
            out = self._forward(xb, outs, pres)
            loss, w = self._loss(out, yb, deltas[-1])
            weight = xb.shape[0] * (1 if self.loss_name == "cross_entropy" else self.sizes[-1])
            total += loss * weight
            wrong += w
        denominator = X.shape[0] * (1 if self.loss_name == "cross_entropy" else self.sizes[-1])
        return total / denominator, wrong / X.shape[0]

    def grad_norm(self):
        """The Euclidean norm of the gradient vector."""
        self._kernels.sum_squares(self.grads, self._stats)
        return math.sqrt(float(_memory.to_host(self._stats)[0]))

    def scale_grads(self, factor):
        """Multiplies the gradient vector by ``factor`` in place (gradient clipping)."""
        self._kernels.scale(self.grads, self.dtype.type(factor))
