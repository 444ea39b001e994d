"""The roofline kernels move the bytes they claim: each reads and writes exactly the arrays it says.

Every array gets distinct random values, so a result equal to ``w0 + s * r`` bit for bit shows that
the kernel read ``w`` and ``r`` and wrote ``w`` (in the arrays' precision, no FMA), and untouched
sentinels show it wrote nothing else. Sizes hit the vector tails (1, 257, 10_007) and the parallel
path (40_009 >= 32768).
"""

import numpy as np
import pytest
from conftest import AVAILABLE

from fastopt.bench import cases, check, many, table, timing
from fastopt.bench.cases import CONFIGS
from fastopt.bench.timing import ROOFLINE_BACKENDS

BACKENDS = [b for b in ROOFLINE_BACKENDS if b in AVAILABLE]
SIZES = [1, 257, 10_007, 40_009]
DTYPES = [np.float32, np.float64]

pytestmark = pytest.mark.skipif(not BACKENDS, reason="neither the cpu nor the c backend is here")


def _random(n, dtype, count, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("written", [1, 2, 3, 4])
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_traffic_reads_and_writes_its_arrays(backend, written, dtype, n):
    kernels = timing.roofline_kernels(backend)
    read, sentinel, *arrays = _random(n, dtype, written + 2, seed=written)
    before = [a.copy() for a in arrays]
    read_before, sentinel_before = read.copy(), sentinel.copy()
    scale = dtype(0.37)
    kernels.same_traffic(arrays, read, scale)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b + scale * read_before)  # read b and r, wrote a
    np.testing.assert_array_equal(read, read_before)                # only read
    np.testing.assert_array_equal(sentinel, sentinel_before)        # nothing else written


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_copy_and_triad(backend, dtype, n):
    kernels = timing.roofline_kernels(backend)
    a, b, c = _random(n, dtype, 3, seed=1)
    b0, c0 = b.copy(), c.copy()
    kernels.stream_copy(a, b)
    np.testing.assert_array_equal(a, b0)
    kernels.stream_triad(a, b, c, dtype(3.0))
    np.testing.assert_array_equal(a, b0 + dtype(3.0) * c0)
    np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(c, c0)
    total = kernels.stream_read(c)  # the sum, in any order: to rounding
    np.testing.assert_allclose(total, np.sum(c0, dtype=np.float64), rtol=1e-4 * max(n, 1) ** 0.5,
                               atol=1e-6 * n)
    np.testing.assert_array_equal(c, c0)


FLOAT_CONFIGS = [c for c in CONFIGS if not cases.is_quant8(c[2])]  # 8-bit: tests/test_quant8.py


@pytest.mark.parametrize("label,name,options", FLOAT_CONFIGS, ids=[c[0] for c in FLOAT_CONFIGS])
def test_same_traffic_bytes_match_the_step(label, name, options):
    """A step and its same-traffic kernel are credited with the same bytes: reads 1 + w arrays,
    writes w, where w = param + the state the step uses."""
    n, dtype = 1000, np.dtype(np.float32)
    written = cases.written_arrays(name, options)
    expected = {"sgd": 1, "sgd momentum": 2, "adagrad": 2, "rmsprop": 2, "adam": 3, "adamw": 3}
    assert written == expected[label]
    step_bytes = cases.bytes_per_step(name, options, n, dtype)
    assert step_bytes == (2 * written + 1) * n * dtype.itemsize
    results = timing.time_yardsticks(BACKENDS[0], [written], n, dtype, repeat=1, max_s=0.1)
    (roof,) = [r for r in results if r.kind == "roofline"]
    assert roof.written == written and roof.bytes_per_step == step_bytes
    streams = {r.optimizer: r.bytes_per_step for r in results if r.kind == "stream"}
    assert streams == {"stream copy": 2 * n * 4, "stream triad": 3 * n * 4}


def test_roofline_for_prefers_the_rows_own_backend():
    R = cases.Result
    roofs = [R("same-traffic w=3", b, "float32", 10, t, 280, kind="roofline", written=3)
             for b, t in (("cpu", 2.0), ("c", 1.0))]
    step = R("adam", "cpu", "float32", 10, 4.0, 280, written=3)
    peer = R("adam", "torch-fused", "float32", 10, 4.0, 280, kind="peer", written=3)
    assert table.roofline_ratio(step, roofs) == 0.5      # cpu's own kernel
    assert table.roofline_ratio(peer, roofs) == 0.25     # the fastest host kernel


def test_interleaved_samples_take_turns():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    out = timing.interleaved_samples(fns, repeat=4, warmup=1, min_sample_s=0.0)
    assert [len(v) for v in out.values()] == [4, 4]
    assert calls[-16:] == ["a", "a", "b", "b"] * 4  # an untimed call before each sample
    assert timing.paired_ratio([2.0, 6.0, 9.0], [1.0, 2.0, 3.0]) == 3.0


