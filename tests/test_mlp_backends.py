"""Every backend's MLP kernels against the numpy reference (fastopt.nn.reference).

One table of shapes drives the kernel tests: odd row counts and widths hit the tails of the tiles
(cpu: 4 x 2 dot products in 16 x 64 blocks, 8-row transposes, vectors of 8 along k; c: 6 x 16 and
6 x 8 tiles) and of the narrow-layer paths, and the last shapes are large enough (>= PARALLEL_MACS
multiply-adds) to take the parallel paths, with tails too. CUDA kernels run under the simulator at
the tiny sizes.
"""

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

import fastopt
from fastopt.nn import reference as ref
from fastopt.nn.mlp import MLP
from conftest import AVAILABLE, to_backend, to_host


def _has_mlp(backend):
    try:
        importlib.import_module(f"fastopt.backends.{backend}.mlp")
    except ImportError:
        return False
    return True


BACKENDS = [b for b in AVAILABLE if _has_mlp(b)]
HOST_BACKENDS = [b for b in BACKENDS if b != "cuda"]
DTYPES = [np.float32, np.float64]

#: (rows, fan_in, fan_out)
SHAPES = [(1, 1, 1), (5, 7, 3), (17, 33, 9), (33, 5, 130), (7, 300, 20), (3, 2, 67),
          (64, 128, 128), (67, 129, 131), (130, 1031, 9)]
#: Shapes of the parallel paths (>= 2^20 multiply-adds): a wide and a narrow (dX by rows) layer.
PARALLEL_SHAPES = [(67, 129, 131), (130, 1031, 9), (64, 128, 128)]
CUDA_SHAPES = [(1, 1, 1), (5, 7, 3), (9, 10, 6)]  # the simulator runs each thread in Python

#: (rtol, atol) against the reference. float32 matrix products accumulate in a different order
#: (blocked, FMA) than numpy's BLAS: relative error ~ sqrt(fan_in) * 2^-24 on each sum; the
#: activations of float32 go through float32 libm (tanh, exp) against numpy's.
TOLERANCE = {np.float32: (2e-5, 2e-6), np.float64: (1e-12, 1e-13)}


def shapes_for(backend):
    return CUDA_SHAPES if backend == "cuda" else SHAPES


def cases(backends):
    return [(b, s) for b in backends for s in shapes_for(b)]


def kernels(backend):
    return fastopt._core.dispatch.kernels(backend, "mlp")


def layer_problem(shape, dtype, seed=0):
    rows, fan_in, fan_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, fan_in)).astype(dtype)
    w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype)
    b = rng.standard_normal(fan_out).astype(dtype)
    dout = rng.standard_normal((rows, fan_out)).astype(dtype)
    return x, w, b, dout


