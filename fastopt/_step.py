"""One validated optimizer step on one parameter array, shared by the functional API and classes."""

from . import _memory
from ._dispatch import choose, kernels
from ._validate import check_arrays


def check_hyper(algorithm, hyper):
    """Validated hyperparameters of ``algorithm`` from ``hyper`` (extra keys are ignored)."""
    return algorithm.check({name: hyper[name] for name in algorithm.defaults})


def resolve(algorithm, hyper, param, grad, states, backend):
    """Checks one step's arrays; returns ``(kernel module, arrays, on_device)``.

    ``states`` follows ``algorithm.state``; an entry the mode does not use may be ``None`` and is
    replaced by an empty array. Nothing is written.
    """
    uses = algorithm.uses(hyper)
    named = {"param": param, "grad": grad}
    written = {"param"}
    for name, used, array in zip(algorithm.state, uses, states):
        if used:
            if array is None:
                raise ValueError(f"{name}: this {algorithm.name} configuration needs a {name} "
                                 "state array, got None")
            written.add(name)
        named[name] = array if used else None
    name = choose(named, backend)
    module = kernels(name)
    on_device = name == "cuda"
    arrays = check_arrays(named, written, on_device)
    empty = None
    for i, a in enumerate(arrays):
        if a is None:
            empty = empty if empty is not None else _memory.empty(on_device, arrays[0].dtype)
            arrays[i] = empty
    return module, arrays, on_device


def launch(module, algorithm, arrays, scalars, grad_scale=1.0):
    """Runs the kernel with scalars cast to the arrays' dtype (flags stay ``bool``): one compiled
    kernel per dtype, whatever the values. ``grad_scale`` multiplies the gradient in the kernel."""
    to_dtype = arrays[0].dtype.type
    cast = [s if type(s) is bool else to_dtype(s) for s in scalars]
    getattr(module, algorithm.kernel)(*arrays, *cast, to_dtype(grad_scale))

