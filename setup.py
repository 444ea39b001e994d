"""Builds the C backend (csrc/) as an out-of-line cffi extension, ``fastopt.backends.c._fastopt_c``.

The build is optional: if no C compiler is available, fastopt installs without it and
``fastopt.backend_status()`` says why the ``c`` backend is unavailable.
"""

import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # any compiler or linker failure leaves the other backends usable
            warnings.warn(f"fastopt: C backend not built ({ext.name}): {exc}")


setup(
    cffi_modules=["fastopt/backends/c/build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
