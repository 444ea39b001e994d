"""What the benchmark times: the optimizer configurations, the bytes a step moves, the result of a
timed case, and closures running one fastopt step (functional, bound to its arrays, or through an
optimizer class) on fresh arrays."""

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np

from fastopt._core import memory as _memory
from fastopt._core.config import QUANT8_BLOCK
from fastopt.optim import _api, algorithms as _algorithms, functional

#: (row label, optimizer, options): each optimizer in its default configuration, plus momentum SGD
#: and Adam with 8-bit state (``state_dtype="int8"``: :mod:`fastopt.quant8`, float32 only; its
#: peers run their float32 Adam).
CONFIGS = [
    ("sgd", "sgd", {}),
    ("sgd momentum", "sgd", {"momentum": 0.9}),
    ("adagrad", "adagrad", {}),
    ("rmsprop", "rmsprop", {}),
    ("adam", "adam", {}),
    ("adamw", "adamw", {}),
    ("adam 8-bit", "adam", {"state_dtype": "int8"}),
]

#: The sizes of the full run (``fastopt bench --full``): 10^3 ... 10^8 parameters.
FULL_SIZES = [10 ** e for e in range(3, 9)]

#: The optimizer classes the class and arena cases step, by optimizer name.
CLASS_NAMES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam",
               "adamw": "AdamW"}


class Unsupported(Exception):
    """A case that cannot run here (peer not installed, option not supported); says why."""


@dataclass
class Result:
    """One timed case. ``kind``: ``fastopt`` (a backend), ``peer``, ``roofline`` (same-traffic
    kernel), ``stream`` or ``many``; ``written``: how many arrays the step updates in place."""
    optimizer: str
    backend: str
    dtype: str
    n: int
    median_s: float
    bytes_per_step: int
    kind: str = "fastopt"
    written: int = 0
    min_s: float = None  # the fastest sample, for reading a run on a busy machine
    #: Ratios taken round by round against cases timed in turn with this one (see
    #: :func:`fastopt.bench.timing.interleaved_samples`): ``"roofline"`` (same-traffic time /
    #: this time) and each peer (peer time / this time), the median over the rounds.
    paired: dict = field(default_factory=dict)
    #: The lower and upper quartiles over the rounds of each ratio of ``paired``.
    spread: dict = field(default_factory=dict)

    @property
    def params_per_s(self):
        return self.n / self.median_s

    @property
    def gb_per_s(self):
        return self.bytes_per_step / self.median_s / 1e9

    def as_dict(self):
        return {**asdict(self), "params_per_s": self.params_per_s, "gb_per_s": self.gb_per_s}


def is_quant8(options):
    """Whether a configuration's options ask for 8-bit state."""
    return options.get("state_dtype") == "int8"


def float_options(options):
    """The hyperparameters of a configuration's options (without ``state_dtype``)."""
    return {k: v for k, v in options.items() if k != "state_dtype"}


def used_state(name, options):
    """How many state arrays ``name`` with ``options`` reads and writes."""
    algorithm = _algorithms.ALGORITHMS[name]
    return sum(algorithm.uses(algorithm.check({**algorithm.defaults, **float_options(options)})))


def written_arrays(name, options):
    """How many arrays a step updates in place: param and its used state."""
    return 1 + used_state(name, options)


