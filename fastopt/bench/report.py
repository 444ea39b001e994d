"""The report: the sections of a run gathered in a :class:`Report` (:func:`run_all`), and their
text (:func:`format_table`, :func:`format_report`) and JSON (:meth:`Report.as_dict`) forms."""

import os
from dataclasses import dataclass, field

import numpy as np

from fastopt._core.dispatch import available_backends
from fastopt.bench.cases import MIXED
from fastopt.bench.check import format_safe_default, safe_default
from fastopt.bench.landscape import format_landscape, landscape
from fastopt.bench.machine import machine
from fastopt.bench.many import many_tensors
from fastopt.bench.overhead import contradicting_stages, overhead
from fastopt.bench.peers import PEERS
from fastopt.bench.scaling import thread_scaling
from fastopt.bench.startup import startup
from fastopt.bench.table import peer_speedup, roofline_ratio, run_table, unreadable
from fastopt.bench.timing import ROOFLINE_BACKENDS, too_noisy

#: The sections of a run, in order (``fastopt bench --sections``).
SECTIONS = ("table", "overhead", "many", "check", "threads", "startup", "dynamics",
            "landscape", "distributed")
#: The sections a run without ``--sections`` runs: those of the optimizer step. The experiments'
#: sections run on request.
DEFAULT_SECTIONS = ("table", "overhead", "many", "check", "threads", "startup")
#: The many-tensor cases (count, size): the first with every variant and torch peer, the others
#: as a list of arrays against one tensor and torch fused.
MANY = ((10_000, 1_000), (100_000, 100))


@dataclass
class Report:
    """What a run measured, by section: the table's :class:`fastopt.bench.cases.Result` list and
    the cases it could not run, the call overhead, the many-tensor results, the thread scaling
    and the start-up, with the machine's facts and the run's settings."""
    machine: dict
    settings: dict
    results: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    overhead: dict = field(default_factory=dict)
    many: list = field(default_factory=list)
    check: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    startup: dict = field(default_factory=dict)
    dynamics: dict = field(default_factory=dict)
    landscape: list = field(default_factory=list)
    distributed: list = field(default_factory=list)

    def as_dict(self):
        """The report as plain data (``fastopt bench --json``), with the ratios of each step."""
        return {"machine": self.machine, "settings": self.settings,
                "results": [r.as_dict() for r in self.results],
                "ratios": [{"optimizer": r.optimizer, "backend": r.backend, "dtype": r.dtype,
                            "n": r.n, "roofline": roofline_ratio(r, self.results),
                            **{f"x_{p}": peer_speedup(r, p, self.results) for p in PEERS}}
                           for r in self.results if r.kind == "fastopt"],
                "skipped": [{"case": c, "reason": why} for c, why in self.skipped],
                "overhead": self.overhead, "many_tensors": [r.as_dict() for r in self.many],
                "safe_default": self.check,
                "thread_scaling": self.threads, "startup": self.startup,
                "dynamics": self.dynamics, "landscape": self.landscape,
                "distributed": self.distributed}


