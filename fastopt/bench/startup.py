"""Start-up: ``import fastopt`` + the first Adam step in a new process, with the on-disk numba
cache warm and with an empty one (the first-ever compile)."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

_STARTUP_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastopt
t1 = time.perf_counter()
# one small and one large tensor: the first step loads (or compiles) both kernel variants
params = [np.zeros(1000, np.float32), np.zeros(1 << 16, np.float32)]
opt = fastopt.Adam(params)
opt.step([np.ones_like(p) for p in params])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_step_s": t2 - t1, "backend": opt.backend}))
"""


def _run_startup(env):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"start-up script failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    result["total_s"] = result["import_s"] + result["first_step_s"]
    return result


def startup(runs=3, cold=True):
    """``import fastopt`` + the first Adam step in a new process: median of ``runs`` with the
    on-disk numba cache warm (after one run that warms it), and once with an empty cache (the
    first-ever compile, in a temporary ``NUMBA_CACHE_DIR``). ``total_s`` is import + first step
    measured inside the process; ``process_s`` adds the interpreter's own start."""
    env = dict(os.environ)
    _run_startup(env)  # warms the cache
    warm = [_run_startup(env) for _ in range(runs)]
    out = {"warm": {k: statistics.median(r[k] for r in warm)
                    for k in ("import_s", "first_step_s", "total_s", "process_s")},
           "backend": warm[0]["backend"], "runs": runs}
    if cold:
        with tempfile.TemporaryDirectory() as cache:
            out["cold"] = _run_startup({**env, "NUMBA_CACHE_DIR": cache})
    return out