def bytes_per_step(name, options, n, dtype):
    """Bytes one step moves: reads param, grad and the used state, writes param and the state
    (8-bit state: a byte per element and a float32 per block of each state array)."""
    if is_quant8(options):
        k = used_state(name, options)
        return (3 * np.dtype(dtype).itemsize + 2 * k) * n + 2 * k * 4 * -(-n // QUANT8_BLOCK)
    return (3 + 2 * used_state(name, options)) * n * np.dtype(dtype).itemsize


def problem(name, options, n, dtype, on_device=False):
    """``(param, grad, state)`` of ``n`` parameters for ``name``: random param, small random grad,
    the state at its initial value; on the device with ``on_device``."""
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = algorithm.check({**algorithm.defaults, **options})
    rng = np.random.default_rng(0)
    param = _memory.from_host(on_device, rng.standard_normal(n).astype(dtype))
    grad = _memory.from_host(on_device, (rng.standard_normal(n) * 1e-3).astype(dtype))
    state = [_memory.full(on_device, n, dtype, algorithm.initial_state(hyper, s))
             for s in algorithm.state]
    return param, grad, state


def synchronize(backend):
    """Waits for the device on ``cuda``; nothing on the host backends."""
    if backend == "cuda":
        from numba import cuda

        cuda.synchronize()


def make_step(name, options, backend, n, dtype=np.float32, bound=False):
    """A closure running one functional step (step count 1, 2, ...) on fresh arrays of size ``n``,
    synchronized on CUDA so that timing it times the kernel; with ``bound``, the step bound to
    its arrays once (:func:`fastopt.functional.bind`), as ``torch.optim``'s ``step()`` is
    to its tensors."""
    if is_quant8(options):
        return make_quant8_step(name, float_options(options), backend, n, dtype, bound)
    param, grad, state = problem(name, options, n, dtype, on_device=backend == "cuda")
    counter = itertools.count(1)
    if bound:
        step = functional.bind(name, param, grad, *state, backend=backend, **options)

        def one_step():
            step(next(counter))
            synchronize(backend)
    else:
        step = getattr(functional, name)

        def one_step():
            step(param, grad, *state, step=next(counter), backend=backend, **options)
            synchronize(backend)

    return one_step


def make_quant8_step(name, options, backend, n, dtype=np.float32, bound=False):
    """:func:`make_step` with 8-bit state (:mod:`fastopt.quant8`); bound: the backend's step bound
    to its arrays, the step's scalars computed on the host at each call as a bound step does."""
    from fastopt import quant8
    from fastopt._core.dispatch import kernels

    if np.dtype(dtype) != np.float32:
        raise Unsupported("8-bit state takes float32 parameters")
    on_device = backend == "cuda"
    param, grad, _ = problem(name, options, n, dtype, on_device=on_device)
    state = quant8.init(name, param, **options)
    counter = itertools.count(1)
    if not bound:
        def one_step():
            quant8.step(name, param, grad, state, step=next(counter), backend=backend, **options)
            synchronize(backend)
        return one_step
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = algorithm.check({**algorithm.defaults, **options})
    arrays = quant8.checked_arrays(algorithm, param, grad, state, tuple(algorithm.uses(hyper)),
                                   on_device)
    kernel = getattr(kernels(backend, "quant8"), algorithm.kernel)
    run = kernel.bind(*arrays) if hasattr(kernel, "bind") else (
        lambda *scalars: kernel(*arrays, *scalars))

    def one_step():
        t = next(counter)
        run(*algorithm.scalars(hyper, t, t == 1), 1.0)
        synchronize(backend)
    return one_step


def make_bound_step(name, options, backend, n, dtype=np.float32):
    """:func:`make_step` bound to its arrays."""
    return make_step(name, options, backend, n, dtype, bound=True)


def make_class_step(name, options, backend, shapes, dtype=np.float32, **class_options):
    """A closure running ``opt.step(grads)`` of the optimizer class of ``name`` over new arrays of
    the given shapes (host backends); ``class_options`` go to the constructor (e.g.
    ``skip_nonfinite=False``)."""
    import fastopt

    cls = getattr(fastopt, CLASS_NAMES[name])
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [(rng.standard_normal(s) * 1e-3).astype(dtype) for s in shapes]
    opt = cls(params, backend=backend, **options, **class_options)
    return lambda: opt.step(grads)


# ---- Mixed-precision steps ----------------------------------------------------------------------

#: (row label, optimizer, options, model format, state format, rounding): mixed-precision steps
#: (float32 master weights; the gradient in the model's format), timed on the host backends;
#: "sr": bfloat16 state and stochastic rounding.
MIXED_CONFIGS = [
    ("adam f16", "adam", {}, "float16", "float32", "nearest"),
    ("adam bf16", "adam", {}, "bfloat16", "float32", "nearest"),
    ("adam bf16 sr", "adam", {}, "bfloat16", "bfloat16", "stochastic"),
]
#: The ``dtype`` of the mixed-precision rows' results (one block of the table).
MIXED = "mixed"

#: The numpy dtype of each stored format (bfloat16 as uint16 bits).
FORMAT_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}


def mixed_bytes_per_step(name, options, n, model_fmt, state_fmt):
    """Bytes a mixed-precision step moves: reads the gradient (in the model's format), reads and
    writes the master weights and the used state, writes the model copy."""
    grad = np.dtype(FORMAT_DTYPES[model_fmt]).itemsize
    state = np.dtype(FORMAT_DTYPES[state_fmt]).itemsize
    return n * (2 * grad + 2 * 4 + 2 * state * used_state(name, options))


def make_mixed_step(name, options, backend, n, model_fmt, state_fmt, rounding):
    """A closure running one mixed-precision step (:mod:`fastopt.mixed`, step count 1, 2, ...) on
    fresh arrays of size ``n`` on a host backend."""
    from fastopt import mixed
    from fastopt._core import lowp

    master, grad32, state = problem(name, options, n, np.float32)
    model_dtype = FORMAT_DTYPES[model_fmt]
    grad = lowp.round_bits(grad32, model_fmt) if model_fmt == "bfloat16" else \
        grad32.astype(model_dtype)
    model = np.zeros(n, model_dtype)
    if state_fmt != "float32":
        state = [np.full(n, mixed.state_fill(float(s[0]), FORMAT_DTYPES[state_fmt]),
                         FORMAT_DTYPES[state_fmt]) for s in state]
    algorithm = _algorithms.ALGORITHMS[name]
    used = algorithm.uses(algorithm.check({**algorithm.defaults, **options}))
    required = len(_api.state_args(algorithm)[0])  # the state arrays before model
    step = getattr(mixed, name)
    counter = itertools.count(1)
    states = [s if u else None for s, u in zip(state, used)]

    def one_step():
        step(master, grad, *states[:required], model, *states[required:], step=next(counter),
             backend=backend, rounding=rounding, **options)

    return one_step
