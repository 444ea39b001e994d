"""Compiling one kernel source as a serial and a ``parallel=True`` numba function.

numba's on-disk cache keys a function by its qualified name and signature, not by its
``parallel`` flag: two dispatchers over the same function share one cache entry, and whichever
compiled first would be loaded for both (a parallel step silently running on one thread). The
parallel version is therefore compiled from a copy of the function with a name of its own.

The parallel versions run only where numba has a threading layer that several Python threads may
launch at once (TBB or OpenMP); with only its ``workqueue`` fallback, which aborts the process on
a concurrent launch, every kernel runs serially (:func:`parallel_threshold`).
"""

import importlib
import sys
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


def _threadsafe_layer():
    """Whether numba's parallel kernels will run on a threading layer that several Python
    threads may launch at once (TBB or OpenMP). Its fallback, ``workqueue``, aborts the process
    on a concurrent launch ("Concurrent access has been detected")."""
    layer = numba.config.THREADING_LAYER
    if layer == "workqueue":
        return False
    for pool in ("tbbpool", "omppool"):
        try:
            importlib.import_module(f"numba.np.ufunc.{pool}")
            return True
        except ImportError:
            continue
    return False


#: Where numba has only the ``workqueue`` threading layer, every kernel runs serially: a
#: threshold of this size is never reached.
NEVER = sys.maxsize


def parallel_threshold(threshold):
    """``threshold`` where parallel kernels are safe to launch from any thread, else
    :data:`NEVER`."""
    return threshold if _THREADSAFE else NEVER


_THREADSAFE = _threadsafe_layer()
