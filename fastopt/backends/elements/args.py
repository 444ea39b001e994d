"""Host-side argument preparation shared by the numba backends (``cpu``, ``cuda``, mixed
precision)."""


def flat(a):
    """``a`` as a 1-D array: itself, or a view of a C-contiguous array (on the device, numba
    raises rather than copy)."""
    return a if a.ndim == 1 else a.reshape(a.size)
