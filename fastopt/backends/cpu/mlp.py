"""The ``cpu`` backend of the MLP family: numba kernels, ``prange`` over tiles, cached on disk.

Kernel contract and formulas: :mod:`fastopt.nn.reference`. Every matrix product is one routine,
:func:`_gemm_nt`: ``C = A B^T`` with ``A`` and ``B`` read along contiguous rows, as dot products
whose loop over ``k`` is innermost. A register tile of 4 rows of ``A`` by 2 rows of ``B`` keeps
eight accumulators (vectors, once LLVM vectorizes the ``k`` loop, which ``fastmath`` reassociation
allows) for the whole reduction: per vector step six loads feed eight multiply-adds, where a
product updating rows of ``C`` in memory would load and store ``C`` at every multiply-add.

numba has no way to hold a tile of ``C`` in vector registers along ``j`` (the layout of BLAS and of
``csrc/mlp.c``: LLVM's SLP vectorizer does not combine scalar accumulators into vectors), so the
dot-product layout it is, and operands whose rows are not contiguous are packed (transposed)
first:

- forward ``Z = X W + b``: ``A = X``, ``B = W^T`` (packed), then bias and activation on the tile
  while it is in cache;
- ``dX = dZ W^T``: ``A = dZ``, ``B = W`` (in place); a layer narrower than :data:`NARROW` outputs
  would make those dot products a few elements long, so it accumulates rows instead,
  ``dX[i,:] += dZ[i,j] W^T[j,:]``;
- ``dW = X^T dZ``: ``A = X^T``, ``B = dZ^T`` (both packed), the reduction over the batch; a
  narrow layer accumulates rows of ``dW^T`` instead, ``dW^T[j,:] += dZ[i,j] X[i,:]`` (no copy of
  ``X``), then stores them transposed.

Where the time goes (one core of the 2-vCPU AMD EPYC development VM, float32, shared with other
work, so +-15%): the tile loop itself runs at 70-75 GFLOP/s on 128x784x128, some 90% of
OpenBLAS's sgemm there (80-85). What keeps a whole layer at 55-70% of BLAS is the rest: the packed
copies (scalar loads and stores, about 0.6 ns an element: numba cannot emit the shuffles of a
vectorized transpose), some 15% of the forward and of dW at that size; and the horizontal sums that
end each tile (48 instructions for 8 sums), which cost little on a reduction of 784 but about a
third of the time on one of 64, so small layers (64x64x64) stay near half of BLAS.

Each output element is one dot product computed by one thread in a fixed order, so results do not
depend on the thread count. Layers with fewer than :data:`PARALLEL_MACS` multiply-adds run on the
calling thread, where starting the thread pool would cost more than the product; larger ones split
the tiles of ``C`` (blocks of :data:`BLOCK_ROWS` x :data:`BLOCK_COLS`, so both dimensions give
work to the threads) over the threads.
"""

import functools
import math
import threading

import numba
import numpy as np
from numba import prange
from numba.core import errors, types
from numba.extending import overload
from numba.np.unsafe.ndarray import to_fixed_tuple

from fastopt._core import config
from fastopt.backends.cpu import optim as _optim
from fastopt.backends._numba.compile import parallel_threshold, serial_and_parallel
from fastopt.optim.algorithms import ALGORITHMS
from fastopt.nn.reference import (CROSS_ENTROPY, EPOCH_OPTIMIZERS, GELU, IDENTITY, MSE, RELU,
                                  SIGMOID, TANH)

#: Layers with fewer multiply-adds (batch x fan_in x fan_out) than this run on one thread.
PARALLEL_MACS = parallel_threshold(config.CPU_MLP_PARALLEL_MACS)
#: Layers with fewer outputs than this (an output layer of 10 classes) accumulate rows for dX and
#: dW instead of taking dot products a few elements long.
NARROW = config.CPU_MLP_NARROW
#: The threads' blocks of C: this many rows by this many columns (a multiple of the tile's 4 x 2).
BLOCK_ROWS = config.CPU_MLP_BLOCK_ROWS
BLOCK_COLS = config.CPU_MLP_BLOCK_COLS

