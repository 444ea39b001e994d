"""Are the step kernels vectorized? Counts packed instructions in the machine code of every kernel.

    python bench/inspect_kernels.py

numba (``cpu`` backend): compiles every step and roofline kernel afresh (an empty
``NUMBA_CACHE_DIR``, since numba cannot show the code of cached functions) in a child process with
``NUMBA_DUMP_ASSEMBLY=1``, then counts, per function (the serial kernel and the ``parfor_gufunc``
that ``prange`` runs on each thread), 256-bit registers (``ymm``: AVX), and the packed square roots
and divisions (``vsqrtps``/``vdivps``, ``pd`` for float64) next to their scalar forms (``sqrtss``,
``divss``: the scalar tail or a loop left unvectorized). C (``c`` backend): the same counts over
``objdump -d`` of the extension, per ``fastopt_*`` function.
"""

import os
import re
import subprocess
import sys
import tempfile

_COMPILE_ALL = r"""
import numpy as np
from fastopt.bench.cases import CONFIGS, make_step
from fastopt.bench.timing import make_same_traffic
for dtype in (np.float32, np.float64):
    for label, name, options in CONFIGS:
        for n in (1000, 100_000):  # serial and parallel variants
            make_step(name, options, "cpu", n, dtype)()
    for w in (1, 2, 3):
        for n in (1000, 100_000):
            make_same_traffic(w, "cpu", n, dtype)()
"""

PATTERNS = {"ymm": r"\bymm\d", "xmm": r"\bxmm\d", "sqrt packed": r"\bv?sqrtp[sd]\b",
            "sqrt scalar": r"\bv?sqrts[sd]\b", "div packed": r"\bv?divp[sd]\b",
            "div scalar": r"\bv?divs[sd]\b"}


def _counts(text):
    return {k: len(re.findall(p, text)) for k, p in PATTERNS.items()}


def _row(name, counts):
    return f"  {name[:58]:<60}" + "".join(f"{counts[k]:>13}" for k in PATTERNS)


def numba_report():
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "NUMBA_DUMP_ASSEMBLY": "1"}
        out = subprocess.run([sys.executable, "-c", _COMPILE_ALL], env=env, capture_output=True,
                             text=True, timeout=900).stdout
    sections = re.split(r"-{10,}ASSEMBLY ", out)[1:]
    rows = []
    for section in sections:
        name = section.split("-", 1)[0].strip()
        if not re.match(r"(_sgd|_adagrad|_rmsprop|_adam|_update\d|_copy|_triad|__numba_parfor"
                        r"_gufunc)", name):
            continue
        rows.append(_row(name, _counts(section)))
    return rows


def c_report():
    import fastopt.backends.c._fastopt_c as ext

    try:
        out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", ext.__file__],
                             capture_output=True, text=True, timeout=120).stdout
    except OSError as exc:
        return [f"  objdump not available: {exc}"]
    rows = []
    for match in re.finditer(r"^[0-9a-f]+ <(fastopt_\w+|\w+\._omp_fn\.\d+)>:\n(.*?)(?=^\n|\Z)",
                             out, re.M | re.S):
        rows.append(_row(match.group(1), _counts(match.group(2))))
    return rows


def main():
    header = f"  {'function':<60}" + "".join(f"{k:>13}" for k in PATTERNS)
    print("numba (cpu backend): per compiled function (parfor_gufunc = a prange loop's body)")
    print(header)
    print("\n".join(numba_report()))
    print("\nC (c backend): per function of the extension (._omp_fn = an OpenMP loop's body)")
    print(header)
    print("\n".join(c_report()))


if __name__ == "__main__":
    main()
