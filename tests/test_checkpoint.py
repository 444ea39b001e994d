"""Checkpoints (save/load: round trip, bit-identical resume on every backend, portability, refusal
of bad files, atomic writes) and the torch.optim state-dict converters."""

import json
import os

import numpy as np
import pytest

import fastopt
from cases import LR, OPTIONS, TOLERANCE, problem
from conftest import AVAILABLE, to_backend, to_host
from fastopt.optim import checkpoint, optimizers
from fastopt.optim.algorithms import ALGORITHMS
from fastopt.optim.checkpoint import from_torch_state_dict, load, save, to_torch_state_dict

CLASSES = optimizers.CLASSES
RICHEST = {name: max(OPTIONS[name], key=lambda o: sum(bool(v) for v in o.values()))
           for name in OPTIONS}  # the option set that uses the most state
SHAPES = [(33,), (4, 3)]
HOST_SCALARS = {name for a in ALGORITHMS.values() for name in a.host_state}


def make(name, backend, params, lr=None):
    """An optimizer over two groups (the second with half the learning rate) of ``params``."""
    lr = LR[name] if lr is None else lr
    return CLASSES[name]([{"params": [params[0]]}, {"params": [params[1]], "lr": lr / 2}],
                         lr=lr, backend=backend, **RICHEST[name])


def trajectory(dtype, steps):
    """Initial parameters and per-step gradients; parameter 1 has no gradient at step 1, so the
    two parameters' step counts differ."""
    params0, grads = zip(*(problem(shape, dtype, steps, seed) for seed, shape
                           in enumerate(SHAPES)))
    return list(params0), [[grads[0][t], None if t == 0 else grads[1][t]] for t in range(steps)]


def run(opt, backend, grads):
    for gs in grads:
        opt.step([None if g is None else to_backend(backend, g) for g in gs])


def assert_same_state(a, b):
    """Two state dicts equal bit for bit (values, dtypes and hyperparameter types)."""
    assert a["param_groups"] == b["param_groups"]
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        assert [type(v) for v in ga.values()] == [type(v) for v in gb.values()]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        assert a["state"][i].keys() == b["state"][i].keys()
        for key, value in a["state"][i].items():
            if key == "step":
                assert value == b["state"][i][key] and type(b["state"][i][key]) is int
            elif key in HOST_SCALARS:  # NAdam's mu_product, ASGD's eta and mu
                assert value == b["state"][i][key] and type(b["state"][i][key]) is float
            else:
                assert value.dtype == b["state"][i][key].dtype, (i, key)
                assert np.array_equal(value, b["state"][i][key]), (i, key)


def snapshot(opt):
    return opt.state_dict(), [to_host(p).copy() for g in opt.param_groups for p in g["params"]]


def assert_unchanged(opt, before):
    state, params = snapshot(opt)
    assert_same_state(state, before[0])
    for p, q in zip(params, before[1]):
        assert np.array_equal(p, q)


@pytest.fixture
def saved_adam(tmp_path):
    """A checkpoint of an Adam optimizer after 2 steps: (path, optimizer, its arrays)."""
    params0, grads = trajectory(np.float32, 2)
    params = [p.copy() for p in params0]
    opt = make("adam", "numpy", params)
    run(opt, "numpy", grads)
    path = tmp_path / "opt.npz"
    save(path, opt, extra={"epoch": 7})
    return path, opt, params


def fresh_adam_with_state():
    """A different Adam optimizer of the same layout, with some state of its own."""
    params = [np.full(s, 0.5, np.float32) for s in SHAPES]
    opt = make("adam", "numpy", params, lr=0.123)
    opt.step([np.ones(s, np.float32) for s in SHAPES])
    return opt


