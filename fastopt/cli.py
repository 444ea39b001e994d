"""The ``fastopt`` command: the main job (no command), ``selfcheck``, ``bench`` and ``train``.

Every mistake in a command line (a bad value, a missing data directory, a backend that cannot run
here) ends as a usage line and exit status 2, as argparse ends its own errors."""

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

from fastopt import __version__, selfcheck
from fastopt._core.dispatch import BACKENDS, available_backends, backend_status

DESCRIPTION = """\
Optimizer steps as compiled kernels (numba CPU and CUDA, C), checked against a numpy reference.

With no command, fastopt runs its main job: the self-check of every optimizer on every backend,
a short benchmark, and a table of MLPs trained on the embedded digits."""

EPILOG = """\
Host arrays and models run on the first available backend of cpu, c, numpy; CUDA arrays on cuda.
backend= (Python), --backend (here) or the environment variable FASTOPT_BACKEND chooses another.
'fastopt COMMAND --help' describes a command's options."""

#: The sizes of the main job's benchmark, float32: one in cache, one out of it.
MAIN_SIZES = (10_000, 1_000_000)


# ------------------------------------------------------------------------ argument types

def _count(text):
    """A parameter count such as ``4000000``, ``4_000_000`` or ``4e6``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e7, got {text!r}") from None
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def _many(text):
    """``COUNTxSIZE``, e.g. ``10000x1000``."""
    try:
        count, size = (_count(x) for x in text.lower().split("x"))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected COUNTxSIZE such as 10000x1000, got {text!r}")
    return count, size


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _batch_size(text):
    if text.strip() == "0":
        return 0
    return _positive_int(text)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _widths(text):
    """Comma-separated hidden layer widths (``64,32``); empty for none."""
    widths = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            width = int(part)
        except ValueError:
            width = 0
        if width < 1:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers >= 1 such as 64,32, got {text!r}")
        widths.append(width)
    return widths


def _data_source(text):
    """``digits`` or an existing directory."""
    if text == "digits" or os.path.isdir(text):
        return text
    if os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text} is not a directory; give 'digits' or a "
                                         "directory of MNIST IDX files")
    raise argparse.ArgumentTypeError(f"no such directory: {text}; give 'digits' or a directory "
                                     "of MNIST IDX files")


def _save_path(text):
    """A file path whose directory exists."""
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"no such directory: {directory}")
    return text


def _existing_file(text):
    """A path to an existing file."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def _figure_formats(text):
    """Comma-separated figure formats from png, svg."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    if not formats or set(formats) - {"png", "svg"}:
        raise argparse.ArgumentTypeError(f"expected png, svg or png,svg, got {text!r}")
    return ",".join(formats)


def check_backends(parser, requested):
    """Ends with a usage error if a backend in ``requested`` cannot run here."""
    status = backend_status()
    for name in requested or ():
        if status[name] != "available":
            parser.error(f"--backend {name}: not available here: {status[name]}")


# ------------------------------------------------------------------------ output

def _print_backends():
    print(f"fastopt {__version__}, Python {platform.python_version()}, {platform.machine()}, "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}"
          " CPUs usable")
    print("backends (host arrays and models use the first available of cpu, c, numpy):")
    for name, status in backend_status().items():
        print(f"  {name:<6} {status}")


def print_selfcheck(rows, detailed=False):
    """The self-check as a table: a row per optimizer, ``ok`` or ``FAIL`` per backend (both
    dtypes); ``detailed``: a row per optimizer, backend and dtype with its largest error."""
    failed = [r for r in rows if not r[-1]]
    if detailed:
        print(f"{'optimizer':<10}{'backend':<9}{'dtype':<9}{'max rel err':>13}  result")
        for name, backend, dtype, err, ok in rows:
            print(f"{name:<10}{backend:<9}{dtype:<9}{err:>13.2e}  {'ok' if ok else 'FAIL'}")
    else:
        backends = list(dict.fromkeys(r[1] for r in rows))
        names = list(dict.fromkeys(r[0] for r in rows))
        print(f"{'optimizer':<10}" + "".join(f"{b:>8}" for b in backends))
        for name in names:
            cells = []
            for backend in backends:
                mine = [r for r in rows if r[0] == name and r[1] == backend]
                cells.append("ok" if all(r[-1] for r in mine) else "FAIL")
            print(f"{name:<10}" + "".join(f"{c:>8}" for c in cells))
    worst = {}
    for _, _, dtype, err, _ in rows:
        worst[dtype] = max(err, worst.get(dtype, 0.0))
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed" + (
        "; largest relative error " + ", ".join(f"{e:.1e} in {d}" for d, e in worst.items())
        if worst else ""))
    for name, backend, dtype, err, _ in failed:
        print(f"  FAILED: {name} on {backend} in {dtype}: relative error {err:.2e}")


def cmd_selfcheck(detailed=True):
    print("\nself-check: each optimizer, 3 steps of 1,031 parameters in float32 and float64, "
          "against the numpy reference")
    rows = selfcheck.run()
    if not rows:
        print("no compiled backend is available: nothing to check against the reference")
        return 0
    print_selfcheck(rows, detailed)
    return 1 if any(not r[-1] for r in rows) else 0


def _progress(item):
    if isinstance(item, str):
        print(f"  ... {item}", file=sys.stderr, flush=True)
    elif sys.stderr.isatty():
        print(f"\r  ... {item.optimizer} {item.backend} {item.dtype} n={item.n:,}".ljust(70),
              end="", file=sys.stderr, flush=True)


def cmd_bench(args, parser):
    from fastopt import bench

    sizes = args.size or (bench.FULL_SIZES if args.full else [4_000_000])
    dtypes = args.dtype or (["float32", "float64"] if args.full else ["float32"])
    sections = args.sections.split(",") if args.sections else bench.DEFAULT_SECTIONS
    unknown = set(sections) - set(bench.SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}; choose from "
                     f"{','.join(bench.SECTIONS)}")
    check_backends(parser, args.backend)
    _print_backends()
    print(f"\nbenchmark: sizes {', '.join(f'{n:,}' for n in sizes)}; {', '.join(dtypes)}; "
          f"sections {','.join(sections)}; median of {args.repeat} warmed-up repeats per case")
    report = bench.run_all(sizes, [np.dtype(d) for d in dtypes], args.backend, args.repeat,
                           peers=() if args.no_peers else bench.PEERS,
                           sections=sections, many=args.many or bench.MANY, progress=_progress,
                           max_s=args.max_time, dynamics_small=args.dynamics_small)
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


def cmd_train(args, parser):
    """``fastopt train``: trains an MLP (default: the embedded digits), per-epoch table."""
    from fastopt._core.dispatch import BackendUnavailableError
    from fastopt.nn.train import prepare_cli, run_cli

    check_backends(parser, [args.backend] if args.backend else [])
    try:
        prepared = prepare_cli(args)
    except (ValueError, TypeError, OSError, BackendUnavailableError) as exc:
        parser.error(str(exc))
    _print_backends()
    return run_cli(args, *prepared)


def cmd_landscape(args, parser):
    """``fastopt landscape``: trains (or loads) an MLP, runs the landscape experiments, writes the
    report folder."""
    from fastopt._core.dispatch import BackendUnavailableError
    from fastopt.landscape.command import prepare_cli, run_cli

    check_backends(parser, [args.backend] if args.backend else [])
    try:
        from fastopt.landscape.plots import pyplot

        pyplot()
        prepared = prepare_cli(args)
    except (ValueError, TypeError, OSError, ImportError, BackendUnavailableError) as exc:
        parser.error(str(exc))
    return run_cli(args, prepared)


def cmd_main():
    """The main job: self-check, the short benchmark, the digits table."""
    from fastopt import bench
    from fastopt.nn.train import compare_optimizers, digits_backends

    start = time.perf_counter()
    status = cmd_selfcheck(detailed=False)

    print(f"\nspeed: one float32 step, bound to its arrays (fastopt.functional.bind), at "
          f"{' and '.join(f'{n:,}' for n in MAIN_SIZES)} parameters, each case timed in turn "
          "with its yardstick and peers, medians over the rounds")
    compiled = [b for b in available_backends() if b != "numpy"] or ["numpy"]
    report = bench.run_all(MAIN_SIZES, backends=compiled, repeat=5, sections=("table",),
                           progress=_progress, max_s=1.0, min_sample_s=0.005,
                           yardsticks=False)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(bench.format_main(report))
    print("the full benchmark: fastopt bench --full")

    backends = digits_backends()
    print(f"\ntraining: the embedded 8x8 digits, an MLP 64-64-10 (relu, He init), 20 epochs of "
          f"batch 32, each optimizer with its default learning rate, on {', '.join(backends)}")
    print(f"{'optimizer':<10}{'backend':<9}{'lr':>8}{'final loss':>12}{'test accuracy':>15}"
          f"{'steps/s':>10}")
    for name, backend, lr, loss, accuracy, rate in compare_optimizers(backends=backends):
        print(f"{name:<10}{backend:<9}{lr:>8g}{loss:>12.4f}{accuracy:>15.2%}{rate:>10,.0f}")
    print(f"\ndone in {time.perf_counter() - start:.0f} s"
          + ("" if status == 0 else "; the self-check FAILED (see above)"))
    return status


# ------------------------------------------------------------------------ the parser

def make_parser():
    """The ``fastopt`` parser and its subcommands' parsers, by name."""
    from fastopt import bench
    from fastopt.nn.train import add_cli_arguments

    plain = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="fastopt", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=plain)
    parser.add_argument("--version", action="version", version=f"fastopt {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND",
                                description="with no command: the main job (all)")
    parsers = {"main": sub.add_parser(
        "all", help="self-check, short benchmark, digits training table (~1 min)",
        description="The main job: the self-check of every optimizer on every backend, a short "
                    "benchmark, and the digits training table.")}
    parsers["selfcheck"] = sub.add_parser(
        "selfcheck", help="every optimizer on every backend against the reference",
        description="Every optimizer on every available backend against the numpy reference "
                    "(3 steps of 1,031 parameters, float32 and float64). Exit status 1 if any "
                    "differs.")
    b = sub.add_parser("bench", help="time the steps against memory bandwidth and the peers",
                       description="Times every optimizer configuration on every backend "
                       "against a kernel moving the same bytes and against the installed peers "
                       "(numpy as a user writes it, torch.optim), then call overhead, many small "
                       "tensors, the safe default (the non-finite check and clipping against "
                       "the plain step, quiet and with one core busy), thread scaling and "
                       "start-up.")
    parsers["bench"] = b
    b.add_argument("--size", type=_count, action="append",
                   help="parameters per step, e.g. 1e7 (repeatable; default 4e6, or 1e3 ... 1e8 "
                        "with --full)")
    b.add_argument("--dtype", choices=["float32", "float64"], action="append",
                   help="repeatable; default float32, or both with --full")
    b.add_argument("--repeat", type=_positive_int, default=10, help="timed rounds per case")
    b.add_argument("--backend", action="append", choices=BACKENDS,
                   help="backend to time (repeatable; default: every available one)")
    b.add_argument("--no-peers", action="store_true",
                   help="leave out numpy-as-a-user-writes-it and torch.optim")
    b.add_argument("--sections", metavar="LIST",
                   help=f"comma-separated, from {','.join(bench.SECTIONS)} (default: "
                        f"{','.join(bench.DEFAULT_SECTIONS)})")
    b.add_argument("--many", type=_many, action="append", metavar="COUNTxSIZE",
                   help="a many-small-tensors case, repeatable (default 10000x1000 and "
                        "100000x100)")
    b.add_argument("--max-time", type=_positive_float, default=10.0, metavar="S",
                   help="stop repeating a case after about S seconds (at least 3 rounds)")
    b.add_argument("--full", action="store_true",
                   help="the full run: sizes 1e3 ... 1e8, float32 and float64")
    b.add_argument("--dynamics-small", action="store_true",
                   help="run the dynamics section at toy sizes (to check it runs)")
    b.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    b.add_argument("--targets", action="store_true",
                   help="also read the run against the project's planning targets")
    parsers["train"] = sub.add_parser(
        "train", help="train an MLP and report its test accuracy",
        description="Trains an MLP on the embedded digits (default) or on MNIST IDX files and "
                    "prints a table per epoch, then the test accuracy.")
    add_cli_arguments(parsers["train"], types={
        "positive_int": _positive_int, "batch_size": _batch_size,
        "positive_float": _positive_float, "widths": _widths, "data": _data_source,
        "save": _save_path})
    parsers["dynamics"] = sub.add_parser(
        "dynamics", help="optimizer zoo, wide networks, sharpness, gradient noise: plots",
        description="Runs one training-dynamics experiment on the embedded digits (or 2-D test "
                    "functions) and writes its arrays (.npz) and plots (.png) to a folder.")
    from fastopt.dynamics.cli import add_cli_arguments as add_dynamics_arguments

    add_dynamics_arguments(parsers["dynamics"], types={
        "positive_int": _positive_int, "positive_float": _positive_float, "widths": _widths})
    parsers["landscape"] = sub.add_parser(
        "landscape", help="loss-landscape experiments of a trained MLP, as a report folder",
        description="Trains an MLP on the embedded digits (or loads one with --load) while "
                    "recording its iterates, then writes a folder with the linear interpolation, "
                    "the alpha/beta projection of the path, filter-normalized line and planes, "
                    "the scaled last layer and Safran & Shamir's monotone path: arrays (.npz), "
                    "figures (PNG, SVG) and an index.html.")
    from fastopt.landscape.command import add_cli_arguments as add_landscape_arguments

    add_landscape_arguments(parsers["landscape"], types={
        "positive_int": _positive_int, "batch_size": _batch_size,
        "positive_float": _positive_float, "widths": _widths, "data": _data_source,
        "existing_file": _existing_file, "formats": _figure_formats})
    return parser, parsers


COMMANDS = ("all", "selfcheck", "bench", "train", "dynamics", "landscape")


def main(argv=None):
    """Runs the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, parsers = make_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["all", *argv]  # the main job
    elif not argv[0].startswith("-") and argv[0] not in COMMANDS:
        parser.error(f"unknown command {argv[0]!r}; the commands are "
                     f"{', '.join(COMMANDS[1:])} (none: the main job)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "all":
        parsers["main"].error(f"unrecognized arguments: {' '.join(extra)} (the main job takes "
                              "none; 'fastopt bench' takes the benchmark's options)")
    elif extra:
        parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "all":
        _print_backends()
        return cmd_main()
    if args.command == "selfcheck":
        _print_backends()
        return cmd_selfcheck()
    if args.command == "bench":
        return cmd_bench(args, parsers["bench"])
    if args.command == "dynamics":
        from fastopt.dynamics.cli import run_cli as run_dynamics

        return run_dynamics(args, parsers["dynamics"])
    if args.command == "landscape":
        return cmd_landscape(args, parsers["landscape"])
    return cmd_train(args, parsers["train"])


if __name__ == "__main__":
    sys.exit(main())
