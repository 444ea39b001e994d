"""The non-finite check (the largest magnitude, exact) and the order of the sum of squares.

The check is an integer maximum over the gradient's bits with the sign cleared: every backend
must equal ``numpy.max(numpy.abs(g))`` exactly, NaN included. The sum of squares has one order on
the host backends, written out here in plain numpy (chunks, lanes, pairwise tree): cpu and c equal
it bit for bit, and so does the sum that a fused step computes in its update pass.
"""

import numpy as np
import pytest

import fastopt
from fastopt import functional
from fastopt._core import config, lowp
from fastopt._core.dispatch import kernels
from fastopt.optim import reference
from fastopt.optim._step import max_abs
from conftest import AVAILABLE, HOST, to_backend

SPECIALS = {"finite": None, "inf": np.inf, "-inf": -np.inf, "nan": np.nan, "-nan": -np.nan,
            "-0": -0.0, "tiny": 1e-45}
DTYPES = ["float32", "float64", "float16", "bfloat16"]


def gradient(dtype, n, special, seed=0):
    """``n`` values (bfloat16 as uint16 bits) with ``special`` at one place; its float values"""
    x = np.random.default_rng(seed).standard_normal(n) * 3
    if special is not None and n:
        x[n * 2 // 3] = special
    if dtype == "bfloat16":
        bits = lowp.to_bfloat16(x.astype(np.float32))
        return bits, lowp.from_bfloat16(bits)
    g = x.astype(dtype)
    return g, g


def same(a, b):
    return a == b or (a != a and b != b)


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", SPECIALS)
def test_max_abs_is_exact_on_every_backend(backend, dtype, special):
    sizes = (0, 1, 77) if backend == "cuda" else (0, 1, 77, 1000, 70_001)  # 70,001: parallel
    for n in sizes:
        g, values = gradient(dtype, n, SPECIALS[special], seed=n)
        expected = reference.max_abs(values)
        got = max_abs(kernels(backend), to_backend(backend, g))
        assert same(got, expected), (n, got, expected)
        assert type(got) is float


def test_max_abs_of_the_largest_finite_values_and_of_nothing():
    for dtype in (np.float32, np.float64, np.float16):
        top = np.finfo(dtype).max
        g = np.array([1.0, -top, 2.0], dtype)
        for backend in HOST:
            assert max_abs(kernels(backend), g) == float(top)
            assert max_abs(kernels(backend), g[:0]) == 0.0


@pytest.mark.parametrize("backend", AVAILABLE)
def test_functional_max_abs_over_a_list(backend):
    a, b = np.array([1.0, -5.0], np.float32), np.array([[3.0, 4.5]], np.float32)
    grads = [to_backend(backend, a), to_backend(backend, b)]
    assert functional.max_abs(grads, backend=backend) == 5.0
    b[0, 1] = np.inf
    assert functional.max_abs([to_backend(backend, a), to_backend(backend, b)]) == np.inf
    a[0] = np.nan  # a NaN anywhere wins over an infinity elsewhere
    assert np.isnan(functional.max_abs([to_backend(backend, a), to_backend(backend, b)]))
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        functional.max_abs([a, np.zeros(2, np.int32)])


def sum_of_squares_in_order(g):
    """The host backends' order, written out: chunks of REDUCTION_CHUNK, element i of a chunk
    starting at lo to lane (i - lo) % REDUCTION_LANES, the lanes added pairwise level by level,
    the chunk sums in order."""
    chunk, lanes = config.REDUCTION_CHUNK, config.REDUCTION_LANES
    total = 0.0
    for lo in range(0, g.size, chunk):
        part = g[lo:lo + chunk].astype(np.float64)
        sums = np.zeros(lanes)
        for row in range(0, part.size, lanes):  # one addition per lane per row, in order
            piece = part[row:row + lanes]
            sums[:piece.size] += piece * piece
        while sums.size > 1:
            sums = sums[0::2] + sums[1::2]
        total += sums[0]
    return float(total)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_sum_of_squares_has_one_order_on_the_host_backends(dtype):
    host = [b for b in HOST if b != "numpy"]
    for n in (1, 63, 64, 65, 1000, config.REDUCTION_CHUNK + 77, 3 * config.REDUCTION_CHUNK + 1):
        g = np.random.default_rng(n).standard_normal(n).astype(dtype) * 1e3
        expected = sum_of_squares_in_order(g)
        for backend in host:
            assert kernels(backend).sum_of_squares(g) == expected, (backend, n)
        # The fused step's in-pass sum has the same bits.
        for backend in host:
            p = np.zeros_like(g)
            info = fastopt.SGD([p], lr=0.1, backend=backend, skip_nonfinite=False).step(
                [g], return_norm=True)
            assert info.grad_norm == np.sqrt(expected), (backend, n)
        assert abs(expected - reference.sum_of_squares(g)) <= 1e-13 * expected


@pytest.mark.parametrize("backend", AVAILABLE)
def test_the_default_check_skips_what_unscaling_would_overflow(backend):
    """A finite float32 gradient of 3e38 with grad_scale 0.5 is 6e38 once unscaled: past float32's
    largest value, so the step is skipped; with grad_scale 2 it runs."""
    p = to_backend(backend, np.ones(8, np.float32))
    g = np.ones(8, np.float32)
    g[3] = 3e38
    opt = fastopt.SGD([p], lr=0.1, backend=backend)
    info = opt.step([to_backend(backend, g)], grad_scale=0.5)
    assert info.skipped and info.found_inf and info.grad_norm is None
    assert opt.state == {}
    info = opt.step([to_backend(backend, g)], grad_scale=2.0)
    assert not info.skipped and info.grad_norm is None and opt.state[0]["step"] == 1
