"""Checkpoints and state dicts under unusual or hostile input: arenas with their parameters,
malformed state dicts, corrupted ``.npy`` headers, re-signed metadata, out-of-range host scalars,
and the temporary files of killed saves. Each refusal is a TypeError or ValueError naming what is
wrong, and leaves the optimizer as it was."""

import io
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
import uuid
import zipfile

import numpy as np
import pytest

import fastopt
from conftest import AVAILABLE, to_backend, to_host
from fastopt.optim import algorithms as alg
from fastopt.optim import checkpoint
from fastopt.optim.checkpoint import load, save
from fastopt.optim.optimizers import Optimizer


class _TableOptimizer(Optimizer):
    """An optimizer class straight from a table entry, for algorithms without a class of their
    own in this tree."""

    def __init__(self, params, backend=None, **hyper):
        super().__init__(params, backend, **{**self.algorithm.defaults, **hyper})


ASGD = getattr(fastopt, "ASGD", None) or type("ASGD", (_TableOptimizer,), {"algorithm": alg.ASGD})


def snapshot(opt, arrays):
    state = opt.state_dict()
    return ({i: {k: v if np.isscalar(v) else v.copy() for k, v in s.items()}
             for i, s in state["state"].items()}, state["param_groups"],
            [to_host(a).tobytes() for a in arrays])


def assert_same(a, b):
    assert a[1] == b[1] and a[2] == b[2]
    assert a[0].keys() == b[0].keys()
    for i in a[0]:
        assert a[0][i].keys() == b[0][i].keys()
        for k, v in a[0][i].items():
            if np.isscalar(v):
                assert type(v) is type(b[0][i][k]) and v == b[0][i][k], (i, k)
            else:
                assert v.dtype == b[0][i][k].dtype and v.tobytes() == b[0][i][k].tobytes()


# --- arenas checkpoint with their parameters -------------------------------------------------

ARENA = [(4, 3), (5,), (1,)]
ARENA_CLASSES = {"adam": fastopt.Adam, "lamb": fastopt.LAMB}


def arena_optimizer(name, backend, values, lr, segmented):
    """An arena of ``values`` and an optimizer over it: the whole arena as one parameter, or two
    groups over segments of it (the second with half the learning rate)."""
    arena = fastopt.FlatParams([to_backend(backend, v) for v in values])
    params = ([{"params": [arena.segment(0, 2)]},
               {"params": [arena.segment(2, 3)], "lr": lr / 2}] if segmented else arena)
    return arena, ARENA_CLASSES[name](params, lr=lr, backend=backend, weight_decay=0.1)


def arena_step(opt, backend, flat, segmented):
    parts = [flat[:17], flat[17:]] if segmented else [flat]
    opt.step([to_backend(backend, g) for g in parts])


@pytest.mark.parametrize("segmented", [False, True], ids=["whole", "segments"])
@pytest.mark.parametrize("name", list(ARENA_CLASSES))
@pytest.mark.parametrize("backend", AVAILABLE)
def test_arena_checkpoint_resumes_bit_for_bit(tmp_path, backend, name, segmented):
    rng = np.random.default_rng(3)
    values = [rng.standard_normal(s).astype(np.float32) for s in ARENA]
    grads = [rng.standard_normal(18).astype(np.float32) for _ in range(5)]
    a_arena, a = arena_optimizer(name, backend, values, 0.01, segmented)
    for g in grads:
        arena_step(a, backend, g, segmented)  # uninterrupted

    b_arena, b = arena_optimizer(name, backend, values, 0.01, segmented)
    for g in grads[:3]:
        arena_step(b, backend, g, segmented)
    save(tmp_path / "arena.npz", b)
    ck = load(tmp_path / "arena.npz")
    assert ck.arenas == ([[(4, 3), (5,)], [(1,)]] if segmented else [ARENA])
    assert np.concatenate(ck.params).tobytes() == to_host(b_arena.data).tobytes()

    c_arena, c = arena_optimizer(name, backend, [np.zeros(s, np.float32) for s in ARENA], 123.0,
                                 segmented)
    load(tmp_path / "arena.npz", c)
    assert to_host(c_arena.data).tobytes() == to_host(b_arena.data).tobytes()
    assert_same(snapshot(c, [c_arena.data]), snapshot(b, [b_arena.data]))
    for g in grads[3:]:
        arena_step(c, backend, g, segmented)
    assert to_host(c_arena.data).tobytes() == to_host(a_arena.data).tobytes()
    assert_same(snapshot(c, [c_arena.data]), snapshot(a, [a_arena.data]))


