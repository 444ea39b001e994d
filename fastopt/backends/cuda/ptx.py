"""Every CUDA kernel compiled to PTX for real devices, without one, and what its PTX does.

``python -m fastopt.backends.cuda.ptx --json OUT`` (in a process without
``NUMBA_ENABLE_CUDASIM``; it needs the ``nvidia-nvvm`` and ``nvidia-cuda-nvrtc`` wheels, and
``nvidia-cuda-nvcc`` for ptxas) records every kernel launch the ``cuda`` backend's entry points
make, with the argument types they really pass (:func:`record`: the launchers run on host arrays
with launching replaced by recording), adds the capturable steps' kernels, whose types are those
their optimizer passes (:func:`capturable_launches`), compiles each kernel once per signature and
writes, per compute capability, its PTX statistics (:func:`statistics`): instructions, ``fma``
instructions, float64 arithmetic, and ptxas's registers and spills.

numba-cuda asks for "the current device" only for the compute capability of device functions;
:func:`compile_kernel` gives it the target's. Kernels compile in parallel processes (``--jobs``).
"""

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

#: The compute capabilities compiled by default: A100 and H100.
CCS = ((8, 0), (9, 0))

#: Opcodes of floating-point arithmetic (the first part of a PTX instruction name).
_ARITHMETIC = {"add", "sub", "mul", "div", "fma", "mad", "sqrt", "rsqrt", "rcp", "neg", "abs",
               "min", "max", "setp", "ex2", "lg2", "sin", "cos", "tanh", "testp"}


def statistics(ptx):
    """``{"instructions", "fma", "f64_arithmetic", "f64_ops"}`` of one PTX text: every
    instruction line, the ``fma`` ones on floats, and those whose arithmetic is float64 (the
    opcodes of :data:`_ARITHMETIC` typed ``.f64``; conversions and loads are not arithmetic)."""
    instructions = fma = f64 = 0
    ops = {}
    for line in ptx.splitlines():
        line = line.strip()
        if not line or line[0] in "./{}$@" and not line.startswith("@"):
            continue
        if line.startswith("@"):  # a predicated instruction
            line = line.split(None, 1)[1] if " " in line else ""
        opcode = line.split(None, 1)[0].rstrip(";")
        if not opcode or opcode.endswith(":") or opcode.startswith("//"):
            continue
        instructions += 1
        parts = opcode.split(".")
        if parts[0] == "fma" and parts[-1] in ("f32", "f64", "f16", "bf16"):
            fma += 1
        if parts[0] in _ARITHMETIC and parts[-1] == "f64":
            f64 += 1
            ops[opcode] = ops.get(opcode, 0) + 1
    return {"instructions": instructions, "fma": fma, "f64_arithmetic": f64, "f64_ops": ops}


def ptxas_path():
    """The ptxas of the ``nvidia-cuda-nvcc`` wheel (or on PATH), or None."""
    try:
        import nvidia

        for root in nvidia.__path__:
            for sub in ("cu13/bin", "cuda_nvcc/bin"):
                path = os.path.join(root, sub, "ptxas")
                if os.path.exists(path):
                    return path
    except ImportError:
        pass
    return shutil.which("ptxas")


def ptxas_usage(ptx, cc):
    """``{"registers", "spill_stores", "spill_loads", "stack"}`` from ``ptxas -v`` on ``ptx``
    for ``cc``, or None without ptxas."""
    ptxas = ptxas_path()
    if ptxas is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "k.ptx")
        with open(source, "w") as f:
            f.write(ptx)
        done = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", "-o",
                               os.path.join(tmp, "k.cubin"), source],
                              capture_output=True, text=True, check=True)
    text = done.stderr + done.stdout

    def number(pattern):
        found = re.findall(pattern, text)
        return max(map(int, found)) if found else 0

    return {"registers": number(r"Used (\d+) registers"),
            "spill_stores": number(r"(\d+) bytes spill stores"),
            "spill_loads": number(r"(\d+) bytes spill loads"),
            "stack": number(r"(\d+) bytes stack frame")}


