"""The safe default: Adam through the optimizer class with its non-finite check (the default),
against the same step without the check, with clipping (``max_norm``), the check pass and the norm pass
alone, a STREAM-style read of the gradient, and ``torch.optim.Adam(fused=True)``; all timed in turn
on one tensor. Then, with one core kept busy by a process of its own, the default step and torch
fused again: how much each degrades when the machine is not quiet."""

import contextlib
import functools
import gc
import multiprocessing
import statistics

import numpy as np

from fastopt._core.dispatch import available_backends, kernels
from fastopt._core.threads import get_num_threads
from fastopt.bench.cases import CLASS_NAMES, Unsupported
from fastopt.bench.peers import make_torch_step, torch_threads
from fastopt.bench.timing import ROOFLINE_BACKENDS, paired_ratio, roofline_kernels, time_cases

NAME = "adam"
FUSED = "torch-fused step"


@functools.cache
def _arrays(n, dtype):
    """One parameter and one gradient of ``n`` elements, shared by every case of a backend at a
    size (so that 10^8 elements fit in memory with all the cases timed in turn)."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(n).astype(dtype),
            (rng.standard_normal(n) * 1e-3).astype(dtype))


def make_step(backend, n, dtype=np.float32, skip_nonfinite=True, **step_options):
    """A closure running ``fastopt.Adam([param], backend=backend).step([grad], **step_options)``
    over the shared arrays of ``n`` elements (its own optimizer state)."""
    import fastopt

    param, grad = _arrays(n, np.dtype(dtype))
    opt = getattr(fastopt, CLASS_NAMES[NAME])([param], backend=backend,
                                              skip_nonfinite=skip_nonfinite)
    return lambda: opt.step([grad], **step_options)


def make_check(backend, n, dtype=np.float32):
    """A closure running the non-finite check pass alone (the gradient's largest magnitude)."""
    from fastopt.optim._step import bind_max_abs

    return bind_max_abs(kernels(backend), _arrays(n, np.dtype(dtype))[1])


def make_norm(backend, n, dtype=np.float32):
    """A closure running the norm pass alone (the gradient's sum of squares)."""
    grad = _arrays(n, np.dtype(dtype))[1]
    return functools.partial(kernels(backend).sum_of_squares, grad)


def make_read(backend, n, dtype=np.float32):
    """A closure running the STREAM-style read of the backend over the gradient."""
    grad = _arrays(n, np.dtype(dtype))[1]
    return functools.partial(roofline_kernels(backend).stream_read, grad)


def _spin():
    while True:
        pass


@contextlib.contextmanager
def one_core_busy():
    """Runs a process spinning on the CPU (one core's worth of other work) until the block ends."""
    process = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
    process.start()
    try:
        yield
    finally:
        process.terminate()
        process.join()


def _cases(backends, n, dtype):
    makers = {}
    for b in backends:
        makers[f"{b} step, no check"] = functools.partial(make_step, b, n, dtype, False)
        makers[f"{b} step (default: check)"] = functools.partial(make_step, b, n, dtype)
        makers[f"{b} step, max_norm=1"] = functools.partial(make_step, b, n, dtype,
                                                            max_norm=1.0)
        makers[f"{b} check pass"] = functools.partial(make_check, b, n, dtype)
        makers[f"{b} norm pass"] = functools.partial(make_norm, b, n, dtype)
        makers[f"{b} STREAM-style read"] = functools.partial(make_read, b, n, dtype)
    makers[FUSED] = functools.partial(make_torch_step, "torch-fused", NAME, {}, [(n,)], dtype)
    return makers


def _ratios(samples, b):
    """The ratios the targets read, round by round (time over time)."""
    def r(a, c):
        return paired_ratio(samples[a], samples[c]) if a in samples and c in samples else None

    return {"default / no check": r(f"{b} step (default: check)", f"{b} step, no check"),
            "max_norm / default": r(f"{b} step, max_norm=1", f"{b} step (default: check)"),
            "check speed / read speed": r(f"{b} STREAM-style read", f"{b} check pass"),
            "norm speed / read speed": r(f"{b} STREAM-style read", f"{b} norm pass"),
            "torch fused / default": r(FUSED, f"{b} step (default: check)")}


def safe_default(sizes, dtype=np.float32, backends=None, repeat=10, max_s=10.0, skipped=None,
                 busy=True, progress=None):
    """The section's rows, one per size: medians (s) by case, the ratios per backend, and with
    ``busy`` the default step and torch fused again with one core busy (their ratio beside the
    quiet one)."""
    backends = [b for b in (backends or ROOFLINE_BACKENDS)
                if b in ROOFLINE_BACKENDS and b in available_backends()]
    skipped = [] if skipped is None else skipped
    rows = []
    dtype = np.dtype(dtype)
    for n in sizes:
        if progress:
            progress(f"safe default n={n:,}")
        makers = _cases(backends, n, dtype)
        # Held at once: the shared parameter and gradient, the three steps' moments per backend,
        # and torch's four arrays; time_cases compares bytes per case with the memory.
        held = (2 + 3 * 2 * len(backends) + 4) * n * dtype.itemsize
        with torch_threads(get_num_threads()):
            samples, together = time_cases(makers, held / len(makers), repeat, max_s, skipped,
                                           f"check n={n:,} {{}}")
        gc.collect()
        row = {"n": n, "dtype": dtype.name, "in_turn": together,
               "median_s": {k: statistics.median(v) for k, v in samples.items()},
               "ratios": {b: _ratios(samples, b) for b in backends}}
        if busy:
            if progress:
                progress(f"safe default n={n:,}, one core busy")
            makers = {f"{b} step (default: check)": functools.partial(make_step, b, n, dtype)
                      for b in backends}
            makers[FUSED] = functools.partial(make_torch_step, "torch-fused", NAME, {}, [(n,)],
                                              dtype)
            held = (2 + 2 * len(backends) + 4) * n * dtype.itemsize
            with one_core_busy(), torch_threads(get_num_threads()):
                busy_samples, _ = time_cases(makers, held / len(makers), repeat, max_s,
                                             skipped, f"check busy n={n:,} {{}}")
            _arrays.cache_clear()
            gc.collect()
            row["busy_median_s"] = {k: statistics.median(v) for k, v in busy_samples.items()}
            default = {b: busy_samples[f"{b} step (default: check)"] for b in backends}
            row["busy_ratios"] = {
                b: {"torch fused / default": paired_ratio(busy_samples[FUSED], default[b])
                    if FUSED in busy_samples else None} for b in backends}
        _arrays.cache_clear()
        gc.collect()
        rows.append(row)
    return rows


def format_safe_default(rows):
    """The section as text lines."""
    lines = ["the safe default: Adam through the class, one float32 tensor, timed in turn "
             "(ratios: median over rounds)"]
    for row in rows:
        lines.append(f"  n={row['n']:,} {row['dtype']}:")
        for case, s in row["median_s"].items():
            lines.append(f"    {case:<34}{s * 1e3:>10.3f} ms")
        for b, ratios in row["ratios"].items():
            text = ", ".join(f"{k} {v:.3f}" for k, v in ratios.items() if v is not None)
            lines.append(f"    {b}: {text}")
        if "busy_median_s" in row:
            lines.append("    one core busy with another process:")
            for case, s in row["busy_median_s"].items():
                lines.append(f"      {case:<32}{s * 1e3:>10.3f} ms")
            for b, ratios in row["busy_ratios"].items():
                busy_ratio, quiet = ratios["torch fused / default"], \
                    row["ratios"][b]["torch fused / default"]
                if busy_ratio is not None and quiet is not None:
                    lines.append(f"      {b}: torch fused / default {busy_ratio:.3f} (quiet "
                                 f"{quiet:.3f}: {busy_ratio / quiet:.2f} of it)")
    return lines
