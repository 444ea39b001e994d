"""The ``cuda`` backend: numba-cuda optimizer kernels, one element per thread in a grid-stride loop.

Every elementwise algorithm runs one kernel template, specialized per algorithm and per set of
used state arrays (:mod:`fastopt.backends._numba.specialize`, as the ``cpu`` backend does): its
element (:mod:`fastopt.backends.elements.optim`, shared with the ``cpu`` backend and the
capturable steps) on every element, after a prologue that rounds the float hyperparameters to the
arrays' dtype and derives the element constants in that dtype (``Algorithm.constants``, compiled as
a device function), so a float32 kernel never promotes to float64. The launchers, made from the
algorithm table (:func:`_launchers`), take the contract's scalars (:data:`TAKES_PYTHON_FLOATS`)
and pass the floats as one tuple of Python floats and the flags as one tuple, which numba-cuda
flattens into kernel parameters: a kernel compiles once per dtype, and changing a hyperparameter
never recompiles. The arrays go as flat views (no copy for the C-contiguous arrays the contract
guarantees). A step neither allocates, copies nor synchronizes (LAMB allocates its scratch sums on
its first step for each layout and stream, then reuses them).

Streams: every entry point takes ``stream=`` (a numba stream; ``numba.cuda.external_stream(ptr)``
wraps one of torch or CuPy); by default it runs on the stream of its first array
(:func:`stream_of`): the producer's stream from the ``__cuda_array_interface__`` (v3 ``stream``)
of a CuPy or torch array, which numba keeps on the array it makes from it without synchronizing
(:func:`fastopt._core.validate.as_device_array`), or the stream a numba array is bound to, else
the default stream. Nothing synchronizes the host, but for the functions that return a host
number (:func:`sum_of_squares`, :func:`max_magnitude_bits`), which wait for their stream.

``<algo>_with_norm`` runs the same update and, in the same grid-stride pass, the per-block sums of
:func:`sum_of_squares`; their ordered sum lands in a device array (no copy back, no
synchronization), with the bits :func:`sum_of_squares` returns.

Launch configuration lives in :func:`launch_config`: :data:`THREADS_PER_BLOCK` threads per block and
enough blocks to cover the array, capped at :data:`BLOCKS_PER_SM` per SM (a few waves; the
grid-stride loop covers the rest). Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) blocks are
tiny and few, so small test arrays span several blocks and the grid-stride loop iterates; kernels
run there as Python, with :func:`fastopt.backends._numba.specialize.rounded_in_python` bound in
place of the ``rounded`` intrinsic.
"""

import functools
import math
import warnings

import numba
import numpy as np
from numba import cuda

from fastopt._core import config
from fastopt.backends._numba.launch import KernelArgs
from fastopt.backends.cuda.exact import exact_jit
from fastopt.backends._numba.specialize import (load, mode_name, register, rounded,
                                                rounded_in_python, specialized, store)
from fastopt.backends.elements.args import MAGNITUDE_BITS, flat
from fastopt.backends.elements.optim import make_elements
from fastopt.optim.algorithms import ALGORITHMS

#: The element updates (see :mod:`fastopt.backends.elements.optim`), as device functions.
E = make_elements(cuda.jit(device=True))

#: The launchers round Python floats to the arrays' dtype themselves (see :mod:`fastopt.backends`).
TAKES_PYTHON_FLOATS = True

#: True under the CUDA simulator, where each thread runs in Python.
SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

if not SIMULATOR:
    register("cuda")

#: Bound in every kernel copy besides the algorithm's names: under the simulator, which cannot
#: call an intrinsic, the plain-Python rounding of the float hyperparameters.
_TARGET = {"rounded": rounded_in_python} if SIMULATOR else {}

#: Threads per block.
THREADS_PER_BLOCK = (config.CUDASIM_THREADS_PER_BLOCK if SIMULATOR
                     else config.CUDA_THREADS_PER_BLOCK)
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


def stream_of(array, stream=None):
    """The stream a call on ``array`` (a numba device array) runs on: ``stream`` when given,
    else the array's own (see the module docstring; 0: the default stream)."""
    return getattr(array, "stream", 0) if stream is None else stream


def _handle(stream):
    """A stream's identity: its handle (external stream objects are made anew for every array
    numba wraps, around the same handle)."""
    if not stream:
        return 0
    return id(stream) if SIMULATOR else int(stream)  # the simulator's streams have no handle


