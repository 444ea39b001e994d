"""The ``fastopt`` command: usage errors (exit status 2, a usage line, no traceback), help and
version, the main job's wiring and report, and the reasons a backend is unavailable."""

import sys

import numpy as np
import pytest

import fastopt
from fastopt import cli
from fastopt._core import dispatch as _dispatch
from fastopt.bench import report as _report
from fastopt.bench.cases import Result
from fastopt.optim.algorithms import ALGORITHMS
from conftest import run_cli


def assert_usage_error(capsys, argv, *words):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2, (argv, status, out, err)
    assert err.startswith("usage: fastopt"), err
    assert "Traceback" not in err + out
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture
def unavailable_c(monkeypatch):
    """The ``c`` backend unavailable, whatever this machine has."""
    monkeypatch.setitem(_dispatch._status, "c", "the C extension failed to build: no compiler")


@pytest.mark.parametrize("argv,words", [
    (["train", "--data", "/nonexistent"], ["--data", "no such directory: /nonexistent"]),
    (["train", "--epochs", "0"], ["--epochs", ">= 1", "'0'"]),
    (["train", "--epochs", "two"], ["--epochs", "'two'"]),
    (["train", "--lr", "-1"], ["--lr", "> 0", "'-1'"]),
    (["train", "--lr", "nan"], ["--lr", "finite"]),
    (["train", "--widths", "64,abc"], ["--widths", "'64,abc'"]),
    (["train", "--init", "foo"], ["--init", "'foo'", "he_normal"]),
    (["train", "--optimizer", "adamx"], ["--optimizer", "'adamx'"]),
    (["train", "--batch-size", "-3"], ["--batch-size"]),
    (["train", "--max-grad-norm", "0"], ["--max-grad-norm"]),
    (["train", "--save", "/nonexistent/model.npz"], ["--save", "no such directory"]),
    (["bench", "--sections", "table,nope"], ["--sections", "unknown nope"]),
    (["bench", "--size", "0"], ["--size"]),
    (["bench", "--repeat", "0"], ["--repeat"]),
    (["frobnicate"], ["unknown command 'frobnicate'", "selfcheck, bench, train"]),
    (["--size", "1e4"], ["unrecognized arguments: --size 1e4", "fastopt bench"]),
    (["train", "--nope"], ["unrecognized arguments: --nope"]),
])
def test_bad_command_lines_are_usage_errors(capsys, argv, words):
    assert_usage_error(capsys, argv, *words)


def test_a_file_given_as_data_directory(capsys, tmp_path):
    path = tmp_path / "images.idx"
    path.write_bytes(b"")
    assert_usage_error(capsys, ["train", "--data", str(path)], "is not a directory")


def test_an_empty_data_directory(capsys, tmp_path):
    assert_usage_error(capsys, ["train", "--data", str(tmp_path), "--backend", "numpy"],
                       str(tmp_path), "train-images-idx3-ubyte")


@pytest.mark.usefixtures("unavailable_c")
@pytest.mark.parametrize("command", [["train"], ["bench", "--sections", "table"]])
def test_an_unavailable_backend_is_a_usage_error(capsys, command):
    assert_usage_error(capsys, [*command, "--backend", "c"],
                       "--backend c: not available here: the C extension failed to build")


def test_version(capsys):
    status, out, _ = run_cli(capsys, "--version")
    assert status == 0 and out.strip() == f"fastopt {fastopt.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["bench", "--help"],
                                  ["selfcheck", "--help"]])
def test_help_is_plain_text_and_lists_the_commands(capsys, argv):
    status, out, _ = run_cli(capsys, *argv)
    assert status == 0
    for markup in ("``", ":func:", ":class:", ":mod:", ":data:"):
        assert markup not in out, markup
    if argv == ["--help"]:
        for command in ("selfcheck", "bench", "train", "main job"):
            assert command in out
        assert "cpu, c, numpy" in out  # the default backend rule


def test_train_takes_every_optimizer_of_the_table():
    parser, parsers = cli.make_parser()
    for name in [*ALGORITHMS, "momentum", "nesterov"]:
        assert parser.parse_args(["train", "--optimizer", name]).optimizer == name


def test_train_runs_and_reports_on_the_default_backend(capsys):
    status, out, _ = run_cli(capsys, "train", "--epochs", "1", "--widths", "8,8",
                             "--batch-size", "0", "--no-progress", "--optimizer", "lion")
    assert status == 0 and "test accuracy:" in out
    assert f"backend={_dispatch.choose({}, None)!r}" in out