# ---- Recording the launches of the entry points -----------------------------------------------

class _DeviceLike(np.ndarray):
    """A host array standing in for a device array while recording."""

    def copy_to_host(self, *args, **kwargs):
        return np.array(self)

    def copy_to_device(self, values, *args, **kwargs):
        self[...] = values


def _device_array(shape, dtype=np.float64, *args, **kwargs):
    return np.zeros(shape, dtype).view(_DeviceLike)


@contextlib.contextmanager
def _recording(launches):
    """Within it, ``kernel[config](*args)`` records ``launches[(py_func, types)] = kernel``
    instead of launching, and device arrays are host arrays."""
    from numba import cuda
    from numba.cuda.dispatcher import CUDADispatcher

    from fastopt.backends.cuda import optim as cuda_optim

    def configured(kernel, config):
        def run(*args):
            types = tuple(kernel.typeof_pyval(a) for a in args)
            launches.setdefault((kernel.py_func, types), kernel)
        return run

    saved = (CUDADispatcher.__getitem__, cuda.device_array, cuda_optim._max_blocks,
             cuda_optim._configured)
    CUDADispatcher.__getitem__ = configured
    cuda.device_array = _device_array
    cuda_optim._max_blocks = lambda: 4 * 132
    cuda_optim._configured = lambda kernel, blocks, threads, stream=0: kernel[blocks, threads,
                                                                              stream]
    try:
        yield
    finally:
        (CUDADispatcher.__getitem__, cuda.device_array, cuda_optim._max_blocks,
         cuda_optim._configured) = saved


def _modes(algorithm):
    """Every valid combination of the algorithm's test modes, as validated hyperparameters."""
    names = list(algorithm.modes)
    for values in itertools.product(*(algorithm.modes[n] for n in names)):
        try:
            yield algorithm.check({**algorithm.defaults, **dict(zip(names, values))})
        except ValueError:  # a combination the table refuses (Nesterov without momentum)
            continue


def _scalars(algorithm, hyper):
    return algorithm.scalars(hyper, 1, True, **algorithm.initial_host(hyper))


