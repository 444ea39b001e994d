"""The ``cpu`` backend of the MLP family: numba kernels, ``prange`` over row blocks, cached on disk.

Kernel contract and formulas: :mod:`fastopt.reference_mlp`. Every matrix product is written so that
its innermost loop runs along a contiguous row of the output and vectorizes:

- forward ``Z = X W + b``: for a block of 4 rows of ``X``, ``Z[i,:] += X[i,k] * W[k,:]`` over ``k``
  (each row of ``W`` is loaded once per 4 rows), then the activation on the block while it is in
  cache (the fused bias + activation);
- ``dW = X^T dZ``: for a block of 4 rows of ``dW``, ``dW[k,:] += X[i,k] * dZ[i,:]`` over ``i``;
- ``dX = dZ W^T``: dot products of rows of ``dZ`` with rows of ``W`` (a reduction: ``fastmath``
  reassociation lets it vectorize).

Layers narrower than :data:`NARROW` outputs (an output layer of 10 classes) would leave those
row loops a few elements long, so they work along the inputs instead, with a transposed copy of
``W``: forward by dot products of rows of ``X`` and of ``W^T``, ``dX[i,:] += dZ[i,j] W^T[j,:]``,
and ``dW^T[j,:] += dZ[i,j] X[i,:]`` (serial: such layers are small), stored transposed.

Each output element is accumulated by one thread in a fixed order, so results do not depend on the
thread count. Layers with fewer than :data:`PARALLEL_MACS` multiply-adds run on the calling thread,
where starting the thread pool would cost more than the product.
"""

import functools
import math

import numba
import numpy as np
from numba import prange

from ..reference_mlp import GELU, IDENTITY, RELU, SIGMOID, TANH

#: Layers with fewer multiply-adds (batch x fan_in x fan_out) than this run on one thread.
PARALLEL_MACS = 1 << 20
#: Layers with fewer outputs than this (too few for the vectorized row updates) take their
#: products along the rows of a transposed copy of w instead.
NARROW = 16

# error_model="numpy": IEEE division, no zero checks that would keep loops from vectorizing.
# fastmath contract (FMA) and reassoc (vectorized dot products), never the finite-math flags:
# inf and nan must propagate as in the reference.
_OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _serial_and_parallel(body):
    serial = numba.njit(**_OPTIONS)(body)
    parallel = numba.njit(parallel=True, **_OPTIONS)(body)

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
def _rows_times_matrix(x, i0, i1, w, out):
    """``out[i0:i1] += x[i0:i1] @ w``: row blocks of 4 share each loaded row of ``w``."""
    fan_in = x.shape[1]
    fan_out = w.shape[1]
    i = i0
    while i + 4 <= i1:
        o0, o1, o2, o3 = out[i], out[i + 1], out[i + 2], out[i + 3]
        for k in range(fan_in):
            a0, a1, a2, a3 = x[i, k], x[i + 1, k], x[i + 2, k], x[i + 3, k]
            wk = w[k]
            for j in range(fan_out):
                o0[j] += a0 * wk[j]
                o1[j] += a1 * wk[j]
                o2[j] += a2 * wk[j]
                o3[j] += a3 * wk[j]
        i += 4
    while i < i1:
        oi = out[i]
        for k in range(fan_in):
            a = x[i, k]
            wk = w[k]
            for j in range(fan_out):
                oi[j] += a * wk[j]
        i += 1


@numba.njit(**_OPTIONS)
def _rows_dot_columns(x, i0, i1, wt, b, out):
    """out[i0:i1] = x[i0:i1] @ wt^T + b for a narrow output: dot products along rows of x and of
    the transposed weights (contiguous, vectorized by reassociation)"""
    zero = out.dtype.type(0)
    for i in range(i0, i1):
        xi = x[i]
        for j in range(wt.shape[0]):
            wj = wt[j]
            acc = zero
            for k in range(xi.size):
                acc += xi[k] * wj[k]
            out[i, j] = acc + b[j]


