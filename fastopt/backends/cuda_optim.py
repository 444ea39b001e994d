"""The ``cuda`` backend: numba-cuda optimizer kernels, one element per thread in a grid-stride loop.

Each kernel compiles lazily, once per dtype: hyperparameters arrive as scalars of the arrays' dtype
and mode flags as ``bool`` runtime arguments, so changing either never recompiles. As in
:mod:`fastopt.backends.cpu_optim`, the launchers flatten the arrays (a view, no copy, for the
C-contiguous arrays the contract guarantees) and precompute ``1 - beta`` style constants in the
array dtype, so a float32 kernel never promotes to float64. A step launches on the default stream
and neither allocates, copies nor synchronizes (LAMB allocates its scratch sums on its first step
for each layout, then reuses them).

Launch configuration lives in :func:`launch_config`: :data:`THREADS_PER_BLOCK` threads per block and
enough blocks to cover the array, capped at :data:`BLOCKS_PER_SM` per SM (a few waves; the
grid-stride loop covers the rest). Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) blocks are
tiny and few, so small test arrays span several blocks and the grid-stride loop iterates.
"""

import functools
import math
import warnings

import numba
import numpy as np
from numba import cuda

#: True under the CUDA simulator, where each thread runs in Python.
SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

#: Threads per block.
THREADS_PER_BLOCK = 4 if SIMULATOR else 256
#: The grid holds at most this many blocks per SM.
BLOCKS_PER_SM = 32
#: The grid size cap under the simulator.
SIMULATOR_MAX_BLOCKS = 4
#: LAMB's segmented passes give each block chunks of this many elements (each chunk's piece of a
#: tensor is one block's fixed-tree sum; a tensor's pieces are then summed in order).
LAMB_CHUNK = 4 * THREADS_PER_BLOCK if SIMULATOR else 16 * THREADS_PER_BLOCK


@functools.cache
def _max_blocks():
    if SIMULATOR:
        return SIMULATOR_MAX_BLOCKS
    return BLOCKS_PER_SM * cuda.get_current_device().MULTIPROCESSOR_COUNT


def launch_config(n):
    """``(blocks, threads_per_block)`` for an elementwise kernel over ``n >= 1`` elements."""
    threads = THREADS_PER_BLOCK
    return min((n + threads - 1) // threads, _max_blocks()), threads


@functools.cache
def _configured(kernel, blocks, threads):
    # Configured once per grid size and reused. A small array fills few blocks by nature, so
    # numba-cuda's warning about grids under 128 blocks has nothing to tell here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        return kernel[blocks, threads]


def launch(kernel, n, *args):
    """Runs the elementwise ``kernel`` over ``n >= 1`` elements with :func:`launch_config`."""
    blocks, threads = launch_config(n)
    if SIMULATOR:  # the simulator's kernel[...] reconfigures the kernel itself: nothing to cache
        kernel[blocks, threads](*args)
    else:
        _configured(kernel, blocks, threads)(*args)


def device_summary():
    """The device the kernels run on, in words: name, compute capability and SM count."""
    if SIMULATOR:
        return "CUDA simulator"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    major, minor = device.compute_capability
    return f"{name}, compute capability {major}.{minor}, {device.MULTIPROCESSOR_COUNT} SMs"


@cuda.jit
def _sgd(p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov, first_step,
         scale):
    """d = s*g + wd*p; b = d (first step) or mu*b + (1-tau)*d;
    d = d + mu*b (Nesterov) or b (heavy ball); p -= lr*d

    See :func:`fastopt.reference.sgd`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        if momentum != 0:
            b = d if first_step else momentum * buf[i] + one_minus_dampening * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d
        i += stride


@cuda.jit
def _adagrad(p, g, state_sum, weight_decay, eps, clr, scale):
    """d = s*g + wd*p; v += d^2; p -= clr * d / (sqrt(v) + eps)

    See :func:`fastopt.reference.adagrad`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] -= clr * d / (math.sqrt(s) + eps)
        i += stride