def test_the_mlp_and_its_optimizer_default_to_the_same_backend(monkeypatch):
    monkeypatch.delenv("FASTOPT_BACKEND", raising=False)
    model = fastopt.MLP([4, 3, 2])
    assert model.backend == fastopt.Adam([model.params]).backend
    assert model.backend == _dispatch.choose({"param": np.ones(2)})


# ------------------------------------------------------------------------------ the main job

def _result(optimizer, backend, n, seconds, kind="fastopt", **ratios):
    spread = {k: v[1] for k, v in ratios.items()}
    return Result(optimizer, backend, "float32", n, seconds, 12 * n, kind=kind, written=1,
                  min_s=seconds, paired={k: v[0] for k, v in ratios.items()}, spread=spread)


def _fake_report(results, skipped=(), load=0.0):
    return _report.Report(machine={"cpus_usable": 2}, results=list(results),
                          skipped=list(skipped),
                          settings={"load_average_at_start": (load, load, load)})


def test_main_job_wiring_and_words(capsys, monkeypatch):
    from fastopt import bench, selfcheck
    from fastopt.nn import train

    rows = [(name, "cpu", dtype, 1e-7, True) for dtype in ("float32", "float64")
            for name in ALGORITHMS]
    monkeypatch.setattr(selfcheck, "run", lambda: rows)
    results = [_result("adam", "cpu", n, 1e-4, roofline=(0.9, (0.88, 0.92)),
                       **{"numpy-user": (3.0, (2.9, 3.1))}) for n in cli.MAIN_SIZES]
    results += [_result("adam", "numpy-user", n, 3e-4, kind="peer") for n in cli.MAIN_SIZES]
    skipped = [(f"adam {p} float32 n={n:,}", "torch not installed (No module named 'torch')")
               for p in ("torch", "torch-foreach", "torch-fused") for n in cli.MAIN_SIZES]
    monkeypatch.setattr(bench, "run_all", lambda *a, **k: _fake_report(results, skipped))
    monkeypatch.setattr(train, "compare_optimizers", lambda backends: [
        ("adam", "cpu", 3e-3, 0.03, 0.97, 2000.0)])
    status, out, err = run_cli(capsys)
    assert status == 0, err
    assert f"{len(rows)} of {len(rows)} checks passed" in out
    for name in ALGORITHMS:
        assert f"\n{name:<10}" in out
    assert out.count("torch is not installed") == 1
    assert "MISSED" not in out and "target" not in out
    assert "fastopt bench --full" in out and "97.00%" in out


def test_main_job_exit_status_when_the_self_check_fails(capsys, monkeypatch):
    from fastopt import bench, selfcheck
    from fastopt.nn import train

    monkeypatch.setattr(selfcheck, "run", lambda: [("adam", "cpu", "float32", 0.5, False)])
    monkeypatch.setattr(bench, "run_all", lambda *a, **k: _fake_report([]))
    monkeypatch.setattr(train, "compare_optimizers", lambda backends: [])
    status, out, _ = run_cli(capsys)
    assert status == 1 and "FAILED: adam on cpu in float32" in out


def test_figures_out_of_bounds_or_noisy_are_marked():
    results = [_result("adam", "cpu", 10_000, 1e-4, roofline=(1.38, (1.3, 1.4)),
                       torch=(5.0, (2.0, 9.0))),
               _result("sgd", "cpu", 10_000, 1e-4, roofline=(0.9, (0.89, 0.91)),
                       torch=(4.0, (3.9, 4.1))),
               _result("adam", "torch", 10_000, 5e-4, kind="peer"),
               _result("sgd", "torch", 10_000, 4e-4, kind="peer")]
    text = _report.format_main(_fake_report(results, load=3.5))
    adam = next(line for line in text.splitlines() if line.startswith("adam"))
    sgd = next(line for line in text.splitlines() if line.startswith("sgd"))
    assert "1.38" not in adam and "noisy" in adam and "5.00?" in adam
    assert "?" not in sgd and "0.90" in sgd and "4.00" in sgd
    assert "noisy:" in text and "?:" in text
    assert "load average 3.5 on 2 CPUs" in text


