"""The ``c`` backend: the optimizer steps of ``csrc/optim.c``, run in place through cffi.

Each step has the kernel signature of :mod:`fastopt.backends` and computes the formula of the same
name in :mod:`fastopt.optim.reference`, in the arrays' precision and with the same operation order,
so it matches the numpy backend bit for bit on any number of threads. It calls the ``_f32`` or
``_f64`` C function for ``param.dtype``, with pointers to the arrays' own memory (no copies) and
``NULL`` for state the mode does not use, which is never touched and may be empty or ``None``.
Like every kernel it trusts the caller's validation (:mod:`fastopt._core.validate`).

The launchers are made from the algorithm table (:func:`_launchers`), one of each kind for every
algorithm: every C step takes ``(n, param, grad, <state arrays>, <kernel scalars in
Algorithm.kernel_args order>, grad_scale)``, ``_with_norm`` then ``norm_out``, and which state
arrays are ``NULL`` follows ``Algorithm.uses`` on the kernel scalars. Importing this module checks
each C function's argument types against the table (:func:`_c_function`). LAMB, whose step also
takes its segments and can fail to allocate, has launchers of its own.

Steps of ``FASTOPT_PARALLEL_THRESHOLD`` elements or more (:mod:`fastopt._core.config`) run on
OpenMP threads when the extension was built with OpenMP; see :func:`build_info`,
:func:`build_config`, :func:`max_threads` and :func:`set_num_threads`. The C call releases the GIL.

Importing this module raises ``ImportError`` when the extension ``fastopt.backends.c._fastopt_c``
was not built (no C compiler at install time); the dispatcher reports that as the reason ``c`` is
unavailable.
"""

import functools
from operator import itemgetter

import numpy as np

from fastopt.backends.c._fastopt_c import ffi, lib
from fastopt.optim.algorithms import ALGORITHMS, FLAG_ARGS, LAMB

#: Float hyperparameters may arrive as Python floats: cffi rounds each to the C function's float
#: or double exactly as numpy's cast does (see :mod:`fastopt.backends`, the contract).
TAKES_PYTHON_FLOATS = True

_NULL = ffi.NULL
_buffer = ffi.from_buffer  # the array's memory as a typed cdata, read-only arrays allowed

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOAT, _DOUBLE = ffi.typeof("float[]"), ffi.typeof("double[]")
_INT64 = ffi.typeof("int64_t[]")


def _by_dtype(name):
    """dtype -> (C function ``fastopt_<name>_f32`` or ``_f64``, cdata type of its arrays)"""
    return {_F32: (getattr(lib, f"fastopt_{name}_f32"), _FLOAT),
            _F64: (getattr(lib, f"fastopt_{name}_f64"), _DOUBLE)}


def _c_function(name, algorithm, segments=False, norm_out=False):
    """:func:`_by_dtype` of ``name``, after checking that each C function takes ``(n, param, grad,
    <algorithm's state arrays>, [num_segments, segment_offsets], <its kernel_args: flags as int,
    the others in the arrays' type>, grad_scale, [norm_out])``; raises ``TypeError`` if not."""
    functions = _by_dtype(name)
    for function, ctype in functions.values():
        real = ctype.item.cname
        expected = ["int64_t", *[f"{real} *"] * (2 + len(algorithm.state)),
                    *(["int64_t", "int64_t *"] if segments else []),
                    *["int" if a in FLAG_ARGS else real for a in algorithm.kernel_args], real,
                    *(["double *"] if norm_out else [])]
        checked_signature(function, algorithm, expected)
    return functions


def checked_signature(function, algorithm, expected):
    """``function`` (a cffi function), after checking that its argument types are ``expected``
    (C type names), as the table's ``algorithm`` calls it; raises ``TypeError`` if not."""
    actual = [a.cname for a in ffi.typeof(function).args]
    if actual != expected:
        raise TypeError(f"{function.__name__} takes ({', '.join(actual)}), but the table's "
                        f"{algorithm.name} (state {algorithm.state}, kernel_args "
                        f"{algorithm.kernel_args}) calls it with ({', '.join(expected)})")
    return function


