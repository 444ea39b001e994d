"""Two builds of the C extension timed in one process, round by round: the same calls to each, in
turn, and the median of the per-round ratios (second / first).

    python bench/compare_c_extensions.py OLD.so NEW.so [N]

Each .so is a ``_fastopt_c`` extension (of any fastopt version whose C entry points have these
signatures); N defaults to 1e5. Set ``OMP_NUM_THREADS`` to fix the thread count.
"""

import importlib.util
import sys
import time

import numpy as np


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(first_path, second_path, n=1e5, rounds=30, calls=20):
    n = int(float(n))
    builds = [load("fastopt._fastopt_c", first_path),
              load("fastopt.backends.c._fastopt_c", second_path)]
    rng = np.random.default_rng(0)
    arrays = [np.abs(rng.standard_normal(n)).astype(np.float32) for _ in range(5)]

    def pointers(m, k):
        return [m.ffi.from_buffer("float[]", a) for a in arrays[:k]]

    cases = {
        "sgd": lambda m: m.lib.fastopt_sgd_f32(n, *pointers(m, 2), m.ffi.NULL, 1e-3, 0.0, 0.0,
                                               0.0, 0, 0, 0, 1.0),
        "sgd momentum": lambda m: m.lib.fastopt_sgd_f32(n, *pointers(m, 3), 1e-3, 0.0, 0.9, 0.0,
                                                        0, 0, 0, 1.0),
        "adagrad": lambda m: m.lib.fastopt_adagrad_f32(n, *pointers(m, 3), 0.0, 1e-10, 0, 1e-2,
                                                       1.0),
        "rmsprop": lambda m: m.lib.fastopt_rmsprop_f32(n, *pointers(m, 3), m.ffi.NULL, m.ffi.NULL,
                                                       1e-2, 0.99, 1e-8, 0.0, 0.0, 0, 0, 1.0),
        "adam": lambda m: m.lib.fastopt_adam_f32(n, *pointers(m, 4), m.ffi.NULL, 1e-3, 0.9, 0.999,
                                                 1e-8, 0.0, 0, 0, 0, 1e-3, 0.5, 1.0),
    }
    times = {name: ([], []) for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            for k, build in enumerate(builds):
                start = time.perf_counter()
                for _ in range(calls):
                    call(build)
                times[name][k].append((time.perf_counter() - start) / calls * 1e6)
    print(f"N = {n:,}, float32, {rounds} rounds of {calls} calls each")
    for name, (a, b) in times.items():
        ratio = np.median(np.array(b) / np.array(a))
        print(f"{name:13s} first {np.median(a):9.1f} us  second {np.median(b):9.1f} us  "
              f"second/first {ratio:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
