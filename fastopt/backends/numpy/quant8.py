r"""8-bit blockwise optimizer state: the quantization maps and the reference steps.

Dettmers, Lewis, Shleifer & Zettlemoyer (2022), "8-bit Optimizers via Block-wise Quantization",
arXiv:2110.02861 (bitsandbytes' 8-bit optimizers). A state array of ``n`` float32 values is kept
as ``n`` uint8 codes and ``ceil(n / 256)`` float32 block maxima: block ``b`` holds elements
``[256 b, 256 b + 256)`` (the last one shorter) and

.. math::
    a_b = \max_{i \in b} |x_i|, \qquad
    q_i = \#\{k : t_k < y_i\}, \quad y_i = \operatorname{clamp}(x_i \cdot r_b, -1, 1), \quad
    r_b = 1 / \max(a_b, 10^{-38}), \qquad
    \tilde x_i = Q[q_i]\, a_b

with :math:`Q` the 256 sorted values of the map and :math:`t_k = (Q[k] + Q[k+1]) / 2` the 255
midpoints between them (float32): ``q`` is the nearest code, a tie going to the lower one, as
``torch.bucketize`` on those midpoints does in bitsandbytes' reference path. One exception: the
unsigned map's first threshold is :math:`t_0 = 0`, so that a positive second moment never rounds
to 0 (it takes the smallest positive code, :math:`3.25 \cdot 10^{-7} a_b`). A second moment
below half of that, next to a first moment that is not, would otherwise be decoded as 0 at the
next step, whose update :math:`m / (\sqrt{v} + \epsilon)` is then :math:`m / \epsilon`: the
digits MLP diverges with nearest rounding there (one seed in three), and trains with this one.
(bitsandbytes' compiled CPU quantizer avoids 0 another way: it gives every value below about
:math:`1.6 \cdot 10^{-5} a_b` one small code, zero included.) The maximum is taken over the
magnitudes' bits as integers (exact, and a NaN, above every other value, propagates: a NaN state
stays visible as a NaN block); ``y`` NaN gives code 0.

The maps are the *dynamic tree* quantization of the paper: for signed state (first moments,
momentum) 7 decades :math:`10^{-6} \ldots 10^{0}`, decade :math:`i` holding :math:`2^i`
midpoints of an even split of :math:`[0.1, 1]` scaled by :math:`10^{i-6}`, each with both
signs, plus 0 and 1 (256 values); the unsigned variant (second moments, Adagrad's sum) spends
the sign bit on twice the values per decade. :func:`dynamic_map` computes them in float64 and
rounds once to float32; bitsandbytes' ``create_dynamic_map`` rounds its ``torch.linspace`` in
float32 first, so some of its values differ by one float32 ulp.

A step dequantizes the state it uses, runs the float32 step of :mod:`fastopt.optim.reference`
and quantizes the new state again, block by block: ``STATE_MAPS`` says which map each state
array of each algorithm uses. The backend steps (``numpy``, ``cpu``, ``c``, ``cuda`` ``quant8``
modules) have one signature::

    <kernel>(param, grad, codes, absmax, maps, luts, <kernel scalars...>, grad_scale)

``codes``, ``absmax``, ``maps``, ``luts``: tuples in ``Algorithm.state`` order of the uint8 codes
(the parameter's shape), the float32 block maxima (``ceil(n / 256)``), the map of each state
(:func:`map_table`) and its lookup table (:func:`lookup_table`, which the kernels find a code
with, exactly as defined above); a state the mode does not use has empty codes and absmax and
is never touched. ``param`` and ``grad`` are float32; the scalars are the float step's
(:mod:`fastopt.backends`), as Python floats. Every backend computes the float32 step's bits, so
the codes and maxima it stores are this module's, bit for bit.
"""

import functools

import numpy as np

from fastopt._core.config import QUANT8_BLOCK
from fastopt.optim import algorithms as _algorithms, reference

