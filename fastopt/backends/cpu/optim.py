"""The ``cpu`` backend: numba ``njit(parallel=True)`` optimizer kernels, cached on disk.

Each kernel is compiled twice from one source: a ``prange`` version for large arrays and a serial one
below :data:`PARALLEL_THRESHOLD`, where starting the thread pool costs more than the update.

The launchers take float hyperparameters as Python floats or numpy scalars of float dtypes up to
float64 (:data:`TAKES_PYTHON_FLOATS`) and flags as ``bool`` or ``numpy.bool_``. A launcher passes
the floats to the kernel as one tuple of Python floats ``(1.0, lr, beta1, ...)``, with the flags
and flat views of the arrays: numba unboxes a few arguments, and a kernel is compiled once per
dtype whatever the values. The kernel's prologue rounds the floats to the arrays' dtype (as
``dtype.type(x)`` rounds) and computes the derived constants (``1 - beta``, the decoupled weight
decay's ``1 - lr*wd``, the gradient scale signed by ``maximize``) in the arrays' dtype, as
:mod:`fastopt.backends.elements.args` does on the host for the ``cuda`` backend.

The math of each step is its element in :mod:`fastopt.backends.elements.optim`, shared with the
``cuda`` backend. A kernel runs it over blocks of :data:`BLOCK` elements, one vectorized loop per
block. ``<algo>_with_norm`` runs the same update and returns the gradient's sum of squares with the
bits of :func:`sum_of_squares`, from the same pass over memory. The two kernels and two launchers
of every algorithm are expanded from the templates :func:`_step`, :func:`_step_with_norm`,
:func:`_launch` and :func:`_launch_with_norm` by :func:`_algorithm`, from the algorithm's loop
(``_<algo>_range``) and prologue (``_<algo>_constants``).
"""

import functools
import inspect
import math

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from fastopt.backends._numba import templates as templates
from fastopt.backends._numba.compile import serial_and_parallel
from fastopt.backends.elements.args import flat
from fastopt.backends.elements.optim import make_elements

#: Inlined into its callers in numba's IR: a kernel's loops then see its mode flags as constants.
_inline = numba.njit(inline="always", error_model="numpy")
#: The element updates (see :mod:`fastopt.backends.elements.optim`), left for LLVM to inline
#: (inlining them in numba's IR too gives the same machine code, compiled about 1.5 times slower).
E = make_elements(numba.njit(error_model="numpy"))

#: The launchers round Python floats to the arrays' dtype themselves (see :mod:`fastopt.backends`).
TAKES_PYTHON_FLOATS = True

#: Below this many elements a step runs on one thread.
PARALLEL_THRESHOLD = 1 << 15
#: The reduction sums fixed chunks of this many elements in parallel, then the chunk sums in order:
#: the result does not depend on the number of threads.
REDUCTION_CHUNK = 1 << 14
#: LAMB's segmented reduction and update work on fixed chunks of this many elements: each chunk's
#: piece of each tensor is summed on one thread, then a tensor's pieces in order.
LAMB_CHUNK = 1 << 14


def _compile_serial_and_parallel(body):
    serial, parallel = serial_and_parallel(body)

    def launch(n, *args):
        return (parallel if n >= PARALLEL_THRESHOLD else serial)(*args)

    launch.serial, launch.parallel = serial, parallel
    return functools.update_wrapper(launch, body)


#: The kernels work on blocks of this many elements (a multiple of 8 that divides REDUCTION_CHUNK):
#: a block is one vectorized loop, and the fused kernels add the squares of a block's gradient
#: right after updating it, while it is in cache.
BLOCK = 1 << 10


# ---- The global gradient norm: alone, or computed in the update pass ---------------------------
#
# Both sum fixed chunks of REDUCTION_CHUNK elements (in parallel), then the chunk sums in order, so
# the result does not depend on the number of threads. A chunk keeps 8 running sums (element i goes
# to sum (i - start) % 8, the chunk's last (size % 8) elements to the first), added pairwise at the
# end, so that the additions pipeline instead of waiting on one another. The sums are set by this
# order alone (no fastmath), so a fused kernel, which adds each BLOCK of elements right
# after updating it (the gradient still in cache), gets the same bits as _chunked_sum_of_squares.