def run_all(sizes, dtypes=(np.float32,), backends=None, repeat=10, peers=PEERS,
            sections=DEFAULT_SECTIONS, many=MANY, thread_n=10_000_000, progress=None,
            max_s=10.0, min_sample_s=0.02, yardsticks=True, dynamics_small=False):
    """Runs the chosen ``sections`` of :data:`SECTIONS` and returns a :class:`Report`; the table's
    samples batch calls over ``min_sample_s``; without ``yardsticks``, the table leaves out the
    STREAM kernels and the same-traffic kernels timed alone; ``dynamics_small`` runs the dynamics
    section at toy sizes."""
    sizes = [sizes] if isinstance(sizes, (int, np.integer)) else list(sizes)
    report = Report(machine={}, settings={
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "sizes": sizes, "dtypes": [np.dtype(d).name for d in dtypes],
        "backends": list(backends or available_backends()), "repeat": repeat,
        "peers": list(peers), "sections": list(sections), "timing": "median of repeated runs "
        "after warm-up; cases compared are timed in turn, round by round, each sample after an "
        "untimed call and batched to >= "
        f"{min_sample_s * 1e3:g} ms (0.2 ms when timed alone); at most "
        f"~{max_s:g} s per case"})

    def say(what):
        if progress:
            progress(what)

    if "table" in sections:
        report.results = run_table(sizes, dtypes, backends, repeat, peers, progress=progress,
                                   skipped=report.skipped, max_s=max_s,
                                   min_sample_s=min_sample_s, yardsticks=yardsticks)
    if "overhead" in sections:
        say("overhead")
        report.overhead = overhead(backends and [b for b in backends if b in ROOFLINE_BACKENDS])
    if "many" in sections:
        say("many tensors")
        cases = [many] if isinstance(many[0], (int, np.integer)) else list(many)
        for k, (count, size) in enumerate(cases):  # the first with every variant and peer
            report.many += many_tensors(count, size, backends=backends and [
                b for b in backends if b in ROOFLINE_BACKENDS], skipped=report.skipped,
                max_s=max_s, arenas=k == 0, peers=[p for p in peers if p.startswith("torch")
                                                    and (k == 0 or p == "torch-fused")])
    if "check" in sections:
        report.check = safe_default(sizes, backends=backends, repeat=repeat, max_s=max_s,
                                    skipped=report.skipped, progress=progress)
    if "threads" in sections:
        say("thread scaling")
        report.threads = thread_scaling(thread_n, repeat=repeat, max_s=max_s)
    if "startup" in sections:
        say("start-up")
        report.startup = startup()
    if "dynamics" in sections:
        from fastopt.bench.dynamics import dynamics

        report.dynamics = dynamics(dynamics_small, progress=say)
    if "landscape" in sections:
        say("landscape")
        report.landscape = landscape(backends, repeat=repeat, max_s=max_s, progress=say)
    if "distributed" in sections:
        from fastopt.bench.distributed import distributed

        say("distributed")
        report.distributed = distributed(repeat=repeat)
    report.machine = machine()  # last: the threading layer is known once a parallel step ran
    return report


def _many_ratios(result):
    """A many-tensor row's paired ratios: its time over one tensor's, torch fused's over its."""
    out = ""
    for other, x in result.paired.items():
        if other.endswith(" 1 tensor"):
            out += f"  /1 tensor {1 / x:.2f}"
        elif other == "torch-fused tensors":
            out += f"  x fused {x:.1f}"
    return out


def fmt(x, spec, width, doubtful=False, bound=None):
    """``x`` formatted right-aligned in ``width``, or ``-`` when it was not measured; with
    ``doubtful``, followed by ``?``, or ``noisy`` in its place when it passes its ``bound`` (see
    :data:`DOUBT`)."""
    if x is None:
        return f"{'-':>{width}}"
    if doubtful and bound is not None and x > bound:
        return f"{'noisy':>{width}}"
    return f"{x:>{width - 1}{spec}}?" if doubtful else f"{x:>{width}{spec}}"


#: The footnote of figures marked ``?`` or replaced by ``noisy``.
DOUBT = ("?: the rounds disagreed by more than a quarter about this figure; noisy: the step came "
         "out faster than the kernel moving the same bytes, which only a busy machine can make "
         "happen; either way it was timed twice")

_SHORT = {"numpy-user": "xnumpy", "torch": "xtorch", "torch-foreach": "xforeach",
          "torch-fused": "xfused"}


def format_table(results, copy_gb_per_s=None):
    """The table: one block per dtype and size, its roofline line, then one row per step."""
    peers = [p for p in PEERS if any(r.backend == p for r in results)]
    header = (f"{'optimizer':<14}{'backend':<15}{'median us':>12}{'(best)':>10}{'Mparams/s':>11}"
              f"{'GB/s':>8}"
              f"{'/roof':>7}" + "".join(f"{_SHORT[p]:>10}" for p in peers))
    lines = []
    doubts = False
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
            noisy = unreadable(r)
            doubts = doubts or bool(noisy)
            speedups = [peer_speedup(r, p, results) if r.kind == "fastopt" else None
                        for p in peers]
            label = r.optimizer if r.optimizer != previous else ""
            previous = r.optimizer
            best = r.min_s * 1e6 if r.min_s is not None else None
            lines.append(f"{label:<14}{r.backend:<15}{r.median_s * 1e6:>12,.1f}"
                         + fmt(best, ",.1f", 10)
                         + f"{r.params_per_s / 1e6:>11,.1f}{r.gb_per_s:>8.2f}"
                         + fmt(roofline_ratio(r, results), ".2f", 7, "roofline" in noisy, 1.0)
                         + "".join(fmt(x, ".2f", 10, p in noisy) for p, x in zip(peers, speedups)))
    if copy_gb_per_s:
        lines.append(f"numpy copy (read+write) on this machine: {copy_gb_per_s:.2f} GB/s")
    lines.append("times are medians; (best): the fastest sample; /roof: same-traffic kernel time "
                 "/ step time (cpu, c: their own kernel; others: the faster one); xPEER: PEER's "
                 "time / this time (> 1: fastopt is faster); both ratios are medians over rounds "
                 "that time the step and its yardsticks in turn")
    if any(r.dtype == MIXED for r in results):
        lines.append("mixed: float32 master weights, the gradient and model copy in the row's "
                     "format (f16, bf16; sr: bfloat16 state, stochastic rounding); /roof against "
                     "the cpu same-traffic kernel of that traffic, for cpu and c")
    if doubts:
        lines.append(DOUBT)
    return "\n".join(lines).lstrip("\n")