#: Elements per block: one float32 absmax each.
BLOCK = QUANT8_BLOCK
#: The smallest absmax a block is divided by: an all-zero block quantizes to the code of 0.
TINY = np.float32(1e-38)

#: Which map each state array uses (``Algorithm.state`` order), by kernel: signed moments and
#: momenta, unsigned second moments and sums.
STATE_MAPS = {
    "adam": ("signed", "unsigned", "unsigned"),
    "sgd": ("signed",),
    "rmsprop": ("unsigned", "signed", "signed"),
    "lion": ("signed",),
    "adagrad": ("unsigned",),
}
#: The algorithms with 8-bit state (AdamW runs Adam's kernel).
ALGORITHMS = tuple(name for name, a in _algorithms.ALGORITHMS.items() if a.kernel in STATE_MAPS)


def dynamic_map(signed):
    """The 256 sorted float32 values of the dynamic (tree) quantization map, signed or not."""
    values = [0.0, 1.0]
    for i in range(7):
        items = 2 ** i if signed else 2 ** (i + 1)
        bounds = np.linspace(0.1, 1.0, items + 1)
        means = (bounds[:-1] + bounds[1:]) / 2 * 10.0 ** (i - 6)
        values += list(means) + (list(-means) if signed else [])
    return np.sort(np.array(values, np.float32))


def map_table(signed):
    """A map as the kernels take it: its 256 values, then its 255 thresholds and three +inf
    (float32, 514 values). The thresholds are the midpoints, except the unsigned map's first,
    which is 0: a positive value never rounds to 0 there."""
    q = dynamic_map(signed)
    thresholds = (q[:-1] + q[1:]) / np.float32(2)
    if not signed:
        thresholds[0] = 0
    return np.concatenate([q, thresholds, [np.inf] * 3]).astype(np.float32)


#: A float32 y in [-1, 1] falls in bucket ``(bits(y) & 0x7FFFFFFF) >> LUT_SHIFT`` of its sign:
#: 2**(23 - LUT_SHIFT) buckets per power of two. The map's midpoints are far enough apart that a
#: bucket holds at most two of them (checked by :func:`lookup_table`).
LUT_SHIFT = 17
#: Buckets per sign: those of [0, 1], then one for NaN (and anything above 1).
LUT_SIDE = (0x3F800000 >> LUT_SHIFT) + 2


def lookup_table(table):
    """The kernels' index of the midpoints of ``table`` (:func:`map_table`): int32 (which
    vectorized loops gather), per sign (positive, then negative) and bucket of ``LUT_SHIFT``, the
    number of midpoints below the bucket's least value, so that the code of y is

    ``base + (t[base] < y) + (t[base + 1] < y)``, ``base = lut[min(m >> LUT_SHIFT, LUT_SIDE - 1)
    + sign * LUT_SIDE]`` with ``m`` the bits of ``|y|`` and ``t`` the midpoints,

    exactly ``#{k : t_k < y}`` (0 for NaN, whose bucket is the last, of base 0)."""
    midpoints = table[256:511]
    top = LUT_SIDE - 2
    out = np.zeros(2 * LUT_SIDE, np.int32)
    for sign in (0, 1):
        bucket = np.arange(top + 1, dtype=np.uint64)
        first = ((bucket << LUT_SHIFT) | (sign << 31)).astype(np.uint32).view(np.float32)
        last = (((bucket + 1) << LUT_SHIFT) - 1 | (sign << 31)).astype(np.uint32)
        last = last.view(np.float32)
        low, high = np.minimum(first, last), np.maximum(first, last)
        inside = (np.searchsorted(midpoints, high, "right")
                  - np.searchsorted(midpoints, low, "left"))
        if inside.max() > 2:
            raise ValueError("lookup_table: a bucket holds more than two midpoints")
        out[sign * LUT_SIDE:sign * LUT_SIDE + top + 1] = np.searchsorted(midpoints, low, "left")
    return out


