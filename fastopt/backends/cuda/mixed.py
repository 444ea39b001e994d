"""The ``cuda`` backend's mixed-precision steps: float32 master weights updated in place and the
float16/bfloat16 model copy written in the same pass (numba-cuda, grid-stride).

Signatures as in :mod:`fastopt.backends.numpy.mixed`, with ``stream=`` (default: the stream of
``master``; see :mod:`fastopt.backends.cuda.optim`). Every algorithm runs one kernel template,
specialized per algorithm and per set of used state arrays: the mixed-precision update of
:mod:`fastopt.backends.elements.mixed` (decode, the float32 element of
:mod:`fastopt.backends.elements.optim`, encode) on every element. Under the CUDA simulator the
device functions run as Python, the bit casts through numpy.
"""

import functools

import numpy as np
from numba import cuda

from fastopt.backends._numba import specialize
from fastopt.backends._numba.specialize import mode_name, specialized
from fastopt.backends.cuda import optim as cuda_optim
from fastopt.backends.cuda.exact import exact_jit
from fastopt.backends.cuda.optim import SIMULATOR, launch, stream_of
from fastopt.backends.elements import bits as _bits
from fastopt.backends.elements.args import flat
from fastopt.backends.elements.mixed import make_mixed_elements, mixed_step, specialized_update
from fastopt.backends.elements.optim import ELEMENTS, make_elements

if SIMULATOR:  # the simulator runs device functions as Python, without libdevice
    def _f32_from_bits(u):
        return np.array([u & 0xFFFFFFFF], np.uint32).view(np.float32)[0]

    def _bits_from_f32(x):
        return int(np.array([x], np.float32).view(np.uint32)[0])
else:
    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def _f32_from_bits(u):
        return libdevice.int_as_float(np.int32(u & 0xFFFFFFFF))

    @cuda.jit(device=True)
    def _bits_from_f32(x):
        return np.int64(libdevice.float_as_int(x)) & 0xFFFFFFFF

#: The element updates (see :mod:`fastopt.backends.elements.optim`) and the helpers of the
#: mixed-precision update (:mod:`fastopt.backends.elements.mixed`), as device functions.
E = make_elements(cuda.jit(device=True))
M = make_mixed_elements(cuda.jit(device=True), _f32_from_bits, _bits_from_f32)

#: The loads and stores of the state arrays, by their number: the implementations of
#: fastopt.backends._numba.specialize's load and store, plain functions, compiled as device
#: functions. The overloads themselves serve neither target: numba-cuda cannot inline an overload
#: of numba.extending (its pass inserting variable deletions fails on the inlined IR), and the
#: simulator runs kernels as Python, where no overload runs.
_LOADS = {n: cuda.jit(device=True)(f) for n, f in specialize._LOADS.items()}
_STORES = {n: cuda.jit(device=True)(f) for n, f in specialize._STORES.items()}


# ---- The steps: one template for every algorithm -----------------------------------------------
#
# See fastopt.backends._numba.specialize: each kernel is a copy of _step whose globals bind USES and
# _update, the mixed-precision update of fastopt.backends.elements.mixed specialized on the
# algorithm's element and USES.

def _step(master, grad, grad_fmt, states, state_fmt, model, model_fmt, c, stochastic, key):
    """Template: _update on every element, in a grid-stride loop, the state arrays of USES
    loaded and stored"""
    for i in range(cuda.grid(1), master.size, cuda.gridsize(1)):
        g = grad[i]
        master[i], s, model[i] = _update(master[i], g, load(states, i, USES, g), c, i, grad_fmt,
                                         state_fmt, model_fmt, stochastic, key)
        store(states, i, s, USES)


#: Unbound names of the template above (bound in each copy by _kernel); never used.
_update = USES = load = store = None


@functools.cache
def _kernel(name, uses):
    """The mixed-precision kernel of the algorithm kernel ``name`` specialized on ``uses``, as
    ``run(n, master, <its other arguments>, stream=None)``, on ``stream`` or ``master``'s (see
    :func:`fastopt.backends.cuda.optim.launch`)."""
    update = cuda.jit(device=True)(specialized_update(M, E, name, uses))
    doc = (f"Mixed-precision {name} (uses {uses}), a grid-stride loop; formula in "
           f"fastopt.backends.numpy.mixed.{name}")
    step = specialized(_step, f"_mixed_step_{name}_{mode_name(uses)}", doc, _update=update,
                       USES=uses, load=_LOADS[len(uses)], store=_STORES[len(uses)])
    kernel = exact_jit(step)

    def run(n, master, *args, stream=None):
        launch(kernel, n, master, *args, stream=stream_of(master, stream))

    return run


def _on_master_stream(step):
    """``step`` given ``stream=`` or, by default, the stream of ``master`` as passed (flattening
    a numba array forgets its stream)."""

    @functools.wraps(step)
    def run(master, *args, stream=None):
        step(master, *args, stream=stream_of(master, stream))

    return run


for _name in ELEMENTS:
    globals()[_name] = _on_master_stream(mixed_step(_name, functools.partial(_kernel, _name)))
del _name


@exact_jit
def _decode_to_f32(grad, grad_fmt, out):
    """out[i] = the float32 value of gradient bits grad[i] in format grad_fmt"""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < grad.size:
        out[i] = _f32_from_bits(_bits.decode(np.int64(grad[i]), grad_fmt))
        i += stride


_decoded = {}


def sum_of_squares(grad, grad_fmt, stream=None):
    """The squared norm of gradient bits stored in format ``grad_fmt`` (float64, deterministic),
    on ``stream`` (default: ``grad``'s); 0 for an empty gradient, with no launch.

    16-bit gradients are decoded into a cached float32 buffer first: one extra pass over the
    gradient, which a fused decoding reduction would save."""
    if grad.size == 0:
        return 0.0
    stream = stream_of(grad, stream)
    if grad_fmt == _bits.FLOAT32:
        return cuda_optim.sum_of_squares(grad.view(np.float32), stream=stream)
    key = (grad.size, cuda_optim._handle(stream))
    if key not in _decoded:
        _decoded.clear()
        _decoded[key] = cuda.device_array(grad.size, np.float32)
    out = _decoded[key]
    launch(_decode_to_f32, grad.size, flat(grad), grad_fmt, out, stream=stream)
    return cuda_optim.sum_of_squares(out, stream=stream)
