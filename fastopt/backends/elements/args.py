"""Host-side argument preparation shared by the backends (``cpu``, ``cuda``, mixed precision;
the work items of the list steps also ``c``)."""

import numpy as np


def flat(a):
    """``a`` as a 1-D array: itself, or a view of a C-contiguous array (on the device, numba
    raises rather than copy)."""
    return a if a.ndim == 1 else a.reshape(a.size)


#: The integer view of each gradient dtype whose maximum, with the sign bit masked off, is the
#: bits of the largest magnitude (uint16: bfloat16 bits), and that mask.
MAGNITUDE_BITS = {"float32": ("int32", 0x7FFFFFFF),
                  "float64": ("int64", 0x7FFFFFFFFFFFFFFF),
                  "float16": ("uint16", 0x7FFF),
                  "uint16": ("uint16", 0x7FFF)}


def work_items(lengths, chunk):
    """``(item_tensor, item_start)``, int64 arrays: the work items of a list step over tensors of
    ``lengths`` elements (see ``csrc/optim_list.h``), each the elements ``[item_start[w],
    min(item_start[w] + chunk, lengths[t]))`` of tensor ``t = item_tensor[w]``, in tensor order."""
    lengths = np.asarray(lengths, np.int64)
    per_tensor = (lengths + chunk - 1) // chunk
    tensor = np.repeat(np.arange(lengths.size, dtype=np.int64), per_tensor)
    first = np.cumsum(per_tensor) - per_tensor  # each tensor's first item
    start = (np.arange(tensor.size, dtype=np.int64) - np.repeat(first, per_tensor)) * chunk
    return tensor, start


def addresses(arrays):
    """The data addresses of host arrays (numpy), as an int64 array: a list step's table."""
    return np.array([a.__array_interface__["data"][0] for a in arrays], np.int64)