@_serial_and_parallel
def _dense_forward(x, w, b, out, pre, activation):
    """out = act(x @ w + b), pre = x @ w + b (gelu), 16-row blocks over threads"""
    batch = x.shape[0]
    fan_out = w.shape[1]
    narrow = fan_out < NARROW
    wt = np.ascontiguousarray(w.T) if narrow else w[:0]
    blocks = (batch + 15) // 16
    for block in prange(blocks):
        i0 = block * 16
        i1 = min(i0 + 16, batch)
        if narrow:
            _rows_dot_columns(x, i0, i1, wt, b, out)
        else:
            for i in range(i0, i1):
                out[i, :] = b
            _rows_times_matrix(x, i0, i1, w, out)
        for i in range(i0, i1):
            _activate_row(out[i], pre[i] if activation == GELU else out[i], activation)


@_serial_and_parallel
def _dense_backward(x, w, out, pre, dout, dw, db, dx, activation):
    """dZ = dout * act' (in dout); dX = dZ @ w^T; dW = x^T @ dZ; db = sum of rows of dZ"""
    batch, fan_in = x.shape
    fan_out = w.shape[1]
    zero = dout.dtype.type(0)
    narrow = fan_out < NARROW
    wt = np.ascontiguousarray(w.T) if narrow and dx.size else w[:0]
    blocks = (batch + 15) // 16
    for block in prange(blocks):
        i0 = block * 16
        i1 = min(i0 + 16, batch)
        if activation != IDENTITY:
            for i in range(i0, i1):
                _derivative_row(dout[i], out[i], pre[i] if activation == GELU else out[i],
                                activation)
        if dx.size and narrow:  # dX[i, :] = sum_j dZ[i, j] w^T[j, :], along rows of w^T
            for i in range(i0, i1):
                dxi = dx[i]
                dxi[:] = zero
                for j in range(fan_out):
                    d = dout[i, j]
                    wj = wt[j]
                    for k in range(fan_in):
                        dxi[k] += d * wj[k]
        elif dx.size:
            for i in range(i0, i1):
                di = dout[i]
                for k in range(fan_in):
                    wk = w[k]
                    acc = zero
                    for j in range(fan_out):
                        acc += di[j] * wk[j]
                    dx[i, k] = acc
    if narrow:  # dW^T[j, :] = sum_i dZ[i, j] x[i, :], along rows of x, then transposed
        dwt = np.zeros((fan_out, fan_in), dw.dtype)
        for i in range(batch):
            xi = x[i]
            for j in range(fan_out):
                d = dout[i, j]
                dj = dwt[j]
                for k in range(fan_in):
                    dj[k] += d * xi[k]
        dw[:, :] = dwt.T
    # dW[k, :] = sum_i x[i, k] dZ[i, :], blocks of 4 rows of dW per thread
    kblocks = (fan_in + 3) // 4 if not narrow else 0
    for kb in prange(kblocks):
        k0 = kb * 4
        k1 = min(k0 + 4, fan_in)
        for k in range(k0, k1):
            dw[k, :] = zero
        if k1 - k0 == 4:
            d0, d1, d2, d3 = dw[k0], dw[k0 + 1], dw[k0 + 2], dw[k0 + 3]
            for i in range(batch):
                a0, a1, a2, a3 = x[i, k0], x[i, k0 + 1], x[i, k0 + 2], x[i, k0 + 3]
                di = dout[i]
                for j in range(fan_out):
                    d0[j] += a0 * di[j]
                    d1[j] += a1 * di[j]
                    d2[j] += a2 * di[j]
                    d3[j] += a3 * di[j]
        else:
            for k in range(k0, k1):
                dk = dw[k]
                for i in range(batch):
                    a = x[i, k]
                    di = dout[i]
                    for j in range(fan_out):
                        dk[j] += a * di[j]
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


def dense_forward(x, w, b, out, pre, activation):
    """In place: :func:`fastopt.reference_mlp.dense_forward`."""
    _dense_forward(x.shape[0] * w.size, x, w, b, out, pre, activation)


def dense_backward(x, w, out, pre, dout, dw, db, dx, activation):
    """In place: :func:`fastopt.reference_mlp.dense_backward`; ``dout`` becomes dZ."""
    _dense_backward(x.shape[0] * w.size, x, w, out, pre, dout, dw, db, dx, activation)


