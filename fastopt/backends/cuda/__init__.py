"""The ``cuda`` backend: numba-cuda kernels, one kernel family per module."""