def format_main(report):
    """The main job's benchmark: per size, a row per fastopt step with its time, GB/s, ratio to
    the same-traffic kernel and speed-up over each installed peer, in plain words."""
    results = report.results
    peers = [p for p in PEERS if any(r.backend == p for r in results)]
    header = (f"{'optimizer':<14}{'backend':<9}{'us/step':>10}{'GB/s':>8}{'/roof':>7}"
              + "".join(f"{_SHORT[p]:>10}" for p in peers))
    lines = []
    doubts = False
    for n in sorted({r.n for r in results}):
        steps = [r for r in results if r.n == n and r.kind == "fastopt"]
        lines += ["", f"N = {n:,} parameters", header, "-" * len(header)]
        previous = None
        for r in steps:
            noisy = unreadable(r)
            doubts = doubts or bool(noisy)
            label = r.optimizer if r.optimizer != previous else ""
            previous = r.optimizer
            lines.append(f"{label:<14}{r.backend:<9}{r.median_s * 1e6:>10,.1f}"
                         f"{r.gb_per_s:>8.2f}"
                         + fmt(roofline_ratio(r, results), ".2f", 7, "roofline" in noisy, 1.0)
                         + "".join(fmt(peer_speedup(r, p, results), ".2f", 10, p in noisy)
                                   for p in peers))
    lines += ["", "/roof: time of a kernel that reads and writes the same arrays with trivial "
              "arithmetic, divided by the step's time (1.00: as fast as memory allows)"]
    if peers:
        names = {"numpy-user": "numpy written as a user would", "torch": "torch.optim",
                 "torch-foreach": "torch.optim with foreach=True",
                 "torch-fused": "torch.optim with fused=True"}
        lines.append("xPEER: how many times faster than " + "; ".join(
            f"{_SHORT[p]}: {names[p]}" for p in peers) + " (same size, same thread count)")
    if doubts:
        lines.append(DOUBT)
    lines += format_skipped(report.skipped)
    note = busy_note(report)
    if note:
        lines.append(note)
    return "\n".join(lines).lstrip("\n")


def format_skipped(skipped):
    """Cases not run, one line per reason (a missing peer is one line, not one per case)."""
    reasons = {}
    for case, why in skipped:
        if why.startswith("torch not installed"):
            why = ("torch is not installed: no torch.optim columns (pip install torch, or "
                   "fastopt[oracle])")
        reasons.setdefault(why, []).append(case)
    lines = []
    for why, cases in reasons.items():
        lines.append(f"not run: {why}" if why.startswith("torch is not installed")
                     else f"not run ({len(cases)} case{'s' * (len(cases) > 1)}, e.g. "
                          f"{cases[0]}): {why}")
    return lines


def busy_note(report):
    """A line saying that other work shared the machine when the timing started (the 1-minute
    load average above half the usable CPUs), or ``None``."""
    load = report.settings.get("load_average_at_start")
    cpus = report.machine.get("cpus_usable", report.machine.get("cpu_count")) or 1
    if not load or load[0] <= cpus / 2:
        return None
    return (f"other work shared this machine (load average {load[0]:.1f} on {cpus} CPUs when "
            "the timing started): figures vary from run to run")