@functools.cache
def _tables():
    maps = {"signed": map_table(True), "unsigned": map_table(False)}
    luts = {kind: lookup_table(table) for kind, table in maps.items()}
    for table in (*maps.values(), *luts.values()):
        table.flags.writeable = False
    return {"MAPS": maps, "LUTS": luts}


def __getattr__(name):
    """``MAPS`` and ``LUTS``: the two maps as :func:`map_table` gives them and their lookup
    tables, read-only, by kind (``"signed"``, ``"unsigned"``); made on first use, so that
    importing fastopt does not pay for them."""
    if name in ("MAPS", "LUTS"):
        return _tables()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def blocks(n):
    """The number of blocks (absmax values) of ``n`` elements."""
    return -(-n // BLOCK)


def quantize(x, table):
    """``(codes, absmax)`` of the float32 values ``x`` (any shape) with the map ``table``."""
    x = np.asarray(x, np.float32)
    flat = x.reshape(-1)
    n = flat.size
    padded = np.zeros(blocks(n) * BLOCK, np.float32)
    padded[:n] = flat
    magnitude = padded.view(np.uint32) & np.uint32(0x7FFFFFFF)
    absmax = magnitude.reshape(-1, BLOCK).max(axis=1).view(np.float32)  # a NaN propagates
    r = np.float32(1) / np.maximum(absmax, TINY)
    y = np.clip(padded.reshape(-1, BLOCK) * r[:, None], np.float32(-1), np.float32(1))
    y = y.reshape(-1)[:n]
    midpoints = table[256:511]
    codes = np.searchsorted(midpoints, y, side="left")  # #{k : t_k < y}
    codes[np.isnan(y)] = 0  # no midpoint is below NaN
    return codes.astype(np.uint8).reshape(x.shape), absmax


def dequantize(codes, absmax, table):
    """The float32 values of ``codes`` (any shape) and their blocks' ``absmax``."""
    flat = codes.reshape(-1)
    scale = np.repeat(absmax, BLOCK)[:flat.size]
    return (table[:256][flat] * scale).reshape(codes.shape)


def _step(kernel):
    """The reference 8-bit step of ``kernel``: dequantize, the float32 reference, quantize."""
    reference_step = getattr(reference, kernel)

    def step(param, grad, codes, absmax, maps, luts, *scalars):
        """Returns ``(param, codes, absmax)``, new arrays (for unused state: those given)."""
        scalars = [np.float32(s) if type(s) is float else s for s in scalars]
        states = [dequantize(c, a, t) if c.size else np.empty(0, np.float32)
                  for c, a, t in zip(codes, absmax, maps)]
        p, *new = reference_step(param, grad, *states, *scalars)
        new_codes, new_absmax = [], []
        for c, a, t, value in zip(codes, absmax, maps, new):
            if c.size:
                c, a = quantize(value, t)
            new_codes.append(c)
            new_absmax.append(a)
        return p, tuple(new_codes), tuple(new_absmax)

    step.__name__ = step.__qualname__ = kernel
    step.__doc__ = (f"8-bit {kernel}: the state dequantized, :func:`fastopt.optim.reference."
                    f"{kernel}` in float32, the new state quantized per block of {BLOCK}; returns "
                    "``(param, codes, absmax)`` as new arrays.")
    return step


def _in_place(reference_step):
    def step(param, grad, codes, absmax, maps, luts, *scalars):
        p, new_codes, new_absmax = reference_step(param, grad, codes, absmax, maps, luts,
                                                  *scalars)
        param[...] = p
        for target, value in zip((*codes, *absmax), (*new_codes, *new_absmax)):
            if target.size:
                target[...] = value

    step.__name__ = step.__qualname__ = reference_step.__name__
    step.__doc__ = f"The 8-bit reference {reference_step.__name__} step, in place."
    return step


#: The reference steps (new arrays), by kernel name.
REFERENCE = {kernel: _step(kernel) for kernel in STATE_MAPS}
for _kernel, _reference in REFERENCE.items():
    globals()[_kernel] = _in_place(_reference)
del _kernel, _reference
