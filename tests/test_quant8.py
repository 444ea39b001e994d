"""8-bit blockwise state: the maps and quantization against the paper's definitions (and
bitsandbytes, when it is installed), every backend against the numpy reference bit for bit, the
classes, state dicts and checkpoints, bad input."""

import numpy as np
import pytest

import fastopt
from fastopt import quant8
from fastopt._core.dispatch import available_backends, kernels
from fastopt.backends.numpy import quant8 as ref
from fastopt.optim.algorithms import ALGORITHMS

HOST = [b for b in ("cpu", "c") if b in available_backends()]

#: One option set per algorithm, using every state array it can (one compiled kernel each).
CASES = {
    "adam": dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    "adamw": dict(lr=0.01, weight_decay=0.1),
    "sgd": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    "rmsprop": dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.1),
    "lion": dict(lr=0.01, weight_decay=0.1),
    "adagrad": dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5),
}
N = 600  # two full blocks and a tail


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) for _ in range(4)]


def test_maps_are_the_dynamic_tree_maps():
    signed, unsigned = ref.dynamic_map(True), ref.dynamic_map(False)
    for q in (signed, unsigned):
        assert q.shape == (256,) and q.dtype == np.float32 and np.all(np.diff(q) > 0)
        assert q[-1] == 1 and 0 in q
    assert (signed < 0).sum() == 127 and signed[0] == np.float32(-(1.1 + 0.9 * 63 / 64) / 2)
    assert unsigned[0] == 0 and unsigned[1] == np.float32(0.325e-6)
    # The paper's decades: 2^i values (signed) or 2^(i+1) (unsigned) in [1e-7, 1e-6) ... [0.1, 1).
    for i in range(7):
        lo, hi = 10.0 ** (i - 7), 10.0 ** (i - 6)
        assert ((signed > lo) & (signed < hi)).sum() == 2 ** i
        assert ((unsigned > lo) & (unsigned < hi)).sum() == 2 ** (i + 1)


def test_maps_match_bitsandbytes():
    functional = pytest.importorskip("bitsandbytes.functional")
    for signed in (True, False):
        theirs = functional.create_dynamic_map(signed=signed).numpy()
        # bitsandbytes rounds its torch.linspace to float32 before scaling: one ulp apart at most.
        np.testing.assert_allclose(ref.dynamic_map(signed), theirs, rtol=2.5e-7, atol=0)


def test_quantize_is_nearest_code_per_block():
    x = np.concatenate([_data(256)[0] * 10, np.zeros(256, np.float32), [np.nan, 1, 2]])
    x = x.astype(np.float32)
    table = ref.MAPS["signed"]
    codes, absmax = ref.quantize(x, table)
    assert codes.dtype == np.uint8 and absmax.shape == (3,)
    assert absmax[0] == np.abs(x[:256]).max() and absmax[1] == 0 and np.isnan(absmax[2])
    back = ref.dequantize(codes, absmax, table)
    assert np.all(back[256:512] == 0) and np.all(np.isnan(back[512:]))
    y = x[:256] * (np.float32(1) / absmax[0])
    q = table[:256]
    distance = np.abs(q[codes[:256]] - y)
    assert np.all(distance <= np.abs(q[None, :] - y[:, None]).min(axis=1))


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("name", list(CASES))
def test_backend_matches_reference_bit_for_bit(name, backend):
    p, g1, g2, _ = _data()
    entry = ALGORITHMS[name]
    hyper = entry.check({**entry.defaults, **CASES[name]})
    state = quant8.init(name, p, **CASES[name])
    mine_p, mine = p.copy(), {k: v.copy() for k, v in state.items()}
    uses = tuple(entry.uses(hyper))
    for t, g in enumerate((g1, g2, g1), start=1):
        scalars = entry.scalars(hyper, t, t == 1)
        arrays = quant8.checked_arrays(entry, p, g, state, uses, False)
        getattr(kernels("numpy", "quant8"), entry.kernel)(*arrays, *scalars, 0.5)  # reference
        arrays = quant8.checked_arrays(entry, mine_p, g, mine, uses, False)
        getattr(kernels(backend, "quant8"), entry.kernel)(*arrays, *scalars, 0.5)
        np.testing.assert_array_equal(mine_p, p)
        for key in state:
            np.testing.assert_array_equal(mine[key], state[key], err_msg=key)
    assert not np.array_equal(p, _data()[0])