# --- round trip and resume ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLASSES))
def test_round_trip_is_bit_exact(tmp_path, name):
    params0, grads = trajectory(np.float64, 2)
    params = [p.copy() for p in params0]
    opt = make(name, "numpy", params)
    run(opt, "numpy", grads)
    extra = {"epoch": 3, "loss": 0.1 + 0.2, "tags": ("a", 1), "nested": {"x": [1.5, None, True]}}
    path = tmp_path / "ck.npz"
    assert save(path, opt, extra=extra) == str(path)
    ck = load(path)
    assert (ck.algorithm, ck.extra, ck.format_version) == (name, extra, 1)
    assert ck.optimizer_class == f"fastopt.optim.optimizers.{type(opt).__name__}"
    assert ck.fastopt_version == fastopt.__version__ and ck.backend == "numpy"
    assert_same_state(ck.state_dict, opt.state_dict())
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(ck.params, params))
    with np.load(path, allow_pickle=False) as raw:  # plain numpy, no pickle, reads every entry
        meta = json.loads(bytes(raw["__fastopt__"]))
        assert meta["format"] == "fastopt-checkpoint" and meta["version"] == 1
        assert np.array_equal(raw["param.0"], params[0])
        assert bytes(raw["__checksum__"]).startswith(b"sha256:")


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", list(CLASSES))
def test_resume_from_checkpoint_is_bit_identical(tmp_path, backend, name):
    params0, grads = trajectory(np.float32, 6)
    run_a = [to_backend(backend, p) for p in params0]
    a = make(name, backend, run_a)
    run(a, backend, grads)  # uninterrupted

    run_b = [to_backend(backend, p) for p in params0]
    b = make(name, backend, run_b)
    run(b, backend, grads[:3])
    save(tmp_path / "b.npz", b)
    del b, run_b  # "the process dies": only the file remains

    run_c = [to_backend(backend, np.zeros_like(p)) for p in params0]
    c = make(name, backend, run_c, lr=123.0)  # hyperparameters come from the checkpoint
    load(tmp_path / "b.npz", c)
    assert c.param_groups[1]["lr"] == LR[name] / 2
    run(c, backend, grads[3:])

    for pa, pc in zip(run_a, run_c):
        assert np.array_equal(to_host(pa), to_host(pc))
    assert_same_state(a.state_dict(), c.state_dict())
    assert c.state_dict()["state"][0]["step"] == 6 and c.state_dict()["state"][1]["step"] == 5


@pytest.mark.parametrize("target", [b for b in AVAILABLE if b != "numpy"])
def test_checkpoint_saved_on_numpy_continues_on_other_backends(tmp_path, target):
    params0, grads = trajectory(np.float32, 6)
    ref = [p.copy() for p in params0]
    opt = make("adam", "numpy", ref)
    run(opt, "numpy", grads[:3])
    save(tmp_path / "numpy.npz", opt)
    moved = [to_backend(target, np.zeros_like(p)) for p in params0]
    other = make("adam", target, moved)
    load(tmp_path / "numpy.npz", other)
    assert other.backend == target
    run(opt, "numpy", grads[3:])
    run(other, target, grads[3:])
    for p, q in zip(ref, moved):  # different backends round differently: float32 tolerance
        np.testing.assert_allclose(to_host(q), p, *TOLERANCE[np.dtype(np.float32)])


def test_save_without_params_restores_state_only(tmp_path):
    params = [np.ones(s, np.float32) for s in SHAPES]
    opt = make("rmsprop", "numpy", params)
    opt.step([np.ones(s, np.float32) for s in SHAPES])
    save(tmp_path / "state.npz", opt, params=False)
    ck = load(tmp_path / "state.npz")
    assert ck.params is None
    with np.load(tmp_path / "state.npz") as raw:
        assert not [f for f in raw.files if f.startswith("param.")]
    mine = [np.full(s, 9.0, np.float32) for s in SHAPES]
    other = make("rmsprop", "numpy", mine)
    load(tmp_path / "state.npz", other)
    assert_same_state(other.state_dict(), opt.state_dict())
    assert all((p == 9.0).all() for p in mine)


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name,options", [("rprop", dict(etas=(0.4, 1.3), step_sizes=(1e-4, 0.5))),
                                          ("asgd", dict(t0=2.0, lambd=1e-2, weight_decay=0.1))])
