"""Benchmarks of fastopt's steps against the machine's roofline and against peers.

Every time is the median of repeated, warmed-up runs (:func:`median_time`). Cases compared with each
other (a step, its same-traffic kernel and its peers; the many-tensor cases; a step and its kernel
at each thread count) are timed in turn, round after round (:func:`interleaved_samples`), and their
ratios are medians of the per-round ratios. The table's steps are bound to their arrays
(:func:`fastopt.optim.functional.bind`), as a ``torch.optim`` step is to its tensors; the overhead section
also times the plain functional call. A step is reported as time, params/s and GB/s, where
the bytes moved count each array once: every array the step reads (param, grad, used state) and
every array it writes (param, used state), the traffic of one pass over memory
(:func:`bytes_per_step`).

The yardsticks, measured in the same run:

- the **same-traffic kernel** of each step (:mod:`fastopt.backends.cpu.roofline`, ``csrc/roofline.c``):
  it reads and writes exactly the arrays the step does, with one multiply-add per written element.
  A step of the ``cpu`` or ``c`` backend is reported as a ratio to the same-traffic kernel of its own
  backend (1.0 = at the memory roofline); other rows to the faster of the two;
- STREAM copy and triad on both host backends, multi-threaded;
- peers, when installed: numpy written as a user would (:func:`numpy_user_step`), ``torch.optim``
  in its default CPU mode (a loop over tensors), with ``foreach=True`` and with ``fused=True``.

Then the issue's other measurements: call overhead at 10^3 parameters and where its microseconds
go (:func:`overhead`), 10,000 small tensors through the optimizer classes (:func:`many_tensors`),
thread scaling (:func:`thread_scaling`), start-up with a warm and a cold numba cache
(:func:`startup`), and the targets they are checked against (:func:`check_targets`). ``fastopt
bench`` (:mod:`fastopt.cli`) runs them and prints :func:`format_report`.
"""

import contextlib
import cProfile
import functools
import gc
import itertools
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from fastopt.optim import algorithms as _algorithms, functional
from fastopt._core import memory as _memory
from fastopt._core.dispatch import available_backends

#: (row label, optimizer, options): each optimizer in its default configuration, plus momentum SGD.
CONFIGS = [
    ("sgd", "sgd", {}),
    ("sgd momentum", "sgd", {"momentum": 0.9}),
    ("adagrad", "adagrad", {}),
    ("rmsprop", "rmsprop", {}),
    ("adam", "adam", {}),
    ("adamw", "adamw", {}),
]

#: The sizes of the full run (``fastopt bench --full``): 10^3 ... 10^8 parameters.
FULL_SIZES = [10 ** e for e in range(3, 9)]
#: Peers, in table order; each is skipped, with its reason, when not installed or not supported.
PEERS = ("numpy-user", "torch", "torch-foreach", "torch-fused")
ROOFLINE_BACKENDS = ("cpu", "c")

#: The issue's targets (float32), checked by :func:`check_targets`.
TARGETS = {
    "roofline_ratio": 0.95,     # N >= 1e7: every step on cpu and c vs its same-traffic kernel
    "large_vs_fused": 1.0,      # N >= 1e7: Adam no slower than torch fused
    "mid_vs_fused": 3.0,        # N = 1e5..1e6: Adam at least 3x faster than torch fused
    "arena_vs_one": 1.2,        # 10,000 x 1,000 through the class within 1.2x of one 1e7 tensor
    "arena_vs_fused": 10.0,     # ... and at least 10x faster than torch fused
    "functional_us": 10.0,      # a 10^3 step through fastopt.optim.functional
    "class_us": 20.0,           # ... through an optimizer class
    "startup_s": 1.5,           # import + first Adam step, warm numba cache
}


class Unsupported(Exception):
    """A case that cannot run here (peer not installed, option not supported); says why."""


# ---- timing -----------------------------------------------------------------------------------

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


def _synchronize(backend):
    if backend == "cuda":
        from numba import cuda

        cuda.synchronize()


# ---- results ----------------------------------------------------------------------------------

@dataclass
class Result:
    """One timed case. ``kind``: ``fastopt`` (a backend), ``peer``, ``roofline`` (same-traffic
    kernel) or ``stream``; ``written``: how many arrays the step updates in place."""
    optimizer: str
    backend: str
    dtype: str
    n: int
    median_s: float
    bytes_per_step: int
    kind: str = "fastopt"
    written: int = 0
    min_s: float = None  # the fastest sample, for reading a run on a busy machine
    #: Ratios taken round by round against cases timed in turn with this one (see
    #: :func:`interleaved_samples`): ``"roofline"`` (same-traffic time / this time) and each peer
    #: (peer time / this time), the median over the rounds.
    paired: dict = field(default_factory=dict)

    @property
    def params_per_s(self):
        return self.n / self.median_s

    @property
    def gb_per_s(self):
        return self.bytes_per_step / self.median_s / 1e9

    def as_dict(self):
        return {**asdict(self), "params_per_s": self.params_per_s, "gb_per_s": self.gb_per_s}


def used_state(name, options):
    """How many state arrays ``name`` with ``options`` reads and writes."""
    algorithm = _algorithms.ALGORITHMS[name]
    return sum(algorithm.uses(algorithm.check({**algorithm.defaults, **options})))


def written_arrays(name, options):
    """How many arrays a step updates in place: param and its used state."""
    return 1 + used_state(name, options)


def bytes_per_step(name, options, n, dtype):
    """Bytes one step moves: reads param, grad and the used state, writes param and the state."""
    return (3 + 2 * used_state(name, options)) * n * np.dtype(dtype).itemsize


# ---- fastopt steps ----------------------------------------------------------------------------

def _problem(name, options, n, dtype, on_device=False):
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = algorithm.check({**algorithm.defaults, **options})
    rng = np.random.default_rng(0)
    param = _memory.from_host(on_device, rng.standard_normal(n).astype(dtype))
    grad = _memory.from_host(on_device, (rng.standard_normal(n) * 1e-3).astype(dtype))
    state = [_memory.full(on_device, n, dtype, algorithm.initial_state(hyper, s))
             for s in algorithm.state]
    return param, grad, state


