"""cffi builder of the C backend: compiles ``csrc/`` into the extension
``fastopt.backends.c._fastopt_c``.

``setup.py`` uses it through ``cffi_modules``; ``python fastopt/backends/c/build.py`` builds the
extension in place, next to this file. Source paths are relative to the repository root, where
setup.py runs.

The tunables (thread thresholds, chunk and block sizes) are those of ``fastopt/_core/config.py``,
passed as ``-D NAME=value`` (its ``C_DEFINES``); the sources define none, and stop without them.
The module is loaded by path: ``fastopt`` itself need not be importable during setup.py's build.

Flags: ``-O3 -std=c99 -fno-math-errno -ffp-contract=off``, never ``-ffast-math``: the kernels are
elementwise, so without it they vectorize and still match the numpy reference bit for bit, on any
number of threads. ``-fopenmp`` is added when a test program compiles and links with it (set
``FASTOPT_OPENMP=0`` to leave it out). ``-march=native`` is added when the compiler accepts it:
the extension is built on the machine that runs it (``pip install`` from source), and the steps'
square roots and divisions run twice as wide with AVX2 as with the SSE2 baseline; with
``-ffp-contract=off`` and no fast-math the results are the same bits on either. ``FASTOPT_MARCH``
names another ``-march`` value (e.g. ``x86-64-v2`` for a portable wheel), or ``none`` for the
compiler's default. ``FASTOPT_SANITIZE=1`` adds AddressSanitizer and UndefinedBehaviorSanitizer
(``make test-sanitize`` builds a copy of the package so and runs the C backend's tests on it).
"""

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
import tempfile

import cffi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Every csrc/*.c is compiled; every csrc/*.h is a public header whose declarations go to cdef
# (declarations()), except the bodies that sources include for several types (*_template.h).
SOURCES = sorted(os.path.join("csrc", f) for f in os.listdir(os.path.join(ROOT, "csrc"))
                 if f.endswith(".c"))
DEPENDS = sorted(os.path.join("csrc", f) for f in os.listdir(os.path.join(ROOT, "csrc"))
                 if f.endswith(".h"))
HEADERS = [h for h in DEPENDS if not h.endswith("_template.h")]
CONFIG = os.path.join("fastopt", "_core", "config.py")

BASE_FLAGS = ["-O3", "-std=c99", "-fno-math-errno", "-ffp-contract=off"]

_OPENMP_TEST = b"#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"


def _compiler():
    """The C compiler command setuptools will use: $CC, else the one Python was built with."""
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def _compiles(program, flags):
    """Whether the compiler compiles and links ``program`` (bytes of C) with ``flags``."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "test.c")
        with open(source, "wb") as f:
            f.write(program)
        command = _compiler() + flags + [source, "-o", os.path.join(tmp, "test")]
        try:
            result = subprocess.run(command, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0


def openmp_works():
    """Whether the compiler compiles and links an OpenMP program with ``-fopenmp``."""
    if os.environ.get("FASTOPT_OPENMP", "1") == "0":
        return False
    return _compiles(_OPENMP_TEST, ["-fopenmp"])


def march_flag():
    """``-march=<FASTOPT_MARCH>``, else ``-march=native`` if the compiler takes it; or None."""
    march = os.environ.get("FASTOPT_MARCH", "native")
    if march == "none" or not march:
        return None
    flag = f"-march={march}"
    if march == "native" and not _compiles(b"int main(void) { return 0; }\n", [flag]):
        return None
    return flag


def compile_flags():
    """The compile flags and link flags of this build."""
    flags = list(BASE_FLAGS)
    march = march_flag()
    if march:
        flags.append(march)
    link = []
    if openmp_works():
        flags.append("-fopenmp")
        link.append("-fopenmp")
    if os.environ.get("FASTOPT_SANITIZE", "0") == "1":
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                    "-fno-omit-frame-pointer", "-g"]
        flags += sanitize
        link += sanitize
    return flags, link


def tunables():
    """``C_DEFINES`` of ``fastopt/_core/config.py``, as ``define_macros``: ``[(name, "value")]``."""
    path = os.path.join(ROOT, CONFIG)
    spec = importlib.util.spec_from_file_location("_fastopt_build_config", path)
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    return [(name, str(int(value))) for name, value in config.C_DEFINES.items()]


def declarations(header_paths):
    """The declarations of the headers for cffi's cdef: the headers as the C preprocessor expands
    them (the prototypes of the elementwise steps are macros of the table in
    ``csrc/optim_table.h``), one translation unit that includes them in turn, with every system
    header (``#include <...>``) replaced by an empty file, since cdef knows the standard types and
    must not see the system's declarations. Raises ``OSError`` or ``subprocess.SubprocessError``
    when the preprocessor cannot run or fails."""
    system = set()
    for path in header_paths:
        with open(path) as f:
            system.update(re.findall(r"^\s*#\s*include\s*<([^>]+)>", f.read(), re.M))
    with tempfile.TemporaryDirectory() as tmp:
        for name in system:
            os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
            open(os.path.join(tmp, name), "w").close()
        source = "".join(f'#include "{os.path.abspath(h)}"\n' for h in header_paths)
        command = _compiler() + ["-E", "-P", "-nostdinc", "-I", tmp, "-x", "c", "-"]
        result = subprocess.run(command, input=source, capture_output=True, text=True,
                                timeout=60, check=False)
    if result.returncode != 0:
        raise subprocess.SubprocessError(f"{' '.join(command)} failed on the headers of csrc/:\n"
                                         + result.stderr)
    return result.stdout


def make_builder(root=""):
    """The cffi builder; sources under ``root`` (relative to the working directory by default)."""
    flags, link_flags = compile_flags()
    builder = cffi.FFI()
    preamble = "".join(f'#include "{os.path.basename(h)}"\n' for h in HEADERS)
    try:
        builder.cdef(declarations([os.path.join(ROOT, h) for h in HEADERS]))
    except (OSError, subprocess.SubprocessError) as exc:
        # No preprocessor, so no compiler either: the build of the extension stops with the
        # reason (setup.py then installs fastopt without it).
        reason = " ".join(str(exc).split()).replace("\\", "/").replace('"', "'")
        preamble = f'#error "fastopt: no declarations for cffi: {reason}"\n'
    builder.set_source(
        "fastopt.backends.c._fastopt_c",
        preamble,
        sources=[os.path.join(root, path) for path in SOURCES],
        include_dirs=[os.path.join(root, "csrc")],
        depends=[os.path.join(root, path) for path in (*DEPENDS, CONFIG)],
        define_macros=[("FASTOPT_CFLAGS", '"' + " ".join(flags) + '"'), *tunables()],
        extra_compile_args=flags,
        extra_link_args=link_flags,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # Generated C and objects go under build/cffi/, the extension next to this file.
    built = make_builder(ROOT).compile(tmpdir=os.path.join(ROOT, "build", "cffi"), verbose=True)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(built, os.path.join(here, os.path.basename(built)))