# The first arguments of a C step, (n, param, grad, <state arrays>) with NULL for state arrays s
# where used[k] is false, by the number of state arrays (1 to 3 in the table): unrolled, without a
# Python call per array.
_HEADS = {
    1: lambda n, ctype, param, grad, s, used: (
        n, _buffer(ctype, param), _buffer(ctype, grad),
        _buffer(ctype, s[0]) if used[0] else _NULL),
    2: lambda n, ctype, param, grad, s, used: (
        n, _buffer(ctype, param), _buffer(ctype, grad),
        _buffer(ctype, s[0]) if used[0] else _NULL, _buffer(ctype, s[1]) if used[1] else _NULL),
    3: lambda n, ctype, param, grad, s, used: (
        n, _buffer(ctype, param), _buffer(ctype, grad),
        _buffer(ctype, s[0]) if used[0] else _NULL, _buffer(ctype, s[1]) if used[1] else _NULL,
        _buffer(ctype, s[2]) if used[2] else _NULL),
}


def _uses(algorithm):
    """``used(rest)``: ``algorithm.uses`` of the kernel scalars in ``rest``, the launcher's
    arguments after ``grad`` (the state arrays, then the scalars in kernel_args order); None when
    the step always uses every state array.

    ``uses`` reads nothing but the values of ``uses_args`` (flags and a momentum, a few distinct
    values in a run): its result is kept per tuple of them, up to 64, so that a call costs a
    lookup rather than the table's function."""
    if not algorithm.uses_args:
        return None
    uses, names = algorithm.uses, algorithm.uses_args
    values = itemgetter(*[len(algorithm.state) + algorithm.kernel_args.index(a) for a in names])
    known = {}

    def learn(key):
        used = tuple(uses(dict(zip(names, key if len(names) > 1 else (key,)))))
        if len(known) < 64:
            known[key] = used
        return used

    return lambda rest: known.get(values(rest)) or learn(values(rest))


def _launchers(algorithm):
    """``(launcher, launcher_with_norm, functions)`` of ``algorithm``, with the launcher's ``bind``.

    ``launcher(param, grad, <state arrays>, <kernel scalars>, grad_scale)`` runs the C step;
    ``launcher_with_norm`` takes ``norm_out`` after them and sets ``norm_out[0] =
    sum_of_squares(grad)`` (bit for bit) from the same pass. ``launcher.bind(param, grad, <state
    arrays>, uses=None)`` returns ``run(<kernel scalars>, grad_scale)``, the C function with the
    arrays' pointers found once (``NULL`` for state not in ``uses``, or, without ``uses``, empty).
    ``functions``: dtype -> (C function, cdata type of its arrays) of the plain step."""
    n_states = len(algorithm.state)
    title = algorithm.kernel
    plain = _c_function(title, algorithm)
    fused = _c_function(f"{title}_with_norm", algorithm, norm_out=True)
    head, used, every = _HEADS[n_states], _uses(algorithm), (True,) * n_states

    # One tuple of the C arguments, passed as it is (no list built by the call).
    def launcher(param, grad, *rest):
        if param.size:
            kernel, ctype = plain[param.dtype]
            kernel(*head(param.size, ctype, param, grad, rest, used(rest) if used else every)
                   + rest[n_states:])

    def launcher_with_norm(param, grad, *rest):
        norm_out = rest[-1]
        if not param.size:  # no element, no square to add
            norm_out[0] = 0.0
            return
        kernel, ctype = fused[param.dtype]
        kernel(*head(param.size, ctype, param, grad, rest, used(rest) if used else every)
               + rest[n_states:-1] + (_buffer(_DOUBLE, norm_out),))

    def bind(param, grad, *states, uses=None):
        if not param.size:
            return lambda *scalars: None
        kernel, ctype = plain[param.dtype]
        kept = uses if uses is not None else [s.size > 0 for s in states]
        return functools.partial(kernel, param.size, _buffer(ctype, param), _buffer(ctype, grad),
                                 *[_buffer(ctype, s) if k else _NULL
                                   for s, k in zip(states, kept)])

    launcher.__name__ = launcher.__qualname__ = title
    launcher.__doc__ = f"In place: :func:`fastopt.optim.reference.{title}`."
    launcher_with_norm.__name__ = launcher_with_norm.__qualname__ = f"{title}_with_norm"
    launcher_with_norm.__doc__ = (f":func:`{title}`, also setting ``norm_out[0] = "
                                  "sum_of_squares(grad)`` (bit for bit, a float64 array) from the "
                                  "same pass over memory.")
    bind.__qualname__ = f"{title}.bind"
    launcher.bind = bind
    return launcher, launcher_with_norm, plain


