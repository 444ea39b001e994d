"""The ``fastopt`` command: ``fastopt`` (self-check, then benchmark), ``selfcheck``, ``bench``."""

import argparse
import json
import platform
import sys

import numpy as np

from . import __version__, benchmark, selfcheck
from ._dispatch import available_backends, backend_status


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


def cmd_bench(args):
    backends = args.backend or available_backends()
    dtype = np.dtype(args.dtype)
    print(f"\nbenchmark: one functional step, median of {args.repeat} after 3 warm-up steps")
    copy = benchmark.copy_bandwidth(args.size, dtype)
    results = benchmark.run(args.size, dtype, backends, args.repeat)
    print(benchmark.format_table(results, copy))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"copy_gb_per_s": copy, "results": [r.as_dict() for r in results]}, f,
                      indent=2)
    return 0


def cmd_all(args):
    status = cmd_selfcheck(args)
    return cmd_bench(args) or status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastopt", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    bench_args = argparse.ArgumentParser(add_help=False)
    bench_args.add_argument("--size", type=int, default=4_000_000, help="parameters per step")
    bench_args.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    bench_args.add_argument("--repeat", type=int, default=10, help="timed steps per case")
    bench_args.add_argument("--backend", action="append", choices=["cuda", "cpu", "c", "numpy"],
                            help="backend to time (repeatable; default: every available one)")
    bench_args.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    sub.add_parser("selfcheck", help="compare every backend with the numpy reference")
    sub.add_parser("bench", parents=[bench_args], help="time every optimizer on every backend")
    sub.add_parser("all", parents=[bench_args], help="self-check, then benchmark (the default)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("selfcheck", "bench", "all", "-h", "--help"):
        argv = ["all", *argv]  # the default command
    args = parser.parse_args(argv)
    _print_backends()
    return {"selfcheck": cmd_selfcheck, "bench": cmd_bench, "all": cmd_all}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