@cuda.jit
def _rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay,
             momentum, centered, scale):
    """d = s*g + wd*p; v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v - gbar^2 or v) + eps;
    b = mu*b + d/den, p -= lr*b  (mu > 0)  or  p -= lr*d/den

    See :func:`fastopt.reference.rmsprop`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        v = alpha * square_avg[i] + one_minus_alpha * d * d
        square_avg[i] = v
        if centered:
            a = alpha * grad_avg[i] + one_minus_alpha * d
            grad_avg[i] = a
            v = v - a * a
        denom = math.sqrt(v) + eps
        if momentum > 0:
            b = momentum * buf[i] + d / denom
            buf[i] = b
            p[i] -= lr * b
        else:
            p[i] -= lr * d / denom
        i += stride


@cuda.jit
def _adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1, beta2,
          one_minus_beta2, eps, weight_decay, decay, amsgrad, step_size, bias_correction2_sqrt,
          scale):
    """p *= decay (AdamW) or d = s*g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) + eps)

    See :func:`fastopt.reference.adam`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        x = p[i] * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        p[i] = x - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)
        i += stride


@cuda.jit
def _adamax(p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps, weight_decay, clr, scale):
    """d = s*g + wd*p; m = b1*m + (1-b1)*d; u = max(b2*u, |d| + eps); p -= clr * m / u

    See :func:`fastopt.reference.adamax`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        u = max(beta2 * exp_inf[i], abs(d) + eps)
        exp_avg[i] = m
        exp_inf[i] = u
        p[i] -= clr * m / u
        i += stride


@cuda.jit
def _nadam(p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
           weight_decay, decay, grad_coef, exp_avg_coef, bias_correction2, scale):
    """p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    den = sqrt(v / (1-b2^t)) + eps; p -= grad_coef * d / den + exp_avg_coef * m / den

    See :func:`fastopt.reference.nadam`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        x = p[i] * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = math.sqrt(v / bias_correction2) + eps
        p[i] = x - grad_coef * d / denom - exp_avg_coef * m / denom
        i += stride


@cuda.jit
def _radam(p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
           weight_decay, decay, rectify, step_size, bias_correction2_sqrt, scale):
    """p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    p -= step_size * m * sqrt(1-b2^t) / (sqrt(v) + eps)  (rectified)  or  step_size * m

    See :func:`fastopt.reference.radam`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        x = p[i] * decay
        if weight_decay != 0:
            d += weight_decay * x
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if rectify:
            p[i] = x - step_size * m * (bias_correction2_sqrt / (math.sqrt(v) + eps))
        else:
            p[i] = x - step_size * m
        i += stride


@cuda.jit
def _adadelta(p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay, scale):
    """d = s*g + wd*p; v = rho*v + (1-rho)*d^2; delta = sqrt(a + eps) / sqrt(v + eps) * d;
    a = rho*a + (1-rho)*delta^2; p -= lr * delta

    See :func:`fastopt.reference.adadelta`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        if weight_decay != 0:
            d += weight_decay * p[i]
        v = rho * square_avg[i] + one_minus_rho * d * d
        a = acc_delta[i]
        delta = math.sqrt(a + eps) / math.sqrt(v + eps) * d
        square_avg[i] = v
        acc_delta[i] = rho * a + one_minus_rho * delta * delta
        p[i] -= lr * delta
        i += stride


@cuda.jit
def _lion(p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay, one, scale):
    """c = b1*m + (1-b1)*d; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*d

    See :func:`fastopt.reference.lion`.
    """
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        d = g[i] * scale
        m = exp_avg[i]
        c = beta1 * m + one_minus_beta1 * d
        direction = one if c > 0 else (-one if c < 0 else c)  # sign(c): 0 and NaN stay
        p[i] = p[i] * decay - lr * direction
        exp_avg[i] = beta2 * m + one_minus_beta2 * d
        i += stride