_NO_SUMS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@_inline
def _add_squares(g, lo, hi, sums):
    """sums + the squares of g[lo:hi] in float64: g[i] to sums[(i - lo) % 8], the (hi - lo) % 8
    last ones to sums[0]"""
    s0, s1, s2, s3, s4, s5, s6, s7 = sums
    g = g[lo:hi]  # indices from 0: numba's negative-index wraparound folds away
    stop = g.size // 8 * 8
    for i in range(0, stop, 8):
        x0, x1, x2, x3 = np.float64(g[i]), np.float64(g[i + 1]), np.float64(g[i + 2]), \
            np.float64(g[i + 3])
        x4, x5, x6, x7 = np.float64(g[i + 4]), np.float64(g[i + 5]), np.float64(g[i + 6]), \
            np.float64(g[i + 7])
        s0 += x0 * x0
        s1 += x1 * x1
        s2 += x2 * x2
        s3 += x3 * x3
        s4 += x4 * x4
        s5 += x5 * x5
        s6 += x6 * x6
        s7 += x7 * x7
    for i in range(stop, g.size):
        x = np.float64(g[i])
        s0 += x * x
    return s0, s1, s2, s3, s4, s5, s6, s7


@_inline
def _total(sums):
    """The 8 running sums of a chunk, added pairwise"""
    s0, s1, s2, s3, s4, s5, s6, s7 = sums
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@_inline
def _sum_in_order(partial):
    """partial[0] + partial[1] + ... in order"""
    total = 0.0
    for c in range(partial.size):
        total += partial[c]
    return total


@_compile_serial_and_parallel
def _chunked_sum_of_squares(g, chunk):
    """sum(g_i^2) in float64: per chunk, 8 running sums added pairwise; the chunk sums in order"""
    n_chunks = (g.size + chunk - 1) // chunk
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        lo = c * chunk
        partial[c] = _total(_add_squares(g, lo, min(g.size, lo + chunk), _NO_SUMS))
    return _sum_in_order(partial)


# ---- One algorithm over elements [lo, hi) -------------------------------------------------------
#
# Each runs the array step of _optim_element over [lo, hi) in one loop per use of the optional
# state arrays, with the flags that choose them as constants: each loop is then free of branches
# around loads and stores, and vectorizes (a runtime flag would need LLVM to unswitch the loop,
# which it does not reliably do). The indices are unsigned: numba then drops the negative-index
# wraparound, whose select on every access keeps a loop over [lo, hi) from vectorizing.


@_inline
def _sgd_range(lo, hi, p, g, momentum_buffer, lr, weight_decay, momentum, one_minus_dampening,
               nesterov, first_step, scale):
    """E.sgd_at over [lo, hi); momentum_buffer is used when momentum != 0"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if momentum == 0:
        for i in range(lo, hi):
            E.sgd_at(i, p, g, momentum_buffer, lr, weight_decay, momentum, one_minus_dampening,
                     nesterov, first_step, scale, False)
    else:
        for i in range(lo, hi):
            E.sgd_at(i, p, g, momentum_buffer, lr, weight_decay, momentum, one_minus_dampening,
                     nesterov, first_step, scale, True)


@_inline
def _adagrad_range(lo, hi, p, g, state_sum, weight_decay, eps, clr, scale):
    """E.adagrad_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.adagrad_at(i, p, g, state_sum, weight_decay, eps, clr, scale)


@_inline
def _rmsprop_range(lo, hi, p, g, square_avg, grad_avg, momentum_buffer, lr, alpha,
                   one_minus_alpha, eps, weight_decay, momentum, centered, scale):
    """E.rmsprop_at over [lo, hi); grad_avg is used when centered, momentum_buffer when
    momentum > 0"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if centered and momentum > 0:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, momentum_buffer, lr, alpha,
                         one_minus_alpha, eps, weight_decay, momentum, True, scale, True)
    elif centered:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, momentum_buffer, lr, alpha,
                         one_minus_alpha, eps, weight_decay, momentum, True, scale, False)
    elif momentum > 0:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, momentum_buffer, lr, alpha,
                         one_minus_alpha, eps, weight_decay, momentum, False, scale, True)
    else:
        for i in range(lo, hi):
            E.rmsprop_at(i, p, g, square_avg, grad_avg, momentum_buffer, lr, alpha,
                         one_minus_alpha, eps, weight_decay, momentum, False, scale, False)


@_inline
def _adam_range(lo, hi, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                beta2, one_minus_beta2, eps, weight_decay, decay, amsgrad, step_size,
                bias_correction2_sqrt, scale):
    """E.adam_at over [lo, hi); max_exp_avg_sq is used with amsgrad"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if amsgrad:
        for i in range(lo, hi):
            E.adam_at(i, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                      beta2, one_minus_beta2, eps, weight_decay, decay, True, step_size,
                      bias_correction2_sqrt, scale)
    else:
        for i in range(lo, hi):
            E.adam_at(i, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                      beta2, one_minus_beta2, eps, weight_decay, decay, False, step_size,
                      bias_correction2_sqrt, scale)