def test_reference_is_the_float32_step_on_dequantized_state():
    """One step of the reference is the float32 reference on the decoded state, then encoded."""
    p, g, m, v = _data()
    v = np.abs(v)
    cm, am = ref.quantize(m, ref.MAPS["signed"])
    cv, av = ref.quantize(v, ref.MAPS["unsigned"])
    entry = ALGORITHMS["adam"]
    scalars = entry.scalars(entry.check(entry.defaults), 3, False)
    out_p, codes, absmax = ref.REFERENCE["adam"](
        p, g, (cm, cv, np.empty(0, np.uint8)), (am, av, np.empty(0, np.float32)),
        (ref.MAPS["signed"], ref.MAPS["unsigned"], ref.MAPS["unsigned"]),
        (ref.LUTS["signed"], ref.LUTS["unsigned"], ref.LUTS["unsigned"]), *scalars, 1.0)
    expected = fastopt.reference.adam(
        p, g, ref.dequantize(cm, am, ref.MAPS["signed"]),
        ref.dequantize(cv, av, ref.MAPS["unsigned"]), np.empty(0, np.float32),
        *[np.float32(s) if type(s) is float else s for s in scalars], np.float32(1))
    np.testing.assert_array_equal(out_p, expected[0])
    np.testing.assert_array_equal(codes[0], ref.quantize(expected[1], ref.MAPS["signed"])[0])


def test_adam_matches_bitsandbytes():
    torch = pytest.importorskip("torch")
    bnb = pytest.importorskip("bitsandbytes")
    p, g1, g2, _ = _data(1000)
    tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
    topt = bnb.optim.Adam8bit([tp], lr=1e-2, min_8bit_size=0)
    w = p.copy()
    opt = fastopt.Adam([w], lr=1e-2, state_dtype="int8", backend="numpy")
    for g in (g1, g2, g1):
        tp.grad = torch.from_numpy(g.copy())
        if topt.state[tp]:  # bitsandbytes' maps replaced by ours (one ulp apart, see above)
            topt.state[tp]["qmap1"] = torch.from_numpy(ref.dynamic_map(True))
            topt.state[tp]["qmap2"] = torch.from_numpy(ref.dynamic_map(False))
        topt.step()
        opt.step([g])
    mine = opt.state[0]
    theirs = topt.state[tp]
    # Their step is torch's Adam formula on the decoded state in another order of operations: a
    # value next to a midpoint may take the next code, which moves its parameter by a few
    # percent of lr at the next step.
    close = np.isclose(w, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert close.mean() > 0.97
    np.testing.assert_allclose(w, tp.detach().numpy(), rtol=0, atol=0.05 * 1e-2)
    for k, (codes, absmax) in enumerate((("exp_avg", "exp_avg_absmax"),
                                        ("exp_avg_sq", "exp_avg_sq_absmax")), start=1):
        differ = mine[codes] != theirs[f"state{k}"].numpy()
        assert differ.mean() < 0.01, codes
        np.testing.assert_allclose(mine[absmax], theirs[f"absmax{k}"].numpy(), rtol=1e-4)


@pytest.mark.parametrize("backend", ["numpy", *HOST])
def test_class_equals_functional_and_checkpoints_continue(backend, tmp_path):
    p, g1, g2, _ = _data()
    w, w2 = p.copy(), p.copy()
    opt = fastopt.AdamW([w], lr=0.01, state_dtype="int8", backend=backend)
    state = quant8.init("adamw", w2)
    for t, g in enumerate((g1, g2), start=1):
        opt.step([g])
        quant8.adamw(w2, g, state, step=t, lr=0.01, backend="numpy")
    np.testing.assert_array_equal(w, w2)
    assert sorted(opt.state[0]) == sorted([*state, "step"])
    fastopt.save(tmp_path / "opt.npz", opt)
    w3 = w.copy()
    again = fastopt.AdamW([w3], lr=0.01, state_dtype="int8", backend=backend)
    fastopt.load(tmp_path / "opt.npz", again)
    opt.step([g1])
    again.step([g1])
    np.testing.assert_array_equal(w3, w)
    for key in state:
        np.testing.assert_array_equal(again.state[0][key], opt.state[0][key])


def test_memory_per_parameter():
    assert quant8.bytes_per_parameter("adam") == 2 + 8 / 256
    assert quant8.bytes_per_parameter("sgd", momentum=0.9) == 1 + 4 / 256
    w = np.zeros(1000, np.float32)
    opt = fastopt.Adam([w], state_dtype="int8")
    opt.step([np.ones_like(w)])
    nbytes = sum(a.nbytes for k, a in opt.state[0].items() if k != "step")
    assert nbytes == 2 * 1000 + 2 * 4 * 4


def test_bad_input():
    w = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="state_dtype"):
        fastopt.Adamax([w], state_dtype="int8")
    with pytest.raises(ValueError, match="state_dtype"):
        fastopt.Adam([w], state_dtype="int4")
    with pytest.raises(TypeError, match="float32"):
        fastopt.Adam([np.zeros(10)], state_dtype="int8")
    with pytest.raises(ValueError, match="algorithm"):
        quant8.init("nadam", w)
    state = quant8.init("adam", w)
    before = {k: v.copy() for k, v in state.items()}
    bad = dict(state, exp_avg=state["exp_avg"].astype(np.int16))
    with pytest.raises(TypeError, match="exp_avg"):
        quant8.adam(w, np.ones(10, np.float32), bad, step=1)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        quant8.adam(w, np.ones(10, np.float32), state, step=1, amsgrad=True)
    with pytest.raises(ValueError, match="absmax"):
        quant8.adam(w, np.ones(10, np.float32), dict(state, exp_avg_absmax=np.zeros(2, np.float32)),
                    step=1)
    with pytest.raises(ValueError, match="step"):
        quant8.adam(w, np.ones(10, np.float32), state, step=0)
    assert not w.any() and all(np.array_equal(before[k], state[k]) for k in state)
    opt = fastopt.Adam([w], state_dtype="int8")
    opt.step([np.ones_like(w)])
    saved = opt.state_dict()
    saved["state"][0]["exp_avg_absmax"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="exp_avg_absmax"):
        opt.load_state_dict(saved)


