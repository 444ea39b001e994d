"""fastopt.capturable against the non-capturable classes on the same device arrays.

Runs on CUDA, or on numba's simulator (``NUMBA_ENABLE_CUDASIM=1``), where blocks of 4 threads and
grids of at most 4 blocks make the 257-element parameter span every block and loop.

Tolerances: under the simulator the capturable step does the same element arithmetic on the same
scalars (rounded the same way), the same reduction in the same order and the same C ``pow`` for
the bias corrections as :class:`fastopt.Adam` and the others, so everything is compared bit for
bit, in float32 and float64. On a GPU the bias corrections use the device's ``pow`` (libdevice,
within 2 ulp in float64) where the host computes them for the other classes, hence the
tolerances of :data:`TOLERANCE` there.
"""

import numpy as np
import pytest

import fastopt
from fastopt import capturable, functional, schedules
from conftest import HAS_CUDA, requires_cuda

pytestmark = requires_cuda

if HAS_CUDA:
    from numba import cuda

    from fastopt.backends.cuda import capturable as kern

    SIMULATOR = kern.SIMULATOR
else:  # the module is skipped
    SIMULATOR = True

#: (rtol, atol) of capturable vs non-capturable results, by dtype: 0 means bit for bit.
TOLERANCE = {np.dtype(np.float32): (0.0, 0.0) if SIMULATOR else (1e-6, 1e-7),
             np.dtype(np.float64): (0.0, 0.0) if SIMULATOR else (1e-13, 1e-15)}

SHAPES = [(1,), (257,), (3, 5)]

#: The optimizers under test: class name and hyperparameters, every mode flag covered.
CASES = [
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    ("Adamax", dict(lr=0.01, weight_decay=0.01)),
    ("Adadelta", dict(weight_decay=0.1)),
    ("Lion", dict(lr=0.01, weight_decay=0.1)),
    ("Rprop", dict(lr=0.01, etas=(0.3, 1.5), step_sizes=(1e-4, 0.05), maximize=True)),
]


def case_id(case):
    name, hyper = case
    return name + "".join(f"-{k}" for k, v in hyper.items() if k != "lr" and v)


