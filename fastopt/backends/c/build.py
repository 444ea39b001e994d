"""Builder of the C backend: compiles ``csrc/`` once into objects, links them into the shared
library ``libfastopt`` (installed inside the package with its headers, for C programs:
``fastopt.get_library()``, ``fastopt.get_include()``) and into the cffi extension
``fastopt.backends.c._fastopt_c``, which therefore runs the same code as the library without
depending on it at run time.

``setup.py`` uses it through ``cffi_modules`` and :func:`build_library`; ``python
fastopt/backends/c/build.py`` builds both in place, in the package beside this file. Source paths
are relative to the repository root, where setup.py runs.

The tunables (thread thresholds, chunk and block sizes) are those of ``fastopt/_core/config.py``,
passed as ``-D NAME=value`` (its ``C_DEFINES``); the sources define none, and stop without them.
The module is loaded by path: ``fastopt`` itself need not be importable during setup.py's build.

Flags: ``-O3 -std=c99 -fno-math-errno -ffp-contract=off``, never ``-ffast-math``: the kernels are
elementwise, so without it they vectorize and still match the numpy reference bit for bit, on any
number of threads. ``-fopenmp`` is added when a test program compiles and links with it (set
``FASTOPT_OPENMP=0`` to leave it out). No ``-march`` by default, so that a library or wheel built
on one x86-64 machine runs on any other: the optimizer kernels are compiled once per vector
variant (``csrc/optim.c`` as it is, ``optim_avx2.c``, ``optim_avx512.c``) and the widest the CPU
runs is chosen at run time (``csrc/library.c``); with ``-ffp-contract=off`` and no fast-math every
variant gives the same bits. The sources compile in parallel, one process per core.
``FASTOPT_MARCH`` names a ``-march`` value for the whole build (e.g. ``native``, for the other
files' loops too, on the machine that runs it). ``FASTOPT_SANITIZE=1`` adds AddressSanitizer and
UndefinedBehaviorSanitizer (``make test-sanitize`` builds a copy of the package so and runs the C
backend's tests on it).
"""

import concurrent.futures
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import cffi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Every csrc/*.c is compiled; every csrc/*.h is a public header whose declarations go to cdef
# (declarations()), except the bodies that sources include for several types (*_template.h) and
# the inline helpers they share (*_inline.h).
SOURCES = sorted(os.path.join("csrc", f) for f in os.listdir(os.path.join(ROOT, "csrc"))
                 if f.endswith(".c"))
DEPENDS = sorted(os.path.join("csrc", f) for f in os.listdir(os.path.join(ROOT, "csrc"))
                 if f.endswith(".h"))
HEADERS = [h for h in DEPENDS if not h.endswith(("_template.h", "_inline.h"))]
CONFIG = os.path.join("fastopt", "_core", "config.py")
#: The shared library's file name, in ``<package>/lib/``; the headers go to ``<package>/include/``.
LIBRARY = "libfastopt.dylib" if sys.platform == "darwin" else "libfastopt.so"

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
    """``-march=<FASTOPT_MARCH>`` if set (``native`` only if the compiler takes it), else None."""
    march = os.environ.get("FASTOPT_MARCH", "none")
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


def _run(command):
    """Runs a compiler command; raises ``subprocess.CalledProcessError`` with its output, which
    also goes to standard error (setup.py keeps it in the failure record)."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.stdout or result.stderr:
        sys.stderr.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, command, result.stdout,
                                            result.stderr)


def build_library(package_dir, tmp_dir, root=ROOT):
    """Compiles every ``csrc/*.c`` (under ``root``) into objects under ``tmp_dir``, in parallel,
    links them into ``<package_dir>/lib/libfastopt`` and copies the public headers to
    ``<package_dir>/include/``. Returns the objects (the cffi extension links them too). Raises
    ``OSError`` or ``subprocess.SubprocessError`` when the compiler cannot run or fails."""
    flags, link_flags = compile_flags()
    defines = [f'-DFASTOPT_CFLAGS="{" ".join(flags)}"']
    defines += [f"-D{name}={value}" for name, value in tunables()]
    csrc = os.path.join(root, "csrc")
    os.makedirs(tmp_dir, exist_ok=True)
    objects = [os.path.join(tmp_dir, os.path.basename(path)[:-2] + ".o") for path in SOURCES]
    commands = [_compiler() + flags + ["-fPIC", *defines, "-I", csrc, "-c",
                                       os.path.join(root, path), "-o", obj]
                for path, obj in zip(SOURCES, objects)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for done in [pool.submit(_run, command) for command in commands]:
            done.result()
    os.makedirs(os.path.join(package_dir, "lib"), exist_ok=True)
    library = os.path.join(package_dir, "lib", LIBRARY)
    soname = ["-Wl,-install_name,@rpath/" + LIBRARY] if sys.platform == "darwin" else [
        "-Wl,-soname," + LIBRARY]
    _run(_compiler() + ["-shared", *soname, "-o", library, *objects, *link_flags, "-lm"])
    include = os.path.join(package_dir, "include")
    os.makedirs(include, exist_ok=True)
    for header in HEADERS:
        shutil.copy(os.path.join(root, header), include)
    return objects


def make_builder(root="", objects=()):
    """The cffi builder of the extension, which links ``objects`` (from :func:`build_library`;
    setup.py adds them when it has built them); headers under ``root`` (relative to the working
    directory by default)."""
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
        include_dirs=[os.path.join(root, "csrc")],
        depends=[os.path.join(root, path) for path in (*SOURCES, *DEPENDS, CONFIG)],
        extra_objects=list(objects),
        extra_compile_args=flags,
        extra_link_args=[*link_flags, "-lm"],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # Objects under build/csrc/, the generated C under build/cffi/; the library, headers and
    # extension in the package.
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    objects = build_library(package, os.path.join(ROOT, "build", "csrc"))
    built = make_builder(ROOT, objects).compile(tmpdir=os.path.join(ROOT, "build", "cffi"),
                                                verbose=True)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(built, os.path.join(here, os.path.basename(built)))