_configurations = {}  # (kernel, blocks, threads, stream handle) -> configured kernel


def _configured(kernel, blocks, threads, stream=0):
    """``kernel[blocks, threads, stream]``, configured once per grid size and stream handle. A
    small array fills few blocks by nature, so numba-cuda's warning about grids under 128 blocks
    has nothing to tell here."""
    key = (kernel, blocks, threads, _handle(stream))
    configured = _configurations.get(key)
    if configured is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Grid size")
            configured = _configurations[key] = kernel[blocks, threads, stream]
    return configured


def launch(kernel, n, *args, stream=0):
    """Runs the elementwise ``kernel`` over ``n`` elements with :func:`launch_config` on
    ``stream``; nothing for ``n == 0`` (a device refuses a grid of no blocks)."""
    if n <= 0:
        return
    blocks, threads = launch_config(n)
    if SIMULATOR:  # the simulator's kernel[...] reconfigures the kernel itself: nothing to cache
        kernel[blocks, threads, stream](*args)
    else:
        _configured(kernel, blocks, threads, stream)(*args)


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


@exact_jit
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


@exact_jit
def _sum_in_order(partial, out):
    """out[0] = partial[0] + partial[1] + ... (one thread, in order)"""
    if cuda.grid(1) == 0:
        s = 0.0
        for b in range(partial.size):
            s += partial[b]
        out[0] = s


# ---- The steps: one template for every algorithm ----------------------------------------------
#
# See fastopt.backends._numba.specialize: each kernel is a copy of _step or _step_with_norm whose
# globals bind _constants, _update (a copy of _update_at, which binds _element and USES) and, under
# the simulator, rounded.

def _update_at(i, p, g, states, c):
    """Template: the element on element i, the state arrays of USES loaded and stored"""
    x = g[i]
    p[i], s = _element(p[i], x, load(states, i, USES, x), c, USES)
    store(states, i, s, USES)


def _step(p, g, states, floats, flags):
    """Template: the constants once, then _update on every element, in a grid-stride loop"""
    c = _constants(rounded(p, floats), flags)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        _update(i, p, g, states, c)
        i += stride


def _step_with_norm(p, g, states, floats, flags, partial):
    """Template: _step, also setting partial[block] as _partial_sums_of_squares does"""
    c = _constants(rounded(p, floats), flags)
    cache = cuda.shared.array(THREADS_PER_BLOCK, numba.float64)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    s = 0.0
    while i < p.size:
        x = numba.float64(g[i])
        s += x * x
        _update(i, p, g, states, c)
        i += stride
    _store_block_sum(cache, s, partial)


#: Unbound names of the templates above (bound in each copy); never used.
_element = _constants = _update = USES = None


@functools.cache
def constants(kernel):
    """The table's derivation of the element constants of ``kernel`` (``Algorithm.constants``), as
    a device function."""
    return cuda.jit(device=True)(ALGORITHMS[kernel].constants)


@functools.cache
def element_update(kernel, uses):
    """``update(i, p, g, states, c)``: the element of ``kernel`` on element ``i``, the state arrays
    of ``uses`` loaded and stored, as a device function (also run by the capturable steps)."""
    return cuda.jit(device=True)(specialized(
        _update_at, f"_update_{kernel}_{mode_name(uses)}", _element=getattr(E, kernel),
        USES=uses))


@functools.cache
def _kernels(kernel, uses):
    """``(step, step_with_norm)`` of ``kernel`` specialized on ``uses``."""
    tag = f"{kernel}_{mode_name(uses)}"
    bound = dict(_constants=constants(kernel), _update=element_update(kernel, uses), **_TARGET)
    doc = f"{kernel} (uses {uses}); formula in fastopt.optim.reference.{kernel}"
    return (exact_jit(specialized(_step, f"_step_{tag}", doc, **bound)),
            exact_jit(specialized(_step_with_norm, f"_step_with_norm_{tag}",
                                 f"{doc}; sets partial[block] as _partial_sums_of_squares "
                                 "(float64 sums of squares: the norm's accumulator)",
                                 **bound)))