def make_step(name, options, backend, n, dtype=np.float32, bound=False):
    """A closure running one functional step (step count 1, 2, ...) on fresh arrays of size ``n``,
    synchronized on CUDA so that timing it times the kernel; with ``bound``, the step bound to
    its arrays once (:func:`fastopt.optim.functional.bind`), as ``torch.optim``'s ``step()`` is to its
    tensors."""
    param, grad, state = _problem(name, options, n, dtype, on_device=backend == "cuda")
    counter = itertools.count(1)
    if bound:
        step = functional.bind(name, param, grad, *state, backend=backend, **options)

        def one_step():
            step(next(counter))
            _synchronize(backend)
    else:
        step = getattr(functional, name)

        def one_step():
            step(param, grad, *state, step=next(counter), backend=backend, **options)
            _synchronize(backend)

    return one_step


def make_bound_step(name, options, backend, n, dtype=np.float32):
    """:func:`make_step` bound to its arrays."""
    return make_step(name, options, backend, n, dtype, bound=True)


def make_class_step(name, options, backend, shapes, dtype=np.float32, **class_options):
    """A closure running ``opt.step(grads)`` of the optimizer class of ``name`` over new arrays of
    the given shapes (host backends); ``class_options`` go to the constructor (e.g.
    ``skip_nonfinite=False``)."""
    import fastopt

    cls = {"sgd": fastopt.SGD, "adagrad": fastopt.Adagrad, "rmsprop": fastopt.RMSprop,
           "adam": fastopt.Adam, "adamw": fastopt.AdamW}[name]
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [(rng.standard_normal(s) * 1e-3).astype(dtype) for s in shapes]
    opt = cls(params, backend=backend, **options, **class_options)
    return lambda: opt.step(grads)


# ---- roofline kernels -------------------------------------------------------------------------

class _CRoofline:
    """The C roofline kernels (``csrc/roofline.c``) with the signatures of
    :mod:`fastopt.backends.cpu.roofline`."""

    def __init__(self):
        from fastopt.backends.c._fastopt_c import ffi, lib

        self._ffi = ffi
        self._kernels = {
            np.dtype(np.float32): ("float[]", lib.fastopt_same_traffic_f32,
                                   lib.fastopt_stream_copy_f32, lib.fastopt_stream_triad_f32),
            np.dtype(np.float64): ("double[]", lib.fastopt_same_traffic_f64,
                                   lib.fastopt_stream_copy_f64, lib.fastopt_stream_triad_f64),
        }

    def same_traffic(self, written, read, scale):
        ctype, kernel, _, _ = self._kernels[read.dtype]
        buf = self._ffi.from_buffer
        pointers = [buf(ctype, w) for w in written] + [self._ffi.NULL] * (4 - len(written))
        kernel(read.size, len(written), *pointers, buf(ctype, read), scale)

    def stream_copy(self, dst, src):
        ctype, _, kernel, _ = self._kernels[dst.dtype]
        kernel(dst.size, self._ffi.from_buffer(ctype, dst), self._ffi.from_buffer(ctype, src))

    def stream_triad(self, a, b, c, scalar):
        ctype, _, _, kernel = self._kernels[a.dtype]
        buf = self._ffi.from_buffer
        kernel(a.size, buf(ctype, a), buf(ctype, b), buf(ctype, c), scalar)


_roofline_modules = {}


def roofline_kernels(backend):
    """The roofline kernels of a host backend (``"cpu"`` or ``"c"``): an object with
    ``same_traffic(written, read, scale)``, ``stream_copy(dst, src)``, ``stream_triad(a, b, c, s)``.
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


def make_same_traffic(written, backend, n, dtype=np.float32):
    """A closure running the same-traffic kernel updating ``written`` arrays (1 to 4)."""
    kernels = roofline_kernels(backend)
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


def time_yardsticks(backend, written, n, dtype=np.float32, repeat=10, max_s=10.0):
    """The same-traffic kernel updating each count of arrays in ``written``, and STREAM copy and
    triad, on a host backend, timed in turn (:func:`time_cases`): their results
    (:class:`Result`, ``kind`` ``"roofline"`` and ``"stream"``)."""
    dtype = np.dtype(dtype)
    makers = {w: functools.partial(make_same_traffic, w, backend, n, dtype) for w in written}
    moved = {w: (2 * w + 1) * n * dtype.itemsize for w in written}
    for kind, arrays in STREAM_ARRAYS.items():
        makers[kind] = functools.partial(make_stream, kind, backend, n, dtype)
        moved[kind] = arrays * n * dtype.itemsize
    samples, _ = time_cases(makers, max(moved.values()), repeat, max_s)
    return [Result(f"same-traffic w={key}" if key in written else f"stream {key}", backend,
                   dtype.name, n, statistics.median(own), moved[key],
                   kind="roofline" if key in written else "stream",
                   written=key if key in written else 0, min_s=min(own))
            for key, own in samples.items()]


# ---- peers ------------------------------------------------------------------------------------

def numpy_user_step(name, options, param, grad, state, step):
    """One step of ``name`` in numpy as a user would write it: in place where it is easy, plain
    expressions (with their temporaries) elsewhere, torch's defaults (only ``momentum`` may be
    changed). Mutates its arrays."""
    if set(options) - {"momentum"}:
        raise Unsupported(f"numpy-user: options {sorted(options)} not written")
    h = {**_algorithms.ALGORITHMS[name].defaults, **options}
    lr = h["lr"]
    if name == "sgd":
        if h["momentum"]:
            buf = state[0]
            buf *= h["momentum"]
            buf += grad
            param -= lr * buf
        else:
            param -= lr * grad
    elif name == "adagrad":
        s = state[0]
        s += grad * grad
        param -= lr * grad / (np.sqrt(s) + h["eps"])
    elif name == "rmsprop":
        v, alpha = state[0], h["alpha"]
        v *= alpha
        v += (1 - alpha) * grad * grad
        param -= lr * grad / (np.sqrt(v) + h["eps"])
    elif name in ("adam", "adamw"):
        (beta1, beta2), (m, v) = h["betas"], state[:2]
        if name == "adamw":
            param *= 1 - lr * h["weight_decay"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1 ** step)
        v_hat = v / (1 - beta2 ** step)
        param -= lr * m_hat / (np.sqrt(v_hat) + h["eps"])
    else:
        raise Unsupported(f"numpy-user: {name} not written")


_TORCH_CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam",
                  "adamw": "AdamW"}
_TORCH_MODES = {"torch": {}, "torch-foreach": {"foreach": True}, "torch-fused": {"fused": True}}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise Unsupported(f"torch not installed ({exc})") from None
    return torch


def make_torch_step(peer, name, options, shapes, dtype=np.float32):
    """A closure running ``opt.step()`` of ``torch.optim`` (``peer`` names the mode) over new CPU
    tensors of the given shapes, gradients set. Raises :class:`Unsupported` with torch's reason."""
    torch = _torch()
    cls = getattr(torch.optim, _TORCH_CLASSES[name])
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(dtype)]
    gen = torch.Generator().manual_seed(0)
    params = []
    for s in shapes:
        p = torch.randn(s, generator=gen, dtype=tdtype)
        p.grad = torch.randn(s, generator=gen, dtype=tdtype) * 1e-3
        params.append(p)
    try:
        opt = cls(params, **options, **_TORCH_MODES[peer])
        with torch.no_grad():
            opt.step()
    except (RuntimeError, TypeError, ValueError) as exc:
        raise Unsupported(f"{peer}: {str(exc).splitlines()[0]}") from None

    def one_step():
        with torch.no_grad():
            opt.step()

    return one_step


