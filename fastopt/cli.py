"""The ``fastopt`` command: ``fastopt`` (self-check, benchmark, digits training table),
``selfcheck``, ``bench``, ``train``."""

import argparse
import json
import platform
import sys

import numpy as np

from fastopt import __version__, selfcheck
from fastopt._core.dispatch import backend_status


def _print_backends():
    print(f"fastopt {__version__} on {platform.machine()} {platform.processor() or ''}".rstrip())
    for name, status in backend_status().items():
        print(f"  {name:<6} {status}")


def cmd_selfcheck(args):
    rows = selfcheck.run()
    print("\nself-check against the numpy reference (3 steps, n=1031):")
    print(f"{'optimizer':<10}{'backend':<9}{'dtype':<9}{'max rel err':>13}  result")
    for name, backend, dtype, err, ok in rows:
        print(f"{name:<10}{backend:<9}{dtype:<9}{err:>13.2e}  {'ok' if ok else 'FAIL'}")
    failed = [r for r in rows if not r[-1]]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _count(text):
    """A parameter count such as ``4000000``, ``4_000_000`` or ``4e6``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e7, got {text!r}") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def _many(text):
    """``COUNTxSIZE``, e.g. ``10000x1000``."""
    try:
        count, size = (_count(x) for x in text.lower().split("x"))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected COUNTxSIZE such as 10000x1000, got {text!r}")
    return count, size


def _progress(item):
    if isinstance(item, str):
        print(f"  ... {item}", file=sys.stderr, flush=True)
    elif sys.stderr.isatty():
        print(f"\r  ... {item.optimizer} {item.backend} {item.dtype} n={item.n:,}".ljust(70),
              end="", file=sys.stderr, flush=True)


def cmd_bench(args):
    from fastopt import bench

    sizes = args.size or (bench.FULL_SIZES if args.full else [4_000_000])
    dtypes = args.dtype or (["float32", "float64"] if args.full else ["float32"])
    sections = args.sections.split(",") if args.sections else bench.SECTIONS
    unknown = set(sections) - set(bench.SECTIONS)
    if unknown:
        print(f"--sections: unknown {', '.join(sorted(unknown))}; choose from "
              f"{','.join(bench.SECTIONS)}", file=sys.stderr)
        return 2
    print(f"\nbenchmark: sizes {', '.join(f'{n:,}' for n in sizes)}; {', '.join(dtypes)}; "
          f"sections {','.join(sections)}; median of {args.repeat} warmed-up repeats per case")
    report = bench.run_all(sizes, [np.dtype(d) for d in dtypes], args.backend, args.repeat,
                           peers=() if args.no_peers else bench.PEERS,
                           sections=sections, many=args.many, progress=_progress,
                           max_s=args.max_time)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(bench.format_report(report))
    if args.targets:  # planning goals, read only on request
        from fastopt.bench import targets

        print("\n" + targets.format_targets(report))
    if args.json:
        data = report.as_dict()
        if args.targets:
            data["targets"] = targets.targets_as_dicts(report)
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


def cmd_train(args):
    """``fastopt train``: trains an MLP (default: the embedded digits), per-epoch table."""
    from fastopt.nn.train import run_cli

    return run_cli(args)


def cmd_digits(args):
    from fastopt.nn.train import compare_optimizers

    print("\ntraining the embedded digits model (64-64-10, 20 epochs of batch 32) with each "
          "optimizer:")
    print(f"{'optimizer':<10}{'backend':<9}{'final loss':>11}{'test acc':>10}{'steps/s':>10}")
    for name, backend, loss, accuracy, rate in compare_optimizers():
        print(f"{name:<10}{backend:<9}{loss:>11.4f}{accuracy:>10.2%}{rate:>10.0f}")
    return 0


def cmd_all(args):
    status = cmd_selfcheck(args)
    status = cmd_bench(args) or status
    return cmd_digits(args) or status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastopt", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    bench_args = argparse.ArgumentParser(add_help=False)
    bench_args.add_argument("--size", type=_count, action="append",
                            help="parameters per step, e.g. 1e7 (repeatable; default 4e6, "
                                 "or 1e3 ... 1e8 with --full)")
    bench_args.add_argument("--dtype", choices=["float32", "float64"], action="append",
                            help="repeatable; default float32, or both with --full")
    bench_args.add_argument("--repeat", type=int, default=10, help="timed samples per case")
    bench_args.add_argument("--backend", action="append", choices=["cuda", "cpu", "c", "numpy"],
                            help="backend to time (repeatable; default: every available one)")
    bench_args.add_argument("--no-peers", action="store_true",
                            help="leave out numpy-as-a-user-writes-it and torch.optim")
    bench_args.add_argument("--sections", metavar="LIST",
                            help="comma-separated, from table,overhead,many,threads,startup "
                                 "(default: all)")
    bench_args.add_argument("--many", type=_many, default=(10_000, 1_000), metavar="COUNTxSIZE",
                            help="the many-small-tensors case (default 10000x1000)")
    bench_args.add_argument("--max-time", type=float, default=10.0, metavar="S",
                            help="stop repeating a case after about S seconds (at least 3 "
                                 "samples)")
    bench_args.add_argument("--full", action="store_true",
                            help="the full run: sizes 1e3 ... 1e8, float32 and float64")
    bench_args.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    bench_args.add_argument("--targets", action="store_true",
                            help="also read the run against the planning targets "
                                 "(fastopt.bench.targets)")
    sub.add_parser("selfcheck", help="compare every backend with the numpy reference")
    sub.add_parser("bench", parents=[bench_args], help="time every optimizer on every backend")
    sub.add_parser("all", parents=[bench_args], help="self-check, then benchmark (the default)")
    from fastopt.nn.train import add_cli_arguments

    add_cli_arguments(sub.add_parser("train", help="train an MLP and report test accuracy"))
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("selfcheck", "bench", "all", "train", "-h", "--help"):
        argv = ["all", *argv]  # the default command
    args = parser.parse_args(argv)
    _print_backends()
    commands = {"selfcheck": cmd_selfcheck, "bench": cmd_bench, "all": cmd_all, "train": cmd_train}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
