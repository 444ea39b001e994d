"""fastopt: optimizer steps as compiled kernels (numba CPU, C, numba CUDA) behind one API.

Host arrays run on the ``cpu`` backend (numba), else ``c`` (cffi), else ``numpy`` (the reference);
CUDA arrays run on ``cuda``. See :func:`available_backends` and :func:`backend_status`.
"""

import sys

from fastopt._core import lowp
from fastopt._core.dispatch import BackendUnavailableError, available_backends, backend_status
from fastopt._core.threads import get_num_threads, set_num_threads
from fastopt.dynamics import curvature, noise, wide, zoo
from fastopt.nn import datasets, init
from fastopt.nn.mlp import MLP
from fastopt.nn.train import History, train
from fastopt.optim import capturable, functional, mixed, reference, schedules
from fastopt.optim.arena import FlatParams
from fastopt.optim.checkpoint import (Checkpoint, from_torch_state_dict, load, save,
                                      to_torch_state_dict)
from fastopt.optim.optimizers import CLASSES as _CLASSES, Optimizer, StepInfo

__version__ = "0.1.0"

__all__ = ["datasets", "functional", "init", "lowp", "mixed", "schedules",
           "zoo", "curvature", "noise", "wide",
           "available_backends", "backend_status", "BackendUnavailableError",
           "FlatParams", "Optimizer", "StepInfo",
           *(c.__name__ for c in _CLASSES.values()),
           "save", "load", "Checkpoint", "to_torch_state_dict", "from_torch_state_dict",
           "set_num_threads", "get_num_threads", "MLP", "train", "History"]

# The optimizer classes, one per algorithm of the table: fastopt.SGD, fastopt.Adam, ...
globals().update((c.__name__, c) for c in _CLASSES.values())

# The public modules under their short names (``import fastopt.functional``,
# ``from fastopt.mixed import sgd``): each is one module object under both names.
for _module in (capturable, datasets, functional, init, lowp, mixed, reference, schedules,
                curvature, noise, wide, zoo):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module