@pytest.mark.parametrize("saved,target,message", [
    ("arena", "other shapes", r"params\[0\] was saved as an arena of tensors \[\(4, 3\), \(5,\), "
                              r"\(1,\)\], the optimizer's is an arena of tensors \[\(3, 4\)"),
    ("arena", "array", r"params\[0\] was saved as an arena .* the optimizer's is an array"),
    ("array", "arena", r"params\[0\] was saved as an array, the optimizer's is an arena"),
])
def test_arena_checkpoint_loads_only_into_the_same_layout(tmp_path, saved, target, message):
    def optimizer(kind, fill):
        if kind == "array":
            param = np.full(18, fill, np.float32)
            return fastopt.Adam([param], lr=0.1, backend="numpy"), param
        shapes = [(3, 4), (5,), (1,)] if kind == "other shapes" else ARENA
        arena = fastopt.FlatParams([np.full(s, fill, np.float32) for s in shapes])
        return fastopt.Adam(arena, lr=0.1, backend="numpy"), arena.data

    source, _ = optimizer(saved, 1.0)
    source.step([np.ones(18, np.float32)])
    save(tmp_path / "s.npz", source)
    opt, data = optimizer(target, 2.0)
    opt.step([np.ones(18, np.float32)])
    before = snapshot(opt, [data])
    with pytest.raises(ValueError, match=r"s\.npz: " + message):
        load(tmp_path / "s.npz", opt)
    assert_same(snapshot(opt, [data]), before)
    load(tmp_path / "s.npz", opt, params=False)  # the state alone fits: same flat shapes
    assert to_host(data).tobytes() == before[2][0]


# --- load_state_dict: malformed state dicts --------------------------------------------------


def two_parameter_adam():
    params = [np.ones(4), np.ones(3)]
    opt = fastopt.Adam(params, lr=0.1, backend="numpy")
    opt.step([np.ones(4), np.ones(3)])
    return opt, params


BAD_STATE_DICTS = {
    "state None": (lambda sd: {**sd, "state": None}, TypeError,
                   r"state_dict\['state'\]: expected a dict"),
    "state a list": (lambda sd: {**sd, "state": list(sd["state"].values())}, TypeError,
                     r"state_dict\['state'\]: expected a dict"),
    "a list": (lambda sd: [sd["state"], sd["param_groups"]], ValueError,
               r"state_dict: expected a dict with 'state' and 'param_groups'"),
    "groups None": (lambda sd: {**sd, "param_groups": None}, TypeError,
                    r"state_dict\['param_groups'\]: expected a list"),
    "group a list": (lambda sd: {**sd, "param_groups": [[0, 1]]}, TypeError,
                     r"state_dict\['param_groups'\]\[0\]: expected a dict"),
    "group without params": (lambda sd: {**sd, "param_groups": [{"lr": 0.1}]}, ValueError,
                             r"state_dict\['param_groups'\]\[0\]: expected a 'params' list"),
    "params an int": (lambda sd: {**sd, "param_groups": [{"lr": 0.1, "params": 2}]}, ValueError,
                      r"state_dict\['param_groups'\]\[0\]: expected a 'params' list"),
    "index True": (lambda sd: {**sd, "state": {0: sd["state"][0], True: sd["state"][1]}},
                   ValueError, r"state_dict\['state'\]: no parameter with index True"),
    "index a string": (lambda sd: {**sd, "state": {"0": sd["state"][0]}}, ValueError,
                       r"state_dict\['state'\]: no parameter with index '0'"),
    "state of a parameter None": (lambda sd: {**sd, "state": {0: None}}, TypeError,
                                  r"state_dict\['state'\]\[0\]: expected a dict"),
    "array None": (lambda sd: {**sd, "state": {0: {**sd["state"][0], "exp_avg": None}}},
                   ValueError, r"state_dict\['state'\]\[0\]\['exp_avg'\]: expected shape"),
}


