r"""Capturable CUDA optimizer steps: kernels that read every scalar of a step from a device block.

A step of :mod:`fastopt.optim.capturable` is a fixed sequence of launches whose arguments never
change from one step to the next (arrays, offsets into the block, mode flags), so a captured launch
sequence (a CUDA graph) replays correctly while the learning rate, the step count, the loss scale
and the clipping threshold change: they live in one float64 device array, the *block*, and no launch
reads a host scalar or copies anything back to the host. The sequence, all on one stream:

1. :func:`fastopt.backends.cuda.optim._partial_sums_of_squares` per gradient, each into its own
   slice of one float64 partial-sum buffer (the launch configuration of
   :func:`fastopt.backends.cuda.optim.sum_of_squares`, so the sums are the same, bit for bit);
2. :func:`finalize`, one thread: the global norm, the non-finite flag, the clipping coefficient
   and, only on a finite step, every parameter's step count and bias corrections;
3. one update kernel per parameter (:func:`update_kernel`), which returns without writing when
   the flag is set.

Block layout (float64 slots; ``n`` parameters, one row each)::

    [0, 4)                          outputs:  NORM, FOUND_INF, CLIP_COEF, FACTOR
    [4, 6)                          inputs:   INV_SCALE, MAX_NORM (< 0: no clipping)
    [6 + r*ROW_IN, ...)             inputs of row r:  LR .. STEP_SIZE_MAX
    [6 + n*ROW_IN + r*ROW_DEV, ...) device state of row r:  STEP .. BUFFER_READY

The host writes the input slots ``[4, 6 + n*ROW_IN)``, one contiguous range, with an asynchronous
copy when they change; the device writes everything else. A row's inputs are its group's
hyperparameters as given (float64). An update kernel (:func:`update_kernel`, one template for
every algorithm) reads its float kernel arguments (``Algorithm.kernel_args``) from the block,
rounds them to the parameter's dtype as :mod:`fastopt.backends.cuda.optim`'s launchers round the
host's floats, and derives the element constants (``1 - beta``, the decoupled decay ``1 - lr*wd``
of AdamW and Lion) with the table's ``Algorithm.constants``, as those kernels do: a float32 step
does float32 arithmetic on the same scalars as the non-capturable step. Step-dependent scalars
(bias corrections, Adagrad's decayed rate) are computed on the device by :func:`finalize` from
the device step count, in float64, with the host's formulas.
"""

import functools
import math
import warnings

from numba import cuda

from fastopt.backends._numba.specialize import mode_name, rounded, specialized
from fastopt.backends.cuda.exact import exact_jit
from fastopt.backends.cuda.optim import (_TARGET, SIMULATOR, _partial_sums_of_squares, constants,
                                         element_update, launch_config)
from fastopt.optim.algorithms import ALGORITHMS

#: Added to the norm before dividing, as ``torch.nn.utils.clip_grad_norm_`` (and
#: :data:`fastopt.optim.optimizers.CLIP_EPS`).
CLIP_EPS = 1e-6

# Outputs, written by finalize.
NORM, FOUND_INF, CLIP_COEF, FACTOR = range(4)
# Step inputs, written by the host.
INV_SCALE, MAX_NORM = 4, 5
HEADER = 6
# Row inputs (offsets within a row), written by the host: the group's hyperparameters. ALPHA is
# RMSprop's alpha or Adadelta's rho; the last four are Rprop's etas and step_sizes.
(LR, BETA1, BETA2, EPS, WEIGHT_DECAY, MOMENTUM, DAMPENING, ALPHA, LR_DECAY, ETAMINUS, ETAPLUS,
 STEP_SIZE_MIN, STEP_SIZE_MAX) = range(13)
