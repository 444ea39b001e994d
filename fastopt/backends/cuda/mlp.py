"""The ``cuda`` backend of the MLP family: numba-cuda kernels on device arrays, no host sync.

Kernel contract and formulas: :mod:`fastopt.nn.reference`. Every matrix product of a layer is one
shared-memory tiled kernel (``_make_gemm``, one per element type): ``C = op(A) op(B)`` with
``op(A)(i, p) = a[i*a_rs + p*a_ps]`` and ``op(B)(p, j) = b[p*b_ps + j*b_cs]`` on flattened arrays,
so ``x``, ``x^T``, ``dZ`` and ``w^T`` are read in place. A block of :data:`TILE` x :data:`TILE`
threads computes a tile of ``C``: at each step it loads one ``TILE x TILE`` tile of each operand
into shared memory (one element per thread), synchronizes, and every thread adds ``TILE`` products
to its element. The forward pass
applies bias, keeps the pre-activation when backward needs it, and applies the activation in the
same kernel (the fused dense forward).

Losses run one thread per row and add the batch's sums into ``stats`` with float64 atomics (the
order of those additions, hence the last bits of the loss, may vary between runs); the gradient
norm is a grid-stride sum of squares, also combined with atomics.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) tiles are 4 x 4 so small test matrices span
several blocks and partial tiles.
"""

import math
import warnings

import numba
from numba import cuda

from fastopt._core import config
from fastopt.nn.reference import GELU, IDENTITY, RELU, SIGMOID, TANH
from fastopt.backends.cuda.optim import SIMULATOR, launch

#: Tile edge of the matrix-product kernels (threads per block: TILE * TILE).
TILE = config.CUDASIM_MLP_TILE if SIMULATOR else config.CUDA_MLP_TILE
#: Threads per block of the row-wise loss kernels.
ROW_THREADS = config.CUDASIM_MLP_ROW_THREADS if SIMULATOR else config.CUDA_MLP_ROW_THREADS

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@cuda.jit(device=True, inline=True)
def _activate(v, activation):
    if activation == RELU:
        return max(v, 0)
    if activation == TANH:
        return math.tanh(v)
    if activation == SIGMOID:
        return 1 / (1 + math.exp(-v))
    if activation == GELU:
        return 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))
    return v


def _make_gemm(element):
    """The tiled product kernel for one element type (shared tiles and sums in that type)."""

    @cuda.jit
    def gemm(a, a_rs, a_ps, b, b_ps, b_cs, c, m, n, depth, bias, pre, activation, epilogue):
        """C[i, j] = sum_p A(i, p) B(p, j); epilogue: v = C + bias[j], pre = v (gelu), C = act(v)"""
        sa = cuda.shared.array((TILE, TILE), element)
        sb = cuda.shared.array((TILE, TILE), element)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        j = cuda.blockIdx.x * TILE + tx  # column of C
        i = cuda.blockIdx.y * TILE + ty  # row of C
        acc = element(0)
        for p0 in range(0, depth, TILE):
            # each thread loads one element of each tile (zero outside the matrices)
            p = p0 + tx
            sa[ty, tx] = a[i * a_rs + p * a_ps] if i < m and p < depth else element(0)
            p = p0 + ty
            sb[ty, tx] = b[p * b_ps + j * b_cs] if p < depth and j < n else element(0)
            cuda.syncthreads()
            for q in range(TILE):
                acc += sa[ty, q] * sb[q, tx]
            cuda.syncthreads()
        if i < m and j < n:
            if epilogue:
                acc += bias[j]
                if activation == GELU:
                    pre[i * n + j] = acc
                acc = _activate(acc, activation)
            c[i * n + j] = acc

    return gemm


_GEMM = {"float32": _make_gemm(numba.float32), "float64": _make_gemm(numba.float64)}


@cuda.jit
def _derivative(d, a, z, size, activation):
    """d *= act'(.) from the output a, or the pre-activation z for gelu"""
    k = cuda.grid(1)
    stride = cuda.gridsize(1)
    while k < size:
        if activation == RELU:
            if not a[k] > 0:
                d[k] = 0
        elif activation == TANH:
            d[k] *= 1 - a[k] * a[k]
        elif activation == SIGMOID:
            d[k] *= a[k] * (1 - a[k])
        elif activation == GELU:
            v = z[k]
            cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
            d[k] *= cdf + v * math.exp(-0.5 * v * v) * _INV_SQRT_2PI
        k += stride


@cuda.jit
def _column_sums(d, db, rows, cols):
    """db[j] = sum_i d[i, j], one thread per column"""
    j = cuda.grid(1)
    if j < cols:
        s = 0.0
        for i in range(rows):
            s += d[i * cols + j]
        db[j] = s


@cuda.jit
def _zero_stats(stats):
    if cuda.grid(1) == 0:
        stats[0] = 0.0
        stats[1] = 0.0


