"""fastopt.torch against torch.optim: the same training, state dicts both ways, GradScaler."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
fastopt_torch = pytest.importorskip("fastopt.torch")

from conftest import HOST  # noqa: E402

#: (class name, constructor keywords): every torch optimizer, plain and with its options.
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.05, lr_decay=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-2, maximize=True)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("Adamax", dict(lr=1e-2, weight_decay=1e-2)),
    ("NAdam", dict(lr=1e-2)),
    ("NAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=1e-2, weight_decay=1e-2)),
    ("RAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    ("Adadelta", dict(lr=1.0, weight_decay=1e-2)),
    ("Rprop", dict(lr=1e-2)),
    ("ASGD", dict(lr=1e-2, weight_decay=1e-3, t0=20)),
]
IDS = [f"{n}-{','.join(o)}" for n, o in CASES]
BACKEND = HOST[-1] if HOST else "numpy"


def model_and_data(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    model = model.to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.5)
    X = torch.randn(64, 6, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (64,), generator=gen)
    return model, X, y


def train(make_optimizer, dtype=torch.float64, steps=50, scheduler=False, seed=0):
    model, X, y = model_and_data(dtype, seed)
    opt = make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5) if scheduler else None
    for t in range(steps):
        batch = slice(8 * (t % 8), 8 * (t % 8) + 8)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X[batch]), y[batch])
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return model, opt


@pytest.fixture
def float64_default():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch's scalar state (step, mu_product) in float64
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("scheduler", [False, True], ids=["constant", "StepLR"])
@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_training_equals_torch_optim(float64_default, name, options, scheduler):
    ours, opt = train(lambda p: getattr(fastopt_torch, name)(p, backend=BACKEND, **options),
                      scheduler=scheduler)
    theirs, _ = train(lambda p: getattr(torch.optim, name)(p, foreach=False, **options),
                      scheduler=scheduler)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12,
                                   atol=1e-14)
    assert isinstance(opt, torch.optim.Optimizer) and opt.skipped_steps == 0


@pytest.mark.parametrize("name,options", [CASES[1], CASES[7], CASES[9], CASES[11], CASES[17]],
                         ids=[IDS[1], IDS[7], IDS[9], IDS[11], IDS[17]])
def test_state_dicts_move_between_fastopt_and_torch(float64_default, name, options):
    """Ten steps with one, the state dict loaded into the other, ten more: both ways, the same
    parameters as twenty steps of torch alone."""
    reference, _ = train(lambda p: getattr(torch.optim, name)(p, foreach=False, **options),
                         steps=20)
    makers = {"fastopt": lambda p: getattr(fastopt_torch, name)(p, backend=BACKEND, **options),
              "torch": lambda p: getattr(torch.optim, name)(p, foreach=False, **options)}
    for first, second in (("fastopt", "torch"), ("torch", "fastopt")):
        model, opt = train(makers[first], steps=10)
        saved = opt.state_dict()
        model2, X, y = model_and_data(torch.float64)
        model2.load_state_dict(model.state_dict())
        opt2 = makers[second](model2.parameters())
        opt2.load_state_dict(saved)
        for t in range(10, 20):
            batch = slice(8 * (t % 8), 8 * (t % 8) + 8)
            opt2.zero_grad()
            torch.nn.functional.cross_entropy(model2(X[batch]), y[batch]).backward()
            opt2.step()
        for a, b in zip(model2.parameters(), reference.parameters()):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12,
                                       atol=1e-14, err_msg=f"{first} then {second}")


def test_grad_scaler_fused_path_unscales_and_skips_inside_the_step(float64_default):
    """torch.amp.GradScaler on the CPU: the scale divided out inside fastopt's step gives torch's
    result (float64, where the two agree to rounding); an inf in the gradients skips the step and
    is counted."""
    results = {}
    for kind in ("fastopt", "torch"):
        model, X, y = model_and_data(torch.float64)
        cls = getattr(fastopt_torch if kind == "fastopt" else torch.optim, "Adam")
        opt = cls(model.parameters(), lr=1e-2, **({"backend": BACKEND} if kind == "fastopt"
                                                  else {"foreach": False}))
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for t in range(12):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[:16]), y[:16])
            scaler.scale(loss).backward()
            if t == 5:
                next(model.parameters()).grad[0, 0] = float("inf")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                scaler.step(opt)
            scaler.update()
        results[kind] = [p.detach().numpy().copy() for p in model.parameters()], opt
    (ours, opt), (theirs, _) = results["fastopt"], results["torch"]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert opt.skipped_steps == 1


def test_a_nonfinite_gradient_skips_the_step_and_warns_once():
    model, X, y = model_and_data(torch.float32)
    opt = fastopt_torch.SGD(model.parameters(), lr=0.1, momentum=0.9, backend=BACKEND)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(RuntimeWarning, match="skipped"):
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            next(model.parameters()).grad[1, 1] = float("nan")
            opt.step()
    assert opt.skipped_steps == 3 and not opt.state
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_torch_constructor_checks_and_unsupported_options():
    params = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match="learning rate"):
        fastopt_torch.Adam(params, lr=-1.0)
    with pytest.raises(ValueError, match="differentiable"):
        fastopt_torch.Adam(params, differentiable=True)
    with pytest.raises(TypeError, match="Adam"):
        fastopt_torch.Adam(params, nonsense=1)
    opt = fastopt_torch.Adam(params, 0.5, (0.8, 0.9))  # torch's positional arguments
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["betas"] == (0.8, 0.9)
