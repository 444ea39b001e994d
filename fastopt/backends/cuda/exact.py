"""Kernels whose every product and sum is rounded on its own, as the host computes them.

NVVM contracts ``a*b + c`` into one ``fma`` (one rounding) by default, and ptxas contracts a plain
``mul.f32`` followed by ``add.f32`` too; numba on the CPU, numpy and the C backend
(``-ffp-contract=off``) round the product and the sum separately. An elementwise optimizer step
compiled with contraction would differ from the reference in the last bit of a good share of its
values. :func:`exact_jit` compiles a kernel with NVVM's ``-fma=0``, which emits every
multiplication and addition with an explicit rounding (``mul.rn``, ``add.rn``) that neither NVVM
nor ptxas fuses: the element source (:mod:`fastopt.backends.elements.optim`) stays the one the
CPU kernels compile.

numba-cuda 0.30 has no per-kernel NVVM option, so the option is added where NVVM is called
(``numba.cuda.cudadrv.nvvm.compile_ir``, wrapped once) while :func:`contraction_off` is active;
an exact kernel's ``compile`` (what a launch calls for a new signature) runs inside it. The NVVM
call compiles the kernel together with every device function it calls, so the option covers them.
Under the simulator, where kernels run as Python (already rounding each operation),
:func:`exact_jit` is ``cuda.jit`` with the kernel marked.
"""

import contextlib
import contextvars
import functools

import numba
from numba import cuda

_OFF = contextvars.ContextVar("fastopt_contraction_off", default=False)

#: The py_func of every kernel made by :func:`exact_jit` (the PTX check reads it).
EXACT = set()


def _install():
    from numba.cuda.cudadrv import nvvm

    compile_ir = nvvm.compile_ir
    if getattr(compile_ir, "fastopt_contraction", False):
        return

    @functools.wraps(compile_ir)
    def compile_ir_with_contraction_option(llvmir, **options):
        if _OFF.get():
            options["fma"] = False
        return compile_ir(llvmir, **options)

    compile_ir_with_contraction_option.fastopt_contraction = True
    nvvm.compile_ir = compile_ir_with_contraction_option


@contextlib.contextmanager
def contraction_off():
    """Every NVVM compilation in this context runs with ``-fma=0``."""
    _install()
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)


def exact_jit(func):
    """``cuda.jit(func)``, compiled without contraction (see the module docstring)."""
    kernel = cuda.jit(func)
    EXACT.add(func)
    if numba.config.ENABLE_CUDASIM:
        return kernel
    _install()
    compile_for = kernel.compile

    def compile(sig):
        with contraction_off():
            return compile_for(sig)

    compile.fastopt_exact = True
    kernel.compile = compile
    return kernel


def is_exact(kernel):
    """Whether the kernel (a numba-cuda dispatcher) was made by :func:`exact_jit`."""
    return getattr(kernel, "py_func", None) in EXACT
