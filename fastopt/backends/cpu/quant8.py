r"""The ``cpu`` backend's 8-bit blockwise steps: numba kernels, one template for every algorithm.

Signatures and formulas as in :mod:`fastopt.backends.numpy.quant8`. Each kernel walks the arrays
in blocks of :data:`BLOCK` elements (one absmax per state array each), in one pass over memory:

1. the codes of each used state array are decoded into a float32 buffer of the block,
   :math:`\tilde x_i = Q[q_i]\, a_b`;
2. the algorithm's element (:mod:`fastopt.backends.elements.optim`, the float32 step's) updates
   the parameter and the buffered state, as the float32 kernel of :mod:`fastopt.backends.cpu.optim`
   does on its arrays;
3. each buffer is quantized again: its absmax, then every value's code by a binary search over the
   map's 255 midpoints (eight comparisons, :func:`_code`).

The template is specialized per algorithm and set of used state arrays as the float kernels are
(:mod:`fastopt.backends._numba.specialize`); the blocks are split over the threads in chunks of
:data:`CHUNK_BLOCKS`, each chunk's buffers allocated once. The maps are runtime arguments.
"""

import functools

import numba
import numpy as np
from numba import prange

from fastopt.backends._numba.launch import KernelArgs
from fastopt.backends._numba.specialize import load, mode_name, rounded, specialized, store
from fastopt.backends.cpu.optim import E, PARALLEL_THRESHOLD, _compile_serial_and_parallel
from fastopt.backends.elements.args import flat
from fastopt.backends.numpy.quant8 import BLOCK, STATE_MAPS, TINY
from fastopt.optim.algorithms import ALGORITHMS

#: The launchers round Python floats to float32 themselves, as the float steps'.
TAKES_PYTHON_FLOATS = True
#: Blocks per parallel chunk (a chunk's buffers are allocated once).
CHUNK_BLOCKS = 64

_inline = numba.njit(inline="always", error_model="numpy")
_ONE, _MINUS_ONE = np.float32(1), np.float32(-1)


@_inline
def _code(y, table):
    """#{k : table[256 + k] < y}: the nearest code of y in [-1, 1] (ties to the lower; 0 for NaN)"""
    lo = 0
    step = 128
    while step > 0:
        if table[256 + lo + step - 1] < y:
            lo += step
        step >>= 1
    return lo


@_inline
def _decode_block(codes, absmax, table, b, lo, hi, buf):
    """buf[j] = table[codes[lo + j]] * absmax[b] on [lo, hi)"""
    a = absmax[b]
    for i in range(lo, hi):
        buf[i - lo] = table[codes[i]] * a


@_inline
def _encode_block(buf, table, b, lo, hi, codes, absmax):
    """absmax[b] = max |buf| (NaN propagating); codes[lo + j] = the code of buf[j] / absmax"""
    a = np.float32(0)
    for j in range(hi - lo):
        a = E.maximum(a, abs(buf[j]))
    absmax[b] = a
    r = _ONE / E.maximum(a, TINY)
    for j in range(hi - lo):
        y = E.minimum(E.maximum(buf[j] * r, _MINUS_ONE), _ONE)
        codes[lo + j] = _code(y, table)


def _buffers1():
    return (np.empty(BLOCK, np.float32),)


def _buffers2():
    return np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)


def _buffers3():
    return np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)


def _step(p, g, codes, absmax, maps, floats, flags):
    """Template: per block, the used states decoded, _element on each element, states encoded"""
    c = _constants(rounded(p, floats), flags)
    n = p.size
    n_blocks = (n + BLOCK - 1) // BLOCK
    for chunk in prange((n_blocks + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):
        bufs = _buffers()
        for b in range(chunk * CHUNK_BLOCKS, min(n_blocks, (chunk + 1) * CHUNK_BLOCKS)):
            lo = b * BLOCK
            hi = min(n, lo + BLOCK)
            for k in range(len(codes)):
                if USES[k]:
                    _decode_block(codes[k], absmax[k], maps[k], b, lo, hi, bufs[k])
            for i in range(np.uint64(lo), np.uint64(hi)):
                x = g[i]
                j = i - np.uint64(lo)
                p[i], s = _element(p[i], x, load(bufs, j, USES, x), c, USES)
                store(bufs, j, s, USES)
            for k in range(len(codes)):
                if USES[k]:
                    _encode_block(bufs[k], maps[k], b, lo, hi, codes[k], absmax[k])


#: Unbound names of the template above (bound in each copy by _kernel); never used.
_element = _constants = _buffers = USES = None
_BUFFERS = {1: _inline(_buffers1), 2: _inline(_buffers2), 3: _inline(_buffers3)}


@functools.cache
def _kernel(kernel, uses):
    """The 8-bit step of the element ``kernel`` specialized on ``uses`` (serial and parallel)."""
    algorithm = ALGORITHMS[kernel]
    step = specialized(_step, f"_quant8_step_{kernel}_{mode_name(uses)}",
                       f"8-bit {kernel} (uses {uses}); formula in "
                       f"fastopt.backends.numpy.quant8.{kernel}",
                       _element=getattr(E, kernel), USES=uses,
                       _constants=_inline(algorithm.constants), _buffers=_BUFFERS[len(uses)])
    return _compile_serial_and_parallel(step)


def _launcher(kernel):
    args = KernelArgs(ALGORITHMS[kernel])

    def step(param, grad, codes, absmax, maps, *scalars):
        if param.size == 0:
            return
        uses = tuple(c.size > 0 for c in codes)
        _kernel(kernel, uses)(param.size, flat(param), flat(grad), tuple(map(flat, codes)),
                              tuple(absmax), tuple(maps), args.floats(scalars),
                              args.flags(scalars))

    def bind(param, grad, codes, absmax, maps):
        param, grad, codes = flat(param), flat(grad), tuple(map(flat, codes))
        absmax, maps = tuple(absmax), tuple(maps)
        if not param.size:
            return lambda *scalars: None
        compiled = _kernel(kernel, tuple(c.size > 0 for c in codes))
        run_kernel = compiled.parallel if param.size >= PARALLEL_THRESHOLD else compiled.serial

        def run(*scalars):
            run_kernel(param, grad, codes, absmax, maps, args.floats(scalars),
                       args.flags(scalars))
        return run

    step.__name__ = step.__qualname__ = kernel
    step.__doc__ = (f"8-bit {kernel} step in place; formula in "
                    f":func:`fastopt.backends.numpy.quant8.{kernel}`.")
    step.bind = bind
    return step


for _kernel_name in STATE_MAPS:
    globals()[_kernel_name] = _launcher(_kernel_name)
del _kernel_name
