"""The ``cpu`` backend: numba ``njit(parallel=True)`` optimizer kernels, cached on disk.

Each kernel is compiled twice from one source: a ``prange`` version for large arrays and a serial
one below :data:`PARALLEL_THRESHOLD`, where starting the thread pool costs more than the update.

Every elementwise algorithm runs one kernel template, specialized per algorithm and per set of
used state arrays (:mod:`fastopt.backends._numba.specialize`): its element
(:mod:`fastopt.backends.elements.optim`, shared with the ``cuda`` backend and the mixed-precision
kernels) over blocks of :data:`BLOCK` elements, one vectorized loop per block, after a prologue
that rounds the float hyperparameters to the arrays' dtype and derives the element constants in
that dtype (``Algorithm.constants``). The launchers, made from the algorithm table
(:func:`_launchers`), take the contract's scalars (:data:`TAKES_PYTHON_FLOATS`: Python floats or
numpy scalars of float dtypes up to float64, flags as ``bool`` or ``numpy.bool_``) and pass the
floats as one tuple of Python floats and the flags as one tuple: numba unboxes a few arguments,
and a kernel is compiled once per dtype whatever the values. ``<algo>_with_norm`` runs the same
update and returns the gradient's sum of squares with the bits of :func:`sum_of_squares`, from the
same pass over memory.
"""

import functools
import math

import numba
import numpy as np
from numba import prange

from fastopt._core import config
from fastopt.backends._numba.compile import parallel_threshold, serial_and_parallel
from fastopt.backends._numba.launch import KernelArgs
from fastopt.backends._numba.specialize import load, mode_name, rounded, specialized, store
from fastopt.backends.elements.args import MAGNITUDE_BITS, flat
from fastopt.backends.elements.optim import make_elements
from fastopt.optim.algorithms import ALGORITHMS

#: Inlined into its callers in numba's IR: a kernel's loops then see its mode flags as constants.
_inline = numba.njit(inline="always", error_model="numpy")
#: The element updates (see :mod:`fastopt.backends.elements.optim`), left for LLVM to inline
#: (inlining them in numba's IR too gives the same machine code, compiled about 1.5 times slower).
E = make_elements(numba.njit(error_model="numpy"))

#: The launchers round Python floats to the arrays' dtype themselves (see :mod:`fastopt.backends`).
TAKES_PYTHON_FLOATS = True

#: Below this many elements a step runs on one thread (always, where numba has only its
#: ``workqueue`` threading layer: see :func:`fastopt.backends._numba.compile.parallel_threshold`).
PARALLEL_THRESHOLD = parallel_threshold(config.CPU_PARALLEL_THRESHOLD)
#: The reduction sums fixed chunks of this many elements in parallel, then the chunk sums in order:
#: the result does not depend on the number of threads.
REDUCTION_CHUNK = config.REDUCTION_CHUNK
#: LAMB's segmented reduction and update work on fixed chunks of this many elements: each chunk's
#: piece of each tensor is summed on one thread, then a tensor's pieces in order.
LAMB_CHUNK = config.CPU_LAMB_CHUNK


def _compile_serial_and_parallel(body):
    serial, parallel = serial_and_parallel(body)

    def launch(n, *args):
        return (parallel if n >= PARALLEL_THRESHOLD else serial)(*args)

    launch.serial, launch.parallel = serial, parallel
    return functools.update_wrapper(launch, body)


#: The kernels work on blocks of this many elements (a multiple of REDUCTION_LANES that divides
#: REDUCTION_CHUNK): a block is one vectorized loop, and the fused kernels add the squares of a
#: block's gradient right after updating it, while it is in cache.
BLOCK = config.CPU_BLOCK
#: Running sums of a chunk of the sums of squares (see below).
LANES = config.REDUCTION_LANES


