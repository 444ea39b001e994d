"""Threads: set_num_threads/get_num_threads, the environment variables, results that do not depend
on the thread count, and large steps that really run on several threads.

Every elementwise step is split statically over the threads, so each element is computed by the
same instructions whatever the split: results must be bit-identical for 1 and for all threads. The
sizes are above the parallel threshold (32768) and odd, so that the split leaves ragged tails.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cases import LR, OPTIONS, case_ids, new_state, problem
from conftest import AVAILABLE

import fastopt
from fastopt import functional
from fastopt._core.threads import get_num_threads, max_num_threads, set_num_threads

HOST = [b for b in ("cpu", "c") if b in AVAILABLE]
N = 40_009  # above the parallel threshold, odd
MAX = max_num_threads()

needs_threads = pytest.mark.skipif(MAX < 2, reason="numba's pool has one thread "
                                   "(NUMBA_NUM_THREADS=1 or a single CPU)")


@pytest.fixture
def restore_threads():
    before = get_num_threads()
    yield
    set_num_threads(before)


def test_set_num_threads_sets_both_backends(restore_threads):
    for n in range(1, MAX + 1):
        set_num_threads(n)
        for backend in HOST:
            assert get_num_threads(backend) == n
    assert get_num_threads("numpy") == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_set_num_threads_rejects_bad_values_and_changes_nothing(bad, restore_threads):
    set_num_threads(1)
    with pytest.raises(ValueError, match="n: expected"):
        set_num_threads(bad)
    assert [get_num_threads(b) for b in HOST] == [1] * len(HOST)


def test_set_num_threads_rejects_more_than_the_pool(restore_threads):
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        set_num_threads(MAX + 1)


def _steps(backend, name, options, dtype, threads, steps=3):
    set_num_threads(threads)
    param, grads = problem(N, dtype, steps, seed=7)
    state = new_state(name, options, param)
    step = getattr(functional, name)
    for t, grad in enumerate(grads, start=1):
        step(param, grad, *state, step=t, lr=LR[name], backend=backend, **options)
    return [param, *state]


@needs_threads
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("name,options", [(n, o) for n in OPTIONS for o in OPTIONS[n]],
                         ids=[f"{n}-{i}" for n in OPTIONS for i in case_ids(n)])
def test_steps_are_bit_identical_for_any_thread_count(name, options, backend, dtype,
                                                      restore_threads):
    one = _steps(backend, name, options, dtype, threads=1)
    for threads in range(2, MAX + 1):
        many = _steps(backend, name, options, dtype, threads)
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)


@needs_threads
@pytest.mark.parametrize("backend", HOST)
def test_grad_norm_is_bit_identical_for_any_thread_count(backend, restore_threads):
    grads = [np.random.default_rng(3).standard_normal(n).astype(np.float32)
             for n in (1, 257, N, 1 << 20)]
    set_num_threads(1)
    one = functional.grad_norm(grads, backend=backend)
    for threads in range(2, MAX + 1):
        set_num_threads(threads)
        assert functional.grad_norm(grads, backend=backend) == one


def _child(code, **env):
    """Runs ``code`` in a new interpreter with ``env`` added; returns its last stdout line as
    JSON."""
    full = {**os.environ, **env}
    for key in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        if key not in env:
            full.pop(key, None)
    done = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


_REPORT_THREADS = """
import json
from fastopt._core.threads import get_num_threads, max_num_threads
from fastopt import available_backends
print(json.dumps({b: get_num_threads(b) for b in ("cpu", "c") if b in available_backends()}
                 | {"max": max_num_threads()}))
"""


def test_threads_follow_the_environment():
    got = _child(_REPORT_THREADS, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    assert got == {**{b: 1 for b in HOST}, "max": 1}
    if "cpu" in HOST:  # numba's pool is NUMBA_NUM_THREADS
        assert _child(_REPORT_THREADS, NUMBA_NUM_THREADS="1")["cpu"] == 1
    if "c" in HOST:  # OpenMP reads OMP_NUM_THREADS (checked before numba's pool starts: numba's
        # OpenMP threading layer shares libgomp and sets the count to NUMBA_NUM_THREADS)
        code = ("import json; from fastopt._core.threads import get_num_threads; "
                "print(json.dumps(get_num_threads('c')))")
        assert _child(code, OMP_NUM_THREADS="1") == 1


# Large steps on all threads after a small step (so that the small step's kernel variant is
# compiled and cached first); then the CPU time each thread of the process spent in them, from
# /proc (scheduler ticks): how many threads really worked, whatever the load of the machine.
_THREADS_AT_WORK = """
import glob, json, time
import numpy as np
import fastopt

def cpu_ticks():
    ticks = {}
    for path in glob.glob("/proc/self/task/*/stat"):
        try:
            fields = open(path).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[path] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks

small = [np.ones(1000, np.float32) for _ in range(4)]
STEP(small, 1)
big = [np.ones(4_000_000, np.float32) for _ in range(4)]
STEP(big, 1)
before, start, t = cpu_ticks(), time.perf_counter(), 2
while time.perf_counter() - start < 2.0:
    STEP(big, t)
    t += 1
after = cpu_ticks()
deltas = sorted((after[k] - before.get(k, 0) for k in after), reverse=True)
print(json.dumps(sum(d >= 0.3 * deltas[0] for d in deltas if d > 0)))
"""

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/task"),
                                reason="counts busy threads through Linux's /proc")


def _threads_at_work(step_code, tmp_path):
    code = _THREADS_AT_WORK.replace("STEP(", "step(")
    code = code.replace("import fastopt\n", "import fastopt\n" + step_code + "\n", 1)
    return _child(code, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_NUM_THREADS="2",
                  OMP_NUM_THREADS="2")


@needs_threads
@needs_proc
@pytest.mark.parametrize("backend", ["cpu", "c"])
def test_large_steps_use_several_threads(backend, tmp_path):
    if backend not in HOST:
        pytest.skip(f"backend {backend!r} not available")
    step = ("def step(a, t):\n"
            f"    fastopt.functional.adam(*a, step=t, backend={backend!r})")
    assert _threads_at_work(step, tmp_path) >= 2


@needs_threads
@needs_proc
@pytest.mark.parametrize("backend", HOST)
def test_same_traffic_kernels_use_several_threads(backend, tmp_path):
    step = ("from fastopt.bench.timing import roofline_kernels\n"
            f"kernels = roofline_kernels({backend!r})\n"
            "def step(a, t):\n"
            "    kernels.same_traffic(a[:3], a[3], 0.5)")
    assert _threads_at_work(step, tmp_path) >= 2


def test_exported_from_fastopt_when_wired():
    if not hasattr(fastopt, "set_num_threads"):
        pytest.skip("fastopt/__init__.py does not export set_num_threads yet")
    assert fastopt.set_num_threads is set_num_threads
    assert fastopt.get_num_threads is get_num_threads
