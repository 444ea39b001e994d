"""The C library: libfastopt and its headers installed in the package, the example program
examples/c/adam.c compiled with the system's compiler against them and run, its result against
the numpy reference; the ABI version; the vector variants chosen at run time, each giving the
same bits."""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

import fastopt
from fastopt import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "c", "adam.c")


@pytest.fixture(scope="module")
def library():
    try:
        return ctypes.CDLL(fastopt.get_library())
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_the_library_and_header_are_installed(library):
    assert os.path.exists(os.path.join(fastopt.get_include(), "fastopt.h"))
    assert os.path.exists(os.path.join(fastopt.get_include(), "optim_table.h"))
    assert library.fastopt_abi_version() == 1
    library.fastopt_vector_isa.restype = ctypes.c_char_p
    assert library.fastopt_vector_isa() in (b"generic", b"avx2", b"avx512")
    assert hasattr(library, "fastopt_adam_f32") and hasattr(library, "fastopt_lamb_f64")
    # the variants behind the public names are not exported
    assert not hasattr(library, "fastopt_adam_f32_generic")


def reference_adamw(n, steps):
    """examples/c/adam.c's run, through fastopt.reference in float32."""
    f32 = np.float32
    i = np.arange(n)
    w = (i % 13).astype(f32) * f32(0.25) - f32(1.5)
    target = (i % 5).astype(f32) * f32(0.5)
    m, v = np.zeros(n, f32), np.zeros(n, f32)
    lr, beta1, beta2 = 1e-2, 0.9, 0.999
    for t in range(1, steps + 1):
        w, m, v, _ = reference.adam(w, w - target, m, v, None, f32(lr), f32(beta1), f32(beta2),
                                    f32(1e-8), f32(1e-2), False, False, True,
                                    f32(lr / (1 - beta1 ** t)), f32(np.sqrt(1 - beta2 ** t)),
                                    f32(1))
    return w


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")
def test_the_c_example_links_the_library_and_matches_the_reference(library, tmp_path):
    program = tmp_path / "adam"
    lib = fastopt.get_library()
    subprocess.run(["cc", "-O2", "-std=c99", "-Wall", "-Werror", EXAMPLE,
                    "-I", fastopt.get_include(), lib, f"-Wl,-rpath,{os.path.dirname(lib)}",
                    "-lm", "-o", str(program)], check=True, capture_output=True)
    n, steps = 70_001, 30  # above the parallel threshold, with a vector tail
    run = subprocess.run([str(program), str(n), str(steps)], check=True, capture_output=True,
                         text=True)
    result = np.array(run.stdout.split(), dtype=np.float32)
    expected = reference_adamw(n, steps)
    assert np.array_equal(result, expected)          # the same bits
    assert np.abs(expected - reference_adamw(n, 0)).max() > 0.1   # it did move
    assert "vector variant" in run.stderr
    usage = subprocess.run([str(program), "0"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_every_vector_variant_gives_the_same_bits():
    c = pytest.importorskip("fastopt.backends.c._fastopt_c")
    ffi, lib = c.ffi, c.lib
    before = ffi.string(lib.fastopt_vector_isa())
    rng = np.random.default_rng(0)
    n = 40_009
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    arrays.append(np.abs(rng.standard_normal(n)).astype(np.float32))
    arrays[1][5] = np.inf
    results = {}
    try:
        for name in (b"generic", b"avx2", b"avx512"):
            if lib.fastopt_set_vector_isa(name) != 0:
                continue
            a = [x.copy() for x in arrays]
            p = [ffi.from_buffer("float[]", x) for x in a]
            norm = ffi.new("double *")
            lib.fastopt_adam_with_norm_f32(n, *p, ffi.NULL, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 0, 0, 1,
                                           1e-3, 0.5, 0.5, norm)
            results[name] = (a, norm[0],
                             lib.fastopt_sum_of_squares_f64(n, ffi.from_buffer(
                                 "double[]", arrays[0].astype(np.float64))),
                             lib.fastopt_max_magnitude_bits_f32(n, p[1]))
    finally:
        assert lib.fastopt_set_vector_isa(before) == 0
    assert b"generic" in results and lib.fastopt_set_vector_isa(b"sse9") == -1
    first = results[b"generic"]
    for name, (a, norm, squares, top) in results.items():
        assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, first[0])), name
        assert (norm, squares, top) == first[1:], name
