"""fastopt.torch with ``flat=True`` (one arena per group, one launch per step) and with bfloat16 and
float16 parameters (float32 master weights in the optimizer state)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
fastopt_torch = pytest.importorskip("fastopt.torch")

from conftest import HOST  # noqa: E402

BACKEND = HOST[-1] if HOST else "numpy"


def model_and_data(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model = model.to(dtype)
    X = torch.randn(64, 6, generator=gen).to(dtype)
    y = torch.randint(0, 3, (64,), generator=gen)
    return model, X, y


def train(make_optimizer, dtype=torch.float32, steps=20, model_zero_grad_at=(), load_at=()):
    model, X, y = model_and_data(dtype)
    opt = make_optimizer(model.parameters())
    for t in range(steps):
        if t in model_zero_grad_at:
            model.zero_grad()  # set_to_none: backward makes new gradient tensors
        else:
            opt.zero_grad()
        batch = slice(8 * (t % 8), 8 * (t % 8) + 8)
        torch.nn.functional.cross_entropy(model(X[batch]).float(), y[batch]).backward()
        opt.step()
        if t in load_at:  # state tensors replaced by torch's load_state_dict
            opt.load_state_dict(opt.state_dict())
    return model, opt


@pytest.mark.parametrize("name,options", [("AdamW", dict(lr=1e-2, weight_decay=0.1)),
                                          ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
                                          ("NAdam", dict(lr=1e-2))])
def test_flat_groups_step_as_the_parameters_one_by_one(name, options, monkeypatch):
    cls = getattr(fastopt_torch, name)
    plain, _ = train(lambda p: cls(p, backend=BACKEND, **options))
    calls = []
    kernel = getattr(fastopt_torch.functional, cls.algorithm.name)
    monkeypatch.setattr(fastopt_torch.functional, cls.algorithm.name,
                        lambda *a, **k: calls.append(a[0].shape) or kernel(*a, **k))
    flat, opt = train(lambda p: cls(p, backend=BACKEND, flat=True, **options),
                      model_zero_grad_at=(3,), load_at=(5,))
    for a, b in zip(plain.parameters(), flat.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    total = sum(p.numel() for p in flat.parameters())
    assert calls == [(total,)] * 20, "one launch over the arena per step"
    arena = opt._arenas[id(opt.param_groups[0]["params"][0])]
    for k, p in enumerate(flat.parameters()):
        assert p.data_ptr() == arena.data[arena.offsets[k]:].data_ptr()
        assert p.grad.data_ptr() == arena.grad[arena.offsets[k]:].data_ptr()
    # torch's own format: the state loads into torch.optim and steps on identically.
    state = opt.state_dict()
    reference = getattr(torch.optim, name)(flat.parameters(), **options)
    reference.load_state_dict(state)
    assert set(reference.state_dict()["state"][0]) == set(state["state"][0])


def test_flat_falls_back_when_a_gradient_is_missing():
    model, X, y = model_and_data()
    opt = fastopt_torch.Adam(model.parameters(), lr=1e-2, flat=True, backend=BACKEND)
    torch.nn.functional.cross_entropy(model(X), y).backward()
    model[2].bias.grad = None
    before = model[2].bias.detach().clone()
    opt.step()
    assert torch.equal(model[2].bias, before) and model[2].bias not in opt.state
    assert int(opt.state[model[0].weight]["step"]) == 1
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(X), y).backward()
    opt.step()  # step counts now differ: one by one, on the arena's views
    assert int(opt.state[model[0].weight]["step"]) == 2
    assert int(opt.state[model[2].bias]["step"]) == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("flat", [False, True])
def test_16bit_parameters_keep_float32_master_weights(dtype, flat):
    """Given the same gradients, the master weights follow torch.optim.AdamW in float32 and the
    parameters are the master weights rounded to their format."""
    model, _, _ = model_and_data(dtype)
    params = list(model.parameters())
    masters = [p.detach().float().clone().requires_grad_() for p in params]
    opt = fastopt_torch.AdamW(params, lr=1e-2, weight_decay=0.1, flat=flat, backend=BACKEND)
    reference = torch.optim.AdamW(masters, lr=1e-2, weight_decay=0.1, foreach=False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        opt.zero_grad()
        for p, m in zip(params, masters):
            g = torch.randn(p.shape, generator=gen).to(dtype)
            p.grad = g if not flat else p.grad.copy_(g)
            m.grad = g.float()
        opt.step()
        reference.step()
    for p, m in zip(params, masters):
        state = opt.state[p]
        assert state["master"].dtype == torch.float32 and state["exp_avg"].dtype == torch.float32
        torch.testing.assert_close(state["master"], m.detach(), rtol=2e-5, atol=1e-6)
        assert torch.equal(p.detach(), state["master"].to(dtype))  # rounded to nearest even
    if dtype == torch.bfloat16:  # the same bits as fastopt.lowp's rounding
        bits = np.from_dlpack(params[0].detach().view(torch.int16)).view(np.uint16)
        np.testing.assert_array_equal(bits, fastopt_torch.lowp.to_bfloat16(
            opt.state[params[0]]["master"].numpy()))


def test_16bit_nonfinite_gradient_skips_and_flatten_helper():
    model, _, _ = model_and_data(torch.bfloat16)
    opt = fastopt_torch.flatten(model, fastopt_torch.Adam, lr=1e-2)
    assert opt.flat
    opt.zero_grad()  # the arena's gradients, zeroed
    for p in model.parameters():
        p.grad.fill_(0.5)
    next(model.parameters()).grad[0, 0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step()
    assert opt.skipped_steps == 1
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    with pytest.raises(TypeError, match="master weights"):
        fastopt_torch.Adam([torch.zeros(3, dtype=torch.bfloat16, device="meta")])