def make_peer(peer, name, options, n, dtype=np.float32):
    """A closure running one step of ``peer`` (see :data:`PEERS`) over ``n`` parameters."""
    if peer == "numpy-user":
        param, grad, state = _problem(name, options, n, dtype)
        counter = itertools.count(1)
        numpy_user_step(name, options, param.copy(), grad, [s.copy() for s in state], 1)
        return lambda: numpy_user_step(name, options, param, grad, state, next(counter))
    return make_torch_step(peer, name, options, [(n,)], dtype)


@contextlib.contextmanager
def _torch_threads(n):
    """Runs torch on ``n`` threads (as many as fastopt's), then restores its setting."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- the table --------------------------------------------------------------------------------

def run(sizes, dtypes=(np.float32,), backends=None, repeat=10, peers=PEERS, roofline=True,
        configs=CONFIGS, progress=None, skipped=None, max_s=10.0):
    """Every configuration × backend (+ peers) × size × dtype, plus the roofline kernels and STREAM
    of each size: a list of :class:`Result`. ``sizes`` may be one int. Skipped cases are appended
    to ``skipped`` as ``(what, reason)``."""
    from fastopt._core.threads import get_num_threads

    sizes = [sizes] if isinstance(sizes, (int, np.integer)) else list(sizes)
    backends = list(backends or available_backends())
    skipped = [] if skipped is None else skipped
    results = []

    def record(result):
        results.append(result)
        if progress:
            progress(result)

    with _torch_threads(get_num_threads()):
        for dtype, n in itertools.product(dtypes, sizes):
            dtype = np.dtype(dtype)
            if roofline:
                written = sorted({written_arrays(name, o) for _, name, o in configs})
                for backend in ROOFLINE_BACKENDS:
                    if backend not in available_backends():
                        continue
                    for result in time_yardsticks(backend, written, n, dtype, repeat, max_s):
                        record(result)
                    gc.collect()
            for label, name, options in configs:
                for result in time_configuration(label, name, options, n, dtype, backends,
                                                 peers, roofline, repeat, max_s, skipped):
                    record(result)
                gc.collect()
    return results


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def time_cases(makers, nbytes, repeat=10, max_s=10.0, skipped=None, what="{}"):
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
        samples = interleaved_samples(fns, repeat, max_s=max_s)
    return samples, together


def time_configuration(label, name, options, n, dtype, backends, peers=PEERS, roofline=True,
                       repeat=10, max_s=10.0, skipped=None):
    """One configuration at one size: the step on every backend (bound to its arrays,
    :func:`make_bound_step`, as a peer's ``step()`` is to its tensors), every peer, and the
    same-traffic kernel of the ``cpu`` and ``c`` backends, timed in turn
    (:func:`interleaved_samples`) so that each step's ratios to its same-traffic kernel and to
    the peers are taken round by round (``Result.paired``). When their arrays would not fit in
    memory together (over 40% of it), each is timed alone instead, and the ratios are taken
    between medians. Returns the :class:`Result` of each step and peer; unsupported peers go to
    ``skipped``."""
    dtype = np.dtype(dtype)
    written = written_arrays(name, options)
    moved = bytes_per_step(name, options, n, dtype)
    makers = {b: (lambda b=b: make_bound_step(name, options, b, n, dtype)) for b in backends}
    for peer in peers:
        makers[peer] = lambda peer=peer: make_peer(peer, name, options, n, dtype)
    if roofline:
        for b in ROOFLINE_BACKENDS:
            if b in backends:
                makers["roof " + b] = lambda b=b: make_same_traffic(written, b, n, dtype)
    samples, together = time_cases(makers, moved, repeat, max_s, skipped,
                                   f"{label} {{}} {dtype.name} n={n:,}")
    roofs = [samples["roof " + b] for b in ROOFLINE_BACKENDS if "roof " + b in samples]
    results = []
    for key, own in samples.items():
        if key.startswith("roof "):
            continue
        peer = key in peers
        paired = {}
        if together:
            own_roof = samples.get("roof " + key)
            if own_roof is not None:
                paired["roofline"] = paired_ratio(own_roof, own)
            elif roofs and key != "cuda":  # a peer: the faster host kernel of each round
                paired["roofline"] = paired_ratio(list(map(min, zip(*roofs))), own)
            if not peer:
                paired.update((p, paired_ratio(samples[p], own)) for p in peers if p in samples)
        results.append(Result(label, key, dtype.name, n, statistics.median(own), moved,
                              kind="peer" if peer else "fastopt", written=written,
                              min_s=min(own), paired=paired))
    return results


def roofline_for(result, results):
    """The same-traffic result that ``result`` is compared with: its own backend's (cpu, c), else
    the fastest host one (none for ``cuda``); ``None`` if not measured."""
    if result.backend == "cuda":
        return None
    same = [r for r in results if r.kind == "roofline" and r.written == result.written
            and r.n == result.n and r.dtype == result.dtype]
    own = [r for r in same if r.backend == result.backend]
    if own:
        return own[0]
    return min(same, key=lambda r: r.median_s) if same else None


def roofline_ratio(result, results):
    """Fraction of the roofline a result reaches: same-traffic time / its time (1.0 = at it),
    taken round by round when the two were timed in turn."""
    if "roofline" in result.paired:
        return result.paired["roofline"]
    roof = roofline_for(result, results)
    return roof.median_s / result.median_s if roof else None


def peer_speedup(result, peer, results):
    """How many times faster ``result`` is than ``peer`` on the same case (``None`` if absent),
    taken round by round when the two were timed in turn."""
    if peer in result.paired:
        return result.paired[peer]
    for r in results:
        if (r.kind == "peer" and r.backend == peer and r.optimizer == result.optimizer
                and r.n == result.n and r.dtype == result.dtype):
            return r.median_s / result.median_s
    return None


def _fmt(x, spec, width):
    return f"{x:>{width}{spec}}" if x is not None else f"{'-':>{width}}"


def format_table(results, copy_gb_per_s=None):
    """The table: one block per dtype and size, its roofline line, then one row per step."""
    peers = [p for p in PEERS if any(r.backend == p for r in results)]
    short = {"numpy-user": "xnumpy", "torch": "xtorch", "torch-foreach": "xforeach",
             "torch-fused": "xfused"}
    header = (f"{'optimizer':<14}{'backend':<15}{'median us':>12}{'(best)':>10}{'Mparams/s':>11}"
              f"{'GB/s':>8}"
              f"{'/roof':>7}" + "".join(f"{short[p]:>10}" for p in peers))
    lines = []
    blocks = sorted({(r.dtype, r.n) for r in results}, key=lambda b: (b[0], b[1]))
    for dtype, n in blocks:
        block = [r for r in results if r.dtype == dtype and r.n == n]
        lines += ["", f"{dtype}, N = {n:,}"]
        for backend in ROOFLINE_BACKENDS:
            roof = sorted((r for r in block if r.kind == "roofline" and r.backend == backend),
                          key=lambda r: r.written)
            stream = {r.optimizer: r for r in block if r.kind == "stream" and r.backend == backend}
            if roof or stream:
                lines.append(
                    f"  roofline {backend:<4} same-traffic GB/s "
                    + " ".join(f"w={r.written}:{r.gb_per_s:.1f}" for r in roof)
                    + "; STREAM GB/s "
                    + " ".join(f"{k.split()[1]}:{r.gb_per_s:.1f}" for k, r in stream.items()))
        lines += [header, "-" * len(header)]
        previous = None
        for r in block:
            if r.kind not in ("fastopt", "peer"):
                continue
            ratio = roofline_ratio(r, results)
            speedups = [peer_speedup(r, p, results) if r.kind == "fastopt" else None
                        for p in peers]
            label = r.optimizer if r.optimizer != previous else ""
            previous = r.optimizer
            best = r.min_s * 1e6 if r.min_s is not None else None
            lines.append(f"{label:<14}{r.backend:<15}{r.median_s * 1e6:>12,.1f}"
                         + _fmt(best, ",.1f", 10)
                         + f"{r.params_per_s / 1e6:>11,.1f}{r.gb_per_s:>8.2f}"
                         + _fmt(ratio, ".2f", 7)
                         + "".join(_fmt(s, ".2f", 10) for s in speedups))
    if copy_gb_per_s:
        lines.append(f"numpy copy (read+write) on this machine: {copy_gb_per_s:.2f} GB/s")
    lines.append("times are medians; (best): the fastest sample; /roof: same-traffic kernel time "
                 "/ step time (cpu, c: their own kernel; others: the faster one); xPEER: PEER's "
                 "time / this time (> 1: fastopt is faster); both ratios are medians over rounds "
                 "that time the step and its yardsticks in turn")
    return "\n".join(lines).lstrip("\n")


def copy_bandwidth(n, dtype=np.float32, repeat=10):
    """GB/s of ``numpy.copyto`` over ``n`` elements (read + write), a bandwidth yardstick."""
    src = np.ones(n, dtype)
    dst = np.empty_like(src)
    return 2 * src.nbytes / median_time(lambda: np.copyto(dst, src), repeat, warmup=2) / 1e9


# ---- call overhead ----------------------------------------------------------------------------

def _capture_kernel(module, algorithm, call):
    """Runs ``call()`` once with the compiled kernel behind ``module``'s launcher wrapped, and
    returns a closure calling that kernel alone with the same arguments (numba: the serial or
    parallel dispatcher; C: the cffi function). Relies on the backends' private names (``_adam``
    in cpu_optim, ``_ADAM`` in c_optim): raises :class:`Unsupported` if they changed."""
    captured = []
    if hasattr(module, "_" + algorithm.kernel):  # numba: a launcher picking serial or parallel
        name = "_" + algorithm.kernel
        launcher = getattr(module, name)

        def recorder(n, *args):
            captured.append((launcher.parallel if n >= module.PARALLEL_THRESHOLD
                             else launcher.serial, args))
            return launcher(n, *args)

        setattr(module, name, recorder)
        try:
            call()
        finally:
            setattr(module, name, launcher)
    elif hasattr(module, "_" + algorithm.kernel.upper()):  # C: dtype -> (cffi function, type)
        table = getattr(module, "_" + algorithm.kernel.upper())
        saved = dict(table)

        def wrap(function):
            def recorder(*args):
                captured.append((function, args))
                return function(*args)
            return recorder

        for dtype, (function, ctype) in saved.items():
            table[dtype] = (wrap(function), ctype)
        try:
            call()
        finally:
            table.update(saved)
    if not captured:
        raise Unsupported("cannot find the compiled kernel behind the launcher")
    kernel, args = captured[-1]
    return lambda: kernel(*args)


def _captured_launch(backend, algorithm, call):
    """The backend launcher of ``algorithm`` and the arguments ``call()`` passed to it."""
    from fastopt._core.dispatch import kernels

    module = kernels(backend)
    launcher = getattr(module, algorithm.kernel)
    captured = []

    def recorder(*args):
        captured.append(args)
        return launcher(*args)

    setattr(module, algorithm.kernel, recorder)
    try:
        call()
    finally:
        setattr(module, algorithm.kernel, launcher)
    return module, launcher, captured[-1]


def _stage_times(name, backend, n, dtype, repeat):
    """Microseconds of each stage of one functional step, each timed on its own (``None`` for a
    stage whose internals changed shape)."""
    import types

    from fastopt.optim import _step
    from fastopt._core import validate as _validate
    from fastopt._core.dispatch import choose

    algorithm = _algorithms.ALGORITHMS[name]
    param, grad, state = _problem(name, {}, n, dtype)
    hyper_in = dict(algorithm.defaults)
    hyper = _step.check_hyper(algorithm, hyper_in)
    uses = tuple(algorithm.uses(hyper))
    named = {"param": param, "grad": grad,
             **{s: (a if u else None) for s, u, a in zip(algorithm.state, uses, state)}}
    written = {"param", *(s for s, u in zip(algorithm.state, uses) if u)}
    module, launcher, args = _captured_launch(backend, algorithm, make_step(name, {}, backend, n,
                                                                             dtype))
    arrays = list(args[:len(named)])
    scalars = algorithm.scalars(hyper, 2, False)
    no_kernel = types.SimpleNamespace(
        TAKES_PYTHON_FLOATS=module.TAKES_PYTHON_FLOATS,
        **{algorithm.kernel: lambda *a: None})
    stages = {
        "check_hyper": lambda: _step.checked_step(algorithm, hyper_in),
        "check_step": lambda: _validate.check_step(2),
        "resolve (dispatch + array checks)": lambda: _step.resolve(algorithm, hyper, param, grad,
                                                                   state, backend, uses),
        "  of which choose (dispatch)": lambda: choose(named, backend),
        "  of which check_arrays": lambda: _validate.check_arrays(named, written, False),
        "scalars (host math)": lambda: algorithm.scalars(hyper, 2, False),
        "launch without the kernel (casting)": lambda: _step.launch(no_kernel, algorithm, arrays,
                                                                    scalars),
        "backend launcher (wrapper + kernel)": lambda: launcher(*args),
        "  of which compiled kernel alone": lambda: _capture_kernel(
            module, algorithm, lambda: launcher(*args)),
    }
    out = {}
    for label, fn in stages.items():
        try:
            if label == "  of which compiled kernel alone":
                fn = fn()
            fn()
        except Exception:  # a private interface changed: report the stage as not measured
            out[label] = None
            continue
        out[label] = median_time(fn, repeat, warmup=50, min_sample_s=2e-3) * 1e6
    return out


def _profile(fn, calls):
    """cProfile of ``calls`` calls of ``fn``: the top functions by own time, per call of ``fn``
    (microseconds inflated by the profiler; the shares and call counts are what matter)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(tt for _, _, tt, _, _ in stats.values())
    rows = []
    for (filename, line, function), (_, ncalls, tottime, _, _) in stats.items():
        where = f"{os.path.basename(filename)}:{function}" if filename != "~" else function
        rows.append({"function": where, "calls_per_step": ncalls / calls,
                     "own_us_per_step": tottime / calls * 1e6, "share": tottime / total})
    rows.sort(key=lambda r: -r["share"])
    return rows


