"""The two kinds of model the landscape functions take, and what they need to know of each.

- :class:`fastopt.MLP`: the fast path (:mod:`fastopt.landscape.evaluate`).
- :class:`FunctionModel`: any model given as a batched loss of flat parameter vectors,
  ``fn(thetas, X, y) -> (losses, errors)`` with ``thetas`` of shape ``(K, P)``; :func:`torch_model`
  builds one from a PyTorch ``nn.Module`` with ``torch.func.functional_call`` and ``vmap``.

Both describe their parameter vector as a list of :class:`Block` (offset, shape, weight or bias,
the axis along which a weight's filters lie), which is what filter normalization needs.
"""

from dataclasses import dataclass

import numpy as np

from fastopt.nn.mlp import MLP

__all__ = ["Block", "FunctionModel", "torch_model", "blocks_of", "params_of", "check_model"]


@dataclass(frozen=True)
class Block:
    """One parameter array inside the flat vector: ``vector[offset:offset + size].reshape(shape)``.

    ``weight``: a weight matrix (filters normalized one by one) rather than a bias (1-D);
    ``filter_axis``: the axis indexing the filters (output neurons): 1 for fastopt's ``(in, out)``
    weights, 0 for PyTorch's ``(out, in, ...)``."""
    offset: int
    shape: tuple
    weight: bool
    filter_axis: int = 1

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def view(self, vector):
        return vector[..., self.offset:self.offset + self.size].reshape(
            vector.shape[:-1] + self.shape)


class FunctionModel:
    """A model given as a batched loss of flat parameter vectors.

    Arguments:
        fn: ``fn(thetas, X, y) -> (losses, errors)``: ``thetas`` a float64 array ``(K, P)``, the
            results two sequences of ``K`` numbers (mean loss and 0-1 error at each row).
        params: the model's current parameter vector (``P`` numbers), the default center.
        blocks: the :class:`Block` list of the vector (for :func:`~fastopt.landscape.directions`);
            default: one bias-like block (no filter normalization possible).
        last_layer: ``slice`` of the output layer's weights and bias in the vector (for
            :func:`~fastopt.landscape.scaled_last_layer`), or ``None``.
        chunk: rows of ``thetas`` per call of ``fn`` (bounds memory).
    """

    def __init__(self, fn, params, blocks=None, last_layer=None, chunk=64):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable fn(thetas, X, y), got {fn!r}")
        params = np.asarray(params, np.float64).ravel()
        if params.size == 0 or not np.isfinite(params).all():
            raise ValueError("params: expected a non-empty vector of finite numbers")
        self.fn, self.chunk = fn, int(chunk)
        self._params = params
        self.blocks = list(blocks) if blocks is not None else [
            Block(0, (params.size,), False)]
        self.last_layer = last_layer

    @property
    def num_params(self):
        return self._params.size

    def get_params(self):
        return self._params.copy()

    def __call__(self, thetas, X, y):
        thetas = np.asarray(thetas, np.float64)
        losses, errors = [], []
        for start in range(0, len(thetas), self.chunk):
            loss, error = self.fn(thetas[start:start + self.chunk], X, y)
            losses.append(np.asarray(loss, np.float64).reshape(-1))
            errors.append(np.asarray(error, np.float64).reshape(-1))
        return np.concatenate(losses), np.concatenate(errors)

    def __repr__(self):
        return f"FunctionModel({self.fn!r}, {self.num_params:,} parameters)"


