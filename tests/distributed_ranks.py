"""The ranks' side of tests/test_distributed.py: ``mpiexec -n W python -m mpi4py
tests/distributed_ranks.py <directory> <checks>``, ``checks`` a comma-separated list of:

- ``steps``: sharded AdamW (two groups, a schedule) against the single-process step of the summed
  gradients, bit for bit: plain, clipped, a NaN on the last rank (skipped on every rank), a loss
  scale; then bfloat16 parameters with bfloat16 state; float16 and bfloat16 parameters rounded
  stochastically; then SGD with momentum in ``sum`` mode;
- ``tiny``: an arena smaller than one block (ranks holding padding only), stepped, saved and
  loaded, against the single-process step;
- ``save``: trains a gradient stream, saves a checkpoint in ``<directory>/ckpt``, continues;
- ``load``: loads that checkpoint (saved at another world size) and continues the stream;
- ``fail``: a save that fails on the last rank leaves the previous checkpoint whole, then the last
  rank raises in a step (``-m mpi4py`` then aborts every rank: the exit status is not 0).

With ``--torch`` after the checks, the collectives run on a ``torch.distributed`` gloo group
(:class:`fastopt.distributed.TorchCommunicator`) instead of MPI.

Every rank's gradient is integer-valued, so MPI's sums are exact in any order. Prints
``rank R: <check> ok`` per check.
"""

import os
import sys

import numpy as np

import fastopt
import fastopt.distributed as fd
from fastopt import lowp, schedules


def communicator():
    """MPI's, or with ``--torch`` a gloo process group's (mpiexec gives the ranks)."""
    if "--torch" not in sys.argv:
        return fd.MPICommunicator()
    import torch.distributed as dist
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    store = os.path.join(sys.argv[1], "torch-store")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=world.rank,
                            world_size=world.size)
    return fd.TorchCommunicator()


COMM = communicator()
RANK, WORLD = COMM.rank, COMM.size
SHAPES = [(211, 197), (197,), (61, 13, 7), (5,)]
SAVED_AT = 5  # the stream's steps before the checkpoint
STREAM = 9  # the stream's steps in all


def arena(dtype=np.float32):
    rng = np.random.default_rng(7)
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    if dtype == np.uint16:
        values = [lowp.to_bfloat16(v) for v in values]
    return fastopt.FlatParams([v.astype(dtype) if dtype == np.float16 else v for v in values],
                              dtype)


def groups(params):
    return [{"params": params.segment(0, 1)},
            {"params": params.segment(1, 4), "weight_decay": 0.0, "lr": 3e-3}]


def rank_grads(step, rank, size, scale=1.0):
    """Rank ``rank``'s integer-valued gradient of ``step``."""
    rng = np.random.default_rng([step, rank])
    return (rng.integers(-6, 7, size) * scale).astype(np.float32)


def check(name, sharded, reference, info, expected):
    if repr(info) != repr(expected):  # NaN norms compare by their text
        raise AssertionError(f"rank {RANK} {name}: StepInfo {info} != {expected}")
    got, want = np.asarray(sharded.params.data), np.asarray(reference.data)
    if not np.array_equal(got.view(np.uint8), want.view(np.uint8)):
        bad = np.flatnonzero(got != want)
        raise AssertionError(f"rank {RANK} {name}: {bad.size} parameters differ, first at "
                             f"{bad[:5]}: {got[bad[:5]]} != {want[bad[:5]]}")


