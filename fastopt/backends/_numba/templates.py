"""Kernels written once for every algorithm, as template functions expanded per algorithm.

A template is an ordinary function whose parameter ``ARGS`` stands for the algorithm's own
parameters, passed on in its body as ``ARGS`` too, and whose global ``_update`` stands for the
algorithm's update. :func:`expand` compiles a copy of the template's source with ``ARGS`` written
out and ``_update`` bound: a kernel of fixed parameters, as if written by hand. A template may
have more placeholders (upper-case words: a list of names, an expression) and more globals to
bind (a prologue); a launcher is expanded from a template the same way.

A kernel taking ``*args`` instead would pass them on as one tuple, which numba-cuda cannot launch
on a device (numba issue #6891), and which keeps numba's CPU inliner from inlining the update into
the kernel (the loops then compile differently). The copy is compiled from the template's own
lines, in its file: tracebacks show the template, and numba caches the kernel with that file's.
``_update`` is a global of the copy rather than a closure variable: numba keys the disk cache of a
closure by its pickled cells, and a numba function pickles with an id new in every process.
"""

import functools
import inspect
import re


def parameters(function, skip):
    """The names of ``function``'s parameters after the first ``skip``, comma-separated."""
    return ", ".join(list(inspect.signature(function).parameters)[skip:])


@functools.cache
def _source(template):
    return inspect.getsource(template)


def expand(template, name, args=None, update=None, doc=None, *, text=None, bind=None):
    """A copy of the function ``template`` named ``name``, with docstring ``doc``.

    In its source, ``ARGS`` is replaced by ``args`` (the names of the algorithm's parameters,
    comma-separated), and every other placeholder, a whole word, by its text in ``text`` (a dict).
    Its globals are those of the template's module as they are now, with ``_update`` bound to
    ``update`` and the names of ``bind`` (a dict) to their values; with neither, the copy is
    defined in the template's module itself, whose globals it then sees as they are when called.
    """
    placeholders = dict(text or {})
    if args is not None:
        placeholders["ARGS"] = args
    source = _source(template)
    for word, value in placeholders.items():
        source = re.sub(rf"\b{word}\b", lambda _: value, source)
    source = source.replace(f"def {template.__name__}(", f"def {name}(", 1)
    code = template.__code__
    if update is None and not bind:
        namespace = template.__globals__
    else:
        namespace = {**template.__globals__, **(bind or {})}
        if update is not None:
            namespace["_update"] = update
    exec(compile("\n" * (code.co_firstlineno - 1) + source, code.co_filename, "exec"), namespace)
    function = namespace[name]
    function.__doc__ = doc
    return function