def test_full_report_marks_contradicting_overhead_and_thread_figures():
    stages = {"resolve (dispatch + array checks)": 2.0, "  of which choose (dispatch)": 3.0,
              "backend launcher (wrapper + kernel)": 5.0, "  of which compiled kernel alone": 4.0}
    report = _fake_report([])
    report.machine["load_average"] = (3.0, 3.0, 3.0)
    report.settings["timing"] = "in turn"
    report.overhead = {"cpu": {"optimizer": "adam", "n": 1000, "dtype": "float32",
                               "functional_us": 9.0, "bound_us": 4.0, "class_us": 10.0,
                               "class_no_check_us": 11.0, "stages_us": stages,
                               "profile_class": []}}
    report.threads = [
        {"backend": "cpu", "optimizer": "adam", "n": 10 ** 7, "threads": 1,
         "step_gb_per_s": 10.0, "same_traffic_gb_per_s": 11.0, "ratio": 0.91,
         "spread": (0.9, 0.92)},
        {"backend": "cpu", "optimizer": "adam", "n": 10 ** 7, "threads": 2,
         "step_gb_per_s": 7.0, "same_traffic_gb_per_s": 12.0, "ratio": 0.6,
         "spread": (0.58, 0.62)}]
    text = _report.format_report(report)
    assert "the non-finite check's cost below the noise" in text
    assert "3.00? us" in text and "4.00 us" in text  # only the part larger than its whole
    assert "a part timed larger than its whole" in text
    two = next(line for line in text.splitlines() if "2 threads" in line)
    one = next(line for line in text.splitlines() if "1 threads" in line)
    assert two.endswith("?") and not one.endswith("?")
    assert "other work was competing for the cores" in text


@pytest.mark.skipif("cpu" not in fastopt.available_backends(), reason="numba unusable")
def test_selfcheck_covers_every_optimizer_of_the_table():
    from fastopt import selfcheck

    rows = selfcheck.run(n=7, steps=2, backends=["cpu"])
    assert [r[0] for r in rows if r[2] == "float32"] == list(ALGORITHMS)
    assert all(r[-1] for r in rows)


# ------------------------------------------------------------------- why a backend is missing

@pytest.fixture
def fresh_probes(monkeypatch):
    """Backend probes forgotten for the test (and restored after it)."""
    monkeypatch.setattr(_dispatch, "_status", {})
    monkeypatch.setattr(_dispatch, "_modules", {})


@pytest.mark.usefixtures("fresh_probes")
def test_missing_numba_cuda_says_how_to_install_it(monkeypatch):
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.setattr(_dispatch, "_numba_cuda_installed", lambda: False)
    assert fastopt.backend_status()["cuda"] == (
        "numba-cuda is not installed (pip install fastopt[cuda])")


@pytest.mark.usefixtures("fresh_probes")
def test_no_cuda_device_is_explained(monkeypatch):
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.setattr(_dispatch, "_numba_cuda_installed", lambda: True)
    assert fastopt.backend_status()["cuda"] == "numba-cuda found no usable CUDA device or driver"
    assert "cuda" not in fastopt.available_backends()
    with pytest.raises(fastopt.BackendUnavailableError,
                       match="backend 'cuda' is not available: numba-cuda found no usable"):
        _dispatch.kernels("cuda")


@pytest.mark.usefixtures("fresh_probes")
def test_a_failed_c_build_shows_the_compilers_reason(monkeypatch, tmp_path):
    record = tmp_path / "BUILD_FAILED.txt"
    record.write_text("gcc: error: unrecognized command-line option '-fbogus'\n"
                      "CompileError: command 'gcc' failed\n")
    monkeypatch.setattr(_dispatch, "C_BUILD_FAILURE", str(record))
    monkeypatch.setitem(sys.modules, "fastopt.backends.c._fastopt_c", None)
    for module in [m for m in sys.modules if m.startswith("fastopt.backends.c.")
                   and m != "fastopt.backends.c._fastopt_c"]:
        monkeypatch.delitem(sys.modules, module)
    status = fastopt.backend_status()["c"]
    assert status.startswith("the C extension failed to build at install time: gcc: error: "
                             "unrecognized command-line option '-fbogus'"), status
    assert str(record) in status


@pytest.mark.usefixtures("fresh_probes")
def test_an_unbuilt_c_extension_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(_dispatch, "C_BUILD_FAILURE", str(tmp_path / "none.txt"))
    monkeypatch.setitem(sys.modules, "fastopt.backends.c._fastopt_c", None)
    for module in [m for m in sys.modules if m.startswith("fastopt.backends.c.")
                   and m != "fastopt.backends.c._fastopt_c"]:
        monkeypatch.delitem(sys.modules, module)
    status = fastopt.backend_status()["c"]
    assert "fastopt.backends.c._fastopt_c" in status and "C compiler" in status