def _launchers(algorithm):
    """``(launcher, launcher_with_norm)`` of ``algorithm``.

    ``launcher(param, grad, <state arrays>, <kernel scalars>, grad_scale)`` launches the kernel of
    the step's ``uses`` on flat views; ``launcher_with_norm`` takes ``norm_out`` after them and
    sets ``norm_out[0] = sum_of_squares(grad)`` on the device, from the same pass."""
    n_states = len(algorithm.state)
    args = KernelArgs(algorithm)
    kernel = algorithm.kernel

    def launcher(param, grad, *rest, stream=None):
        if param.size:
            states, scalars = rest[:n_states], rest[n_states:]
            step = _kernels(kernel, args.uses(scalars))[0]
            launch(step, param.size, flat(param), flat(grad), tuple(map(flat, states)),
                   args.floats(scalars), args.flags(scalars), stream=stream_of(param, stream))

    def launcher_with_norm(param, grad, *rest, stream=None):
        states, scalars, norm_out = rest[:n_states], rest[n_states:-1], rest[-1]
        fused = _kernels(kernel, args.uses(scalars))[1]
        _launch_with_norm(fused, param.size, norm_out, stream_of(param, stream), flat(param),
                          flat(grad), tuple(map(flat, states)), args.floats(scalars),
                          args.flags(scalars))

    launcher.__name__ = launcher.__qualname__ = kernel
    launcher.__doc__ = (f"{kernel} step in place, on ``stream`` (default: the stream of "
                        f"``param``); formula in :func:`fastopt.optim.reference.{kernel}`.")
    launcher_with_norm.__name__ = launcher_with_norm.__qualname__ = f"{kernel}_with_norm"
    launcher_with_norm.__doc__ = (f":func:`{kernel}`, also setting ``norm_out[0] = "
                                  "sum_of_squares(grad)`` (bit for bit) from the same pass; "
                                  "``norm_out`` is a float64 device array, written by a kernel: "
                                  "nothing is copied to the host and nothing waits.")
    return launcher, launcher_with_norm


for _algorithm in ALGORITHMS.values():
    if not _algorithm.segmented and _algorithm.kernel == _algorithm.name:
        globals()[_algorithm.kernel], globals()[_algorithm.kernel + "_with_norm"] = \
            _launchers(_algorithm)
del _algorithm


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


@exact_jit
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


@exact_jit
def _lamb_ratios(offsets, partial, lr, ratio):
    """ratio[s] = lr * ||p_s|| / ||u_s|| (lr alone when either norm is 0), one thread per
    segment summing its chunk pieces in order (the norms in float64, as accumulated)"""
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


@exact_jit
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


_lamb_buffers = {}  # (pieces, segments, dtype, stream handle) -> (partial sums, segment steps)


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale, stream=None):
    """LAMB step in place: the segmented reduction (one block per chunk), the per-segment ratios,
    then the update, on ``stream`` (default: ``param``'s); formula in
    :func:`fastopt.reference.lamb`. Its scratch is allocated on the first step of each layout
    and stream, and reused."""
    n = param.size
    if n == 0:
        return
    stream = stream_of(param, stream)
    # The floats rounded to the arrays' dtype, as numpy scalars of it (lr too: the trust ratio
    # takes it in float64 from its rounded value).
    one, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, grad_scale = \
        np.array((1.0, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  grad_scale), param.dtype)
    chunks = (n + LAMB_CHUNK - 1) // LAMB_CHUNK
    segments = segment_offsets.size - 1
    key = (chunks + segments, segments, param.dtype, _handle(stream))
    if key not in _lamb_buffers:
        _lamb_buffers[key] = (cuda.device_array((chunks + segments, 2), np.float64),
                              cuda.device_array(segments, param.dtype))
    partial, ratio = _lamb_buffers[key]
    p, m, v = flat(param), flat(exp_avg), flat(exp_avg_sq)
    by_chunk = chunks * THREADS_PER_BLOCK  # launch() then gives one block per chunk, capped
    launch(_lamb_moments, by_chunk, p, flat(grad), m, v, segment_offsets, partial, beta1,
           one - beta1, beta2, one - beta2, eps, weight_decay, bias_correction1, bias_correction2,
           -grad_scale if maximize else grad_scale, stream=stream)
    launch(_lamb_ratios, segments, segment_offsets, partial, float(lr), ratio, stream=stream)
    launch(_lamb_update, by_chunk, p, m, v, segment_offsets, ratio, eps, weight_decay,
           bias_correction1, bias_correction2, stream=stream)


