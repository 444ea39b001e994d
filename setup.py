"""Builds the C backend (csrc/): its objects, compiled once, linked into the shared library
``fastopt/lib/libfastopt`` (with its headers in ``fastopt/include/``) and into the out-of-line cffi
extension ``fastopt.backends.c._fastopt_c`` (``fastopt/backends/c/build.py``).

The build is optional: if no C compiler is available, fastopt installs without it. The reason (the
compiler's last error line, then the exception and the end of the compiler's output) is kept in
``fastopt/backends/c/BUILD_FAILED.txt`` beside where the extension would be, and
``fastopt.backend_status()["c"]`` shows its first line; a build that succeeds removes the file.
"""

import importlib.util
import os
import shutil
import sys
import tempfile
import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext

FAILURE_FILE = "BUILD_FAILED.txt"


def load_builder():
    """fastopt/backends/c/build.py, loaded by path (fastopt need not be importable here)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastopt", "backends", "c",
                        "build.py")
    spec = importlib.util.spec_from_file_location("_fastopt_c_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failure_record(failure, output):
    """The record of a failed build: a line saying why (the compiler's last error line, else the
    exception), then the exception and the end of the compiler's output."""
    lines = output.strip().splitlines()
    errors = [line.strip() for line in lines if "error" in line.lower()]
    summary = errors[-1] if errors else f"{type(failure).__name__}: {failure}"
    return "\n".join([summary[:300], f"{type(failure).__name__}: {failure}", *lines[-20:]])


class OptionalBuildExt(build_ext):
    def run(self):
        # build_ext.run builds in build_lib with inplace off, then copies in place.
        self._in_place = self.inplace or getattr(self, "editable_mode", False)
        super().run()

    def _record_paths(self, ext):
        """Where the failure record goes: beside the built extension, and beside the sources'
        package for an in-place or editable build (where the package is imported from)."""
        paths = {os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), FAILURE_FILE)}
        if getattr(self, "_in_place", False):
            package = ext.name.rpartition(".")[0]
            source = self.get_finalized_command("build_py").get_package_dir(package)
            paths.add(os.path.join(os.path.abspath(source), FAILURE_FILE))
        return paths

    def _build_library(self, ext):
        """libfastopt and its headers in the package being built (and in the sources' package for
        an in-place build); the objects go to the extension too."""
        extension = self.get_ext_fullpath(ext.name)  # <package>/backends/c/_fastopt_c...
        package = os.path.dirname(os.path.dirname(os.path.dirname(extension)))
        objects = load_builder().build_library(package, os.path.join(self.build_temp, "csrc"))
        ext.extra_objects = [*(ext.extra_objects or []), *objects]
        if getattr(self, "_in_place", False):
            source = os.path.abspath(self.get_finalized_command("build_py").get_package_dir(
                "fastopt"))
            if os.path.abspath(package) != source:
                for folder in ("lib", "include"):
                    shutil.copytree(os.path.join(package, folder), os.path.join(source, folder),
                                    dirs_exist_ok=True)

    def build_extension(self, ext):
        ext.optional = True  # an in-place copy then skips an extension that was not built
        # The compiler writes its errors to file descriptor 2: keep a copy of them.
        sys.stderr.flush()
        with tempfile.TemporaryFile() as log:
            saved = os.dup(2)
            os.dup2(log.fileno(), 2)
            try:
                self._build_library(ext)
                super().build_extension(ext)
                failure = None
            except Exception as exc:  # any compiler or linker failure leaves the other backends
                failure = exc
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            log.seek(0)
            output = log.read().decode(errors="replace")
        sys.stderr.write(output)
        for path in self._record_paths(ext):
            if failure is None:
                if os.path.exists(path):
                    os.remove(path)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(failure_record(failure, output))
        if failure is not None:
            warnings.warn(f"fastopt: C backend not built ({ext.name}): {failure}")


setup(
    cffi_modules=["fastopt/backends/c/build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
