"""Thread scaling: GB/s of a step and of its same-traffic kernel on 1 .. max threads, per host
backend, the two timed in turn at each thread count. A count whose figures contradict themselves
(the step faster than its same-traffic kernel, the rounds disagreeing, fewer GB/s than on fewer
threads) is timed once more and the better-agreeing timing kept."""

import gc
import statistics

import numpy as np

from fastopt._core.dispatch import available_backends
from fastopt._core.threads import get_num_threads, max_num_threads, set_num_threads
from fastopt.bench.cases import bytes_per_step, make_bound_step, written_arrays
from fastopt.bench.timing import (ROOFLINE_BACKENDS, interleaved_samples, make_same_traffic,
                                  paired_ratio, paired_spread, too_noisy)


def thread_scaling(n=10_000_000, name="adam", dtype=np.float32, backends=None, repeat=10,
                   max_s=10.0):
    """GB/s of a step and of its same-traffic kernel on 1 .. max threads, per host backend."""
    before = get_num_threads()
    written = written_arrays(name, {})
    moved = bytes_per_step(name, {}, n, dtype)  # as much as the same-traffic kernel moves
    out = []
    best = {}  # backend -> the most GB/s on fewer threads

    def measure(backend, threads):
        samples = interleaved_samples(
            {"step": make_bound_step(name, {}, backend, n, dtype),
             "roof": make_same_traffic(written, backend, n, dtype)}, repeat, max_s=max_s)
        return {"backend": backend, "threads": threads, "n": n, "optimizer": name,
                "dtype": np.dtype(dtype).name,
                "step_gb_per_s": moved / statistics.median(samples["step"]) / 1e9,
                "same_traffic_gb_per_s": moved / statistics.median(samples["roof"]) / 1e9,
                "ratio": paired_ratio(samples["roof"], samples["step"]),
                "spread": paired_spread(samples["roof"], samples["step"])}

    def doubtful(row):
        return (too_noisy(row["ratio"], row["spread"], 1.0)
                or row["step_gb_per_s"] < 0.9 * best.get(row["backend"], 0.0))

    try:
        for threads in range(1, max_num_threads() + 1):
            set_num_threads(threads)
            for backend in [b for b in (backends or ROOFLINE_BACKENDS)
                            if b in available_backends()]:
                row = measure(backend, threads)
                if doubtful(row):
                    again = measure(backend, threads)
                    row = again if not doubtful(again) else max(
                        row, again, key=lambda r: r["step_gb_per_s"])
                best[backend] = max(best.get(backend, 0.0), row["step_gb_per_s"])
                out.append(row)
                gc.collect()
    finally:
        set_num_threads(before)
    return out
