"""Allocation and copies on either side: host (numpy) or device (numba-cuda)."""

import numpy as np

_empty_host = {}


def empty(on_device, dtype):
    """A cached zero-size array: the stand-in for state that a mode does not use."""
    if on_device:
        from fastopt.backends.cuda import memory as cuda_memory

        return cuda_memory.empty(dtype)
    dtype = np.dtype(dtype)
    if dtype not in _empty_host:
        _empty_host[dtype] = np.empty(0, dtype)
    return _empty_host[dtype]


def full(on_device, shape, dtype, value):
    """A new array filled with ``value``, allocated on the device when ``on_device``."""
    if on_device:
        from fastopt.backends.cuda import memory as cuda_memory

        return cuda_memory.full(shape, dtype, value)
    return np.full(shape, value, dtype)


def to_host(a):
    """A numpy copy of a host or device array."""
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return np.array(a, copy=True)


def from_host(on_device, a):
    """A copy of the numpy array ``a`` on the requested side."""
    if on_device:
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(a))
    return np.array(a, copy=True, order="C")
