"""The ``cpu`` backend's branch-free 16-bit conversions against the bits of the reference
(:mod:`fastopt.backends.elements.bits`, :func:`fastopt.lowp.round_bits`): every float16 pattern
decoded, and float32 patterns of every class (zeros, subnormals of both formats, the rounding
boundaries, overflow, infinities, NaNs with and without payload) encoded to nearest and
stochastically."""

import numpy as np
import pytest

from fastopt import lowp
from fastopt.backends.elements import bits

cpu_mixed = pytest.importorskip("fastopt.backends.cpu.mixed")
numba = pytest.importorskip("numba")


@numba.njit
def _decoded(h):
    out = np.empty(h.size, np.float32)
    for i in range(h.size):
        out[i] = cpu_mixed._f16_value(h[i])
    return out


@numba.njit
def _encoded(x, f16, stochastic, key):
    out = np.empty(x.size, np.uint16)
    for i in range(x.size):
        rnd = bits.random32(key, i)
        if f16:
            out[i] = (cpu_mixed._f16_stochastic(x[i], rnd) if stochastic
                      else cpu_mixed._f16_nearest(x[i]))
        else:
            out[i] = (cpu_mixed._bf16_rounded(x[i], rnd >> 16) if stochastic
                      else cpu_mixed._bf16_nearest(x[i]))
    return out


def float32_patterns():
    """Every high half (sign, exponent, top mantissa bits) with low halves at and around the
    float16 and bfloat16 rounding points, and a few random ones."""
    high = np.arange(1 << 16, dtype=np.uint32) << 16
    low = np.array([0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x3000, 0x7FFF, 0x8000, 0x8001,
                    0xFFFF, 0x5A5A, 0xA5A5], np.uint32)
    return (high[:, None] | low[None, :]).reshape(-1).view(np.float32)


def test_float16_decoding_of_every_pattern():
    h = np.arange(1 << 16, dtype=np.uint16)
    expected = np.array([bits.f16_to_f32(int(v)) for v in h], np.uint32)
    assert np.array_equal(_decoded(h).view(np.uint32), expected)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_encoding_of_float32_patterns(fmt, rounding):
    x = float32_patterns()
    key = lowp.stream_key(7, 3)
    got = _encoded(x, fmt == "float16", rounding == "stochastic", key)
    assert np.array_equal(got, lowp.round_bits(x, fmt, rounding, key))
