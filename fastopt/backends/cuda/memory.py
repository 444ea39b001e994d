"""Device allocation for the ``cuda`` backend: filled state arrays without a host round trip."""

import numpy as np
from numba import cuda

from fastopt.backends.cuda.exact import exact_jit
from fastopt.backends.cuda.optim import launch

_empty = {}


@exact_jit
def _fill(out, value):
    """out[i] = value"""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < out.size:
        out[i] = value
        i += stride


def empty(dtype):
    dtype = np.dtype(dtype)
    if dtype not in _empty:
        _empty[dtype] = cuda.device_array(0, dtype)
    return _empty[dtype]


def full(shape, dtype, value, stream=0):
    """A new device array of ``shape`` and ``dtype`` filled with ``value`` by a kernel on
    ``stream``."""
    out = cuda.device_array(shape, np.dtype(dtype), stream=stream)
    if out.size:
        flat = out.reshape(out.size)
        launch(_fill, out.size, flat, flat.dtype.type(value), stream=stream)
    return out
