"""Communicators: the collectives a sharded step needs, behind one interface.

A step uses three collectives on flat host buffers, each without copies:

- :meth:`Communicator.reduce_scatter`: the sum over ranks of a buffer of ``size * n`` elements,
  rank ``r`` receiving elements ``r*n:(r+1)*n`` of it;
- :meth:`Communicator.all_gather`: in place, every rank's block ``r*n:(r+1)*n`` of a buffer
  copied into the others' buffers;
- :meth:`Communicator.all_reduce`: the sum or maximum over ranks of a few float64 scalars.

Setting up and checkpointing also move small Python objects (:meth:`broadcast_object`,
:meth:`gather_object`). :class:`MPICommunicator` implements them on mpi4py's buffer interface (the
arrays are handed to MPI as they are); :class:`TorchCommunicator` on a ``torch.distributed``
process group (the numpy buffers viewed as tensors, no copies); :class:`SingleProcess` is the world
of one rank. Another engine plugs in by implementing the same five methods.
"""

import numpy as np

#: Operations of :meth:`Communicator.all_reduce`.
REDUCE_OPS = ("sum", "max")


class Communicator:
    """The collectives of a sharded step; every rank calls each in the same order.

    ``rank`` is this process's index, ``size`` the number of ranks."""

    rank = 0
    size = 1

    def reduce_scatter(self, send, recv):
        """``recv[:] = sum over ranks of send[rank*n:(rank+1)*n]``, ``n = recv.size``;
        ``send`` holds ``size * n`` elements (float32 or float64) and is left unchanged."""
        raise NotImplementedError

    def all_gather(self, buffer):
        """In place: block ``r*n:(r+1)*n`` of ``buffer`` (``size * n`` elements) is set on every
        rank to rank ``r``'s; the bits are copied whatever the dtype."""
        raise NotImplementedError

    def all_reduce(self, values, op="sum"):
        """In place: ``values`` (a small float64 array) becomes its sum (``"sum"``) or elementwise
        maximum (``"max"``) over ranks."""
        raise NotImplementedError

    def broadcast_object(self, obj, root=0):
        """``root``'s ``obj`` on every rank (a small picklable object)."""
        raise NotImplementedError

    def gather_object(self, obj, root=0):
        """The list of every rank's ``obj`` (rank order) on ``root``, ``None`` on the others."""
        raise NotImplementedError

    def barrier(self):
        """Returns once every rank has called it."""
        self.all_reduce(np.zeros(1))


class SingleProcess(Communicator):
    """The world of one rank: every collective is the identity (nothing is copied)."""

    def reduce_scatter(self, send, recv):
        _check_blocks(send, recv, 1)
        if recv.size and not np.shares_memory(send, recv):
            recv[...] = send
        elif recv.size:
            raise ValueError("recv: must not overlap send")

    def all_gather(self, buffer):
        pass

    def all_reduce(self, values, op="sum"):
        _check_op(op)

    def broadcast_object(self, obj, root=0):
        return obj

    def gather_object(self, obj, root=0):
        return [obj]

    def __repr__(self):
        return "SingleProcess()"


class MPICommunicator(Communicator):
    """The collectives on an mpi4py communicator (``MPI.COMM_WORLD`` by default), through its
    buffer interface: numpy arrays are passed to MPI without copies (``Reduce_scatter_block``,
    ``Allgather`` with ``MPI.IN_PLACE``, ``Allreduce`` with ``MPI.IN_PLACE``).

    Needs mpi4py (``pip install fastopt[mpi]``, which brings MPICH too); run the program under
    ``mpiexec -n W python -m mpi4py program.py``, so that a rank raising aborts every rank instead
    of leaving them waiting in a collective."""

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError("fastopt.distributed.MPICommunicator needs mpi4py: "
                              "pip install 'fastopt[mpi]'") from exc
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX}

    def reduce_scatter(self, send, recv):
        _check_blocks(send, recv, self.size)
        if np.dtype(send.dtype) not in _SUMMED or send.dtype != recv.dtype:
            raise TypeError(f"send, recv: expected float32 or float64 arrays of one dtype, got "
                            f"{send.dtype} and {recv.dtype}")
        self.comm.Reduce_scatter_block(send, recv, op=self._MPI.SUM)

    def all_gather(self, buffer):
        if buffer.ndim != 1 or not buffer.flags.c_contiguous or buffer.size % self.size:
            raise ValueError(f"buffer: expected a contiguous 1-d array of a multiple of "
                             f"{self.size} elements, got shape {buffer.shape}")
        # Bytes: the same call for every dtype, 16-bit formats included.
        self.comm.Allgather(self._MPI.IN_PLACE, buffer.view(np.uint8))

    def all_reduce(self, values, op="sum"):
        _check_op(op)
        if values.dtype != np.float64 or not values.flags.c_contiguous:
            raise TypeError(f"values: expected a contiguous float64 array, got {values.dtype}")
        self.comm.Allreduce(self._MPI.IN_PLACE, values, op=self._ops[op])

    def broadcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def gather_object(self, obj, root=0):
        return self.comm.gather(obj, root=root)

    def barrier(self):
        self.comm.Barrier()

    def __repr__(self):
        return f"MPICommunicator(rank={self.rank}, size={self.size})"