def step_pair(sharded, single, reference, t, *, nan=False, scale=1.0, **options):
    """One step of both with rank gradients of step ``t``; the single-process step gets their sum
    (and ``grad_scale`` times W in ``mean`` mode)."""
    size = sharded.grads.size
    sharded.grads.data[...] = rank_grads(t, RANK, size, scale)
    if nan and RANK == WORLD - 1:
        sharded.grads.data[size // 2] = np.nan
    total = fastopt.FlatParams.empty(SHAPES, sharded.grads.dtype)
    for r in range(WORLD):
        total.data[...] += rank_grads(t, r, size, scale)
    if nan:
        total.data[size // 2] = np.nan
    single_options = dict(options)
    if sharded.reduce == "mean" and WORLD > 1:
        single_options["grad_scale"] = options.get("grad_scale", 1.0) * WORLD
    info = sharded.step(**options)
    expected = single.step([total.segment(0, 1).data, total.segment(1, 4).data],
                           **single_options)
    return info, expected


def steps_check():
    params, reference = arena(), arena()
    sharded = fd.ZeroOptimizer(fastopt.AdamW, groups(params), comm=COMM, lr=1e-2)
    single = fastopt.AdamW(groups(reference), lr=1e-2)
    schedule = schedules.linear_warmup(2, 0.1, then=schedules.cosine(10))
    scheds = [schedules.LRScheduler(o, schedule) for o in (sharded, single)]
    cases = [dict(), dict(max_norm=50.0), dict(max_norm=1e6, nan=True), dict(return_norm=True),
             dict(grad_scale=1024.0, scale=1024.0), dict(max_norm=20.0, grad_scale=4.0, scale=4.0)]
    for t, options in enumerate(cases, start=1):
        if options.get("nan"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                info, expected = step_pair(sharded, single, reference, t, **options)
            if not info.skipped or sharded.skipped_steps != 1:
                raise AssertionError(f"rank {RANK}: the NaN step was not skipped: {info}")
        else:
            info, expected = step_pair(sharded, single, reference, t, **options)
        if "max_norm" in options and not options.get("nan") and info.clip_coef == 1.0:
            raise AssertionError(f"rank {RANK}: step {t} did not clip ({info})")
        check(f"adamw step {t} {options}", sharded, reference, info, expected)
        for s in scheds:
            s.step()
    state = sharded.local.state if sharded.local is not None else {}
    held = sum(s["exp_avg"].size for s in state.values())
    if held > sharded.block:
        raise AssertionError(f"rank {RANK}: holds {held} moments, more than its block")

    # bfloat16 parameters, float32 master weights and bfloat16 state: round to nearest.
    params, reference = arena(np.uint16), arena(np.uint16)
    sharded = fd.ZeroOptimizer(fastopt.AdamW, groups(params), comm=COMM, lr=1e-2,
                               state_dtype="bfloat16")
    single = fastopt.AdamW(groups(reference), lr=1e-2, state_dtype="bfloat16")
    for t in range(1, 4):
        info, expected = step_pair(sharded, single, reference, t, max_norm=30.0)
        check(f"bfloat16 step {t}", sharded, reference, info, expected)

    # float16 and bfloat16 parameters rounded stochastically, keyed on the index in the group.
    for dtype in (np.float16, np.uint16):
        params, reference = arena(dtype), arena(dtype)
        sharded = fd.ZeroOptimizer(fastopt.Adam, groups(params), comm=COMM, lr=1e-2,
                                   rounding="stochastic", seed=5)
        single = fastopt.Adam(groups(reference), lr=1e-2, rounding="stochastic", seed=5)
        for t in range(1, 3):
            info, expected = step_pair(sharded, single, reference, t, max_norm=30.0)
            check(f"stochastic {np.dtype(dtype)} step {t}", sharded, reference, info, expected)

    # SGD with momentum and Nesterov, the summed gradients.
    params, reference = arena(), arena()
    sharded = fd.ZeroOptimizer(fastopt.SGD, groups(params), comm=COMM, reduce="sum", lr=1e-3,
                               momentum=0.9, nesterov=True)
    single = fastopt.SGD(groups(reference), lr=1e-3, momentum=0.9, nesterov=True)
    for t in range(1, 4):
        info, expected = step_pair(sharded, single, reference, t)
        check(f"sgd step {t}", sharded, reference, info, expected)


def tiny_check(directory):
    """An arena smaller than one block: the ranks past the first hold padding only (no local
    optimizer) and still take part in every collective, step and checkpoint."""
    rng = np.random.default_rng(11)
    values = [rng.standard_normal(s).astype(np.float64) for s in [(3,), (9,)]]
    params, reference = fastopt.FlatParams(values), fastopt.FlatParams(values)
    make = [{"params": params.segment(0, 1)}, {"params": params.segment(1, 2), "lr": 0.5}]
    sharded = fd.ZeroOptimizer(fastopt.Adagrad, make, comm=COMM, reduce="sum", lr=0.1)
    single = fastopt.Adagrad([{"params": reference.segment(0, 1)},
                              {"params": reference.segment(1, 2), "lr": 0.5}], lr=0.1)
    if (sharded.local is None) != (RANK * sharded.block >= 12) or sharded.block != (
            16 if WORLD == 1 else 8):  # 12 elements in blocks of whole 8-element vectors
        raise AssertionError(f"rank {RANK}: block {sharded.block}, pieces {sharded.pieces}")
    path = os.path.join(directory, f"tiny{WORLD}")

    def tiny_step(t, sharded):
        total = np.zeros(12)
        for r in range(WORLD):
            total += rank_grads(t, r, 12)
        sharded.grads.data[...] = rank_grads(t, RANK, 12)
        info = sharded.step(max_norm=5.0)
        expected = single.step([total[:3], total[3:]], max_norm=5.0)
        check(f"tiny step {t}", sharded, reference, info, expected)

    for t in range(1, 4):
        tiny_step(t, sharded)
    fd.save(path, sharded)
    reloaded = fd.ZeroOptimizer(fastopt.Adagrad, [{"params": fastopt.FlatParams(values)}],
                                comm=COMM, reduce="sum", lr=0.1)
    try:
        fd.load(path, reloaded)
    except ValueError as exc:
        if "holds 2 parameter groups, the optimizer has 1" not in str(exc):
            raise
    else:
        raise AssertionError(f"rank {RANK}: a checkpoint of 2 groups loaded into 1")
    again = fastopt.FlatParams(values)
    reloaded = fd.ZeroOptimizer(fastopt.Adagrad, [{"params": again.segment(0, 1)},
                                                 {"params": again.segment(1, 2)}],
                                comm=COMM, reduce="sum", lr=0.1)
    fd.load(path, reloaded)
    for t in range(4, 6):
        tiny_step(t, reloaded)


def stream_grads(t, size, world, rank):
    """The stream's global gradient of step ``t`` split over ``world`` ranks: rank ``rank`` holds
    the elements ``i`` with ``i % world == rank``, so the sum is the same at every world size."""
    total = rank_grads(1000 + t, 0, size)
    mine = np.zeros_like(total)
    mine[rank::world] = total[rank::world]
    return total, mine


def stream_pair(params, reference):
    sharded = fd.ZeroOptimizer(fastopt.NAdam, groups(params), comm=COMM, reduce="sum", lr=1e-2)
    single = fastopt.NAdam(groups(reference), lr=1e-2)
    return sharded, single


def stream_step(sharded, single, reference, t):
    total, mine = stream_grads(t, sharded.grads.size, WORLD, RANK)
    info = sharded.step(mine, max_norm=40.0)
    expected = single.step(_split(reference, total), max_norm=40.0)
    check(f"stream step {t}", sharded, reference, info, expected)


def _split(reference, flat):
    grads = reference.zeros_like()
    grads.data[...] = flat
    return [grads.segment(0, 1), grads.segment(1, 4)]


def save_check(directory):
    params, reference = arena(), arena()
    sharded, single = stream_pair(params, reference)
    for t in range(1, SAVED_AT + 1):
        stream_step(sharded, single, reference, t)
    fd.save(os.path.join(directory, "ckpt"), sharded, extra={"step": SAVED_AT, "world": WORLD})
    for t in range(SAVED_AT + 1, STREAM + 1):
        stream_step(sharded, single, reference, t)


def load_check(directory):
    params, reference = arena(), arena()
    sharded, single = stream_pair(params, reference)
    sharded.param_groups[0]["lr"] = 0.5  # restored from the checkpoint
    for t in range(1, SAVED_AT + 1):  # the uninterrupted run
        single.step(_split(reference, stream_grads(t, reference.size, 1, 0)[0]), max_norm=40.0)
    extra = fd.load(os.path.join(directory, "ckpt"), sharded)
    if extra["step"] != SAVED_AT or extra["world"] == WORLD:
        raise AssertionError(f"rank {RANK}: extra {extra}")
    check("loaded", sharded, reference, None, None)
    for t in range(SAVED_AT + 1, STREAM + 1):
        stream_step(sharded, single, reference, t)


def fail_check(directory):
    from fastopt.distributed import checkpoint
    path = os.path.join(directory, "failing")
    params = arena()
    sharded = fd.ZeroOptimizer(fastopt.AdamW, groups(params), comm=COMM, lr=1e-2)
    sharded.step(rank_grads(1, RANK, params.size))
    fd.save(path, sharded)
    before = np.array(sharded.params.data)
    sharded.step(rank_grads(2, RANK, params.size))
    digest = checkpoint._digest
    if RANK == WORLD - 1:
        def failing(array):
            raise OSError("disk full (injected)")
        checkpoint._digest = failing
    try:
        fd.save(path, sharded)
    except (OSError, RuntimeError) as exc:
        print(f"rank {RANK}: the save failed: {type(exc).__name__}: {exc}", flush=True)
    else:
        raise AssertionError(f"rank {RANK}: the failing save did not raise")
    checkpoint._digest = digest
    fd.load(path, sharded)
    if not np.array_equal(sharded.params.data, before):
        raise AssertionError(f"rank {RANK}: the previous checkpoint did not load whole")
    COMM.barrier()
    if RANK == 0:
        files = sorted(f for f in os.listdir(directory) if f.startswith("failing."))
        if len({f.split(".")[1] for f in files}) != 1:  # the first save's id only
            raise AssertionError(f"data files of the failed save remain: {files}")
    print(f"rank {RANK}: previous checkpoint intact", flush=True)
    COMM.barrier()
    if RANK == WORLD - 1:
        sharded.local._prepare = None  # this rank fails inside the next step
    sharded.step(rank_grads(3, RANK, params.size))
    raise AssertionError(f"rank {RANK}: a step completed although a rank failed")


CHECKS = {"steps": steps_check, "tiny": tiny_check, "save": save_check, "load": load_check,
          "fail": fail_check}

if __name__ == "__main__":
    directory, names = sys.argv[1], sys.argv[2].split(",")  # then --torch, optionally
    for name in names:
        if name == "steps":
            CHECKS[name]()
        else:
            CHECKS[name](directory)
        print(f"rank {RANK}: {name} ok", flush=True)
    if "--torch" in sys.argv:
        import torch.distributed as dist

        dist.destroy_process_group()
