"""The optimizer classes: parameter groups, state dicts, hyperparameter changes, every backend."""

import numpy as np
import pytest

import fastopt
from fastopt import functional
from fastopt.optim import optimizers
from cases import LR, OPTIONS, TOLERANCE, new_state, problem
from conftest import AVAILABLE, HOST, to_backend, to_host

CLASSES = optimizers.CLASSES
RICHEST = {name: max(OPTIONS[name], key=lambda o: sum(bool(v) for v in o.values()))
           for name in OPTIONS}  # the option set that uses the most state


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", list(CLASSES))
def test_class_matches_functional_reference(backend, name):
    options = RICHEST[name]
    param, grads = problem((5, 7), np.float32, 4)
    expected, state = param.copy(), new_state(name, options, param)
    for t, g in enumerate(grads, start=1):
        getattr(functional, name)(expected, g, *state, step=t, lr=LR[name], backend="numpy",
                                  **options)
    p = to_backend(backend, param)
    opt = CLASSES[name]([p], lr=LR[name], backend=backend, **options)
    for g in grads:
        opt.step([to_backend(backend, g)])
    np.testing.assert_allclose(to_host(p), expected, *TOLERANCE[np.dtype(np.float32)])
    assert opt.state[0]["step"] == 4


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", list(CLASSES))
def test_state_dict_round_trip_continues_bit_identically(backend, name):
    options = RICHEST[name]
    params0, grads = problem((33,), np.float64, 6)
    run_a = [to_backend(backend, params0)]
    a = CLASSES[name](run_a, lr=LR[name], backend=backend, **options)
    for g in grads[:3]:
        a.step([to_backend(backend, g)])
    saved = a.state_dict()
    run_b = [to_backend(backend, to_host(run_a[0]))]
    b = CLASSES[name](run_b, lr=123.0, backend=backend, **options)  # lr comes from the state
    b.load_state_dict(saved)
    assert b.param_groups[0]["lr"] == LR[name]
    for g in grads[3:]:
        a.step([to_backend(backend, g)])
        b.step([to_backend(backend, g)])
    assert np.array_equal(to_host(run_a[0]), to_host(run_b[0]))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for key, value in sa["state"][0].items():
        assert np.array_equal(value, sb["state"][0][key]), key
    saved["state"][0]["step"] = -1  # the saved copy is independent of the optimizer
    assert a.state[0]["step"] == 6


def test_state_dict_is_portable_across_backends():
    params0, grads = problem((64,), np.float32, 4)
    p_numpy, p_other = params0.copy(), params0.copy()
    a = fastopt.Adam([p_numpy], lr=0.01, backend="numpy")
    a.step([grads[0]])
    other = [b for b in fastopt.available_backends() if b not in ("numpy", "cuda")]
    b = fastopt.Adam([p_other], lr=0.01, backend=other[0] if other else "numpy")
    b.load_state_dict(a.state_dict())
    p_other[:] = p_numpy
    for g in grads[1:]:
        a.step([g])
        b.step([g])
    np.testing.assert_allclose(p_other, p_numpy, *TOLERANCE[np.dtype(np.float32)])


def test_load_state_dict_refuses_mismatch_and_changes_nothing():
    opt = fastopt.Adam([np.ones(4), np.ones(3)], lr=0.1)
    opt.step([np.ones(4), np.ones(3)])
    good = opt.state_dict()
    bad_shape = opt.state_dict()
    bad_shape["state"][1]["exp_avg"] = np.zeros(5)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[1\]\['exp_avg'\]: expected "
                                         r"shape \(3,\)"):
        opt.load_state_dict(bad_shape)
    bad_groups = {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    with pytest.raises(ValueError, match="parameter groups do not match"):
        opt.load_state_dict(bad_groups)
    bad_lr = opt.state_dict()
    bad_lr["param_groups"][0]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"param_groups'\]\[0\]: lr: expected a finite"):
        opt.load_state_dict(bad_lr)
    after = opt.state_dict()
    assert after["param_groups"] == good["param_groups"]
    for i in good["state"]:
        for k in good["state"][i]:
            assert np.array_equal(after["state"][i][k], good["state"][i][k])


def test_param_groups_have_their_own_hyperparameters_and_none_grads_skip():
    decayed, plain = np.ones(3), np.ones(2)
    opt = fastopt.SGD([{"params": [decayed], "weight_decay": 0.5}, {"params": [plain]}], lr=0.1)
    opt.step([np.zeros(3), None])
    np.testing.assert_allclose(decayed, 1 - 0.1 * 0.5)
    assert np.array_equal(plain, np.ones(2)) and 1 not in opt.state
    opt.add_param_group({"params": [np.ones(1)], "lr": 1.0})
    assert opt.param_groups[2]["momentum"] == 0.0  # defaults fill what the group leaves out


