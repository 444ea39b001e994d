"""The ``cuda`` backend: numba-cuda optimizer kernels, one element per thread in a grid-stride loop.

Each kernel compiles lazily, once per dtype: hyperparameters arrive as scalars of the arrays' dtype
and mode flags as ``bool`` runtime arguments, so changing either never recompiles. The launchers
take the kernels' arguments from :mod:`fastopt.backends.elements.args` (the ``cpu`` backend computes
the same constants in its kernels' prologue): flat views of the arrays (no copy for the
C-contiguous arrays the contract guarantees) and ``1 - beta`` style constants in the array dtype,
so a float32 kernel never promotes to float64. A step launches on the default stream and neither
allocates, copies nor synchronizes (LAMB allocates its scratch sums on its first step for each
layout, then reuses them).

The math of each step is its element in :mod:`fastopt.backends.elements.optim`, shared with the
``cpu`` backend. ``<algo>_with_norm`` runs the same update and, in the same grid-stride pass, the
per-block sums of :func:`sum_of_squares`; their ordered sum lands in a device array (no copy back,
no synchronization), with the bits :func:`sum_of_squares` returns. Both kernels of every
algorithm are expanded from the templates :func:`_step` and :func:`_step_with_norm` (see
:func:`_steps`).

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

from fastopt._core import config
from fastopt.backends._numba import templates as templates
from fastopt.backends.elements import args as kernel_args
from fastopt.backends.elements.args import flat, signed
from fastopt.backends.elements.optim_legacy import make_elements

#: The element updates (see :mod:`fastopt.backends.elements.optim`), as device functions.
E = make_elements(cuda.jit(device=True))

#: The launchers take scalars already cast to the arrays' dtype (see :mod:`fastopt.backends`).
TAKES_PYTHON_FLOATS = False

#: True under the CUDA simulator, where each thread runs in Python.
SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

#: Threads per block.
THREADS_PER_BLOCK = config.CUDASIM_THREADS_PER_BLOCK if SIMULATOR else config.CUDA_THREADS_PER_BLOCK
#: The grid holds at most this many blocks per SM.
BLOCKS_PER_SM = config.CUDA_BLOCKS_PER_SM
#: The grid size cap under the simulator.
SIMULATOR_MAX_BLOCKS = config.CUDASIM_MAX_BLOCKS
#: LAMB's segmented passes give each block chunks of this many elements (each chunk's piece of a
#: tensor is one block's fixed-tree sum; a tensor's pieces are then summed in order).
LAMB_CHUNK = THREADS_PER_BLOCK * (config.CUDASIM_LAMB_CHUNK_BLOCKS if SIMULATOR
                                  else config.CUDA_LAMB_CHUNK_BLOCKS)


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


# ---- Block sums: a fixed tree per block, then the blocks in order -------------------------------

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


@cuda.jit(device=True)
def _store_block_sum(cache, s, partial):
    """partial[block] = the sum of every thread's s, by the fixed tree of _block_sum; every
    thread calls it"""
    t = cuda.threadIdx.x
    cache[t] = s
    _block_sum(cache, t)
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


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
    _store_block_sum(cache, s, partial)


@cuda.jit
def _sum_in_order(partial, out):
    """out[0] = partial[0] + partial[1] + ... (one thread, in order)"""
    if cuda.grid(1) == 0:
        s = 0.0
        for b in range(partial.size):
            s += partial[b]
        out[0] = s


# ---- The steps: a grid-stride loop over the element update, alone or summing the squares of g --
#
# Two templates for every algorithm (see _kernel_templates): ARGS stands for the parameters of its
# element update after (i, p, g), and _update for that update (E.<algo>_at).

def _update(i, p, g, *args):
    """The algorithm's element update in the templates below, bound by _steps"""
    raise NotImplementedError("a template's _update is bound when it is expanded")


def _step(p, g, ARGS):
    """Template: _update on every element, in a grid-stride loop"""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        _update(i, p, g, ARGS)
        i += stride


