"""The ``cpu`` backend: numba ``njit(parallel=True)`` kernels, cached on disk, one kernel family
per module."""