@_inline
def _adamax_range(lo, hi, p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps,
                  weight_decay, clr, scale):
    """E.adamax_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.adamax_at(i, p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps, weight_decay,
                    clr, scale)


@_inline
def _nadam_range(lo, hi, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, eps, weight_decay, decay, grad_coef, exp_avg_coef,
                 bias_correction2, scale):
    """E.nadam_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.nadam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2,
                   eps, weight_decay, decay, grad_coef, exp_avg_coef, bias_correction2, scale)


@_inline
def _radam_range(lo, hi, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, eps, weight_decay, decay, rectify, step_size,
                 bias_correction2_sqrt, scale):
    """E.radam_at over [lo, hi); a loop per rectify, so the unrectified one has no square root"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    if rectify:
        for i in range(lo, hi):
            E.radam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                       one_minus_beta2, eps, weight_decay, decay, True, step_size,
                       bias_correction2_sqrt, scale)
    else:
        for i in range(lo, hi):
            E.radam_at(i, p, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
                       one_minus_beta2, eps, weight_decay, decay, False, step_size,
                       bias_correction2_sqrt, scale)


@_inline
def _adadelta_range(lo, hi, p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps,
                    weight_decay, scale):
    """E.adadelta_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.adadelta_at(i, p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay,
                      scale)


@_inline
def _lion_range(lo, hi, p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                decay, scale):
    """E.lion_at over [lo, hi)"""
    lo, hi = np.uint64(lo), np.uint64(hi)
    for i in range(lo, hi):
        E.lion_at(i, p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay,
                  scale)


# ---- The prologue: a kernel's scalars from its hyperparameters ----------------------------------
#
# A kernel gets its float hyperparameters as one tuple `hyper` of floats (or an array of the arrays'
# dtype, from numba code), hyper[0] = 1, rounded to the arrays' dtype by _in_dtype_of, and its mode
# flags as bools. Each _<algo>_constants takes them in the launcher's order (`one` first; the flags
# annotated bool) and returns the parameters of _<algo>_range after its arrays, the derived ones
# (1 - beta, the weight decay's factor, the signed gradient scale) computed in that dtype: from the
# rounded values, never from a literal, which would promote float32 to float64.


def _in_dtype_of(p, x):
    """``x`` rounded to the dtype of the array ``p``, as ``p.dtype.type(x)`` rounds it; for numba
    code only."""
    raise NotImplementedError("_in_dtype_of runs in compiled code only")


@overload(_in_dtype_of, inline="always")
def _in_dtype_of_impl(p, x):
    if p.dtype == types.float32:
        return lambda p, x: np.float32(x)
    return lambda p, x: np.float64(x)


@_inline
def _signed(grad_scale, maximize):
    """The gradient's factor: -(g*s) == g*(-s) exactly, so maximize costs nothing in the loop"""
    return -grad_scale if maximize else grad_scale


@_inline
def _decay_and_l2(one, lr, weight_decay, decoupled):
    """(decay, l2): decoupled decay scales p by 1 - lr*wd and adds no L2 term (0 as one - one);
    L2 scales by 1 and adds wd*p"""
    return (one - lr * weight_decay, one - one) if decoupled else (one, weight_decay)


@_inline
def _sgd_constants(one, lr, weight_decay, momentum, dampening, nesterov: bool, maximize: bool,
                   first_step: bool, grad_scale):
    return (lr, weight_decay, momentum, one - dampening, nesterov, first_step,
            _signed(grad_scale, maximize))


@_inline
def _adagrad_constants(one, weight_decay, eps, maximize: bool, clr, grad_scale):
    return weight_decay, eps, clr, _signed(grad_scale, maximize)


