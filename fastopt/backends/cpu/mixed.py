"""The ``cpu`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba ``njit(parallel=True)``).

Signatures as in :mod:`fastopt.backends.numpy.mixed`. Every algorithm runs one kernel template,
specialized per algorithm and per set of used state arrays, over blocks of :data:`BLOCK` elements
(as ``csrc/mixed.c``): the block's gradient and used state are decoded into float32 scratch
arrays, the float32 element of :mod:`fastopt.backends.elements.optim` runs on them and the master
weights, and the state and the model copy are encoded back. Each of those is a loop of one format,
which numba's loop vectorizer takes; blocks are run in parallel above
:data:`fastopt.backends.cpu.optim.PARALLEL_THRESHOLD` elements.

The formats' conversions here are branch-free (selects; float16's by the processor, with NaNs
taken apart) and give the bits of :mod:`fastopt.backends.elements.bits`, the conversions of the
numpy reference and the ``cuda`` backend; the tests compare them on every float16 pattern and on
float32 patterns of every class. Why blocks: a step that decodes, updates and encodes one element
at a time, with the formats as runtime values, has every format's code in its one loop; LLVM
vectorizes that loop by computing all of them in 64-bit lanes under masks, spilling most of its
vector registers (over a thousand instructions per eight elements), and the float16 decoder's
loop over a subnormal's leading zeros and the encoders' branches on the exponent range are
data-dependent branches. A float32 gradient or state array is used in place, not copied.
"""

import functools

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from fastopt._core import config
from fastopt.backends._numba.compile import serial_and_parallel
from fastopt.backends._numba.specialize import load, mode_name, specialized, store
from fastopt.backends.cpu.optim import (PARALLEL_THRESHOLD, REDUCTION_CHUNK, E, _inline,
                                        _compile_serial_and_parallel)
from fastopt.backends.elements import bits as _bits
from fastopt.backends.elements.bits import FLOAT16, FLOAT32
from fastopt.backends.elements.mixed import mixed_step
from fastopt.backends.elements.optim import ELEMENTS

#: Elements per block: the decoded float32 scratch arrays (up to four) stay in L1.
BLOCK = config.CPU_MIXED_BLOCK
#: Elements per parallel task, a multiple of BLOCK; a task allocates its scratch arrays once.
CHUNK = config.CPU_MIXED_CHUNK
assert CHUNK % BLOCK == 0


@intrinsic
def _f32_from_bits(typingctx, u):
    """The float32 whose bit pattern is the low 32 bits of the integer u."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if u.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif u.bitwidth < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(u), codegen


@intrinsic
def _bits_from_f32(typingctx, x):
    """The bit pattern of the float32 x, as a non-negative int64."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(x), codegen