@pytest.mark.parametrize("case", list(BAD_STATE_DICTS))
def test_malformed_state_dict_is_refused_naming_it(case):
    change, kind, message = BAD_STATE_DICTS[case]
    opt, params = two_parameter_adam()
    before = snapshot(opt, params)
    with pytest.raises((TypeError, ValueError)) as raised:
        opt.load_state_dict(change(opt.state_dict()))
    assert type(raised.value) is kind and raised.match("^" + message)
    assert_same(snapshot(opt, params), before)


# --- host scalars: the bounds of HOST_BOUNDS -------------------------------------------------


def nadam():
    param = np.ones(3)
    opt = fastopt.NAdam([param], lr=0.1, backend="numpy")
    opt.step([np.ones(3)])
    return opt, param


def asgd():
    param = np.ones(3)
    opt = ASGD([param], lr=0.1, t0=0.0, backend="numpy")
    opt.step([np.ones(3)])
    opt.step([np.ones(3)])
    return opt, param


@pytest.mark.parametrize("make,name,value,kind,message", [
    (nadam, "mu_product", 5.0, ValueError, "expected a value <= 1.0"),
    (nadam, "mu_product", -0.5, ValueError, "expected a value >= 0.0"),
    (nadam, "mu_product", True, TypeError, "expected a real number"),
    (nadam, "mu_product", float("inf"), ValueError, "expected a finite number"),
    (asgd, "eta", -0.1, ValueError, "expected a value >= 0.0"),
    (asgd, "mu", 2.0, ValueError, "expected a value <= 1.0"),
    (asgd, "mu", -1.0, ValueError, "expected a value >= 0.0"),
])
def test_host_scalar_out_of_bounds_is_refused(make, name, value, kind, message):
    assert name in alg.HOST_BOUNDS
    opt, param = make()
    saved = opt.state_dict()
    assert name in saved["state"][0]
    before = snapshot(opt, [param])
    saved["state"][0][name] = value
    with pytest.raises(kind, match=rf"^state_dict\['state'\]\[0\]\['{name}'\]: {message}"):
        opt.load_state_dict(saved)
    assert_same(snapshot(opt, [param]), before)


def test_host_scalars_at_their_bounds_load(tmp_path):
    opt, _ = asgd()
    saved = opt.state_dict()
    saved["state"][0].update(eta=0.0, mu=1.0)
    opt.load_state_dict(saved)
    assert (opt.state[0]["eta"], opt.state[0]["mu"]) == (0.0, 1.0)


# --- files: corrupted .npy headers, re-signed metadata ---------------------------------------


@pytest.fixture
def saved_adam(tmp_path):
    opt, params = two_parameter_adam()
    path = tmp_path / "opt.npz"
    save(path, opt)
    return path


