"""The mixed-precision update of one element, written once for every algorithm, and the host side
of every numba mixed-precision step (:func:`mixed_step`). The ``cuda`` kernels run :func:`update`
on each element; the ``cpu`` kernels work on blocks instead (:mod:`fastopt.backends.cpu.mixed`),
with the same bits.

A mixed-precision step (contract: :mod:`fastopt.backends.numpy.mixed`) updates float32 master
weights whose gradient, state and model copy are stored as bit patterns in integer arrays
(:mod:`fastopt.backends.elements.bits`): the gradient as float32 (``uint32`` views), float16 or
bfloat16 (``uint16``), the state as float32 or bfloat16, the model copy as float16 or bfloat16.
:func:`update` holds no optimizer math: from one element's stored bits it

1. decodes the gradient and the state values the step uses into float32,
2. runs the algorithm's element (:mod:`fastopt.backends.elements.optim`) on the master weight,
3. returns the new master weight, the state values encoded rounded to nearest in their format,
   and the model copy's bits: the new weight rounded to nearest even, or stochastically from
   ``random32(key, i)``.

It is a template in the sense of :mod:`fastopt.backends._numba.specialize`: its ``_element`` and
``USES`` (and the decoding and encoding of that many state values) are bound per algorithm and set
of used state arrays by :func:`specialized_update`. A backend's kernel loads the bits, runs the
copy and stores the results, the state arrays through ``load`` and ``store`` as the float kernels
do, so that a state array the step does not use (empty) is never touched; the element ignores its
placeholder value, as SGD's on the first step. The update takes and returns values, never arrays:
on the CPU an array passed to a function inlined in numba's IR is reference-counted on every
element, which costs more than the update itself.

Every helper is an ordinary function compiled by the target's device decorator
(:func:`make_mixed_elements`), none an ``overload`` or ``intrinsic``: the CUDA simulator runs
device functions as Python, where those cannot run. The element constants are the table's
(``Algorithm.constants``), derived on the host by :func:`mixed_step` (see there why).
"""
import types

import numpy as np

from fastopt.backends._numba.launch import KernelArgs
from fastopt.backends._numba.specialize import mode_name, specialized
from fastopt.backends.elements import bits as _bits
from fastopt.backends.elements.args import flat
from fastopt.backends.numpy.mixed import split_args
from fastopt.optim.algorithms import ALGORITHMS


def mixed_step(kernel, kernel_for):
    """The backend step ``kernel`` (a kernel name; signature of :mod:`fastopt.backends.numpy.mixed`)
    of a numba backend whose kernel for the used state arrays ``uses`` is ``kernel_for(uses)``,
    run as ``kernel_for(uses)(n, master, grad, grad_fmt, states, state_fmt, model, model_fmt,
    constants, stochastic, key)`` on flat views (``states`` a tuple). An empty ``master`` has
    nothing to update.

    The element constants are derived here, on the host, by ``Algorithm.constants`` from the
    floats as numpy.float32 scalars: the contract already hands them rounded to float32
    (:func:`fastopt.optim.mixed.launch`), the table's derivation gives the same bits on numpy
    scalars as compiled, one derivation then serves both targets (the CUDA simulator could not run
    the ``rounded`` intrinsic a kernel prologue would need), and it costs a few scalar operations
    per call, nothing next to a pass over the arrays. Keyword ``options`` of the step (the CUDA
    ``stream``) go to the kernel run as they are."""
    algorithm = ALGORITHMS[kernel]
    args = KernelArgs(algorithm)

    def step(master, grad, grad_fmt, *rest, **options):
        if master.size == 0:
            return
        states, state_fmt, model, model_fmt, scalars, stochastic, key = split_args(algorithm, rest)
        constants = algorithm.constants(tuple(map(np.float32, args.floats(scalars))),
                                        args.flags(scalars))
        kernel_for(args.uses(scalars))(master.size, flat(master), flat(grad), grad_fmt,
                                       tuple(map(flat, states)), state_fmt, flat(model),
                                       model_fmt, constants, stochastic, key, **options)

    step.__name__ = step.__qualname__ = kernel
    step.__doc__ = (f"Mixed-precision {kernel} in place; formula in "
                    f":func:`fastopt.backends.numpy.mixed.{kernel}`.")
    return step


