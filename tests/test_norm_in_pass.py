"""The update that also computes the gradient's squared norm (``launch_with_norm``), every backend.

Against the plain step on the same backend, bit for bit: the parameters and state after it, and the
norm against ``sum_of_squares`` of the same gradient. Sizes cover the tails of 8-element groups,
blocks and chunks: 1, 257, 10_007 (one partial chunk) and 2 chunks + 5 (three chunks, above the
parallel threshold). The CUDA kernels run under the simulator: small sizes, which still span several
blocks and grid-stride iterations there.
"""

import numpy as np
import pytest

from fastopt.optim import algorithms as _algorithms
from fastopt.optim._step import check_hyper, launch, launch_with_norm, resolve
from cases import LR, OPTIONS, case_ids, new_state, problem
from conftest import AVAILABLE, HOST, to_backend, to_host

CHUNK = 1 << 14  # the host backends' reduction chunk
HOST_SIZES = [1, 257, 10_007, 2 * CHUNK + 5]
# The parallel kernels (sizes above the threshold) compile for each mode: the full option grid runs
# on the serial sizes, and each algorithm's last (richest) option case on the parallel size too.
SERIAL_SIZES = HOST_SIZES[:3]
CUDA_SIZES = [37]  # 16 threads under the simulator: 2 or 3 grid-stride iterations each
STEPS = (1, 7)  # the first step (SGD's fresh buffer), then a later one where RAdam rectifies
GRAD_SCALE = 0.5  # the norm is the gradient's as given, before this factor