# error_model="numpy": IEEE division, no zero checks that would keep loops from vectorizing.
# fastmath contract (FMA) and reassoc (vectorized dot products), never the finite-math flags:
# inf and nan must propagate as in the reference.
_FASTMATH = {"contract", "reassoc"}
_OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _serial_and_parallel(body):
    """A launcher ``(work, *args)`` choosing the parallel version from PARALLEL_MACS; the two
    versions are cached apart (see :mod:`fastopt.backends._numba.compile`). numba splits a
    parallel loop evenly over the threads: handing out one block at a time
    (``numba.set_parallel_chunksize(1)``) would make a preempted thread cost less on a busy
    machine, but costs about 10% on a quiet one (a call of the loop body per block)."""
    serial, parallel = serial_and_parallel(body, fastmath=_FASTMATH)

    def launch(work, *args):
        return (parallel if work >= PARALLEL_MACS else serial)(*args)

    launch.serial, launch.parallel = serial, parallel
    return functools.update_wrapper(launch, body)


@numba.njit(**_OPTIONS)
def _activate_row(z, pre, activation):
    """``pre = z`` (gelu), then ``z = act(z)`` in place, one row."""
    one = z.dtype.type(1)
    if activation == RELU:
        for j in range(z.size):
            z[j] = max(z[j], 0)
    elif activation == TANH:
        for j in range(z.size):
            z[j] = math.tanh(z[j])
    elif activation == SIGMOID:
        for j in range(z.size):
            z[j] = one / (one + math.exp(-z[j]))
    elif activation == GELU:
        for j in range(z.size):
            v = z[j]
            pre[j] = v
            z[j] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))  # in float64, as the reference


@numba.njit(**_OPTIONS)
def _derivative_row(d, a, pre, activation):
    """``d *= act'``, one row, from the output ``a`` or (gelu) the pre-activation."""
    one = d.dtype.type(1)
    if activation == RELU:
        for j in range(d.size):
            d[j] = d[j] if a[j] > 0 else 0
    elif activation == TANH:
        for j in range(d.size):
            d[j] *= one - a[j] * a[j]
    elif activation == SIGMOID:
        for j in range(d.size):
            d[j] *= a[j] * (one - a[j])
    elif activation == GELU:
        for j in range(d.size):
            z = pre[j]
            cdf = 0.5 * (1.0 + math.erf(z * _INV_SQRT2))
            d[j] *= cdf + z * math.exp(-0.5 * z * z) * _INV_SQRT_2PI


@numba.njit(**_OPTIONS)
def _dots_4x2(a0, a1, a2, a3, b0, b1):
    """The register tile: the 8 dot products of rows a0..a3 with rows b0, b1 (contiguous, of one
    length). Vectorized along k, each sum is a vector of partial sums, added up at the end."""
    zero = a0.dtype.type(0)
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = zero
    for k in range(a0.size):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        y0, y1 = b0[k], b1[k]
        c00 += x0 * y0
        c01 += x0 * y1
        c10 += x1 * y0
        c11 += x1 * y1
        c20 += x2 * y0
        c21 += x2 * y1
        c30 += x3 * y0
        c31 += x3 * y1
    return c00, c01, c10, c11, c20, c21, c30, c31


@numba.njit(**_OPTIONS)
def _gemm_nt(a, b, c, i0, i1, j0, j1):
    """c[i0:i1, j0:j1] = a[i0:i1] @ b[j0:j1]^T in 4 x 2 tiles; a tile crossing the edge repeats
    the last row of a or b (computed, not stored)."""
    for i in range(i0, i1, 4):
        a0, a1 = a[i], a[min(i + 1, i1 - 1)]
        a2, a3 = a[min(i + 2, i1 - 1)], a[min(i + 3, i1 - 1)]
        for j in range(j0, j1, 2):
            two = j + 1 < j1
            t = _dots_4x2(a0, a1, a2, a3, b[j], b[j + 1 if two else j])
            c[i, j] = t[0]
            if two:
                c[i, j + 1] = t[1]
            if i + 1 < i1:
                c[i + 1, j] = t[2]
                if two:
                    c[i + 1, j + 1] = t[3]
            if i + 2 < i1:
                c[i + 2, j] = t[4]
                if two:
                    c[i + 2, j + 1] = t[5]
            if i + 3 < i1:
                c[i + 3, j] = t[6]
                if two:
                    c[i + 3, j + 1] = t[7]