def test_nonfinite_gradient_is_skipped_and_reported():
    w = np.ones(300, np.float32)
    opt = fastopt.Adam([w], state_dtype="int8")
    opt.step([np.ones_like(w)])
    before = {k: np.copy(v) for k, v in opt.state[0].items()}
    g = np.ones_like(w)
    g[5] = np.nan
    with pytest.warns(RuntimeWarning):
        info = opt.step([g])
    assert info.skipped and opt.state[0]["step"] == 1
    for k, v in before.items():
        np.testing.assert_array_equal(opt.state[0][k], v)


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
def test_lookup_table_gives_the_defined_code(kind):
    """The kernels' code, base + (t[base] < y) + (t[base + 1] < y), on every bucket's edges (and
    one float32 either side) and random values of every magnitude, equals #{k : t_k < y}."""
    table, lut = ref.MAPS[kind], ref.LUTS[kind]
    edges = (np.arange(ref.LUT_SIDE - 1, dtype=np.int64) << ref.LUT_SHIFT).astype(np.uint32)
    bits = np.concatenate([edges, edges + 1, edges - 1, edges | 0x80000000,
                           (edges - 1) | 0x80000000])
    y = bits.view(np.float32)
    rng = np.random.default_rng(0)
    y = np.concatenate([y[np.abs(y) <= 1], np.float32(10) ** rng.uniform(-12, 0, 5000)
                        * rng.choice([-1, 1], 5000), [0, -0.0, 1, -1, np.nan]]).astype(np.float32)
    u = y.view(np.uint32).astype(np.int64)
    bucket = np.minimum((u & 0x7FFFFFFF) >> ref.LUT_SHIFT, ref.LUT_SIDE - 1)
    base = lut[bucket + (u >> 31) * ref.LUT_SIDE]
    codes = base + (table[256 + base] < y) + (table[257 + base] < y)
    expected = np.searchsorted(table[256:511], y, side="left")
    expected[np.isnan(y)] = 0
    np.testing.assert_array_equal(codes, expected)


def test_a_positive_second_moment_never_rounds_to_zero():
    v = np.array([1.0, 1e-12, 1e-30, 0.0], np.float32)
    codes, absmax = ref.quantize(v, ref.MAPS["unsigned"])
    assert list(codes[:4]) == [255, 1, 1, 0]
    m, _ = ref.quantize(np.array([1.0, 1e-12, -1e-12], np.float32), ref.MAPS["signed"])
    assert ref.dynamic_map(True)[m[1]] == 0 == ref.dynamic_map(True)[m[2]]  # nearest: 0


