"""The facts a benchmark result needs about the machine: CPU, cores, threads, load, versions and
the C build."""

import os
import platform

import numpy as np

from fastopt._core.dispatch import available_backends
from fastopt._core.threads import get_num_threads


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """The facts a benchmark result needs: CPU, cores, threads, load, versions, C build."""
    from fastopt import __version__

    facts = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(),
             "platform": platform.platform(), "python": platform.python_version(),
             "numpy": np.__version__, "fastopt": __version__,
             "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                "OMP_PROC_BIND", "FASTOPT_BACKEND")
                     if k in os.environ}}
    if hasattr(os, "sched_getaffinity"):
        facts["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        facts["load_average"] = os.getloadavg()
    try:
        with open("/proc/meminfo") as f:
            facts["memory_gb"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    backends = available_backends()
    facts["backends"] = backends
    if "cpu" in backends:
        import numba

        facts["numba"] = numba.__version__
        facts["threads_cpu"] = get_num_threads("cpu")
        try:
            facts["numba_threading_layer"] = numba.threading_layer()
        except ValueError:
            facts["numba_threading_layer"] = "not started yet"
    if "c" in backends:
        from fastopt.backends.c.optim import build_info

        facts["threads_c"] = get_num_threads("c")
        facts["c_build"] = build_info()
    try:
        import cffi

        facts["cffi"] = cffi.__version__
    except ImportError:
        pass
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["threads_torch"] = torch.get_num_threads()
    except ImportError:
        pass
    return facts
