"""Call overhead: the per-call time of a small step (10^3 parameters) through the functional API,
bound to its arrays and through an optimizer class, and where its microseconds go (each stage of a
functional step timed alone, and a cProfile of the functional and class paths)."""

import cProfile
import os
import pstats

import numpy as np

from fastopt._core.dispatch import available_backends
from fastopt.bench.cases import (Unsupported, make_bound_step, make_class_step, make_step,
                                 problem)
from fastopt.bench.timing import ROOFLINE_BACKENDS, median_time
from fastopt.optim import algorithms as _algorithms

def _capture_kernel(module, algorithm, call):
    """Runs ``call()`` once with the compiled kernel behind ``module``'s launcher wrapped, and
    returns a closure calling that kernel alone with the same arguments (numba: the serial or
    parallel dispatcher; C: the cffi function). Relies on the backends' private names
    (``_kernels`` in :mod:`fastopt.backends.cpu.optim`, ``_ADAM`` in
    :mod:`fastopt.backends.c.optim`): raises :class:`Unsupported` if they changed."""
    captured = []
    if hasattr(module, "_kernels"):  # numba: kernels specialized per algorithm and used state
        kernels = module._kernels

        def recording(name, uses):
            step, fused = kernels(name, uses)

            def recorder(n, *args):
                captured.append((step.parallel if n >= module.PARALLEL_THRESHOLD
                                 else step.serial, args))
                return step(n, *args)
            return recorder, fused

        module._kernels = recording
        try:
            call()
        finally:
            module._kernels = kernels
    elif hasattr(module, "_" + algorithm.kernel.upper()):  # C: dtype -> (cffi function, type)
        table = getattr(module, "_" + algorithm.kernel.upper())
        saved = dict(table)

        def wrap(function):
            def recorder(*args):
                captured.append((function, args))
                return function(*args)
            return recorder

        for dtype, (function, ctype) in saved.items():
            table[dtype] = (wrap(function), ctype)
        try:
            call()
        finally:
            table.update(saved)
    if not captured:
        raise Unsupported("cannot find the compiled kernel behind the launcher")
    kernel, args = captured[-1]
    return lambda: kernel(*args)


def launches(backend, algorithm, call):
    """``(module, launcher, calls)``: the backend module, its launcher of ``algorithm`` and the
    arguments of each launch ``call()`` made through it (the launcher is restored afterwards)."""
    from fastopt._core.dispatch import kernels

    module = kernels(backend)
    launcher = getattr(module, algorithm.kernel)
    captured = []

    def recorder(*args):
        captured.append(args)
        return launcher(*args)

    setattr(module, algorithm.kernel, recorder)
    try:
        call()
    finally:
        setattr(module, algorithm.kernel, launcher)
    return module, launcher, captured


def _captured_launch(backend, algorithm, call):
    """The backend module, launcher of ``algorithm`` and the arguments of the last launch of
    ``call()``."""
    module, launcher, captured = launches(backend, algorithm, call)
    return module, launcher, captured[-1]


def _stage_times(name, backend, n, dtype, repeat):
    """Microseconds of each stage of one functional step, each timed on its own (``None`` for a
    stage whose internals changed shape)."""
    import types

    from fastopt.optim import _step
    from fastopt._core import validate as _validate
    from fastopt._core.dispatch import choose

    algorithm = _algorithms.ALGORITHMS[name]
    param, grad, state = problem(name, {}, n, dtype)
    hyper_in = dict(algorithm.defaults)
    hyper = _step.check_hyper(algorithm, hyper_in)
    uses = tuple(algorithm.uses(hyper))
    named = {"param": param, "grad": grad,
             **{s: (a if u else None) for s, u, a in zip(algorithm.state, uses, state)}}
    written = {"param", *(s for s, u in zip(algorithm.state, uses) if u)}
    module, launcher, args = _captured_launch(backend, algorithm, make_step(name, {}, backend, n,
                                                                             dtype))
    arrays = list(args[:len(named)])
    scalars = algorithm.scalars(hyper, 2, False)
    no_kernel = types.SimpleNamespace(
        TAKES_PYTHON_FLOATS=module.TAKES_PYTHON_FLOATS,
        **{algorithm.kernel: lambda *a: None})
    stages = {
        "check_hyper": lambda: _step.checked_step(algorithm, hyper_in),
        "check_step": lambda: _validate.check_step(2),
        "resolve (dispatch + array checks)": lambda: _step.resolve(algorithm, hyper, param, grad,
                                                                   state, backend, uses),
        "  of which choose (dispatch)": lambda: choose(named, backend),
        "  of which check_arrays": lambda: _validate.check_arrays(named, written, False),
        "scalars (host math)": lambda: algorithm.scalars(hyper, 2, False),
        "launch without the kernel (casting)": lambda: _step.launch(no_kernel, algorithm, arrays,
                                                                    scalars),
        "backend launcher (wrapper + kernel)": lambda: launcher(*args),
        "  of which compiled kernel alone": lambda: _capture_kernel(
            module, algorithm, lambda: launcher(*args)),
    }
    out = {}
    for label, fn in stages.items():
        try:
            if label == "  of which compiled kernel alone":
                fn = fn()
            fn()
        except Exception:  # a private interface changed: report the stage as not measured
            out[label] = None
            continue
        out[label] = median_time(fn, repeat, warmup=50, min_sample_s=2e-3) * 1e6
    return out