# ---- The global gradient norm: alone, or computed in the update pass ---------------------------
#
# Both sum fixed chunks of REDUCTION_CHUNK elements (in parallel), then the chunk sums in order, so
# the result does not depend on the number of threads. A chunk keeps LANES running sums in a small
# array (element i goes to sum (i - start) % LANES), added pairwise at the end. The inner loop over
# the lanes is elementwise, so numba's loop vectorizer takes it as it is, and the sums are set by
# this order alone (no fastmath): the c backend, and a fused kernel here, which adds each BLOCK of
# elements right after updating it (the gradient still in cache), get the same bits.

@_inline
def _add_squares(g, lo, hi, sums):
    """sums[(i - lo) % LANES] += g[i]^2 in float64 for i in [lo, hi)"""
    # Unsigned indices: numba then drops the negative-index wraparound, whose select on every
    # load keeps the loop from vectorizing.
    lo, hi, lanes = np.uint64(lo), np.uint64(hi), np.uint64(LANES)
    stop = lo + (hi - lo) // lanes * lanes
    for row in range(lo, stop, lanes):
        for j in range(lanes):
            x = np.float64(g[row + j])
            sums[j] += x * x
    for j in range(hi - stop):
        x = np.float64(g[stop + j])
        sums[j] += x * x


@_inline
def _total(sums):
    """The LANES running sums of a chunk, added pairwise: (s0 + s1) + (s2 + s3), ... level by level
    (sums is overwritten)"""
    width = LANES
    while width > 1:
        width //= 2
        for j in range(width):
            sums[j] = sums[2 * j] + sums[2 * j + 1]
    return sums[0]


@_inline
def _sum_in_order(partial):
    """partial[0] + partial[1] + ... in order"""
    total = 0.0
    for c in range(partial.size):
        total += partial[c]
    return total