def test_rprop_and_asgd_checkpoints_resume_bit_identically(tmp_path, backend, name, options):
    """Rprop's step sizes and previous gradients, and ASGD's average with its host scalars eta
    and mu, survive a checkpoint bit for bit."""
    params0, grads = trajectory(np.float32, 6)

    def make_run(params, lr):
        return CLASSES[name]([{"params": [params[0]]}, {"params": [params[1]], "lr": lr / 2}],
                                  lr=lr, backend=backend, **options)

    run_a = [to_backend(backend, p) for p in params0]
    a = make_run(run_a, TORCH_LR[name])
    run(a, backend, grads)
    run_b = [to_backend(backend, p) for p in params0]
    b = make_run(run_b, TORCH_LR[name])
    run(b, backend, grads[:3])
    save(tmp_path / "b.npz", b)
    ck = load(tmp_path / "b.npz")
    assert sorted(ck.state_dict["state"][0]) == sorted(("step", *ALGORITHMS[name].state,
                                                        *ALGORITHMS[name].host_state))
    run_c = [to_backend(backend, np.zeros_like(p)) for p in params0]
    c = make_run(run_c, 123.0)
    load(tmp_path / "b.npz", c)
    assert_same_state(c.state_dict(), b.state_dict())
    run(c, backend, grads[3:])
    for pa, pc in zip(run_a, run_c):
        assert to_host(pa).tobytes() == to_host(pc).tobytes()
    assert_same_state(a.state_dict(), c.state_dict())


# --- mixed precision: float16/bfloat16 parameters with float32 master weights -----------------

MIXED = [("nadam", np.float16, "bfloat16", "stochastic"), ("sgd", np.uint16, "float32", "nearest"),
         ("adagrad", np.float16, "float32", "stochastic"), ("adamw", np.uint16, "bfloat16",
                                                            "stochastic")]


def mixed_trajectory(dtype, steps):
    """16-bit parameters (uint16: bfloat16 bits) and float32 gradients, parameter 1 without a
    gradient at step 1."""
    params0, grads = trajectory(np.float32, steps)
    to16 = (lambda a: a.astype(np.float16)) if dtype == np.float16 else fastopt.lowp.to_bfloat16
    return [to16(p) for p in params0], grads


def make_mixed(name, backend, params, rounding, state_dtype, lr=None):
    lr = LR[name] if lr is None else lr
    return CLASSES[name]([{"params": [params[0]]}, {"params": [params[1]], "lr": lr / 2}], lr=lr,
                         backend=backend, rounding=rounding, seed=5, state_dtype=state_dtype,
                         **RICHEST[name])


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name,dtype,state_dtype,rounding", MIXED)
def test_mixed_precision_checkpoint_resumes_bit_identically(tmp_path, backend, name, dtype,
                                                            state_dtype, rounding):
    """Master weights, 16-bit state and the random stream of stochastic rounding survive a
    checkpoint: the resumed run is the uninterrupted one, bit for bit, on every backend; and a
    file saved on numpy continues there too (mixed-precision steps give the same bits on every
    backend)."""
    params0, grads = mixed_trajectory(dtype, 6)
    uninterrupted = [to_backend(backend, p) for p in params0]
    a = make_mixed(name, backend, uninterrupted, rounding, state_dtype)
    run(a, backend, grads)

    on_numpy = [p.copy() for p in params0]
    b = make_mixed(name, "numpy", on_numpy, rounding, state_dtype)
    run(b, "numpy", grads[:3])
    save(tmp_path / "mixed.npz", b)
    ck = load(tmp_path / "mixed.npz")
    assert ck.state_dict["state"][0]["master"].dtype == np.float32
    assert ck.params[0].dtype == dtype

    resumed = [to_backend(backend, np.zeros_like(p)) for p in params0]
    c = make_mixed(name, backend, resumed, rounding, state_dtype, lr=123.0)
    load(tmp_path / "mixed.npz", c)
    run(c, backend, grads[3:])
    for pa, pc in zip(uninterrupted, resumed):
        assert to_host(pa).tobytes() == to_host(pc).tobytes()
    assert_same_state(a.state_dict(), c.state_dict())