# The launchers of every elementwise algorithm (AdamW runs Adam's). _<KERNEL> is the plain step's
# dtype -> (C function, cdata type) table, which the launcher reads at every call (the benchmark's
# _capture_kernel wraps its entries).
for _algorithm in ALGORITHMS.values():
    if not _algorithm.segmented and _algorithm.kernel == _algorithm.name:
        _title = _algorithm.kernel
        globals()[_title], globals()[f"{_title}_with_norm"], globals()[f"_{_title.upper()}"] = \
            _launchers(_algorithm)
del _algorithm, _title


# ---- LAMB: segments, two passes, and scratch that may not be allocated ----------------------

_LAMB = _c_function("lamb", LAMB, segments=True)
_SUM_OF_SQUARES = _by_dtype("sum_of_squares")


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """In place: :func:`fastopt.optim.reference.lamb`, two passes; raises ``MemoryError`` (having
    written nothing) when the C step cannot allocate its per-chunk and per-segment sums."""
    n = param.size
    if n == 0:
        return
    kernel, ctype = _LAMB[param.dtype]
    status = kernel(n, _buffer(ctype, param), _buffer(ctype, grad), _buffer(ctype, exp_avg),
                    _buffer(ctype, exp_avg_sq), segment_offsets.size - 1,
                    _buffer(_INT64, segment_offsets), lr, beta1, beta2, eps, weight_decay,
                    maximize, bias_correction1, bias_correction2, grad_scale)
    if status != 0:
        raise MemoryError(f"lamb: the C step could not allocate the sums of {n} elements in "
                          f"{segment_offsets.size - 1} segments")


def lamb_with_norm(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps,
                   weight_decay, maximize, bias_correction1, bias_correction2, grad_scale,
                   norm_out):
    """:func:`lamb` and ``norm_out[0] = sum_of_squares(grad)``; not fused: the sum is a pass of its
    own before LAMB's two."""
    norm_out[0] = sum_of_squares(grad)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale)


def sum_of_squares(grad):
    """:func:`fastopt.optim.reference.sum_of_squares`, in chunks independent of the thread count."""
    kernel, ctype = _SUM_OF_SQUARES[grad.dtype]
    return kernel(grad.size, _buffer(ctype, grad)) if grad.size else 0.0


def _bind_sum_of_squares(grad):
    """``reduce()``: :func:`sum_of_squares` of ``grad``, its pointer found once."""
    if not grad.size:
        return float
    kernel, ctype = _SUM_OF_SQUARES[grad.dtype]
    return functools.partial(kernel, grad.size, _buffer(ctype, grad))


sum_of_squares.bind = _bind_sum_of_squares

#: The C function reading each gradient dtype's bits (uint16: bfloat16 bits).
_MAX_MAGNITUDE_BITS = {np.dtype(np.float32): lib.fastopt_max_magnitude_bits_f32,
                       np.dtype(np.float64): lib.fastopt_max_magnitude_bits_f64,
                       np.dtype(np.float16): lib.fastopt_max_magnitude_bits_u16,
                       np.dtype(np.uint16): lib.fastopt_max_magnitude_bits_u16}


def max_magnitude_bits(grad):
    """The bits of the largest magnitude of ``grad`` (float32, float64, float16, or bfloat16 bits
    as uint16) as an int, decoded by :func:`fastopt.optim._step.max_abs`; 0 when empty."""
    return _bind_max_magnitude_bits(grad)()


def _bind_max_magnitude_bits(grad):
    """``check()``: :func:`max_magnitude_bits` of ``grad``, its pointer found once."""
    if not grad.size:
        return int
    return functools.partial(_MAX_MAGNITUDE_BITS[grad.dtype], grad.size,
                             _buffer(grad))


max_magnitude_bits.bind = _bind_max_magnitude_bits


# ---- The build and the threads ------------------------------------------------------------------

def build_info():
    """How the extension was built: compiler, OpenMP version or off, parallel threshold, flags."""
    return ffi.string(lib.fastopt_build_info()).decode()


def build_config():
    """The tunables the extension was built with: macro name -> value, as
    :data:`fastopt._core.config.C_DEFINES` was when it was built."""
    pairs = (item.split("=") for item in ffi.string(lib.fastopt_build_config()).decode().split())
    return {name: int(value) for name, value in pairs}


def max_threads():
    """The number of threads a large step uses (1 without OpenMP)."""
    return lib.fastopt_max_threads()


def set_num_threads(n):
    """Sets the threads of later large steps started from the calling thread (no-op without
    OpenMP)."""
    lib.fastopt_set_num_threads(n)