ROW_IN = 13
# Row device state (offsets within a row), written by finalize. STEP_SIZE is Adam's
# lr / (1 - beta1^t) and Adamax's clr; CLR is Adagrad's lr / (1 + (t - 1) * lr_decay).
STEP, STEP_SIZE, BIAS_CORRECTION2_SQRT, CLR, FIRST_STEP, BUFFER_READY = range(6)
ROW_DEV = 6


def block_size(rows):
    """Slots in the block of ``rows`` parameters."""
    return HEADER + rows * (ROW_IN + ROW_DEV)


def row_in(row):
    """The first input slot of ``row``."""
    return HEADER + row * ROW_IN


def row_dev(rows, row):
    """The first device-state slot of ``row`` in a block of ``rows`` parameters."""
    return HEADER + rows * ROW_IN + row * ROW_DEV


@exact_jit
def finalize(partial, ends, block, rows):
    r"""The step's scalars, on one thread, from the partial sums of squares of the gradients:

    .. math::
        S &= \sum_k \sum_{b \in [e_k, e_{k+1})} \mathrm{partial}_b
            \quad\text{(in order: gradient } k \text{, then block } b\text{)} \\
        \mathrm{norm} &= \sqrt{S} \cdot (1 / \mathrm{grad\_scale}), \quad
        \mathrm{found\_inf} = [\mathrm{norm} \notin \mathbb{R}] \\
        \mathrm{clip} &= \min(1, \mathrm{max\_norm} / (\mathrm{norm} + 10^{-6}))
            \text{ (1 when max\_norm < 0)}, \quad
        \mathrm{factor} = (1 / \mathrm{grad\_scale}) \cdot \mathrm{clip}

    and, on a finite step only, for every row: :math:`t \leftarrow t + 1`,
    :math:`\mathrm{step\_size} = \eta / (1 - \beta_1^t)`,
    :math:`\mathrm{bias\_correction2\_sqrt} = \sqrt{1 - \beta_2^t}`,
    :math:`\mathrm{clr} = \eta / (1 + (t - 1)\,\mathrm{lr\_decay})`,
    ``first_step = not buffer_ready``, ``buffer_ready = 1``. A non-finite step leaves every row
    as it was (the update kernels then return without writing). The formulas and their order are
    :mod:`fastopt.optim.algorithms`' host ones, in float64; the powers are libdevice's ``pow``
    (whose own ``fma`` instructions are its algorithm, not a contraction of these formulas).
    """
    if cuda.grid(1) != 0:
        return
    total = 0.0
    for k in range(ends.size - 1):
        s = 0.0  # one gradient's sum, as cuda_optim.sum_of_squares returns it
        for b in range(ends[k], ends[k + 1]):
            s += partial[b]
        total += s
    inv_scale = block[INV_SCALE]
    norm = math.sqrt(total) * inv_scale
    block[NORM] = norm
    if math.isinf(norm) or math.isnan(norm):
        block[FOUND_INF] = 1.0
        block[CLIP_COEF] = 1.0
        return
    block[FOUND_INF] = 0.0
    clip = 1.0
    max_norm = block[MAX_NORM]
    if max_norm >= 0:
        clip = min(1.0, max_norm / (norm + CLIP_EPS))
    block[CLIP_COEF] = clip
    block[FACTOR] = inv_scale * clip
    for r in range(rows):
        src = HEADER + r * ROW_IN
        dst = HEADER + rows * ROW_IN + r * ROW_DEV
        t = block[dst + STEP] + 1.0
        block[dst + STEP] = t
        lr = block[src + LR]
        block[dst + STEP_SIZE] = lr / (1.0 - block[src + BETA1] ** t)
        block[dst + BIAS_CORRECTION2_SQRT] = math.sqrt(1.0 - block[src + BETA2] ** t)
        block[dst + CLR] = lr / (1.0 + (t - 1.0) * block[src + LR_DECAY])
        block[dst + FIRST_STEP] = 1.0 - block[dst + BUFFER_READY]
        block[dst + BUFFER_READY] = 1.0