def _step_with_norm(p, g, ARGS, partial):
    """Template: _step, also setting partial[block] as _partial_sums_of_squares does"""
    cache = cuda.shared.array(THREADS_PER_BLOCK, numba.float64)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    s = 0.0
    while i < p.size:
        x = numba.float64(g[i])
        s += x * x
        _update(i, p, g, ARGS)
        i += stride
    _store_block_sum(cache, s, partial)


def _steps(name, update, formula):
    """``(step, step_with_norm)`` of the element update ``update``: the templates expanded as
    ``name`` and ``name + "_norm"``, with docstring ``formula``. ``step_with_norm`` also sets
    partial[block], its last argument, to the block's sum of g_i^2 as
    :func:`_partial_sums_of_squares` does."""
    args = templates.parameters(update, 3)
    doc = f"{formula}\n\n    See :func:`fastopt.optim.reference.{name.lstrip('_')}`.\n    "
    fused_doc = (f"{doc.rstrip()}\n\n    and, in the same pass, partial[block] = sum(g_i^2) over "
                 "the block's share, as _partial_sums_of_squares\n    ")
    return (cuda.jit(templates.expand(_step, name, args, update, doc)),
            cuda.jit(templates.expand(_step_with_norm, name + "_norm", args, update, fused_doc)))


@cuda.jit(device=True)
def _sgd_at(i, p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov, first_step,
            scale):
    """E.sgd_at; buf is used when momentum != 0"""
    E.sgd_at(i, p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov, first_step,
             scale, momentum != 0)


@cuda.jit(device=True)
def _rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay,
                momentum, centered, scale):
    """E.rmsprop_at; buf is used when momentum > 0"""
    E.rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay,
                 momentum, centered, scale, momentum > 0)


_sgd, _sgd_norm = _steps("_sgd", _sgd_at, """
    d = s*g + wd*p; b = d (first step) or mu*b + (1-tau)*d;
    d = d + mu*b (Nesterov) or b (heavy ball); p -= lr*d""")
_adagrad, _adagrad_norm = _steps("_adagrad", E.adagrad_at, """
    d = s*g + wd*p; v += d^2; p -= clr * d / (sqrt(v) + eps)""")
_rmsprop, _rmsprop_norm = _steps("_rmsprop", _rmsprop_at, """
    d = s*g + wd*p; v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v - gbar^2 or v) + eps;
    b = mu*b + d/den, p -= lr*b  (mu > 0)  or  p -= lr*d/den""")
_adam, _adam_norm = _steps("_adam", E.adam_at, """
    p *= decay (AdamW) or d = s*g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) + eps)""")
_adamax, _adamax_norm = _steps("_adamax", E.adamax_at, """
    d = s*g + wd*p; m = b1*m + (1-b1)*d; u = max(b2*u, |d| + eps); p -= clr * m / u""")
_nadam, _nadam_norm = _steps("_nadam", E.nadam_at, """
    p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    den = sqrt(v / (1-b2^t)) + eps; p -= grad_coef * d / den + exp_avg_coef * m / den""")
_radam, _radam_norm = _steps("_radam", E.radam_at, """
    p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    p -= step_size * m * sqrt(1-b2^t) / (sqrt(v) + eps)  (rectified)  or  step_size * m""")
_adadelta, _adadelta_norm = _steps("_adadelta", E.adadelta_at, """
    d = s*g + wd*p; v = rho*v + (1-rho)*d^2; delta = sqrt(a + eps) / sqrt(v + eps) * d;
    a = rho*a + (1-rho)*delta^2; p -= lr * delta""")
_lion, _lion_norm = _steps("_lion", E.lion_at, """
    c = b1*m + (1-b1)*d; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*d""")


# ---- LAMB: a segmented reduction (one block per chunk), the trust ratios, then the update ------

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
                m, v = E.lamb_moments(g[i], exp_avg[i], exp_avg_sq[i], beta1, one_minus_beta1,
                                      beta2, one_minus_beta2, scale)
                exp_avg[i] = m
                exp_avg_sq[i] = v
                x = p[i]
                u = E.lamb_direction(x, m, v, eps, weight_decay, bias_correction1,
                                     bias_correction2)
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
                p[i] = x - step * E.lamb_direction(x, exp_avg[i], exp_avg_sq[i], eps,
                                                   weight_decay, bias_correction1,
                                                   bias_correction2)
                i += THREADS_PER_BLOCK
            s += 1
        c += cuda.gridDim.x


