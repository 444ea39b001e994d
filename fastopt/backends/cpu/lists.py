"""The ``cpu`` backend's list steps: one numba kernel over a list of separate arrays.

:func:`bind` takes the tensors of a parameter group (separate arrays of one dtype) and returns a
:class:`ListStep`, whose ``run(<kernel scalars>, grad_scale)`` steps them all in one launch, as
``fastopt.backends.cpu.optim.<kernel>`` would step each of them, bit for bit. What does not change
between steps is made once: the tables of the arrays' addresses (int64, one per tensor), their
lengths and the work items (:func:`fastopt.backends.elements.args.work_items`: chunks of
:data:`CHUNK` elements of one tensor). The kernel runs the items in parallel (``prange``) when the
tensors hold :data:`PARALLEL_THRESHOLD` elements or more, each item the one-array step's loop with
the same element (:mod:`fastopt.backends.elements.optim`) and constants, so every element gets the
same bits whatever the thread count. The reduction's items are the one-array reduction's chunks, so
:meth:`ListStep.sums_of_squares` gives each tensor's
:func:`~fastopt.backends.cpu.optim.sum_of_squares` bit for bit;
:meth:`ListStep.max_magnitude_bits` is the largest of their
:func:`~fastopt.backends.cpu.optim.max_magnitude_bits`.

The kernels reach the arrays through their addresses (:mod:`fastopt.backends._numba.pointers`): a
:class:`ListStep` holds the arrays, so the memory stays valid while it lives.
"""

import functools

import numpy as np
from numba import prange

from fastopt.backends._numba.compile import serial_and_parallel
from fastopt.backends._numba.launch import KernelArgs
from fastopt.backends._numba.pointers import pointers
from fastopt.backends._numba.specialize import load, mode_name, rounded, specialized
from fastopt.backends.cpu.optim import (E, LANES, PARALLEL_THRESHOLD, REDUCTION_CHUNK, _add_squares,
                                        _inline, _total, _update_block)
from fastopt.backends.elements.args import MAGNITUDE_BITS, addresses, flat, work_items
from fastopt.optim.algorithms import ALGORITHMS

#: A work item is a chunk of this many elements of one tensor (the reduction's chunk).
CHUNK = REDUCTION_CHUNK


def _list_step(like, lengths, tensor, start, params, grads, states, floats, flags):
    """Template: the constants once, then _update over every work item: the elements
    [start[w], min(start[w] + CHUNK, lengths[t])) of tensor t = tensor[w]"""
    c = _constants(rounded(like, floats), flags)
    for w in prange(tensor.size):
        t = tensor[w]
        lo, n = start[w], lengths[t]
        p, g = pointers((params[t], grads[t]), like, n)
        s = pointers(load(states, t, USES, params[t]), like, n)
        _update(lo, min(n, lo + CHUNK), p, g, s, c)


#: Unbound names of the template above (bound in each copy by _list_kernel); never used.
_constants = _update = USES = None


@functools.cache
def _list_kernel(kernel, uses):
    """The serial and parallel list step of ``kernel`` specialized on ``uses``."""
    algorithm = ALGORITHMS[kernel]
    tag = f"{kernel}_{mode_name(uses)}"
    bound = dict(_element=getattr(E, kernel), USES=uses, _constants=_inline(algorithm.constants))
    update = _inline(specialized(_update_block, f"_list_update_{tag}", **bound))
    step = specialized(_list_step, f"_list_step_{tag}",
                       f"{kernel} (uses {uses}) over a list of tensors; formula in "
                       f"fastopt.optim.reference.{kernel}", _update=update, **bound)
    return serial_and_parallel(step)


