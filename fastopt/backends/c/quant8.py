"""The ``c`` backend's 8-bit blockwise steps (csrc/quant8.c through cffi).

Signatures as in :mod:`fastopt.backends.numpy.quant8`. Each C step decodes a block's state into
float32 buffers on the stack, runs the float32 step of ``csrc/optim_template.h`` on the block and
encodes the state back: one pass over memory, and the reference's bits. Importing this module
checks each C function's argument types against :mod:`fastopt.optim.algorithms`.
"""

from fastopt.backends.c._fastopt_c import ffi, lib
from fastopt.backends.c.optim import checked_signature
from fastopt.backends.numpy.quant8 import STATE_MAPS
from fastopt.optim.algorithms import ALGORITHMS, FLAG_ARGS

#: cffi rounds Python floats to the C float arguments, as numpy's cast does.
TAKES_PYTHON_FLOATS = True
_NULL = ffi.NULL


def _pointer(ctype, array):
    """The array's memory, or NULL for an empty array (a state the mode does not use)."""
    return ffi.from_buffer(ctype, array) if array.size else _NULL


def _c_function(algorithm):
    """``fastopt_<kernel>_quant8``, after checking its argument types against the table."""
    function = getattr(lib, f"fastopt_{algorithm.kernel}_quant8")
    expected = ["int64_t", "float *", "float *",
                *["uint8_t *", "float *", "float *", "int32_t *"] * len(algorithm.state),
                *["int" if a in FLAG_ARGS else "float" for a in algorithm.kernel_args], "float"]
    return checked_signature(function, algorithm, expected)


def _launcher(kernel):
    c_step = _c_function(ALGORITHMS[kernel])

    def arrays(param, grad, codes, absmax, maps, luts):
        out = [param.size, ffi.from_buffer("float[]", param), ffi.from_buffer("float[]", grad)]
        for c, a, t, lut in zip(codes, absmax, maps, luts):
            # The maps are read-only numpy arrays, which the C step only reads.
            out += [_pointer("uint8_t[]", c), _pointer("float[]", a),
                    ffi.from_buffer("float[]", t, require_writable=False),
                    ffi.from_buffer("int32_t[]", lut, require_writable=False)]
        return out

    def step(param, grad, codes, absmax, maps, luts, *scalars):
        if param.size:
            c_step(*arrays(param, grad, codes, absmax, maps, luts), *scalars)

    def bind(param, grad, codes, absmax, maps, luts):
        if not param.size:
            return lambda *scalars: None
        head = arrays(param, grad, codes, absmax, maps, luts)
        return lambda *scalars: c_step(*head, *scalars)

    step.__name__ = step.__qualname__ = kernel
    step.__doc__ = (f"8-bit {kernel} in place (fastopt_{kernel}_quant8); formula in "
                    f":func:`fastopt.backends.numpy.quant8.{kernel}`.")
    step.bind = bind
    return step


for _kernel in STATE_MAPS:
    globals()[_kernel] = _launcher(_kernel)
del _kernel