def format_report(report):
    """The whole report as text: machine, table, skipped cases, overhead, many tensors, threads,
    start-up. The targets are :func:`fastopt.bench.targets.format_targets`'s."""
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
    note = busy_note(report)
    if note:
        lines.append(note)
    doubts = []
    if report.results:
        lines += ["", format_table(report.results)]
    if report.skipped:
        lines += [""] + format_skipped(report.skipped)
    if report.overhead:
        lines += ["", "call overhead (median us per call, warm):"]
        for backend, o in report.overhead.items():
            check = o["class_us"] - o["class_no_check_us"]
            check_text = (f"the non-finite check {check:.1f} us" if check >= 0 else
                          "the non-finite check's cost below the noise")
            lines.append(f"  {backend}: {o['optimizer']} n={o['n']} {o['dtype']}: functional "
                         f"{o['functional_us']:.1f} us, bound (functional.bind) "
                         f"{o['bound_us']:.1f} us, class {o['class_us']:.1f} us "
                         f"({o['class_no_check_us']:.1f} us with skip_nonfinite=False: "
                         f"{check_text}); stages of a functional step, each timed alone:")
            bad = contradicting_stages(o["stages_us"])
            if bad:
                doubts.append("?: a part timed larger than its whole: the machine was too busy "
                              "for this breakdown (timed twice)")
            lines += [f"    {k:<38}{fmt(v, '.2f', 8, k in bad)} us"
                      for k, v in o["stages_us"].items()]
            lines.append("    cProfile of the class step (own time, profiler-inflated):")
            lines += [f"    {p['share']:>6.1%} {p['calls_per_step']:>5.1f}x  {p['function']}"
                      for p in o["profile_class"][:8]]
    lines += doubts[:1]
    if report.many:
        lines += ["", f"many tensors: {report.many[0].optimizer} through optimizer classes "
                  "(= torch.optim for peers)"]
        lines += [f"  {r.optimizer.split(' ', 1)[1]:<16}{r.backend:<24}{r.median_s * 1e3:>10.2f} "
                  f"ms (best {r.min_s * 1e3:.2f}){r.gb_per_s:>8.2f} GB/s" + _many_ratios(r)
                  for r in report.many]
        lines.append("  (/1 tensor: this time over one tensor of all the parameters'; x fused: "
                     "torch fused's time over this, on the same tensors; both round by round)")
    if report.check:
        lines += [""] + format_safe_default(report.check)
    if report.threads:
        lines += ["", "thread scaling (GB/s of the step / of its same-traffic kernel):"]
        slower = slower_with_more_threads(report.threads)
        for r in report.threads:
            doubtful = id(r) in slower or too_noisy_row(r)
            lines.append(f"  {r['backend']:<4} {r['optimizer']} n={r['n']:,} {r['threads']} "
                         f"threads: {r['step_gb_per_s']:.1f} / {r['same_traffic_gb_per_s']:.1f} "
                         f"({r['ratio']:.2f}){'?' if doubtful else ''}")
        if slower or any(too_noisy_row(r) for r in report.threads):
            lines.append("?: fewer GB/s than on fewer threads, or the step faster than its "
                         "same-traffic kernel: other work was competing for the cores")
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
    if report.dynamics:
        from fastopt.bench.dynamics import format_dynamics

        lines += ["", format_dynamics(report.dynamics)]
    if report.landscape:
        lines += ["", format_landscape(report.landscape)]
    if report.distributed:
        from fastopt.bench.distributed import format_distributed

        lines += ["", *format_distributed(report.distributed)]
    return "\n".join(lines)


def slower_with_more_threads(rows, tolerance=0.1):
    """``id`` of each thread-scaling row whose step moved fewer GB/s than the same backend on
    fewer threads, by more than ``tolerance``."""
    out = set()
    best = {}
    for r in sorted(rows, key=lambda r: r["threads"]):
        before = best.get(r["backend"], 0.0)
        if r["step_gb_per_s"] < (1 - tolerance) * before:
            out.add(id(r))
        best[r["backend"]] = max(before, r["step_gb_per_s"])
    return out


def too_noisy_row(row):
    """Whether a thread-scaling row's ratio cannot be read (see
    :func:`fastopt.bench.timing.too_noisy`)."""
    return too_noisy(row["ratio"], row.get("spread"), 1.0)