#: Each update kernel's mode flags (its last argument, a tuple), in order: fixed at construction.
FLAGS = {"adam": ("amsgrad", "maximize"), "sgd": ("nesterov", "maximize"),
         "adagrad": ("maximize",), "rmsprop": ("centered", "maximize"), "adamax": ("maximize",),
         "adadelta": ("maximize",), "lion": ("maximize",), "rprop": ("maximize",)}


# ---- What each algorithm's update reads from the block: its float kernel arguments between 1 and
# the gradient factor (the table's h, before rounding), and its flags (the table's f), from the
# row's input slots at src, its device state at dst and the fixed flags of FLAGS.

@cuda.jit(device=True)
def _sgd_inputs(block, src, dst, flags):
    """SGD: lr, weight_decay, momentum, dampening; nesterov, maximize, first_step"""
    nesterov, maximize = flags
    return ((1.0, block[src + LR], block[src + WEIGHT_DECAY], block[src + MOMENTUM],
             block[src + DAMPENING], block[FACTOR]),
            (nesterov, maximize, block[dst + FIRST_STEP] != 0))


@cuda.jit(device=True)
def _adagrad_inputs(block, src, dst, flags):
    """Adagrad: weight_decay, eps, clr; maximize"""
    return (1.0, block[src + WEIGHT_DECAY], block[src + EPS], block[dst + CLR],
            block[FACTOR]), flags


@cuda.jit(device=True)
def _rmsprop_inputs(block, src, dst, flags):
    """RMSprop: lr, alpha, eps, weight_decay, momentum; centered, maximize"""
    return (1.0, block[src + LR], block[src + ALPHA], block[src + EPS], block[src + WEIGHT_DECAY],
            block[src + MOMENTUM], block[FACTOR]), flags


@cuda.jit(device=True)
def _adam_floats(block, src, dst):
    """Adam and AdamW: lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt"""
    return (1.0, block[src + LR], block[src + BETA1], block[src + BETA2], block[src + EPS],
            block[src + WEIGHT_DECAY], block[dst + STEP_SIZE], block[dst + BIAS_CORRECTION2_SQRT],
            block[FACTOR])


@cuda.jit(device=True)
def _adam_inputs(block, src, dst, flags):
    """Adam: amsgrad, maximize, decoupled (False)"""
    amsgrad, maximize = flags
    return _adam_floats(block, src, dst), (amsgrad, maximize, False)


@cuda.jit(device=True)
def _adamw_inputs(block, src, dst, flags):
    """AdamW: amsgrad, maximize, decoupled (True)"""
    amsgrad, maximize = flags
    return _adam_floats(block, src, dst), (amsgrad, maximize, True)


@cuda.jit(device=True)
def _adamax_inputs(block, src, dst, flags):
    """Adamax: beta1, beta2, eps, weight_decay, clr (lr / (1 - beta1^t)); maximize"""
    return (1.0, block[src + BETA1], block[src + BETA2], block[src + EPS],
            block[src + WEIGHT_DECAY], block[dst + STEP_SIZE], block[FACTOR]), flags


@cuda.jit(device=True)
def _adadelta_inputs(block, src, dst, flags):
    """Adadelta: lr, rho, eps, weight_decay; maximize"""
    return (1.0, block[src + LR], block[src + ALPHA], block[src + EPS], block[src + WEIGHT_DECAY],
            block[FACTOR]), flags


@cuda.jit(device=True)
def _lion_inputs(block, src, dst, flags):
    """Lion: lr, beta1, beta2, weight_decay; maximize"""
    return (1.0, block[src + LR], block[src + BETA1], block[src + BETA2],
            block[src + WEIGHT_DECAY], block[FACTOR]), flags


@cuda.jit(device=True)
def _rprop_inputs(block, src, dst, flags):
    """Rprop: etaminus, etaplus, step_size_min, step_size_max; maximize"""
    return (1.0, block[src + ETAMINUS], block[src + ETAPLUS], block[src + STEP_SIZE_MIN],
            block[src + STEP_SIZE_MAX], block[FACTOR]), flags


