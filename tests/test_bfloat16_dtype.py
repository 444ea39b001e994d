"""ml_dtypes.bfloat16 arrays, taken wherever bfloat16 bits (uint16) are, with the same bits."""

import numpy as np
import pytest

import fastopt
from fastopt import lowp, mixed
from conftest import HOST

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _float32_patterns():
    """float32 values over every exponent, the rounding ties and NaNs with payloads."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2 ** 16, 1000, dtype=np.uint32) << 16) | 0x8000
    edges = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x7F7F8000, 0x00000001,
                      0x00008000, 0x00018000, 0x7FC00001, 0xFFBF0000, 0x7F800001], np.uint32)
    return np.concatenate([bits, ties, edges]).view(np.float32)


def test_lowp_rounds_with_the_bits_of_the_kernels():
    x = _float32_patterns()
    u = x.view(np.uint32).astype(np.int64)
    # lowp's own integer rounding (to nearest even; a NaN keeps its payload's top bits, quieted).
    expected = np.where((u & 0x7FFFFFFF) > 0x7F800000, (u >> 16) | 0x40,
                        (u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(lowp.to_bfloat16(x), expected)
    as_dtype = lowp.to_bfloat16(x, dtype=ml_dtypes.bfloat16)
    assert as_dtype.dtype == BF16
    np.testing.assert_array_equal(as_dtype.view(np.uint16), expected)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(x[finite].astype(BF16).view(np.uint16), expected[finite])
    decoded = lowp.from_bits(as_dtype, "bfloat16")
    from_uint16 = lowp.from_bits(expected, "bfloat16")
    np.testing.assert_array_equal(decoded.view(np.uint32), from_uint16.view(np.uint32))
    np.testing.assert_array_equal(decoded[finite], as_dtype[finite].astype(np.float32))
    with pytest.raises(ValueError, match="dtype: expected numpy.uint16 or ml_dtypes.bfloat16"):
        lowp.to_bfloat16(x, dtype=np.float16)


@pytest.mark.parametrize("backend", HOST)
def test_stateless_mixed_step_takes_bfloat16_arrays(backend):
    rng = np.random.default_rng(1)
    master = rng.standard_normal(1030).astype(np.float32)
    grad = rng.standard_normal(1030).astype(np.float32)
    runs = []
    for dtype in (np.uint16, ml_dtypes.bfloat16):
        m, g = master.copy(), lowp.to_bfloat16(grad, dtype=dtype)
        model = lowp.to_bfloat16(master, dtype=dtype)
        avg, avg_sq = lowp.to_bfloat16(np.zeros(1030), dtype), lowp.to_bfloat16(np.zeros(1030),
                                                                                 dtype)
        for step in (1, 2):
            mixed.adam(m, g, avg, avg_sq, model, step=step, lr=0.01, rounding="stochastic",
                       seed=3, backend=backend)
        runs.append([m, model.view(np.uint16), avg.view(np.uint16), avg_sq.view(np.uint16)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert runs[1][1].base is not None  # written in place through the view


@pytest.mark.parametrize("backend", HOST)
def test_optimizer_takes_bfloat16_parameters_and_gradients(backend):
    rng = np.random.default_rng(2)
    values = [rng.standard_normal(n).astype(np.float32) for n in (7, 300)]
    grads = [[rng.standard_normal(v.size).astype(np.float32) for v in values] for _ in range(3)]
    runs = []
    for dtype in (np.uint16, ml_dtypes.bfloat16):
        params = [lowp.to_bfloat16(v, dtype=dtype) for v in values]
        opt = fastopt.AdamW(params, lr=0.01, backend=backend, state_dtype="bfloat16")
        for g in grads:
            info = opt.step([lowp.to_bfloat16(x, dtype=dtype) for x in g], max_norm=1.0)
        bad = [lowp.to_bfloat16(x, dtype=dtype) for x in grads[0]]
        bad[1].view(np.uint16)[4] = 0x7FC0  # a NaN: the step is skipped
        with pytest.warns(RuntimeWarning, match="skipped"):
            assert opt.step(bad).skipped
        runs.append(([p.view(np.uint16) for p in params], opt.state_dict(), info))
    (p_bits, s_bits, info_bits), (p_ml, s_ml, info_ml) = runs
    assert info_bits == info_ml
    for a, b in zip(p_bits, p_ml):
        np.testing.assert_array_equal(a, b)
    for i in s_bits["state"]:
        for name, value in s_bits["state"][i].items():
            np.testing.assert_array_equal(value, s_ml["state"][i][name])
