"""The ``c`` backend: the kernels of ``csrc/`` through the cffi extension ``_fastopt_c`` (built by
:mod:`fastopt.backends.c.build`), one kernel family per module."""