def test_mixed_precision_checkpoint_needs_the_same_state_dtype(tmp_path):
    params0, grads = mixed_trajectory(np.float16, 2)
    opt = make_mixed("nadam", "numpy", [p.copy() for p in params0], "nearest", "bfloat16")
    run(opt, "numpy", grads)
    save(tmp_path / "bf16.npz", opt)
    target = make_mixed("nadam", "numpy", [p.copy() for p in params0], "nearest", "float32")
    run(target, "numpy", grads[:1])
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"bf16\.npz: does not fit this optimizer: "
                                         r".*\['exp_avg'\]: expected shape \(33,\) and dtype "
                                         r"float32, got \(33,\) uint16"):
        load(tmp_path / "bf16.npz", target)
    assert_unchanged(target, before)


# --- refusals: the file and the optimizer are checked before anything changes -------------------


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["state array", "parameter", "metadata"])
def test_flipped_byte_is_refused_and_the_optimizer_is_unchanged(saved_adam, where):
    path, opt, params = saved_adam
    data = path.read_bytes()
    needle = {"state array": opt.state_dict()["state"][0]["exp_avg_sq"].tobytes(),
              "parameter": params[1].tobytes(), "metadata": b'"algorithm": "adam"'}[where]
    offset = data.find(needle)
    assert offset > 0
    flip_byte(path, offset + len(needle) // 2)
    target = fresh_adam_with_state()
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"opt\.npz: checksum mismatch: the file is corrupted"):
        load(path, target)
    assert_unchanged(target, before)


def test_tampering_that_keeps_zip_crcs_valid_is_caught_by_the_checksum(saved_adam, tmp_path):
    path, opt, _ = saved_adam
    with np.load(path) as raw:
        entries = {name: raw[name] for name in raw.files}
    entries["state.1.exp_avg"] = entries["state.1.exp_avg"] * 2  # same dtype and shape
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **entries)
    with pytest.raises(ValueError, match=r"tampered\.npz: checksum mismatch"):
        load(tampered)


@pytest.mark.parametrize("keep", [0.5, 0.99, 1 / 3])
def test_truncated_file_is_refused(saved_adam, keep):
    path, _, _ = saved_adam
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    target = fresh_adam_with_state()
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"opt\.npz: not a readable checkpoint: the archive is "
                                         r"truncated or corrupted"):
        load(path, target)
    assert_unchanged(target, before)


@pytest.mark.parametrize("content", ["plain npz", "npy", "text", "empty"])
def test_other_files_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "other.npz"
    if content == "plain npz":
        with open(path, "wb") as f:
            np.savez(f, exp_avg=np.zeros(3))
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        path.write_bytes(b"epoch=3\n" if content == "text" else b"")
    with pytest.raises(ValueError, match=r"other\.npz: not a fastopt checkpoint"):
        load(path)