@_compile_serial_and_parallel
def _chunked_sum_of_squares(g, chunk):
    """sum(g_i^2) in float64: per chunk, LANES running sums added pairwise; chunk sums in order"""
    n_chunks = (g.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        lo = c * chunk
        sums = np.zeros(LANES, np.float64)
        _add_squares(g, lo, min(g.size, lo + chunk), sums)
        partial[c] = _total(sums)
    return _sum_in_order(partial)


# ---- The non-finite check: the largest magnitude, exactly ---------------------------------------
#
# A float's magnitude orders as its bits with the sign cleared (as integers), infinities above every
# finite value and NaNs above infinity, so the largest |g| is an integer maximum: exact, in any
# order, and a few vector instructions per 8 elements. A pass that only reads is bound by how many
# reads each core has in flight: each thread reads four places of the array at once (the array in
# four parts, chunk c of each part in one loop), which one sequential stream per thread does not
# reach.

def _max_magnitude_bits(bits, chunk):
    """Template: max(INT(bits_i & MASK)), four parts of the array read side by side per chunk"""
    part = bits.size // 4
    n_chunks = (part + chunk - 1) // chunk
    partial = np.empty(n_chunks, INT)
    # Unsigned offsets (an int64 times a uint64 would be a float64 in numba).
    at1, at2, at3 = np.uint64(part), np.uint64(2 * part), np.uint64(3 * part)
    for c in prange(n_chunks):
        t0 = t1 = t2 = t3 = INT(0)
        for i in range(np.uint64(c * chunk), np.uint64(min(part, (c + 1) * chunk))):
            t0 = max(t0, INT(bits[i] & MASK))  # INT(): numba widens & of narrow ints
            t1 = max(t1, INT(bits[i + at1] & MASK))
            t2 = max(t2, INT(bits[i + at2] & MASK))
            t3 = max(t3, INT(bits[i + at3] & MASK))
        partial[c] = max(max(t0, t1), max(t2, t3))
    top = INT(0)
    for c in range(n_chunks):
        top = max(top, partial[c])
    for i in range(4 * part, bits.size):  # the last size % 4
        top = max(top, INT(bits[i] & MASK))
    return top


#: Unbound names of the template above (bound in each copy by _max_magnitude_kernel); never used.
INT = MASK = None


@functools.cache
def _max_magnitude_kernel(int_type, mask):
    """The serial and parallel copies of _max_magnitude_bits for ``int_type`` (a numpy name)"""
    int_type = getattr(np, int_type)
    return _compile_serial_and_parallel(specialized(
        _max_magnitude_bits, f"_max_magnitude_bits_{np.dtype(int_type).name}",
        INT=int_type, MASK=int_type(mask)))


def max_magnitude_bits(grad):
    """max(bits(g_i) with the sign cleared) over ``grad`` (float32, float64, float16, or bfloat16
    bits as uint16), as an int: the bits of its largest magnitude, decoded by
    :func:`fastopt.optim._step.max_abs`; 0 for an empty ``grad``."""
    return _bind_max_magnitude_bits(grad)()


def _bind_max_magnitude_bits(grad):
    """``check()``: :func:`max_magnitude_bits` of ``grad``, its view and kernel made once."""
    int_type, mask = MAGNITUDE_BITS[grad.dtype.name]
    bits = flat(grad).view(int_type)
    kernel = _max_magnitude_kernel(int_type, mask)
    kernel = kernel.parallel if bits.size >= PARALLEL_THRESHOLD else kernel.serial
    return lambda: int(kernel(bits, REDUCTION_CHUNK))


max_magnitude_bits.bind = _bind_max_magnitude_bits


# ---- The steps: one template for every algorithm ----------------------------------------------
#
# See fastopt.backends._numba.specialize: each kernel is a copy of _step or _step_with_norm whose
# globals bind _element, _constants and USES (through _update, a copy of _update_block bound the
# same way). The indices are unsigned: numba then drops the negative-index wraparound, whose select
# on every access keeps a loop over [lo, hi) from vectorizing.

def _update_block(lo, hi, p, g, states, c):
    """Template: the element on [lo, hi), the state arrays of USES loaded and stored"""
    for i in range(np.uint64(lo), np.uint64(hi)):
        x = g[i]
        p[i], s = _element(p[i], x, load(states, i, USES, x), c, USES)
        store(states, i, s, USES)


def _step(p, g, states, floats, flags):
    """Template: the constants once, then _update over every BLOCK of the arrays"""
    c = _constants(rounded(p, floats), flags)
    for b in prange((p.size + BLOCK - 1) // BLOCK):
        lo = b * BLOCK
        _update(lo, min(p.size, lo + BLOCK), p, g, states, c)


def _step_with_norm(p, g, states, floats, flags, chunk):
    """Template: _step, also adding each block's squares of g right after updating it (in cache),
    in the chunks of _chunked_sum_of_squares: returns the sum with that kernel's bits"""
    c = _constants(rounded(p, floats), flags)
    partial = np.empty((p.size + chunk - 1) // chunk, np.float64)
    for k in prange(partial.size):
        lo, hi = k * chunk, min(p.size, (k + 1) * chunk)
        sums = np.zeros(LANES, np.float64)
        for a in range(lo, hi, BLOCK):
            b = min(a + BLOCK, hi)
            _update(a, b, p, g, states, c)
            _add_squares(g, a, b, sums)
        partial[k] = _total(sums)
    return _sum_in_order(partial)


#: Unbound names of the templates above (bound in each copy by _kernels); never used.
_element = _constants = _update = USES = None


@functools.cache
def _kernels(name, uses):
    """``(step, step_with_norm)`` of the algorithm ``name`` specialized on ``uses``, each with a
    serial and a parallel version (see :func:`_compile_serial_and_parallel`)."""
    algorithm = ALGORITHMS[name]
    tag = f"{algorithm.kernel}_{mode_name(uses)}"
    bound = dict(_element=getattr(E, algorithm.kernel), USES=uses,
                 _constants=_inline(algorithm.constants))
    update = _inline(specialized(_update_block, f"_update_{tag}", **bound))
    doc = f"{algorithm.kernel} (uses {uses}); formula in fastopt.optim.reference.{algorithm.kernel}"
    step = specialized(_step, f"_step_{tag}", doc, _update=update, **bound)
    fused = specialized(_step_with_norm, f"_step_with_norm_{tag}",
                        f"{doc}; returns sum(g_i^2) as _chunked_sum_of_squares(g, chunk)",
                        _update=update, **bound)
    return _compile_serial_and_parallel(step), _compile_serial_and_parallel(fused)


def _launchers(algorithm):
    """``(launcher, launcher_with_norm)`` of ``algorithm``, with the launcher's ``bind``.

    ``launcher(param, grad, <state arrays>, <kernel scalars>, grad_scale)`` runs the kernel of the
    step's ``uses`` on flat views, serial or parallel by size; ``launcher_with_norm`` takes
    ``norm_out`` after them and sets ``norm_out[0] = sum_of_squares(grad)`` from the same pass.
    ``launcher.bind(param, grad, <state arrays>, uses=None)`` returns ``run(<kernel scalars>,
    grad_scale)``, the launcher on those arrays with the views made and the kernel chosen once
    (``uses`` given, or taken from the scalars of the first call)."""
    n_states = len(algorithm.state)
    args = KernelArgs(algorithm)
    name = algorithm.name

    def launcher(param, grad, *rest):
        states, scalars = rest[:n_states], rest[n_states:]
        if param.ndim != 1:  # the others have its shape, or are empty (1-D)
            param, grad, states = flat(param), flat(grad), tuple(map(flat, states))
        step = _kernels(name, args.uses(scalars))[0]
        step(param.size, param, grad, states, args.floats(scalars), args.flags(scalars))

    def launcher_with_norm(param, grad, *rest):
        states, scalars, norm_out = rest[:n_states], rest[n_states:-1], rest[-1]
        if param.ndim != 1:
            param, grad, states = flat(param), flat(grad), tuple(map(flat, states))
        fused = _kernels(name, args.uses(scalars))[1]
        norm_out[0] = fused(param.size, param, grad, states, args.floats(scalars),
                            args.flags(scalars), REDUCTION_CHUNK)

    def bind(param, grad, *states, uses=None):
        param, grad, states = flat(param), flat(grad), tuple(map(flat, states))
        if not param.size:
            return lambda *scalars: None
        # An unused state array is empty (the kernel never touches it), a used one is not.
        step = _kernels(name, tuple(uses) if uses is not None
                        else tuple(s.size > 0 for s in states))[0]
        kernel = step.parallel if param.size >= PARALLEL_THRESHOLD else step.serial
        float_at, flag_at = args.float_getter, args.flag_getter

        # The scalars come as Python floats (Algorithm.scalars', as the classes and bound steps
        # pass them): the tuples are built without converting each value.
        def run(*scalars):
            kernel(param, grad, states, (1.0, *float_at(scalars)), flag_at(scalars))
        return run

    title = algorithm.kernel
    launcher.__name__ = launcher.__qualname__ = title
    launcher.__doc__ = f"{title} step in place; formula in :func:`fastopt.optim.reference.{title}`."
    launcher_with_norm.__name__ = launcher_with_norm.__qualname__ = f"{title}_with_norm"
    launcher_with_norm.__doc__ = (f":func:`{title}`, also setting ``norm_out[0] = "
                                  "sum_of_squares(grad)`` (bit for bit) from the same pass.")
    launcher.bind = bind
    return launcher, launcher_with_norm


for _algorithm in ALGORITHMS.values():
    if not _algorithm.segmented and _algorithm.kernel == _algorithm.name:
        globals()[_algorithm.kernel], globals()[_algorithm.kernel + "_with_norm"] = \
            _launchers(_algorithm)
del _algorithm


# ---- LAMB: a segmented reduction, the per-tensor trust ratios, then the update ------------------

@_compile_serial_and_parallel
def _lamb_moments(p, g, exp_avg, exp_avg_sq, offsets, partial, chunk, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  scale):
    """m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p;
    partial[c + s] = (sum p^2, sum u^2) in float64 over the part of segment s in chunk c"""
    n_chunks = (p.size + chunk - 1) // chunk
    segments = offsets.size - 1
    for c in prange(n_chunks):
        first, stop = c * chunk, min(p.size, (c + 1) * chunk)
        s = np.searchsorted(offsets, first, side="right") - 1  # the segment holding `first`
        # Walking the array, c + s grows at every chunk or segment boundary: each (chunk,
        # segment) piece has a slot of its own.
        while s < segments and offsets[s] < stop:
            pp = 0.0
            uu = 0.0
            for i in range(max(offsets[s], first), min(offsets[s + 1], stop)):
                m, v = E.lamb_moments(g[i], exp_avg[i], exp_avg_sq[i], beta1, one_minus_beta1,
                                      beta2, one_minus_beta2, scale)
                exp_avg[i] = m
                exp_avg_sq[i] = v
                x = p[i]
                u = E.lamb_direction(x, m, v, eps, weight_decay, bias_correction1,
                                     bias_correction2)
                pp += np.float64(x) * np.float64(x)
                uu += np.float64(u) * np.float64(u)
            partial[c + s, 0] = pp
            partial[c + s, 1] = uu
            s += 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lamb_ratios(offsets, partial, chunk, lr, ratio):
    """ratio[s] = lr * ||p_s|| / ||u_s|| (lr alone when either norm is 0), the sums of segment s's
    chunk pieces taken in order"""
    for s in range(offsets.size - 1):
        pp = 0.0
        uu = 0.0
        if offsets[s + 1] > offsets[s]:
            for c in range(offsets[s] // chunk, (offsets[s + 1] - 1) // chunk + 1):
                pp += partial[c + s, 0]
                uu += partial[c + s, 1]
        r = math.sqrt(pp) / math.sqrt(uu) if pp > 0 and uu > 0 else 1.0
        ratio[s] = lr * r  # rounded to the arrays' dtype


@_compile_serial_and_parallel
def _lamb_update(p, exp_avg, exp_avg_sq, offsets, ratio, chunk, eps, weight_decay,
                 bias_correction1, bias_correction2):
    """u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p from the updated moments; p -= ratio[s] * u"""
    n_chunks = (p.size + chunk - 1) // chunk
    segments = offsets.size - 1
    for c in prange(n_chunks):
        first, stop = c * chunk, min(p.size, (c + 1) * chunk)
        s = np.searchsorted(offsets, first, side="right") - 1
        while s < segments and offsets[s] < stop:
            step = ratio[s]
            for i in range(max(offsets[s], first), min(offsets[s + 1], stop)):
                x = p[i]
                p[i] = x - step * E.lamb_direction(x, exp_avg[i], exp_avg_sq[i], eps,
                                                   weight_decay, bias_correction1,
                                                   bias_correction2)
            s += 1


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """LAMB step in place, two passes (segmented reduction, then update); formula in
    :func:`fastopt.optim.reference.lamb`."""
    n, chunk = param.size, LAMB_CHUNK
    if n == 0:
        return
    # The floats rounded to the arrays' dtype, as numpy scalars of it (lr too: the trust ratio
    # takes it in float64 from its rounded value).
    one, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, grad_scale = \
        np.array((1.0, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  grad_scale), param.dtype)
    segments = segment_offsets.size - 1
    partial = np.empty(((n + chunk - 1) // chunk + segments, 2), np.float64)
    ratio = np.empty(segments, param.dtype)
    p, m, v = flat(param), flat(exp_avg), flat(exp_avg_sq)
    _lamb_moments(n, p, flat(grad), m, v, segment_offsets, partial, chunk, beta1, one - beta1,
                  beta2, one - beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  -grad_scale if maximize else grad_scale)
    _lamb_ratios(segment_offsets, partial, chunk, float(lr), ratio)
    _lamb_update(n, p, m, v, segment_offsets, ratio, chunk, eps, weight_decay, bias_correction1,
                 bias_correction2)


def lamb_with_norm(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps,
                   weight_decay, maximize, bias_correction1, bias_correction2, grad_scale,
                   norm_out):
    """:func:`lamb` and ``norm_out[0] = sum_of_squares(grad)``; not fused: the sum is a pass of its
    own before LAMB's two."""
    norm_out[0] = sum_of_squares(grad)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale)


def sum_of_squares(grad):
    """The squared global norm in float64; formula in :func:`fastopt.reference.sum_of_squares`."""
    return float(_chunked_sum_of_squares(grad.size, flat(grad), REDUCTION_CHUNK))
