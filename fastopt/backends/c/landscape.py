"""The ``c`` backend's landscape kernel: ``csrc/landscape.c`` through cffi (formula and contract
in ``csrc/landscape.h``; the same as :func:`fastopt.backends.cpu.landscape.affine_two_layer`)."""

import numpy as np

from fastopt._core.config import C_LANDSCAPE_ROWS
from fastopt.backends.c._fastopt_c import ffi, lib

__all__ = ["affine_two_layer", "rows_last"]

_CTYPE = {np.dtype(np.float32): ffi.typeof("float[]"), np.dtype(np.float64): ffi.typeof("double[]")}
_KERNEL = {np.dtype(np.float32): lib.fastopt_affine_two_layer_f32,
           np.dtype(np.float64): lib.fastopt_affine_two_layer_f64}
_INT64 = ffi.typeof("int64_t[]")
_DOUBLE = ffi.typeof("double[]")


def affine_two_layer(parts, weights, b1, w2t, b2, labels, targets, activation, loss, out_loss,
                     out_wrong):
    """Fills ``out_loss`` (float64 sums of the loss over rows) and ``out_wrong`` (int64) for each
    point; the arrays as :func:`fastopt.backends.cpu.landscape.affine_two_layer` takes them."""
    ctype = _CTYPE[parts.dtype]
    M, n, h = parts.shape
    parts = rows_last(parts)
    points, C = w2t.shape[0], w2t.shape[1]
    buffer = lambda a, t=ctype: ffi.from_buffer(t, a) if a.size else ffi.NULL
    status = _KERNEL[parts.dtype](points, M, n, h, C, buffer(parts), buffer(weights), buffer(b1),
                                  buffer(w2t), buffer(b2), buffer(labels, _INT64),
                                  buffer(targets), activation, loss, buffer(out_loss, _DOUBLE),
                                  buffer(out_wrong, _INT64))
    if status != 0:
        raise MemoryError("fastopt C backend: could not allocate the landscape kernel's rows")


def rows_last(parts):
    """``parts`` ``(M, n, h)`` in the kernel's layout ``(M, ceil(n / RB), h, RB)``: blocks of
    ``RB`` rows (``C_LANDSCAPE_ROWS``), rows last, the rows past ``n`` zero."""
    M, n, h = parts.shape
    blocks = -(-n // C_LANDSCAPE_ROWS)
    out = np.zeros((M, blocks * C_LANDSCAPE_ROWS, h), parts.dtype)
    out[:, :n] = parts
    return np.ascontiguousarray(
        out.reshape(M, blocks, C_LANDSCAPE_ROWS, h).transpose(0, 1, 3, 2))