#: Stages of the overhead breakdown that are parts of the stage named: ``part -> whole``.
_PARTS = {"  of which choose (dispatch)": "resolve (dispatch + array checks)",
          "  of which check_arrays": "resolve (dispatch + array checks)",
          "  of which compiled kernel alone": "backend launcher (wrapper + kernel)"}


def contradicting_stages(stages):
    """The stages of an overhead breakdown that are larger than the stage they are part of."""
    return [part for part, whole in _PARTS.items()
            if stages.get(part) is not None and stages.get(whole) is not None
            and stages[part] > stages[whole]]


def _profile(fn, calls):
    """cProfile of ``calls`` calls of ``fn``: the top functions by own time, per call of ``fn``
    (microseconds inflated by the profiler; the shares and call counts are what matter)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(tt for _, _, tt, _, _ in stats.values())
    rows = []
    for (filename, line, function), (_, ncalls, tottime, _, _) in stats.items():
        where = f"{os.path.basename(filename)}:{function}" if filename != "~" else function
        rows.append({"function": where, "calls_per_step": ncalls / calls,
                     "own_us_per_step": tottime / calls * 1e6, "share": tottime / total})
    rows.sort(key=lambda r: -r["share"])
    return rows


def overhead(backends=None, name="adam", n=1000, dtype=np.float32, repeat=30):
    """Per-call time of a small step (``n`` = 10^3) through :mod:`fastopt.functional`,
    bound to its arrays and through an optimizer class, and where it goes: each stage timed alone,
    and a cProfile of the functional and class paths."""
    backends = [b for b in (backends or ROOFLINE_BACKENDS) if b in available_backends()]
    out = {}
    for backend in backends:
        functional_step = make_step(name, {}, backend, n, dtype)
        class_step = make_class_step(name, {}, backend, [(n,)], dtype)

        def per_call(fn):
            return median_time(fn, repeat, warmup=50, min_sample_s=2e-3) * 1e6

        def class_times():
            return (per_call(class_step), per_call(make_class_step(
                name, {}, backend, [(n,)], dtype, skip_nonfinite=False)))

        with_check, without = class_times()
        if without > with_check:  # the check cannot save time: the machine was busy; again
            with_check, without = min((with_check, without), class_times(),
                                      key=lambda t: t[1] - t[0])
        stages = _stage_times(name, backend, n, dtype, repeat)
        if contradicting_stages(stages):  # a part larger than its whole: once more
            again = _stage_times(name, backend, n, dtype, repeat)
            stages = min((stages, again), key=lambda s: len(contradicting_stages(s)))
        out[backend] = {
            "n": n, "optimizer": name, "dtype": np.dtype(dtype).name,
            "bound_us": per_call(make_bound_step(name, {}, backend, n, dtype)),
            "functional_us": per_call(functional_step),
            "class_us": with_check,
            "class_no_check_us": without,
            "stages_us": stages,
            "profile_functional": _profile(functional_step, 2000)[:10],
            "profile_class": _profile(class_step, 2000)[:10],
        }
    return out