def bits(a):
    """The bit patterns of a float array (NaNs and signed zeros compare as they are)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def offsets_for(name, n, backend):
    """LAMB's segments: three tensors (some empty for tiny n); None for the other algorithms."""
    if not _algorithms.ALGORITHMS[name].segmented:
        return None
    return to_backend(backend, np.array([0, n // 3, n // 3, n], np.int64))


def run_both(name, options, backend, param, grads):
    """The steps of ``STEPS`` run plainly and with the norm; returns (plain arrays, fused arrays,
    [(norm written, sum_of_squares)] per step), all on the host."""
    algorithm = _algorithms.ALGORITHMS[name]
    hyper = check_hyper(algorithm, {**algorithm.defaults, "lr": LR[name], **options})
    state = new_state(name, options, param)
    plain = [to_backend(backend, a) for a in (param, *state)]
    fused = [to_backend(backend, a) for a in (param, *state)]
    offsets = offsets_for(name, param.size, backend)
    host = algorithm.host_at(hyper, STEPS[0]) if algorithm.host_state else {}
    norms = []
    for t, g in zip(STEPS, grads):
        scalars = algorithm.scalars(hyper, t, t == STEPS[0], **host)
        host = algorithm.advance(hyper, t, host)
        grad = to_backend(backend, g)
        module, arrays, _ = resolve(algorithm, hyper, plain[0], grad, plain[1:], backend)
        launch(module, algorithm, [*arrays] + [offsets] * (offsets is not None), scalars,
               GRAD_SCALE)
        module, arrays, _ = resolve(algorithm, hyper, fused[0], grad, fused[1:], backend)
        norm_out = to_backend(backend, np.full(1, -1.0))
        launch_with_norm(module, algorithm, [*arrays] + [offsets] * (offsets is not None), scalars,
                         GRAD_SCALE, norm_out)
        norms.append((to_host(norm_out)[0], module.sum_of_squares(grad)))
    return [to_host(a) for a in plain], [to_host(a) for a in fused], norms


def cases(backends):
    """Every option combination of tests/cases.py; under the CUDA simulator, which runs each thread
    in Python, those without maximize (the same kernel with the gradient's sign flipped)."""
    return [pytest.param(backend, name, options, id=f"{backend}-{name}[{oid}]")
            for backend in backends for name in OPTIONS
            for options, oid in zip(OPTIONS[name], case_ids(name))
            if backend != "cuda" or not options.get("maximize")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend,name,options", cases(AVAILABLE))
def test_same_step_and_same_norm_as_sum_of_squares(backend, name, options, dtype):
    sizes = HOST_SIZES if options is OPTIONS[name][-1] else SERIAL_SIZES
    for n in CUDA_SIZES if backend == "cuda" else sizes:
        param, grads = problem((n,), dtype, len(STEPS), seed=n)
        plain, fused, norms = run_both(name, options, backend, param, grads)
        for a, b in zip(plain, fused):
            assert a.dtype == b.dtype and np.array_equal(bits(a), bits(b)), f"n={n}"
        assert not np.array_equal(plain[0], param), "the step changed nothing"
        for (got, expected), g in zip(norms, grads):
            assert bits(np.float64(got)) == bits(np.float64(expected)), f"n={n}"
            assert got == pytest.approx(np.sum(np.square(g, dtype=np.float64)), rel=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf, on purpose
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", list(OPTIONS))
def test_non_finite_gradient_gives_a_non_finite_norm(backend, name, dtype):
    n = 37 if backend == "cuda" else 2 * CHUNK + 5
    param, grads = problem((n,), dtype, len(STEPS), seed=1)
    grads[0][n // 2] = np.inf  # inf: the norm is inf
    grads[1][0], grads[1][-1] = np.inf, np.nan  # and a nan: nan
    options = OPTIONS[name][-1]
    plain, fused, norms = run_both(name, options, backend, param, grads)
    for a, b in zip(plain, fused):
        assert np.array_equal(bits(a), bits(b))
    assert norms[0][0] == np.inf and np.isnan(norms[1][0])
    for got, expected in norms:
        assert bits(np.float64(got)) == bits(np.float64(expected))


@pytest.mark.parametrize("backend", AVAILABLE)
def test_one_slot_per_parameter_adds_up_to_the_global_norm(backend):
    """The Optimizer.step pattern: each parameter's launch writes its own slot of one array."""
    algorithm = _algorithms.ALGORITHMS["adamw"]
    hyper = check_hyper(algorithm, algorithm.defaults)
    sizes = [1, 300] if backend == "cuda" else [1, 300, 2 * CHUNK + 5]
    norms = to_backend(backend, np.zeros(len(sizes)))
    expected = 0.0
    for k, n in enumerate(sizes):
        param, (grad,) = problem((n,), np.float32, 1, seed=k)
        states = [to_backend(backend, s) for s in new_state("adamw", {}, param)]
        grad = to_backend(backend, grad)
        module, arrays, _ = resolve(algorithm, hyper, to_backend(backend, param), grad, states,
                                    backend)
        launch_with_norm(module, algorithm, arrays, algorithm.scalars(hyper, 1, True), 1.0,
                         norms[k:k + 1])
        expected += module.sum_of_squares(grad)
    assert sum(to_host(norms).tolist()) == expected  # Python's sum, in order, as Optimizer.step


@pytest.mark.parametrize("backend", [b for b in HOST if b in ("cpu", "c")])
def test_norm_does_not_depend_on_the_thread_count(backend):
    from fastopt._core import threads

    param, grads = problem((5 * CHUNK + 3,), np.float32, len(STEPS), seed=3)
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(1)
        one = run_both("adam", {}, backend, param, grads)
        threads.set_num_threads(before)
        many = run_both("adam", {}, backend, param, grads)
    finally:
        threads.set_num_threads(before)
    for a, b in zip(one[1], many[1]):
        assert np.array_equal(bits(a), bits(b))
    assert [bits(np.float64(x)) for x, _ in one[2]] == [bits(np.float64(x)) for x, _ in many[2]]


# Optimizer.step: the norm in the update pass when nothing needs it first.

def class_problem(backend, seed=0):
    """Two arrays and an arena of three tensors, their gradients, on the backend's side."""
    import fastopt

    rng = np.random.default_rng(seed)
    shapes = [(5, 7), (300,), (2 * CHUNK + 5,)] if backend != "cuda" else [(5, 7), (40,)]
    host = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    arena = fastopt.FlatParams([rng.standard_normal(s).astype(np.float32) for s in [(3,), (4, 4)]])
    params = [to_backend(backend, a) for a in host]
    grads = [to_backend(backend, rng.standard_normal(a.shape).astype(np.float32)) for a in host]
    if backend != "cuda":
        params.append(arena)
        grads.append(fastopt.FlatParams([rng.standard_normal(s).astype(np.float32)
                                         for s in [(3,), (4, 4)]]))
    return params, grads


def copies(params):
    import copy

    return [copy.deepcopy(p) if not hasattr(p, "copy_to_host") else to_backend("cuda", to_host(p))
            for p in params]


@pytest.mark.parametrize("backend", AVAILABLE)
def test_class_step_takes_the_norm_from_the_update_pass(backend, monkeypatch):
    import fastopt
    from fastopt._core.dispatch import kernels

    params, grads = class_problem(backend)
    reference = copies(params)
    fused = fastopt.AdamW(params, lr=0.01, backend=backend, skip_nonfinite=False)
    plain = fastopt.AdamW(reference, lr=0.01, backend=backend, skip_nonfinite=False)
    expected = [plain.step(grads, return_norm=True) for _ in range(2)]  # the reduction pass
    module = kernels(backend)

    def no_reduction(grad):
        raise AssertionError("the step made a reduction pass")

    if backend != "numpy":  # the reference computes the norm plainly, by its own reduction
        monkeypatch.setattr(module, "sum_of_squares", no_reduction)
    got = [fused.step(grads, return_norm=True) for _ in range(2)]
    assert [i.grad_norm for i in got] == [i.grad_norm for i in expected]
    assert expected[0].grad_norm > 0
    for p, q in zip(params, reference):
        a = to_host(p.data if isinstance(p, fastopt.FlatParams) else p)
        b = to_host(q.data if isinstance(q, fastopt.FlatParams) else q)
        assert np.array_equal(bits(a), bits(b))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("backend", AVAILABLE)
def test_class_step_reports_but_does_not_skip_without_the_check(backend):
    import fastopt

    params, grads = class_problem(backend, seed=1)
    host = to_host(grads[0]).copy()
    host[0, 0] = np.inf
    grads[0] = to_backend(backend, host)
    opt = fastopt.SGD(params, lr=0.1, backend=backend, skip_nonfinite=False)
    info = opt.step(grads, return_norm=True)
    assert info.found_inf and not info.skipped and info.grad_norm == np.inf
    assert all(opt.state[i]["step"] == 1 for i in range(len(params)))
    # With the check (the default), the same step is skipped after the reduction pass.
    checked = fastopt.SGD(class_problem(backend, seed=1)[0], lr=0.1, backend=backend)
    info = checked.step(grads, return_norm=True)
    assert info.found_inf and info.skipped and checked.state == {}
