"""The report: the sections of a run gathered in a :class:`Report` (:func:`run_all`), and their
text (:func:`format_table`, :func:`format_report`) and JSON (:meth:`Report.as_dict`) forms."""

from dataclasses import dataclass, field

import numpy as np

from fastopt._core.dispatch import available_backends
from fastopt.bench.machine import machine
from fastopt.bench.many import many_tensors
from fastopt.bench.overhead import overhead
from fastopt.bench.peers import PEERS
from fastopt.bench.scaling import thread_scaling
from fastopt.bench.startup import startup
from fastopt.bench.table import peer_speedup, roofline_ratio, run_table
from fastopt.bench.timing import ROOFLINE_BACKENDS

#: The sections of a run, in order (``fastopt bench --sections``).
SECTIONS = ("table", "overhead", "many", "threads", "startup")


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
    threads: list = field(default_factory=list)
    startup: dict = field(default_factory=dict)

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
                "thread_scaling": self.threads, "startup": self.startup}


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
        report.results = run_table(sizes, dtypes, backends, repeat, peers, progress=progress,
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


def fmt(x, spec, width):
    """``x`` formatted right-aligned in ``width``, or ``-`` when it was not measured."""
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
                         + fmt(best, ",.1f", 10)
                         + f"{r.params_per_s / 1e6:>11,.1f}{r.gb_per_s:>8.2f}"
                         + fmt(ratio, ".2f", 7)
                         + "".join(fmt(s, ".2f", 10) for s in speedups))
    if copy_gb_per_s:
        lines.append(f"numpy copy (read+write) on this machine: {copy_gb_per_s:.2f} GB/s")
    lines.append("times are medians; (best): the fastest sample; /roof: same-traffic kernel time "
                 "/ step time (cpu, c: their own kernel; others: the faster one); xPEER: PEER's "
                 "time / this time (> 1: fastopt is faster); both ratios are medians over rounds "
                 "that time the step and its yardsticks in turn")
    return "\n".join(lines).lstrip("\n")


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
            lines += [f"    {k:<38}{fmt(v, '.2f', 8)} us" for k, v in o["stages_us"].items()]
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
    return "\n".join(lines)