def torch_model(module, loss="cross_entropy", chunk=16, dtype=None):
    """A :class:`FunctionModel` of a PyTorch ``nn.Module`` mapping rows to logits.

    Each row ``theta`` of a chunk is unflattened into the module's named parameters (in
    ``named_parameters()`` order, each flattened row-major) and evaluated with
    ``torch.func.functional_call``, vectorized over the chunk with ``torch.func.vmap``:

    .. math::
        \\ell(\\theta) = \\tfrac1n \\textstyle\\sum_i \\mathrm{CE}(f_\\theta(x_i), y_i)
        \\quad\\text{or}\\quad \\tfrac{1}{nC} \\sum_{i,c} (f_\\theta(x_i)_c - t_{ic})^2

    Weights (``ndim >= 2``) have their filters along axis 0 (PyTorch's ``(out, in, ...)``); the
    last two parameters are taken as the output layer (weight and bias) for
    :func:`~fastopt.landscape.scaled_last_layer`.
    """
    try:
        import torch
        from torch.func import functional_call, vmap
    except ImportError as exc:
        raise ImportError("torch_model needs PyTorch: pip install torch (or fastopt[oracle])") \
            from exc
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss: expected 'cross_entropy' or 'mse', got {loss!r}")
    named = [(name, p.detach()) for name, p in module.named_parameters()]
    if not named:
        raise ValueError("module: has no parameters")
    dtype = dtype or named[0][1].dtype
    blocks, offset = [], 0
    for _, p in named:
        shape = tuple(p.shape)
        blocks.append(Block(offset, shape, p.ndim >= 2, 0))
        offset += p.numel()
    params = np.concatenate([p.cpu().double().numpy().ravel() for _, p in named])
    last = slice(blocks[-2].offset, offset) if len(blocks) >= 2 else None
    names = [name for name, _ in named]

    def one(theta, Xt, yt):
        tensors = {name: theta[b.offset:b.offset + b.size].reshape(b.shape)
                   for name, b in zip(names, blocks)}
        out = functional_call(module, tensors, (Xt,))
        if loss == "cross_entropy":
            value = torch.nn.functional.cross_entropy(out, yt)
            wrong = (out.argmax(dim=1) != yt).to(out.dtype).mean()
        else:
            target = yt if yt.ndim == 2 else torch.nn.functional.one_hot(
                yt, out.shape[1]).to(out.dtype)
            value = ((out - target) ** 2).mean()
            wrong = (out.argmax(dim=1) != target.argmax(dim=1)).to(out.dtype).mean()
        return value, wrong

    batched = vmap(one, in_dims=(0, None, None))

    def fn(thetas, X, y):
        with torch.no_grad():
            Xt = torch.as_tensor(np.asarray(X), dtype=dtype)
            yt = torch.as_tensor(np.asarray(y))
            if yt.is_floating_point():
                yt = yt.to(dtype)
            losses, wrongs = batched(torch.as_tensor(thetas, dtype=dtype), Xt, yt)
        return losses.double().numpy(), wrongs.double().numpy()

    return FunctionModel(fn, params, blocks, last, chunk)


def blocks_of(model):
    """The :class:`Block` list of ``model``'s parameter vector."""
    if isinstance(model, MLP):
        arena = model.param_arena
        return [Block(o, tuple(s), k % 2 == 0, 1)
                for k, (o, s) in enumerate(zip(arena.offsets, arena.shapes))]
    return model.blocks


def params_of(model):
    """A float64 numpy copy of ``model``'s parameter vector; ``ValueError`` if it is not
    finite."""
    params = np.asarray(model.get_params(), np.float64)
    if not np.isfinite(params).all():
        raise ValueError("model: its parameters contain NaN or infinity (pass center= to "
                         "evaluate elsewhere)")
    return params


def check_model(model, name="model"):
    """``model`` if it is an :class:`fastopt.MLP` or a :class:`FunctionModel`, else
    ``TypeError``."""
    if not isinstance(model, (MLP, FunctionModel)):
        raise TypeError(f"{name}: expected a fastopt.MLP or a fastopt.landscape.FunctionModel "
                        f"(e.g. torch_model(module)), got {type(model).__name__}")
    return model


def check_vector(model, vector, name):
    """``vector`` as a float64 array of ``model``'s parameter count (any non-empty 1-D vector when
    ``model`` is ``None``), finite; else ``TypeError``/``ValueError`` naming ``name``."""
    if hasattr(vector, "copy_to_host"):
        vector = vector.copy_to_host()
    v = np.asarray(vector)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a vector of numbers, got dtype {v.dtype}")
    if model is None and (v.ndim != 1 or v.size == 0):
        raise ValueError(f"{name}: expected a non-empty 1-D vector of numbers, got shape "
                         f"{v.shape}")
    if model is not None and v.shape != (model.num_params,):
        raise ValueError(f"{name}: expected a vector of {model.num_params} values (the model's "
                         f"parameter count), got shape {v.shape}")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return v


def check_grid(values, name, default=None):
    """A non-empty 1-D float64 array of finite numbers (``default`` when ``values`` is None)."""
    if values is None:
        values = default
    v = np.asarray(values, dtype=np.float64) if np.asarray(values).dtype.kind in "biuf" else None
    if v is None:
        raise TypeError(f"{name}: expected numbers")
    v = np.atleast_1d(v)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of numbers, got shape "
                         f"{v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return v
