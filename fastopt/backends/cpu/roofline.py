"""Roofline kernels of the ``cpu`` backend (numba): same-traffic kernels and STREAM copy/triad.

A same-traffic kernel moves exactly the bytes of an optimizer step, with trivial arithmetic. A step
reads the gradient and updates ``k`` arrays in place (param and the ``k - 1`` state arrays its mode
uses), so it reads ``k + 1`` arrays and writes ``k``; the kernel of ``k`` does the same with one
multiply-add per written element:

.. math::
    w_j[i] \\leftarrow w_j[i] + s\\, r[i], \\qquad j = 1..k

A mixed-precision step's kernel (:func:`same_traffic_mixed`) moves a mixed step's bytes: the
gradient read and the model copy written in their 16-bit formats, the master weights and the state
read and written.

Its time is what a step of that traffic cannot beat on this machine: the benchmark reports every
step as a ratio to it. STREAM copy (``dst = src``, 2 arrays) and triad (``a = b + s c``, 3 arrays)
measure the machine's bandwidth the usual way, and a STREAM-style read (a sum, 1 array) that of the
passes that only read.

The kernels are compiled like the optimizer kernels of :mod:`fastopt.backends.cpu.optim` (same
options, serial below :data:`~fastopt.backends.cpu.optim.PARALLEL_THRESHOLD` elements, ``prange``
above), so that a same-traffic kernel differs from a step only in its arithmetic. The C twins are
in ``csrc/roofline.c``; :mod:`fastopt.bench.timing` runs both.
"""

import functools

import numpy as np
from fastopt.backends._numba.compile import serial_and_parallel
from numba import prange

from fastopt.backends.cpu.optim import PARALLEL_THRESHOLD


def _compile_serial_and_parallel(body, **options):
    """A launcher ``f(n, *args)`` running a serial build of ``body`` below PARALLEL_THRESHOLD
    elements and a ``parallel=True`` build above, with the options of
    :mod:`fastopt.backends.cpu.optim` (and ``options``).

    See :mod:`fastopt.backends._numba.compile` for why the two builds need distinct names.
    """
    serial, parallel = serial_and_parallel(body, **options)

    def launch(n, *args):
        return (parallel if n >= PARALLEL_THRESHOLD else serial)(*args)

    launch.serial, launch.parallel = serial, parallel
    return functools.update_wrapper(launch, body)

#: The largest number of arrays an optimizer step updates (AMSGrad: param, m, v, max v).
MAX_WRITTEN = 4


@_compile_serial_and_parallel
def _update1(r, w0, s):
    """w0 += s*r: the same-traffic kernel of a step reading 2 arrays and writing 1"""
    for i in prange(r.size):
        w0[i] = w0[i] + s * r[i]


@_compile_serial_and_parallel
def _update2(r, w0, w1, s):
    """w0 += s*r; w1 += s*r: same traffic as a step reading 3 arrays and writing 2"""
    for i in prange(r.size):
        w0[i] = w0[i] + s * r[i]
        w1[i] = w1[i] + s * r[i]


@_compile_serial_and_parallel
def _update3(r, w0, w1, w2, s):
    """w0..w2 += s*r: same traffic as a step reading 4 arrays and writing 3"""
    for i in prange(r.size):
        w0[i] = w0[i] + s * r[i]
        w1[i] = w1[i] + s * r[i]
        w2[i] = w2[i] + s * r[i]


@_compile_serial_and_parallel
def _update4(r, w0, w1, w2, w3, s):
    """w0..w3 += s*r: same traffic as a step reading 5 arrays and writing 4"""
    for i in prange(r.size):
        w0[i] = w0[i] + s * r[i]
        w1[i] = w1[i] + s * r[i]
        w2[i] = w2[i] + s * r[i]
        w3[i] = w3[i] + s * r[i]


_UPDATE = {1: _update1, 2: _update2, 3: _update3, 4: _update4}


# The same-traffic kernels of a mixed-precision step: it reads the gradient, updates the float32
# master weights and its state (float32, or bfloat16 bits) in place, and writes the model copy
# (16-bit bits) without reading it. The arithmetic converts each value to float32 and back, as
# trivially as above; compiled once per combination of array types.

@_compile_serial_and_parallel
def _mixed1(r, w0, out, s):
    """w0 += s*r; out = r: the same traffic as a mixed-precision step updating 1 array"""
    for i in prange(r.size):
        x = np.float32(r[i])
        w0[i] = w0[i] + s * x
        out[i] = r[i]


@_compile_serial_and_parallel
def _mixed2(r, w0, w1, out, s):
    """w0, w1 += s*r; out = r: the same traffic as a mixed-precision step updating 2 arrays"""
    for i in prange(r.size):
        x = np.float32(r[i])
        w0[i] = w0[i] + s * x
        w1[i] = w1[i] + s * x
        out[i] = r[i]


@_compile_serial_and_parallel
def _mixed3(r, w0, w1, w2, out, s):
    """w0..w2 += s*r; out = r: the same traffic as a mixed-precision step updating 3 arrays"""
    for i in prange(r.size):
        x = np.float32(r[i])
        w0[i] = w0[i] + s * x
        w1[i] = w1[i] + s * x
        w2[i] = w2[i] + s * x
        out[i] = r[i]


