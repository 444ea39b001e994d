r"""Random directions in parameter space, normalized as Li et al. (2018) define it.

A direction :math:`d` is drawn Gaussian, :math:`d \sim \mathcal N(0, I)`, then, per weight array
of the parameters :math:`\theta`:

- ``"filter"``: each filter (the incoming weights of one output neuron: a column of fastopt's
  ``(in, out)`` weights, a row of PyTorch's ``(out, in)``) is scaled to the norm of the same
  filter of :math:`\theta`: :math:`d_{f} \leftarrow d_{f}\, \lVert\theta_{f}\rVert /
  \lVert d_{f}\rVert`;
- ``"layer"``: the whole array is scaled to the array's norm in :math:`\theta`;
- ``None``: left as drawn.

Biases (1-D arrays) follow their own policy, stated explicitly rather than normalized a second
time: ``"zero"`` (Li et al.'s default, the surface moves weights only) or ``"copy"`` (the
direction's bias is the parameters' bias, :math:`d_b = \theta_b`).

References: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, *Visualizing the Loss Landscape of
Neural Nets*, NeurIPS 2018, section 4.
"""

import numpy as np

from fastopt.landscape.models import blocks_of, check_model, params_of

__all__ = ["Directions", "directions", "NORMALIZATIONS", "BIAS_POLICIES"]

NORMALIZATIONS = ("filter", "layer", None)
BIAS_POLICIES = ("zero", "copy")


class Directions:
    """Directions (rows of :attr:`vectors`, float64) with how they were made: ``seed``,
    ``normalization``, ``biases``, ``orthogonal``. Iterates and indexes as its rows
    (``d1, d2 = directions(model, seed=0)``)."""

    def __init__(self, vectors, seed=None, normalization=None, biases=None, orthogonal=False):
        self.vectors = np.atleast_2d(np.asarray(vectors, np.float64))
        self.seed, self.normalization, self.biases = seed, normalization, biases
        self.orthogonal = orthogonal

    def __len__(self):
        return len(self.vectors)

    def __iter__(self):
        return iter(self.vectors)

    def __getitem__(self, index):
        return self.vectors[index]

    def __array__(self, dtype=None, copy=None):
        return self.vectors if dtype is None else self.vectors.astype(dtype)

    @property
    def meta(self):
        return {"seed": self.seed, "normalization": self.normalization or "none",
                "biases": self.biases, "orthogonal": self.orthogonal}

    def __repr__(self):
        return (f"Directions({len(self)} x {self.vectors.shape[1]:,}, seed={self.seed}, "
                f"normalization={self.normalization!r}, biases={self.biases!r}, "
                f"orthogonal={self.orthogonal})")


def normalize(direction, params, blocks, normalization="filter", biases="zero"):
    """``direction`` (a float64 vector, copied) normalized against ``params`` block by block
    (see the module's formulas)."""
    d = np.array(direction, np.float64)
    for block in blocks:
        dv, pv = block.view(d), block.view(params)
        if not block.weight:
            dv[...] = 0.0 if biases == "zero" else pv
        elif normalization == "filter":
            axes = tuple(a for a in range(dv.ndim) if a != block.filter_axis)
            dn = np.sqrt((dv * dv).sum(axis=axes, keepdims=True))
            pn = np.sqrt((pv * pv).sum(axis=axes, keepdims=True))
            dv *= pn / np.where(dn > 0, dn, 1.0)
        elif normalization == "layer":
            dn = np.linalg.norm(dv)
            dv *= np.linalg.norm(pv) / (dn if dn > 0 else 1.0)
    return d


def directions(model, seed=0, normalization="filter", biases="zero", count=2,
               orthogonalize=False, center=None):
    r"""``count`` Gaussian random directions in ``model``'s parameter space, normalized against
    its parameters (or ``center``); a :class:`Directions`.

    Arguments:
        model: a :class:`fastopt.MLP` or a :class:`~fastopt.landscape.FunctionModel` (whose
            blocks say which arrays are weights and where their filters lie).
        seed: seed of ``numpy.random.default_rng`` (the same seed gives the same directions).
        normalization: ``"filter"`` (default), ``"layer"`` or ``None``.
        biases: ``"zero"`` (default) or ``"copy"``.
        count: how many directions (1 for a line, 2 for a plane).
        orthogonalize: make each direction orthogonal to those before it (Gram–Schmidt,
            :math:`d_2 \leftarrow d_2 - \frac{d_2\cdot d_1}{d_1\cdot d_1} d_1`, then rescaled to its
            norm before the projection); off by default, as in Li et al., where two random
            directions in high dimension are nearly orthogonal anyway.
        center: the parameters to normalize against (default: the model's).
    """
    check_model(model)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization: expected 'filter', 'layer' or None, got "
                         f"{normalization!r}")
    if biases not in BIAS_POLICIES:
        raise ValueError(f"biases: expected 'zero' or 'copy', got {biases!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count: expected an integer >= 1, got {count!r}")
    if center is None:
        params = params_of(model)
    else:
        from fastopt.landscape.models import check_vector
        params = check_vector(model, center, "center")
    blocks = blocks_of(model)
    if normalization == "filter" and not any(b.weight for b in blocks):
        raise ValueError("normalization: 'filter' needs the model's weight blocks "
                         "(FunctionModel(blocks=...)); this model has none")
    rng = np.random.default_rng(seed)
    vectors = []
    for _ in range(count):
        d = normalize(rng.standard_normal(params.size), params, blocks, normalization, biases)
        if orthogonalize:
            norm = np.linalg.norm(d)
            for e in vectors:
                d -= (d @ e) / (e @ e) * e
            residual = np.linalg.norm(d)
            if residual == 0:
                raise ValueError("orthogonalize: a direction lies in the span of the others")
            d *= norm / residual
        vectors.append(d)
    return Directions(np.array(vectors), seed, normalization, biases, bool(orthogonalize))
