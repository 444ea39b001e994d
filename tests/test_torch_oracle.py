"""The numpy reference against torch.optim (foreach=False), the oracle, when torch is installed.

Runs the optimizer classes on the ``numpy`` backend, so the classes' bookkeeping (state creation,
step counts, parameter groups, hyperparameter changes between steps) is checked as well.
"""

import numpy as np
import pytest

from fastopt.optim import algorithms as _algorithms, optimizers
from cases import LR, OPTIONS, case_ids, problem
from conftest import AVAILABLE, to_backend, to_host

torch = pytest.importorskip("torch")

#: The optimizers torch.optim has, by its class names (those without one, such as Lion and LAMB,
#: are tested against their papers instead).
CLASSES = {name: (a.torch, optimizers.CLASSES[name])
           for name, a in _algorithms.ALGORITHMS.items() if a.torch}
STEPS = 6
#: torch evaluates lerp/addcmul in fused kernels and float32 scalars slightly differently.
TOLERANCE = {np.float32: (1e-5, 1e-6), np.float64: (1e-12, 1e-14)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", [
    pytest.param(name, o, id=f"{name}[{oid}]") for name in CLASSES
    for o, oid in zip(OPTIONS[name], case_ids(name))])
def test_reference_matches_torch(name, options, dtype):
    # torch keeps NAdam's mu_product, a host scalar, in its default dtype (float32 unless set);
    # ours is a Python float. For the float64 runs, torch's is made float64 too.
    before = torch.get_default_dtype()
    if dtype is np.float64:
        torch.set_default_dtype(torch.float64)
    try:
        _compare_with_torch(name, options, dtype)
    finally:
        torch.set_default_dtype(before)


def _compare_with_torch(name, options, dtype):
    params0, grads0 = zip(*(problem(shape, dtype, STEPS, seed) for seed, shape
                            in enumerate([(13,), (4, 6)])))
    params = [p.copy() for p in params0]
    ours = CLASSES[name][1]([{"params": [params[0]]}, {"params": [params[1]], "lr": LR[name] / 2}],
                            lr=LR[name], backend="numpy", **options)
    theirs_params = [torch.tensor(p, requires_grad=True) for p in params0]
    theirs = getattr(torch.optim, CLASSES[name][0])(
        [{"params": [theirs_params[0]]}, {"params": [theirs_params[1]], "lr": LR[name] / 2}],
        lr=LR[name], foreach=False, **options)
    for t in range(STEPS):
        if t == 3:  # a schedule changes the learning rate mid-run
            for ours_group, theirs_group in zip(ours.param_groups, theirs.param_groups):
                ours_group["lr"] *= 0.3
                theirs_group["lr"] *= 0.3
        ours.step([g[t] for g in grads0])
        for p, g in zip(theirs_params, grads0):
            p.grad = torch.tensor(g[t])
        theirs.step()
        rtol, atol = TOLERANCE[dtype]
        for mine, reference in zip(params, theirs_params):
            np.testing.assert_allclose(mine, reference.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"step {t + 1}")
    for i, p in enumerate(theirs_params):  # state too, under torch's names
        for key, value in theirs.state[p].items():
            if key != "step" and value is not None:
                np.testing.assert_allclose(ours.state[i][key], value.numpy(), rtol=rtol,
                                           atol=atol, err_msg=key)


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1},
                                     {"weight_decay": 0.1, "decoupled_weight_decay": True}],
                         ids=["plain", "l2", "decoupled"])
def test_radam_rectified_steps_match_torch_on_every_backend(backend, options):
    """RAdam rectifies only once rho_t > 5, from step 6 (rho_t is a little under t early on,
    whatever beta2): ten steps cover both branches, on every backend."""
    steps = 10
    hyper = _algorithms.RADAM.check({**_algorithms.RADAM.defaults, **options})
    rectify = [_algorithms.RADAM.scalars(hyper, t, False)[7] for t in range(1, steps + 1)]
    assert rectify == [False] * 5 + [True] * 5
    param, grads = problem((3, 11), np.float64, steps)
    p = to_backend(backend, param)
    ours = optimizers.RAdam([p], lr=0.01, backend=backend, **options)
    tp = torch.tensor(param, requires_grad=True)
    theirs = torch.optim.RAdam([tp], lr=0.01, foreach=False, **options)
    for t, g in enumerate(grads):
        ours.step([to_backend(backend, g)])
        tp.grad = torch.tensor(g)
        theirs.step()
        np.testing.assert_allclose(to_host(p), tp.detach().numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=f"step {t + 1}")