@pytest.mark.skipif("cuda" not in available_backends(), reason="no CUDA (or its simulator)")
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_cuda_matches_reference_bit_for_bit(name):
    from numba import cuda

    p, g1, g2, _ = _data()
    options = CASES[name]
    state = quant8.init(name, p, **options)
    on_device = cuda.to_device(p)
    device_state = {k: cuda.to_device(v) for k, v in state.items()}
    assert quant8.init(name, on_device, **options).keys() == state.keys()
    for t, g in enumerate((g1, g2, g1), start=1):
        quant8.step(name, p, g, state, step=t, backend="numpy", **options)
        quant8.step(name, on_device, cuda.to_device(g), device_state, step=t, **options)
    np.testing.assert_array_equal(on_device.copy_to_host(), p)
    for key in state:
        np.testing.assert_array_equal(device_state[key].copy_to_host(), state[key], err_msg=key)


@pytest.mark.parametrize("backend", HOST)
def test_same_traffic_kernel_moves_the_8bit_step_bytes(backend):
    from fastopt.bench import cases, timing

    n = 1000
    assert cases.bytes_per_step("adam", {"state_dtype": "int8"}, n, np.float32) == (
        (3 * 4 + 2 * 2) * n + 2 * 2 * 4 * 4)
    assert cases.written_arrays("adam", {"state_dtype": "int8"}) == 3
    kernels = timing.roofline_kernels(backend)
    param, read = np.ones(n, np.float32), np.full(n, 2, np.float32)
    codes = [np.full(n, 255, np.uint8), np.zeros(n, np.uint8)]
    absmax = [np.ones(4, np.float32), np.zeros(4, np.float32)]
    kernels.same_traffic_quant8(param, read, codes, absmax, 0.5)
    assert np.all(param == 2) and np.all(codes[0] == 0) and np.all(codes[1] == 1)
    assert np.all(absmax[0] == 1.5) and np.all(absmax[1] == 0.5)
    step = cases.make_bound_step("adam", {"state_dtype": "int8"}, backend, n)
    step()
    step()


def test_arena_segments_are_parameters_of_their_own():
    rng = np.random.default_rng(0)
    arena = fastopt.FlatParams([rng.standard_normal((30, 20)).astype(np.float32),
                                rng.standard_normal(20).astype(np.float32)])
    grads = arena.zeros_like()
    grads.data[:] = rng.standard_normal(grads.data.size).astype(np.float32)
    w0, w1 = arena.data[:600].copy(), arena.data[600:].copy()
    opt = fastopt.AdamW([{"params": arena.segment(0, 1)},
                         {"params": arena.segment(1, 2), "weight_decay": 0.0}], lr=1e-2,
                        state_dtype="int8")
    s0, s1 = quant8.init("adamw", w0), quant8.init("adamw", w1)
    for t in (1, 2):
        opt.step([grads.segment(0, 1), grads.segment(1, 2)])
        quant8.adamw(w0, grads.data[:600], s0, step=t, lr=1e-2, backend="numpy")
        quant8.adamw(w1, grads.data[600:], s1, step=t, lr=1e-2, weight_decay=0.0,
                     backend="numpy")
    np.testing.assert_array_equal(arena.data, np.concatenate([w0, w1]))
    np.testing.assert_array_equal(opt.state[1]["exp_avg"], s1["exp_avg"])


def test_torch_state_dict_refuses_8bit_state():
    pytest.importorskip("torch")
    w = np.zeros(10, np.float32)
    opt = fastopt.Adam([w], state_dtype="int8")
    opt.step([np.ones_like(w)])
    with pytest.raises(ValueError, match="8-bit"):
        fastopt.to_torch_state_dict(opt)


@pytest.mark.parametrize("backend", HOST)
def test_threaded_step_matches_reference(backend):
    """Above the parallel threshold the blocks are split over the threads: the same bits."""
    n = 2 * 32768 + 300  # over both backends' parallel threshold (fastopt._core.config)
    p, g1, g2, _ = _data(n)
    w = p.copy()
    state, mine = quant8.init("adam", p), quant8.init("adam", w)
    for t, g in enumerate((g1, g2), start=1):
        quant8.adam(p, g, state, step=t, lr=0.01, backend="numpy")
        quant8.adam(w, g, mine, step=t, lr=0.01, backend=backend)
    np.testing.assert_array_equal(w, p)
    for key in state:
        np.testing.assert_array_equal(mine[key], state[key], err_msg=key)
