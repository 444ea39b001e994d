"""fastopt: optimizer steps as compiled kernels (numba CPU, C, numba CUDA) behind one API.

Host arrays run on the ``cpu`` backend (numba), else ``c`` (cffi), else ``numpy`` (the reference);
CUDA arrays run on ``cuda``. See :func:`available_backends` and :func:`backend_status`.
"""

from . import datasets, functional, init, lowp, mixed, schedules
from ._dispatch import BackendUnavailableError, available_backends, backend_status
from .arena import FlatParams
from .checkpoint import Checkpoint, from_torch_state_dict, load, save, to_torch_state_dict
from .mlp import MLP
from .threads import get_num_threads, set_num_threads
from .optimizers import (LAMB, SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, NAdam, Optimizer,
                         RAdam, RMSprop, StepInfo)
from .train import History, train

__version__ = "0.1.0"

__all__ = ["datasets", "functional", "init", "lowp", "mixed", "schedules",
           "available_backends", "backend_status", "BackendUnavailableError",
           "FlatParams", "Optimizer", "StepInfo",
           "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Adadelta",
           "Lion", "LAMB",
           "save", "load", "Checkpoint", "to_torch_state_dict", "from_torch_state_dict",
           "set_num_threads", "get_num_threads", "MLP", "train", "History"]
