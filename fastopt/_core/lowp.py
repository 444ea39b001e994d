"""Low-precision formats on the host: float16 and bfloat16 as 16-bit patterns, and their rounding.

numpy has no bfloat16, and numba's CPU target has no float16, so fastopt passes 16-bit values as
``uint16`` bit patterns (a float16 array may also be passed as it is); an array of
``ml_dtypes.bfloat16`` (the bfloat16 numpy dtype of JAX and TensorFlow, the ``bfloat16`` extra) is
taken wherever bfloat16 bits are, as a ``uint16`` view of the same memory. These vectorized
functions are the reference for the kernels' rounding: round to nearest, ties to even (numpy's own
float16 conversion, and its bfloat16 equivalent), or stochastic rounding driven by a
counter-based random stream keyed on ``(seed, step, element index)``, so a run is reproducible and
restartable bit for bit on every backend.
"""

import functools

import numpy as np

from fastopt._core.validate import bfloat16_bits
from fastopt.backends.elements import bits as _bits

#: The formats by name, with their codes in the kernels.
FORMATS = {"float32": _bits.FLOAT32, "float16": _bits.FLOAT16, "bfloat16": _bits.BFLOAT16}
ROUNDINGS = ("nearest", "stochastic")


def format_code(name):
    if name not in FORMATS:
        raise ValueError(f"expected one of {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


def random32(key, index):
    """The kernels' random stream, vectorized over ``index`` (int64 arrays)."""
    return _bits.random32.py_func(np.int64(key), np.asarray(index, dtype=np.int64))


def _f32_bits(x):
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)


def _bf16(u, increment):
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (u >> 16) | 0x40, (u + increment) >> 16).astype(np.uint16)


def _f16_stochastic(x, u, rnd):
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    normal = sign | (((a - 0x38000000) + (rnd >> 19)) >> 13)
    shift = np.clip(126 - (a >> 23), 0, 32)
    m = (a & 0x7FFFFF) | 0x800000
    subnormal = sign | ((m + (rnd >> (32 - shift))) >> shift)
    subnormal = np.where(126 - (a >> 23) > 32, sign, subnormal)
    out = np.where(a >= 0x38800000, normal, subnormal)
    out = np.where(a >= 0x47800000, sign | 0x7C00, out)
    with np.errstate(over="ignore"):  # 65520 and up become inf, as they should
        nearest = np.asarray(x, np.float32).astype(np.float16).view(np.uint16).astype(np.int64)
    return np.where(a >= 0x7F800000, nearest, out).astype(np.uint16)


@functools.cache
def ml_bfloat16():
    """``ml_dtypes.bfloat16`` as a numpy dtype, or ``None`` when ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def round_bits(x, fmt, rounding="nearest", key=0, first=0):
    """The 16-bit patterns of float32 ``x`` in format ``fmt`` ("float16" or "bfloat16").

    ``rounding="stochastic"`` draws element ``i``'s random bits from ``random32(key, first + i)``;
    ``key`` is :func:`stream_key` of the run's seed and the step; ``first`` is the index of ``x``'s
    first element in the parameter it is part of (a block of it on one rank).
    """
    code = format_code(fmt)
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding: expected 'nearest' or 'stochastic', got {rounding!r}")
    x = np.asarray(x, np.float32)
    u = _f32_bits(x).reshape(x.shape)
    if code == _bits.FLOAT32:
        return x.copy()
    if rounding == "nearest":
        if code == _bits.FLOAT16:
            with np.errstate(over="ignore"):
                return x.astype(np.float16).view(np.uint16)
        if ml_bfloat16() is not None:
            # ml_dtypes rounds to nearest even in one pass, with these bits but for NaNs, which
            # it makes canonical where the kernels keep the payload's top bits.
            with np.errstate(invalid="ignore"):
                out = x.astype(ml_bfloat16()).view(np.uint16)
            nan = np.isnan(x)
            if nan.any():
                out[nan] = _bf16(u[nan], 0)
            return out
        return _bf16(u, 0x7FFF + ((u >> 16) & 1))
    rnd = random32(key, np.arange(first, first + x.size, dtype=np.int64)).reshape(x.shape)
    if code == _bits.FLOAT16:
        return _f16_stochastic(x, u, rnd)
    return _bf16(u, rnd >> 16)


def from_bits(bits, fmt):
    """float32 values of 16-bit patterns (float16 arrays, and ``ml_dtypes.bfloat16`` ones, are
    accepted as they are)."""
    code = format_code(fmt)
    bits = bfloat16_bits(np.asarray(bits))
    if code == _bits.FLOAT32:
        return bits.astype(np.float32)
    if code == _bits.FLOAT16:
        return bits.view(np.float16).astype(np.float32)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def stream_key(seed, step, stream=0):
    """The key of the random stream of ``step`` in a run seeded with ``seed``; ``stream`` tells
    apart the streams of one step (an optimizer gives each parameter its own)."""
    key = _bits.stream_key.py_func(int(seed), int(step))
    return key if stream == 0 else _bits.fmix32.py_func(key ^ _bits.fmix32.py_func(int(stream)))


def to_bfloat16(x, dtype=np.uint16):
    """bfloat16 bit patterns (``uint16``) of ``x``, rounded to nearest even; with ``dtype=
    ml_dtypes.bfloat16`` (or ``"bfloat16"``), the same bits as an array of that dtype."""
    named = isinstance(dtype, str) and dtype == "bfloat16"
    if not named and np.dtype(dtype) == np.uint16:
        return round_bits(x, "bfloat16")
    if ml_bfloat16() is None:
        raise ImportError("dtype: ml_dtypes.bfloat16 needs ml_dtypes (pip install "
                          "fastopt[bfloat16])")
    if not named and np.dtype(dtype) != ml_bfloat16():
        raise ValueError(f"dtype: expected numpy.uint16 or ml_dtypes.bfloat16, got {dtype!r}")
    return round_bits(x, "bfloat16").view(ml_bfloat16())


def from_bfloat16(bits):
    """float32 values of bfloat16 bit patterns."""
    return from_bits(bits, "bfloat16")