def softmax_xent(logits, labels, dlogits, stats, scale):
    """In place: :func:`fastopt.reference_mlp.softmax_cross_entropy` (sums, not means)."""
    _softmax_xent(logits, labels, dlogits, stats, scale)


def mse(out, target, dout, stats, scale):
    """In place: :func:`fastopt.reference_mlp.mse` (sums, not means)."""
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
# shuffled batch, forward, loss, backward, gradient norm, clipping and the optimizer update, with
# the per-step history written into arrays. It uses the serial layer kernels: it is meant for
# layers below PARALLEL_MACS, where they are what the per-step path would run too.

_dense_forward_serial = _dense_forward.serial
_dense_backward_serial = _dense_backward.serial

#: Optimizer kinds of :func:`train_epoch`; the update formulas are those of fastopt.reference.
SGD, ADAGRAD, RMSPROP, ADAM = range(4)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _optimizer_update(kind, p, g, s1, s2, s3, hyper, nesterov, maximize, centered, amsgrad,
                      decoupled, lr, step_scalar, bias_correction2_sqrt, first_step):
    """One step of SGD / Adagrad / RMSprop / Adam(W) on the flat parameters, as in
    fastopt.reference (torch.optim semantics). hyper: SGD (weight_decay, momentum, dampening);
    Adagrad (weight_decay, eps); RMSprop (alpha, eps, weight_decay, momentum); Adam (beta1, beta2,
    eps, weight_decay). step_scalar: Adagrad's clr, Adam's lr / (1 - beta1^t)."""
    one = p.dtype.type(1)
    if kind == SGD:
        weight_decay, momentum, dampening = hyper[0], hyper[1], hyper[2]
        for i in range(p.size):
            d = -g[i] if maximize else g[i]
            if weight_decay != 0:
                d += weight_decay * p[i]
            if momentum != 0:
                b = d if first_step else momentum * s1[i] + (one - dampening) * d
                s1[i] = b
                d = d + momentum * b if nesterov else b
            p[i] -= lr * d
    elif kind == ADAGRAD:
        weight_decay, eps = hyper[0], hyper[1]
        for i in range(p.size):
            d = -g[i] if maximize else g[i]
            if weight_decay != 0:
                d += weight_decay * p[i]
            s = s1[i] + d * d
            s1[i] = s
            p[i] -= step_scalar * d / (math.sqrt(s) + eps)
    elif kind == RMSPROP:
        alpha, eps, weight_decay, momentum = hyper[0], hyper[1], hyper[2], hyper[3]
        for i in range(p.size):
            d = -g[i] if maximize else g[i]
            if weight_decay != 0:
                d += weight_decay * p[i]
            v = alpha * s1[i] + (one - alpha) * d * d
            s1[i] = v
            if centered:
                a = alpha * s2[i] + (one - alpha) * d
                s2[i] = a
                v = v - a * a
            denom = math.sqrt(v) + eps
            if momentum > 0:
                b = momentum * s3[i] + d / denom
                s3[i] = b
                p[i] -= lr * b
            else:
                p[i] -= lr * d / denom
    else:
        beta1, beta2, eps, weight_decay = hyper[0], hyper[1], hyper[2], hyper[3]
        decay = one - lr * weight_decay if decoupled else one
        for i in range(p.size):
            d = -g[i] if maximize else g[i]
            x = p[i] * decay
            if weight_decay != 0 and not decoupled:
                d += weight_decay * x
            m = beta1 * s1[i] + (one - beta1) * d
            v = beta2 * s2[i] + (one - beta2) * d * d
            s1[i] = m
            s2[i] = v
            if amsgrad:
                v = max(s3[i], v)
                s3[i] = v
            p[i] = x - step_scalar * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pre_view(pres, offset, rows, fan_out, code):
    if code == GELU:
        return pres[offset:offset + rows * fan_out].reshape((rows, fan_out))
    return pres[:0].reshape((0, fan_out))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _train_epoch(X, y, order, batch_size, layout, codes, params, grads, outs, deltas, pres, xb,
                 yb, stats, kind, hyper, flags, s1, s2, s3, lrs, step_scalars, bias_corrections,
                 first_step, max_norm, losses, wrongs, norms):
    n = order.size
    layers = layout.shape[0]
    steps = (n + batch_size - 1) // batch_size
    for step in range(steps):
        start = step * batch_size
        rows = min(batch_size, n - start)
        for r in range(rows):  # gather the shuffled batch
            xb[r, :] = X[order[start + r]]
            yb[r] = y[order[start + r]]
        x = xb[:rows]
        offset = 0
        for layer in range(layers):  # forward
            w_at, fan_in, fan_out, b_at = layout[layer]
            w = params[w_at:w_at + fan_in * fan_out].reshape((fan_in, fan_out))
            out = outs[offset:offset + rows * fan_out].reshape((rows, fan_out))
            pre = _pre_view(pres, offset, rows, fan_out, codes[layer])
            _dense_forward_serial(x, w, params[b_at:b_at + fan_out], out, pre, codes[layer])
            x = out
            offset += batch_size * fan_out
        classes = layout[layers - 1, 2]
        offset -= batch_size * classes
        logits = outs[offset:offset + rows * classes].reshape((rows, classes))
        dlogits = deltas[offset:offset + rows * classes].reshape((rows, classes))
        _softmax_xent(logits, yb[:rows], dlogits, stats, params.dtype.type(1.0 / rows))
        losses[step] = stats[0] / rows
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
            _dense_backward_serial(x, w, out, pre, delta, dw, grads[b_at:b_at + fan_out], dx,
                                   codes[layer])
        norm = math.sqrt(_sum_squares(grads))
        norms[step] = norm
        if max_norm > 0 and norm > max_norm:
            _scale(grads, grads.dtype.type(max_norm / (norm + 1e-6)))
        _optimizer_update(kind, params, grads, s1, s2, s3, hyper, flags[0], flags[1], flags[2],
                          flags[3], flags[4], lrs[step], step_scalars[step],
                          bias_corrections[step], first_step and step == 0)