def overhead(backends=None, name="adam", n=1000, dtype=np.float32, repeat=30):
    """Per-call time of a small step (``n`` = 10^3) through :mod:`fastopt.optim.functional` and through
    an optimizer class, and where it goes: each stage timed alone, and a cProfile of both paths."""
    backends = [b for b in (backends or ROOFLINE_BACKENDS) if b in available_backends()]
    out = {}
    for backend in backends:
        functional_step = make_step(name, {}, backend, n, dtype)
        class_step = make_class_step(name, {}, backend, [(n,)], dtype)
        out[backend] = {
            "n": n, "optimizer": name, "dtype": np.dtype(dtype).name,
            "bound_us": median_time(make_bound_step(name, {}, backend, n, dtype), repeat,
                                    warmup=50, min_sample_s=2e-3) * 1e6,
            "functional_us": median_time(functional_step, repeat, warmup=50,
                                         min_sample_s=2e-3) * 1e6,
            "class_us": median_time(class_step, repeat, warmup=50, min_sample_s=2e-3) * 1e6,
            "class_no_check_us": median_time(
                make_class_step(name, {}, backend, [(n,)], dtype, skip_nonfinite=False), repeat,
                warmup=50, min_sample_s=2e-3) * 1e6,
            "stages_us": _stage_times(name, backend, n, dtype, repeat),
            "profile_functional": _profile(functional_step, 2000)[:10],
            "profile_class": _profile(class_step, 2000)[:10],
        }
    return out


