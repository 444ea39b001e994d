"""fastopt: optimizer steps as compiled kernels (numba CPU, C, numba CUDA) behind one API.

Host arrays run on the ``cpu`` backend (numba), else ``c`` (cffi), else ``numpy`` (the reference);
CUDA arrays run on ``cuda``. See :func:`available_backends` and :func:`backend_status`.
"""

import importlib
import importlib.metadata
import sys

from fastopt._core import lowp
from fastopt._core.dispatch import BackendUnavailableError, available_backends, backend_status
from fastopt._core.threads import get_num_threads, set_num_threads
from fastopt.backends.c.library import get_include, get_library
from fastopt.nn import datasets, init
from fastopt.nn.mlp import MLP
from fastopt.nn.train import History, train
from fastopt.optim import capturable, functional, mixed, reference, schedules
from fastopt.optim.arena import FlatParams
from fastopt.optim.checkpoint import (Checkpoint, from_torch_state_dict, load, save,
                                      to_torch_state_dict)
from fastopt.optim.optimizers import CLASSES as _CLASSES, Optimizer, StepInfo

try:  # one version number: pyproject.toml's, from the installed package's metadata
    __version__ = importlib.metadata.version("fastopt")
except importlib.metadata.PackageNotFoundError:  # the source tree on sys.path, not installed
    __version__ = "0+unknown"

__all__ = ["datasets", "functional", "init", "lowp", "mixed", "schedules",
           "zoo", "curvature", "noise", "wide",
           "available_backends", "backend_status", "BackendUnavailableError",
           "FlatParams", "Optimizer", "StepInfo",
           *(c.__name__ for c in _CLASSES.values()),
           "save", "load", "Checkpoint", "to_torch_state_dict", "from_torch_state_dict",
           "set_num_threads", "get_num_threads", "MLP", "train", "History",
           "get_include", "get_library"]

# The optimizer classes, one per algorithm of the table: fastopt.SGD, fastopt.Adam, ...
globals().update((c.__name__, c) for c in _CLASSES.values())

# The public modules under their short names (``import fastopt.functional``,
# ``from fastopt.mixed import sgd``): each is one module object under both names.
for _module in (capturable, datasets, functional, init, lowp, mixed, reference, schedules):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module

#: The experiments' modules, imported on first use (``fastopt.zoo``, ``from fastopt import wide``)
#: so that ``import fastopt`` does not pay for them.
_ON_FIRST_USE = {"zoo": "fastopt.dynamics.zoo", "curvature": "fastopt.dynamics.curvature",
                 "noise": "fastopt.dynamics.noise", "wide": "fastopt.dynamics.wide"}


def __getattr__(name):
    if name in _ON_FIRST_USE:
        module = importlib.import_module(_ON_FIRST_USE[name])
        sys.modules[f"{__name__}.{name}"] = globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
