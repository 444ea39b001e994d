"""How the benchmark times, and its yardsticks.

Every time is the median of repeated, warmed-up runs (:func:`median_time`). Cases compared with each
other are timed in turn, round after round (:func:`interleaved_samples`), and their ratios are
medians of the per-round ratios (:func:`paired_ratio`); :func:`time_cases` chooses between timing
in turn and one case at a time by whether the cases' arrays fit in memory together.

The yardsticks, on the two host backends:

- the **same-traffic kernel** of each step (:mod:`fastopt.backends.cpu.roofline`,
  ``csrc/roofline.c``): it reads and writes exactly the arrays the step does, with one multiply-add
  per written element;
- STREAM copy and triad, multi-threaded.
"""

import functools
import gc
import os
import statistics
import time

import numpy as np

from fastopt._core.config import QUANT8_BLOCK
from fastopt._core.dispatch import available_backends
from fastopt.bench.cases import Result, Unsupported

#: The backends with roofline kernels: a step on one of them is compared with its own backend's.
ROOFLINE_BACKENDS = ("cpu", "c")

def median_time(fn, repeat=10, warmup=3, min_sample_s=2e-4, max_s=10.0):
    """Median seconds per call of ``fn`` over ``repeat`` samples, after ``warmup`` calls."""
    return statistics.median(time_samples(fn, repeat, warmup, min_sample_s, max_s))


def time_samples(fn, repeat=10, warmup=3, min_sample_s=2e-4, max_s=10.0):
    """Seconds per call of ``fn``, one value per sample, after ``warmup`` calls.

    Short calls are batched so that a sample lasts at least ``min_sample_s`` (a sample is then the
    batch's mean). Slow cases stop early after ``max_s`` seconds, with at least 3 samples.
    """
    start = time.perf_counter()
    for _ in range(max(1, warmup)):
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        if time.perf_counter() - start > max_s / 2:
            break
    inner = int(min(10_000, max(1, min_sample_s / max(once, 1e-9))))
    samples = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
        if len(samples) >= 3 and time.perf_counter() - start > max_s:
            break
    return samples


def interleaved_samples(fns, repeat=10, warmup=3, min_sample_s=0.02, max_s=10.0):
    """:func:`time_samples` of several functions (``{label: fn}``) taken in turn, one sample of
    each per round, so that the machine's drift (other load, clock, memory placement) falls on
    all of them alike and a ratio of two of them can be taken round by round. Each sample follows
    one untimed call of its function, which brings its arrays back into cache as a loop of that
    function alone would find them (the other functions' calls evict them). A sample batches
    calls over ``min_sample_s`` (longer than :func:`time_samples`'s): switching between libraries
    leaves the previous one's thread pool spinning and wakes this one's from sleep, which would
    weigh on a short sample. Returns ``{label: samples}``; stops early after ``max_s`` seconds
    per function, with at least 3 rounds."""
    inner = {}
    for label, fn in fns.items():
        once = min(time_samples(fn, 1, warmup, min_sample_s=0.0, max_s=max_s))
        inner[label] = int(min(10_000, max(1, min_sample_s / max(once, 1e-9))))
    samples = {label: [] for label in fns}
    start = time.perf_counter()
    for done in range(1, repeat + 1):
        for label, fn in fns.items():
            fn()
            t0 = time.perf_counter()
            for _ in range(inner[label]):
                fn()
            samples[label].append((time.perf_counter() - t0) / inner[label])
        if done >= 3 and time.perf_counter() - start > max_s * len(fns):
            break
    return samples