@cuda.jit(device=True)
def _segment_holding(offsets, position):
    """The last s with offsets[s] <= position: the segment holding it, empty ones skipped"""
    lo = 0
    hi = offsets.size
    while lo < hi:
        mid = (lo + hi) // 2
        if offsets[mid] <= position:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@cuda.jit(device=True)
def _block_sum(cache, t):
    """cache[0] = sum of cache[:THREADS_PER_BLOCK], by a fixed tree; every thread calls it"""
    cuda.syncthreads()
    width = THREADS_PER_BLOCK // 2
    while width > 0:
        if t < width:
            cache[t] += cache[t + width]
        cuda.syncthreads()
        width //= 2


@cuda.jit
def _lamb_moments(p, g, exp_avg, exp_avg_sq, offsets, partial, beta1, one_minus_beta1, beta2,
                  one_minus_beta2, eps, weight_decay, bias_correction1, bias_correction2, scale):
    """m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p;
    partial[c + s] = (sum p^2, sum u^2) in float64 over the part of segment s in chunk c

    One block per chunk of :data:`LAMB_CHUNK` elements (grid-stride over chunks). Walking the
    array, c + s grows at every chunk or segment boundary: each piece has a slot of its own.
    """
    p_cache = cuda.shared.array(THREADS_PER_BLOCK, numba.float64)
    u_cache = cuda.shared.array(THREADS_PER_BLOCK, numba.float64)
    t = cuda.threadIdx.x
    segments = offsets.size - 1
    c = cuda.blockIdx.x
    while c * LAMB_CHUNK < p.size:
        first = c * LAMB_CHUNK
        stop = min(p.size, first + LAMB_CHUNK)
        s = _segment_holding(offsets, first)
        while s < segments and offsets[s] < stop:  # the same for every thread of the block
            pp = 0.0
            uu = 0.0
            i = max(offsets[s], first) + t
            while i < min(offsets[s + 1], stop):
                d = g[i] * scale
                m = beta1 * exp_avg[i] + one_minus_beta1 * d
                v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
                exp_avg[i] = m
                exp_avg_sq[i] = v
                x = p[i]
                u = (m / bias_correction1) / (math.sqrt(v / bias_correction2) + eps)
                if weight_decay != 0:
                    u += weight_decay * x
                pp += numba.float64(x) * numba.float64(x)
                uu += numba.float64(u) * numba.float64(u)
                i += THREADS_PER_BLOCK
            p_cache[t] = pp
            u_cache[t] = uu
            _block_sum(p_cache, t)
            _block_sum(u_cache, t)
            if t == 0:
                partial[c + s, 0] = p_cache[0]
                partial[c + s, 1] = u_cache[0]
            cuda.syncthreads()  # the caches are reused for the next piece
            s += 1
        c += cuda.gridDim.x


