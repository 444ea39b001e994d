"""The table: every configuration × backend (+ peers) × size × dtype, each step timed in turn with
its same-traffic kernel and its peers, and the ratios read from it.

The table's steps are bound to their arrays (:func:`fastopt.functional.bind`), as a
``torch.optim`` step is to its tensors. A step is reported as time, params/s and GB/s, where the
bytes moved count each array once (:func:`fastopt.bench.cases.bytes_per_step`). A step of the
``cpu`` or ``c`` backend is compared with the same-traffic kernel of its own backend (1.0 = at the
memory roofline); other rows with the faster of the two (:func:`roofline_ratio`).
"""

import gc
import itertools
import statistics

import numpy as np

from fastopt._core.dispatch import available_backends
from fastopt._core.threads import get_num_threads
from fastopt.bench.cases import (CONFIGS, FORMAT_DTYPES, MIXED, MIXED_CONFIGS, Result,
                                 bytes_per_step, float_options, is_quant8, make_bound_step,
                                 make_mixed_step, mixed_bytes_per_step, written_arrays)
from fastopt.bench.peers import PEERS, make_peer, torch_threads
from fastopt.bench.timing import (ROOFLINE_BACKENDS, make_same_traffic, paired_ratio,
                                  paired_spread, roofline_kernels, time_cases, time_yardsticks,
                                  too_noisy)


def run_table(sizes, dtypes=(np.float32,), backends=None, repeat=10, peers=PEERS,
              roofline=True, configs=CONFIGS, progress=None, skipped=None, max_s=10.0,
              min_sample_s=0.02, yardsticks=True, mixed=True):
    """Every configuration × backend (+ peers) × size × dtype, plus the roofline kernels and STREAM
    of each size (without ``yardsticks``, only the same-traffic kernel timed in turn with each
    step): a list of :class:`Result`. ``sizes`` may be one int. Skipped cases are appended
    to ``skipped`` as ``(what, reason)``. A configuration whose ratios came out unreadable
    (:func:`unreadable`) is timed once more, and the less noisy of the two timings kept. With
    ``mixed``, the float32 sizes also time the mixed-precision steps (:func:`time_mixed`)."""
    sizes = [sizes] if isinstance(sizes, (int, np.integer)) else list(sizes)
    backends = list(backends or available_backends())
    skipped = [] if skipped is None else skipped
    results = []

    def record(result):
        results.append(result)
        if progress:
            progress(result)

    with torch_threads(get_num_threads()):
        for dtype, n in itertools.product(dtypes, sizes):
            dtype = np.dtype(dtype)
            if roofline and yardsticks:
                written = sorted({written_arrays(name, o) for _, name, o in configs
                                  if not is_quant8(o)})
                for backend in ROOFLINE_BACKENDS:
                    if backend not in available_backends():
                        continue
                    for result in time_yardsticks(backend, written, n, dtype, repeat, max_s,
                                                  min_sample_s):
                        record(result)
                    gc.collect()
            if mixed and dtype == np.float32:
                for config in MIXED_CONFIGS:
                    for result in time_mixed(config, n, backends, repeat, max_s, skipped,
                                             min_sample_s):
                        record(result)
                    gc.collect()
            for label, name, options in configs:
                if is_quant8(options) and dtype != np.float32:
                    continue  # 8-bit state is for float32 parameters
                timed = [time_configuration(label, name, options, n, dtype, backends, peers,
                                            roofline, repeat, max_s, skipped, min_sample_s)]
                if any(unreadable(r) for r in timed[0]):
                    timed.append(time_configuration(label, name, options, n, dtype, backends,
                                                    peers, roofline, repeat, max_s, None,
                                                    min_sample_s))
                for result in min(timed, key=lambda t: sum(map(len, map(unreadable, t)))):
                    record(result)
                gc.collect()
    return results