def _list_sums(like, lengths, tensor, start, grads, partial, out):
    """out[t] = sum(g_i^2) of tensor t in float64, each item a chunk of _chunked_sum_of_squares
    (LANES running sums added pairwise), a tensor's chunk sums in order"""
    for w in prange(tensor.size):
        t = tensor[w]
        lo, n = start[w], lengths[t]
        (g,) = pointers((grads[t],), like, n)
        sums = np.zeros(LANES, np.float64)
        _add_squares(g, lo, min(n, lo + CHUNK), sums)
        partial[w] = _total(sums)
    out[:] = 0.0
    for w in range(tensor.size):
        out[tensor[w]] += partial[w]


def _list_max_bits(like, lengths, tensor, start, grads):
    """Template: max(INT(bits_i & MASK)) over every tensor, like an INT view of the gradients"""
    partial = np.zeros(max(tensor.size, 1), INT)
    for w in prange(tensor.size):
        t = tensor[w]
        lo, n = start[w], lengths[t]
        (b,) = pointers((grads[t],), like, n)
        top = INT(0)
        for i in range(np.uint64(lo), np.uint64(min(n, lo + CHUNK))):
            top = max(top, INT(b[i] & MASK))  # INT(): numba widens & of narrow ints
        partial[w] = top
    return partial.max()


#: Unbound names of the template above (bound in each copy by _max_bits_kernel); never used.
INT = MASK = None


@functools.cache
def _max_bits_kernel(int_type, mask):
    """The serial and parallel _list_max_bits for ``int_type`` (a numpy name)"""
    int_type = getattr(np, int_type)
    return serial_and_parallel(specialized(_list_max_bits, f"_list_max_bits_{int_type.__name__}",
                                           INT=int_type, MASK=int_type(mask)))


_LIST_SUMS = serial_and_parallel(_list_sums)


class ListStep:
    """The step of ``algorithm`` over a list of tensors (see the module docstring)."""

    def __init__(self, algorithm, params, grads, states, uses):
        params = [flat(p) for p in params]
        self._kept = (params, grads, states)  # the memory the tables point into
        self.dtype = params[0].dtype
        self._like = np.empty(0, self.dtype)
        lengths = np.array([p.size for p in params], np.int64)
        self._items = (lengths, *work_items(lengths, CHUNK))
        self._parallel = int(lengths.sum()) >= PARALLEL_THRESHOLD
        self._params, self._grads = addresses(params), addresses(grads)
        self._states = tuple(addresses(s) if used else self._params
                             for s, used in zip(states, uses))
        pick = 1 if self._parallel else 0
        self._kernel = _list_kernel(algorithm.kernel, tuple(uses))[pick]
        int_type, mask = MAGNITUDE_BITS[self.dtype.name]
        self._sums_kernel = _LIST_SUMS[pick]
        self._max_kernel = _max_bits_kernel(int_type, mask)[pick]
        self._int_like = np.empty(0, int_type)
        args = KernelArgs(algorithm)
        self._float_at, self._flag_at = args.float_getter, args.flag_getter
        self._partial = np.empty(self._items[1].size, np.float64)
        self._sums = np.empty(len(params), np.float64)

    def run(self, *scalars):
        """The step with the kernel scalars then ``grad_scale``, Python floats and bools."""
        self._kernel(self._like, *self._items, self._params, self._grads, self._states,
                     (1.0, *self._float_at(scalars)), self._flag_at(scalars))

    def sums_of_squares(self):
        """Each gradient's sum of squares, a list in tensor order."""
        self._sums_kernel(self._like, *self._items, self._grads, self._partial, self._sums)
        return self._sums.tolist()

    def max_magnitude_bits(self):
        """The bits of the largest gradient magnitude (as ``optim.max_magnitude_bits``)."""
        return int(self._max_kernel(self._int_like, *self._items, self._grads))


def bind(algorithm, params, grads, states, uses):
    """A :class:`ListStep` of ``algorithm`` (elementwise) over ``params`` and ``grads`` (lists of
    C-contiguous host arrays of one float dtype, checked), ``states`` one list of arrays per
    ``algorithm.state`` (anything where ``uses`` is false)."""
    return ListStep(algorithm, params, grads, states, uses)