def rewrite_metadata(path, change):
    with np.load(path) as raw:
        entries = {name: raw[name] for name in raw.files}
    meta = json.loads(bytes(entries["__fastopt__"]))
    change(meta)
    entries["__fastopt__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **entries)


def test_unknown_version_is_refused(saved_adam):
    path, _, _ = saved_adam
    rewrite_metadata(path, lambda meta: meta.update(version=2))
    with pytest.raises(ValueError, match=r"opt\.npz: unsupported version 2 .* reads versions 1 "
                                         r"to 1"):
        load(path)


def test_other_format_name_is_refused(saved_adam):
    path, _, _ = saved_adam
    rewrite_metadata(path, lambda meta: meta.update(format="someone-else"))
    with pytest.raises(ValueError, match="not a fastopt checkpoint"):
        load(path)


@pytest.mark.parametrize("other", ["sgd", "adamw"])
def test_state_of_another_algorithm_is_refused(saved_adam, other):
    path, _, _ = saved_adam
    params = [np.full(s, 0.5, np.float32) for s in SHAPES]
    target = make(other, "numpy", params)
    target.step([np.ones(s, np.float32) for s in SHAPES])
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"opt\.npz: holds adam state .* but the optimizer is "
                                         rf"{type(target).__name__} \({other}\)"):
        load(path, target)
    assert_unchanged(target, before)


@pytest.mark.parametrize("layout,message", [
    ([(33,)], "holds 2 parameters, the optimizer has 1"),
    ([(33,), (3, 4)], r"params\[1\] was saved with shape \(4, 3\)"),
    ([(33,), (4, 3), (2,)], "holds 2 parameters, the optimizer has 3"),
])
def test_checkpoint_of_other_parameters_is_refused(saved_adam, layout, message):
    path, _, _ = saved_adam
    params = [np.full(s, 0.5, np.float32) for s in layout]
    target = fastopt.Adam(params, lr=0.5)
    target.step([np.ones(s, np.float32) for s in layout])
    before = snapshot(target)
    with pytest.raises(ValueError, match=message):
        load(path, target)
    assert_unchanged(target, before)


def test_state_that_does_not_fit_is_refused_without_params_too(tmp_path):
    opt = fastopt.Adam([np.ones(5, np.float32)], lr=0.1)
    opt.step([np.ones(5, np.float32)])
    save(tmp_path / "s.npz", opt, params=False)
    for param in (np.ones(6, np.float32), np.ones(5, np.float64)):  # other shape, other dtype
        target = fastopt.Adam([param], lr=0.2)
        target.step([np.ones_like(param)])
        before = snapshot(target)
        with pytest.raises(ValueError, match=r"s\.npz: does not fit this optimizer: "
                                             r"state_dict\['state'\]\[0\]\['exp_avg'\]"):
            load(tmp_path / "s.npz", target)
        assert_unchanged(target, before)


# --- atomic writes -----------------------------------------------------------------------------


def test_interrupted_save_keeps_the_previous_checkpoint_and_leaves_no_temp_file(
        saved_adam, monkeypatch):
    path, opt, _ = saved_adam
    previous = path.read_bytes()
    real_write_entry = checkpoint._write_entry
    written = []

    def dies_midway(zf, name, array):
        if len(written) == 3:  # part of the file is on disk: the process is interrupted
            raise KeyboardInterrupt
        real_write_entry(zf, name, array)
        written.append(name)

    monkeypatch.setattr(checkpoint, "_write_entry", dies_midway)
    run(opt, "numpy", [[np.ones(s, np.float32) for s in SHAPES]])
    with pytest.raises(KeyboardInterrupt):
        save(path, opt, extra={"epoch": 8})
    assert written and path.read_bytes() == previous
    assert os.listdir(path.parent) == [path.name]
    assert load(path).extra == {"epoch": 7}


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_save_keeps_the_previous_checkpoint(saved_adam, monkeypatch, failing):
    path, opt, _ = saved_adam
    previous = path.read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, failing, fail)
    with pytest.raises(OSError, match="No space left"):
        save(path, opt)
    monkeypatch.undo()
    assert path.read_bytes() == previous and os.listdir(path.parent) == [path.name]


