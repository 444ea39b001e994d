"""Which backend runs a step: availability, preference order, and the choice that follows the data.

Arrays exposing ``__cuda_array_interface__`` (or numba device arrays, including the simulator's)
go to ``cuda``; host arrays go to the first usable of ``cpu``, ``c``, ``numpy``, and so does an MLP
(:class:`fastopt.MLP`) built without a backend. A ``backend=`` argument, else the
``FASTOPT_BACKEND`` environment variable, overrides the choice. Backends are probed lazily, once:
a host step never imports numba.cuda. When the C extension failed to build, setup.py kept the
compiler's reason (:data:`C_BUILD_FAILURE`) and :func:`backend_status` shows it.
"""

import importlib
import importlib.util
import os

BACKENDS = ("cuda", "cpu", "c", "numpy")
HOST_BACKENDS = ("cpu", "c", "numpy")

_KERNEL_MODULES = {
    "numpy": "fastopt.backends.numpy.{family}",
    "cpu": "fastopt.backends.cpu.{family}",
    "c": "fastopt.backends.c.{family}",
    "cuda": "fastopt.backends.cuda.{family}",
}

#: Where setup.py records why the C extension failed to build (the compiler's words), next to
#: where the extension would be.
C_BUILD_FAILURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "backends", "c", "BUILD_FAILED.txt")

_status = {}  # backend -> None if usable, else the reason it is not
_modules = {}  # (backend, family) -> module


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that cannot run here; the message says why."""


def _numba_cuda_installed():
    return importlib.util.find_spec("numba_cuda") is not None


def _c_build_failure():
    """Why setup.py recorded the C extension failed to build (the record's first line), or
    ``None``."""
    try:
        with open(C_BUILD_FAILURE, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
    except OSError:
        return None
    return first or "no reason recorded"


#: Why ``cuda`` is unavailable when the numba-cuda package is missing.
NO_NUMBA_CUDA = "numba-cuda is not installed (pip install fastopt[cuda])"


def _cuda_reason():
    """Why ``cuda`` cannot run here, or ``None``."""
    try:
        from numba import cuda
    except ImportError:
        return NO_NUMBA_CUDA
    if cuda.is_available():
        return None
    if not _numba_cuda_installed():  # numba's own deprecated CUDA target answered
        return NO_NUMBA_CUDA
    return "numba-cuda found no usable CUDA device or driver"


def _probe(name):
    if name in _status:
        return _status[name]
    reason = None
    try:
        if name == "cuda":
            reason = _cuda_reason()
        else:
            kernels(name, "optim", _probing=True)
    except ImportError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        failure = _c_build_failure() if name == "c" else None
        if failure is not None:
            reason = (f"the C extension failed to build at install time: {failure} "
                      f"(details in {C_BUILD_FAILURE})")
        elif name == "c" and "_fastopt_c" in str(exc):
            reason += ("; the C extension is not built: install again with a C compiler "
                       "(pip install -e .), or run python fastopt/backends/c/build.py")
    except Exception as exc:  # a driver error raised while probing, a stale extension
        reason = f"{type(exc).__name__}: {exc}"
    _status[name] = reason
    return reason


def backend_status():
    """For every backend, ``"available"`` or the reason it cannot be used here."""
    return {name: _probe(name) or "available" for name in BACKENDS}


def available_backends():
    """The usable backends, in preference order (``cuda`` first, ``numpy`` always last)."""
    return [name for name in BACKENDS if _probe(name) is None]


def kernels(backend, family="optim", _probing=False):
    """The kernel module of ``family`` for ``backend``; raises if the backend is unusable."""
    key = (backend, family)
    module = _modules.get(key)
    if module is not None:
        return module
    if backend not in _KERNEL_MODULES:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if not _probing:
        reason = _probe(backend)
        if reason is not None:
            raise BackendUnavailableError(f"backend {backend!r} is not available: {reason}")
    module = importlib.import_module(_KERNEL_MODULES[backend].format(family=family))
    _modules[key] = module
    return module


def _environment_reader(name):
    """A function returning ``os.environ.get(name)``. CPython's ``os.environ`` keeps the
    environment in a dict of encoded strings (``_data``), which every change through
    ``os.environ`` updates; reading that dict costs 0.1 us against 1 to 1.5 us for
    ``os.environ.get``, and every step reads the variable."""
    data = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    decode = getattr(os.environ, "decodevalue", None)
    if type(data) is not dict or encode is None or decode is None:
        return lambda: os.environ.get(name)
    key = encode(name)

    def read():
        value = data.get(key)
        return None if value is None else decode(value)

    return read


#: The backend named by the ``FASTOPT_BACKEND`` environment variable, or ``None``.
requested_by_environment = _environment_reader("FASTOPT_BACKEND")


def is_device_array(x):
    """True for CUDA device arrays: ``__cuda_array_interface__`` objects and numba device arrays."""
    return hasattr(x, "__cuda_array_interface__") or getattr(x, "__cuda_ndarray__", False)


def choose(named_arrays, backend=None):
    """The backend for one step over ``named_arrays`` (``{argument name: array}``, ``None``
    skipped).

    Raises ``ValueError`` when host and device arrays are mixed or the requested backend cannot take
    the arrays' kind, and :class:`BackendUnavailableError` when it cannot run here.
    """
    on_device = None
    first = None
    for name, array in named_arrays.items():
        if array is None:
            continue
        device = bool(is_device_array(array))
        if on_device is None:
            on_device, first = device, name
        elif device != on_device:
            where = {True: "a CUDA device array", False: "a host array"}
            raise ValueError(f"{name}: is {where[device]} but {first} is {where[on_device]}; "
                             "all arrays of a step must live on the same device")
    requested = backend or requested_by_environment() or None
    if requested is None:
        if on_device:
            return "cuda"
        for name in HOST_BACKENDS:
            if _probe(name) is None:
                return name
    if requested not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {requested!r}")
    if on_device and requested != "cuda":
        raise ValueError(f"backend {requested!r} runs on the host but {first} is a CUDA device "
                         "array; use backend='cuda' or host arrays")
    if on_device is False and requested == "cuda":
        raise ValueError(f"backend 'cuda' needs device arrays but {first} is a host array; "
                         "move the arrays to the GPU (e.g. numba.cuda.to_device) first")
    reason = _probe(requested)
    if reason is not None:
        raise BackendUnavailableError(f"backend {requested!r} is not available: {reason}")
    return requested