@intrinsic
def _f16_widened(typingctx, h):
    """The float32 value of the float16 whose bit pattern is the low 16 bits of the integer h,
    by the processor's conversion (a NaN comes out quiet)."""
    if not isinstance(h, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        half = builder.bitcast(builder.trunc(args[0], ir.IntType(16)), ir.HalfType())
        return builder.fpext(half, ir.FloatType())

    return types.float32(h), codegen


@intrinsic
def _f16_narrowed(typingctx, x):
    """The bit pattern, as an int64, of the float32 x rounded to float16 by the processor's
    conversion: to nearest even (a NaN comes out quiet)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        half = builder.fptrunc(args[0], ir.HalfType())
        return builder.zext(builder.bitcast(half, ir.IntType(16)), ir.IntType(64))

    return types.int64(x), codegen


@intrinsic
def _fmix32(typingctx, h):
    """bits.fmix32 of the low 32 bits of the integer h, in 32-bit arithmetic (its multiplications
    wrap as bits.mul32's), as an int64: a loop of it vectorizes with 32-bit lanes."""
    if not isinstance(h, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        x = builder.trunc(args[0], i32) if h.bitwidth > 32 else args[0]
        for shift, factor in ((16, 0x85EBCA6B), (13, 0xC2B2AE35), (16, None)):
            x = builder.xor(x, builder.lshr(x, ir.Constant(i32, shift)))
            if factor is not None:
                x = builder.mul(x, ir.Constant(i32, factor))
        return builder.zext(x, ir.IntType(64))

    return types.int64(h), codegen


# ---- The 16-bit formats, branch-free ------------------------------------------------------------
#
# Values are int64 (bit patterns, as in bits.py); each conditional is a choice between values
# computed on every element, which LLVM turns into a select. float16 is converted by the
# processor (F16C or AVX-512 vcvtph2ps/vcvtps2ph where LLVM has them), exact and rounding to
# nearest even as bits.py does, except that it makes NaNs quiet: a NaN takes bits.py's way.

@_inline
def _f16_value(h):
    """The float32 value of the float16 bits h (bits.f16_to_f32): the processor's conversion
    (exact), but a NaN keeps its payload as it is, not made quiet"""
    h = np.int64(h)
    nan = ((h & 0x8000) << 16) | 0x7F800000 | ((h & 0x3FF) << 13)
    return _f32_from_bits(nan) if (h & 0x7FFF) > 0x7C00 else _f16_widened(h)


@_inline
def _random32(key, i):
    """bits.random32(key, i), in 32-bit arithmetic"""
    i = np.int64(i)
    return _fmix32(key ^ _fmix32(i) ^ (i >> 32))


@_inline
def _f16_nan(a):
    """float16 bits of the NaN of magnitude bits a, keeping its top payload bits (nonzero)"""
    return 0x7C00 + max((a & 0x7FFFFF) >> 13, 1)


@_inline
def _f16_nearest(x):
    """float16 bits of x rounded to nearest, ties to even (bits.f16_nearest): the processor's
    conversion, but a NaN keeps its top payload bits as numpy keeps them, not made quiet"""
    u = _bits_from_f32(x)
    a = u & 0x7FFFFFFF
    return ((u >> 16) & 0x8000) | _f16_nan(a) if a > 0x7F800000 else _f16_narrowed(x)


@_inline
def _f16_stochastic(x, rnd):
    """float16 bits of x rounded up in magnitude with probability (dropped bits) / 2**k
    (bits.f16_stochastic)"""
    u = _bits_from_f32(x)
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    normal = ((a - 0x38000000) + (rnd >> 19)) >> 13
    shift = 126 - (a >> 23)  # a subnormal counts units of 2**-24; in range: 14..32
    clamped = min(max(shift, 0), 32)
    m = (a & 0x7FFFFF) | 0x800000
    subnormal = (m + (rnd >> (32 - clamped))) >> clamped
    h = normal if a >= 0x38800000 else (subnormal if shift <= 32 else 0)
    h = 0x7C00 if a >= 0x47800000 else h  # 65536 and up, and infinity
    return sign | (_f16_nan(a) if a > 0x7F800000 else h)


@intrinsic
def _bf16_rounded(typingctx, x, increment):
    """bfloat16 bits (an int64) of the float32 x rounded up in magnitude when the dropped bits
    plus increment (below 2**16) carry; a NaN stays NaN, made quiet (bits.bf16_nearest,
    bits.bf16_stochastic). In 32-bit arithmetic, so that a loop of it vectorizes with 32-bit
    lanes: the sum wraps only for a NaN, which the select replaces."""
    if x != types.float32 or not isinstance(increment, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        u = builder.bitcast(args[0], i32)
        step = builder.trunc(args[1], i32) if increment.bitwidth > 32 else args[1]
        sixteen = ir.Constant(i32, 16)
        nan = builder.icmp_unsigned(">", builder.and_(u, ir.Constant(i32, 0x7FFFFFFF)),
                                    ir.Constant(i32, 0x7F800000))
        quiet = builder.or_(builder.lshr(u, sixteen), ir.Constant(i32, 0x40))
        rounded = builder.lshr(builder.add(u, step), sixteen)
        return builder.zext(builder.select(nan, quiet, rounded), ir.IntType(64))

    return types.int64(x, increment), codegen


@_inline
def _bf16_nearest(x):
    """bfloat16 bits of x rounded to nearest, ties to even"""
    u = _bits_from_f32(x)
    return _bf16_rounded(x, 0x7FFF + ((u >> 16) & 1))


# ---- Blocks: one loop per format ----------------------------------------------------------------

# A float32 gradient or state array is passed as float32 values (a view of its bits) and used in
# place; a 16-bit one is decoded into a scratch array and, for the state, encoded back. Which is
# the array's type: numba picks the function's version while typing (_in_place, _values,
# _offset), so each kernel holds the code of its own arrays.

def _in_place(array):
    """Whether array (or each array of a tuple) holds float32 values, used in place"""


def _values(array, scratch):
    """array if it holds float32 values, else scratch (its values decoded)"""


def _offset(array, lo):
    """Where element lo of array is found in _values(array, scratch): lo, or 0 in scratch"""


def _float32_arrays(array):
    dtype = array.dtype if isinstance(array, types.Array) else array.dtype.dtype
    return dtype == types.float32


@overload(_in_place, inline="always")
def _in_place_impl(array):
    result = _float32_arrays(array)
    return lambda array: result


@overload(_values, inline="always")
def _values_impl(array, scratch):
    if _float32_arrays(array):
        return lambda array, scratch: array
    return lambda array, scratch: scratch


@overload(_offset, inline="always")
def _offset_impl(array, lo):
    if _float32_arrays(array):
        return lambda array, lo: np.uint64(lo)
    return lambda array, lo: np.uint64(0)


@_inline
def _decode(src, fmt, lo, n, out):
    """out[j] = the float32 value of src[lo + j], 16-bit bits in format fmt, for j < n"""
    lo, n = np.uint64(lo), np.uint64(n)
    if fmt == FLOAT16:
        for j in range(n):
            out[j] = _f16_value(src[lo + j])
    else:
        for j in range(n):
            out[j] = _f32_from_bits(np.uint32(src[lo + j]) << np.uint32(16))


@_inline
def _encode(values, n, fmt, dst, lo):
    """dst[lo + j] = values[j] as 16-bit bits in format fmt, rounded to nearest, for j < n"""
    lo, n = np.uint64(lo), np.uint64(n)
    if fmt == FLOAT16:
        for j in range(n):
            dst[lo + j] = _f16_nearest(values[j])
    else:
        for j in range(n):
            dst[lo + j] = _bf16_nearest(values[j])


@_inline
def _encode_model(master, lo, n, model, fmt, stochastic, key):
    """model[i] = master[i] rounded to format fmt for i in [lo, lo + n): to nearest even, or
    stochastically from random32(key, i)"""
    lo, n = np.uint64(lo), np.uint64(n)
    if stochastic and fmt == FLOAT16:
        for i in range(lo, lo + n):
            model[i] = _f16_stochastic(master[i], _random32(key, i))
    elif stochastic:
        for i in range(lo, lo + n):
            model[i] = _bf16_rounded(master[i], _random32(key, i) >> 16)
    elif fmt == FLOAT16:
        for i in range(lo, lo + n):
            model[i] = _f16_nearest(master[i])
    else:
        for i in range(lo, lo + n):
            model[i] = _bf16_nearest(master[i])


# The scratch arrays of the state, one per state array of the algorithm (a tuple's length is part
# of its type): those USES leaves out are empty and never touched, all of them with ``none``.

def _scratch1(uses, none):
    return (np.empty(0 if none or not uses[0] else BLOCK, np.float32),)


def _scratch2(uses, none):
    return (np.empty(0 if none or not uses[0] else BLOCK, np.float32),
            np.empty(0 if none or not uses[1] else BLOCK, np.float32))


def _scratch3(uses, none):
    return (np.empty(0 if none or not uses[0] else BLOCK, np.float32),
            np.empty(0 if none or not uses[1] else BLOCK, np.float32),
            np.empty(0 if none or not uses[2] else BLOCK, np.float32))


_SCRATCH = {n: _inline(f) for n, f in enumerate((_scratch1, _scratch2, _scratch3), start=1)}


# ---- The steps: one template for every algorithm -----------------------------------------------
#
# See fastopt.backends._numba.specialize: each kernel is a copy of _step whose globals bind USES,
# _element (the algorithm's float32 element), _scratch (for its number of state arrays) and
# _update (a copy of _update_block bound the same way). The state arrays are one UniTuple (one
# format): indexed by a loop counter, each is a plain array inside the loops of _decode and
# _encode. The element loop indexes the scratch arrays from 0 and master from lo, unsigned (numba
# then drops the negative-index wraparound, whose select on every access keeps a loop from
# vectorizing).

def _update_block(lo, n, p, g, at_g, s, at_s, c):
    """Template: the float32 element on p[lo + j], g[at_g + j] and the state of USES at
    s[k][at_s + j], for j < n"""
    lo = np.uint64(lo)
    for j in range(np.uint64(n)):
        x = g[at_g + j]
        p[lo + j], values = _element(p[lo + j], x, load(s, at_s + j, USES, x), c, USES)
        store(s, at_s + j, values, USES)


def _step(master, grad, grad_fmt, states, state_fmt, model, model_fmt, c, stochastic, key):
    """Template: per block, the 16-bit gradient and state of USES decoded to float32, the
    element, the 16-bit state and the model copy encoded back"""
    size = master.size
    for t in prange((size + CHUNK - 1) // CHUNK):
        scratch_g = np.empty(0 if _in_place(grad) else BLOCK, np.float32)
        scratch = _scratch(USES, _in_place(states))
        g, s = _values(grad, scratch_g), _values(states, scratch)
        for lo in range(t * CHUNK, min(size, (t + 1) * CHUNK), BLOCK):
            n = min(size - lo, BLOCK)
            if not _in_place(grad):
                _decode(grad, grad_fmt, lo, n, scratch_g)
            if not _in_place(states):
                for k in range(len(USES)):
                    if USES[k]:
                        _decode(states[k], state_fmt, lo, n, scratch[k])
            _update(lo, n, master, g, _offset(grad, lo), s, _offset(states, lo), c)
            if not _in_place(states):
                for k in range(len(USES)):
                    if USES[k]:
                        _encode(scratch[k], n, state_fmt, states[k], lo)
            _encode_model(master, lo, n, model, model_fmt, stochastic, key)


#: Unbound names of the templates above (bound in each copy by _kernel); never used.
_element = _scratch = _update = USES = None


@functools.cache
def _kernel(name, uses):
    """The mixed-precision kernel of the algorithm kernel ``name`` specialized on ``uses``, as
    ``run(n, <its arguments>)``, serial or parallel by size."""
    tag = f"{name}_{mode_name(uses)}"
    bound = dict(_element=getattr(E, name), USES=uses, _scratch=_SCRATCH[len(uses)])
    update = _inline(specialized(_update_block, f"_mixed_update_{tag}", **bound))
    doc = (f"Mixed-precision {name} (uses {uses}) on every element; formula in "
           f"fastopt.backends.numpy.mixed.{name}")
    return _compile_serial_and_parallel(specialized(_step, f"_mixed_step_{tag}", doc,
                                                    _update=update, **bound))


def _as_values(bits, fmt):
    """float32 bits (uint32) as float32 values, used in place by the kernels; 16-bit bits as
    they are"""
    return bits.view(np.float32) if fmt == FLOAT32 else bits


def _kernel_for(name, uses):
    """The kernel of ``name`` and ``uses`` as :func:`mixed_step` runs it, float32 gradient and
    state arrays passed as float32 values"""
    kernel = _kernel(name, uses)

    def run(n, master, grad, grad_fmt, states, state_fmt, *rest):
        kernel(n, master, _as_values(grad, grad_fmt), grad_fmt,
               tuple(_as_values(s, state_fmt) for s in states), state_fmt, *rest)
    return run


for _name in ELEMENTS:
    globals()[_name] = mixed_step(_name, functools.partial(_kernel_for, _name))
del _name


def _sum_of_squares_body(grad, grad_fmt, chunk):
    """sum(g_i^2) in float64 of decoded gradient bits, in fixed chunks summed in order"""
    n_chunks = (grad.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        s = 0.0
        for i in range(c * chunk, min(grad.size, (c + 1) * chunk)):
            x = np.float64(_f32_from_bits(_bits.decode(np.int64(grad[i]), grad_fmt)))
            s += x * x
        partial[c] = s
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


_sum_serial, _sum_parallel = serial_and_parallel(_sum_of_squares_body)


def sum_of_squares(grad, grad_fmt):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic)."""
    kernel = _sum_parallel if grad.size >= PARALLEL_THRESHOLD else _sum_serial
    return float(kernel(grad.reshape(-1), grad_fmt, REDUCTION_CHUNK))
