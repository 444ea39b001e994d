"""Launches a device accepts: no empty grid, grid.y within CUDA's limit for any batch, no
occupancy warning per call; every entry point on the stream it is given, else on its input's; and
the float32 MLP kernels computing in float32 (under the simulator, which runs what a launch would
run)."""

import warnings

import numpy as np
import pytest

from conftest import requires_cuda

pytestmark = requires_cuda


@pytest.fixture
def grids(monkeypatch):
    """The grid of every kernel launch made under the simulator while the test runs."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen = []
    configure = FakeCUDAKernel.__getitem__

    def recording(self, configuration):
        configured = configure(self, configuration)
        stream = configuration[2] if len(configuration) > 2 else 0
        seen.append((self.fn.__name__, tuple(self.grid_dim), stream))
        return configured

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", recording)
    return seen


def test_nothing_launches_an_empty_grid(grids):
    from numba import cuda

    from fastopt.backends.cuda import mixed as cuda_mixed, mlp as cuda_mlp, optim as cuda_optim
    from fastopt.optim import mixed as fo_mixed

    empty16 = cuda.to_device(np.zeros(0, np.float16))
    assert fo_mixed.grad_sum_of_squares(cuda_mixed, empty16) == 0.0
    assert cuda_optim.sum_of_squares(cuda.to_device(np.zeros(0, np.float32))) == 0.0
    stats = cuda.to_device(np.ones(2))
    cuda_mlp.sum_squares(cuda.to_device(np.zeros(0, np.float32)), stats)
    assert stats.copy_to_host()[0] == 0.0
    cuda_mlp.scale(cuda.to_device(np.zeros(0, np.float32)), 2.0)
    x = cuda.to_device(np.zeros((0, 3), np.float32))
    w = cuda.to_device(np.ones((3, 2), np.float32))
    out = cuda.to_device(np.zeros((0, 2), np.float32))
    cuda_mlp.dense_forward(x, w, cuda.to_device(np.zeros(2, np.float32)), out, out, 0)
    cuda_mlp.softmax_xent(out, cuda.to_device(np.zeros(0, np.int64)), out, stats, 1.0)
    assert grids and all(min(grid) >= 1 for _, grid, _ in grids), grids


def test_gemm_loops_over_row_tiles_beyond_the_grid_y_limit(monkeypatch, grids):
    from numba import cuda

    from fastopt.backends.cuda import mlp as cuda_mlp
    from fastopt.nn.reference import RELU

    monkeypatch.setattr(cuda_mlp, "MAX_GRID_Y", 2)  # CUDA's is 65,535 (> 1,048,560 rows)
    rng = np.random.default_rng(0)
    rows = 5 * cuda_mlp.TILE + 1  # 6 row tiles on a grid 2 blocks high
    x = rng.standard_normal((rows, 3)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    out = cuda.to_device(np.full((rows, 5), np.nan, np.float32))
    cuda_mlp.dense_forward(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), out, out,
                           RELU)
    expected = np.maximum(x.astype(np.float64) @ w + b, 0)
    # float32 products summed in tile order: within a few float32 roundings of the exact sum
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=1e-5, atol=1e-5)
    assert [grid for name, grid, _ in grids if name == "gemm"] == [(2, 2, 1)]


def test_configured_launches_print_no_occupancy_warning():
    from fastopt.backends.cuda import optim as cuda_optim

    class Kernel:
        def __getitem__(self, config):
            warnings.warn("Grid size 1 will likely result in GPU under-utilization")
            return config

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cuda_optim._configured(Kernel(), 1, 1) == (1, 1, 0)
        assert cuda_optim._configured(Kernel(), 1, 1) == (1, 1, 0)  # configured once


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu"])
def test_float32_activation_derivative_is_computed_in_float32(activation):
    """d *= act'(.) in float32, as numpy computes it in float32 (the device did float64 with a
    Python literal): equal to numpy's float32 formula within one rounding per operation."""
    from math import erf

    from numba import cuda

    from fastopt.backends.cuda import mlp as cuda_mlp
    from fastopt.nn import reference

    code = {"tanh": reference.TANH, "sigmoid": reference.SIGMOID, "gelu": reference.GELU}
    rng = np.random.default_rng(1)
    z = rng.standard_normal(37).astype(np.float32)
    a = {"tanh": np.tanh(z), "sigmoid": (1 / (1 + np.exp(-z))).astype(np.float32),
         "gelu": z}[activation]
    d = rng.standard_normal(37).astype(np.float32)
    out = cuda.to_device(d)
    cuda_mlp.launch(cuda_mlp._KERNELS["float32"]["derivative"], d.size, out, cuda.to_device(a),
                    cuda.to_device(z), d.size, code[activation])
    got = out.copy_to_host()
    assert got.dtype == np.float32
    z64, a64 = z.astype(np.float64), a.astype(np.float64)
    if activation == "tanh":
        exact = d * (1 - a64 * a64)
    elif activation == "sigmoid":
        exact = d * a64 * (1 - a64)
    else:
        cdf = 0.5 * (1 + np.array([erf(v / np.sqrt(2)) for v in z64]))
        exact = d * (cdf + z64 * np.exp(-0.5 * z64 * z64) / np.sqrt(2 * np.pi))
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-6)