# ---- many small tensors -----------------------------------------------------------------------

def _count_launches(backend, algorithm, call):
    """How many kernel launches ``call()`` makes (counted at the backend module's kernel)."""
    from fastopt._core.dispatch import kernels

    module = kernels(backend)
    launcher = getattr(module, algorithm.kernel)
    count = [0]

    def counting(*args):
        count[0] += 1
        return launcher(*args)

    setattr(module, algorithm.kernel, counting)
    try:
        call()
    finally:
        setattr(module, algorithm.kernel, launcher)
    return count[0]


def make_arena_step(name, options, count, size, backend=None, dtype=np.float32,
                    **class_options):
    """A closure stepping an optimizer class built on a :class:`fastopt.optim.arena.FlatParams` of
    ``count`` tensors of ``size``, with gradients in an arena of the same layout. Raises
    :class:`Unsupported` until the classes step an arena as one flat parameter (checked by
    counting kernel launches on a 3-tensor arena)."""
    import fastopt
    from fastopt.optim.arena import FlatParams

    cls = getattr(fastopt, {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop",
                            "adam": "Adam", "adamw": "AdamW"}[name])
    algorithm = _algorithms.ALGORITHMS[name]

    def build(count_, size_):
        params = FlatParams.empty([(size_,)] * count_, dtype)
        params.data[...] = np.random.default_rng(0).standard_normal(params.size)
        grads = params.zeros_like()
        grads.data[...] = 1e-3
        try:
            opt = cls(params, backend=backend, **options, **class_options)
        except (TypeError, ValueError) as exc:
            raise Unsupported(f"fastopt.{cls.__name__} does not accept a FlatParams yet: "
                              f"{exc}") from None
        return opt, grads

    opt, grads = build(3, 5)
    backend_used = opt.backend
    errors = []
    for form in (lambda g: g, lambda g: list(g)):  # step(arena), then step(list of views)
        try:
            launches = _count_launches(backend_used, algorithm, lambda: opt.step(form(grads)))
            break
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    else:
        raise Unsupported(f"fastopt.{cls.__name__}.step does not take the gradients of an arena: "
                          + "; ".join(errors))
    if launches != 1:
        raise Unsupported(f"fastopt.{cls.__name__} does not step a FlatParams as one flat "
                          f"parameter yet ({launches} kernel launches for a 3-tensor arena; the "
                          "arena-aware optimizer classes are not in yet)")
    opt, grads = build(count, size)
    return lambda: opt.step(form(grads))