def test_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch):
    opt = fastopt.SGD([np.ones(3)], lr=0.1, momentum=0.9)
    opt.step([np.ones(3)])
    real_write_entry = checkpoint._write_entry

    def dies_after_the_metadata(zf, name, array):
        if name != "__fastopt__":
            raise KeyboardInterrupt
        real_write_entry(zf, name, array)

    monkeypatch.setattr(checkpoint, "_write_entry", dies_after_the_metadata)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "first.npz", opt)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_extra_must_be_json_and_nothing_is_written_otherwise(tmp_path):
    opt = fastopt.SGD([np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match=r"extra\['model'\]: a checkpoint stores JSON values only"):
        save(tmp_path / "x.npz", opt, extra={"model": object()})
    with pytest.raises(TypeError, match="extra: expected a dict"):
        save(tmp_path / "x.npz", opt, extra=[1, 2])
    assert os.listdir(tmp_path) == []


# --- torch.optim converters --------------------------------------------------------------------

TORCH_CASES = [
    ("adam", dict(amsgrad=True, weight_decay=0.1)),
    ("adam", dict(maximize=True)),
    ("adamw", dict(amsgrad=False, weight_decay=0.1)),
    ("adamw", dict(amsgrad=True, weight_decay=0.05, betas=(0.8, 0.99))),
    ("sgd", dict(momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("sgd", dict(momentum=0.9, nesterov=True)),
    ("rmsprop", dict(centered=True, momentum=0.9, weight_decay=0.1)),
    ("rmsprop", dict(alpha=0.9)),
    ("adagrad", dict(lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.1)),
    ("adamax", dict(weight_decay=0.1, betas=(0.8, 0.99))),
    ("adamax", dict(maximize=True)),
    ("nadam", dict(weight_decay=0.1, momentum_decay=0.01)),
    ("nadam", dict(decoupled_weight_decay=True, weight_decay=0.1)),
    ("radam", dict(weight_decay=0.1)),  # 3 + 3 steps: rectified from step 6
    ("radam", dict(decoupled_weight_decay=True, weight_decay=0.1, maximize=True)),
    ("adadelta", dict(weight_decay=0.1, rho=0.8)),
    ("adadelta", dict(eps=1e-4)),
    ("rprop", dict(etas=(0.4, 1.3), step_sizes=(1e-4, 0.5))),
    ("rprop", dict(maximize=True)),
    ("asgd", dict(t0=2.0, lambd=1e-2, weight_decay=0.1)),  # averaging (mu < 1) from step 3
    ("asgd", dict(alpha=0.5, maximize=True)),
]
TORCH_NAMES = {name: a.torch for name, a in ALGORITHMS.items() if a.torch}
TORCH_LR = {**LR, "asgd": 0.05}
#: float64 throughout; torch and the numpy reference differ only in rounding (test_torch_oracle).
#: Torch keeps NAdam's mu_product (and ASGD's eta and mu) in its default dtype, float32 unless set,
#: which would alone move the parameters by ~1e-9: those cases run with torch's default dtype
#: float64.
RTOL, ATOL = 1e-12, 1e-14


@pytest.fixture(autouse=True)
def torch_default_dtype(request):
    """float64 as torch's default dtype for the NAdam and ASGD converter tests (see RTOL)."""
    name = getattr(request.node, "callspec", None) and request.node.callspec.params.get("name")
    if name not in ("nadam", "asgd"):
        yield
        return
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def torch_pair(name, options, params0, lr):
    """A fastopt (numpy backend) and a torch.optim optimizer over copies of ``params0``, two
    groups, the second with half the learning rate."""
    torch = pytest.importorskip("torch")
    ours = [p.copy() for p in params0]
    theirs = [torch.tensor(p, requires_grad=True) for p in params0]
    opt = CLASSES[name]([{"params": [ours[0]]}, {"params": [ours[1]], "lr": lr / 2}],
                              lr=lr, backend="numpy", **options)
    topt = getattr(torch.optim, TORCH_NAMES[name])(
        [{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": lr / 2}], lr=lr, foreach=False,
        **options)
    return opt, ours, topt, theirs


def step_both(opt, topt, theirs, grads):
    import torch

    for gs in grads:
        opt.step(gs)
        for p, g in zip(theirs, gs):
            p.grad = torch.tensor(g)
        topt.step()


def assert_close(ours, theirs, opt, topt, name):
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference.detach().numpy(), rtol=RTOL, atol=ATOL)
    converted = from_torch_state_dict(topt.state_dict(), name)
    mine = opt.state_dict()
    assert converted["param_groups"] == mine["param_groups"]
    for i, state in mine["state"].items():
        for key, value in state.items():
            if key == "step":
                assert converted["state"][i]["step"] == (0 if name == "sgd" else value)
            else:
                np.testing.assert_allclose(converted["state"][i][key], value, rtol=RTOL,
                                           atol=ATOL, err_msg=key)


@pytest.mark.parametrize("name,options", TORCH_CASES)
def test_fastopt_state_continues_in_torch(name, options):
    params0, grads = zip(*(problem(shape, np.float64, 6, seed) for seed, shape
                           in enumerate(SHAPES)))
    grads = [list(g) for g in zip(*grads)]
    opt, ours, _, _ = torch_pair(name, options, params0, TORCH_LR[name])
    for gs in grads[:3]:
        opt.step(gs)
    # torch starts from fastopt's parameters, with a wrong lr that the state dict overrides
    _, _, topt, theirs = torch_pair(name, options, ours, 123.0)
    torch_state = to_torch_state_dict(opt)
    topt.load_state_dict(torch_state)
    assert set(topt.param_groups[0]) == set(torch_state["param_groups"][0]) | {"params"}
    assert topt.param_groups[1]["lr"] == TORCH_LR[name] / 2
    if name in ("adam", "adamw"):
        assert topt.param_groups[0]["decoupled_weight_decay"] is (name == "adamw")
    if name in ("nadam", "radam"):
        assert topt.param_groups[0]["decoupled_weight_decay"] is options.get(
            "decoupled_weight_decay", False)
    if name != "sgd":
        assert topt.state[theirs[0]]["step"].dtype == __import__("torch").get_default_dtype()
        assert float(topt.state[theirs[0]]["step"]) == 3
    for key in ALGORITHMS[name].host_state:  # a tensor in torch, a float in fastopt
        assert float(topt.state[theirs[0]][key]) == opt.state[0][key]
    step_both(opt, topt, theirs, grads[3:])
    assert_close(ours, theirs, opt, topt, name)


@pytest.mark.parametrize("name,options", TORCH_CASES)
def test_torch_state_continues_in_fastopt(name, options):
    params0, grads = zip(*(problem(shape, np.float64, 6, seed) for seed, shape
                           in enumerate(SHAPES)))
    grads = [list(g) for g in zip(*grads)]
    torch = pytest.importorskip("torch")
    _, _, topt, theirs = torch_pair(name, options, params0, TORCH_LR[name])
    for gs in grads[:3]:
        for p, g in zip(theirs, gs):
            p.grad = torch.tensor(g)
        topt.step()
    opt, ours, _, _ = torch_pair(name, options, [p.detach().numpy() for p in theirs], 123.0)
    opt.load_state_dict(from_torch_state_dict(topt.state_dict(), name))
    assert opt.param_groups[1]["lr"] == TORCH_LR[name] / 2
    assert opt.state[0]["step"] == (0 if name == "sgd" else 3)
    for key in ALGORITHMS[name].host_state:
        assert type(opt.state[0][key]) is float
        assert opt.state[0][key] == float(topt.state[theirs[0]][key])
    step_both(opt, topt, theirs, grads[3:])
    assert_close(ours, theirs, opt, topt, name)


def test_checkpoint_converts_to_torch(saved_adam):
    torch = pytest.importorskip("torch")
    path, opt, params = saved_adam
    theirs = [torch.tensor(p) for p in params]
    topt = torch.optim.Adam([{"params": [theirs[0]]}, {"params": [theirs[1]]}])
    topt.load_state_dict(to_torch_state_dict(load(path)))
    assert topt.param_groups[1]["lr"] == LR["adam"] / 2
    assert np.array_equal(topt.state[theirs[0]]["exp_avg"].numpy(),
                          opt.state_dict()["state"][0]["exp_avg"])


def test_torch_sgd_momentum_buffer_none_starts_from_the_next_gradient():
    torch = pytest.importorskip("torch")
    group = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False, foreach=False, differentiable=False, fused=False, params=[0])
    converted = from_torch_state_dict({"state": {0: {"momentum_buffer": None}},
                                       "param_groups": [group]}, fastopt.SGD)
    assert converted["state"] == {0: {"step": 0}}
    p, tp = np.ones(3), torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt, topt = fastopt.SGD([p], lr=0.5, backend="numpy"), torch.optim.SGD([tp], lr=0.1)
    opt.load_state_dict(converted)
    topt.load_state_dict({"state": {0: {"momentum_buffer": None}}, "param_groups": [group]})
    for t in range(3):
        g = np.full(3, t + 1.0)
        opt.step([g])
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=RTOL)


def test_converters_refuse_the_wrong_algorithm():
    torch = pytest.importorskip("torch")
    t = torch.zeros(3, requires_grad=True)
    topt = torch.optim.AdamW([t])
    t.grad = torch.ones(3)
    topt.step()
    with pytest.raises(ValueError, match="decoupled_weight_decay=True is adamw state, not adam; "
                                         "use algorithm='adamw'"):
        from_torch_state_dict(topt.state_dict(), "adam")
    with pytest.raises(ValueError, match="unknown state 'exp_avg' for rmsprop"):
        from_torch_state_dict(topt.state_dict(), "rmsprop")
    with pytest.raises(ValueError, match="algorithm: expected one of"):
        from_torch_state_dict(topt.state_dict(), "adabelief")
    opt = fastopt.Adam([np.ones(3)])
    with pytest.raises(ValueError, match="the source holds adam state, got 'sgd'"):
        to_torch_state_dict(opt, algorithm="sgd")
    with pytest.raises(ValueError, match="algorithm: required"):
        to_torch_state_dict(opt.state_dict())


@pytest.mark.parametrize("name", ["lion", "lamb"])
def test_converters_refuse_optimizers_torch_lacks(name):
    pytest.importorskip("torch")
    opt = CLASSES[name]([np.ones(3, np.float32)], lr=0.1)
    opt.step([np.ones(3, np.float32)])
    with pytest.raises(ValueError, match=f"algorithm: torch.optim has no {name} optimizer"):
        to_torch_state_dict(opt)
    with pytest.raises(ValueError, match=f"algorithm: torch.optim has no {name} optimizer"):
        from_torch_state_dict(opt.state_dict(), name)


def test_mixed_precision_state_does_not_convert_to_torch():
    pytest.importorskip("torch")
    opt = fastopt.AdamW([np.ones(3, np.float16)], lr=0.1)
    opt.step([np.ones(3, np.float16)])
    with pytest.raises(ValueError, match=r"state\[0\]: holds float32 master weights"):
        to_torch_state_dict(opt)


def test_torch_nadam_mu_product_in_float32_converts_to_its_value():
    torch = pytest.importorskip("torch")
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.NAdam([t], lr=0.1)
    for _ in range(2):
        t.grad = torch.ones(3, dtype=torch.float64)
        topt.step()
    assert topt.state[t]["mu_product"].dtype == torch.float32  # the default dtype
    converted = from_torch_state_dict(topt.state_dict(), "nadam")
    assert converted["state"][0]["mu_product"] == float(topt.state[t]["mu_product"])
    assert converted["param_groups"][0]["decoupled_weight_decay"] is False
    opt = fastopt.NAdam([np.zeros(3)], backend="numpy")
    opt.load_state_dict(converted)  # loads, and continues from torch's value
    opt.step([np.ones(3)])
    assert opt.state[0]["step"] == 3