def train_epoch(X, y, order, batch_size, layout, codes, params, grads, kind, hyper, flags,
                states, lrs, step_scalars, bias_corrections, first_step, max_norm):
    """One epoch of minibatch training of a cross-entropy MLP in one compiled call.

    ``X`` (rows x features) and ``y`` (int64) are checked; ``order`` is the epoch's row order;
    ``layout`` (int64, one row per layer: weight offset, fan_in, fan_out, bias offset into
    ``params``/``grads``); ``codes`` the activation of each layer; ``kind`` one of
    :data:`SGD`, :data:`ADAGRAD`, :data:`RMSPROP`, :data:`ADAM` with ``hyper`` (see
    :func:`_optimizer_update`), ``flags`` (nesterov, maximize, centered, amsgrad, decoupled) and up
    to three state arrays; per-step ``lrs``, ``step_scalars`` (Adagrad's clr, Adam's
    lr / (1 - beta1^t)) and ``bias_corrections`` (Adam's sqrt(1 - beta2^t)); ``first_step``:
    the momentum buffer starts at this epoch's first gradient; ``max_norm`` > 0 clips.
    Returns ``(losses, wrong counts, gradient norms)``, one entry per step.
    """
    n = order.size
    steps = -(-n // batch_size)
    widths = layout[:, 2]
    total = int(batch_size * widths.sum())
    dtype = params.dtype
    outs, deltas = np.empty(total, dtype), np.empty(total, dtype)
    pres = np.empty(total if (codes == 4).any() else 0, dtype)
    xb = np.empty((batch_size, X.shape[1]), dtype)
    yb = np.empty(batch_size, np.int64)
    stats = np.zeros(2)
    losses, wrongs, norms = np.empty(steps), np.empty(steps), np.empty(steps)
    empty = np.empty(0, dtype)
    s1, s2, s3 = [s if s is not None else empty for s in (*states, None, None)][:3]
    _train_epoch(X, y, order, batch_size, layout, codes, params, grads, outs, deltas, pres, xb,
                 yb, stats, kind, hyper, flags, s1, s2, s3, lrs, step_scalars, bias_corrections,
                 first_step, max_norm, losses, wrongs, norms)
    return losses, wrongs, norms