def make_mixed_elements(device_jit, f32_from_bits, bits_from_f32):
    """The helpers of :func:`update` compiled with ``device_jit`` for one target, whose bit casts
    (float32 <-> its 32-bit pattern as an int64) are ``f32_from_bits`` and ``bits_from_f32``, as
    attributes of a module object: ``value``, ``stored``, ``model_bits``, and ``decoded[n]`` and
    ``encoded[n]`` for ``n`` state values. They take and return values, never arrays."""
    M = types.ModuleType("fastopt_mixed_elements")
    decode, encode, random32 = _bits.decode, _bits.encode, _bits.random32

    def value(u, fmt):
        """The float32 value of the bits u stored in format fmt"""
        return f32_from_bits(decode(np.int64(u), fmt))

    def stored(x, fmt):
        """The bits of the float32 x in format fmt, rounded to nearest"""
        return encode(bits_from_f32(x), fmt, False, 0)

    def model_bits(p, i, model_fmt, stochastic, key):
        """The bits of element i's model copy: p rounded to model_fmt, to nearest even or
        stochastically from random32(key, i)"""
        rnd = random32(key, i) if stochastic else 0
        return encode(bits_from_f32(p), model_fmt, stochastic, rnd)

    # The state values decoded from their bits (``placeholder`` where ``uses`` leaves one out),
    # and encoded (0 there): one version per number of state values, a tuple's length being part
    # of its type.

    def decoded1(s, uses, fmt, placeholder):
        return (M.value(s[0], fmt) if uses[0] else placeholder,)

    def decoded2(s, uses, fmt, placeholder):
        return (M.value(s[0], fmt) if uses[0] else placeholder,
                M.value(s[1], fmt) if uses[1] else placeholder)

    def decoded3(s, uses, fmt, placeholder):
        return (M.value(s[0], fmt) if uses[0] else placeholder,
                M.value(s[1], fmt) if uses[1] else placeholder,
                M.value(s[2], fmt) if uses[2] else placeholder)

    def encoded1(s, uses, fmt):
        return (M.stored(s[0], fmt) if uses[0] else 0,)

    def encoded2(s, uses, fmt):
        return M.stored(s[0], fmt) if uses[0] else 0, M.stored(s[1], fmt) if uses[1] else 0

    def encoded3(s, uses, fmt):
        return (M.stored(s[0], fmt) if uses[0] else 0, M.stored(s[1], fmt) if uses[1] else 0,
                M.stored(s[2], fmt) if uses[2] else 0)

    for f in (value, stored, model_bits):
        setattr(M, f.__name__, device_jit(f))
    M.decoded = {n: device_jit(f) for n, f in enumerate((decoded1, decoded2, decoded3), start=1)}
    M.encoded = {n: device_jit(f) for n, f in enumerate((encoded1, encoded2, encoded3), start=1)}
    return M


def update(p, g, s, c, i, grad_fmt, state_fmt, model_fmt, stochastic, key):
    """Template: _element on one element's stored bits, in float32: ``p`` the master weight,
    ``g`` the gradient's bits, ``s`` those of the state values (placeholders where USES leaves
    one out); returns the new master weight, the state values' bits (rounded to nearest) and the
    model copy's bits"""
    x = _M.value(g, grad_fmt)
    p, s = _element(p, x, _decoded(s, USES, state_fmt, x), c, USES)
    return p, _encoded(s, USES, state_fmt), _M.model_bits(p, i, model_fmt, stochastic, key)


#: Unbound names of the template above (bound in each copy by specialized_update); never used.
_M = _element = _decoded = _encoded = USES = None


def specialized_update(M, E, kernel, uses):
    """:func:`update` for the element ``E.<kernel>`` and the used state arrays ``uses``, with
    ``M``'s helpers (both of one target), uncompiled; named ``_mixed_update_<kernel>_<uses>``."""
    return specialized(update, f"_mixed_update_{kernel}_{mode_name(uses)}",
                       f"Mixed-precision {kernel} on one element (uses {uses})",
                       _M=M, _element=getattr(E, kernel), USES=uses,
                       _decoded=M.decoded[len(uses)], _encoded=M.encoded[len(uses)])