def sgd(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale):
    """SGD step in place; formula in :func:`fastopt.optim.reference.sgd`."""
    if param.size:
        launch(_sgd, param.size, *kernel_args.sgd(
            param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
            first_step, grad_scale))


def adagrad(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale):
    """Adagrad step in place; formula in :func:`fastopt.optim.reference.adagrad`."""
    if param.size:
        launch(_adagrad, param.size, *kernel_args.adagrad(
            param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale))


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale):
    """RMSprop step in place; formula in :func:`fastopt.optim.reference.rmsprop`."""
    if param.size:
        launch(_rmsprop, param.size, *kernel_args.rmsprop(
            param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
            momentum, centered, maximize, grad_scale))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
         amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale):
    """Adam/AdamW step in place; formula in :func:`fastopt.optim.reference.adam`."""
    if param.size:
        launch(_adam, param.size, *kernel_args.adam(
            param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
            amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale))


def adamax(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
           grad_scale):
    """Adamax step in place; formula in :func:`fastopt.optim.reference.adamax`."""
    if param.size:
        launch(_adamax, param.size, *kernel_args.adamax(
            param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
            grad_scale))


def nadam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    """NAdam step in place; formula in :func:`fastopt.optim.reference.nadam`."""
    if param.size:
        launch(_nadam, param.size, *kernel_args.nadam(
            param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
            decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale))


def radam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
          decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale):
    """RAdam step in place; formula in :func:`fastopt.optim.reference.radam`."""
    if param.size:
        launch(_radam, param.size, *kernel_args.radam(
            param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
            decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale))


def adadelta(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
             grad_scale):
    """Adadelta step in place; formula in :func:`fastopt.optim.reference.adadelta`."""
    if param.size:
        launch(_adadelta, param.size, *kernel_args.adadelta(
            param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize, grad_scale))


def lion(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale):
    """Lion step in place; formula in :func:`fastopt.optim.reference.lion`."""
    if param.size:
        launch(_lion, param.size, *kernel_args.lion(
            param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale))


_lamb_buffers = {}  # (pieces, segments, dtype) -> (partial sums, per-segment steps)


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """LAMB step in place: the segmented reduction (one block per chunk), the per-segment ratios,
    then the update; formula in :func:`fastopt.optim.reference.lamb`. Its scratch is allocated on the
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
    p, m, v = flat(param), flat(exp_avg), flat(exp_avg_sq)
    by_chunk = chunks * THREADS_PER_BLOCK  # launch() then gives one block per chunk, capped
    launch(_lamb_moments, by_chunk, p, flat(grad), m, v, segment_offsets, partial, beta1,
           one - beta1, beta2, one - beta2, eps, weight_decay, bias_correction1, bias_correction2,
           signed(grad_scale, maximize))
    launch(_lamb_ratios, segments, segment_offsets, partial, np.float64(lr), ratio)
    launch(_lamb_update, by_chunk, p, m, v, segment_offsets, ratio, eps, weight_decay,
           bias_correction1, bias_correction2)


_reduction_buffers = {}  # blocks -> (per-block sums, one-element result)


def _reduction_buffers_for(n):
    """The scratch of a reduction over ``n`` elements with :func:`launch_config`'s grid."""
    blocks, _ = launch_config(n)
    if blocks not in _reduction_buffers:
        _reduction_buffers[blocks] = (cuda.device_array(blocks, np.float64),
                                      cuda.device_array(1, np.float64))
    return _reduction_buffers[blocks]


def _sum_of_squares_into(grad, out):
    """out[0] = the squared norm of grad, on the device: per-block sums, then their sum in order."""
    partial, _ = _reduction_buffers_for(grad.size)  # no blocks for an empty grad: the sum is 0
    if grad.size:
        launch(_partial_sums_of_squares, grad.size, flat(grad), partial)
    launch(_sum_in_order, 1, partial, out)