@numba.njit(**_OPTIONS)
def _transpose(src, dst, j0, j1):
    """dst[j0:j1] = src[:, j0:j1]^T: 8 rows of src at a time (8 contiguous stores per column),
    in strips of 32 columns so that the rows of dst being written stay in L1."""
    rows = src.shape[0]
    for s0 in range(j0, j1, 32):
        s1 = min(s0 + 32, j1)
        i = 0
        while i + 8 <= rows:
            r0, r1, r2, r3 = src[i], src[i + 1], src[i + 2], src[i + 3]
            r4, r5, r6, r7 = src[i + 4], src[i + 5], src[i + 6], src[i + 7]
            for j in range(s0, s1):
                d = dst[j]
                d[i], d[i + 1], d[i + 2], d[i + 3] = r0[j], r1[j], r2[j], r3[j]
                d[i + 4], d[i + 5], d[i + 6], d[i + 7] = r4[j], r5[j], r6[j], r7[j]
            i += 8
        for r in range(i, rows):
            for j in range(s0, s1):
                dst[j, r] = src[r, j]


@numba.njit(**_OPTIONS)
def _blocks(m, n):
    """The number of row blocks and column blocks of an m x n C."""
    return (m + BLOCK_ROWS - 1) // BLOCK_ROWS, (n + BLOCK_COLS - 1) // BLOCK_COLS


