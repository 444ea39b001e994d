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

Every function takes ``stream=`` (default: the stream of its first array; see
:mod:`fastopt.backends.cuda.optim`) and never synchronizes the host.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) tiles are 4 x 4 so small test matrices span
several blocks and partial tiles.
"""

import math
import warnings

import numba
from numba import cuda

from fastopt._core import config
from fastopt.nn.reference import GELU, IDENTITY, RELU, SIGMOID, TANH
from fastopt.backends.cuda.optim import SIMULATOR, launch, stream_of

#: Tile edge of the matrix-product kernels (threads per block: TILE * TILE).
TILE = config.CUDASIM_MLP_TILE if SIMULATOR else config.CUDA_MLP_TILE
#: The largest grid.y of a launch (CUDA's limit; grid.x's is 2^31 - 1).
MAX_GRID_Y = 65535
#: Threads per block of the row-wise loss kernels.
ROW_THREADS = config.CUDASIM_MLP_ROW_THREADS if SIMULATOR else config.CUDA_MLP_ROW_THREADS

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _make_activate(element):
    """act(v) in the element type: every constant is one of it, so a float32 kernel does float32
    arithmetic (a Python literal would promote it to float64)."""
    zero, half, one, inv_sqrt2 = element(0), element(0.5), element(1), element(_INV_SQRT2)

    @cuda.jit(device=True, inline=True)
    def activate(v, activation):
        """relu max(v, 0), tanh, sigmoid 1 / (1 + e^-v), gelu v/2 (1 + erf(v / sqrt 2))"""
        if activation == RELU:
            return max(v, zero)
        if activation == TANH:
            return math.tanh(v)
        if activation == SIGMOID:
            return one / (one + math.exp(-v))
        if activation == GELU:
            return half * v * (one + math.erf(v * inv_sqrt2))
        return v

    return activate


def _make_gemm(element):
    """The tiled product kernel for one element type (shared tiles and sums in that type)."""
    activate = _make_activate(element)

    @cuda.jit
    def gemm(a, a_rs, a_ps, b, b_ps, b_cs, c, m, n, depth, bias, pre, activation, epilogue):
        """C[i, j] = sum_p A(i, p) B(p, j); epilogue: v = C + bias[j], pre = v (gelu), C = act(v)"""
        sa = cuda.shared.array((TILE, TILE), element)
        sb = cuda.shared.array((TILE, TILE), element)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        j = cuda.blockIdx.x * TILE + tx  # column of C
        # Row tiles in a grid-stride loop: grid.y is capped at MAX_GRID_Y; every thread of the
        # block runs the same iterations (the barriers below need all of them).
        for tile_row in range(cuda.blockIdx.y, (m + TILE - 1) // TILE, cuda.gridDim.y):
            i = tile_row * TILE + ty  # row of C
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
                    acc = activate(acc, activation)
                c[i * n + j] = acc

    return gemm


def _make_derivative(element):
    """The kernel ``d *= act'`` for one element type (constants of that type)."""
    zero, half, one = element(0), element(0.5), element(1)
    inv_sqrt2, inv_sqrt_2pi = element(_INV_SQRT2), element(_INV_SQRT_2PI)

    @cuda.jit
    def derivative(d, a, z, size, activation):
        """d *= act'(.) from the output a (relu [a > 0], tanh 1 - a^2, sigmoid a (1 - a)), or
        the pre-activation z for gelu (Phi(z) + z phi(z))"""
        k = cuda.grid(1)
        stride = cuda.gridsize(1)
        while k < size:
            if activation == RELU:
                if not a[k] > zero:
                    d[k] = zero
            elif activation == TANH:
                d[k] *= one - a[k] * a[k]
            elif activation == SIGMOID:
                d[k] *= a[k] * (one - a[k])
            elif activation == GELU:
                v = z[k]
                cdf = half * (one + math.erf(v * inv_sqrt2))
                d[k] *= cdf + v * math.exp(-half * v * v) * inv_sqrt_2pi
            k += stride

    return derivative


def _make_column_sums(element):
    """The kernel ``db = column sums of d`` for one element type (its accumulator of that type)."""

    @cuda.jit
    def column_sums(d, db, rows, cols):
        """db[j] = sum_i d[i, j], one thread per column, in row order"""
        j = cuda.grid(1)
        if j < cols:
            s = element(0)
            for i in range(rows):
                s += d[i * cols + j]
            db[j] = s

    return column_sums


def _make_softmax_xent(element):
    """The softmax cross-entropy kernel for one element type."""

    @cuda.jit
    def softmax_xent(logits, labels, dlogits, stats, scale, rows, classes):
        """l_i = m_i + log sum_c exp(z_ic - m_i) - z_iy; dZ = scale (softmax - onehot), a row per
        thread, in the element type (scale of it); the loss and mismatch counts are added to
        the float64 stats"""
        i = cuda.grid(1)
        if i < rows:
            base = i * classes
            best = 0
            for c in range(1, classes):
                if logits[base + c] > logits[base + best]:
                    best = c
            m = logits[base + best]
            s = element(0)
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

    return softmax_xent


#: The kernels of each element type, by the dtype's name.
_KERNELS = {name: dict(gemm=_make_gemm(element), derivative=_make_derivative(element),
                       column_sums=_make_column_sums(element),
                       softmax_xent=_make_softmax_xent(element))
            for name, element in (("float32", numba.float32), ("float64", numba.float64))}
