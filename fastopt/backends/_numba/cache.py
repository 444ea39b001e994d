"""numba's disk cache, invalidated by any change to the kernel sources, not only the kernel's file.

numba decides whether a cached kernel is fresh from the source file that defines it. fastopt's
kernels are assembled from functions of several files (the element updates of ``_optim_element``,
the bit casts of ``_bits``, the wrappers of ``cpu_mixed``), so an edit to one of those would leave
stale machine code in the cache of the others. The locators registered here cover the files of this
package only: their stamp is one hash of every ``fastopt/backends/*.py``, so a change to any of them
recompiles every kernel once. Imported by ``fastopt.backends`` before any kernel is defined
(numba picks a function's locator when it is decorated).
"""

import functools
import hashlib
import os

from numba.core import caching

#: ``fastopt/backends``: every kernel source lives under it.
_BACKENDS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def sources_stamp():
    """SHA-256 of the paths and contents of every Python file under ``fastopt/backends``, of the
    algorithm table and of the tunables."""
    digest = hashlib.sha256()
    paths = sorted(os.path.relpath(os.path.join(folder, name), _BACKENDS)
                   for folder, _, names in os.walk(_BACKENDS) for name in names
                   if name.endswith(".py"))
    # The algorithm table: kernels inline its derivation of their constants.
    paths.append(os.path.join(os.pardir, "optim", "algorithms.py"))
    # The tunables: kernels compile their block and chunk sizes in as constants.
    paths.append(os.path.join(os.pardir, "_core", "config.py"))
    for path in paths:
        digest.update(path.encode())
        with open(os.path.join(_BACKENDS, path), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _stamped(base):
    """``base`` (a numba locator class), restricted to this package and stamped by its sources."""

    class Locator(base):
        def get_source_stamp(self):
            return sources_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(_BACKENDS + os.sep):
                return None
            return super().from_function(py_func, py_file)

    Locator.__name__ = Locator.__qualname__ = "Fastopt" + base.__name__
    return Locator


def register():
    """Puts the locators first in numba's list (once), in numba's own order of preference."""
    classes = caching.CacheImpl._locator_classes
    if any(c.__name__.startswith("Fastopt") for c in classes):
        return
    classes[:0] = [_stamped(caching.UserProvidedCacheLocator),
                   _stamped(caching.InTreeCacheLocator),
                   _stamped(caching.UserWideCacheLocator)]


register()
