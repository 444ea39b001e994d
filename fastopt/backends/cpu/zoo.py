"""Many optimizer runs on a 2-D test function in one compiled call: the ``cpu`` backend's zoo
kernel.

One kernel template (:func:`_runs`) steps every (row, start) pair, a row being one optimizer
configuration and learning rate, for ``steps`` steps, calling the test function's element
(:mod:`fastopt.backends.elements.surfaces`) for the gradient and the optimizer's element
(:mod:`fastopt.backends.elements.optim`, the function the optimizer kernels call) on each
coordinate. It is specialized, as the optimizer kernels are (:mod:`fastopt.backends._numba.
specialize`), per algorithm, per set of used state arrays and per test function. The host
computes each row's kernel scalars for every step (``Algorithm.scalars``, as a step of
:mod:`fastopt.functional` does); the kernel derives the element constants from them with the
table's ``constants``, so that a run is, bit for bit, the sequence of functional steps.

A run stops where its point or gradient stops being finite or the point leaves the box
``|x|, |y| <= bound``: ``diverged_at`` holds that step (``-1`` for a run that finished), and the
recorded values after it are NaN.
"""

import functools
import math

import numba
import numpy as np
from numba import prange
from numba.np.unsafe.ndarray import to_fixed_tuple

from fastopt.backends._numba.compile import parallel_threshold, serial_and_parallel
from fastopt.backends._numba.specialize import mode_name, specialized
from fastopt.backends.cpu.optim import E
from fastopt.backends.elements.surfaces import SURFACES
from fastopt.optim.algorithms import ALGORITHMS

#: Below this many runs the kernel runs on one thread.
PARALLEL_RUNS = parallel_threshold(64)


def _runs(starts, floats, flags, initial, params, bound, rows, path, loss, grad_norm,
          diverged_at):
    """Template: run ``r = i * len(starts) + j`` steps row ``i`` from ``starts[j]``, recorded in
    row ``rows[i]`` of the outputs:

    ``(f, g) = surface(p)``, recorded; then ``p_k, s_k = element(p_k, g_k, s_k, c_t)`` for each
    coordinate ``k``, ``c_t = constants(floats[i, t], flags[i, t])``; the states start at
    ``initial[i]``."""
    n_starts = starts.shape[0]
    steps = floats.shape[1]
    for r in prange(floats.shape[0] * n_starts):
        row = r // n_starts
        j = r - row * n_starts
        i = rows[row]
        x = starts[j, 0]
        y = starts[j, 1]
        sx = to_fixed_tuple(initial[row], N_STATES)
        sy = sx
        diverged_at[i, j] = -1
        for t in range(steps + 1):
            f, gx, gy = _surface(x, y, params)
            norm = math.sqrt(gx * gx + gy * gy)
            path[i, j, t, 0] = x
            path[i, j, t, 1] = y
            loss[i, j, t] = f
            grad_norm[i, j, t] = norm
            if not (abs(x) <= bound and abs(y) <= bound and math.isfinite(f)
                    and math.isfinite(norm)):
                diverged_at[i, j] = t
                for u in range(t + 1, steps + 1):
                    path[i, j, u, 0] = np.nan
                    path[i, j, u, 1] = np.nan
                    loss[i, j, u] = np.nan
                    grad_norm[i, j, u] = np.nan
                break
            if t == steps:
                break
            c = _constants(to_fixed_tuple(floats[row, t], N_FLOATS),
                           to_fixed_tuple(flags[row, t], N_FLAGS))
            x, sx = _element(x, gx, sx, c, USES)
            y, sy = _element(y, gy, sy, c, USES)


#: Unbound names of the template (bound in each copy by :func:`kernel`); never used.
_surface = _element = _constants = USES = N_STATES = N_FLOATS = N_FLAGS = None


@functools.cache
def kernel(algorithm_name, uses, surface):
    """The runs of ``algorithm_name`` (its ``uses``) on the test function ``surface``: a
    launcher ``run(starts, floats, flags, initial, params, bound, rows, path, loss, grad_norm,
    diverged_at)`` that picks the serial or parallel version by the number of runs."""
    algorithm = ALGORITHMS[algorithm_name]
    tag = f"{algorithm.kernel}_{mode_name(uses)}_{surface}"
    bound = dict(_surface=SURFACES[surface], _element=getattr(E, algorithm.kernel), USES=uses,
                 _constants=numba.njit(inline="always", error_model="numpy")(algorithm.constants),
                 N_STATES=len(algorithm.state), N_FLOATS=len(algorithm.float_args) + 2,
                 N_FLAGS=len(algorithm.flag_args))
    copy = specialized(_runs, f"_zoo_{tag}", f"{_runs.__doc__}\n({tag})", **bound)
    serial, parallel = serial_and_parallel(copy)

    def run(starts, floats, *rest):
        n = starts.shape[0] * floats.shape[0]
        (parallel if n >= PARALLEL_RUNS else serial)(starts, floats, *rest)

    return run
