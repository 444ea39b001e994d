r"""The ``cuda`` backend's 8-bit blockwise steps (numba-cuda): one thread per block of state.

Signatures as in :mod:`fastopt.backends.numpy.quant8`, with ``stream=`` (default: the stream of
``param``; see :mod:`fastopt.backends.cuda.optim`). Every algorithm runs one kernel template,
specialized per algorithm and per set of used state arrays. A thread takes a block of
:data:`BLOCK` elements (grid-stride over the blocks) in two passes over it, both from the state
as stored:

1. decode each used state value, :math:`\tilde x_i = Q[q_i]\, a_b`, run the algorithm's element
   (:mod:`fastopt.backends.elements.optim`, the float32 step's) and keep the largest magnitude of
   each new state (an integer maximum of the bits, as on the host);
2. run the element again on the same inputs (so the same values), write the parameter and each
   new state's code from the lookup table and two thresholds.

Recomputing the element spares a block's buffers (local memory) for a few flops per element.
The element constants are derived on the host from the float32-rounded scalars, as the
mixed-precision steps do (:func:`fastopt.backends.elements.mixed.mixed_step`). One thread per block
reads memory without coalescing: correct (the reference's bits, tested under the simulator), not
tuned for a device.
"""

import functools

import numpy as np
from numba import cuda

from fastopt.backends._numba.launch import KernelArgs
from fastopt.backends._numba.specialize import mode_name, specialized
from fastopt.backends.cuda.exact import exact_jit
from fastopt.backends.cuda.mixed import E, _bits_from_f32, _f32_from_bits
from fastopt.backends.cuda.optim import launch, stream_of
from fastopt.backends.elements.args import flat
from fastopt.backends.numpy.quant8 import BLOCK, LUT_SHIFT, LUT_SIDE, STATE_MAPS, TINY
from fastopt.optim.algorithms import ALGORITHMS

_device = cuda.jit(device=True)
_ONE = np.float32(1)


@_device
def _code(y, table, lut):
    """#{k : table[256 + k] < y} from the lookup table of y's bucket and two thresholds (see
    fastopt.backends.numpy.quant8.lookup_table)"""
    u = _bits_from_f32(y)
    base = np.int64(lut[min((u & 0x7FFFFFFF) >> LUT_SHIFT, LUT_SIDE - 1) + (u >> 31) * LUT_SIDE])
    return base + (table[256 + base] < y) + (table[257 + base] < y)


@_device
def _magnitude(m, x):
    """max(m, bits of |x|) as integers"""
    return max(m, _bits_from_f32(x) & 0x7FFFFFFF)


@_device
def _reciprocal(m):
    """1 / max(a, TINY) for the absmax a whose bits are m"""
    return _ONE / E.maximum(_f32_from_bits(m), TINY)


# Per number of state arrays (a tuple's length is part of its type): the block's stored absmax,
# the decoded state of element i (placeholder where USES leaves one out), the running maxima of
# the new state's magnitudes, and the codes' stores.

def _old1(absmax, b, uses, zero):
    return (absmax[0][b] if uses[0] else zero,)


def _old3(absmax, b, uses, zero):
    return (absmax[0][b] if uses[0] else zero, absmax[1][b] if uses[1] else zero,
            absmax[2][b] if uses[2] else zero)


def _decoded1(codes, maps, old, i, uses, placeholder):
    return (maps[0][codes[0][i]] * old[0] if uses[0] else placeholder,)


def _decoded3(codes, maps, old, i, uses, placeholder):
    return (maps[0][codes[0][i]] * old[0] if uses[0] else placeholder,
            maps[1][codes[1][i]] * old[1] if uses[1] else placeholder,
            maps[2][codes[2][i]] * old[2] if uses[2] else placeholder)


def _maxima1(m, s):
    return (_magnitude(m[0], s[0]),)


def _maxima3(m, s):
    return _magnitude(m[0], s[0]), _magnitude(m[1], s[1]), _magnitude(m[2], s[2])


