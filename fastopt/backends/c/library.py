"""Where the C library ``libfastopt`` and its headers are installed: for C and C++ programs, and
for extensions that link fastopt's kernels (:mod:`fastopt.jax`'s XLA handler).

setup.py (and ``python fastopt/backends/c/build.py``) links the objects of ``csrc/`` into
``fastopt/lib/libfastopt.so`` and copies the public headers to ``fastopt/include/``: the code the
``c`` backend runs, with the entry points of ``fastopt.h``. Nothing here loads the library.
"""

import os
import sys

#: The library's file name (build.py's LIBRARY; that module runs the compiler when imported).
LIBRARY = "libfastopt.dylib" if sys.platform == "darwin" else "libfastopt.so"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _missing(what, path):
    """The error for a file the build did not leave, with the build's reason where it kept one."""
    reason = ""
    record = os.path.join(_PACKAGE, "backends", "c", "BUILD_FAILED.txt")
    if os.path.exists(record):
        with open(record, encoding="utf-8", errors="replace") as f:
            reason = ": the C build failed: " + f.readline().strip()
    return FileNotFoundError(f"fastopt's C {what} is not installed at {path}{reason} (it is built "
                             "with the C extension when fastopt is installed from source, or by "
                             "python fastopt/backends/c/build.py in a source tree)")


def get_include() -> str:
    """The directory holding ``fastopt.h`` and the headers it includes: ``-I`` for a C compiler.

    Raises ``FileNotFoundError`` (with the build's reason, if it failed) when it is missing."""
    path = os.path.join(_PACKAGE, "include")
    if not os.path.exists(os.path.join(path, "fastopt.h")):
        raise _missing("headers", path)
    return path


def get_library() -> str:
    """The path of the shared library ``libfastopt.so``: link it by path (with an rpath to its
    directory, or ``LD_LIBRARY_PATH``), or ``-L`` its directory and ``-lfastopt``.

    Raises ``FileNotFoundError`` (with the build's reason, if it failed) when it is missing."""
    path = os.path.join(_PACKAGE, "lib", LIBRARY)
    if not os.path.exists(path):
        raise _missing("library", path)
    return path
