"""Lists of separate arrays in one launch: a group of numpy arrays stepped by the classes with one
list step (``fastopt.backends.<backend>.lists``) gives the bits of stepping each array alone."""

import numpy as np
import pytest

import fastopt
from fastopt.optim import algorithms as alg
from conftest import HOST, requires_cuda
from cases import LR, OPTIONS, TOLERANCE
from fastopt.optim.optimizers import LIST_MIN_TENSORS

LIST_BACKENDS = [b for b in HOST if b in ("cpu", "c")]
ELEMENTWISE = [name for name, a in alg.ALGORITHMS.items() if not a.segmented]
#: Odd sizes (tails of every vector width) and an empty tensor: a group long enough to be a list.
SIZES = [1, 257, 0, 1030, 3, 2, 17, 5, 9]
assert len(SIZES) >= LIST_MIN_TENSORS


def _cases():
    """Per algorithm: no options, and its richest option set (the most state arrays)."""
    out = []
    for name in ELEMENTWISE:
        richest = max(OPTIONS[name], key=lambda o: sum(bool(v) for v in o.values()))
        out += [(name, {}), (name, richest)]
    return out


def _arrays(sizes, dtype, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for n in sizes]


def _state_arrays(opt, index):
    return {k: v for k, v in opt.state[index].items() if isinstance(v, np.ndarray)}


def _assert_same(opt_a, params_a, opt_b, params_b):
    for i, (a, b) in enumerate(zip(params_a, params_b)):
        np.testing.assert_array_equal(a, b, err_msg=f"params[{i}]")
        assert opt_a.state[i]["step"] == opt_b.state[i]["step"]
        sa, sb = _state_arrays(opt_a, i), _state_arrays(opt_b, i)
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=f"state[{i}][{k!r}]")


#: (backend, name, options): ``cpu``, where numba compiles a kernel per mode, runs each algorithm's
#: richest options (and SGD's plain step, its first-step mode).
STEP_CASES = [(b, n, o) for b in LIST_BACKENDS for n, o in _cases()
              if b != "cpu" or o or n == "sgd"]


@pytest.mark.parametrize("backend,name,options", STEP_CASES,
                         ids=[f"{b}-{n}-{'rich' if o else 'plain'}" for b, n, o in STEP_CASES])
def test_list_step_equals_each_array_alone(backend, name, options):
    cls = getattr(fastopt, alg.ALGORITHMS[name].class_name)
    grads = [_arrays(SIZES, np.float32, seed) for seed in (1, 2, 3)]
    together = _arrays(SIZES, np.float32, 0)
    alone = [p.copy() for p in together]
    reference = [p.copy() for p in together]
    opt = cls(together, backend=backend, lr=LR[name], **options)
    separate = cls([{"params": [p]} for p in alone], backend=backend, lr=LR[name], **options)
    numpy = cls([{"params": [p]} for p in reference], backend="numpy", lr=LR[name], **options)
    # A plain step, a clipped one (the norm from the per-tensor sums), an unscaled one.
    for g, kw in zip(grads, [{}, {"max_norm": 0.5}, {"grad_scale": 4.0}]):
        info = opt.step(g, **kw)
        assert info == separate.step(g, **kw)
        numpy.step(g, **kw)
    assert len(opt._bound_lists) == 1, "the group was not stepped as a list"
    _assert_same(opt, together, separate, alone)
    rtol, atol = TOLERANCE[np.dtype(np.float32)]
    for i, (a, r) in enumerate(zip(together, reference)):
        np.testing.assert_allclose(a, r, rtol=rtol, atol=atol, err_msg=f"params[{i}] vs numpy")


@pytest.mark.parametrize("backend", LIST_BACKENDS)
def test_list_kernels_in_parallel(backend):
    """Tensors of several work items (and a total past the parallel threshold) in float64: the list
    step, each tensor's sum of squares and the largest magnitude match the one-array kernels."""
    from fastopt._core.dispatch import kernels

    lists, optim = kernels(backend, "lists"), kernels(backend)
    algorithm = alg.ALGORITHMS["adam"]
    sizes = [2 * lists.CHUNK + 5, 7, lists.CHUNK, 1]
    params, grads = _arrays(sizes, np.float64, 0), _arrays(sizes, np.float64, 1)
    grads[2][100] = -1e300
    states = [[np.full(n, 0.5) for n in sizes] for _ in range(3)]
    alone = ([p.copy() for p in params], [[s.copy() for s in st] for st in states])
    hyper = algorithm.check({**algorithm.defaults, "amsgrad": True, "weight_decay": 0.1})
    uses = tuple(algorithm.uses(hyper))
    scalars = algorithm.scalars(hyper, 3, False)
    step = lists.bind(algorithm, params, grads, states, uses)
    step.run(*scalars, 0.5)
    for k, (p, g) in enumerate(zip(alone[0], grads)):
        optim.adam(p, g, *[st[k] for st in alone[1]], *scalars, 0.5)
    for a, b in zip(params + sum(states, []), alone[0] + sum(alone[1], [])):
        np.testing.assert_array_equal(a, b)
    assert step.sums_of_squares() == [optim.sum_of_squares(g) for g in grads]
    assert step.max_magnitude_bits() == max(optim.max_magnitude_bits(g) for g in grads)