class TorchCommunicator(Communicator):
    """The collectives on a ``torch.distributed`` process group (the default group unless one is
    given), initialized by the caller (``torch.distributed.init_process_group``): host buffers are
    viewed as CPU tensors (``torch.from_numpy``, no copies), so the group's backend must take CPU
    tensors (``gloo``; NCCL would need the arenas on the device)."""

    def __init__(self, group=None):
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("TorchCommunicator: call torch.distributed.init_process_group "
                               "first")
        self._torch, self._dist, self.group = torch, dist, group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self._ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
        # The newer names first (the older are deprecated), the older where they are missing.
        self._reduce_scatter = getattr(dist, "reduce_scatter_single", None) or \
            dist.reduce_scatter_tensor
        self._all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

    def reduce_scatter(self, send, recv):
        _check_blocks(send, recv, self.size)
        if np.dtype(send.dtype) not in _SUMMED or send.dtype != recv.dtype:
            raise TypeError(f"send, recv: expected float32 or float64 arrays of one dtype, got "
                            f"{send.dtype} and {recv.dtype}")
        self._reduce_scatter(self._torch.from_numpy(recv), self._torch.from_numpy(send),
                             group=self.group)

    def all_gather(self, buffer):
        if buffer.ndim != 1 or not buffer.flags.c_contiguous or buffer.size % self.size:
            raise ValueError(f"buffer: expected a contiguous 1-d array of a multiple of "
                             f"{self.size} elements, got shape {buffer.shape}")
        whole = self._torch.from_numpy(buffer.view(np.uint8))
        n = whole.numel() // self.size
        self._all_gather(whole, whole[self.rank * n:(self.rank + 1) * n], group=self.group)

    def all_reduce(self, values, op="sum"):
        _check_op(op)
        if values.dtype != np.float64 or not values.flags.c_contiguous:
            raise TypeError(f"values: expected a contiguous float64 array, got {values.dtype}")
        self._dist.all_reduce(self._torch.from_numpy(values), op=self._ops[op], group=self.group)

    def broadcast_object(self, obj, root=0):
        box = [obj]
        self._dist.broadcast_object_list(box, src=root, group=self.group)
        return box[0]

    def gather_object(self, obj, root=0):
        out = [None] * self.size if self.rank == root else None
        self._dist.gather_object(obj, out, dst=root, group=self.group)
        return out

    def barrier(self):
        self._dist.barrier(group=self.group)

    def __repr__(self):
        return f"TorchCommunicator(rank={self.rank}, size={self.size})"


_SUMMED = (np.dtype(np.float32), np.dtype(np.float64))


def _check_op(op):
    if op not in REDUCE_OPS:
        raise ValueError(f"op: expected one of {REDUCE_OPS}, got {op!r}")


def _check_blocks(send, recv, size):
    for name, a in (("send", send), ("recv", recv)):
        if not isinstance(a, np.ndarray) or a.ndim != 1 or not a.flags.c_contiguous:
            raise ValueError(f"{name}: expected a contiguous 1-d numpy array")
    if send.size != size * recv.size:
        raise ValueError(f"send: expected {size} x {recv.size} elements, got {send.size}")