def _streams_of(grids):
    return {stream for _, _, stream in grids}


def test_entry_points_run_on_the_given_stream_or_their_inputs(grids):
    from numba import cuda

    import fastopt
    from fastopt.backends.cuda import mixed as cuda_mixed, mlp as cuda_mlp, optim as cuda_optim
    from fastopt.optim import mixed as fo_mixed

    given, bound = cuda.stream(), cuda.stream()
    p = cuda.to_device(np.ones(10, np.float32))
    g = cuda.to_device(np.full(10, 0.5, np.float32))
    m, v, vmax = (cuda.to_device(np.zeros(10, np.float32)) for _ in range(3))
    empty = cuda.to_device(np.zeros(0, np.float32))
    scalars = (0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False, 1.0, 1.0, 1.0)
    cuda_optim.adam(p, g, m, v, empty, *scalars, stream=given)
    assert _streams_of(grids) == {given}
    grids.clear()
    # default: the stream the input is bound to (a producer's, from __cuda_array_interface__)
    cuda_optim.adam(p.bind(bound), g, m, v, empty, *scalars)
    cuda_optim.adam_with_norm(p.bind(bound), g, m, v, empty, *scalars,
                              cuda.to_device(np.zeros(1)))
    assert cuda_optim.sum_of_squares(g.bind(bound)) == 2.5
    assert cuda_optim.max_magnitude_bits(g.bind(bound)) == int(np.float32(0.5).view(np.int32))
    x = cuda.to_device(np.ones((3, 2), np.float32)).bind(bound)
    w = cuda.to_device(np.ones((2, 2), np.float32))
    out = cuda.to_device(np.zeros((3, 2), np.float32))
    cuda_mlp.dense_forward(x, w, cuda.to_device(np.zeros(2, np.float32)), out, out, 0)
    cuda_mlp.sum_squares(cuda.to_device(np.ones(6, np.float32)).bind(bound),
                         cuda.to_device(np.zeros(2)))
    assert _streams_of(grids) == {bound}, [n for n, _, s in grids if s is not bound]
    grids.clear()
    master = cuda.to_device(np.ones(10, np.float32)).bind(bound)
    grad16 = cuda.to_device(np.full(10, 0.5, np.float16))
    model = cuda.to_device(np.zeros(10, np.float16))
    fo_mixed.launch(cuda_mixed, fastopt.optim.algorithms.ALGORITHMS["adam"], master, grad16,
                    [m, v, empty], model, scalars[:-1], 1.0, False, np.uint64(1))
    # (fastopt.optim.mixed views 16-bit arrays as uint16, which keeps the stream on a device but
    # not in the simulator: the backend function is given the bits here)
    assert cuda_mixed.sum_of_squares(grad16.view(np.uint16).bind(bound), 1) == 2.5
    assert _streams_of(grids) == {bound}
    assert model.copy_to_host()[0] < 1  # the step ran


def test_capturable_steps_run_on_the_stream_of_their_parameters(grids):
    from numba import cuda

    from fastopt import capturable

    stream = cuda.stream()
    p = cuda.to_device(np.ones(6, np.float32)).bind(stream)
    opt = capturable.Adam([p], lr=0.1)
    grids.clear()
    opt.step([cuda.to_device(np.ones(6, np.float32))])
    assert _streams_of(grids) == {stream}
    assert p.copy_to_host()[0] < 1
