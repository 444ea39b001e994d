"""float32 <-> float16 / bfloat16 conversions and a counter-based random stream, on bit patterns.

Plain integer arithmetic written once as ``numba.njit`` functions, which numba CPU kernels and numba
CUDA kernels both call (numba compiles them for the target of the caller; ``.py_func`` is the plain
Python version, which also works on numpy int64 arrays where a function has no branches), so that
every backend rounds to the same bits. Values are Python/int64 integers: a float32 as its 32-bit
pattern ``u`` in ``[0, 2**32)``, a 16-bit float as its pattern in ``[0, 2**16)``. Every product
stays below ``2**63``, so int64 arithmetic never overflows and no unsigned types are needed (numba
would turn mixed signed/unsigned arithmetic into float64).

Formats (``fmt``): 0 float32, 1 float16 (IEEE binary16), 2 bfloat16.
"""

import numba

FLOAT32, FLOAT16, BFLOAT16 = 0, 1, 2
MASK32 = 0xFFFFFFFF


@numba.njit(cache=True)
def mul32(x, c):
    """``(x * c) mod 2**32`` for ``x, c < 2**32``, through products below ``2**48``."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & MASK32


@numba.njit(cache=True)
def fmix32(h):
    """MurmurHash3's 32-bit finalizer: a bijection that mixes every input bit into every output."""
    h ^= h >> 16
    h = mul32(h, 0x85EBCA6B)
    h ^= h >> 13
    h = mul32(h, 0xC2B2AE35)
    h ^= h >> 16
    return h


@numba.njit(cache=True)
def stream_key(seed, step):
    """The key of one step's random stream (computed on the host)."""
    return fmix32(fmix32(seed & MASK32) ^ (step & MASK32))


@numba.njit(cache=True)
def random32(key, index):
    """32 random bits for element ``index`` of the stream ``key``: counter-based, so any element
    of any step can be recomputed, in any order, on any backend."""
    return fmix32(key ^ fmix32(index & MASK32) ^ (index >> 32))


@numba.njit(cache=True)
def bf16_nearest(u):
    """bfloat16 bits of the float32 bits ``u``, rounded to nearest, ties to even."""
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return (u >> 16) | 0x40  # NaN stays NaN, made quiet
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16


@numba.njit(cache=True)
def bf16_stochastic(u, rnd):
    """bfloat16 bits of ``u``, rounded up in magnitude with probability (dropped bits) / 2**16."""
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return (u >> 16) | 0x40
    return (u + (rnd >> 16)) >> 16


@numba.njit(cache=True)
def f16_nearest(u):
    """float16 bits of the float32 bits ``u``, rounded to nearest, ties to even (as numpy)."""
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    if a >= 0x7F800000:  # inf, or NaN keeping its top payload bits as numpy does
        if a == 0x7F800000:
            return sign | 0x7C00
        h = 0x7C00 + ((a & 0x7FFFFF) >> 13)
        return sign | (0x7C01 if h == 0x7C00 else h)
    if a >= 0x477FF000:  # 65520 and up round to inf
        return sign | 0x7C00
    if a >= 0x38800000:  # a normal float16: rebias the exponent, round 13 bits away
        h = (a - 0x38000000) >> 13
        rest = a & 0x1FFF
        if rest > 0x1000 or (rest == 0x1000 and (h & 1) == 1):
            h += 1
        return sign | h
    if a < 0x33000000:  # below half the smallest subnormal (2**-25, a tie, goes to even: 0)
        return sign
    e = a >> 23
    m = (a & 0x7FFFFF) | 0x800000
    shift = 126 - e  # a subnormal float16 counts units of 2**-24
    h = m >> shift
    rest = m & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rest > half or (rest == half and (h & 1) == 1):
        h += 1
    return sign | h


@numba.njit(cache=True)
def f16_stochastic(u, rnd):
    """float16 bits of ``u``, rounded up in magnitude with probability (dropped bits) / 2**k.

    Magnitudes below 2**-30 (far under float16's smallest subnormal, 2**-24) round to zero.
    """
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    if a >= 0x7F800000:
        return f16_nearest(u)
    if a >= 0x47800000:  # 65536 and up
        return sign | 0x7C00
    if a >= 0x38800000:
        return sign | (((a - 0x38000000) + (rnd >> 19)) >> 13)  # may carry up to inf
    e = a >> 23
    shift = 126 - e
    if shift > 32:
        return sign
    m = (a & 0x7FFFFF) | 0x800000
    return sign | ((m + (rnd >> (32 - shift))) >> shift)


@numba.njit(cache=True)
def f16_to_f32(h):
    """float32 bits of the float16 bits ``h`` (exact)."""
    sign = (h & 0x8000) << 16
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0x1F:
        return sign | 0x7F800000 | (m << 13)
    if e != 0:
        return sign | ((e + 112) << 23) | (m << 13)
    if m == 0:
        return sign
    e = 113  # a subnormal: shift the mantissa up to the implicit bit
    while (m & 0x400) == 0:
        m <<= 1
        e -= 1
    return sign | (e << 23) | ((m & 0x3FF) << 13)


@numba.njit(cache=True)
def decode(bits, fmt):
    """float32 bits of a stored value of format ``fmt``."""
    if fmt == FLOAT16:
        return f16_to_f32(bits)
    if fmt == BFLOAT16:
        return bits << 16
    return bits


@numba.njit(cache=True)
def encode(u, fmt, stochastic, rnd):
    """Stored bits of format ``fmt`` for the float32 bits ``u``."""
    if fmt == FLOAT16:
        return f16_stochastic(u, rnd) if stochastic else f16_nearest(u)
    if fmt == BFLOAT16:
        return bf16_stochastic(u, rnd) if stochastic else bf16_nearest(u)
    return u