def empty(backend, columns, dtype):
    return to_backend(backend, np.zeros((0, columns), dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize("backend,shape", cases(BACKENDS), ids=str)
def test_dense_forward_and_backward_match_reference(backend, shape, activation, dtype):
    code = ref.ACTIVATIONS.index(activation)
    x, w, b, dout = layer_problem(shape, dtype)
    rows, fan_in, fan_out = shape
    a_ref, z_ref = ref.dense_forward(x, w, b, activation)
    dw_ref, db_ref, dx_ref = ref.dense_backward(x, w, z_ref, dout, activation)
    k = kernels(backend)
    dev = lambda a: to_backend(backend, a)
    out = dev(np.full((rows, fan_out), np.nan, dtype))
    pre = dev(np.full((rows, fan_out), np.nan, dtype)) if ref.NEEDS_PRE[code] else \
        empty(backend, fan_out, dtype)
    xd, wd = dev(x), dev(w)
    k.dense_forward(xd, wd, dev(b), out, pre, code)
    rtol, atol = TOLERANCE[dtype]
    # a sum of fan_in terms of size ~1 that cancels to near 0 keeps an absolute error growing as
    # sqrt(fan_in): widen atol past 64 inputs (the 1031-input layer)
    atol *= max(1.0, np.sqrt(fan_in / 64))
    np.testing.assert_allclose(to_host(out), a_ref, rtol=rtol, atol=atol)
    if ref.NEEDS_PRE[code]:
        np.testing.assert_allclose(to_host(pre), z_ref, rtol=rtol, atol=atol)
    # backward from the backend's own forward outputs
    delta = dev(dout)
    dw, db = dev(np.full_like(w, np.nan)), dev(np.full_like(b, np.nan))
    dx = dev(np.full_like(x, np.nan))
    k.dense_backward(xd, wd, out, pre, delta, dw, db, dx, code)
    scale = np.sqrt(rows)  # dW and db sum over the batch
    np.testing.assert_allclose(to_host(dw), dw_ref, rtol=rtol * scale, atol=atol * scale)
    np.testing.assert_allclose(to_host(db), db_ref, rtol=rtol * scale, atol=atol * scale)
    np.testing.assert_allclose(to_host(dx), dx_ref, rtol=rtol * 4, atol=atol * 4)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension was not built")
@pytest.mark.parametrize("simd", [False, True], ids=["portable", "avx2"])
def test_c_portable_and_simd_micro_kernels(simd):
    """Both micro-kernels of csrc/mlp.c (the AVX2+FMA one only runs where the CPU has it), on
    shapes with partial tiles, deep (packed) and shallow (in place) panels."""
    k = kernels("c")
    before = k.simd()
    try:
        if k.set_simd(simd) != simd:
            pytest.skip("this CPU has no AVX2+FMA")
        for shape in [(13, 300, 37), (6, 16, 16), (25, 9, 33)]:
            for dtype in DTYPES:
                x, w, b, dout = layer_problem(shape, dtype, seed=3)
                out = np.empty((shape[0], shape[2]), dtype)
                k.dense_forward(x, w, b, out, empty("c", shape[2], dtype), ref.TANH)
                a_ref, z_ref = ref.dense_forward(x, w, b, "tanh")
                rtol, atol = TOLERANCE[dtype]
                np.testing.assert_allclose(out, a_ref, rtol=rtol, atol=atol * 10)
                dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
                k.dense_backward(x, w, out, empty("c", shape[2], dtype), dout.copy(), dw, db, dx,
                                 ref.TANH)
                dw_ref, db_ref, dx_ref = ref.dense_backward(x, w, z_ref, dout, "tanh")
                np.testing.assert_allclose(dw, dw_ref, rtol=rtol * 10, atol=atol * 10)
                np.testing.assert_allclose(dx, dx_ref, rtol=rtol * 10, atol=atol * 10)
    finally:
        k.set_simd(before)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("shape", PARALLEL_SHAPES, ids=str)
@pytest.mark.parametrize("backend", [b for b in HOST_BACKENDS if b in ("cpu", "c")])
def test_dense_kernels_are_bit_identical_for_any_thread_count(backend, shape, activation):
    """Each output element is one sum computed by one thread in a fixed order, whichever thread
    takes its block: 1 and 2 threads, and on cpu the serial kernels, agree bit for bit."""
    from fastopt._core import threads

    code = ref.ACTIVATIONS.index(activation)
    results = []
    before = threads.get_num_threads(backend)
    try:
        for n in (1, min(2, threads.max_num_threads())):
            threads.set_num_threads(n)
            results.append(_layer_outputs(kernels(backend), shape, code))
    finally:
        threads.set_num_threads(before)
    if backend == "cpu":  # the serial versions, which the fused epoch runs below PARALLEL_MACS
        from fastopt.backends.cpu import mlp as cpu_mlp

        rows, fan_in, fan_out = shape
        serial = SimpleNamespace(
            dense_forward=lambda x, w, b, out, pre, code: cpu_mlp._dense_forward.serial(
                x, w, b, out, pre, code, np.empty((fan_out, fan_in), np.float32)),
            dense_backward=lambda x, w, out, pre, dout, dw, db, dx, code:
                cpu_mlp._dense_backward.serial(x, w, out, pre, dout, dw, db, dx, code,
                                               np.empty((fan_in, rows), np.float32),
                                               np.empty((fan_out, rows), np.float32)))
        results.append(_layer_outputs(serial, shape, code))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def _layer_outputs(k, shape, code):
    """(out, pre, dw, db, dx) of the kernels ``k`` on a float32 layer problem."""
    rows, fan_in, fan_out = shape
    x, w, b, dout = layer_problem(shape, np.float32)
    out, pre = np.empty((rows, fan_out), np.float32), np.empty((rows, fan_out), np.float32)
    if not ref.NEEDS_PRE[code]:
        pre = pre[:0]
    k.dense_forward(x, w, b, out, pre, code)
    dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
    k.dense_backward(x, w, out, pre, dout, dw, db, dx, code)
    return out, pre, dw, db, dx


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_backward_skips_empty_dx(backend):
    x, w, b, dout = layer_problem((6, 5, 4), np.float64)
    k = kernels(backend)
    dev = lambda a: to_backend(backend, a)
    out = dev(np.zeros((6, 4)))
    k.dense_forward(dev(x), dev(w), dev(b), out, empty(backend, 4, np.float64), ref.RELU)
    dw, db = dev(np.zeros_like(w)), dev(np.zeros_like(b))
    k.dense_backward(dev(x), dev(w), out, empty(backend, 4, np.float64), dev(dout), dw, db,
                     empty(backend, 5, np.float64), ref.RELU)
    _, z = ref.dense_forward(x, w, b, "relu")
    np.testing.assert_allclose(to_host(dw), ref.dense_backward(x, w, z, dout, "relu")[0],
                               rtol=1e-12)


LOSS_SHAPES = [(1, 1), (1, 2), (7, 10), (33, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_xent_matches_reference(backend, shape, dtype):
    rows, classes = shape
    rng = np.random.default_rng(1)
    logits = (30 * rng.standard_normal(shape)).astype(dtype)  # large logits: stability
    labels = rng.integers(0, classes, rows).astype(np.int64)
    loss, wrong, grad = ref.softmax_cross_entropy(logits, labels)
    dev = lambda a: to_backend(backend, a)
    dlogits, stats = dev(np.full_like(logits, np.nan)), dev(np.zeros(2))
    kernels(backend).softmax_xent(dev(logits), dev(labels), dlogits, stats,
                                  np.dtype(dtype).type(1 / rows))
    s = to_host(stats)
    rtol, atol = TOLERANCE[dtype]
    assert s[0] / rows == pytest.approx(loss, rel=rtol * 10, abs=atol * 10)
    assert s[1] == wrong
    np.testing.assert_allclose(to_host(dlogits), grad, rtol=rtol * 10, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_matches_reference(backend, shape, dtype):
    rng = np.random.default_rng(2)
    out = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    loss, wrong, grad = ref.mse(out, target)
    dev = lambda a: to_backend(backend, a)
    dout, stats = dev(np.full_like(out, np.nan)), dev(np.zeros(2))
    kernels(backend).mse(dev(out), dev(target), dout, stats, np.dtype(dtype).type(1 / out.size))
    s = to_host(stats)
    rtol, atol = TOLERANCE[dtype]
    assert s[0] / out.size == pytest.approx(loss, rel=rtol * 10)
    assert s[1] == wrong
    np.testing.assert_allclose(to_host(dout), grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("n", [1, 257, 10_007])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sum_squares_and_scale(backend, n):
    if backend == "cuda" and n > 257:
        pytest.skip("simulator: tiny sizes only")
    x = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    dev = to_backend(backend, x)
    stats = to_backend(backend, np.zeros(2))
    k = kernels(backend)
    k.sum_squares(dev, stats)
    assert to_host(stats)[0] == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-12)
    k.scale(dev, np.float32(0.5))
    np.testing.assert_array_equal(to_host(dev), x * np.float32(0.5))


# ---------------------------------------------------------------- whole models and loss curves

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("loss", ref.LOSSES)
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_loss_and_grad_matches_reference(backend, activation, loss, dtype):
    sizes = [5, 6, 4, 3] if backend == "cuda" else [13, 35, 17, 4]
    rows = 6 if backend == "cuda" else 11
    model = MLP(sizes, activation=activation, dtype=dtype, backend=backend, seed=4, loss=loss)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((rows, sizes[0]))
    y = rng.integers(0, sizes[-1], rows)
    value, error = model.loss_and_grad(X, y, return_error=True)
    host = model.copy(backend="numpy")
    weights = [w.astype(dtype) for w in host.weights]
    biases = [b.astype(dtype) for b in host.biases]
    r_value, r_wrong, dws, dbs = ref.loss_and_grad(weights, biases, X.astype(dtype), y,
                                                   activation, loss)
    rtol, atol = TOLERANCE[dtype]
    assert value == pytest.approx(r_value, rel=rtol * 10, abs=atol)
    assert error == r_wrong / rows
    expected = np.concatenate([a.ravel() for pair in zip(dws, dbs) for a in pair])
    np.testing.assert_allclose(to_host(model.grads), expected, rtol=rtol * 10, atol=atol * 10)


#: Loss curves of the first steps agree with the numpy backend's: float64 to ~1e-9 relative
#: (differences of 1e-16 per product, amplified by 30 Adam steps' normalization); float32 to 1e-3
#: relative (Adam divides by sqrt(v) ~ |g|, so early rounding differences of 1e-7 in tiny
#: gradients become visible parameter differences, yet the curves stay together).
CURVE_TOLERANCE = {np.float32: 1e-3, np.float64: 1e-9}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_loss_curve_agrees_with_numpy_backend(backend, dtype):
    from fastopt.datasets import load_digits
    from fastopt.nn.train import train

    data = load_digits()
    if backend == "cuda":  # the simulator: 8 features, 3 steps
        X, y, sizes, steps = data.X_train[:24, 20:28], data.y_train[:24] % 3, [8, 6, 3], 3
    else:
        X, y, sizes, steps = data.X_train[:512], data.y_train[:512], [64, 32, 10], 32
    curves = {}
    for b in ("numpy", backend):
        model = MLP(sizes, dtype=dtype, backend=b, seed=7)
        opt = fastopt.Adam([model.params], lr=1e-2, backend=b)
        history = train(model, opt, X, y, epochs=1, batch_size=len(X) // steps, seed=3,
                        progress=False)
        curves[b] = np.array(history.step["loss"])
    assert len(curves[backend]) == steps
    np.testing.assert_allclose(curves[backend], curves["numpy"], rtol=CURVE_TOLERANCE[dtype])