_GEMM = {name: kernels["gemm"] for name, kernels in _KERNELS.items()}


@cuda.jit
def _zero_stats(stats):
    """stats[0] = stats[1] = 0"""
    if cuda.grid(1) == 0:
        stats[0] = 0.0
        stats[1] = 0.0


@cuda.jit
def _mse(out, target, dout, stats, two_scale, rows, cols):
    """dout = 2 scale (o - t) in the element type (two_scale of it); stats += (sum (o - t)^2,
    argmax mismatches), a row per thread, the squares summed in float64 as the stats are"""
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
    """stats[0] += sum x^2: a float64 partial sum per thread (the norm's accumulator), then one
    atomic add each"""
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


def _launch_2d(kernel, m, n, *args, stream=0):
    """A grid of TILE x TILE blocks over an m x n result, at most MAX_GRID_Y blocks high (the
    kernel loops over the rest), on ``stream``; nothing when it is empty."""
    if m <= 0 or n <= 0:
        return
    grid = ((n + TILE - 1) // TILE, min((m + TILE - 1) // TILE, MAX_GRID_Y))
    with warnings.catch_warnings():  # small layers fill few blocks by nature
        warnings.filterwarnings("ignore", message="Grid size")
        kernel[grid, (TILE, TILE), stream](*args)


def _launch_rows(kernel, rows, *args, stream=0):
    """One thread per row, on ``stream``; nothing for no rows."""
    if rows <= 0:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        kernel[(rows + ROW_THREADS - 1) // ROW_THREADS, ROW_THREADS, stream](*args)


def _gemm_call(m, n, depth, a, a_rs, a_ps, b, b_ps, b_cs, c, bias, pre, activation, epilogue,
               stream):
    """C (m x n) = op(A) op(B); without the epilogue, bias and pre are placeholders never read."""
    _launch_2d(_GEMM[str(c.dtype)], m, n, _flat(a), a_rs, a_ps, _flat(b), b_ps, b_cs, _flat(c), m,
               n, depth, _flat(bias), _flat(pre), activation, epilogue, stream=stream)


def dense_forward(x, w, b, out, pre, activation, stream=None):
    """In place: :func:`fastopt.nn.reference.dense_forward`, on ``stream`` (default: ``x``'s)."""
    batch, fan_in = x.shape
    fan_out = w.shape[1]
    _gemm_call(batch, fan_out, fan_in, x, fan_in, 1, w, fan_out, 1, out, b, pre, activation, True,
               stream_of(x, stream))


def dense_backward(x, w, out, pre, dout, dw, db, dx, activation, stream=None):
    """In place: :func:`fastopt.nn.reference.dense_backward`; ``dout`` becomes dZ. On
    ``stream`` (default: ``x``'s)."""
    stream = stream_of(x, stream)
    batch, fan_in = x.shape
    fan_out = w.shape[1]
    kernels = _KERNELS[str(dout.dtype)]
    if activation != IDENTITY:
        launch(kernels["derivative"], dout.size, _flat(dout), _flat(out), _flat(pre), dout.size,
               activation, stream=stream)
    if dx.size:  # dx = dZ w^T: B(p = j, k) = w[k * fan_out + j]
        _gemm_call(batch, fan_in, fan_out, dout, fan_out, 1, w, 1, fan_out, dx, db, dx, IDENTITY,
                   False, stream)
    # dw = x^T dZ: A(k, p = i) = x[i * fan_in + k]
    _gemm_call(fan_in, fan_out, batch, x, 1, fan_in, dout, fan_out, 1, dw, db, dw, IDENTITY, False,
               stream)
    _launch_rows(kernels["column_sums"], fan_out, _flat(dout), db, batch, fan_out, stream=stream)


def softmax_xent(logits, labels, dlogits, stats, scale, stream=None):
    """In place: softmax cross-entropy, gradient scaled by ``scale``; sums into ``stats``. On
    ``stream`` (default: ``logits``')."""
    stream = stream_of(logits, stream)
    rows, classes = logits.shape
    launch(_zero_stats, 1, stats, stream=stream)  # configured once: no occupancy warning
    kernel = _KERNELS[str(logits.dtype)]["softmax_xent"]
    _launch_rows(kernel, rows, _flat(logits), labels, _flat(dlogits), stats,
                 logits.dtype.type(scale), rows, classes, stream=stream)


def mse(out, target, dout, stats, scale, stream=None):
    """In place: squared error, gradient ``2 * scale * (out - target)``; sums into ``stats``. On
    ``stream`` (default: ``out``'s)."""
    stream = stream_of(out, stream)
    rows, cols = out.shape
    launch(_zero_stats, 1, stats, stream=stream)  # configured once: no occupancy warning
    _launch_rows(_mse, rows, _flat(out), _flat(target), _flat(dout), stats,
                 out.dtype.type(scale + scale), rows, cols, stream=stream)


def sum_squares(x, stats, stream=None):
    """``stats[0] = sum(x^2)`` (float64 partial sums combined with atomics), on ``stream``
    (default: ``x``'s)."""
    stream = stream_of(x, stream)
    launch(_zero_stats, 1, stats, stream=stream)  # configured once: no occupancy warning
    launch(_sum_squares, x.size, x, stats, stream=stream)


def scale(x, s, stream=None):
    """``x *= s`` in place (``s`` rounded to ``x``'s dtype), on ``stream`` (default: ``x``'s)."""
    launch(_scale, x.size, x, x.dtype.type(s), stream=stream_of(x, stream))