def read_members(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_members(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def with_header(data, shape):
    """``.npy`` bytes ``data`` with a header that declares ``shape`` in place of its own."""
    array = np.lib.format.read_array(io.BytesIO(data))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {
        "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
        "shape": shape})
    return header.getvalue() + data[len(data) - array.nbytes:]


@pytest.mark.parametrize("shape", [(2 ** 40,), (2 ** 26,), (5,)], ids=["2**40", "2**26", "5"])
@pytest.mark.parametrize("entry", ["state.1.exp_avg", "param.0", "__fastopt__", "__checksum__"])
def test_npy_header_declaring_another_size_is_refused_before_allocating(saved_adam, entry, shape):
    members = read_members(saved_adam)
    members[entry + ".npy"] = with_header(members[entry + ".npy"], shape)
    write_members(saved_adam, members)
    opt, params = two_parameter_adam()
    before = snapshot(opt, params)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"opt\.npz: checksum mismatch: the file is "
                                             rf"corrupted .*entry '{entry}': its header declares"):
            load(saved_adam, opt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # 2**26 float64 would be 512 MiB
    assert_same(snapshot(opt, params), before)


def test_compressed_checkpoint_still_loads(saved_adam, tmp_path):
    members = read_members(saved_adam)
    compressed = tmp_path / "compressed.npz"
    with zipfile.ZipFile(compressed, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    a, b = load(saved_adam), load(compressed)
    assert all(p.tobytes() == q.tobytes() for p, q in zip(a.params, b.params))


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_entries_are_refused(saved_adam):
    members = list(read_members(saved_adam).items())
    with zipfile.ZipFile(saved_adam, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members + [m for m in members if m[0] == "param.0.npy"]:
            zf.writestr(name, data)
    with pytest.raises(ValueError, match=r"opt\.npz: checksum mismatch: .*'param\.0' appears 2"):
        load(saved_adam)


def resign(path, change):
    """Rewrites the checkpoint's metadata with ``change`` and a checksum that matches it."""
    with np.load(path, allow_pickle=False) as raw:
        entries = {name: raw[name] for name in raw.files}
    meta = json.loads(bytes(entries.pop("__fastopt__")))
    entries.pop("__checksum__")
    change(meta)
    meta_bytes = json.dumps(meta).encode()
    checksum = checkpoint._checksum(meta_bytes, entries).encode("ascii")
    with open(path, "wb") as f:
        np.savez(f, __fastopt__=np.frombuffer(meta_bytes, np.uint8), **entries,
                 __checksum__=np.frombuffer(checksum, np.uint8))


def _set(path, value):
    def change(meta):
        *parents, last = path
        for key in parents:
            meta = meta[key]
        meta[last] = value(meta[last]) if callable(value) else value
    return change


RESIGNED = {
    "arrays a list": _set(["state", 0, "arrays"], lambda arrays: list(arrays.values())),
    "state a dict": _set(["state"], lambda state: {"0": state[0]}),
    "record a list": _set(["state", 0], lambda record: list(record.values())),
    "index True": _set(["state", 1, "index"], True),
    "index negative": _set(["state", 1, "index"], -1),
    "step a string": _set(["state", 0, "step"], "1"),
    "description a list": _set(["state", 0, "arrays", "exp_avg"], ["state.0.exp_avg"]),
    "description without dtype": _set(["state", 0, "arrays", "exp_avg"],
                                      lambda d: {k: v for k, v in d.items() if k != "dtype"}),
    "entry described twice": _set(["state", 0, "arrays", "exp_avg_sq"],
                                  lambda d: {**d, "entry": "state.0.exp_avg"}),
    "group a list": _set(["param_groups", 0], [0, 1]),
    "group without params": _set(["param_groups", 0], lambda g: {"lr": g["lr"]}),
    "params a dict": _set(["params"], lambda params: {"0": params[0]}),
    "param index a string": _set(["param_groups", 0, "params"], ["0", "1"]),
    "arena that does not fill": _set(["params", 0, "arena"], [[2]]),
    "arena a number": _set(["params", 0, "arena"], 4),
    "algorithm a list": _set(["algorithm"], ["adam"]),
}


@pytest.mark.parametrize("case", list(RESIGNED))
def test_resigned_metadata_of_the_wrong_structure_is_refused(saved_adam, case):
    resign(saved_adam, RESIGNED[case])
    opt, params = two_parameter_adam()
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"opt\.npz: inconsistent metadata, the file was not "
                                         "written by fastopt.save"):
        load(saved_adam, opt)
    assert_same(snapshot(opt, params), before)


def test_resigned_host_scalar_out_of_bounds_is_refused(tmp_path):
    opt, _ = nadam()
    save(tmp_path / "n.npz", opt)
    with np.load(tmp_path / "n.npz") as raw:
        assert raw["state.0.mu_product"].shape == ()
    members = read_members(tmp_path / "n.npz")
    entries = {name[:-4]: np.lib.format.read_array(io.BytesIO(data))
               for name, data in members.items()}
    entries["state.0.mu_product"] = np.array(5.0)
    meta = bytes(entries.pop("__fastopt__"))
    entries.pop("__checksum__")
    checksum = checkpoint._checksum(meta, entries).encode("ascii")
    with open(tmp_path / "n.npz", "wb") as f:
        np.savez(f, __fastopt__=np.frombuffer(meta, np.uint8), **entries,
                 __checksum__=np.frombuffer(checksum, np.uint8))
    target, param = nadam()
    before = snapshot(target, [param])
    with pytest.raises(ValueError, match=r"n\.npz: does not fit this optimizer: "
                                         r"state_dict\['state'\]\[0\]\['mu_product'\]: expected "
                                         r"a value <= 1\.0"):
        load(tmp_path / "n.npz", target)
    assert_same(snapshot(target, [param]), before)


# --- temporary files of killed saves ---------------------------------------------------------

posix_only = pytest.mark.skipif(os.name != "posix", reason="stale temporary files are recognised "
                                "by probing their pid, which only POSIX allows safely")

STUCK_SAVE = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastopt
    from fastopt.optim import checkpoint

    real = checkpoint._write_entry

    def stuck(zf, name, array):  # writes the metadata, then hangs mid-save
        real(zf, name, array)
        zf.fp.flush()
        print("writing", flush=True)
        time.sleep(600)

    checkpoint._write_entry = stuck
    opt = fastopt.SGD([np.ones(3)], lr=0.1, momentum=0.9, backend="numpy")
    opt.step([np.ones(3)])
    checkpoint.save(sys.argv[1], opt)
""")


def temporaries(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


@posix_only
def test_temporary_file_of_a_killed_save_is_removed_by_the_next_save_not_before(tmp_path):
    path = tmp_path / "opt.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastopt.__file__)), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", STUCK_SAVE, str(path)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        (stuck,) = temporaries(tmp_path)
        assert f"-{child.pid}-" in stuck
        opt = fastopt.SGD([np.ones(3)], lr=0.1, backend="numpy")
        save(path, opt)  # the other process is alive: its file stays
        assert temporaries(tmp_path) == [stuck]
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    save(path, opt)  # now it is gone for good
    assert os.listdir(tmp_path) == [path.name]
    assert load(path).algorithm == "sgd"


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@posix_only
def test_only_stale_temporary_files_of_the_same_checkpoint_on_this_host_are_removed(tmp_path):
    host, process, pid = checkpoint._HOST, checkpoint._PROCESS, dead_pid()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8

    def name(base, host, pid, process):
        return f".{base}.{host}-{pid}-{process}-{uuid.uuid4().hex[:12]}.tmp"

    stale = [name("opt.npz", host, pid, process),  # a dead process
             name("opt.npz", host, os.getpid(), "abcdef01")]  # an earlier process with our pid
    kept = [name("opt.npz", host, os.getpid(), process),  # this process (another thread)
            name("opt.npz", host, os.getppid(), "abcdef01"),  # a live process
            name("opt.npz", other_host, pid, process),  # another host sharing the directory
            name("other.npz", host, pid, process),  # another checkpoint
            name("opt.npz.1", host, pid, process),
            ".opt.npz.notes.tmp", f".opt.npz.{host}-{pid}.tmp", "opt.npz.tmp"]
    for n in stale + kept:
        (tmp_path / n).write_bytes(b"partial")
    save(tmp_path / "opt.npz", fastopt.SGD([np.ones(3)], lr=0.1, backend="numpy"))
    assert temporaries(tmp_path) == sorted(kept)


def test_save_creates_the_checkpoint_directory(tmp_path):
    p = np.zeros(4, np.float32)
    opt = fastopt.SGD([p], lr=0.1, backend="numpy")
    opt.step([np.ones(4, np.float32)])
    path = tmp_path / "runs" / "ckpt" / "opt.npz"
    assert fastopt.save(path, opt) == str(path)
    assert fastopt.load(path).state_dict["state"][0]["step"] == 1
