"""The host side of the numba kernels: a step's scalars as the kernels take them.

A backend step takes the contract's scalars (``Algorithm.kernel_args``, then ``grad_scale``; see
:mod:`fastopt.backends`); a numba kernel takes them as two tuples, the floats and the flags (see
:mod:`fastopt.backends._numba.specialize`), and is specialized on which state arrays the step uses.
:class:`KernelArgs` does that split for one algorithm, with index lists made once.
"""

import operator

#: ``uses`` of an algorithm whose step always uses every state array, by their number.
_ALL = {n: (True,) * n for n in range(5)}


def _getter(indices):
    """A function returning ``tuple(x[k] for k in indices)``, a tuple even for one index."""
    if not indices:
        return lambda x: ()
    if len(indices) == 1:
        (k,) = indices
        return lambda x: (x[k],)
    return operator.itemgetter(*indices)


class KernelArgs:
    """How the scalars of ``algorithm``'s backend step reach its numba kernels."""

    def __init__(self, algorithm):
        names = algorithm.kernel_args
        self.algorithm = algorithm
        self._floats = _getter([k for k, a in enumerate(names) if a in algorithm.float_args]
                               + [len(names)])  # grad_scale, after the kernel arguments
        self._flags = _getter([k for k, a in enumerate(names) if a in algorithm.flag_args])
        #: ``scalars -> (<float kernel arguments>, grad_scale)``, the values as they are.
        self.float_getter = self._floats
        #: ``scalars -> (<flag kernel arguments>)``.
        self.flag_getter = self._flags
        self._uses_at = [(a, names.index(a)) for a in algorithm.uses_args]
        self._all = _ALL[len(algorithm.state)]

    def floats(self, scalars):
        """``(1.0, <float kernel arguments>, grad_scale)`` as Python floats."""
        return (1.0, *map(float, self._floats(scalars)))

    def flags(self, scalars):
        """The flag kernel arguments, in order."""
        return self._flags(scalars)

    def uses(self, scalars):
        """Which state arrays the step of these scalars reads and writes, as bools."""
        if not self._uses_at:
            return self._all
        named = {a: scalars[k] for a, k in self._uses_at}
        return tuple(map(bool, self.algorithm.uses(named)))
