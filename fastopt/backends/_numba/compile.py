"""Compiling one kernel source as a serial and a ``parallel=True`` numba function.

numba's on-disk cache keys a function by its qualified name and signature, not by its
``parallel`` flag: two dispatchers over the same function share one cache entry, and whichever
compiled first would be loaded for both (a parallel step silently running on one thread). The
parallel version is therefore compiled from a copy of the function with a name of its own.
"""

import types

import numba

# error_model="numpy": IEEE division (x/0 = inf, as in the reference) instead of a zero check per
# division, which would keep the loops from vectorizing.
OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


def serial_and_parallel(body, **options):
    """``(serial, parallel)`` numba dispatchers of ``body``, cached on disk under distinct names."""
    options = {**OPTIONS, **options}
    twin = types.FunctionType(body.__code__, body.__globals__, body.__name__ + "_parallel",
                              body.__defaults__, body.__closure__)
    twin.__qualname__ = body.__qualname__ + "_parallel"
    twin.__doc__ = body.__doc__
    return numba.njit(**options)(body), numba.njit(parallel=True, **options)(twin)
