"""The ``c`` backend of the MLP family: the kernels of ``csrc/mlp.c`` through cffi, in place.

Each function has the kernel signature of :mod:`fastopt.nn.reference` and calls the ``_f32`` or
``_f64`` C function for the arrays' dtype with pointers to their own memory (no copies); an empty
``pre`` or ``dx`` becomes ``NULL``. Matrix products are packed, register-tiled (AVX2+FMA when the
CPU has it, see :func:`simd`) and run on OpenMP threads from 2^20 multiply-adds; the C call
releases the GIL.

Importing this module raises ``ImportError`` when the extension was built without ``csrc/mlp.c``
(or not at all); the dispatcher reports that as the reason ``c`` is unavailable.
"""

import numpy as np

from fastopt.backends.c._fastopt_c import ffi, lib

_NULL = ffi.NULL
_buffer = ffi.from_buffer

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_CTYPE = {_F32: ffi.typeof("float[]"), _F64: ffi.typeof("double[]")}
_INT64 = ffi.typeof("int64_t[]")
_DOUBLE = ffi.typeof("double[]")

_FORWARD = {_F32: lib.fastopt_dense_forward_f32, _F64: lib.fastopt_dense_forward_f64}
_BACKWARD = {_F32: lib.fastopt_dense_backward_f32, _F64: lib.fastopt_dense_backward_f64}
_XENT = {_F32: lib.fastopt_softmax_xent_f32, _F64: lib.fastopt_softmax_xent_f64}
_MSE = {_F32: lib.fastopt_mse_f32, _F64: lib.fastopt_mse_f64}
_SUM_SQUARES = {_F32: lib.fastopt_sum_squares_f32, _F64: lib.fastopt_sum_squares_f64}
_SCALE = {_F32: lib.fastopt_scale_f32, _F64: lib.fastopt_scale_f64}


def _check(status):
    if status != 0:
        raise MemoryError("fastopt C backend: could not allocate the packing space of a matrix "
                          "product")


def dense_forward(x, w, b, out, pre, activation):
    """In place: :func:`fastopt.nn.reference.dense_forward`."""
    ctype = _CTYPE[x.dtype]
    batch, fan_in = x.shape
    _check(_FORWARD[x.dtype](batch, fan_in, w.shape[1], _buffer(ctype, x), _buffer(ctype, w),
                             _buffer(ctype, b), _buffer(ctype, out),
                             _buffer(ctype, pre) if pre.size else _NULL, activation))


def dense_backward(x, w, out, pre, dout, dw, db, dx, activation):
    """In place: :func:`fastopt.nn.reference.dense_backward`; ``dout`` becomes dZ."""
    ctype = _CTYPE[x.dtype]
    batch, fan_in = x.shape
    _check(_BACKWARD[x.dtype](batch, fan_in, w.shape[1], _buffer(ctype, x), _buffer(ctype, w),
                              _buffer(ctype, out), _buffer(ctype, pre) if pre.size else _NULL,
                              _buffer(ctype, dout), _buffer(ctype, dw), _buffer(ctype, db),
                              _buffer(ctype, dx) if dx.size else _NULL, activation))


def softmax_xent(logits, labels, dlogits, stats, scale):
    """In place: softmax cross-entropy, gradient scaled by ``scale``; sums into ``stats``."""
    ctype = _CTYPE[logits.dtype]
    _XENT[logits.dtype](logits.shape[0], logits.shape[1], _buffer(ctype, logits),
                        _buffer(_INT64, labels), _buffer(ctype, dlogits), _buffer(_DOUBLE, stats),
                        scale)


def mse(out, target, dout, stats, scale):
    """In place: squared error, gradient ``2 * scale * (out - target)``; sums into ``stats``."""
    ctype = _CTYPE[out.dtype]
    _MSE[out.dtype](out.shape[0], out.shape[1], _buffer(ctype, out), _buffer(ctype, target),
                    _buffer(ctype, dout), _buffer(_DOUBLE, stats), scale)


def sum_squares(x, stats):
    """``stats[0] = sum(x^2)`` in double."""
    stats[0] = _SUM_SQUARES[x.dtype](x.size, _buffer(_CTYPE[x.dtype], x))


def scale(x, s):
    """``x *= s`` in place."""
    _SCALE[x.dtype](x.size, _buffer(_CTYPE[x.dtype], x), s)


def simd():
    """Whether matrix products use the AVX2+FMA micro-kernel."""
    return bool(lib.fastopt_mlp_simd())


def set_simd(enabled):
    """Chooses the AVX2+FMA micro-kernel (if the CPU has it) or the portable one; returns the
    setting in effect."""
    return bool(lib.fastopt_mlp_set_simd(int(bool(enabled))))


_EPOCH = {_F32: lib.fastopt_mlp_train_epoch_f32, _F64: lib.fastopt_mlp_train_epoch_f64}


#: The optimizer functions an epoch runs, in the C library's numbering (its table's order);
#: :data:`fastopt.nn.reference.EPOCH_OPTIMIZERS` numbers them the same (tested).
EPOCH_OPTIMIZERS = tuple(ffi.string(lib.fastopt_mlp_epoch_optimizers()).decode().split())


def train_epoch(X, labels, targets, order, batch_size, layout, codes, loss, params, grads,
                optimizer, states, scalars, max_norm, skip_nonfinite, squares=False):
    """One epoch in one C call: the contract of :mod:`fastopt.nn.reference`, the optimizer step
    being the function of ``csrc/fastopt.h`` that the ``c`` optimizer backend runs. Returns
    ``(losses, wrongs, norms)`` of the steps run, and their ``squares`` with ``squares=True``."""
    dtype = params.dtype
    ctype = _CTYPE[dtype]
    steps = -(-order.size // batch_size)
    classes = int(layout[-1, 2])
    total = int(batch_size * layout[:, 2].sum())
    work = np.empty(3 * total + batch_size * (X.shape[1] + classes), dtype)
    yb = np.empty(batch_size, np.int64)
    losses, wrongs, norms = np.empty(steps), np.empty(steps), np.empty(steps)
    example_squares = np.empty(steps) if squares else None
    s1, s2, s3 = [_NULL if s is None or not s.size else _buffer(ctype, s)
                  for s in (*states, None, None, None)[:3]]
    layout = np.ascontiguousarray(layout, np.int64)
    codes = np.ascontiguousarray(codes, np.int64)
    ran = _EPOCH[dtype](
        order.size, X.shape[1], _buffer(ctype, X), int(loss),
        _buffer(_INT64, labels) if labels.size else _NULL,
        _buffer(ctype, targets) if targets.size else _NULL, _buffer(_INT64, order), batch_size,
        layout.shape[0], _buffer(_INT64, layout), _buffer(_INT64, codes), params.size,
        _buffer(ctype, params), _buffer(ctype, grads), _buffer(ctype, work), _buffer(_INT64, yb),
        int(optimizer), s1, s2, s3, scalars.shape[1], _buffer(ctype, scalars), float(max_norm),
        int(bool(skip_nonfinite)), _buffer(_DOUBLE, losses), _buffer(_DOUBLE, wrongs),
        _buffer(_DOUBLE, norms), _NULL if example_squares is None else
        _buffer(_DOUBLE, example_squares))
    if ran < 0:
        _check(ran)
    if squares:
        return losses[:ran], wrongs[:ran], norms[:ran], example_squares[:ran]
    return losses[:ran], wrongs[:ran], norms[:ran]
