"""Arrays known by their addresses: the tables of pointers of the list steps.

A list step (``fastopt.backends.<backend>.lists``) reads its tensors from a table of addresses, one
int64 per tensor, built once when the list is bound. :func:`pointers` turns a tuple of addresses
into typed pointers inside numba code (``p[i]`` loads and ``p[i] = x`` stores, as on an array); a
kernel run as Python (numba-cuda's simulator) binds :func:`pointers_in_python` in its place, which
makes numpy arrays over the same memory.
"""

import ctypes

import numpy as np
from numba import types as nbtypes
from numba.extending import intrinsic


@intrinsic
def pointers(typingctx, addresses, like, n):
    """The tuple of integer ``addresses`` as pointers to elements of the dtype of the array
    ``like``; ``n`` (the elements behind each, for :func:`pointers_in_python`) is not read. For
    numba code only."""
    if not isinstance(addresses, nbtypes.UniTuple) or not isinstance(addresses.dtype,
                                                                       nbtypes.Integer):
        return None
    pointer = nbtypes.CPointer(like.dtype)
    result = nbtypes.UniTuple(pointer, len(addresses))

    def codegen(context, builder, signature, args):
        lltype = context.get_value_type(pointer)
        out = context.get_constant_undef(result)
        for k in range(len(addresses)):
            address = builder.extract_value(args[0], k)
            out = builder.insert_value(out, builder.inttoptr(address, lltype), k)
        return out

    return result(addresses, like, n), codegen


def pointers_in_python(addresses, like, n):
    """:func:`pointers` in Python: numpy arrays of ``n`` elements of ``like``'s dtype at the
    addresses (0, an unused table's entry, gives an empty array)."""
    dtype = np.dtype(like.dtype)
    return tuple(np.frombuffer((ctypes.c_char * (int(n) * dtype.itemsize)).from_address(int(a)),
                               dtype) if a else np.empty(0, dtype) for a in addresses)