def sum_of_squares(grad):
    """The squared global norm in float64, deterministic (fixed grid and summation order); copies
    one number back to the host. Formula in :func:`fastopt.optim.reference.sum_of_squares`."""
    if grad.size == 0:
        return 0.0
    out = _reduction_buffers_for(grad.size)[1]
    _sum_of_squares_into(grad, out)
    return float(out.copy_to_host()[0])


def _launch_with_norm(kernel, n, norm_out, *args):
    """Runs the fused ``kernel`` over ``n`` elements, then ``norm_out[0]`` = the sum of its block
    sums in order: :func:`sum_of_squares`'s reduction, left on the device (no synchronization)."""
    partial, _ = _reduction_buffers_for(n)  # no blocks for n == 0: the sum is 0
    if n:
        launch(kernel, n, *args, partial)
    launch(_sum_in_order, 1, partial, norm_out)


# ---- Steps that also compute the gradient's sum of squares --------------------------------------

def sgd_with_norm(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov,
                  maximize, first_step, grad_scale, norm_out):
    """:func:`sgd`, also setting ``norm_out[0] = sum_of_squares(grad)`` (bit for bit) from the
    same pass over memory; ``norm_out`` is a float64 device array, written by a kernel: nothing
    is copied to the host and nothing waits."""
    _launch_with_norm(_sgd_norm, param.size, norm_out, *kernel_args.sgd(
        param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize,
        first_step, grad_scale))


def adagrad_with_norm(param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale,
                      norm_out):
    """:func:`adagrad` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_adagrad_norm, param.size, norm_out, *kernel_args.adagrad(
        param, grad, state_sum, weight_decay, eps, maximize, clr, grad_scale))


def rmsprop_with_norm(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                      weight_decay, momentum, centered, maximize, grad_scale, norm_out):
    """:func:`rmsprop` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_rmsprop_norm, param.size, norm_out, *kernel_args.rmsprop(
        param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
        momentum, centered, maximize, grad_scale))


def adam_with_norm(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                   weight_decay, amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt,
                   grad_scale, norm_out):
    """:func:`adam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_adam_norm, param.size, norm_out, *kernel_args.adam(
        param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
        amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt, grad_scale))


def adamax_with_norm(param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
                     grad_scale, norm_out):
    """:func:`adamax` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_adamax_norm, param.size, norm_out, *kernel_args.adamax(
        param, grad, exp_avg, exp_inf, beta1, beta2, eps, weight_decay, maximize, clr,
        grad_scale))


def nadam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
                    decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale, norm_out):
    """:func:`nadam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_nadam_norm, param.size, norm_out, *kernel_args.nadam(
        param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
        decoupled, grad_coef, exp_avg_coef, bias_correction2, grad_scale))


def radam_with_norm(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
                    decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale, norm_out):
    """:func:`radam` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_radam_norm, param.size, norm_out, *kernel_args.radam(
        param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, maximize,
        decoupled, rectify, step_size, bias_correction2_sqrt, grad_scale))


def adadelta_with_norm(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize,
                       grad_scale, norm_out):
    """:func:`adadelta` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_adadelta_norm, param.size, norm_out, *kernel_args.adadelta(
        param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize, grad_scale))


def lion_with_norm(param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale,
                   norm_out):
    """:func:`lion` and ``norm_out[0] = sum_of_squares(grad)``, as :func:`sgd_with_norm`."""
    _launch_with_norm(_lion_norm, param.size, norm_out, *kernel_args.lion(
        param, grad, exp_avg, lr, beta1, beta2, weight_decay, maximize, grad_scale))


def lamb_with_norm(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps,
                   weight_decay, maximize, bias_correction1, bias_correction2, grad_scale,
                   norm_out):
    """:func:`lamb` and ``norm_out[0] = sum_of_squares(grad)`` on the device; not fused: the sum
    is a pass of its own before LAMB's two."""
    _sum_of_squares_into(grad, norm_out)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale)
