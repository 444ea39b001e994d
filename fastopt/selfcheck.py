"""A quick check that every usable backend computes what the numpy reference computes, for every
optimizer of the table (:data:`fastopt.optim.algorithms.ALGORITHMS`)."""

import numpy as np

from fastopt.optim import algorithms as _algorithms, functional
from fastopt._core import memory as _memory
from fastopt._core.dispatch import available_backends

#: Options that turn on more of an optimizer's kernel than its defaults do (the others run with
#: their defaults).
OPTIONS = {
    "sgd": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adagrad": dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
    "rmsprop": dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01),
    "adam": dict(lr=0.01, amsgrad=True, weight_decay=0.01),
    "adamw": dict(lr=0.01, amsgrad=True, weight_decay=0.01),
    "nadam": dict(weight_decay=0.01, decoupled_weight_decay=True),
    "radam": dict(weight_decay=0.01),
    "lion": dict(weight_decay=0.01),
    "lamb": dict(weight_decay=0.01),
}
TOLERANCE = {np.float32: (2e-5, 1e-6), np.float64: (1e-12, 1e-14)}


def _steps(name, options, backend, param, grads):
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = algorithm.check({**algorithm.defaults, **options})
    on_device = backend == "cuda"
    p = _memory.from_host(on_device, param)
    state = [_memory.full(on_device, param.shape, param.dtype,
                          algorithm.initial_state(hyper, s)) for s in algorithm.state]
    function = getattr(functional, name, None)
    if function is None:  # in the table, not yet in fastopt.functional: its bound step
        grad = _memory.from_host(on_device, grads[0])
        bound = functional.bind(name, p, grad, *state, backend=backend, **options)
    for t, g in enumerate(grads, start=1):
        if function is None:
            if on_device:
                grad.copy_to_device(g)
            else:
                grad[...] = g
            bound(t)
        else:
            function(p, _memory.from_host(on_device, g), *state, step=t, backend=backend,
                     **options)
    return [_memory.to_host(a) for a in (p, *state)]


def run(n=1031, steps=3, backends=None):
    """``[(optimizer, backend, dtype, max relative error, ok)]`` for every optimizer of the table
    on every usable backend but ``numpy`` (the reference), or on ``backends``."""
    rows = []
    rng = np.random.default_rng(0)
    backends = [b for b in (backends or available_backends()) if b != "numpy"]
    for dtype in (np.float32, np.float64):
        param = rng.standard_normal(n).astype(dtype)
        grads = [rng.standard_normal(n).astype(dtype) for _ in range(steps)]
        for name in _algorithms.ALGORITHMS:
            options = OPTIONS.get(name, {})
            expected = _steps(name, options, "numpy", param, grads)
            for backend in backends:
                got = _steps(name, options, backend, param, grads)
                rtol, atol = TOLERANCE[dtype]
                ok = all(np.allclose(g, e, rtol=rtol, atol=atol) for g, e in zip(got, expected))
                err = max(float(np.max(np.abs(g - e) / (np.abs(e) + atol)))
                          for g, e in zip(got, expected))
                rows.append((name, backend, np.dtype(dtype).name, err, ok))
    return rows