@_compile_serial_and_parallel
def _mixed4(r, w0, w1, w2, w3, out, s):
    """w0..w3 += s*r; out = r: the same traffic as a mixed-precision step updating 4 arrays"""
    for i in prange(r.size):
        x = np.float32(r[i])
        w0[i] = w0[i] + s * x
        w1[i] = w1[i] + s * x
        w2[i] = w2[i] + s * x
        w3[i] = w3[i] + s * x
        out[i] = r[i]


_MIXED = {1: _mixed1, 2: _mixed2, 3: _mixed3, 4: _mixed4}


@_compile_serial_and_parallel
def _quant8_1(r, w, c0, s):
    """w += s*r; c0 += 1: the elementwise traffic of an 8-bit step with 1 state array"""
    for i in prange(r.size):
        w[i] = w[i] + s * r[i]
        c0[i] = c0[i] + np.uint8(1)


@_compile_serial_and_parallel
def _quant8_2(r, w, c0, c1, s):
    """w += s*r; c0, c1 += 1: the elementwise traffic of an 8-bit step with 2 state arrays"""
    for i in prange(r.size):
        w[i] = w[i] + s * r[i]
        c0[i] = c0[i] + np.uint8(1)
        c1[i] = c1[i] + np.uint8(1)


@_compile_serial_and_parallel
def _quant8_3(r, w, c0, c1, c2, s):
    """w += s*r; c0..c2 += 1: the elementwise traffic of an 8-bit step with 3 state arrays"""
    for i in prange(r.size):
        w[i] = w[i] + s * r[i]
        c0[i] = c0[i] + np.uint8(1)
        c1[i] = c1[i] + np.uint8(1)
        c2[i] = c2[i] + np.uint8(1)


@_compile_serial_and_parallel
def _bump(a, s):
    """a += s: the block maxima's traffic, ceil(n / 256) values per state array"""
    for b in prange(a.size):
        a[b] = a[b] + s


_QUANT8 = {1: _quant8_1, 2: _quant8_2, 3: _quant8_3}


@_compile_serial_and_parallel
def _copy(dst, src):
    """dst = src (STREAM copy)"""
    for i in prange(dst.size):
        dst[i] = src[i]


@_compile_serial_and_parallel
def _triad(a, b, c, s):
    """a = b + s*c (STREAM triad)"""
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def _read(src):
    """sum(src) in any order (STREAM-style read: fastmath lets the sum vectorize)"""
    total = src.dtype.type(0)
    for i in prange(src.size):
        total += src[i]
    return total


_read = _compile_serial_and_parallel(_read, fastmath=True)


def _flat(a):
    return a.reshape(-1)


def same_traffic(written, read, scale):
    """``w += scale * read`` for each array ``w`` of ``written`` (1 to 4 arrays), in place.

    All arrays C-contiguous, of one float dtype and size, not overlapping (the caller checks).
    """
    kernel = _UPDATE[len(written)]
    kernel(read.size, _flat(read), *[_flat(w) for w in written], read.dtype.type(scale))


def same_traffic_quant8(param, read, codes, absmax, scale):
    """The traffic of an 8-bit step (:mod:`fastopt.backends.numpy.quant8`) with ``len(codes)``
    state arrays (1 to 3): ``param += scale * read``, each of ``codes`` (uint8) += 1, each of
    ``absmax`` (float32, one per block) += scale, in place."""
    _QUANT8[len(codes)](read.size, _flat(read), _flat(param), *map(_flat, codes),
                        np.float32(scale))
    for a in absmax:
        _bump(a.size, a, np.float32(scale))


def same_traffic_mixed(written, read, out, scale):
    """The same-traffic kernel of a mixed-precision step: ``w += scale * read`` in float32 for
    each array ``w`` of ``written`` (1 to 4: the master weights and the used state, float32 or
    uint16 bits, updated in place), and ``out[:] = read`` (the model copy, written only).

    All arrays C-contiguous, of one size, not overlapping (the caller checks); ``read`` and
    ``out`` of one 16-bit dtype, or ``read`` float32.
    """
    def flat(a):  # numba has no float16 arrays on the CPU: their bits, as a step takes them
        return _flat(a.view(np.uint16) if a.dtype == np.float16 else a)

    kernel = _MIXED[len(written)]
    kernel(read.size, flat(read), *map(flat, written), flat(out), np.float32(scale))


def stream_copy(dst, src):
    """STREAM copy: ``dst[:] = src``."""
    _copy(dst.size, _flat(dst), _flat(src))


def stream_read(src):
    """STREAM-style read: the sum of ``src``'s elements, in whatever order is fastest (a
    yardstick for the passes that only read, such as the non-finite check)."""
    return _read(src.size, _flat(src))


def stream_triad(a, b, c, scalar):
    """STREAM triad: ``a[:] = b + scalar * c``."""
    _triad(a.size, _flat(a), _flat(b), _flat(c), a.dtype.type(scalar))