_reduction_buffers = {}  # (blocks, stream handle) -> (block sums, one result, one int64 maximum)


def _reduction_buffers_for(n, stream=0):
    """The scratch of a reduction over ``n`` elements with :func:`launch_config`'s grid, one set
    per stream (reductions on two streams may run at once)."""
    key = (launch_config(max(n, 1))[0], _handle(stream))
    if key not in _reduction_buffers:
        _reduction_buffers[key] = (cuda.device_array(key[0], np.float64),
                                   cuda.device_array(1, np.float64),
                                   cuda.device_array(1, np.int64))
    return _reduction_buffers[key]


def _sum_of_squares_into(grad, out, stream):
    """out[0] = the squared norm of grad, on the device: per-block sums, then their sum in order."""
    partial = _reduction_buffers_for(grad.size, stream)[0]
    if grad.size:
        launch(_partial_sums_of_squares, grad.size, flat(grad), partial, stream=stream)
        launch(_sum_in_order, 1, partial, out, stream=stream)
    else:  # no blocks: the sum is 0
        launch(_sum_in_order, 1, partial[:0], out, stream=stream)


def _to_host(out, stream):
    """``out[0]`` on the host, once ``stream`` has computed it."""
    host = out.copy_to_host(stream=stream)
    if stream:
        stream.synchronize()
    return host[0]


def sum_of_squares(grad, stream=None):
    """The squared global norm in float64, deterministic (fixed grid and summation order), on
    ``stream`` (default: ``grad``'s); copies one number back to the host, waiting for it.
    Formula in :func:`fastopt.optim.reference.sum_of_squares`."""
    if grad.size == 0:
        return 0.0
    stream = stream_of(grad, stream)
    out = _reduction_buffers_for(grad.size, stream)[1]
    _sum_of_squares_into(grad, out, stream)
    return float(_to_host(out, stream))


@exact_jit
def _max_magnitude_bits(bits, mask, top):
    """top[0] = max(top[0], bits_i & mask) (int64): a grid-stride maximum per thread, then one
    atomic maximum each; exact in any order"""
    own = 0
    for i in range(cuda.grid(1), bits.size, cuda.gridsize(1)):
        own = max(own, bits[i] & mask)
    cuda.atomic.max(top, 0, own)


_ZERO = np.zeros(1, np.int64)


def max_magnitude_bits(grad, stream=None):
    """The bits of the largest magnitude of ``grad`` (float32, float64, float16, or bfloat16 bits
    as uint16) as an int, decoded by :func:`fastopt.optim._step.max_abs`; 0 when empty. One read
    of ``grad`` on ``stream`` (default: ``grad``'s); copies one number back to the host, waiting
    for it."""
    if grad.size == 0:
        return 0
    stream = stream_of(grad, stream)
    int_type, mask = MAGNITUDE_BITS[np.dtype(grad.dtype).name]
    top = _reduction_buffers_for(grad.size, stream)[2]
    top.copy_to_device(_ZERO, stream=stream)
    launch(_max_magnitude_bits, grad.size, flat(grad).view(int_type), np.int64(mask), top,
           stream=stream)
    return int(_to_host(top, stream))


def _launch_with_norm(kernel, n, norm_out, stream, *args):
    """Runs the fused ``kernel`` over ``n`` elements on ``stream``, then ``norm_out[0]`` = the
    sum of its block sums in order: :func:`sum_of_squares`'s reduction, left on the device (no
    synchronization)."""
    partial = _reduction_buffers_for(n, stream)[0]
    if n:
        launch(kernel, n, *args, partial, stream=stream)
        launch(_sum_in_order, 1, partial, norm_out, stream=stream)
    else:  # no blocks: the sum is 0
        launch(_sum_in_order, 1, partial[:0], norm_out, stream=stream)


def lamb_with_norm(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps,
                   weight_decay, maximize, bias_correction1, bias_correction2, grad_scale,
                   norm_out, stream=None):
    """:func:`lamb` and ``norm_out[0] = sum_of_squares(grad)`` on the device; not fused: the sum
    is a pass of its own before LAMB's two."""
    stream = stream_of(param, stream)
    _sum_of_squares_into(grad, norm_out, stream)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale, stream=stream)