@_inline
def _rmsprop_constants(one, lr, alpha, eps, weight_decay, momentum, centered: bool,
                       maximize: bool, grad_scale):
    return (lr, alpha, one - alpha, eps, weight_decay, momentum, centered,
            _signed(grad_scale, maximize))


@_inline
def _adam_constants(one, lr, beta1, beta2, eps, weight_decay, amsgrad: bool, maximize: bool,
                    decoupled: bool, step_size, bias_correction2_sqrt, grad_scale):
    decay, l2 = _decay_and_l2(one, lr, weight_decay, decoupled)
    return (beta1, one - beta1, beta2, one - beta2, eps, l2, decay, amsgrad, step_size,
            bias_correction2_sqrt, _signed(grad_scale, maximize))


@_inline
def _adamax_constants(one, beta1, beta2, eps, weight_decay, maximize: bool, clr, grad_scale):
    return beta1, one - beta1, beta2, eps, weight_decay, clr, _signed(grad_scale, maximize)


@_inline
def _nadam_constants(one, lr, beta1, beta2, eps, weight_decay, maximize: bool, decoupled: bool,
                     grad_coef, exp_avg_coef, bias_correction2, grad_scale):
    decay, l2 = _decay_and_l2(one, lr, weight_decay, decoupled)
    return (beta1, one - beta1, beta2, one - beta2, eps, l2, decay, grad_coef, exp_avg_coef,
            bias_correction2, _signed(grad_scale, maximize))


@_inline
def _radam_constants(one, lr, beta1, beta2, eps, weight_decay, maximize: bool, decoupled: bool,
                     rectify: bool, step_size, bias_correction2_sqrt, grad_scale):
    decay, l2 = _decay_and_l2(one, lr, weight_decay, decoupled)
    return (beta1, one - beta1, beta2, one - beta2, eps, l2, decay, rectify, step_size,
            bias_correction2_sqrt, _signed(grad_scale, maximize))


@_inline
def _adadelta_constants(one, lr, rho, eps, weight_decay, maximize: bool, grad_scale):
    return lr, rho, one - rho, eps, weight_decay, _signed(grad_scale, maximize)


@_inline
def _lion_constants(one, lr, beta1, beta2, weight_decay, maximize: bool, grad_scale):
    return (lr, beta1, one - beta1, beta2, one - beta2, one - lr * weight_decay,
            _signed(grad_scale, maximize))


# ---- The steps: every block of the arrays, in parallel above PARALLEL_THRESHOLD -----------------
#
# Five templates for every algorithm (see _kernel_templates and _algorithm), whose placeholders
# stand for: STATE its state arrays, FLAGS its flags, HYPER its hyperparameters (named as in the
# launcher), AS_FLOATS those that are not flags as Python floats, VALUES all of them in a kernel
# (hyper[k] in the arrays' dtype, or the flag), SCALARS the parameters of its loop after the state
# arrays, KERNEL and KERNEL_NORM its kernels; _update is its loop over [lo, hi), _constants its
# prologue.

#: The placeholders that are neither parameters nor assigned, named here for linters: never used.
VALUES = AS_FLOATS = FLAGS = KERNEL = KERNEL_NORM = None


def _update(lo, hi, p, g, *args):
    """The algorithm's loop over [lo, hi) in the templates below, bound by _algorithm"""
    raise NotImplementedError("a template's _update is bound when it is expanded")


def _constants(one, *hyper):
    """The algorithm's prologue in the templates below, bound by _algorithm"""
    raise NotImplementedError("a template's _constants is bound when it is expanded")


