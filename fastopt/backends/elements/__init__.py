"""The math shared by the numba backends (``cpu`` and ``cuda``): element updates written once for
both targets, the 16-bit formats' bit operations, and the host-side kernel arguments."""
