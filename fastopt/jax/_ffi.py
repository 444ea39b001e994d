"""The XLA FFI handler of :mod:`fastopt.jax`: built from ``ffi.cc`` against
``jax.ffi.include_dir()`` and fastopt's C library (``fastopt.get_include()``,
``fastopt.get_library()``) with the C++ compiler (``$CXX``, else ``c++``), and registered with
XLA for the CPU platform.

It is built when :mod:`fastopt.jax` is first imported, once per combination of the source, the
jax version, the headers and the library: into ``$FASTOPT_CACHE_DIR``, else
``$XDG_CACHE_HOME/fastopt`` or ``~/.cache/fastopt``, under a name hashed from them (a new jax or
a rebuilt fastopt gets a new handler; an import that finds it built only loads it). Building at
import rather than with the C extension keeps jax out of fastopt's build: the extension is built
before jax is installed, and jax's FFI headers change with its version.
"""

import ctypes
import hashlib
import os
import shlex
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ffi.cc")
#: The handlers of ffi.cc: XLA target name -> exported symbol.
TARGETS = {"fastopt_adam": "FastoptAdam"}


def cache_dir():
    """Where built handlers are kept."""
    root = os.environ.get("FASTOPT_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "fastopt")
    return root


def _compiler():
    return shlex.split(os.environ.get("CXX") or "c++")


def build():
    """The path of the built handler library, building it if this combination has none yet.
    Raises ``OSError``, ``subprocess.SubprocessError`` (with the compiler's last lines) or
    ``FileNotFoundError`` (no C library) when it cannot be built."""
    import jax

    import fastopt

    include, library = fastopt.get_include(), fastopt.get_library()
    key = hashlib.sha256()
    with open(SOURCE, "rb") as f:
        key.update(f.read())
    stat = os.stat(library)
    for part in (jax.__version__, jax.ffi.include_dir(), include, library, stat.st_size,
                 stat.st_mtime_ns, *_compiler()):
        key.update(str(part).encode() + b"\0")
    folder = os.path.join(cache_dir(), "jax-ffi")
    target = os.path.join(folder, f"fastopt_jax_{key.hexdigest()[:16]}.so")
    if os.path.exists(target):
        return target
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    command = _compiler() + ["-O2", "-std=c++17", "-shared", "-fPIC", "-w",
                             "-I", jax.ffi.include_dir(), "-I", include, SOURCE, library,
                             f"-Wl,-rpath,{os.path.dirname(library)}", "-o", partial]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise subprocess.SubprocessError(f"{shlex.join(command)} failed:\n{tail}")
        os.replace(partial, target)  # atomic: a concurrent import sees all of it or nothing
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def register():
    """Builds (if needed), loads and registers the handlers with XLA for the CPU platform."""
    import jax

    handlers = ctypes.CDLL(build())
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(handlers, symbol)),
                                    platform="cpu")
