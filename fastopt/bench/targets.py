"""The planning targets of the optimizer steps, and their reading against a run's
:class:`fastopt.bench.report.Report`. They are goals, not measurements: ``fastopt bench`` prints
them only with ``--targets`` (and adds them to ``--json``)."""

from fastopt.bench.report import fmt
from fastopt.bench.table import peer_speedup, roofline_ratio
from fastopt.bench.timing import ROOFLINE_BACKENDS

#: The targets (float32), read by :func:`check_targets`.
TARGETS = {
    "roofline_ratio": 0.95,     # N >= 1e7: every step on cpu and c vs its same-traffic kernel
    "large_vs_fused": 1.0,      # N >= 1e7: Adam no slower than torch fused
    "mid_vs_fused": 3.0,        # N = 1e5..1e6: Adam at least 3x faster than torch fused
    "arena_vs_one": 1.2,        # 10,000 x 1,000 through the class within 1.2x of one 1e7 tensor
    "arena_vs_fused": 10.0,     # ... and at least 10x faster than torch fused
    "functional_us": 10.0,      # a 10^3 step through fastopt.functional
    "class_us": 20.0,           # ... through an optimizer class
    "startup_s": 1.5,           # import + first Adam step, warm numba cache
}


def _status(ok):
    return "met" if ok else "MISSED"


def check_targets(report):
    """The targets against what ``report`` measured: ``(target, status, evidence)``, with
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

    first = report.many[0].optimizer if report.many else None
    many = {r.backend: r for r in report.many if r.dtype == "float32" and r.optimizer == first}
    case = first.split(" ", 1)[1] if report.many else "10,000x1,000"
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
            evidence.append(f"{backend}: arena/one tensor {fmt(vs_one, '.2f', 0)}, "
                            f"x torch fused {fmt(vs_fused_x, '.1f', 0)}")
        out.append((name, _status(ok), "; ".join(evidence)))
    elif many:
        lists = [f"{k}: {many[k].median_s * 1e3:.1f} ms" for k in many if k.endswith(" arrays")]
        out.append((name, "not measured", "the classes do not take a FlatParams yet; list of "
                    "arrays instead: " + ", ".join(lists)))
    else:
        out.append((name, "not measured", "many-tensor section not run"))

    if report.overhead:
        for key, goal, label in (("functional_us", t["functional_us"], "fastopt.functional"),
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


def format_targets(report):
    """The targets' reading as text, the block ``fastopt bench --targets`` prints after the
    report."""
    return "\n".join(["targets:"] + [f"  [{s}] {t}: {e}" for t, s, e in check_targets(report)])


def targets_as_dicts(report):
    """The targets' reading as plain data, for ``--json``."""
    return [{"target": t, "status": s, "evidence": e} for t, s, e in check_targets(report)]