def test_changing_hyperparameters_does_not_recompile():
    from fastopt.backends.cpu import optim as cpu_optim

    p = np.ones(10, np.float32)
    opt = fastopt.Adam([p], lr=1e-3, backend="cpu")
    opt.step([np.ones(10, np.float32)])
    compiled = len(cpu_optim._kernels("adam", (True, True, False))[0].serial.signatures)
    for lr, betas, amsgrad in [(0.1, (0.5, 0.9), True), (1e-5, (0.0, 0.0), False),
                               (3.0, (0.99, 0.9999), True)]:
        opt.param_groups[0].update(lr=lr, betas=betas, amsgrad=amsgrad, weight_decay=lr)
        opt.step([np.ones(10, np.float32)])
    assert len(cpu_optim._kernels("adam", (True, True, False))[0].serial.signatures) == compiled


def test_sgd_momentum_switched_on_midway_starts_its_buffer_from_the_gradient():
    torch = pytest.importorskip("torch")
    p, tp = np.ones(3), torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt, topt = fastopt.SGD([p], lr=0.1, backend="numpy"), torch.optim.SGD([tp], lr=0.1)
    for t, momentum in enumerate([0.0, 0.0, 0.9, 0.9]):
        opt.param_groups[0]["momentum"] = topt.param_groups[0]["momentum"] = momentum
        g = np.full(3, t + 1.0)
        opt.step([g])
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-14)


@pytest.mark.parametrize("backend", [b for b in AVAILABLE if b != "cuda"])
@pytest.mark.parametrize("name", list(CLASSES))
def test_a_reused_gradient_buffer_and_a_new_one_give_the_functional_bits(backend, name):
    # The class binds a parameter's kernel to its gradient buffer and reuses it while the same
    # buffer comes back; a new buffer, or a state array replaced, binds again.
    options = RICHEST[name]
    param, grads = problem((5, 7), np.float32, 6)
    expected, state = param.copy(), new_state(name, options, param)
    mu_product = None
    for t, g in enumerate(grads, start=1):
        kwargs = dict(step=t, lr=LR[name], backend=backend, **options)
        if name == "nadam":
            mu_product = functional.nadam(expected, g, *state, mu_product=mu_product, **kwargs)
        else:
            getattr(functional, name)(expected, g, *state, **kwargs)
    p, buffer = param.copy(), np.empty_like(param)
    opt = CLASSES[name]([p], lr=LR[name], backend=backend, **options)
    for t, g in enumerate(grads, start=1):
        if t == 4:  # a state array replaced by an equal copy: the step must use the new one
            arrays = [k for k, v in opt.state[0].items() if hasattr(v, "shape")]
            opt.state[0][arrays[0]] = opt.state[0][arrays[0]].copy()
        if t in (3, 5):
            opt.step([g.copy()])  # a new buffer
        else:
            buffer[...] = g
            opt.step([buffer])
    assert p.tobytes() == expected.tobytes()


def test_a_list_hyperparameter_changed_in_place_is_checked_and_used():
    p = np.ones(3, np.float32)
    opt = fastopt.Adam([p], lr=0.1)
    opt.param_groups[0]["betas"] = [0.9, 0.999]
    opt.step([np.ones(3, np.float32)])
    opt.param_groups[0]["betas"][0] = 1.5
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        opt.step([np.ones(3, np.float32)])
    assert opt.state[0]["step"] == 1
    opt.param_groups[0]["betas"][0] = 0.5  # a valid change in place takes effect
    expected, m, v = p.copy(), opt.state[0]["exp_avg"].copy(), opt.state[0]["exp_avg_sq"].copy()
    functional.adam(expected, np.ones(3, np.float32), m, v, step=2, lr=0.1, betas=(0.5, 0.999))
    opt.step([np.ones(3, np.float32)])
    assert p.tobytes() == expected.tobytes()


@pytest.mark.parametrize("backend", HOST)
def test_an_arena_of_gradients_steps_parameters_that_are_segments_of_one_arena(backend):
    shapes = [(5, 3), (3,), (2, 2)]
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    expected_arena, arena = fastopt.FlatParams(values), fastopt.FlatParams(values)
    grads = arena.zeros_like()
    grads.data[...] = rng.standard_normal(grads.size).astype(np.float32)

    def groups(a):
        return [{"params": a.segment(0, 1)}, {"params": a.segment(1, 3), "weight_decay": 0.0}]

    expected = fastopt.AdamW(groups(expected_arena), lr=0.1, backend=backend)
    expected.step([grads.segment(0, 1), grads.segment(1, 3)], max_norm=1.0)
    opt = fastopt.AdamW(groups(arena), lr=0.1, backend=backend)
    info = opt.step(grads, max_norm=1.0)
    assert not info.skipped
    assert arena.data.tobytes() == expected_arena.data.tobytes()
    other = fastopt.FlatParams([np.zeros(4, np.float32), np.zeros(2, np.float32)])
    opt = fastopt.SGD([{"params": other.segment(0, 1)}, {"params": other.segment(1, 2)}],
                      backend=backend)
    with pytest.raises(ValueError, match=r"params\[0\] is not"):
        opt.step(grads)