def time_configuration(label, name, options, n, dtype, backends, peers=PEERS, roofline=True,
                       repeat=10, max_s=10.0, skipped=None, min_sample_s=0.02):
    """One configuration at one size: the step on every backend (bound to its arrays,
    :func:`make_bound_step`, as a peer's ``step()`` is to its tensors), every peer, and the
    same-traffic kernel of the ``cpu`` and ``c`` backends, timed in turn
    (:func:`fastopt.bench.timing.interleaved_samples`) so that each step's ratios to its
    same-traffic kernel and to the peers are taken round by round (``Result.paired``). When their
    arrays would not fit in memory together (over 40% of it), each is timed alone instead, and the
    ratios are taken between medians. Returns the :class:`Result` of each step and peer;
    unsupported peers go to ``skipped``."""
    dtype = np.dtype(dtype)
    written = written_arrays(name, options)
    moved = bytes_per_step(name, options, n, dtype)
    makers = {b: (lambda b=b: make_bound_step(name, options, b, n, dtype)) for b in backends}
    for peer in peers:  # peers of an 8-bit step run the float32 step
        makers[peer] = lambda peer=peer: make_peer(peer, name, float_options(options), n, dtype)
    if roofline:
        for b in ROOFLINE_BACKENDS:
            if b in backends:
                makers["roof " + b] = lambda b=b: make_same_traffic(written, b, n, dtype,
                                                                     is_quant8(options))
    samples, together = time_cases(makers, moved, repeat, max_s, skipped,
                                   f"{label} {{}} {dtype.name} n={n:,}", min_sample_s)
    roofs = [samples["roof " + b] for b in ROOFLINE_BACKENDS if "roof " + b in samples]
    results = []
    for key, own in samples.items():
        if key.startswith("roof "):
            continue
        peer = key in peers
        against = {}
        if together:
            own_roof = samples.get("roof " + key)
            if own_roof is not None:
                against["roofline"] = own_roof
            elif roofs and key != "cuda":  # a peer: the faster host kernel of each round
                against["roofline"] = list(map(min, zip(*roofs)))
            if not peer:
                against.update((p, samples[p]) for p in peers if p in samples)
        results.append(Result(label, key, dtype.name, n, statistics.median(own), moved,
                              kind="peer" if peer else "fastopt", written=written,
                              min_s=min(own),
                              paired={k: paired_ratio(v, own) for k, v in against.items()},
                              spread={k: paired_spread(v, own) for k, v in against.items()}))
    return results


def make_mixed_same_traffic(written, n, model_fmt, state_fmt):
    """A closure running the ``cpu`` same-traffic kernel of a mixed-precision step updating
    ``written`` arrays (the master weights and the used state) with the gradient and the model
    copy in ``model_fmt`` (:func:`fastopt.backends.cpu.roofline.same_traffic_mixed`)."""
    kernels = roofline_kernels("cpu")
    low, state = FORMAT_DTYPES[model_fmt], FORMAT_DTYPES[state_fmt]
    read, out = np.zeros(n, low), np.zeros(n, low)
    arrays = [np.ones(n, np.float32)] + [np.ones(n, state) for _ in range(written - 1)]
    return lambda: kernels.same_traffic_mixed(arrays, read, out, 1e-6)


def time_mixed(config, n, backends, repeat=10, max_s=10.0, skipped=None, min_sample_s=0.02):
    """One mixed-precision configuration of :data:`fastopt.bench.cases.MIXED_CONFIGS` at one
    size: the step on the host backends (``cpu``, ``c``) timed in turn with the same-traffic
    kernel of its traffic (the ``cpu`` one: its arrays are of several dtypes, which the C
    yardsticks do not take), each step's ratio to it taken round by round. Returns their
    :class:`Result` (``dtype`` :data:`fastopt.bench.cases.MIXED`)."""
    label, name, options, model_fmt, state_fmt, rounding = config
    written = written_arrays(name, options)
    moved = mixed_bytes_per_step(name, options, n, model_fmt, state_fmt)
    makers = {b: (lambda b=b: make_mixed_step(name, options, b, n, model_fmt, state_fmt,
                                              rounding))
              for b in ROOFLINE_BACKENDS if b in backends}
    if not makers:
        return []
    if "cpu" in available_backends():
        makers["roof"] = lambda: make_mixed_same_traffic(written, n, model_fmt, state_fmt)
    samples, together = time_cases(makers, moved, repeat, max_s, skipped,
                                   f"{label} {{}} n={n:,}", min_sample_s)
    roof = samples.pop("roof", None)
    return [Result(label, key, MIXED, n, statistics.median(own), moved, written=written,
                   min_s=min(own),
                   paired={"roofline": paired_ratio(roof, own)} if together and roof else {},
                   spread={"roofline": paired_spread(roof, own)} if together and roof else {})
            for key, own in samples.items()]


def unreadable(result):
    """The ratios of ``result`` that cannot be read (:func:`fastopt.bench.timing.too_noisy`):
    their rounds disagree, or the step beat the kernel moving the same bytes (``roofline`` above
    1). A list of keys of ``result.paired``."""
    return [k for k, ratio in result.paired.items()
            if too_noisy(ratio, result.spread.get(k), 1.0 if k == "roofline" else None)]


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
