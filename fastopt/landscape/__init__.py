"""Loss-landscape experiments, every point evaluated in batches: Goodfellow et al.'s linear
interpolation, the α/β projection of the training path, Li et al.'s filter-normalized line and
plane surfaces, Safran & Shamir's scaled last layer and monotone path, their plots and a report
folder.

::

    from fastopt import landscape
    d = landscape.directions(model, seed=0)                     # filter-normalized, biases zero
    surface = landscape.plane(model, X, y, d, xs, ys)           # PlaneResult
    surface.plot("plane.png"); surface.save("plane.npz")

- :mod:`~fastopt.landscape.models`: the model kinds (:class:`fastopt.MLP`,
  :class:`FunctionModel`, :func:`torch_model`);
- :mod:`~fastopt.landscape.evaluate`: the batched evaluation of many parameter points;
- :mod:`~fastopt.landscape.directions`: random directions and their normalizations;
- :mod:`~fastopt.landscape.surfaces`: :func:`interpolate`, :func:`line`, :func:`plane`;
- :mod:`~fastopt.landscape.paths`: :func:`project`, :func:`scaled_last_layer`,
  :func:`monotone_path`;
- :mod:`~fastopt.landscape.results`: the result objects (``.save``, ``.load``, ``.plot``);
- :mod:`~fastopt.landscape.plots`, :mod:`~fastopt.landscape.report`: figures and the report
  folder of ``fastopt landscape``.
"""

from fastopt.landscape.directions import Directions, directions
from fastopt.landscape.evaluate import Evaluator
from fastopt.landscape.models import Block, FunctionModel, torch_model
from fastopt.landscape.paths import monotone_path, project, scaled_last_layer
from fastopt.landscape.results import (LineResult, MonotonePathResult, PlaneResult,
                                       ProjectionResult, Result, ScaledResult, load)
from fastopt.landscape.surfaces import interpolate, line, plane

__all__ = ["interpolate", "project", "directions", "line", "plane", "scaled_last_layer",
           "monotone_path", "Directions", "Evaluator", "Block", "FunctionModel", "torch_model",
           "Result", "LineResult", "PlaneResult", "ProjectionResult", "ScaledResult",
           "MonotonePathResult", "load"]
