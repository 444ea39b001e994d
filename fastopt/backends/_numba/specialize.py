"""How one kernel source becomes a kernel for each algorithm and mode, with what numba supports.

A kernel template is an ordinary function whose body calls a few names it does not define:
``_element`` (the algorithm's element, :mod:`fastopt.backends.elements.optim`), ``_constants``
(the table's derivation of the element constants, ``Algorithm.constants``) and ``USES`` (which
state arrays the step reads and writes). :func:`specialized` returns a copy of the template whose
globals bind those names: the same code object, no source text rewritten. numba resolves globals
when it compiles, as constants: the element is inlined by LLVM and ``USES`` is a compile-time
tuple, so each loop holds no branch around a load or store and vectorizes (a runtime flag would
need LLVM to unswitch the loop, which it does not reliably do).

Kernels take fixed parameters whatever the algorithm: ``(p, g, states, floats, flags)``, the state
arrays as one tuple (numba-cuda flattens a tuple argument at launch; a ``*args`` kernel cannot be
launched, numba issue #6891), the float hyperparameters as one tuple of Python floats (one
compiled type whatever their values), rounded to the arrays' dtype by :func:`rounded`, and the
mode flags as a tuple of bools. The element takes and returns its state values as one tuple too:
:func:`load` and :func:`store` move them between the arrays and the element, skipping the arrays
``USES`` leaves out. Tuples are built and taken apart explicitly: a ``*args`` call of an inlined
function is refused by numba, and of a compiled one it builds the tuple in the loop.

numba caches a function on disk by its qualified name, source file and signature, not by its
globals, so each copy gets a name of its own (``_step_adam_110``: the algorithm and its ``USES``).
A closure instead would be keyed by its pickled cells, and a numba function pickles with an id
new in every process: every process would compile again. The disk cache stays fresh through the
locators of :mod:`fastopt.backends._numba.cache`, which cover the element and table sources.

numba-cuda's simulator runs a kernel as Python, where an intrinsic cannot be called: a kernel copy
made for it binds ``rounded`` to :func:`rounded_in_python`. :func:`load` and :func:`store` run as
Python as they are (their bodies; compiled code calls the overloads that :func:`register` adds).
"""

import types

from numba import types as nbtypes
from numba.extending import intrinsic, overload


def specialized(template, name, doc=None, **bound):
    """A copy of the function ``template`` named ``name`` (its qualified name too, so numba
    caches it apart), whose globals are the template's with ``bound`` added."""
    copy = types.FunctionType(template.__code__, {**template.__globals__, **bound}, name,
                              template.__defaults__, template.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = doc if doc is not None else template.__doc__
    return copy


def mode_name(uses):
    """``uses`` as a name suffix: ``(True, True, False)`` -> ``"110"``."""
    return "".join("1" if u else "0" for u in uses)


@intrinsic
def rounded(typingctx, p, floats):
    """The tuple ``floats`` with each value rounded to the dtype of the array ``p`` (as
    ``p.dtype.type(x)`` rounds it); for numba code only."""
    if not isinstance(floats, nbtypes.UniTuple) or not isinstance(floats.dtype, nbtypes.Float):
        return None
    dtype = p.dtype
    result = nbtypes.UniTuple(dtype, len(floats))

    def codegen(context, builder, signature, args):
        values = args[1]
        out = context.get_constant_undef(result)
        for k in range(len(floats)):
            x = builder.extract_value(values, k)
            out = builder.insert_value(out, context.cast(builder, x, floats.dtype, dtype), k)
        return out

    return result(p, floats), codegen


def rounded_in_python(p, floats):
    """:func:`rounded` in Python, for a kernel run as Python (numba-cuda's simulator)."""
    return tuple(p.dtype.type(x) for x in floats)


def load(states, i, uses, placeholder):
    """``(states[k][i] if uses[k] else placeholder for each k)``."""
    return tuple(a[i] if used else placeholder for a, used in zip(states, uses))


def store(states, i, values, uses):
    """``states[k][i] = values[k]`` for each k where ``uses[k]``."""
    for a, value, used in zip(states, values, uses):
        if used:
            a[i] = value


# One implementation per number of state arrays (an algorithm has one to three; four leaves room):
# a tuple's length is a type, known while typing.

def _load1(states, i, uses, placeholder):
    return (states[0][i] if uses[0] else placeholder,)


def _load2(states, i, uses, placeholder):
    return (states[0][i] if uses[0] else placeholder, states[1][i] if uses[1] else placeholder)


def _load3(states, i, uses, placeholder):
    return (states[0][i] if uses[0] else placeholder, states[1][i] if uses[1] else placeholder,
            states[2][i] if uses[2] else placeholder)


def _load4(states, i, uses, placeholder):
    return (states[0][i] if uses[0] else placeholder, states[1][i] if uses[1] else placeholder,
            states[2][i] if uses[2] else placeholder, states[3][i] if uses[3] else placeholder)


def _store1(states, i, values, uses):
    if uses[0]:
        states[0][i] = values[0]


def _store2(states, i, values, uses):
    if uses[0]:
        states[0][i] = values[0]
    if uses[1]:
        states[1][i] = values[1]


def _store3(states, i, values, uses):
    if uses[0]:
        states[0][i] = values[0]
    if uses[1]:
        states[1][i] = values[1]
    if uses[2]:
        states[2][i] = values[2]


def _store4(states, i, values, uses):
    if uses[0]:
        states[0][i] = values[0]
    if uses[1]:
        states[1][i] = values[1]
    if uses[2]:
        states[2][i] = values[2]
    if uses[3]:
        states[3][i] = values[3]


_LOADS = {1: _load1, 2: _load2, 3: _load3, 4: _load4}
_STORES = {1: _store1, 2: _store2, 3: _store3, 4: _store4}


def register(target):
    """Registers :func:`load` and :func:`store` for numba's ``target``: "cpu", or "cuda", which
    numba-cuda types and inlines through extension registries of its own (numba's ``overload``
    would type there but give it IR of numba's own classes to inline)."""
    if target == "cuda":
        from numba.cuda.extending import overload as for_target
    else:
        for_target = overload

    @for_target(load, inline="always", target=target)
    def _load_impl(states, i, uses, placeholder):
        return _LOADS.get(len(states))

    @for_target(store, inline="always", target=target)
    def _store_impl(states, i, values, uses):
        return _STORES.get(len(states))


register("cpu")