def _step(p, g, STATE, hyper, FLAGS):
    """Template: _update over every BLOCK of the arrays"""
    SCALARS = _constants(_in_dtype_of(p, hyper[0]), VALUES)
    for c in prange((p.size + BLOCK - 1) // BLOCK):
        lo = c * BLOCK
        _update(lo, min(p.size, lo + BLOCK), p, g, STATE, SCALARS)


def _step_with_norm(p, g, STATE, hyper, FLAGS, chunk):
    """Template: _step, also adding each block's squares of g right after updating it (in cache),
    in the chunks of _chunked_sum_of_squares: returns the sum with that kernel's bits"""
    SCALARS = _constants(_in_dtype_of(p, hyper[0]), VALUES)
    partial = np.empty((p.size + chunk - 1) // chunk, np.float64)
    for c in prange(partial.size):
        lo, hi = c * chunk, min(p.size, (c + 1) * chunk)
        sums = _NO_SUMS
        for a in range(lo, hi, BLOCK):
            b = min(a + BLOCK, hi)
            _update(a, b, p, g, STATE, SCALARS)
            sums = _add_squares(g, a, b, sums)
        partial[c] = _total(sums)
    return _sum_in_order(partial)


def _launch(param, grad, STATE, HYPER):
    """Template: KERNEL on flat arrays, the floats in one tuple"""
    if param.ndim != 1:  # the others have its shape, or are empty (1-D)
        param, grad, STATE = map(flat, (param, grad, STATE))
    KERNEL(param.size, param, grad, STATE, (1.0, AS_FLOATS), FLAGS)


def _launch_with_norm(param, grad, STATE, HYPER, norm_out):
    """Template: _launch with KERNEL_NORM, setting norm_out[0]"""
    if param.ndim != 1:
        param, grad, STATE = map(flat, (param, grad, STATE))
    norm_out[0] = KERNEL_NORM(param.size, param, grad, STATE, (1.0, AS_FLOATS), FLAGS,
                              REDUCTION_CHUNK)


def _bind(param, grad, STATE):
    """Template: ``run(<hyperparameters>)``, the launcher on these arrays with what does not change
    between steps done once (the flat views made, KERNEL's serial or parallel version chosen)"""
    kernel = KERNEL.parallel if param.size >= PARALLEL_THRESHOLD else KERNEL.serial
    param, grad, STATE = map(flat, (param, grad, STATE))

    def run(HYPER):
        kernel(param, grad, STATE, (1.0, AS_FLOATS), FLAGS)
    return run


def _algorithm(name, title, update, constants, formula):
    """``(kernel, kernel_norm, launcher, launcher_with_norm)`` of one algorithm: the templates
    expanded with its loop ``update`` and its prologue ``constants``.

    The launcher ``name(param, grad, <state arrays>, <hyperparameters>)`` takes the parameters of
    ``update`` after ``(lo, hi, p, g)`` up to its first hyperparameter as state arrays, and the
    parameters of ``constants`` after ``one`` as hyperparameters, those annotated ``bool`` as
    flags. It calls the kernel ``_name(n, p, g, <state arrays>, hyper, <flags>)`` (serial or
    parallel by ``n``; see :func:`_compile_serial_and_parallel`), ``hyper`` holding ``1`` and the
    float hyperparameters as Python floats; ``name.bind(param, grad, <state arrays>)`` returns
    ``run(<hyperparameters>)``, the launcher on those arrays. ``name_with_norm`` takes
    ``norm_out`` after them, and ``_name_norm`` also ``chunk``, returning sum(g_i^2) as
    ``_chunked_sum_of_squares(g, chunk)``. ``formula`` is the kernels' docstring; ``title``
    names the algorithm in the launchers'."""
    hyper = list(inspect.signature(constants).parameters.values())[1:]
    flags = [h.name for h in hyper if h.annotation is bool]
    floats = [h.name for h in hyper if h.annotation is not bool]
    loop = list(inspect.signature(update).parameters)[4:]
    first = next(i for i, arg in enumerate(loop) if arg in {h.name for h in hyper})
    text = dict(
        STATE=", ".join(loop[:first]), FLAGS=", ".join(flags),
        HYPER=", ".join(h.name for h in hyper),
        # float(): numba compiles a kernel per tuple type; one of Python floats is one type.
        AS_FLOATS=", ".join(f"float({f})" for f in floats),
        VALUES=", ".join(h.name if h.name in flags
                         else f"_in_dtype_of(p, hyper[{floats.index(h.name) + 1}])"
                         for h in hyper),
        SCALARS=", ".join(loop[first:]), KERNEL=f"_{name}", KERNEL_NORM=f"_{name}_norm")
    bind = {"_constants": constants}
    fused_doc = (f"{formula}\n\n    and, in the same pass, returns sum(g_i^2) in float64 as "
                 "_chunked_sum_of_squares(g, chunk)")
    kernel = templates.expand(_step, f"_{name}", update=update, doc=formula, text=text, bind=bind)
    kernel_norm = templates.expand(_step_with_norm, f"_{name}_norm", update=update, doc=fused_doc,
                                   text=text, bind=bind)
    # Defined in this module: they find _name and _name_norm there when called.
    launcher = templates.expand(_launch, name, text=text, doc=(
        f"{title} step in place; formula in :func:`fastopt.optim.reference.{name}`."))
    launcher_with_norm = templates.expand(_launch_with_norm, f"{name}_with_norm", text=text, doc=(
        f":func:`{name}`, also setting ``norm_out[0] = sum_of_squares(grad)`` (bit for bit) "
        "from the same pass over memory."))
    launcher.bind = templates.expand(_bind, f"bind_{name}", text=text, doc=(
        f"``run(<hyperparameters>)``: :func:`{name}` on these arrays (see "
        ":func:`fastopt.optim._step.bound_launch`)."))
    return (_compile_serial_and_parallel(kernel), _compile_serial_and_parallel(kernel_norm),
            launcher, launcher_with_norm)


_sgd, _sgd_norm, sgd, sgd_with_norm = _algorithm("sgd", "SGD", _sgd_range, _sgd_constants, """
    d = s*g + wd*p; b = d (first step) or mu*b + (1-tau)*d; d = d + mu*b (Nesterov) or b;
    p -= lr*d""")
_adagrad, _adagrad_norm, adagrad, adagrad_with_norm = _algorithm(
    "adagrad", "Adagrad", _adagrad_range, _adagrad_constants, """
    d = s*g + wd*p; v += d^2; p -= clr * d / (sqrt(v) + eps)""")
_rmsprop, _rmsprop_norm, rmsprop, rmsprop_with_norm = _algorithm(
    "rmsprop", "RMSprop", _rmsprop_range, _rmsprop_constants, """
    d = s*g + wd*p; v = a*v + (1-a)*d^2; gbar = a*gbar + (1-a)*d; den = sqrt(v - gbar^2 or v) + eps;
    b = mu*b + d/den, p -= lr*b  (mu > 0)  or  p -= lr*d/den""")
_adam, _adam_norm, adam, adam_with_norm = _algorithm(
    "adam", "Adam/AdamW", _adam_range, _adam_constants, """
    p *= decay (AdamW) or d = s*g + wd*p (Adam); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    vhat = max(vhat, v) (AMSGrad); p -= step_size * m / (sqrt(vhat)/sqrt(1-b2^t) + eps)""")
_adamax, _adamax_norm, adamax, adamax_with_norm = _algorithm(
    "adamax", "Adamax", _adamax_range, _adamax_constants, """
    d = s*g + wd*p; m = b1*m + (1-b1)*d; u = max(b2*u, |d| + eps); p -= clr * m / u""")
_nadam, _nadam_norm, nadam, nadam_with_norm = _algorithm(
    "nadam", "NAdam", _nadam_range, _nadam_constants, """
    p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    den = sqrt(v / (1-b2^t)) + eps; p -= grad_coef * d / den + exp_avg_coef * m / den""")
_radam, _radam_norm, radam, radam_with_norm = _algorithm(
    "radam", "RAdam", _radam_range, _radam_constants, """
    p *= decay (decoupled) or d = s*g + wd*p; m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2;
    p -= step_size * m * sqrt(1-b2^t) / (sqrt(v) + eps)  (rectified)  or  step_size * m""")
_adadelta, _adadelta_norm, adadelta, adadelta_with_norm = _algorithm(
    "adadelta", "Adadelta", _adadelta_range, _adadelta_constants, """
    d = s*g + wd*p; v = rho*v + (1-rho)*d^2; delta = sqrt(a + eps) / sqrt(v + eps) * d;
    a = rho*a + (1-rho)*delta^2; p -= lr * delta""")
_lion, _lion_norm, lion, lion_with_norm = _algorithm(
    "lion", "Lion", _lion_range, _lion_constants, """
    c = b1*m + (1-b1)*d; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*d""")


# ---- LAMB: a segmented reduction, the per-tensor trust ratios, then the update ------------------

@_compile_serial_and_parallel
def _lamb_moments(p, g, exp_avg, exp_avg_sq, offsets, partial, chunk, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  scale):
    """m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p;
    partial[c + s] = (sum p^2, sum u^2) in float64 over the part of segment s in chunk c"""
    n_chunks = (p.size + chunk - 1) // chunk
    segments = offsets.size - 1
    for c in prange(n_chunks):
        first, stop = c * chunk, min(p.size, (c + 1) * chunk)
        s = np.searchsorted(offsets, first, side="right") - 1  # the segment holding `first`
        # Walking the array, c + s grows at every chunk or segment boundary: each (chunk,
        # segment) piece has a slot of its own.
        while s < segments and offsets[s] < stop:
            pp = 0.0
            uu = 0.0
            for i in range(max(offsets[s], first), min(offsets[s + 1], stop)):
                m, v = E.lamb_moments(g[i], exp_avg[i], exp_avg_sq[i], beta1, one_minus_beta1,
                                      beta2, one_minus_beta2, scale)
                exp_avg[i] = m
                exp_avg_sq[i] = v
                x = p[i]
                u = E.lamb_direction(x, m, v, eps, weight_decay, bias_correction1,
                                     bias_correction2)
                pp += np.float64(x) * np.float64(x)
                uu += np.float64(u) * np.float64(u)
            partial[c + s, 0] = pp
            partial[c + s, 1] = uu
            s += 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lamb_ratios(offsets, partial, chunk, lr, ratio):
    """ratio[s] = lr * ||p_s|| / ||u_s|| (lr alone when either norm is 0), the sums of segment s's
    chunk pieces taken in order"""
    for s in range(offsets.size - 1):
        pp = 0.0
        uu = 0.0
        if offsets[s + 1] > offsets[s]:
            for c in range(offsets[s] // chunk, (offsets[s + 1] - 1) // chunk + 1):
                pp += partial[c + s, 0]
                uu += partial[c + s, 1]
        r = math.sqrt(pp) / math.sqrt(uu) if pp > 0 and uu > 0 else 1.0
        ratio[s] = lr * r  # rounded to the arrays' dtype


@_compile_serial_and_parallel
def _lamb_update(p, exp_avg, exp_avg_sq, offsets, ratio, chunk, eps, weight_decay,
                 bias_correction1, bias_correction2):
    """u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd*p from the updated moments; p -= ratio[s] * u"""
    n_chunks = (p.size + chunk - 1) // chunk
    segments = offsets.size - 1
    for c in prange(n_chunks):
        first, stop = c * chunk, min(p.size, (c + 1) * chunk)
        s = np.searchsorted(offsets, first, side="right") - 1
        while s < segments and offsets[s] < stop:
            step = ratio[s]
            for i in range(max(offsets[s], first), min(offsets[s + 1], stop)):
                x = p[i]
                p[i] = x - step * E.lamb_direction(x, exp_avg[i], exp_avg_sq[i], eps,
                                                   weight_decay, bias_correction1,
                                                   bias_correction2)
            s += 1


def lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale):
    """LAMB step in place, two passes (segmented reduction, then update); formula in
    :func:`fastopt.optim.reference.lamb`."""
    n, chunk = param.size, LAMB_CHUNK
    if n == 0:
        return
    # The floats rounded to the arrays' dtype, as numpy scalars of it (lr too: the trust ratio
    # takes it in float64 from its rounded value).
    one, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, grad_scale = \
        np.array((1.0, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  grad_scale), param.dtype)
    segments = segment_offsets.size - 1
    partial = np.empty(((n + chunk - 1) // chunk + segments, 2), np.float64)
    ratio = np.empty(segments, param.dtype)
    p, m, v = flat(param), flat(exp_avg), flat(exp_avg_sq)
    _lamb_moments(n, p, flat(grad), m, v, segment_offsets, partial, chunk, beta1, one - beta1,
                  beta2, one - beta2, eps, weight_decay, bias_correction1, bias_correction2,
                  -grad_scale if maximize else grad_scale)
    _lamb_ratios(segment_offsets, partial, chunk, float(lr), ratio)
    _lamb_update(n, p, m, v, segment_offsets, ratio, chunk, eps, weight_decay, bias_correction1,
                 bias_correction2)


def lamb_with_norm(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps,
                   weight_decay, maximize, bias_correction1, bias_correction2, grad_scale,
                   norm_out):
    """:func:`lamb` and ``norm_out[0] = sum_of_squares(grad)``; not fused: the sum is a pass of its
    own before LAMB's two."""
    norm_out[0] = sum_of_squares(grad)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets, lr, beta1, beta2, eps, weight_decay,
         maximize, bias_correction1, bias_correction2, grad_scale)


def sum_of_squares(grad):
    """The squared global norm in float64; formula in :func:`fastopt.optim.reference.sum_of_squares`."""
    return float(_chunked_sum_of_squares(grad.size, flat(grad), REDUCTION_CHUNK))
