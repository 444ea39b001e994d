"""Host-side argument preparation shared by the numba backends (``cpu``, ``cuda``, mixed
precision)."""


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