@_serial_and_parallel
def _dense_forward(x, w, b, out, pre, activation, wt):
    """out = act(x @ w + b), pre = x @ w + b (gelu); wt: scratch for w^T (fan_out x fan_in)"""
    batch = x.shape[0]
    fan_in, fan_out = w.shape
    for strip in prange((fan_out + 31) // 32):
        _transpose(w, wt, strip * 32, min(strip * 32 + 32, fan_out))
    rblocks, cblocks = _blocks(batch, fan_out)
    for t in prange(rblocks * cblocks):
        i0 = t // cblocks * BLOCK_ROWS
        j0 = t % cblocks * BLOCK_COLS
        i1 = min(i0 + BLOCK_ROWS, batch)
        j1 = min(j0 + BLOCK_COLS, fan_out)
        _gemm_nt(x, wt, out, i0, i1, j0, j1)
        for i in range(i0, i1):  # bias and activation while the tile is in cache
            row = out[i, j0:j1]
            row += b[j0:j1]
            _activate_row(row, pre[i, j0:j1] if activation == GELU else row, activation)


@_serial_and_parallel
def _dense_backward(x, w, out, pre, dout, dw, db, dx, activation, xt, dzt):
    """dZ = dout * act' (in dout); dX = dZ @ w^T; dW = x^T @ dZ; db = sum of rows of dZ;
    xt, dzt: scratch for x^T (fan_in x batch) and dZ^T (fan_out x batch)"""
    batch, fan_in = x.shape
    fan_out = w.shape[1]
    zero = dout.dtype.type(0)
    if activation != IDENTITY:
        for block in prange((batch + 15) // 16):
            for i in range(block * 16, min(block * 16 + 16, batch)):
                _derivative_row(dout[i], out[i], pre[i] if activation == GELU else out[i],
                                activation)
    if fan_out >= NARROW:  # dW = X^T dZ from the rows of X^T and dZ^T (columns of X and dZ)
        xstrips = (fan_in + 31) // 32
        for strip in prange(xstrips + (fan_out + 31) // 32):
            if strip < xstrips:
                _transpose(x, xt, strip * 32, min(strip * 32 + 32, fan_in))
            else:
                j0 = (strip - xstrips) * 32
                _transpose(dout, dzt, j0, min(j0 + 32, fan_out))
        rblocks, cblocks = _blocks(fan_in, fan_out)
        for t in prange(rblocks * cblocks):
            i0 = t // cblocks * BLOCK_ROWS
            j0 = t % cblocks * BLOCK_COLS
            _gemm_nt(xt, dzt, dw, i0, min(i0 + BLOCK_ROWS, fan_in), j0,
                     min(j0 + BLOCK_COLS, fan_out))
    else:  # narrow: dW^T[j, :] = sum_i dZ[i, j] x[i, :], along rows of x (no X^T), transposed
        dwt = np.empty((fan_out, fan_in), dw.dtype)
        for j in prange(fan_out):
            dj = dwt[j]
            dj[:] = zero
            for i in range(batch):
                d = dout[i, j]
                xi = x[i]
                for k in range(fan_in):
                    dj[k] += d * xi[k]
        for k in range(fan_in):
            for j in range(fan_out):
                dw[k, j] = dwt[j, k]
    if dx.size and fan_out >= NARROW:  # dX[i, k] = dZ[i, :] . w[k, :]
        rblocks, cblocks = _blocks(batch, fan_in)
        for t in prange(rblocks * cblocks):
            i0 = t // cblocks * BLOCK_ROWS
            j0 = t % cblocks * BLOCK_COLS
            _gemm_nt(dout, w, dx, i0, min(i0 + BLOCK_ROWS, batch), j0,
                     min(j0 + BLOCK_COLS, fan_in))
    elif dx.size:  # narrow: dX[i, :] = sum_j dZ[i, j] w^T[j, :], along rows of w^T (small)
        wt = np.ascontiguousarray(w.T)
        for block in prange((batch + 15) // 16):
            for i in range(block * 16, min(block * 16 + 16, batch)):
                dxi = dx[i]
                dxi[:] = zero
                for j in range(fan_out):
                    d = dout[i, j]
                    wj = wt[j]
                    for k in range(fan_in):
                        dxi[k] += d * wj[k]
    db[:] = zero
    for i in range(batch):
        di = dout[i]
        for j in range(fan_out):
            db[j] += di[j]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _softmax_xent(logits, labels, dlogits, stats, scale):
    """l_i = m_i + log sum_c exp(z_ic - m_i) - z_iy; dZ = scale (softmax - onehot)"""
    total_loss = 0.0
    wrong = 0
    for i in range(logits.shape[0]):
        z = logits[i]
        g = dlogits[i]
        best = 0
        for c in range(1, z.size):
            if z[c] > z[best]:
                best = c
        m = z[best]
        s = z.dtype.type(0)
        for c in range(z.size):
            e = math.exp(z[c] - m)
            g[c] = e
            s += e
        y = labels[i]
        total_loss += math.log(s) - (z[y] - m)
        wrong += best != y
        inv = scale / s
        for c in range(z.size):
            g[c] *= inv
        g[y] -= scale
    stats[0] = total_loss
    stats[1] = wrong


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _mse(out, target, dout, stats, scale):
    """L = sum (o - t)^2 (scaled by the caller); dL/do = 2 scale (o - t)"""
    total = 0.0
    wrong = 0
    two_scale = scale + scale  # stays in the arrays' dtype
    for i in range(out.shape[0]):
        o, t, d = out[i], target[i], dout[i]
        best_o = 0
        best_t = 0
        for c in range(o.size):
            diff = o[c] - t[c]
            d[c] = two_scale * diff
            total += np.float64(diff) * np.float64(diff)
            if o[c] > o[best_o]:
                best_o = c
            if t[c] > t[best_t]:
                best_t = c
        wrong += best_o != best_t
    stats[0] = total
    stats[1] = wrong


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _sum_squares(x):
    total = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        total += v * v
    return total


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scale(x, s):
    for i in range(x.size):
        x[i] *= s


_scratch_cache = threading.local()


def _scratch(dtype, count):
    """A flat array of at least ``count`` elements of ``dtype``: packing space, grown and kept per
    calling thread (a fresh allocation of a large packed copy costs page faults every call)."""
    buffers = _scratch_cache.__dict__.setdefault("buffers", {})
    buf = buffers.get(dtype)
    if buf is None or buf.size < count:
        buf = buffers[dtype] = np.empty(max(count, 2 * (0 if buf is None else buf.size)), dtype)
    return buf


def dense_forward(x, w, b, out, pre, activation):
    """In place: :func:`fastopt.nn.reference.dense_forward`."""
    fan_in, fan_out = w.shape
    wt = _scratch(w.dtype, w.size)[:w.size].reshape(fan_out, fan_in)
    _dense_forward(x.shape[0] * w.size, x, w, b, out, pre, activation, wt)


def dense_backward(x, w, out, pre, dout, dw, db, dx, activation):
    """In place: :func:`fastopt.nn.reference.dense_backward`; ``dout`` becomes dZ."""
    xt, dzt = _transposes(x.dtype, *x.shape, w.shape[1])
    _dense_backward(x.shape[0] * w.size, x, w, out, pre, dout, dw, db, dx, activation, xt, dzt)


def _transposes(dtype, batch, fan_in, fan_out):
    """The scratch of dense_backward: x^T and dZ^T, views of one buffer."""
    size = batch * (fan_in + fan_out)
    buf = _scratch(dtype, size)
    return (buf[:batch * fan_in].reshape(fan_in, batch),
            buf[batch * fan_in:size].reshape(fan_out, batch))


def softmax_xent(logits, labels, dlogits, stats, scale):
    """In place: :func:`fastopt.nn.reference.softmax_cross_entropy` (sums, not means)."""
    _softmax_xent(logits, labels, dlogits, stats, scale)


def mse(out, target, dout, stats, scale):
    """In place: :func:`fastopt.nn.reference.mse` (sums, not means)."""
    _mse(out, target, dout, stats, scale)


def sum_squares(x, stats):
    """``stats[0] = sum(x^2)`` in float64."""
    stats[0] = _sum_squares(x)


def scale(x, s):
    """``x *= s`` in place."""
    _scale(x, s)


# ------------------------------------------------------------ a whole epoch in one compiled call
#
# For small networks the Python around each step (checks, dispatch, one call per layer and per
# optimizer step) costs more than the arithmetic, so an epoch can run as one call: gather each
# shuffled batch, forward, loss, backward, gradient norm, clipping, and the optimizer's own kernel
# from fastopt.backends.cpu.optim (its serial version), with the per-step history written into
# arrays. The contract is in fastopt.nn.reference.

#: The number of LAMB (segmented: its own passes) among the epoch's optimizers.
LAMB = EPOCH_OPTIMIZERS.index("lamb")

# The optimizer step of the epoch: cpu_optim's kernel, the serial or the parallel version, called
# with the arguments its launcher would pass. Which kernel and which version are compile-time
# constants (literal arguments; the overload below picks them while typing), so that an epoch
# compiles only the kernel it runs, not all twenty.

_EPOCH_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")  # no fastmath: bit for bit


@numba.njit(**_EPOCH_OPTIONS)
def _sign(maximize, one):
    return -one if maximize != 0 else one


@numba.njit(**_EPOCH_OPTIONS)
def _hyper(r, columns):
    """The floats a cpu kernel takes: 1, r[columns], then grad_scale 1, in r's dtype."""
    hyper = np.empty(len(columns) + 2, r.dtype)
    hyper[0] = 1
    for k in range(len(columns)):
        hyper[k + 1] = r[columns[k]]
    hyper[-1] = 1
    return hyper


@numba.njit(**_EPOCH_OPTIONS)
def _flags(r, columns):
    """The flags a cpu kernel takes: r[columns] != 0."""
    flags = np.empty(len(columns), np.bool_)
    for k in range(len(columns)):
        flags[k] = r[columns[k]] != 0
    return flags


_lamb_ratios, _LAMB_CHUNK = _optim._lamb_ratios, _optim.LAMB_CHUNK


def epoch_uses(optimizer, row):
    """Which state arrays the optimizer ``EPOCH_OPTIMIZERS[optimizer]`` uses with the kernel
    scalars ``row`` (one row of ``Algorithm.scalars``), as a bit mask: bit k for state k."""
    algorithm = ALGORITHMS[EPOCH_OPTIMIZERS[optimizer]]
    named = {a: row[algorithm.kernel_args.index(a)] for a in algorithm.uses_args}
    return sum(1 << k for k, used in enumerate(algorithm.uses(named)) if used)


def _optimizer_step(kernel, uses, parallel, p, g, s1, s2, s3, r, offsets, partial, ratio):
    """One step of the cpu kernel of ``EPOCH_OPTIMIZERS[kernel]`` (literal) specialized on the
    state arrays of the bit mask ``uses`` (literal, see :func:`epoch_uses`), its parallel version
    if ``parallel`` (literal), grad_scale 1, ``r`` the step's row of ``Algorithm.scalars`` (flags
    as 0 or 1); LAMB uses ``offsets`` (one segment), ``partial`` and ``ratio`` as scratch. For
    numba code only."""
    raise NotImplementedError("_optimizer_step runs in compiled code only")


@overload(_optimizer_step, prefer_literal=True, jit_options=_EPOCH_OPTIONS)
def _optimizer_step_impl(kernel, uses, parallel, p, g, s1, s2, s3, r, offsets, partial, ratio):
    for name, value in (("kernel", kernel), ("uses", uses)):
        if not isinstance(value, types.IntegerLiteral):
            raise errors.RequireLiteralValue(name)
    if not isinstance(parallel, types.BooleanLiteral):
        raise errors.RequireLiteralValue("parallel")
    version = "parallel" if parallel.literal_value else "serial"
    if kernel.literal_value == LAMB:  # the reduction, the trust ratio, the update
        moments = getattr(_optim._lamb_moments, version)
        update = getattr(_optim._lamb_update, version)

        def lamb(kernel, uses, parallel, p, g, s1, s2, s3, r, offsets, partial, ratio):
            # lr, beta1, beta2, eps, weight_decay, maximize, bias_correction1, bias_correction2
            one = p.dtype.type(1)
            moments(p, g, s1, s2, offsets, partial, _LAMB_CHUNK, r[1], one - r[1], r[2],
                    one - r[2], r[3], r[4], r[6], r[7], -one if r[5] != 0 else one)
            _lamb_ratios(offsets, partial, _LAMB_CHUNK, np.float64(r[0]), ratio)
            update(p, s1, s2, offsets, ratio, _LAMB_CHUNK, r[3], r[4], r[6], r[7])
        return lamb
    algorithm = ALGORITHMS[EPOCH_OPTIMIZERS[kernel.literal_value]]
    mask = uses.literal_value
    used = tuple(bool(mask >> k & 1) for k in range(len(algorithm.state)))
    run = getattr(_optim._kernels(algorithm.name, used)[0], version)
    names = algorithm.kernel_args
    float_columns = tuple(names.index(a) for a in algorithm.float_args)
    flag_columns = tuple(names.index(a) for a in algorithm.flag_args)
    n_floats, n_flags = len(float_columns) + 2, len(flag_columns)

    def scalars(r):
        return (to_fixed_tuple(_hyper(r, float_columns), n_floats),
                to_fixed_tuple(_flags(r, flag_columns), n_flags))

    scalars = numba.njit(inline="always")(scalars)
    if len(algorithm.state) == 1:
        def step(kernel, uses, parallel, p, g, s1, s2, s3, r, offsets, partial, ratio):
            floats, flags = scalars(r)
            run(p, g, (s1,), floats, flags)
    elif len(algorithm.state) == 2:
        def step(kernel, uses, parallel, p, g, s1, s2, s3, r, offsets, partial, ratio):
            floats, flags = scalars(r)
            run(p, g, (s1, s2), floats, flags)
    else:
        def step(kernel, uses, parallel, p, g, s1, s2, s3, r, offsets, partial, ratio):
            floats, flags = scalars(r)
            run(p, g, (s1, s2, s3), floats, flags)
    return step


_dense_forward_serial, _dense_forward_parallel = _dense_forward.serial, _dense_forward.parallel
_dense_backward_serial, _dense_backward_parallel = _dense_backward.serial, _dense_backward.parallel


def _layer_forward(parallel, x, w, b, out, pre, activation, wt):
    """The dense forward of an epoch: the parallel kernel for a layer of PARALLEL_MACS or more
    if ``parallel`` (literal: when false, no parallel kernel is compiled), else the serial one.
    For numba code only."""
    raise NotImplementedError("_layer_forward runs in compiled code only")


@overload(_layer_forward, prefer_literal=True, jit_options=_EPOCH_OPTIONS)
def _layer_forward_impl(parallel, x, w, b, out, pre, activation, wt):
    if not isinstance(parallel, types.BooleanLiteral):
        raise errors.RequireLiteralValue("parallel")
    if not parallel.literal_value:
        def serial(parallel, x, w, b, out, pre, activation, wt):
            _dense_forward_serial(x, w, b, out, pre, activation, wt)
        return serial

    def either(parallel, x, w, b, out, pre, activation, wt):
        if x.shape[0] * w.size >= PARALLEL_MACS:
            _dense_forward_parallel(x, w, b, out, pre, activation, wt)
        else:
            _dense_forward_serial(x, w, b, out, pre, activation, wt)
    return either


def _layer_backward(parallel, x, w, out, pre, dout, dw, db, dx, activation, xt, dzt):
    """The dense backward of an epoch, as :func:`_layer_forward`. For numba code only."""
    raise NotImplementedError("_layer_backward runs in compiled code only")


@overload(_layer_backward, prefer_literal=True, jit_options=_EPOCH_OPTIONS)
def _layer_backward_impl(parallel, x, w, out, pre, dout, dw, db, dx, activation, xt, dzt):
    if not isinstance(parallel, types.BooleanLiteral):
        raise errors.RequireLiteralValue("parallel")
    if not parallel.literal_value:
        def serial(parallel, x, w, out, pre, dout, dw, db, dx, activation, xt, dzt):
            _dense_backward_serial(x, w, out, pre, dout, dw, db, dx, activation, xt, dzt)
        return serial

    def either(parallel, x, w, out, pre, dout, dw, db, dx, activation, xt, dzt):
        if x.shape[0] * w.size >= PARALLEL_MACS:
            _dense_backward_parallel(x, w, out, pre, dout, dw, db, dx, activation, xt, dzt)
        else:
            _dense_backward_serial(x, w, out, pre, dout, dw, db, dx, activation, xt, dzt)
    return either


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pre_view(pres, offset, rows, fan_out, code):
    if code == GELU:
        return pres[offset:offset + rows * fan_out].reshape((rows, fan_out))
    return pres[:0].reshape((0, fan_out))


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _example_squares(x, delta):
    """``(1 / B) sum_i (|x_i|^2 + 1) |B delta_i|^2``: the rows' mean squared gradient norm of a
    dense layer (input ``x``, ``delta`` = dL/dZ of the batch's mean loss, ``B`` rows), in
    float64 (:mod:`fastopt.dynamics.noise`); the sums over a row vectorized (reassociated)."""
    rows = x.shape[0]
    total = 0.0
    for r in range(rows):
        a = 0.0
        for f in range(x.shape[1]):
            a += float(x[r, f]) * float(x[r, f])
        d = 0.0
        for f in range(delta.shape[1]):
            d += float(delta[r, f]) * float(delta[r, f])
        total += (a + 1.0) * d
    return total * rows


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _train_epoch(X, labels, targets, order, batch_size, layout, codes, loss, params, grads, outs,
                 deltas, pres, xb, yb, tb, scratch, stats, optimizer, uses, parallel_layers,
                 parallel_optimizer, s1, s2, s3, scalars, offsets, partial, ratio, max_norm,
                 skip_nonfinite, losses, wrongs, norms, squares):
    """The steps of one epoch; returns how many ran (fewer when a non-finite one is skipped).
    ``squares``: empty, or one entry per step for the rows' mean squared gradient norm.
    ``optimizer``, ``uses`` (its state arrays, see :func:`epoch_uses`), ``parallel_layers`` (some
    layer takes the parallel kernels) and ``parallel_optimizer`` are literals (see
    :func:`_epoch_entry`)."""
    n = order.size
    layers = layout.shape[0]
    steps = (n + batch_size - 1) // batch_size
    classes = layout[layers - 1, 2]
    track = squares.size > 0
    for step in range(steps):
        start = step * batch_size
        rows = min(batch_size, n - start)
        for r in range(rows):  # gather the shuffled batch
            row = order[start + r]
            xb[r, :] = X[row]
            if loss == CROSS_ENTROPY:
                yb[r] = labels[row]
            else:
                tb[r, :] = targets[row]
        x = xb[:rows]
        offset = 0
        for layer in range(layers):  # forward
            w_at, fan_in, fan_out, b_at = layout[layer]
            w = params[w_at:w_at + fan_in * fan_out].reshape((fan_in, fan_out))
            out = outs[offset:offset + rows * fan_out].reshape((rows, fan_out))
            pre = _pre_view(pres, offset, rows, fan_out, codes[layer])
            b = params[b_at:b_at + fan_out]
            wt = scratch[:fan_in * fan_out].reshape((fan_out, fan_in))
            _layer_forward(parallel_layers, x, w, b, out, pre, codes[layer], wt)
            x = out
            offset += batch_size * fan_out
        offset -= batch_size * classes
        logits = outs[offset:offset + rows * classes].reshape((rows, classes))
        dlogits = deltas[offset:offset + rows * classes].reshape((rows, classes))
        if loss == CROSS_ENTROPY:  # the mean as fastopt.MLP takes it: the sum times 1 / count
            _softmax_xent(logits, yb[:rows], dlogits, stats, params.dtype.type(1.0 / rows))
            losses[step] = stats[0] * (1.0 / rows)
        else:
            _mse(logits, tb[:rows], dlogits, stats, params.dtype.type(1.0 / (rows * classes)))
            losses[step] = stats[0] * (1.0 / (rows * classes))
        wrongs[step] = stats[1]
        for layer in range(layers - 1, -1, -1):  # backward
            w_at, fan_in, fan_out, b_at = layout[layer]
            w = params[w_at:w_at + fan_in * fan_out].reshape((fan_in, fan_out))
            out = outs[offset:offset + rows * fan_out].reshape((rows, fan_out))
            pre = _pre_view(pres, offset, rows, fan_out, codes[layer])
            delta = deltas[offset:offset + rows * fan_out].reshape((rows, fan_out))
            dw = grads[w_at:w_at + fan_in * fan_out].reshape((fan_in, fan_out))
            if layer > 0:
                offset -= batch_size * fan_in
                x = outs[offset:offset + rows * fan_in].reshape((rows, fan_in))
                dx = deltas[offset:offset + rows * fan_in].reshape((rows, fan_in))
            else:
                x = xb[:rows]
                dx = xb[:0]
            xt = scratch[:rows * fan_in].reshape((fan_in, rows))
            dzt = scratch[rows * fan_in:rows * (fan_in + fan_out)].reshape((fan_out, rows))
            db = grads[b_at:b_at + fan_out]
            _layer_backward(parallel_layers, x, w, out, pre, delta, dw, db, dx, codes[layer], xt,
                            dzt)
            if track:
                if layer == layers - 1:
                    squares[step] = 0.0
                squares[step] += _example_squares(x, delta)
        norm = math.sqrt(_sum_squares(grads))
        norms[step] = norm
        if skip_nonfinite and not math.isfinite(norm):
            return step + 1
        if max_norm > 0 and norm > max_norm:
            _scale(grads, grads.dtype.type(max_norm / (norm + 1e-6)))
        _optimizer_step(optimizer, uses, parallel_optimizer, params, grads, s1, s2, s3,
                        scalars[step], offsets, partial, ratio)
    return steps


@functools.cache
def _epoch_entry(optimizer, uses, parallel_layers, parallel_optimizer):
    """:func:`_train_epoch` with these four fixed: a closure, which numba compiles, and caches on
    disk, apart for each combination used, passing them on as literals, so that each compiles only
    the kernels it runs (an epoch of small layers no parallel kernel, each optimizer its own). A
    literal argument at the Python boundary instead (``numba.literally``) would retype the call,
    milliseconds, every time."""
    @numba.njit(**_EPOCH_OPTIONS)
    def entry(X, labels, targets, order, batch_size, layout, codes, loss, params, grads, outs,
              deltas, pres, xb, yb, tb, scratch, stats, s1, s2, s3, scalars, offsets, partial,
              ratio, max_norm, skip_nonfinite, losses, wrongs, norms, squares):
        return _train_epoch(X, labels, targets, order, batch_size, layout, codes, loss, params,
                            grads, outs, deltas, pres, xb, yb, tb, scratch, stats, optimizer,
                            uses, parallel_layers, parallel_optimizer, s1, s2, s3, scalars, offsets,
                            partial, ratio, max_norm, skip_nonfinite, losses, wrongs, norms,
                            squares)
    return entry


def train_epoch(X, labels, targets, order, batch_size, layout, codes, loss, params, grads,
                optimizer, states, scalars, max_norm, skip_nonfinite, squares=False):
    """One epoch of minibatch training in one compiled call: the contract of
    :mod:`fastopt.nn.reference`. The layer kernels are the serial ones; the optimizer step is
    ``cpu_optim``'s serial kernel. Returns ``(losses, wrongs, norms)`` of the steps run, and
    their ``squares`` with ``squares=True``."""
    n = order.size
    steps = -(-n // batch_size)
    widths = layout[:, 2]
    total = int(batch_size * widths.sum())
    dtype = params.dtype
    outs, deltas = np.empty(total, dtype), np.empty(total, dtype)
    pres = np.empty(total if (codes == GELU).any() else 0, dtype)
    xb = np.empty((batch_size, X.shape[1]), dtype)
    yb = np.empty(batch_size, np.int64)
    tb = np.empty((batch_size if loss == MSE else 0, int(widths[-1])), dtype)
    stats = np.zeros(2)
    losses, wrongs, norms = np.empty(steps), np.empty(steps), np.empty(steps)
    example_squares = np.empty(steps if squares else 0)
    empty = np.empty(0, dtype)
    s1, s2, s3 = [empty if s is None else s for s in (*states, None, None, None)[:3]]
    lamb = optimizer == LAMB
    offsets = np.array([0, params.size], np.int64)
    partial = np.empty(((params.size + _optim.LAMB_CHUNK - 1) // _optim.LAMB_CHUNK + 1
                        if lamb else 0, 2))
    ratio = np.empty(1, dtype)
    fan_in, fan_out = layout[:, 1], layout[:, 2]
    scratch = np.empty(int(max((fan_in * fan_out).max(), batch_size * (fan_in + fan_out).max())),
                       dtype)
    parallel_layers = bool((batch_size * fan_in * fan_out >= PARALLEL_MACS).any())
    parallel_optimizer = params.size >= _optim.PARALLEL_THRESHOLD
    uses = epoch_uses(int(optimizer), scalars[0]) if len(scalars) else 0
    entry = _epoch_entry(int(optimizer), uses, parallel_layers, bool(parallel_optimizer))
    ran = entry(X, labels, targets, order, batch_size, layout, codes, loss, params, grads, outs,
                deltas, pres, xb, yb, tb, scratch, stats, s1, s2, s3, scalars, offsets, partial,
                ratio, float(max_norm), bool(skip_nonfinite), losses, wrongs, norms,
                example_squares)
    if squares:
        return losses[:ran], wrongs[:ran], norms[:ran], example_squares[:ran]
    return losses[:ran], wrongs[:ran], norms[:ran]