@pytest.mark.parametrize("backend", LIST_BACKENDS)
def test_list_follows_replaced_arrays(backend):
    """A new gradient array, a state array replaced in place of the optimizer's, a loaded state
    dict and a missing gradient: the list is bound again or the group stepped array by array,
    with the bits of stepping each array alone."""
    together, alone = _arrays(SIZES, np.float32, 0), _arrays(SIZES, np.float32, 0)
    opt = fastopt.Adam(together, backend=backend, lr=0.01)
    separate = fastopt.Adam([{"params": [p]} for p in alone], backend=backend, lr=0.01)
    grads = _arrays(SIZES, np.float32, 1)
    for opt_ in (opt, separate):
        opt_.step(grads)
    new_grads = _arrays(SIZES, np.float32, 2)
    for opt_ in (opt, separate):
        opt_.step(new_grads)
        opt_.state[1]["exp_avg"] = np.full(SIZES[1], 0.25, np.float32)
        opt_.step(new_grads)
        opt_.load_state_dict(opt_.state_dict())
        opt_.step(new_grads)
        opt_.step([None, *new_grads[1:]])
        opt_.step(new_grads)  # step counts now differ: array by array
    _assert_same(opt, together, separate, alone)
    assert opt.state[0]["step"] == 5 and opt.state[1]["step"] == 6


@pytest.mark.parametrize("backend", LIST_BACKENDS)
def test_list_nonfinite_and_norm(backend):
    """A NaN in one tensor skips the whole list step (nothing written); ``return_norm`` without
    the check (the update passes' sums) gives the norm of stepping each array alone."""
    together = _arrays(SIZES, np.float32, 0)
    opt = fastopt.SGD(together, backend=backend, lr=0.1, momentum=0.9)
    opt.step(_arrays(SIZES, np.float32, 1))
    before = [p.copy() for p in together]
    bad = _arrays(SIZES, np.float32, 2)
    bad[3][5] = np.nan
    with pytest.warns(RuntimeWarning, match="skipped"):
        assert opt.step(bad).skipped
    for a, b in zip(together, before):
        np.testing.assert_array_equal(a, b)
    assert opt.skipped_steps == 1 and opt.state[0]["step"] == 1

    params = [_arrays(SIZES, np.float32, 0) for _ in range(2)]
    opts = [fastopt.SGD(groups, backend=backend, lr=0.1, skip_nonfinite=False)
            for groups in (params[0], [{"params": [p]} for p in params[1]])]
    g = _arrays(SIZES, np.float32, 3)
    infos = [o.step(g, return_norm=True) for o in opts]
    assert infos[0] == infos[1] and infos[0].grad_norm > 0
    assert len(opts[0]._bound_lists) == 1
    for a, b in zip(*params):
        np.testing.assert_array_equal(a, b)


@requires_cuda
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "nadam"])
def test_cuda_list_step_equals_each_array_alone(name):
    """The CUDA list kernel (under the simulator in CI) against the one-array CUDA steps."""
    from numba import cuda

    from fastopt._core.dispatch import kernels

    lists, optim = kernels("cuda", "lists"), kernels("cuda")
    algorithm = alg.ALGORITHMS[name]
    sizes = [5, 0, 19, 2]
    options = max(OPTIONS[name], key=lambda o: sum(bool(v) for v in o.values()))
    hyper = algorithm.check({**algorithm.defaults, "lr": LR[name], **options})
    uses = tuple(algorithm.uses(hyper))
    host = [_arrays(sizes, np.float32, seed) for seed in range(2 + len(algorithm.state))]
    # The first state a positive average of squares, above the others' squares (RMSprop's
    # centered variance stays positive: the simulator's math.sqrt refuses a negative).
    host[2:] = [[np.abs(a) + (100.0 if k == 0 else 0.0) for a in arrays]
                for k, arrays in enumerate(host[2:])]
    together = [[cuda.to_device(a) for a in arrays] for arrays in host]
    alone = [[cuda.to_device(a) for a in arrays] for arrays in host]
    empty = cuda.device_array(0, np.float32)
    host_state = algorithm.host_at(hyper, 2) if algorithm.host_state else {}
    scalars = algorithm.scalars(hyper, 2, False, **host_state)
    lists.bind(algorithm, together[0], together[1], together[2:], uses).run(*scalars, 0.5)
    launcher = getattr(optim, algorithm.kernel)
    for k in range(len(sizes)):
        launcher(alone[0][k], alone[1][k], *[s[k] if u else empty
                                             for s, u in zip(alone[2:], uses)], *scalars, 0.5)
    for arrays_a, arrays_b, used in zip(together, alone, (True, True, *uses)):
        for a, b in zip(arrays_a, arrays_b):
            np.testing.assert_array_equal(a.copy_to_host(), b.copy_to_host())