def arrays(dtype, seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def on_device(host_arrays):
    return [cuda.to_device(a) for a in host_arrays]


def host(device_arrays):
    return [a.copy_to_host() for a in device_arrays]


def assert_same(got, expected):
    rtol, atol = TOLERANCE[np.dtype(expected.dtype)]
    if rtol == 0 and atol == 0:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def assert_same_state(got, expected):
    assert got["state"].keys() == expected["state"].keys()
    for i, state in expected["state"].items():
        assert got["state"][i].keys() == state.keys()
        for name, value in state.items():
            if name == "step":
                assert got["state"][i][name] == value
            else:
                assert_same(got["state"][i][name], value)


def pair(name, hyper, dtype, seed=0):
    """The non-capturable and the capturable optimizer on two copies of the same parameters."""
    params = arrays(dtype, seed)
    ours, theirs = on_device(params), on_device(params)
    return (getattr(capturable, name)(ours, **hyper), ours,
            getattr(fastopt, name)(theirs, **hyper), theirs)


#: float64 on two cases only: the simulator runs a kernel launch in tens of milliseconds, and the
#: kernels' dtype handling is shared by every algorithm.
DTYPE_CASES = [pytest.param(case, np.float32, id=case_id(case) + "-float32") for case in CASES] + \
              [pytest.param(case, np.float64, id=case_id(case) + "-float64") for case in CASES
               if case_id(case) in ("Adam-amsgrad-maximize", "SGD-momentum-dampening-weight_decay")]


@pytest.mark.parametrize("case,dtype", DTYPE_CASES)
def test_steps_match_the_non_capturable_class(case, dtype):
    """Four steps with a learning-rate schedule: plain, loss-scaled and clipped, non-finite
    (skipped), clipped again; results, StepInfo, norms and state as fastopt's classes."""
    name, hyper = case
    opt, ours, ref, theirs = pair(name, hyper, dtype)
    sched = schedules.LRScheduler(opt, schedules.exponential(0.5))
    ref_sched = schedules.LRScheduler(ref, schedules.exponential(0.5))
    steps = [dict(), dict(grad_scale=1024.0, max_norm=0.5), dict(grad_scale=2.0, max_norm=0.5),
             dict(max_norm=100.0)]
    for t, kwargs in enumerate(steps):
        grads = arrays(dtype, seed=10 + t)
        scale = kwargs.get("grad_scale", 1.0)
        grads = [g * dtype(scale) for g in grads]
        if t == 2:
            grads[1][100] = np.inf
            before, state_before = host(ours), opt.state_dict()
        device_grads = on_device(grads)
        result = opt.step(device_grads, **kwargs)
        expected = ref.step(on_device(grads), return_norm=True, **kwargs)  # the device's norm
        info = result.info
        assert info.skipped == info.found_inf == expected.skipped == (t == 2)
        if t == 2:  # skipped on the device: parameters, state and step counts as they were
            assert not np.isfinite(info.grad_norm) and info.clip_coef == 1.0
            for p, b in zip(host(ours), before):
                np.testing.assert_array_equal(p, b)
            assert_same_state(opt.state_dict(), state_before)
        else:
            assert info.grad_norm == pytest.approx(expected.grad_norm, rel=1e-15, abs=0)
            assert info.clip_coef == pytest.approx(expected.clip_coef, rel=1e-15, abs=0)
            assert info.grad_norm == functional.grad_norm(device_grads) * (1.0 / scale)
            if t == 1:
                assert info.clip_coef < 1
        for p, e in zip(host(ours), host(theirs)):
            assert_same(p, e)
        sched.step()
        ref_sched.step()
    state = opt.state_dict()
    assert_same_state(state, ref.state_dict())
    assert all(s["step"] == 3 for s in state["state"].values())


def _count_device_to_host(monkeypatch):
    """Counts device-to-host copies and host-side reads of device memory, and host waits."""
    counts = {"dtoh": 0, "htod": 0, "sync": 0}

    def counting(key, original):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)
        return wrapper

    if SIMULATOR:
        import threading

        from numba.cuda.simulator.cudadrv import devicearray as fake

        monkeypatch.setattr(fake.FakeCUDAArray, "copy_to_host",
                            counting("dtoh", fake.FakeCUDAArray.copy_to_host))
        monkeypatch.setattr(fake.FakeCUDAArray, "copy_to_device",
                            counting("htod", fake.FakeCUDAArray.copy_to_device))
        getitem = fake.FakeCUDAArray.__getitem__

        def host_reads(self, index):  # kernels run on their own threads: these are the host's
            out = getitem(self, index)
            if threading.current_thread() is threading.main_thread() \
                    and not isinstance(out, fake.FakeCUDAArray):
                counts["dtoh"] += 1
            return out
        monkeypatch.setattr(fake.FakeCUDAArray, "__getitem__", host_reads)
    else:
        from numba.cuda.cudadrv import driver

        monkeypatch.setattr(driver, "device_to_host", counting("dtoh", driver.device_to_host))
        monkeypatch.setattr(driver, "host_to_device", counting("htod", driver.host_to_device))
        monkeypatch.setattr(driver.Stream, "synchronize",
                            counting("sync", driver.Stream.synchronize))
    monkeypatch.setattr(cuda, "synchronize", counting("sync", cuda.synchronize))
    return counts


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_a_step_copies_nothing_back_and_never_waits(name, monkeypatch):
    hyper = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    params = on_device(arrays(np.float32, 0))
    opt = getattr(capturable, name)(params, **hyper)
    sched = schedules.LRScheduler(opt, schedules.cosine(10))
    grads = on_device(arrays(np.float32, 1))
    bad = arrays(np.float32, 2)
    bad[0][0] = np.nan
    bad = on_device(bad)
    counts = _count_device_to_host(monkeypatch)
    opt.step(grads, grad_scale=4.0, max_norm=1.0)  # new inputs: one asynchronous copy
    assert counts == {"dtoh": 0, "htod": 1, "sync": 0}
    sched.step()
    opt.step(bad, grad_scale=4.0, max_norm=1.0)  # a changed lr: one copy; skipped on the device
    opt.step(grads, grad_scale=4.0, max_norm=1.0)  # nothing changed: no copy at all
    result = opt.launch(grads)  # the launch sequence alone
    assert counts == {"dtoh": 0, "htod": 2, "sync": 0}
    info = result.info  # read when asked: the positive control of the counters
    assert counts["dtoh"] == 1 and not info.skipped and info.grad_norm > 0
    assert opt.state_dict()["state"][0]["step"] == 3


@pytest.mark.parametrize("case", [("Adam", dict(lr=0.01, weight_decay=0.1)),
                                  ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1)),
                                  ("Adagrad", dict(lr=0.1, lr_decay=0.5))], ids=case_id)