def test_a_configuration_pairs_each_step_with_its_yardsticks():
    backends = [b for b in ("c", "numpy") if b in AVAILABLE]
    results = table.time_configuration("sgd", "sgd", {}, 1000, np.float32, backends,
                                       peers=("numpy-user",), repeat=3, max_s=0.2)
    by_backend = {r.backend: r for r in results}
    assert by_backend["numpy-user"].kind == "peer"
    assert set(by_backend) == {*backends, "numpy-user"}
    for backend in backends:
        r = by_backend[backend]
        assert r.kind == "fastopt" and r.median_s > 0
        assert table.peer_speedup(r, "numpy-user", results) == r.paired["numpy-user"] > 0
        if "c" in backends:  # c's own kernel, or the host kernel for numpy
            assert table.roofline_ratio(r, results) == r.paired["roofline"] > 0


def test_many_tensors_pairs_each_case_with_one_tensor():
    results = many.many_tensors(count=20, size=50, backends=BACKENDS[:1], repeat=3,
                                peers=(), max_s=0.2)
    by_case = {r.backend: r for r in results}
    backend = BACKENDS[0]
    assert f"{backend} arena" in by_case and f"{backend} 1 tensor" in by_case
    assert by_case[f"{backend} arena"].paired[f"{backend} 1 tensor"] > 0
    assert f"{backend} 1 tensor" not in by_case[f"{backend} 1 tensor"].paired


def test_the_safe_default_section_reads_its_cases_in_turn():
    rows = check.safe_default([2_000], backends=BACKENDS, repeat=3, max_s=0.2, busy=True)
    (row,) = rows
    for backend in BACKENDS:
        for case in ("step, no check", "step (default: check)", "step, max_norm=1",
                     "check pass", "norm pass", "STREAM-style read"):
            assert row["median_s"][f"{backend} {case}"] > 0
        ratios = row["ratios"][backend]
        assert ratios["default / no check"] > 0 and ratios["check speed / read speed"] > 0
        assert f"{backend} step (default: check)" in row["busy_median_s"]
    text = "\n".join(check.format_safe_default(rows))
    assert "one core busy" in text and "default / no check" in text


@pytest.mark.parametrize("n", [257, 40_009])
@pytest.mark.parametrize("written", [1, 3])
def test_mixed_same_traffic_reads_and_writes_its_arrays(written, n):
    """The mixed-precision kernel reads r (16-bit), updates the float32 master and the state
    (float32 or 16-bit bits) in place and writes the model copy, nothing else."""
    roofline = pytest.importorskip("fastopt.backends.cpu.roofline")
    rng = np.random.default_rng(written)
    read = rng.integers(0, 100, n).astype(np.uint16)
    master = rng.standard_normal(n).astype(np.float32)
    state = [rng.integers(0, 1000, n).astype(np.uint16) for _ in range(written - 1)]
    out, sentinel = np.zeros(n, np.uint16), rng.standard_normal(n).astype(np.float32)
    before = [a.copy() for a in (read, master, *state, sentinel)]
    scale = np.float32(0.5)
    roofline.same_traffic_mixed([master, *state], read, out, scale)
    np.testing.assert_array_equal(master, before[1] + scale * read.astype(np.float32))
    for a, b in zip(state, before[2:]):
        np.testing.assert_array_equal(a, (b + scale * read.astype(np.float32)).astype(np.uint16))
    np.testing.assert_array_equal(out, read)
    np.testing.assert_array_equal(read, before[0])
    np.testing.assert_array_equal(sentinel, before[-1])


def test_mixed_rows_pair_each_host_step_with_the_mixed_kernel():
    backends = [b for b in ROOFLINE_BACKENDS if b in AVAILABLE]
    for config in cases.MIXED_CONFIGS:
        label, name, options, model_fmt, state_fmt, _ = config
        results = table.time_mixed(config, 1000, backends, repeat=3, max_s=0.2)
        assert {r.backend for r in results} == set(backends)
        moved = cases.mixed_bytes_per_step(name, options, 1000, model_fmt, state_fmt)
        low, state = (2 if model_fmt != "float32" else 4), (2 if state_fmt == "bfloat16" else 4)
        assert moved == 1000 * (2 * low + 2 * 4 + 2 * state * 2)  # Adam: 2 state arrays
        for r in results:
            assert r.dtype == cases.MIXED and r.optimizer == label and r.written == 3
            if "cpu" in AVAILABLE:
                assert table.roofline_ratio(r, results) == r.paired["roofline"] > 0
