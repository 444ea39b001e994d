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

_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def sources_stamp():
    """SHA-256 of the names and contents of every Python file of ``fastopt/backends``."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            digest.update(name.encode())
            with open(os.path.join(_HERE, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def _stamped(base):
    """``base`` (a numba locator class), restricted to this package and stamped by its sources."""

    class Locator(base):
        def get_source_stamp(self):
            return sources_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _HERE:
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
