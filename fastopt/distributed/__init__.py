"""Optimizer state sharded over ranks (ZeRO stage 1): communicators, the sharded optimizer and
its checkpoints, which reload at any number of ranks.

::

    from fastopt.distributed import MPICommunicator, ZeroOptimizer

    opt = ZeroOptimizer(fastopt.AdamW, arena, comm=MPICommunicator(), lr=1e-3)
    model_views = opt.params.views          # the model's tensors
    ...                                     # write this rank's gradients into opt.grads
    opt.step(max_norm=1.0)                  # reduce-scatter, clip, update the block, all-gather

Run under ``mpiexec -n W python -m mpi4py train.py`` (``pip install fastopt[mpi]``).
"""

from fastopt.distributed.checkpoint import load, save
from fastopt.distributed.comm import (Communicator, MPICommunicator, SingleProcess,
                                      TorchCommunicator)
from fastopt.distributed.zero import ZeroOptimizer, block_size

__all__ = ["Communicator", "MPICommunicator", "SingleProcess", "TorchCommunicator",
           "ZeroOptimizer", "block_size", "save", "load"]