#: Algorithm name -> its reader above.
_INPUTS = {"sgd": _sgd_inputs, "adagrad": _adagrad_inputs, "rmsprop": _rmsprop_inputs,
           "adam": _adam_inputs, "adamw": _adamw_inputs, "adamax": _adamax_inputs,
           "adadelta": _adadelta_inputs, "lion": _lion_inputs, "rprop": _rprop_inputs}


# ---- The update: one template for every algorithm (see fastopt.backends._numba.specialize) -----

def _update(p, g, states, block, src, dst, flags):
    """Template: nothing on a non-finite step; else the constants derived from the block, then
    the element on every element (_update_at: its state arrays of USES), in a grid-stride loop"""
    if block[FOUND_INF] != 0:
        return
    floats, kernel_flags = _inputs(block, src, dst, flags)
    c = _constants(rounded(p, floats), kernel_flags)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < p.size:
        _update_at(i, p, g, states, c)
        i += stride


#: Unbound names of the template above (bound in each copy); never used.
_inputs = _constants = _update_at = None


@functools.cache
def update_kernel(name, uses):
    r"""The update kernel of the algorithm ``name`` (one with a capturable class: adam, adamw,
    sgd, adagrad, rmsprop, adamax, adadelta, lion, rprop) for the state arrays ``uses``.

    It takes ``(param, grad, states, block, src, dst, flags)``: flat arrays (``states`` a tuple in
    ``Algorithm.state`` order, an unused one empty), the block, the first input and device-state
    slots of the parameter's row, and the mode flags of :data:`FLAGS`. It returns without writing
    when ``block[FOUND_INF]`` is set; otherwise it reads the step's scalars from the block (the
    gradient factor :math:`s = \pm\,` ``block[FACTOR]``, negative to maximize), rounds them to the
    arrays' dtype, derives the element constants with ``Algorithm.constants`` and runs the
    algorithm's element (:mod:`fastopt.backends.elements.optim`) on every element, as the
    ``cuda`` backend's step does, touching no state array that ``uses`` leaves out. Compiled
    once per dtype.
    """
    kernel = ALGORITHMS[name].kernel
    return exact_jit(specialized(
        _update, f"_capturable_{name}_{mode_name(uses)}",
        f"{name} (uses {uses}), scalars from the float64 block (its flags compared and its "
        f"floats rounded to the arrays' dtype there); formula in "
        f"fastopt.optim.reference.{kernel}",
        _inputs=_INPUTS[name], _constants=constants(kernel),
        _update_at=element_update(kernel, uses), **_TARGET))


def configured(kernel, n, stream):
    """``kernel`` configured for ``n >= 1`` elements (:func:`cuda_optim.launch_config`) on
    ``stream``: a callable taking the kernel's arguments, made once per launch of a sequence."""
    blocks, threads = launch_config(n)
    if SIMULATOR:  # the simulator's kernel[...] reconfigures the kernel object itself
        return lambda *args: kernel[blocks, threads, stream](*args)
    with warnings.catch_warnings():  # small grids are small arrays: nothing to warn about
        warnings.filterwarnings("ignore", message="Grid size")
        return kernel[blocks, threads, stream]


def reduction(size, stream):
    """``(blocks, launch)`` for the partial sums of squares of a gradient of ``size >= 1``
    elements: ``launch(grad, partial)`` writes ``blocks`` float64 sums into ``partial``, the same
    sums as :func:`fastopt.backends.cuda.optim.sum_of_squares` adds up."""
    return launch_config(size)[0], configured(_partial_sums_of_squares, size, stream)


__all__ = ["CLIP_EPS", "FLAGS", "block_size", "configured", "finalize",
           "reduction", "row_dev", "row_in", "update_kernel"]
