"""The sharded step (:class:`fastopt.distributed.ZeroOptimizer`, AdamW) at 1, 2 and 4 MPI ranks
against the single-process step: the step's time (the slowest rank's median) and the bytes each rank
sends per step, and the time of the step's two collectives alone. Each world size is one ``mpiexec
-n W python -m mpi4py -m fastopt.bench.distributed ranks N REPEAT`` launch, the single-process step
a process of its own; the ranks share this machine's cores (oversubscribed when W is larger than
the core count: the figures then show the cost of sharing cores, not a cluster's)."""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

WORLDS = (1, 2, 4)


def _rank_main(n, repeat):
    import fastopt
    from fastopt.distributed import MPICommunicator, ZeroOptimizer

    comm = MPICommunicator()
    arena = fastopt.FlatParams([np.zeros(n, np.float32)])
    opt = ZeroOptimizer(fastopt.AdamW, arena, comm=comm, lr=1e-3)
    opt.grads.data[:] = 1.0
    times = []
    for k in range(repeat + 2):  # two warm-up steps
        comm.barrier()
        start = time.perf_counter()
        opt.step()
        elapsed = np.array([time.perf_counter() - start])
        comm.all_reduce(elapsed, "max")  # the slowest rank's
        if k >= 2:
            times.append(float(elapsed[0]))
    collectives = []
    for k in range(repeat + 2):  # the reduce-scatter and all-gather of a step, alone
        comm.barrier()
        start = time.perf_counter()
        comm.reduce_scatter(opt._grad_buffer, opt._shard_grad)
        comm.all_gather(opt._param_buffer)
        elapsed = np.array([time.perf_counter() - start])
        comm.all_reduce(elapsed, "max")
        if k >= 2:
            collectives.append(float(elapsed[0]))
    world = comm.size
    padded = opt.block * world
    sent = (world - 1) * opt.block * (opt.grads.dtype.itemsize + opt.params.dtype.itemsize)
    if comm.rank == 0:
        print(json.dumps({"world": world, "n": n, "padded": padded,
                          "step_s": statistics.median(times),
                          "collectives_s": statistics.median(collectives),
                          "bytes_sent_per_rank": sent}))


def _single_main(n, repeat):
    """The single-process step, in a process of its own with one numba thread, as each rank."""
    import fastopt

    params, grad = np.zeros(n, np.float32), np.ones(n, np.float32)
    opt = fastopt.AdamW([params], lr=1e-3)
    samples = []
    for k in range(repeat + 2):
        start = time.perf_counter()
        opt.step([grad])
        if k >= 2:
            samples.append(time.perf_counter() - start)
    print(json.dumps({"single_step_s": statistics.median(samples)}))


def _last_json(done, what):
    if done.returncode != 0:
        raise RuntimeError(f"distributed bench, {what}, failed: "
                           f"{(done.stdout + done.stderr).strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def distributed(n=4_000_000, repeat=10, worlds=WORLDS, timeout=300):
    """Rows ``{"world", "n", "padded", "step_s", "collectives_s", "single_step_s",
    "bytes_sent_per_rank"}``, one per world size; one row ``{"skipped": reason}`` when mpi4py or
    mpiexec is missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return [{"skipped": "mpi4py is not installed (pip install 'fastopt[mpi]')"}]
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which(
        "mpiexec")
    if mpiexec is None:
        return [{"skipped": "no mpiexec"}]
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    single = _last_json(subprocess.run(
        [sys.executable, "-m", "fastopt.bench.distributed", "single", str(n), str(repeat)],
        env=env, capture_output=True, text=True, timeout=timeout), "one process")
    rows = []
    for world in worlds:
        done = subprocess.run([mpiexec, "-n", str(world), sys.executable, "-m", "mpi4py", "-m",
                               "fastopt.bench.distributed", "ranks", str(n), str(repeat)],
                              env=env, capture_output=True, text=True, timeout=timeout)
        rows.append({**_last_json(done, f"{world} ranks"), **single})
    return rows


def format_distributed(rows):
    """The section's lines."""
    if rows and "skipped" in rows[0]:
        return [f"sharded step (distributed): skipped: {rows[0]['skipped']}"]
    cores = os.cpu_count()
    lines = [f"sharded AdamW step (ZeroOptimizer, float32, {rows[0]['n']:,} parameters), "
             f"W ranks on {cores} cores, one numba thread each (oversubscribed past {cores}):",
             "  ranks   step ms   collectives alone ms   single-process ms   ratio   "
             "MB sent per rank per step"]
    for r in rows:
        lines.append(f"  {r['world']:>5}   {r['step_s'] * 1e3:7.2f}   "
                     f"{r['collectives_s'] * 1e3:20.2f}   {r['single_step_s'] * 1e3:17.2f}   "
                     f"{r['step_s'] / r['single_step_s']:5.2f}   "
                     f"{r['bytes_sent_per_rank'] / 1e6:10.2f}")
    return lines


if __name__ == "__main__":
    {"ranks": _rank_main, "single": _single_main}[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]))
