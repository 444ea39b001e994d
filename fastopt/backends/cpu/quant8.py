r"""The ``cpu`` backend's 8-bit blockwise steps: numba kernels, one template for every algorithm.

Signatures and formulas as in :mod:`fastopt.backends.numpy.quant8`. Each kernel walks the arrays
in blocks of :data:`BLOCK` elements (one absmax per state array each), in one pass over memory:

1. the codes of each used state array are decoded into a float32 buffer of the block,
   :math:`\tilde x_i = Q[q_i]\, a_b`;
2. the algorithm's element (:mod:`fastopt.backends.elements.optim`, the float32 step's) updates
   the parameter and the buffered state, as the float32 kernel of :mod:`fastopt.backends.cpu.optim`
   does on its arrays;
3. each buffer is quantized again: its absmax (an integer maximum of the magnitudes' bits, which
   vectorizes), then every value's code from the map's lookup table and two comparisons
   (:func:`_code`).

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
from fastopt.backends.cpu.mixed import _bits_from_f32, _f32_from_bits
from fastopt.backends.cpu.optim import E, PARALLEL_THRESHOLD, _compile_serial_and_parallel
from fastopt.backends.elements.args import flat
from fastopt.backends.numpy.quant8 import BLOCK, LUT_SHIFT, LUT_SIDE, STATE_MAPS, TINY
from fastopt.optim.algorithms import ALGORITHMS

#: The launchers round Python floats to float32 themselves, as the float steps'.
TAKES_PYTHON_FLOATS = True
#: Blocks per parallel chunk (a chunk's buffers are allocated once).
CHUNK_BLOCKS = 64

_inline = numba.njit(inline="always", error_model="numpy")
_ONE = np.float32(1)
_MAGNITUDE = np.uint64(0x7FFFFFFF)
_LAST, _SIDE = np.uint64(LUT_SIDE - 1), np.uint64(LUT_SIDE)
_SIGN, _MIDPOINTS, _SHIFT = np.uint64(31), np.uint64(256), np.uint64(LUT_SHIFT)


@_inline
def _decode_block(codes, absmax, table, b, lo, hi, buf):
    """buf[j] = table[codes[lo + j]] * absmax[b] on [lo, hi)"""
    a = absmax[b]
    for j in range(np.uint64(hi - lo)):
        buf[j] = table[codes[np.uint64(lo) + j]] * a


@_inline
def _encode_block(buf, table, lut, b, lo, hi, codes, absmax):
    """absmax[b] = max |buf| (over the bits: a NaN propagates); codes[lo + j] = the code of
    y = buf[j] * (1 / max(absmax, TINY)), #{k : table[256 + k] < y} (ties to the lower; 0 for
    NaN), from the lookup table of y's bucket and two midpoints (see
    fastopt.backends.numpy.quant8.lookup_table; a y a rounding above 1 falls in the bucket of 1,
    as clamping it to 1 would). Written out here: a function of the arrays called per element
    would count references to them at every call."""
    m = 0
    for j in range(hi - lo):
        m = max(m, _bits_from_f32(buf[j]) & 0x7FFFFFFF)
    a = _f32_from_bits(m)
    absmax[b] = a
    r = _ONE / E.maximum(a, TINY)
    # Unsigned indices: numba then drops the negative-index wraparound on every load.
    for j in range(np.uint64(hi - lo)):
        y = buf[j] * r
        u = np.uint64(_bits_from_f32(y))
        bucket = min((u & _MAGNITUDE) >> _SHIFT, _LAST) + (u >> _SIGN) * _SIDE
        base = np.uint64(lut[bucket])
        codes[np.uint64(lo) + j] = (base + (table[_MIDPOINTS + base] < y)
                                    + (table[_MIDPOINTS + np.uint64(1) + base] < y))


# Per number of state arrays: the buffers of a chunk, and the decoding and encoding of a block's
# used states, each state reached by a constant index (a tuple indexed at run time would copy the
# array's structure at every access).

def _decode1(codes, absmax, maps, b, lo, hi, bufs, uses):
    if uses[0]:
        _decode_block(codes[0], absmax[0], maps[0], b, lo, hi, bufs[0])


def _decode2(codes, absmax, maps, b, lo, hi, bufs, uses):
    if uses[0]:
        _decode_block(codes[0], absmax[0], maps[0], b, lo, hi, bufs[0])
    if uses[1]:
        _decode_block(codes[1], absmax[1], maps[1], b, lo, hi, bufs[1])


def _decode3(codes, absmax, maps, b, lo, hi, bufs, uses):
    if uses[0]:
        _decode_block(codes[0], absmax[0], maps[0], b, lo, hi, bufs[0])
    if uses[1]:
        _decode_block(codes[1], absmax[1], maps[1], b, lo, hi, bufs[1])
    if uses[2]:
        _decode_block(codes[2], absmax[2], maps[2], b, lo, hi, bufs[2])


def _encode1(bufs, maps, luts, b, lo, hi, codes, absmax, uses):
    if uses[0]:
        _encode_block(bufs[0], maps[0], luts[0], b, lo, hi, codes[0], absmax[0])


def _encode2(bufs, maps, luts, b, lo, hi, codes, absmax, uses):
    if uses[0]:
        _encode_block(bufs[0], maps[0], luts[0], b, lo, hi, codes[0], absmax[0])
    if uses[1]:
        _encode_block(bufs[1], maps[1], luts[1], b, lo, hi, codes[1], absmax[1])


def _encode3(bufs, maps, luts, b, lo, hi, codes, absmax, uses):
    if uses[0]:
        _encode_block(bufs[0], maps[0], luts[0], b, lo, hi, codes[0], absmax[0])
    if uses[1]:
        _encode_block(bufs[1], maps[1], luts[1], b, lo, hi, codes[1], absmax[1])
    if uses[2]:
        _encode_block(bufs[2], maps[2], luts[2], b, lo, hi, codes[2], absmax[2])


def _buffers1():
    return (np.empty(BLOCK, np.float32),)


def _buffers2():
    return np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)


def _buffers3():
    return np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)


def _step(p, g, codes, absmax, maps, luts, floats, flags):
    """Template: per block, the used states decoded, _element on each element, states encoded"""
    c = _constants(rounded(p, floats), flags)
    n = p.size
    n_blocks = (n + BLOCK - 1) // BLOCK
    for chunk in prange((n_blocks + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):
        bufs = _buffers()
        for b in range(chunk * CHUNK_BLOCKS, min(n_blocks, (chunk + 1) * CHUNK_BLOCKS)):
            lo = b * BLOCK
            hi = min(n, lo + BLOCK)
            _decode(codes, absmax, maps, b, lo, hi, bufs, USES)
            for i in range(np.uint64(lo), np.uint64(hi)):
                x = g[i]
                j = i - np.uint64(lo)
                p[i], s = _element(p[i], x, load(bufs, j, USES, x), c, USES)
                store(bufs, j, s, USES)
            _encode(bufs, maps, luts, b, lo, hi, codes, absmax, USES)


#: Unbound names of the template above (bound in each copy by _kernel); never used.
_element = _constants = _buffers = _decode = _encode = USES = None
_BUFFERS = {1: _inline(_buffers1), 2: _inline(_buffers2), 3: _inline(_buffers3)}
_DECODE = {1: _inline(_decode1), 2: _inline(_decode2), 3: _inline(_decode3)}
_ENCODE = {1: _inline(_encode1), 2: _inline(_encode2), 3: _inline(_encode3)}


@functools.cache
def _kernel(kernel, uses):
    """The 8-bit step of the element ``kernel`` specialized on ``uses`` (serial and parallel)."""
    algorithm = ALGORITHMS[kernel]
    step = specialized(_step, f"_quant8_step_{kernel}_{mode_name(uses)}",
                       f"8-bit {kernel} (uses {uses}); formula in "
                       f"fastopt.backends.numpy.quant8.{kernel}",
                       _element=getattr(E, kernel), USES=uses,
                       _constants=_inline(algorithm.constants), _buffers=_BUFFERS[len(uses)],
                       _decode=_DECODE[len(uses)], _encode=_ENCODE[len(uses)])
    return _compile_serial_and_parallel(step)


def _launcher(kernel):
    args = KernelArgs(ALGORITHMS[kernel])

    def step(param, grad, codes, absmax, maps, luts, *scalars):
        if param.size == 0:
            return
        uses = tuple(c.size > 0 for c in codes)
        _kernel(kernel, uses)(param.size, flat(param), flat(grad), tuple(map(flat, codes)),
                              tuple(absmax), tuple(maps), tuple(luts), args.floats(scalars),
                              args.flags(scalars))

    def bind(param, grad, codes, absmax, maps, luts):
        param, grad, codes = flat(param), flat(grad), tuple(map(flat, codes))
        absmax, maps, luts = tuple(absmax), tuple(maps), tuple(luts)
        if not param.size:
            return lambda *scalars: None
        compiled = _kernel(kernel, tuple(c.size > 0 for c in codes))
        run_kernel = compiled.parallel if param.size >= PARALLEL_THRESHOLD else compiled.serial

        def run(*scalars):
            run_kernel(param, grad, codes, absmax, maps, luts, args.floats(scalars),
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
