"""The ``c`` backend's list steps: ``fastopt_<kernel>_list_f32/_f64`` of ``csrc/optim_list.h``.

:func:`bind` takes the tensors of a parameter group (separate arrays of one dtype) and returns a
:class:`ListStep`, whose ``run(<kernel scalars>, grad_scale)`` steps them all in one C call, as
``fastopt.backends.c.optim.<kernel>`` would step each of them, bit for bit and whatever the thread
count. The tables the C function reads are made once: the arrays' addresses (``NULL`` for a state
the mode does not use), their lengths and the work items
(:func:`fastopt.backends.elements.args.work_items`, chunks of ``FASTOPT_REDUCTION_CHUNK``).
:meth:`ListStep.sums_of_squares` gives each tensor's
:func:`~fastopt.backends.c.optim.sum_of_squares` bit for bit, and
:meth:`ListStep.max_magnitude_bits` the largest of their
:func:`~fastopt.backends.c.optim.max_magnitude_bits`. A :class:`ListStep` holds the arrays, so
the memory stays valid while it lives. The C call releases the GIL.
"""

import functools

import numpy as np

from fastopt._core import config
from fastopt.backends.c._fastopt_c import ffi, lib
from fastopt.backends.elements.args import addresses, flat, work_items

#: A work item is a chunk of this many elements of one tensor (the reduction's chunk).
CHUNK = config.REDUCTION_CHUNK

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_SUFFIX = {_F32: "f32", _F64: "f64"}
_POINTERS = {_F32: "float **", _F64: "double **"}
_INT64 = "int64_t[]"


class ListStep:
    """The step of ``algorithm`` over a list of tensors (see the module docstring)."""

    def __init__(self, algorithm, params, grads, states, uses):
        params = [flat(p) for p in params]
        self.dtype = params[0].dtype
        suffix, pointer = _SUFFIX[self.dtype], _POINTERS[self.dtype]
        lengths = np.array([p.size for p in params], np.int64)
        tensor, start = work_items(lengths, CHUNK)
        tables = [addresses(params), addresses(grads),
                  *[addresses(s) if used else None for s, used in zip(states, uses)]]
        # What the C function reads, held here with the arrays the tables point into.
        self._kept = (params, grads, states, lengths, tensor, start, tables)
        head = (int(lengths.sum()), tensor.size, ffi.from_buffer(_INT64, tensor),
                ffi.from_buffer(_INT64, start), ffi.from_buffer(_INT64, lengths))
        cast = [ffi.NULL if t is None else ffi.cast(pointer, ffi.from_buffer(t)) for t in tables]
        self.run = functools.partial(getattr(lib, f"fastopt_{algorithm.kernel}_list_{suffix}"),
                                     *head, *cast)
        self._partial = np.empty(tensor.size, np.float64)
        self._sums = np.empty(len(params), np.float64)
        self._sums_of_squares = functools.partial(
            getattr(lib, f"fastopt_sum_of_squares_list_{suffix}"), *head, len(params), cast[1],
            ffi.from_buffer("double[]", self._partial), ffi.from_buffer("double[]", self._sums))
        self.max_magnitude_bits = functools.partial(
            getattr(lib, f"fastopt_max_magnitude_bits_list_{suffix}"), *head, cast[1])

    def sums_of_squares(self):
        """Each gradient's sum of squares, a list in tensor order."""
        self._sums_of_squares()
        return self._sums.tolist()


def bind(algorithm, params, grads, states, uses):
    """A :class:`ListStep` of ``algorithm`` (elementwise) over ``params`` and ``grads`` (lists of
    C-contiguous host arrays of one float dtype, checked), ``states`` one list of arrays per
    ``algorithm.state`` (anything where ``uses`` is false)."""
    return ListStep(algorithm, params, grads, states, uses)
