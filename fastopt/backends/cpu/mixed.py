"""The ``cpu`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba ``njit(parallel=True)``).

Signatures as in :mod:`fastopt.backends.numpy.mixed`. Every algorithm runs one kernel template,
specialized per algorithm and per set of used state arrays: the mixed-precision update of
:mod:`fastopt.backends.elements.mixed` (decode, the float32 element of
:mod:`fastopt.backends.elements.optim`, encode) on every element, in parallel above
:data:`fastopt.backends.cpu.optim.PARALLEL_THRESHOLD` elements.
"""

import functools

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from fastopt.backends._numba.compile import serial_and_parallel
from fastopt.backends._numba.specialize import load, mode_name, specialized, store
from fastopt.backends.cpu.optim import (PARALLEL_THRESHOLD, REDUCTION_CHUNK, E, _inline,
                                        _compile_serial_and_parallel)
from fastopt.backends.elements import bits as _bits
from fastopt.backends.elements.mixed import make_mixed_elements, mixed_step, specialized_update
from fastopt.backends.elements.optim import ELEMENTS


@intrinsic
def _f32_from_bits(typingctx, u):
    """The float32 whose bit pattern is the low 32 bits of the integer u."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32)) if u.bitwidth > 32 else args[0]
        return builder.bitcast(low, ir.FloatType())

    return types.float32(u), codegen


@intrinsic
def _bits_from_f32(typingctx, x):
    """The bit pattern of the float32 x, as a non-negative int64."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(x), codegen


#: The helpers of the mixed-precision update (see :mod:`fastopt.backends.elements.mixed`), inlined
#: into it in numba's IR.
M = make_mixed_elements(_inline, _f32_from_bits, _bits_from_f32)
#: The updates, inlined into the kernels by LLVM, forced: left to its cost model they stay calls,
#: and inlined in numba's IR the tuple of integers they return trips the parallel kernels' array
#: analysis, which takes it for an array shape. numba passes the flag on to the functions it
#: compiles for them (bits.encode, unless compiled or cached before), which are then inlined too.
_forceinline = numba.njit(forceinline=True, error_model="numpy")


# ---- The steps: one template for every algorithm -----------------------------------------------
#
# See fastopt.backends._numba.specialize: each kernel is a copy of _step whose globals bind USES and
# _update, the mixed-precision update of fastopt.backends.elements.mixed specialized on the
# algorithm's element and USES. Only the kernel touches the arrays: an array passed to a function
# in the loop is reference-counted on every element unless the counts fall in one basic block, as
# those of load and store do once USES is folded (numba then removes them).

def _step(master, grad, grad_fmt, states, state_fmt, model, model_fmt, c, stochastic, key):
    """Template: _update on every element, in parallel, the state arrays of USES loaded and
    stored"""
    for i in prange(master.size):
        g = grad[i]
        master[i], s, model[i] = _update(master[i], g, load(states, i, USES, g), c, i, grad_fmt,
                                         state_fmt, model_fmt, stochastic, key)
        store(states, i, s, USES)


#: Unbound names of the template above (bound in each copy by _kernel); never used.
_update = USES = None


@functools.cache
def _kernel(name, uses):
    """The mixed-precision kernel of the algorithm kernel ``name`` specialized on ``uses``, as
    ``run(n, <its arguments>)``, serial or parallel by size."""
    update = _forceinline(specialized_update(M, E, name, uses))
    doc = (f"Mixed-precision {name} (uses {uses}) on every element; formula in "
           f"fastopt.backends.numpy.mixed.{name}")
    return _compile_serial_and_parallel(specialized(
        _step, f"_mixed_step_{name}_{mode_name(uses)}", doc, _update=update, USES=uses))


for _name in ELEMENTS:
    globals()[_name] = mixed_step(_name, functools.partial(_kernel, _name))
del _name


def _sum_of_squares_body(grad, grad_fmt, chunk):
    """sum(g_i^2) in float64 of decoded gradient bits, in fixed chunks summed in order"""
    n_chunks = (grad.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        s = 0.0
        for i in range(c * chunk, min(grad.size, (c + 1) * chunk)):
            x = np.float64(_f32_from_bits(_bits.decode(np.int64(grad[i]), grad_fmt)))
            s += x * x
        partial[c] = s
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


_sum_serial, _sum_parallel = serial_and_parallel(_sum_of_squares_body)


def sum_of_squares(grad, grad_fmt):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic)."""
    kernel = _sum_parallel if grad.size >= PARALLEL_THRESHOLD else _sum_serial
    return float(kernel(grad.reshape(-1), grad_fmt, REDUCTION_CHUNK))