def test_a_recorded_launch_sequence_replays_correctly(case, monkeypatch):
    """An emulated CUDA graph: the launches of the first step are recorded with their arguments
    and replayed as they are, with only push_hyperparameters between replays, while a schedule
    changes lr, the loss scale changes, the static gradient buffers are refilled and one step
    is non-finite; the results are those of the non-capturable class stepping normally."""
    tape, recording = [], [False]
    configured = kern.configured

    def recorded(kernel, n, stream):
        launch = configured(kernel, n, stream)

        def run(*args):
            if recording[0]:
                tape.append((launch, args))
            return launch(*args)
        return run
    monkeypatch.setattr(kern, "configured", recorded)
    name, hyper = case
    opt, ours, ref, theirs = pair(name, hyper, np.float32)
    sched = schedules.LRScheduler(opt, schedules.step(1, gamma=0.5))
    ref_sched = schedules.LRScheduler(ref, schedules.step(1, gamma=0.5))
    grads = on_device(arrays(np.float32, 40))  # the captured gradient buffers
    for t in range(4):
        values = [g * np.float32(2.0 ** t) for g in arrays(np.float32, 40 + t)]
        if t == 2:
            values[2][1, 1] = np.nan
        for g, v in zip(grads, values):
            g.copy_to_device(v)
        kwargs = dict(grad_scale=2.0 ** t, max_norm=1.0)
        opt.push_hyperparameters(**kwargs)
        if t == 0:  # "capture": record the launches (they run too)
            recording[0] = True
            opt.launch(grads)
            recording[0] = False
        else:  # "replay"
            for launch, args in tape:
                launch(*args)
        ref.step(on_device(values), **kwargs)
        for p, e in zip(host(ours), host(theirs)):
            assert_same(p, e)
        sched.step()
        ref_sched.step()
    assert len(tape) == 2 * len(ours) + 1
    assert_same_state(opt.state_dict(), ref.state_dict())
    assert opt.state_dict()["state"][0]["step"] == 3


def test_set_lr_and_schedules_reach_the_device():
    opt, ours, ref, theirs = pair("AdamW", dict(lr=0.1), np.float64)
    grads = arrays(np.float64, 3)
    for lr in (0.1, 0.02, 0.0, 0.3):
        opt.set_lr(lr)
        for group in ref.param_groups:
            group["lr"] = lr
        opt.step(on_device(grads))
        ref.step(on_device(grads))
    for p, e in zip(host(ours), host(theirs)):
        assert_same(p, e)
    assert opt.param_groups[0]["lr"] == 0.3


@pytest.mark.parametrize("direction", ["from_capturable", "to_capturable"])
def test_state_dict_moves_between_capturable_and_fastopt(direction):
    hyper = dict(lr=0.05, momentum=0.9, nesterov=True)
    opt, ours, ref, theirs = pair("SGD", hyper, np.float64)
    source, target = (opt, ref) if direction == "from_capturable" else (ref, opt)
    for t in range(2):
        source.step(on_device(arrays(np.float64, 20 + t)))
    target.load_state_dict(source.state_dict())
    src_params, dst_params = (ours, theirs) if source is opt else (theirs, ours)
    for d, s in zip(dst_params, src_params):
        d.copy_to_device(s)
    assert_same_state(target.state_dict(), source.state_dict())
    grads = arrays(np.float64, 30)
    opt.step(on_device(grads))
    ref.step(on_device(grads))
    for p, e in zip(host(ours), host(theirs)):
        assert_same(p, e)
    assert_same_state(opt.state_dict(), ref.state_dict())
    assert opt.state_dict()["state"][0]["step"] == 3


def test_arena_groups_step_as_fastopt():
    shapes = [(4, 3), (5,), (2, 2)]
    values = arrays(np.float32, 4, shapes)
    arenas = [fastopt.FlatParams(on_device(values)) for _ in range(2)]
    grads = fastopt.FlatParams(on_device(arrays(np.float32, 5, shapes)))

    def groups(arena):
        return [{"params": arena.segment(0, 2)},
                {"params": arena.segment(2, 3), "weight_decay": 0.0, "lr": 0.02}]
    opt = capturable.Adam(groups(arenas[0]), lr=0.01, weight_decay=0.1)
    ref = fastopt.Adam(groups(arenas[1]), lr=0.01, weight_decay=0.1)
    for _ in range(2):
        opt.step([grads.segment(0, 2), grads.segment(2, 3)], max_norm=0.1)
        ref.step([grads.segment(0, 2), grads.segment(2, 3)], max_norm=0.1)
    assert_same(arenas[0].data.copy_to_host(), arenas[1].data.copy_to_host())
    assert_same_state(opt.state_dict(), ref.state_dict())