def paired_ratio(numerator, denominator):
    """The median over rounds of ``numerator[i] / denominator[i]`` (samples of
    :func:`interleaved_samples`)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def paired_spread(numerator, denominator):
    """The lower and upper quartiles over rounds of ``numerator[i] / denominator[i]``: how much
    the rounds disagree about :func:`paired_ratio`."""
    ratios = sorted(a / b for a, b in zip(numerator, denominator))
    if len(ratios) < 2:
        return ratios[0], ratios[0]
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return low, high


#: A ratio whose rounds' quartiles differ by more than this fraction of it is too noisy to read.
NOISE = 0.25


def too_noisy(ratio, spread, bound=None):
    """Whether a ratio cannot be read: its rounds disagree by more than :data:`NOISE`, or it
    passes its physical ``bound`` (a step faster than the kernel moving the same bytes)."""
    if ratio is None:
        return False
    if bound is not None and ratio > bound:
        return True
    return spread is not None and (spread[1] - spread[0]) > NOISE * ratio


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def time_cases(makers, nbytes, repeat=10, max_s=10.0, skipped=None, what="{}",
               min_sample_s=0.02):
    """Samples of the cases ``{key: make}``, where ``make()`` builds a case's closure (or raises
    :class:`Unsupported`, noted in ``skipped`` as ``what.format(key)``). The closures are timed
    in turn (:func:`interleaved_samples`) when their arrays, about ``nbytes`` per case, fit in
    memory together (under 40% of it), else each alone, built just before. Returns ``(samples by
    key, whether they were timed in turn)``."""
    memory = _physical_memory()
    together = memory is not None and len(makers) * nbytes < 0.4 * memory
    samples, fns = {}, {}
    for key, make in makers.items():
        try:
            fns[key] = make()
        except Unsupported as exc:
            if skipped is not None:
                skipped.append((what.format(key), str(exc)))
            continue
        if not together:
            samples[key] = time_samples(fns.pop(key), repeat, max_s=max_s)
            gc.collect()
    if together:
        samples = interleaved_samples(fns, repeat, max_s=max_s, min_sample_s=min_sample_s)
    return samples, together


# ---- the yardsticks: same-traffic and STREAM kernels ----------------------------------------

class _CRoofline:
    """The C roofline kernels (``csrc/roofline.c``) with the signatures of
    :mod:`fastopt.backends.cpu.roofline`."""

    def __init__(self):
        from fastopt.backends.c._fastopt_c import ffi, lib

        self._ffi = ffi
        self._kernels = {
            np.dtype(np.float32): ("float[]", lib.fastopt_same_traffic_f32,
                                   lib.fastopt_stream_copy_f32, lib.fastopt_stream_triad_f32,
                                   lib.fastopt_stream_read_f32),
            np.dtype(np.float64): ("double[]", lib.fastopt_same_traffic_f64,
                                   lib.fastopt_stream_copy_f64, lib.fastopt_stream_triad_f64,
                                   lib.fastopt_stream_read_f64),
        }
        self._quant8 = lib.fastopt_same_traffic_quant8

    def same_traffic(self, written, read, scale):
        ctype, kernel, *_ = self._kernels[read.dtype]
        buf = self._ffi.from_buffer
        pointers = [buf(ctype, w) for w in written] + [self._ffi.NULL] * (4 - len(written))
        kernel(read.size, len(written), *pointers, buf(ctype, read), scale)

    def same_traffic_quant8(self, param, read, codes, absmax, scale):
        buf, null = self._ffi.from_buffer, self._ffi.NULL
        pad = [null] * (3 - len(codes))
        self._quant8(read.size, len(codes), buf("float[]", param), buf("float[]", read),
                     *[buf("uint8_t[]", c) for c in codes], *pad,
                     *[buf("float[]", a) for a in absmax], *pad, scale)

    def stream_copy(self, dst, src):
        ctype, _, kernel, *_ = self._kernels[dst.dtype]
        kernel(dst.size, self._ffi.from_buffer(ctype, dst), self._ffi.from_buffer(ctype, src))

    def stream_triad(self, a, b, c, scalar):
        ctype, _, _, kernel, _ = self._kernels[a.dtype]
        buf = self._ffi.from_buffer
        kernel(a.size, buf(ctype, a), buf(ctype, b), buf(ctype, c), scalar)

    def stream_read(self, src):
        ctype, *_, kernel = self._kernels[src.dtype]
        return kernel(src.size, self._ffi.from_buffer(ctype, src))


_roofline_modules = {}


def roofline_kernels(backend):
    """The roofline kernels of a host backend (``"cpu"`` or ``"c"``): an object with
    ``same_traffic(written, read, scale)``, ``stream_copy(dst, src)``, ``stream_triad(a, b, c, s)``,
    ``stream_read(src)``.
    Raises :class:`Unsupported` if the backend cannot run here."""
    if backend not in _roofline_modules:
        if backend not in available_backends():
            raise Unsupported(f"backend {backend!r} is not available")
        if backend == "cpu":
            from fastopt.backends.cpu import roofline as module
        elif backend == "c":
            module = _CRoofline()
        else:
            raise Unsupported(f"no roofline kernels for backend {backend!r}")
        _roofline_modules[backend] = module
    return _roofline_modules[backend]


def make_same_traffic(written, backend, n, dtype=np.float32, quant8=False):
    """A closure running the same-traffic kernel updating ``written`` arrays (1 to 4); with
    ``quant8``, that of an 8-bit step updating the parameter and ``written - 1`` state arrays
    of uint8 codes and block maxima."""
    kernels = roofline_kernels(backend)
    if quant8:
        read, param = np.full(n, 1e-3, np.float32), np.ones(n, np.float32)
        codes = [np.zeros(n, np.uint8) for _ in range(written - 1)]
        absmax = [np.ones(-(-n // QUANT8_BLOCK), np.float32) for _ in range(written - 1)]
        return lambda: kernels.same_traffic_quant8(param, read, codes, absmax, 1e-6)
    read = np.full(n, 1e-3, dtype)
    arrays = [np.ones(n, dtype) for _ in range(written)]
    return lambda: kernels.same_traffic(arrays, read, 1e-6)


#: Arrays a STREAM kernel moves: copy reads one and writes one; triad reads two and writes one.
STREAM_ARRAYS = {"copy": 2, "triad": 3}


def make_stream(kind, backend, n, dtype=np.float32):
    """A closure running STREAM ``copy`` or ``triad`` on a host backend."""
    kernels = roofline_kernels(backend)
    a, b, c = np.zeros(n, dtype), np.ones(n, dtype), np.full(n, 2.0, dtype)
    if kind == "copy":
        return lambda: kernels.stream_copy(a, b)
    return lambda: kernels.stream_triad(a, b, c, 3.0)


def time_yardsticks(backend, written, n, dtype=np.float32, repeat=10, max_s=10.0,
                    min_sample_s=0.02):
    """The same-traffic kernel updating each count of arrays in ``written``, and STREAM copy and
    triad, on a host backend, timed in turn (:func:`time_cases`): their results
    (:class:`Result`, ``kind`` ``"roofline"`` and ``"stream"``)."""
    dtype = np.dtype(dtype)
    makers = {w: functools.partial(make_same_traffic, w, backend, n, dtype) for w in written}
    moved = {w: (2 * w + 1) * n * dtype.itemsize for w in written}
    for kind, arrays in STREAM_ARRAYS.items():
        makers[kind] = functools.partial(make_stream, kind, backend, n, dtype)
        moved[kind] = arrays * n * dtype.itemsize
    samples, _ = time_cases(makers, max(moved.values()), repeat, max_s,
                            min_sample_s=min_sample_s)
    return [Result(f"same-traffic w={key}" if key in written else f"stream {key}", backend,
                   dtype.name, n, statistics.median(own), moved[key],
                   kind="roofline" if key in written else "stream",
                   written=key if key in written else 0, min_s=min(own))
            for key, own in samples.items()]


def copy_bandwidth(n, dtype=np.float32, repeat=10):
    """GB/s of ``numpy.copyto`` over ``n`` elements (read + write), a bandwidth yardstick."""
    src = np.ones(n, dtype)
    dst = np.empty_like(src)
    return 2 * src.nbytes / median_time(lambda: np.copyto(dst, src), repeat, warmup=2) / 1e9
