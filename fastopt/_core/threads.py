"""Threads of the host backends: one setting for numba (``cpu``) and OpenMP (``c``).

Steps of at least 32768 elements run on several threads; smaller ones on the calling thread. At
start-up each runtime takes its own environment variable: numba's pool has ``NUMBA_NUM_THREADS``
threads (default: the CPU count) and OpenMP uses ``OMP_NUM_THREADS`` (default: the CPU count), both
read once, before the first parallel step. :func:`set_num_threads` then sets both at once.

Every step is elementwise and split statically, so its results are bit-identical for any number of
threads (``tests/test_threads.py``).

Both runtimes keep the setting per calling thread (numba's ``set_num_threads`` and OpenMP's
``omp_set_num_threads`` are thread-local): set it in the thread that runs the steps.
"""

import numbers
import os

from fastopt._core.dispatch import BackendUnavailableError, kernels


def _numba():
    """numba, if the ``cpu`` backend can run here, else ``None``."""
    try:
        kernels("cpu")
    except BackendUnavailableError:
        return None
    import numba

    return numba


def _c_optim():
    """The ``c`` backend's module, if it was built, else ``None``."""
    try:
        return kernels("c")
    except BackendUnavailableError:
        return None


def max_num_threads():
    """The most threads :func:`set_num_threads` accepts: the size of numba's pool
    (``NUMBA_NUM_THREADS``), or the CPU count without numba."""
    numba = _numba()
    if numba is not None:
        return numba.config.NUMBA_NUM_THREADS
    return os.cpu_count() or 1


def set_num_threads(n):
    """Runs later large steps of the ``cpu`` and ``c`` backends on ``n`` threads.

    ``n`` is an int from 1 to :func:`max_num_threads` (numba cannot grow its pool after start-up:
    set ``NUMBA_NUM_THREADS`` before starting Python for more). Applies to steps started from the
    calling thread. Raises ``ValueError`` (and changes nothing) for any other value.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    n = int(n)
    limit = max_num_threads()
    if not 1 <= n <= limit:
        raise ValueError(f"n: expected 1 <= n <= {limit} (numba's pool, NUMBA_NUM_THREADS), "
                         f"got {n}")
    numba = _numba()
    if numba is not None:
        numba.set_num_threads(n)
    c = _c_optim()
    if c is not None:
        c.set_num_threads(n)


def get_num_threads(backend=None):
    """The number of threads a large step of ``backend`` uses from the calling thread.

    ``backend`` is ``"cpu"`` (numba), ``"c"`` (OpenMP) or ``"numpy"`` (always 1); by default the
    first usable of ``cpu`` and ``c``.
    """
    if backend is None:
        backend = "cpu" if _numba() is not None else "c" if _c_optim() is not None else "numpy"
    if backend == "numpy":
        return 1
    if backend == "cpu":
        numba = _numba()
        if numba is None:
            raise BackendUnavailableError("backend 'cpu' is not available")
        return numba.get_num_threads()
    if backend == "c":
        c = _c_optim()
        if c is None:
            raise BackendUnavailableError("backend 'c' is not available")
        return c.max_threads()
    raise ValueError(f"backend: expected 'cpu', 'c' or 'numpy', got {backend!r}")