def many_tensors(count=10_000, size=1_000, name="adam", backends=None, dtype=np.float32,
                 repeat=5, peers=("torch", "torch-foreach", "torch-fused"), skipped=None,
                 max_s=10.0):
    """``count`` tensors of ``size`` parameters through the optimizer classes (a list of arrays,
    and a flat arena when the classes accept one) against one tensor of ``count * size`` and
    against torch. Results have ``kind="many"`` and describe the case in ``backend``."""
    from fastopt._core.threads import get_num_threads

    skipped = [] if skipped is None else skipped
    options = {}
    total = count * size
    nbytes = bytes_per_step(name, options, total, dtype)
    label = f"{name} {count:,}x{size:,}"
    no_check = {"skip_nonfinite": False}
    makers = {}
    for backend in [b for b in (backends or ROOFLINE_BACKENDS) if b in available_backends()]:
        makers[f"{backend} 1 tensor"] = functools.partial(make_class_step, name, options, backend,
                                                          [(total,)], dtype)
        makers[f"{backend} 1 tensor, no check"] = functools.partial(
            make_class_step, name, options, backend, [(total,)], dtype, **no_check)
        makers[f"{backend} arrays"] = functools.partial(make_class_step, name, options, backend,
                                                        [(size,)] * count, dtype)
        makers[f"{backend} arena"] = functools.partial(make_arena_step, name, options, count,
                                                       size, backend, dtype)
        makers[f"{backend} arena, no check"] = functools.partial(
            make_arena_step, name, options, count, size, backend, dtype, **no_check)
    for peer in peers:
        makers[f"{peer} 1 tensor"] = functools.partial(make_torch_step, peer, name, options,
                                                       [(total,)], dtype)
        makers[f"{peer} tensors"] = functools.partial(make_torch_step, peer, name, options,
                                                      [(size,)] * count, dtype)
    with _torch_threads(get_num_threads()):
        samples, together = time_cases(makers, nbytes, repeat, max_s, skipped, f"{label} {{}}")
    gc.collect()
    out = []
    for case, own in samples.items():
        # Each case against the ones the targets compare it with, round by round.
        backend = case.split()[0]
        paired = {other: paired_ratio(samples[other], own) for other in
                  (f"{backend} 1 tensor", "torch-fused tensors")
                  if together and backend not in peers and other in samples and other != case}
        out.append(Result(label, case, np.dtype(dtype).name, total, statistics.median(own),
                          nbytes, kind="many", written=written_arrays(name, options),
                          min_s=min(own), paired=paired))
    return out


# ---- threads ----------------------------------------------------------------------------------

def thread_scaling(n=10_000_000, name="adam", dtype=np.float32, backends=None, repeat=10,
                   max_s=10.0):
    """GB/s of a step and of its same-traffic kernel on 1 .. max threads, per host backend."""
    from fastopt._core.threads import get_num_threads, max_num_threads, set_num_threads

    before = get_num_threads()
    written = written_arrays(name, {})
    moved = bytes_per_step(name, {}, n, dtype)  # as much as the same-traffic kernel moves
    out = []
    try:
        for threads in range(1, max_num_threads() + 1):
            set_num_threads(threads)
            for backend in [b for b in (backends or ROOFLINE_BACKENDS)
                            if b in available_backends()]:
                samples = interleaved_samples(
                    {"step": make_bound_step(name, {}, backend, n, dtype),
                     "roof": make_same_traffic(written, backend, n, dtype)}, repeat, max_s=max_s)
                out.append({"backend": backend, "threads": threads, "n": n,
                            "optimizer": name, "dtype": np.dtype(dtype).name,
                            "step_gb_per_s": moved / statistics.median(samples["step"]) / 1e9,
                            "same_traffic_gb_per_s": moved / statistics.median(samples["roof"])
                            / 1e9,
                            "ratio": paired_ratio(samples["roof"], samples["step"])})
                gc.collect()
    finally:
        set_num_threads(before)
    return out


# ---- start-up ---------------------------------------------------------------------------------

_STARTUP_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastopt
t1 = time.perf_counter()
# one small and one large tensor: the first step loads (or compiles) both kernel variants
params = [np.zeros(1000, np.float32), np.zeros(1 << 16, np.float32)]
opt = fastopt.Adam(params)
opt.step([np.ones_like(p) for p in params])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_step_s": t2 - t1, "backend": opt.backend}))
"""


def _run_startup(env):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"start-up script failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    result["total_s"] = result["import_s"] + result["first_step_s"]
    return result


def startup(runs=3, cold=True):
    """``import fastopt`` + the first Adam step in a new process: median of ``runs`` with the
    on-disk numba cache warm (after one run that warms it), and once with an empty cache (the
    first-ever compile, in a temporary ``NUMBA_CACHE_DIR``). ``total_s`` is import + first step
    measured inside the process; ``process_s`` adds the interpreter's own start."""
    env = dict(os.environ)
    _run_startup(env)  # warms the cache
    warm = [_run_startup(env) for _ in range(runs)]
    out = {"warm": {k: statistics.median(r[k] for r in warm)
                    for k in ("import_s", "first_step_s", "total_s", "process_s")},
           "backend": warm[0]["backend"], "runs": runs}
    if cold:
        with tempfile.TemporaryDirectory() as cache:
            out["cold"] = _run_startup({**env, "NUMBA_CACHE_DIR": cache})
    return out


