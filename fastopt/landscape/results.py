"""The results of the landscape functions: arrays plus metadata, saved to and loaded from ``.npz``.

Every result holds its arrays in :attr:`Result.arrays` (also readable as attributes:
``result.loss``) and its metadata in :attr:`Result.meta` (the directions' seed and normalization,
the data sizes, the model), ``.save(path)`` writes one ``.npz`` (the metadata as JSON under
``meta``), :func:`load` (or ``ResultClass.load``) reads it back, ``.plot()`` draws it
(:mod:`fastopt.landscape.plots`).
"""

import json

import numpy as np

__all__ = ["Result", "LineResult", "PlaneResult", "ProjectionResult", "ScaledResult",
           "MonotonePathResult", "load"]

_KINDS = {}


class Result:
    """Arrays and metadata of one experiment."""
    kind = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _KINDS[cls.kind] = cls

    def __init__(self, arrays, meta=None):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.meta = dict(meta or {})

    def __getattr__(self, name):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def save(self, path):
        """Writes the arrays and the metadata to ``path`` (``.npz``); returns the path."""
        np.savez(path, kind=self.kind, meta=json.dumps(self.meta, default=_plain),
                 **self.arrays)
        return path if str(path).endswith(".npz") else f"{path}.npz"

    @classmethod
    def load(cls, path):
        """The result saved by :meth:`save` at ``path``."""
        result = load(path)
        if cls is not Result and not isinstance(result, cls):
            raise ValueError(f"path: {path} holds a {type(result).__name__}, not a "
                             f"{cls.__name__}")
        return result

    def plot(self, path=None, **options):
        """Draws the result (a matplotlib ``Figure``); with ``path``, saves it there too (the
        suffix chooses PNG or SVG)."""
        from fastopt.landscape import plots

        figure = getattr(plots, f"plot_{self.kind}")(self, **options)
        if path is not None:
            plots.save_figure(figure, path)
        return figure

    def __repr__(self):
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.arrays.items())
        return f"{type(self).__name__}({shapes}; {self.meta})"


class LineResult(Result):
    """:func:`~fastopt.landscape.line` and :func:`~fastopt.landscape.interpolate`: ``coords``
    (the α or x of each point), ``loss``, ``error`` and, with test data, ``test_loss``,
    ``test_error``."""
    kind = "line"


class PlaneResult(Result):
    """:func:`~fastopt.landscape.plane`: ``xs``, ``ys``, ``loss[i, j]`` and ``error[i, j]`` at
    ``center + xs[i] d1 + ys[j] d2`` (and ``test_*``), optionally ``trajectory`` ``(T, 2)``: the
    recorded iterates' coordinates in the plane (least squares)."""
    kind = "plane"

    def plot_surface(self, path=None, **options):
        """The plane as a 3-D surface (:func:`fastopt.landscape.plots.plot_surface`)."""
        from fastopt.landscape import plots

        figure = plots.plot_surface(self, **options)
        if path is not None:
            plots.save_figure(figure, path)
        return figure


class ProjectionResult(Result):
    """:func:`~fastopt.landscape.project`: ``alpha``, ``beta`` and ``step`` of each iterate."""
    kind = "projection"


class ScaledResult(Result):
    """:func:`~fastopt.landscape.scaled_last_layer`: ``cs``, ``loss``, ``error``."""
    kind = "scaled_last_layer"


class MonotonePathResult(Result):
    """:func:`~fastopt.landscape.monotone_path`: for each ``alpha`` of the straight path,
    ``straight_loss`` (the loss there), ``target`` (the monotone target), ``c`` (the scale of the
    output layer that meets it; NaN where none does), ``loss`` (the loss at that ``c``),
    ``feasible``."""
    kind = "monotone_path"


def load(path):
    """The :class:`Result` saved at ``path``, of the class it was saved from."""
    with np.load(path, allow_pickle=False) as f:
        kind = str(f["kind"])
        meta = json.loads(str(f["meta"]))
        arrays = {k: f[k] for k in f.files if k not in ("kind", "meta")}
    if kind not in _KINDS:
        raise ValueError(f"path: {path} holds no landscape result (kind {kind!r})")
    return _KINDS[kind](arrays, meta)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