@cuda.jit
def _softmax_xent(logits, labels, dlogits, stats, scale, rows, classes):
    """l_i = m_i + log sum_c exp(z_ic - m_i) - z_iy; dZ = scale (softmax - onehot), a row per
    thread"""
    i = cuda.grid(1)
    if i < rows:
        base = i * classes
        best = 0
        for c in range(1, classes):
            if logits[base + c] > logits[base + best]:
                best = c
        m = logits[base + best]
        s = 0.0
        for c in range(classes):
            e = math.exp(logits[base + c] - m)
            dlogits[base + c] = e
            s += e
        y = labels[i]
        cuda.atomic.add(stats, 0, math.log(s) - (logits[base + y] - m))
        if best != y:
            cuda.atomic.add(stats, 1, 1.0)
        inv = scale / s
        for c in range(classes):
            dlogits[base + c] *= inv
        dlogits[base + y] -= scale


@cuda.jit
def _mse(out, target, dout, stats, two_scale, rows, cols):
    """dout = 2 scale (o - t); stats += (sum (o - t)^2, argmax mismatches), a row per thread"""
    i = cuda.grid(1)
    if i < rows:
        base = i * cols
        total = 0.0
        best_o = 0
        best_t = 0
        for c in range(cols):
            diff = out[base + c] - target[base + c]
            dout[base + c] = two_scale * diff
            total += diff * diff
            if out[base + c] > out[base + best_o]:
                best_o = c
            if target[base + c] > target[base + best_t]:
                best_t = c
        cuda.atomic.add(stats, 0, total)
        if best_o != best_t:
            cuda.atomic.add(stats, 1, 1.0)


@cuda.jit
def _sum_squares(x, stats):
    """stats[0] += sum x^2: a partial sum per thread, then one atomic add each"""
    k = cuda.grid(1)
    stride = cuda.gridsize(1)
    s = 0.0
    while k < x.size:
        v = numba.float64(x[k])
        s += v * v
        k += stride
    cuda.atomic.add(stats, 0, s)


@cuda.jit
def _scale(x, s):
    k = cuda.grid(1)
    stride = cuda.gridsize(1)
    while k < x.size:
        x[k] *= s
        k += stride


def _flat(a):
    return a if a.ndim == 1 else a.reshape(a.size)


def _launch_2d(kernel, m, n, *args):
    grid = ((n + TILE - 1) // TILE, (m + TILE - 1) // TILE)
    with warnings.catch_warnings():  # small layers fill few blocks by nature
        warnings.filterwarnings("ignore", message="Grid size")
        kernel[grid, (TILE, TILE)](*args)


def _launch_rows(kernel, rows, *args):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        kernel[(rows + ROW_THREADS - 1) // ROW_THREADS, ROW_THREADS](*args)


def _gemm_call(m, n, depth, a, a_rs, a_ps, b, b_ps, b_cs, c, bias, pre, activation, epilogue):
    """C (m x n) = op(A) op(B); without the epilogue, bias and pre are placeholders never read."""
    _launch_2d(_GEMM[str(c.dtype)], m, n, _flat(a), a_rs, a_ps, _flat(b), b_ps, b_cs, _flat(c), m,
               n, depth, _flat(bias), _flat(pre), activation, epilogue)


def dense_forward(x, w, b, out, pre, activation):
    """In place: :func:`fastopt.nn.reference.dense_forward`."""
    batch, fan_in = x.shape
    fan_out = w.shape[1]
    _gemm_call(batch, fan_out, fan_in, x, fan_in, 1, w, fan_out, 1, out, b, pre, activation, True)


def dense_backward(x, w, out, pre, dout, dw, db, dx, activation):
    """In place: :func:`fastopt.nn.reference.dense_backward`; ``dout`` becomes dZ."""
    batch, fan_in = x.shape
    fan_out = w.shape[1]
    if activation != IDENTITY:
        launch(_derivative, dout.size, _flat(dout), _flat(out), _flat(pre), dout.size, activation)
    if dx.size:  # dx = dZ w^T: B(p = j, k) = w[k * fan_out + j]
        _gemm_call(batch, fan_in, fan_out, dout, fan_out, 1, w, 1, fan_out, dx, db, dx, IDENTITY,
                   False)
    # dw = x^T dZ: A(k, p = i) = x[i * fan_in + k]
    _gemm_call(fan_in, fan_out, batch, x, 1, fan_in, dout, fan_out, 1, dw, db, dw, IDENTITY, False)
    _launch_rows(_column_sums, fan_out, _flat(dout), db, batch, fan_out)


def softmax_xent(logits, labels, dlogits, stats, scale):
    """In place: softmax cross-entropy, gradient scaled by ``scale``; sums into ``stats``."""
    rows, classes = logits.shape
    _zero_stats[1, 1](stats)
    _launch_rows(_softmax_xent, rows, _flat(logits), labels, _flat(dlogits), stats, scale, rows,
                 classes)


def mse(out, target, dout, stats, scale):
    """In place: squared error, gradient ``2 * scale * (out - target)``; sums into ``stats``."""
    rows, cols = out.shape
    _zero_stats[1, 1](stats)
    _launch_rows(_mse, rows, _flat(out), _flat(target), _flat(dout), stats, scale + scale, rows,
                 cols)


def sum_squares(x, stats):
    """``stats[0] = sum(x^2)`` (float64 partial sums combined with atomics)."""
    _zero_stats[1, 1](stats)
    launch(_sum_squares, x.size, x, stats)


def scale(x, s):
    """``x *= s`` in place."""
    launch(_scale, x.size, x, s)