def _finish1(absmax, b, m, uses):
    """Stores the new absmax; returns the reciprocals the codes are found with"""
    if uses[0]:
        absmax[0][b] = _f32_from_bits(m[0])
    return (_reciprocal(m[0]),)


def _finish3(absmax, b, m, uses):
    """Stores the new absmax; returns the reciprocals the codes are found with"""
    if uses[0]:
        absmax[0][b] = _f32_from_bits(m[0])
    if uses[1]:
        absmax[1][b] = _f32_from_bits(m[1])
    if uses[2]:
        absmax[2][b] = _f32_from_bits(m[2])
    return _reciprocal(m[0]), _reciprocal(m[1]), _reciprocal(m[2])


def _encode1(codes, maps, luts, r, s, i, uses):
    if uses[0]:
        codes[0][i] = _code(s[0] * r[0], maps[0], luts[0])


def _encode3(codes, maps, luts, r, s, i, uses):
    if uses[0]:
        codes[0][i] = _code(s[0] * r[0], maps[0], luts[0])
    if uses[1]:
        codes[1][i] = _code(s[1] * r[1], maps[1], luts[1])
    if uses[2]:
        codes[2][i] = _code(s[2] * r[2], maps[2], luts[2])


def _zeros1():
    return (0,)


def _zeros3():
    return 0, 0, 0


_HELPERS = {n: {name: _device(globals()[f"_{name}{n}"])
                for name in ("old", "decoded", "maxima", "finish", "encode", "zeros")}
            for n in (1, 3)}


def _step(p, g, codes, absmax, maps, luts, c):
    """Template: per block of BLOCK elements (one thread), the element's new state maxima, then
    the element again, the parameter and the codes stored"""
    n = p.size
    for b in range(cuda.grid(1), (n + BLOCK - 1) // BLOCK, cuda.gridsize(1)):
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        old = _old(absmax, b, USES, TINY)
        m = _zeros()
        for i in range(lo, hi):
            x = g[i]
            _, s = _element(p[i], x, _decoded(codes, maps, old, i, USES, x), c, USES)
            m = _maxima(m, s)
        r = _finish(absmax, b, m, USES)
        for i in range(lo, hi):
            x = g[i]
            p[i], s = _element(p[i], x, _decoded(codes, maps, old, i, USES, x), c, USES)
            _encode(codes, maps, luts, r, s, i, USES)


#: Unbound names of the template above (bound in each copy by _kernel); never used.
_element = _old = _zeros = _decoded = _maxima = _finish = _encode = USES = None


@functools.cache
def _kernel(kernel, uses):
    """The 8-bit kernel of the element ``kernel`` specialized on ``uses``."""
    helpers = _HELPERS[len(uses)]
    step = specialized(_step, f"_quant8_step_{kernel}_{mode_name(uses)}",
                       f"8-bit {kernel} (uses {uses}); formula in "
                       f"fastopt.backends.numpy.quant8.{kernel}",
                       _element=getattr(E, kernel), USES=uses,
                       **{f"_{name}": f for name, f in helpers.items()})
    return exact_jit(step)


def _launcher(kernel):
    algorithm = ALGORITHMS[kernel]
    args = KernelArgs(algorithm)

    def step(param, grad, codes, absmax, maps, luts, *scalars, stream=None):
        if param.size == 0:
            return
        stream = stream_of(param, stream)
        uses = tuple(c.size > 0 for c in codes)
        constants = algorithm.constants(tuple(map(np.float32, args.floats(scalars))),
                                        args.flags(scalars))
        blocks = -(-param.size // BLOCK)
        launch(_kernel(kernel, uses), blocks, flat(param), flat(grad), tuple(map(flat, codes)),
               tuple(absmax), tuple(maps), tuple(luts), constants, stream=stream)

    step.__name__ = step.__qualname__ = kernel
    step.__doc__ = (f"8-bit {kernel} step in place; formula in "
                    f":func:`fastopt.backends.numpy.quant8.{kernel}`.")
    return step


for _kernel_name in STATE_MAPS:
    globals()[_kernel_name] = _launcher(_kernel_name)
del _kernel_name