@cuda.jit
def _lamb_ratios(offsets, partial, lr, ratio):
    """ratio[s] = lr * ||p_s|| / ||u_s|| (lr alone when either norm is 0), one thread per
    segment summing its chunk pieces in order"""
    s = cuda.grid(1)
    stride = cuda.gridsize(1)
    while s < offsets.size - 1:
        pp = 0.0
        uu = 0.0
        if offsets[s + 1] > offsets[s]:
            for c in range(offsets[s] // LAMB_CHUNK, (offsets[s + 1] - 1) // LAMB_CHUNK + 1):
                pp += partial[c + s, 0]
                uu += partial[c + s, 1]
        r = math.sqrt(pp) / math.sqrt(uu) if pp > 0 and uu > 0 else 1.0
        ratio[s] = lr * r  # rounded to the arrays' dtype
        s += stride


@cuda.jit
def _lamb_update(p, exp_avg, exp_avg_sq, offsets, ratio, eps, weight_decay, bias_correction1,
                 bias_correction2):
    """u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p from the updated moments; p -= ratio[s] * u

    One block per chunk, as :func:`_lamb_moments`.
    """
    t = cuda.threadIdx.x
    segments = offsets.size - 1
    c = cuda.blockIdx.x
    while c * LAMB_CHUNK < p.size:
        first = c * LAMB_CHUNK
        stop = min(p.size, first + LAMB_CHUNK)
        s = _segment_holding(offsets, first)
        while s < segments and offsets[s] < stop:
            step = ratio[s]
            i = max(offsets[s], first) + t
            while i < min(offsets[s + 1], stop):
                x = p[i]
                u = (exp_avg[i] / bias_correction1) / (math.sqrt(exp_avg_sq[i] / bias_correction2)
                                                       + eps)
                if weight_decay != 0:
                    u += weight_decay * x
                p[i] = x - step * u
                i += THREADS_PER_BLOCK
            s += 1
        c += cuda.gridDim.x


def _flat(a):
    # A view for C-contiguous arrays (numba raises rather than copy); 1-D arrays, the unused
    # empty state among them, pass as they are.
    return a if a.ndim == 1 else a.reshape(a.size)


def _signed(grad_scale, maximize):
    # -(g*s) == g*(-s) exactly, so maximize costs nothing inside the loop.
    return -grad_scale if maximize else grad_scale


def _decay_and_l2(param, lr, weight_decay, decoupled):
    # Decoupled decay scales p by (1 - lr*wd) and adds no L2 term; L2 scales by 1 and adds wd*p.
    one, zero = param.dtype.type(1), param.dtype.type(0)
    return (one - lr * weight_decay, zero) if decoupled else (one, weight_decay)


def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    """SGD step in place; formula in :func:`fastopt.reference.sgd`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    launch(_sgd, param.size, _flat(param), _flat(grad), _flat(momentum_buffer), lr, weight_decay,
           momentum, one - dampening, nesterov, first_step, _signed(grad_scale, maximize))


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    """Adagrad step in place; formula in :func:`fastopt.reference.adagrad`."""
    if param.size == 0:
        return
    launch(_adagrad, param.size, _flat(param), _flat(grad), _flat(state_sum), weight_decay, eps,
           clr, _signed(grad_scale, maximize))


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    """RMSprop step in place; formula in :func:`fastopt.reference.rmsprop`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    launch(_rmsprop, param.size, _flat(param), _flat(grad), _flat(square_avg), _flat(grad_avg),
           _flat(momentum_buffer), lr, alpha, one - alpha, eps, weight_decay, momentum, centered,
           _signed(grad_scale, maximize))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    """Adam/AdamW step in place; formula in :func:`fastopt.reference.adam`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    decay, l2 = _decay_and_l2(param, lr, weight_decay, decoupled)
    launch(_adam, param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq),
           _flat(max_exp_avg_sq), beta1, one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad,
           step_size, bias_correction2_sqrt, _signed(grad_scale, maximize))


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    """Adamax step in place; formula in :func:`fastopt.reference.adamax`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    launch(_adamax, param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_inf), beta1,
           one - beta1, beta2, eps, weight_decay, clr, _signed(grad_scale, maximize))


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    """NAdam step in place; formula in :func:`fastopt.reference.nadam`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    decay, l2 = _decay_and_l2(param, lr, weight_decay, decoupled)
    launch(_nadam, param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq),
           beta1, one - beta1, beta2, one - beta2, eps, l2, decay, grad_coef, exp_avg_coef,
           bias_correction2, _signed(grad_scale, maximize))


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    """RAdam step in place; formula in :func:`fastopt.reference.radam`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    decay, l2 = _decay_and_l2(param, lr, weight_decay, decoupled)
    launch(_radam, param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq),
           beta1, one - beta1, beta2, one - beta2, eps, l2, decay, rectify, step_size,
           bias_correction2_sqrt, _signed(grad_scale, maximize))


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    """Adadelta step in place; formula in :func:`fastopt.reference.adadelta`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    launch(_adadelta, param.size, _flat(param), _flat(grad), _flat(square_avg), _flat(acc_delta),
           lr, rho, one - rho, eps, weight_decay, _signed(grad_scale, maximize))


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    """Lion step in place; formula in :func:`fastopt.reference.lion`."""
    if param.size == 0:
        return
    one = param.dtype.type(1)
    launch(_lion, param.size, _flat(param), _flat(grad), _flat(exp_avg), lr, beta1, one - beta1,
           beta2, one - beta2, one - lr * weight_decay, one, _signed(grad_scale, maximize))


_lamb_buffers = {}  # (pieces, segments, dtype) -> (partial sums, per-segment steps)


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """LAMB step in place: the segmented reduction (one block per chunk), the per-segment ratios,
    then the update; formula in :func:`fastopt.reference.lamb`. Its scratch is allocated on the
    first step of each layout and reused."""
    n = param.size
    if n == 0:
        return
    one = param.dtype.type(1)
    chunks = (n + LAMB_CHUNK - 1) // LAMB_CHUNK
    segments = segment_offsets.size - 1
    key = (chunks + segments, segments, param.dtype)
    if key not in _lamb_buffers:
        _lamb_buffers[key] = (cuda.device_array((chunks + segments, 2), np.float64),
                              cuda.device_array(segments, param.dtype))
    partial, ratio = _lamb_buffers[key]
    p, m, v = _flat(param), _flat(exp_avg), _flat(exp_avg_sq)
    by_chunk = chunks * THREADS_PER_BLOCK  # launch() then gives one block per chunk, capped
    launch(_lamb_moments, by_chunk, p, _flat(grad), m, v, segment_offsets, partial, beta1,
           one - beta1, beta2, one - beta2, eps, weight_decay, bias_correction1, bias_correction2,
           _signed(grad_scale, maximize))
    launch(_lamb_ratios, segments, segment_offsets, partial, np.float64(lr), ratio)
    launch(_lamb_update, by_chunk, p, m, v, segment_offsets, ratio, eps, weight_decay,
           bias_correction1, bias_correction2)


@cuda.jit
def _partial_sums_of_squares(g, partial):
    """partial[block] = sum of g_i^2 (float64) over this block's grid-stride share"""
    cache = cuda.shared.array(THREADS_PER_BLOCK, numba.float64)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    s = 0.0
    while i < g.size:
        x = numba.float64(g[i])
        s += x * x
        i += stride
    t = cuda.threadIdx.x
    cache[t] = s
    cuda.syncthreads()
    width = THREADS_PER_BLOCK // 2
    while width > 0:  # a fixed tree: the same order every run
        if t < width:
            cache[t] += cache[t + width]
        cuda.syncthreads()
        width //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@cuda.jit
def _sum_in_order(partial, out):
    """out[0] = partial[0] + partial[1] + ... (one thread, in order)"""
    if cuda.grid(1) == 0:
        s = 0.0
        for b in range(partial.size):
            s += partial[b]
        out[0] = s


_reduction_buffers = {}


def sum_of_squares(grad):
    """The squared global norm in float64, deterministic (fixed grid and summation order); copies
    one number back to the host. Formula in :func:`fastopt.reference.sum_of_squares`."""
    if grad.size == 0:
        return 0.0
    blocks, threads = launch_config(grad.size)
    if blocks not in _reduction_buffers:
        _reduction_buffers[blocks] = (cuda.device_array(blocks, np.float64),
                                      cuda.device_array(1, np.float64))
    partial, out = _reduction_buffers[blocks]
    launch(_partial_sums_of_squares, grad.size, _flat(grad), partial)
    launch(_sum_in_order, 1, partial, out)
    return float(out.copy_to_host()[0])
