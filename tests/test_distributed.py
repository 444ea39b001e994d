"""fastopt.distributed: the sharded optimizer against the single-process step, bit for bit, at 1 to
4 ranks (``mpiexec -n W python -m mpi4py tests/distributed_ranks.py``), on MPI and on a
torch.distributed gloo group, its checkpoints across world sizes, failures on one rank; and, in this
process, the one-rank world and bad input."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt.distributed import SingleProcess, ZeroOptimizer, block_size, load, save

ROOT = Path(__file__).resolve().parent.parent
RANKS_SCRIPT = ROOT / "tests" / "distributed_ranks.py"
TIMEOUT = 240  # seconds for one launch; a hang (a rank waiting in a collective) fails the test


def _mpiexec():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'fastopt[mpi]')")
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install 'fastopt[mpi]' brings MPICH's)")
    return found


def launch(world, directory, checks, *options):
    """Runs the checks at ``world`` ranks; ``(exit status, output)``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                  "")]),
               NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    command = [_mpiexec(), "-n", str(world), sys.executable, "-m", "mpi4py", str(RANKS_SCRIPT),
               str(directory), checks, *options]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    return done.returncode, done.stdout + done.stderr


def assert_ran(world, directory, checks, *options):
    status, output = launch(world, directory, checks, *options)
    assert status == 0, output[-4000:]
    for check in checks.split(","):
        for rank in range(world):
            assert f"rank {rank}: {check} ok" in output, output[-4000:]


