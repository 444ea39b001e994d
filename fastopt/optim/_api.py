"""The public API's signatures, generated from the table of :mod:`fastopt.optim.algorithms`.

The functional and mixed-precision steps and the classes are closures over their table entry,
each with the signature ``inspect.signature`` shows (``__signature__``). A step's closure takes
its arrays as ``*arrays`` and its keywords as ``**keywords``: a call that passes the arrays by
position and known keywords, the usual one, costs no binding; any other is bound by the
signature, which names the missing or unexpected argument in its ``TypeError``.
"""

from inspect import Parameter, Signature

from fastopt._core.validate import check_number, check_step
from fastopt.optim._step import check_hyper

POSITIONAL, KEYWORD = Parameter.POSITIONAL_OR_KEYWORD, Parameter.KEYWORD_ONLY


def text(doc):
    """A table text as a docstring: without the line break after its opening quotes."""
    return doc.removeprefix("\n    ")


def class_name(algorithm):
    return algorithm.class_name or algorithm.name.capitalize()


def class_doc(algorithm):
    if algorithm.class_doc is not None:
        return text(algorithm.class_doc)
    torch = f", as ``torch.optim.{algorithm.torch}``" if algorithm.torch else ""
    return (f"{class_name(algorithm)}{torch}; formula: "
            f":func:`fastopt.functional.{algorithm.name}`.")


def state_args(algorithm):
    """``(required, optional)`` state argument names: the optional ones are the trailing states
    that the default hyperparameters do not use (they default to ``None``)."""
    names = algorithm.state_args or algorithm.state
    uses = tuple(algorithm.uses(algorithm.check(dict(algorithm.defaults))))
    n = len(uses)
    while n and not uses[n - 1]:
        n -= 1
    return tuple(names[:n]), tuple(names[n:])


def arrays(names, optional=()):
    return ([Parameter(n, POSITIONAL) for n in names]
            + [Parameter(n, POSITIONAL, default=None) for n in optional])


def step_keywords(algorithm):
    """A step's keyword-only parameters before its own options: ``step``, the host state
    (``None``: recomputed), ``segment_offsets`` and the hyperparameters."""
    out = [Parameter("step", KEYWORD)]
    out += [Parameter(n, KEYWORD, default=None) for n in algorithm.host_state]
    if algorithm.segmented:
        out.append(Parameter("segment_offsets", KEYWORD, default=None))
    return out + [Parameter(n, KEYWORD, default=v) for n, v in algorithm.defaults.items()]


def keyword_defaults(signature):
    """The keyword-only parameters of ``signature`` but ``step``, with their defaults."""
    return {n: p.default for n, p in signature.parameters.items()
            if p.kind is KEYWORD and n != "step"}


def bind(name, signature, args, keywords):
    """``(positional-or-keyword values in order, keyword-only values)`` of a call of ``name``,
    defaults applied; raises ``TypeError`` naming the argument for a call the signature refuses."""
    try:
        bound = signature.bind(*args, **keywords)
    except TypeError as exc:
        raise TypeError(f"{name}() {exc}") from None
    bound.apply_defaults()
    values = bound.arguments
    params = signature.parameters
    return ([v for n, v in values.items() if params[n].kind is POSITIONAL],
            {n: v for n, v in values.items() if params[n].kind is KEYWORD})


def named(function, name, signature, doc):
    function.__name__ = function.__qualname__ = name
    function.__signature__ = signature
    function.__doc__ = doc
    return function


def host_values(algorithm, hyper, step):
    """The checked host state a step starts from (NAdam's ``mu_product``): the values given in
    ``hyper``, each ``None`` recomputed by ``algorithm.host_at`` from constant hyperparameters."""
    checked = check_hyper(algorithm, hyper)
    given = {n: hyper[n] for n in algorithm.host_state}
    if any(v is None for v in given.values()):
        at = algorithm.host_at(checked, check_step(step))
        given = {n: at[n] if v is None else v for n, v in given.items()}
    return {n: check_number(n, v, *algorithm.host_bounds.get(n, ())) for n, v in given.items()}


def host_result(host):
    """What a step with host state returns: the one value, or a dict of several."""
    return next(iter(host.values())) if len(host) == 1 else host


def optimizer_class(algorithm, base, module, doc, options, construct):
    """The class of ``algorithm`` deriving from ``base``, named ``class_name`` in ``module``:
    ``__init__(self, params, hyperparameters..., *, keyword-only ones, options...)``, the
    hyperparameters positional in ``defaults`` order but ``keyword_only``; ``options`` maps the
    class's own keyword-only arguments to their defaults. ``__init__`` binds its arguments, then
    calls ``construct(self, arguments)``."""
    hyper = [Parameter(n, KEYWORD if n in algorithm.keyword_only else POSITIONAL, default=v)
             for n, v in algorithm.defaults.items()]
    hyper.sort(key=lambda p: p.kind)  # stable: the positional ones first
    signature = Signature([Parameter("self", POSITIONAL), Parameter("params", POSITIONAL),
                           *hyper, *(Parameter(n, KEYWORD, default=v)
                                     for n, v in options.items())])

    name = class_name(algorithm)

    def __init__(self, *args, **kwargs):
        positional, keywords = bind(name, signature, (self, *args), kwargs)
        construct(self, {**dict(zip(signature.parameters, positional)), **keywords})

    named(__init__, "__init__", signature, None)
    __init__.__qualname__ = f"{name}.__init__"
    return type(name, (base,), {"__doc__": doc, "__module__": module, "__qualname__": name,
                                "algorithm": algorithm, "__init__": __init__})