# ---- the machine ------------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """The facts a benchmark result needs: CPU, cores, threads, load, versions, C build."""
    from fastopt import __version__
    from fastopt._core.threads import get_num_threads

    facts = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(),
             "platform": platform.platform(), "python": platform.python_version(),
             "numpy": np.__version__, "fastopt": __version__,
             "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                "OMP_PROC_BIND", "FASTOPT_BACKEND")
                     if k in os.environ}}
    if hasattr(os, "sched_getaffinity"):
        facts["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        facts["load_average"] = os.getloadavg()
    try:
        with open("/proc/meminfo") as f:
            facts["memory_gb"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    backends = available_backends()
    facts["backends"] = backends
    if "cpu" in backends:
        import numba

        facts["numba"] = numba.__version__
        facts["threads_cpu"] = get_num_threads("cpu")
        try:
            facts["numba_threading_layer"] = numba.threading_layer()
        except ValueError:
            facts["numba_threading_layer"] = "not started yet"
    if "c" in backends:
        from fastopt.backends.c import optim as c_optim

        facts["threads_c"] = get_num_threads("c")
        facts["c_build"] = c_optim.build_info()
    try:
        import cffi

        facts["cffi"] = cffi.__version__
    except ImportError:
        pass
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["threads_torch"] = torch.get_num_threads()
    except ImportError:
        pass
    return facts


# ---- the whole report -------------------------------------------------------------------------

SECTIONS = ("table", "overhead", "many", "threads", "startup")


@dataclass
class Report:
    machine: dict
    settings: dict
    results: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    overhead: dict = field(default_factory=dict)
    many: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    startup: dict = field(default_factory=dict)

    def as_dict(self):
        return {"machine": self.machine, "settings": self.settings,
                "results": [r.as_dict() for r in self.results],
                "ratios": [{"optimizer": r.optimizer, "backend": r.backend, "dtype": r.dtype,
                            "n": r.n, "roofline": roofline_ratio(r, self.results),
                            **{f"x_{p}": peer_speedup(r, p, self.results) for p in PEERS}}
                           for r in self.results if r.kind == "fastopt"],
                "skipped": [{"case": c, "reason": why} for c, why in self.skipped],
                "overhead": self.overhead, "many_tensors": [r.as_dict() for r in self.many],
                "thread_scaling": self.threads, "startup": self.startup,
                "targets": [{"target": t, "status": s, "evidence": e}
                            for t, s, e in check_targets(self)]}


def run_all(sizes, dtypes=(np.float32,), backends=None, repeat=10, peers=PEERS,
            sections=SECTIONS, many=(10_000, 1_000), thread_n=10_000_000, progress=None,
            max_s=10.0):
    """Runs the chosen ``sections`` of :data:`SECTIONS` and returns a :class:`Report`."""
    sizes = [sizes] if isinstance(sizes, (int, np.integer)) else list(sizes)
    report = Report(machine={}, settings={
        "sizes": sizes, "dtypes": [np.dtype(d).name for d in dtypes],
        "backends": list(backends or available_backends()), "repeat": repeat,
        "peers": list(peers), "sections": list(sections), "timing": "median of repeated runs "
        "after warm-up; cases compared are timed in turn, round by round, each sample after an "
        "untimed call and batched to >= 20 ms (0.2 ms when timed alone); at most "
        f"~{max_s:g} s per case"})

    def say(what):
        if progress:
            progress(what)

    if "table" in sections:
        report.results = run(sizes, dtypes, backends, repeat, peers, progress=progress,
                             skipped=report.skipped, max_s=max_s)
    if "overhead" in sections:
        say("overhead")
        report.overhead = overhead(backends and [b for b in backends if b in ROOFLINE_BACKENDS])
    if "many" in sections:
        say("many tensors")
        report.many = many_tensors(*many, backends=backends and [
            b for b in backends if b in ROOFLINE_BACKENDS], skipped=report.skipped, max_s=max_s,
            peers=[p for p in peers if p.startswith("torch")])
    if "threads" in sections:
        say("thread scaling")
        report.threads = thread_scaling(thread_n, repeat=repeat, max_s=max_s)
    if "startup" in sections:
        say("start-up")
        report.startup = startup()
    report.machine = machine()  # last: the threading layer is known once a parallel step ran
    return report


# ---- targets ----------------------------------------------------------------------------------

def _status(ok):
    return "met" if ok else "MISSED"


def check_targets(report):
    """The issue's targets against what ``report`` measured: ``(target, status, evidence)``, with
    status ``met``, ``MISSED`` or ``not measured``."""
    out = []
    t = TARGETS
    results = report.results
    f32 = [r for r in results if r.kind == "fastopt" and r.dtype == "float32"
           and r.backend in ROOFLINE_BACKENDS]

    large = [r for r in f32 if r.n >= 10 ** 7]
    ratios = [(r, roofline_ratio(r, results)) for r in large]
    ratios = [(r, x) for r, x in ratios if x is not None]
    name = f"1a. N >= 1e7: every step on cpu and c >= {t['roofline_ratio']} of its same-traffic"
    if ratios:
        worst = min(ratios, key=lambda rx: rx[1])
        low = [f"{r.optimizer}/{r.backend}/{r.n:.0e} {x:.2f}" for r, x in ratios
               if x < t["roofline_ratio"]]
        out.append((name, _status(not low), f"worst {worst[0].optimizer}/{worst[0].backend} "
                    f"{worst[1]:.2f}" + (f"; below: {', '.join(low)}" if low else "")))
    else:
        out.append((name, "not measured", "no float32 size >= 1e7 in this run"))

    def vs_fused(rows, goal, name):
        pairs = [(r, peer_speedup(r, "torch-fused", results)) for r in rows]
        pairs = [(r, x) for r, x in pairs if x is not None]
        if not pairs:
            out.append((name, "not measured", "no matching sizes or torch fused not run"))
            return
        out.append((name, _status(all(x >= goal for _, x in pairs)),
                    ", ".join(f"{r.backend}/{r.n:.0e} x{x:.2f}" for r, x in pairs)))

    vs_fused([r for r in large if r.optimizer == "adam"], t["large_vs_fused"],
             "1b. N >= 1e7: Adam no slower than torch fused")
    vs_fused([r for r in f32 if r.optimizer == "adam" and 10 ** 5 <= r.n <= 10 ** 6],
             t["mid_vs_fused"], f"2. N = 1e5..1e6: Adam >= {t['mid_vs_fused']:g}x torch fused")

    many = {r.backend: r for r in report.many if r.dtype == "float32"}
    case = report.many[0].optimizer.split(" ", 1)[1] if report.many else "10,000x1,000"
    name = (f"3. {case} tensors through the class within {t['arena_vs_one']}x of one tensor "
            f"of all their parameters and >= {t['arena_vs_fused']:g}x torch fused")
    arenas = [k for k in many if k.endswith(" arena")]
    if arenas:
        evidence, ok = [], True
        for key in arenas:
            backend = key.split()[0]
            one = many.get(f"{backend} 1 tensor")
            fused = many.get("torch-fused tensors")
            paired = many[key].paired  # round by round, when timed in turn
            vs_one = (1 / paired[one.backend] if one.backend in paired
                      else many[key].median_s / one.median_s) if one else None
            vs_fused_x = paired.get(fused.backend, fused.median_s / many[key].median_s) \
                if fused else None
            ok &= vs_one is not None and vs_one <= t["arena_vs_one"]
            ok &= vs_fused_x is not None and vs_fused_x >= t["arena_vs_fused"]
            evidence.append(f"{backend}: arena/one tensor {_fmt(vs_one, '.2f', 0)}, "
                            f"x torch fused {_fmt(vs_fused_x, '.1f', 0)}")
        out.append((name, _status(ok), "; ".join(evidence)))
    elif many:
        lists = [f"{k}: {many[k].median_s * 1e3:.1f} ms" for k in many if k.endswith(" arrays")]
        out.append((name, "not measured", "the classes do not take a FlatParams yet; list of "
                    "arrays instead: " + ", ".join(lists)))
    else:
        out.append((name, "not measured", "many-tensor section not run"))

    if report.overhead:
        for key, goal, label in (("functional_us", t["functional_us"], "fastopt.optim.functional"),
                                 ("class_us", t["class_us"], "an optimizer class")):
            values = {b: o[key] for b, o in report.overhead.items()}
            out.append((f"4. a 10^3 step through {label} <= {goal:g} us",
                        _status(all(v <= goal for v in values.values())),
                        ", ".join(f"{b} {v:.1f} us" for b, v in values.items())))
    else:
        out.append(("4. call overhead", "not measured", "overhead section not run"))

    if report.startup:
        warm = report.startup["warm"]["total_s"]
        cold = report.startup.get("cold", {}).get("total_s")
        out.append((f"5. import + first Adam step, warm cache <= {t['startup_s']} s",
                    _status(warm <= t["startup_s"]),
                    f"warm {warm:.2f} s (process {report.startup['warm']['process_s']:.2f} s)"
                    + (f"; first-ever compile {cold:.1f} s" if cold is not None else "")))
    else:
        out.append(("5. start-up", "not measured", "start-up section not run"))

    if report.threads:
        scale = {}
        for row in report.threads:
            scale.setdefault(row["backend"], {})[row["threads"]] = row["step_gb_per_s"]
        out.append(("6. threads follow set_num_threads (bit-identity: tests/test_threads.py)",
                    "measured", "; ".join(
                        f"{b}: " + ", ".join(f"{k} thr {v:.1f} GB/s" for k, v in s.items())
                        for b, s in scale.items())))
    return out


def format_report(report):
    """The whole report as text: machine, table, skipped cases, overhead, many tensors, threads,
    start-up, targets."""
    m = report.machine
    lines = [f"machine: {m.get('cpu')}, {m.get('cpus_usable', m.get('cpu_count'))} CPUs usable, "
             f"{m.get('memory_gb', '?')} GB; load average at the end "
             f"{', '.join(f'{x:.2f}' for x in m.get('load_average', ()))}",
             f"threads: cpu (numba, {m.get('numba_threading_layer', '-')}) "
             f"{m.get('threads_cpu', '-')}, c (OpenMP) {m.get('threads_c', '-')}, torch "
             f"{m.get('threads_torch', '-')}; versions: python {m.get('python')}, numpy "
             f"{m.get('numpy')}, numba {m.get('numba', '-')}, cffi {m.get('cffi', '-')}, torch "
             f"{m.get('torch', '-')}, fastopt {m.get('fastopt')}",
             f"C build: {m.get('c_build', '-')}",
             f"timing: {report.settings['timing']}"]
    if report.results:
        lines += ["", format_table(report.results)]
    if report.skipped:
        lines += ["", "not run:"] + [f"  {case}: {why}" for case, why in report.skipped]
    if report.overhead:
        lines += ["", "call overhead (median us per call, warm):"]
        for backend, o in report.overhead.items():
            lines.append(f"  {backend}: {o['optimizer']} n={o['n']} {o['dtype']}: functional "
                         f"{o['functional_us']:.1f} us, bound (functional.bind) "
                         f"{o['bound_us']:.1f} us, class {o['class_us']:.1f} us "
                         f"({o['class_no_check_us']:.1f} us with skip_nonfinite=False); stages "
                         "of a functional step, each timed alone:")
            lines += [f"    {k:<38}{_fmt(v, '.2f', 8)} us" for k, v in o["stages_us"].items()]
            lines.append("    cProfile of the class step (own time, profiler-inflated):")
            lines += [f"    {p['share']:>6.1%} {p['calls_per_step']:>5.1f}x  {p['function']}"
                      for p in o["profile_class"][:8]]
    if report.many:
        lines += ["", f"many tensors: {report.many[0].optimizer} through optimizer classes "
                  "(= torch.optim for peers)"]
        lines += [f"  {r.backend:<24}{r.median_s * 1e3:>10.2f} ms (best {r.min_s * 1e3:.2f})"
                  f"{r.gb_per_s:>8.2f} GB/s" for r in report.many]
    if report.threads:
        lines += ["", "thread scaling (GB/s of the step / of its same-traffic kernel):"]
        lines += [f"  {r['backend']:<4} {r['optimizer']} n={r['n']:,} {r['threads']} threads: "
                  f"{r['step_gb_per_s']:.1f} / {r['same_traffic_gb_per_s']:.1f} "
                  f"({r['ratio']:.2f})" for r in report.threads]
    if report.startup:
        s = report.startup
        lines += ["", f"start-up (import fastopt + first Adam step, new process, "
                  f"{s['backend']} backend):",
                  f"  warm cache (median of {s['runs']}): import {s['warm']['import_s']:.2f} s + "
                  f"first step {s['warm']['first_step_s']:.2f} s = {s['warm']['total_s']:.2f} s "
                  f"(process incl. interpreter {s['warm']['process_s']:.2f} s)"]
        if "cold" in s:
            c = s["cold"]
            lines.append(f"  empty cache (first-ever compile): import {c['import_s']:.2f} s + "
                         f"first step {c['first_step_s']:.2f} s = {c['total_s']:.2f} s")
    targets = check_targets(report)
    if targets:
        lines += ["", "targets:"] + [f"  [{s}] {t}: {e}" for t, s, e in targets]
    return "\n".join(lines)