@pytest.fixture(scope="module")
def saved_at_three(tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved_at_three")
    assert_ran(3, directory, "steps,tiny,save")
    return directory


def test_three_ranks_step_as_one_process_and_save(saved_at_three):
    assert (saved_at_three / "ckpt").exists()


@pytest.mark.parametrize("world", [1, 2, 4])
def test_steps_and_checkpoint_of_three_ranks_at(world, saved_at_three):
    assert_ran(world, saved_at_three, "steps,tiny,load")


def test_two_ranks_on_a_torch_distributed_gloo_group(tmp_path):
    pytest.importorskip("torch.distributed", reason="torch is not installed")
    assert_ran(2, tmp_path, "steps,tiny", "--torch")


def test_a_failing_rank_stops_every_rank_and_no_checkpoint_is_half_written(tmp_path):
    status, output = launch(2, tmp_path, "fail")
    assert status != 0, output[-4000:]
    for rank in range(2):
        assert f"rank {rank}: previous checkpoint intact" in output, output[-4000:]
    assert "a step completed although a rank failed" not in output, output[-4000:]


# ---------------------------------------------------------------------------------------------
# one rank, in this process


def _arena(dtype=np.float32):
    rng = np.random.default_rng(3)
    return fastopt.FlatParams([rng.standard_normal(s).astype(dtype)
                               for s in [(33, 7), (7,), (5, 3)]])


def _groups(arena):
    return [{"params": arena.segment(0, 1)}, {"params": arena.segment(1, 3), "weight_decay": 0.0}]


def test_one_rank_steps_as_the_class():
    arena, reference = _arena(), _arena()
    sharded = ZeroOptimizer(fastopt.AdamW, _groups(arena), lr=1e-2)
    single = fastopt.AdamW(_groups(reference), lr=1e-2)
    rng = np.random.default_rng(0)
    for t in range(3):
        g = rng.standard_normal(arena.size).astype(np.float32)
        info = sharded.step(g, max_norm=1.0)
        expected = single.step([g[:231], g[231:]], max_norm=1.0)
        assert info == expected and info.clip_coef < 1.0
        np.testing.assert_array_equal(sharded.params.data, reference.data)
    assert sharded.block == block_size(arena.size, 1, 4) == 256  # 253 rounded to 16 elements
    assert sharded.shard == (0, arena.size) and sharded.pieces == [(0, 0, 231), (1, 231, 253)]


def test_single_process_collectives():
    comm = SingleProcess()
    send, recv = np.arange(4.0), np.zeros(4)
    comm.reduce_scatter(send, recv)
    np.testing.assert_array_equal(recv, send)
    with pytest.raises(ValueError, match="send: expected 1 x 3"):
        comm.reduce_scatter(send, np.zeros(3))
    with pytest.raises(ValueError, match="op: expected"):
        comm.all_reduce(np.zeros(1), "min")


def test_block_size_rounds_to_vectors_of_every_rank():
    assert block_size(1000, 3, 4) == 336  # ceil(1000 / 48) * 16
    assert block_size(1000, 3, 2) == 352  # 32 elements per 64 bytes
    assert block_size(1, 4, 8) == 8


def test_checkpoint_one_rank_roundtrip_and_corruption(tmp_path):
    arena = _arena()
    sharded = ZeroOptimizer(fastopt.Adam, _groups(arena), lr=1e-2)
    sharded.step(np.ones(arena.size, np.float32))
    path = save(tmp_path / "opt.ckpt", sharded, extra={"epoch": 1})
    other = ZeroOptimizer(fastopt.Adam, _groups(_arena()), lr=0.5)
    assert load(path, other) == {"epoch": 1}
    assert other.param_groups[0]["lr"] == 1e-2
    np.testing.assert_array_equal(other.params.data, sharded.params.data)
    np.testing.assert_array_equal(other.local.state[1]["exp_avg_sq"],
                                  sharded.local.state[1]["exp_avg_sq"])
    with pytest.raises(ValueError, match="holds adam state, but the optimizer is sgd"):
        load(path, ZeroOptimizer(fastopt.SGD, _groups(_arena()), lr=0.1))
    data = next(tmp_path.glob("opt.ckpt.*.state.0.exp_avg.npy"))
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1
    data.write_bytes(bytes(raw))
    before = other.local.state[0]["exp_avg"].copy()
    with pytest.raises(ValueError, match="checksum mismatch in elements 0:231"):
        load(path, other)
    np.testing.assert_array_equal(other.local.state[0]["exp_avg"], before)
    with pytest.raises(ValueError, match="not a fastopt sharded checkpoint"):
        fastopt.save(tmp_path / "plain.npz", fastopt.Adam([np.zeros(3, np.float32)]))
        load(tmp_path / "plain.npz", other)


def test_later_save_removes_earlier_data_files(tmp_path):
    sharded = ZeroOptimizer(fastopt.SGD, _arena(), lr=0.1, momentum=0.9)
    sharded.step(np.ones(sharded.params.size, np.float32))
    save(tmp_path / "c", sharded)
    save(tmp_path / "c", sharded)
    ids = {p.name.split(".")[1] for p in tmp_path.glob("c.*.npy")}
    assert len(ids) == 1 and len(list(tmp_path.glob("c.*.npy"))) == 2  # params, momentum


@pytest.mark.parametrize("options, error, match", [
    (dict(optimizer_class=fastopt.LAMB), NotImplementedError, "trust ratios"),
    (dict(rounding="up"), ValueError, "rounding"),
    (dict(reduce="avg"), ValueError, "reduce: expected"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(optimizer_class=int), TypeError, "optimizer_class"),
    (dict(momentum=0.9), TypeError, r"unexpected options \['momentum'\]"),
])
def test_bad_options(options, error, match):
    cls = options.pop("optimizer_class", fastopt.AdamW)
    with pytest.raises(error, match=match):
        ZeroOptimizer(cls, _arena(), **options)


def test_bad_params_and_grads():
    arena = _arena()
    with pytest.raises(ValueError, match="cover tensors 0:1 of an arena of 3"):
        ZeroOptimizer(fastopt.AdamW, [arena.segment(0, 1)])
    with pytest.raises(ValueError, match="consecutive segments"):
        ZeroOptimizer(fastopt.AdamW, [arena.segment(1, 3), arena.segment(0, 1)])
    with pytest.raises(ValueError, match=r"params\[1\]: .*eps"):
        ZeroOptimizer(fastopt.AdamW, [arena.segment(0, 1), {"params": arena.segment(1, 3),
                                                            "eps": -1.0}])
    with pytest.raises(TypeError, match="expected a FlatParams arena segment"):
        ZeroOptimizer(fastopt.AdamW, [np.zeros(3, np.float32)])
    sharded = ZeroOptimizer(fastopt.AdamW, arena)
    before = sharded.params.data.copy()
    with pytest.raises(ValueError, match="flat array of 253 elements"):
        sharded.step(np.zeros(5, np.float32))
    sharded.param_groups[0]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr"):
        sharded.step()
    np.testing.assert_array_equal(sharded.params.data, before)
