"""Communicators: the collectives a sharded step needs, behind one interface.

A step uses three collectives on flat host buffers, each without copies:

- :meth:`Communicator.reduce_scatter`: the sum over ranks of a buffer of ``size * n`` elements,
  rank ``r`` receiving elements ``r*n:(r+1)*n`` of it;
- :meth:`Communicator.all_gather`: in place, every rank's block ``r*n:(r+1)*n`` of a buffer
  copied into the others' buffers;
- :meth:`Communicator.all_reduce`: the sum or maximum over ranks of a few float64 scalars.

Setting up and checkpointing also move small Python objects (:meth:`broadcast_object`,
:meth:`gather_object`). :class:`MPICommunicator` implements them on mpi4py's buffer interface (the
arrays are handed to MPI as they are); :class:`SingleProcess` is the world of one rank. Another
engine (a ``torch.distributed`` process group, NCCL on device buffers) plugs in by implementing the
same five methods: ``reduce_scatter_tensor``, ``all_gather_into_tensor``, ``all_reduce``,
``broadcast_object_list`` and ``gather_object``.
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