def record():
    """``{(py_func, argument types): kernel}`` of every launch the ``cuda`` backend's entry
    points make, over the algorithm table's modes and every dtype they take."""
    from fastopt._core.dispatch import kernels
    from fastopt.backends._numba.launch import KernelArgs
    from fastopt.backends.cuda import memory as cuda_memory, mixed as cuda_mixed
    from fastopt.backends.cuda import mlp as cuda_mlp, optim as cuda_optim
    from fastopt.backends.cuda import quant8 as cuda_quant8
    from fastopt.backends.numpy import quant8
    from fastopt.nn.reference import GELU, IDENTITY, RELU, SIGMOID, TANH
    from fastopt.optim import mixed as fo_mixed
    from fastopt.optim.algorithms import ALGORITHMS

    del kernels
    launches = {}
    n = 8
    with _recording(launches):
        for algorithm in ALGORITHMS.values():
            args = KernelArgs(algorithm)
            for hyper in _modes(algorithm):
                scalars = _scalars(algorithm, hyper)
                uses = args.uses(scalars)
                for dtype in (np.float32, np.float64):
                    p, g = _device_array(n, dtype), _device_array(n, dtype)
                    states = [_device_array(n if u else 0, dtype) for u in uses]
                    if algorithm.segmented:
                        offsets = np.array([0, 3, n], np.int64)
                        cuda_optim.lamb(p, g, *states, offsets, *scalars, 1.0)
                        cuda_optim.lamb_with_norm(p, g, *states, offsets, *scalars, 1.0,
                                                  _device_array(1))
                    else:
                        getattr(cuda_optim, algorithm.kernel)(p, g, *states, *scalars, 1.0)
                        getattr(cuda_optim, algorithm.kernel + "_with_norm")(
                            p, g, *states, *scalars, 1.0, _device_array(1))
                if not algorithm.mixed:
                    continue
                for grad_dtype, state_dtype, model_dtype in itertools.product(
                        (np.float32, np.float16, np.uint16), (np.float32, np.uint16),
                        (np.float16, np.uint16)):
                    master, grad = _device_array(n, np.float32), _device_array(n, grad_dtype)
                    states = [_device_array(n if u else 0, state_dtype) for u in uses]
                    for stochastic in (False, True):
                        fo_mixed.launch(cuda_mixed, algorithm, master, grad, states,
                                        _device_array(n, model_dtype), scalars, 1.0, stochastic,
                                        np.uint64(7))
        for name in quant8.ALGORITHMS:  # 8-bit state: float32 parameters
            algorithm = ALGORITHMS[name]
            if algorithm.kernel != name:
                continue
            args = KernelArgs(algorithm)
            for hyper in _modes(algorithm):
                scalars = _scalars(algorithm, hyper)
                uses = args.uses(scalars)
                codes = [_device_array(n if u else 0, np.uint8) for u in uses]
                absmax = [_device_array(1 if u else 0, np.float32) for u in uses]
                maps = [_device_array(514, np.float32) for _ in uses]
                luts = [_device_array(2 * quant8.LUT_SIDE, np.int32) for _ in uses]
                getattr(cuda_quant8, algorithm.kernel)(
                    _device_array(n, np.float32), _device_array(n, np.float32), codes, absmax,
                    maps, luts, *scalars, 1.0)
        for dtype in (np.float32, np.float64, np.float16, np.uint16):
            cuda_optim.max_magnitude_bits(_device_array(n, dtype))
        for dtype in (np.float32, np.float64):
            cuda_optim.sum_of_squares(_device_array(n, dtype))
            cuda_memory.full(n, dtype, 0.5)
        for dtype in (np.float32, np.float16, np.uint16):
            fo_mixed.grad_sum_of_squares(cuda_mixed, _device_array(n, dtype))
        for dtype in (np.float32, np.float64):
            a = [_device_array((4, 3), dtype) for _ in range(4)]
            w, b, dw, db = (_device_array((3, 3), dtype), _device_array(3, dtype),
                            _device_array((3, 3), dtype), _device_array(3, dtype))
            stats = _device_array(2)
            for activation in (IDENTITY, RELU, TANH, SIGMOID, GELU):
                cuda_mlp.dense_forward(a[0], w, b, a[1], a[2], activation)
                cuda_mlp.dense_backward(a[0], w, a[1], a[2], a[3], dw, db, a[0], activation)
            cuda_mlp.softmax_xent(a[0], np.zeros(4, np.int64), a[1], stats, 0.25)
            cuda_mlp.mse(a[0], a[1], a[2], stats, 0.25)
            cuda_mlp.sum_squares(a[0].reshape(-1), stats)
            cuda_mlp.scale(a[0].reshape(-1), dtype(0.5))
    return launches


def capturable_launches():
    """``{(py_func, argument types): kernel}`` of the capturable steps' kernels: the update
    kernel of each capturable algorithm for each of its modes and dtypes, and ``finalize``, with
    the types :class:`fastopt.optim.capturable.CapturableOptimizer` passes (flat arrays, the
    float64 block, int offsets, bool flags)."""
    from numba import types

    from fastopt.backends._numba.launch import KernelArgs
    from fastopt.backends.cuda import capturable as kern
    from fastopt.optim.algorithms import ALGORITHMS

    launches = {}
    block = types.float64[::1]
    for algorithm in ALGORITHMS.values():
        if algorithm.capturable_doc is None:
            continue
        args = KernelArgs(algorithm)
        flags = types.UniTuple(types.boolean, len(kern.FLAGS[algorithm.kernel]))
        for uses in {args.uses(_scalars(algorithm, h)) for h in _modes(algorithm)}:
            kernel = kern.update_kernel(algorithm.name, uses)
            for dtype in (types.float32, types.float64):
                array = dtype[::1]
                signature = (array, array, types.UniTuple(array, len(uses)), block, types.int64,
                             types.int64, flags)
                launches[(kernel.py_func, signature)] = kernel
    signature = (block, types.int64[::1], block, types.int64)
    launches[(kern.finalize.py_func, signature)] = kern.finalize
    return launches