def test_host_arrays_are_refused():
    with pytest.raises(TypeError, match=r"params\[0\]: is a host array .* CUDA device arrays"):
        capturable.Adam([np.zeros(3, np.float32)])
    opt = capturable.Adam(on_device([np.zeros(3, np.float32)]))
    with pytest.raises(TypeError, match=r"grads\[0\]: is a host array"):
        opt.step([np.ones(3, np.float32)])


def test_everything_is_checked_before_writing():
    params = on_device(arrays(np.float32, 6))
    opt = capturable.SGD(params, lr=0.1, momentum=0.9)
    before = host(params)
    good = on_device(arrays(np.float32, 7))
    bad_calls = [
        (ValueError, "expected 3 gradients", lambda: opt.step(good[:2])),
        (ValueError, r"grads\[1\]: is None", lambda: opt.step([good[0], None, good[2]])),
        (ValueError, r"grads\[0\]: shape", lambda: opt.step([good[1], good[1], good[2]])),
        (ValueError, "grad_scale: expected a value > 0", lambda: opt.step(good, grad_scale=0)),
        (ValueError, "max_norm: expected a value >= 0", lambda: opt.step(good, max_norm=-1.0)),
    ]
    for error, words, call in bad_calls:
        with pytest.raises(error, match=words):
            call()
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr: expected a value >= 0"):
        opt.step(good)
    opt.param_groups[0]["lr"] = 0.1
    opt.param_groups[0]["nesterov"] = True
    with pytest.raises(ValueError, match="nesterov, maximize, momentum != 0 cannot change"):
        opt.step(good)
    opt.param_groups[0]["nesterov"] = False
    opt.param_groups[0]["momentum"] = 0.0
    with pytest.raises(ValueError, match="cannot change in a capturable optimizer"):
        opt.step(good)
    opt.param_groups[0]["momentum"] = 0.5  # a value may change, its being nonzero may not
    for p, b in zip(host(params), before):
        np.testing.assert_array_equal(p, b)
    assert opt.state_dict()["state"] == {}
    opt.step(good)
    assert opt.state_dict()["state"][0]["step"] == 1


@requires_cuda
def test_a_malformed_state_dict_is_refused_naming_it():
    params = on_device(arrays(np.float32, 6))
    opt = capturable.Adam(params, lr=0.1)
    opt.step(on_device(arrays(np.float32, 7)))
    saved = opt.state_dict()
    groups = saved["param_groups"]
    for bad, error, words in [
            (None, ValueError, "state_dict: expected a dict"),
            ([], ValueError, "state_dict: expected a dict"),
            ({"state": None, "param_groups": groups}, TypeError, r"state_dict\['state'\]"),
            ({"state": {}, "param_groups": [{}]}, ValueError, r"\['param_groups'\]\[0\]"),
            ({"state": {True: saved["state"][0]}, "param_groups": groups}, ValueError,
             "no parameter with index True")]:
        with pytest.raises(error, match=words):
            opt.load_state_dict(bad)
    assert opt.state_dict()["state"][0]["step"] == 1


def test_a_result_is_read_before_the_next_step():
    opt = capturable.Adam(on_device(arrays(np.float64, 8)))
    grads = on_device(arrays(np.float64, 9))
    first = opt.step(grads)
    norm = first.norm.copy_to_host()[0]
    assert first.skipped is first.found_inf and first.norm.shape == (1,)
    assert first.info.grad_norm == norm == functional.grad_norm(grads)
    second = opt.step(grads)
    assert first.info.grad_norm == norm  # read before: kept
    with pytest.raises(RuntimeError, match="has stepped since"):
        opt.step(grads)
        second.info


def test_layout_and_flags_agree_with_the_classes():
    from fastopt.optim.optimizers import CLIP_EPS

    assert kern.CLIP_EPS == CLIP_EPS
    for name, _ in CASES:
        cls = getattr(capturable, name)
        for flag in kern.FLAGS[cls.algorithm.kernel]:
            assert flag in cls.algorithm.defaults
    assert kern.block_size(3) == kern.row_dev(3, 3)
