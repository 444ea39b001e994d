"""The ``cuda`` backend's list steps: one numba-cuda kernel over a list of separate device arrays.

:func:`bind` takes the tensors of a parameter group (device arrays of one dtype) and returns a
:class:`ListStep`, whose ``run(<kernel scalars>, grad_scale)`` steps them all in one launch, as
``fastopt.backends.cuda.optim.<kernel>`` would step each of them, bit for bit: the same element
device function (:func:`fastopt.backends.cuda.optim.element_update`) and constants, compiled
without contraction. The tables are made once, on the device: the arrays' addresses (int64, one per
tensor), their lengths and the work items (:func:`fastopt.backends.elements.args.work_items`,
chunks of :data:`CHUNK` elements of one tensor). Each block takes work items in a grid-stride loop,
its threads the elements of the item. Under the simulator the kernel runs as Python, with
:func:`fastopt.backends._numba.pointers.pointers_in_python` bound in place of the intrinsic.

A :class:`ListStep` holds the arrays, so the memory stays valid while it lives; it runs on the
stream of the first parameter unless given another.
"""

import functools

import numpy as np
from numba import cuda

from fastopt._core import config
from fastopt.backends._numba.launch import KernelArgs
from fastopt.backends._numba.pointers import pointers, pointers_in_python
from fastopt.backends._numba.specialize import load, mode_name, rounded, rounded_in_python
from fastopt.backends._numba.specialize import specialized
from fastopt.backends.cuda.exact import exact_jit
from fastopt.backends.cuda.optim import (SIMULATOR, THREADS_PER_BLOCK, _configured, _max_blocks,
                                         constants, element_update, stream_of)
from fastopt.backends.elements.args import flat, work_items

#: A work item is a chunk of this many elements of one tensor (the reduction's chunk).
CHUNK = config.REDUCTION_CHUNK

#: Under the simulator, which cannot call an intrinsic: their plain-Python versions.
_TARGET = {"rounded": rounded_in_python, "pointers": pointers_in_python} if SIMULATOR else {}


def _list_step(like, lengths, tensor, start, params, grads, states, floats, flags):
    """Template: the constants once, then _update on every element of every work item, a block
    per item in a grid-stride loop over the items, its threads striding over the item"""
    c = _constants(rounded(like, floats), flags)
    w = cuda.blockIdx.x
    while w < tensor.size:
        t = tensor[w]
        lo, n = start[w], lengths[t]
        hi = min(n, lo + CHUNK)
        p, g = pointers((params[t], grads[t]), like, n)
        s = pointers(load(states, t, USES, params[t]), like, n)
        i = lo + cuda.threadIdx.x
        while i < hi:
            _update(i, p, g, s, c)
            i += cuda.blockDim.x
        w += cuda.gridDim.x


#: Unbound names of the template above (bound in each copy by _list_kernel); never used.
_constants = _update = USES = None


@functools.cache
def _list_kernel(kernel, uses):
    """The list step of ``kernel`` specialized on ``uses``."""
    bound = dict(_constants=constants(kernel), _update=element_update(kernel, uses), USES=uses,
                 **_TARGET)
    return exact_jit(specialized(_list_step, f"_list_step_{kernel}_{mode_name(uses)}",
                                 f"{kernel} (uses {uses}) over a list of tensors; formula in "
                                 f"fastopt.optim.reference.{kernel}", **bound))


def _address(array):
    """The device address of a numba device array (the simulator's: of its host memory)."""
    if SIMULATOR:
        return array._ary.__array_interface__["data"][0]
    return array.__cuda_array_interface__["data"][0]


class ListStep:
    """The step of ``algorithm`` over a list of device tensors (see the module docstring)."""

    def __init__(self, algorithm, params, grads, states, uses, stream=None):
        params = [flat(p) for p in params]
        self.dtype = np.dtype(params[0].dtype)
        self._stream = stream_of(params[0], stream)
        lengths = np.array([p.size for p in params], np.int64)
        tensor, start = work_items(lengths, CHUNK)
        table = functools.partial(np.array, dtype=np.int64)
        host = [lengths, tensor, start, table([_address(p) for p in params]),
                table([_address(g) for g in grads])]
        host_states = [table([_address(s) for s in arrays]) if used else host[3]
                       for arrays, used in zip(states, uses)]
        on_device = [cuda.to_device(a, stream=self._stream) for a in host]
        self._kept = (params, grads, states)  # the memory the tables point into
        self._args = (cuda.device_array(0, self.dtype), *on_device,
                      tuple(cuda.to_device(a, stream=self._stream) for a in host_states))
        self._items = tensor.size
        self._kernel = _list_kernel(algorithm.kernel, tuple(uses))
        args = KernelArgs(algorithm)
        self._float_at, self._flag_at = args.float_getter, args.flag_getter

    def run(self, *scalars):
        """The step with the kernel scalars then ``grad_scale``, Python floats and bools."""
        if not self._items:
            return
        blocks = min(self._items, _max_blocks())
        floats, flags = (1.0, *map(float, self._float_at(scalars))), self._flag_at(scalars)
        if SIMULATOR:
            self._kernel[blocks, THREADS_PER_BLOCK, self._stream](*self._args, floats, flags)
        else:
            _configured(self._kernel, blocks, THREADS_PER_BLOCK, self._stream)(
                *self._args, floats, flags)


def bind(algorithm, params, grads, states, uses, stream=None):
    """A :class:`ListStep` of ``algorithm`` (elementwise) over ``params`` and ``grads`` (lists of
    C-contiguous numba device arrays of one float dtype, checked), ``states`` one list of arrays
    per ``algorithm.state`` (anything where ``uses`` is false)."""
    return ListStep(algorithm, params, grads, states, uses, stream)
