"""The host backends' branch-free 16-bit conversions against the bits of the reference
(:mod:`fastopt.backends.elements.bits`, :func:`fastopt.lowp.round_bits`): every float16 pattern
decoded, and float32 patterns of every class (zeros, subnormals of both formats, the rounding
boundaries, overflow, infinities, NaNs with and without payload) encoded to nearest and
stochastically; the ``cpu`` conversions and random stream one by one, and both backends' through
their steps."""

import numpy as np
import pytest

import fastopt
from fastopt import lowp, mixed
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


@numba.njit
def _random(key, index):
    out = np.empty(index.size, np.int64)
    for i in range(index.size):
        out[i] = cpu_mixed._random32(key, index[i])
    return out


def test_random_stream():
    index = np.concatenate([np.arange(1 << 16), (1 << 32) + np.arange(100), [2 ** 40 + 3]])
    for key in (0, 1, lowp.stream_key(7, 3), 0xFFFFFFFF):
        assert np.array_equal(_random(key, index), lowp.random32(key, index))


HOST = [b for b in ("cpu", "c") if b in fastopt.available_backends()]
#: Below the parallel threshold: the serial kernels are compiled, not the parallel ones too.
PIECE = 30_000


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("model_fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_steps_on_every_class_of_value_give_the_reference_bits(backend, model_fmt, rounding):
    """SGD steps of the host backends against the numpy backend's: every float16 gradient pattern
    decoded into the master weights, and master weights of every float32 class rounded to the
    model copy."""
    model_dtype = np.float16 if model_fmt == "float16" else np.uint16
    every = np.arange(1 << 16, dtype=np.uint16)
    cases = [(np.zeros(every.size, np.float32), every.view(np.float16), 1.0),
             (float32_patterns(), None, 0.5)]
    for master, grad, lr in cases:
        for lo in range(0, master.size, PIECE):
            m = master[lo:lo + PIECE]
            g = grad[lo:lo + PIECE] if grad is not None else np.zeros(m.size, np.float16)
            results = []
            for b in (backend, "numpy"):
                mb, model = m.copy(), np.zeros(m.size, model_dtype)
                with np.errstate(all="ignore"):
                    mixed.sgd(mb, g, model, step=3, lr=lr, rounding=rounding, seed=5, backend=b)
                results.append((mb.view(np.uint32), model.view(np.uint16)))
            (m1, model1), (m2, model2) = results
            assert np.array_equal(m1, m2) and np.array_equal(model1, model2)
