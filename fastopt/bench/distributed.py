"""The sharded step (:class:`fastopt.distributed.ZeroOptimizer`, AdamW) at 1, 2 and 4 MPI ranks
against the single-process step: the step's time (the slowest rank's median) and the bytes each rank
sends per step. Each world size is one ``mpiexec -n W python -m mpi4py -m
fastopt.bench.distributed`` launch; the ranks share this machine's cores (oversubscribed when W is
larger than the core count: the figures then show the cost of sharing cores, not a cluster's)."""

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
    single = None
    if comm.rank == 0:
        params = np.zeros(n, np.float32)
        grad = np.ones(n, np.float32)
        ref = fastopt.AdamW([params], lr=1e-3)
        samples = []
        for k in range(repeat + 2):
            start = time.perf_counter()
            ref.step([grad])
            if k >= 2:
                samples.append(time.perf_counter() - start)
        single = statistics.median(samples)
    world = comm.size
    padded = opt.block * world
    sent = (world - 1) * opt.block * (opt.grads.dtype.itemsize + opt.params.dtype.itemsize)
    if comm.rank == 0:
        print(json.dumps({"world": world, "n": n, "padded": padded,
                          "step_s": statistics.median(times), "single_step_s": single,
                          "bytes_sent_per_rank": sent}))


def distributed(n=1_000_000, repeat=10, worlds=WORLDS, timeout=300):
    """Rows ``{"world", "n", "step_s", "single_step_s", "bytes_sent_per_rank"}``, one per world
    size; an empty list with a reason when mpi4py or mpiexec is missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return [{"skipped": "mpi4py is not installed (pip install 'fastopt[mpi]')"}]
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which(
        "mpiexec")
    if mpiexec is None:
        return [{"skipped": "no mpiexec"}]
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    rows = []
    for world in worlds:
        done = subprocess.run([mpiexec, "-n", str(world), sys.executable, "-m", "mpi4py", "-m",
                               "fastopt.bench.distributed", str(n), str(repeat)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"distributed bench at {world} ranks failed: "
                               f"{(done.stdout + done.stderr).strip()[-800:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def format_distributed(rows):
    """The section's lines."""
    if rows and "skipped" in rows[0]:
        return [f"sharded step (distributed): skipped: {rows[0]['skipped']}"]
    cores = os.cpu_count()
    lines = [f"sharded AdamW step (ZeroOptimizer, float32, {rows[0]['n']:,} parameters), "
             f"W ranks on {cores} cores, one numba thread each (oversubscribed past {cores}):",
             "  ranks   step ms   single-process ms   ratio   MB sent per rank per step"]
    for r in rows:
        lines.append(f"  {r['world']:>5}   {r['step_s'] * 1e3:7.2f}   "
                     f"{r['single_step_s'] * 1e3:17.2f}   {r['step_s'] / r['single_step_s']:5.2f}"
                     f"   {r['bytes_sent_per_rank'] / 1e6:10.2f}")
    return lines


if __name__ == "__main__":
    _rank_main(int(sys.argv[1]), int(sys.argv[2]))