def _fake_device(cc):
    """numba-cuda's "current device" as far as compiling device functions asks: its compute
    capability."""
    from numba.cuda import dispatcher

    class Device:
        compute_capability = cc

    dispatcher.get_current_device = lambda: Device


def compile_kernel(py_func, types, ccs, exact, contraction=False):
    """``{cc: PTX}`` of the kernel ``py_func`` for the argument ``types``; ``exact``: compiled
    with contraction off (:mod:`fastopt.backends.cuda.exact`) unless ``contraction``."""
    from numba.cuda.compiler import _compile_pyfunc_with_fixup

    from fastopt.backends.cuda.exact import contraction_off

    _fake_device(ccs[0])
    library, _ = _compile_pyfunc_with_fixup(py_func, types, device=False, abi="numba",
                                            cc=ccs[0])
    out = {}
    for cc in ccs:
        with contraction_off() if exact and not contraction else contextlib.nullcontext():
            out[cc] = library.get_asm_str(cc=cc)
    return out


def _all_launches():
    launches = record()
    launches.update(capturable_launches())
    return sorted(launches.items(), key=lambda item: (item[0][0].__name__, str(item[0][1])))


def _dtype_of(types):
    """The element type of the kernel's first array argument (its data), as a string."""
    from numba import types as nb

    for t in types:
        if isinstance(t, nb.Array):
            return str(t.dtype)
        if isinstance(t, nb.BaseTuple) and t.types and isinstance(t.types[0], nb.Array):
            return str(t.types[0].dtype)
    return "none"


def _work(job):
    """Compiles the share ``job = (index, jobs, ccs, contraction)`` of the kernels; returns
    their rows."""
    index, jobs, ccs, contraction = job
    from fastopt.backends.cuda.exact import is_exact

    rows = []
    for k, ((py_func, types), kernel) in enumerate(_all_launches()):
        if k % jobs != index:
            continue
        exact = is_exact(kernel)
        ptxes = compile_kernel(py_func, types, ccs, exact, contraction)
        for cc, ptx in ptxes.items():
            rows.append({"kernel": py_func.__name__, "types": str(types),
                         "dtype": _dtype_of(types), "cc": f"sm_{cc[0]}{cc[1]}", "exact": exact,
                         "compiles_exact": getattr(kernel.compile, "fastopt_exact", False),
                         "doc": py_func.__doc__ or "", **statistics(ptx),
                         "ptxas": ptxas_usage(ptx, cc)})
    return rows


def compile_all(ccs=CCS, jobs=2, contraction=False):
    """The rows of every kernel x signature x compute capability (see :func:`_work`)."""
    shares = [(k, jobs, tuple(ccs), contraction) for k in range(jobs)]
    if jobs == 1:
        return _work(shares[0])
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return [row for rows in pool.map(_work, shares) for row in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastopt.backends.cuda.ptx",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="where to write the rows")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cc", default="80,90", help="compute capabilities, e.g. 80,90")
    parser.add_argument("--contraction", action="store_true",
                        help="compile the exact kernels with NVVM's default contraction too "
                             "(what they would be without fastopt.backends.cuda.exact)")
    a = parser.parse_args(argv)
    import numba

    if numba.config.ENABLE_CUDASIM:
        parser.error("run without NUMBA_ENABLE_CUDASIM: the simulator compiles nothing")
    ccs = [(int(c[:-1]), int(c[-1])) for c in a.cc.split(",")]
    rows = compile_all(ccs, max(1, a.jobs), a.contraction)
    with open(a.json, "w") as f:
        json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
