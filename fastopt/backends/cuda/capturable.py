r"""Capturable CUDA optimizer steps: kernels that read every scalar of a step from a device block.

A step of :mod:`fastopt.optim.capturable` is a fixed sequence of launches whose arguments never change
from one step to the next (arrays, offsets into the block, mode flags), so a captured launch
sequence (a CUDA graph) replays correctly while the learning rate, the step count, the loss scale
and the clipping threshold change: they live in one float64 device array, the *block*, and no
launch reads a host scalar or copies anything back to the host. The sequence, all on one stream:

1. :func:`fastopt.backends.cuda.optim._partial_sums_of_squares` per gradient, each into its own
   slice of one float64 partial-sum buffer (the launch configuration of
   :func:`fastopt.backends.cuda.optim.sum_of_squares`, so the sums are the same, bit for bit);
2. :func:`finalize`, one thread: the global norm, the non-finite flag, the clipping coefficient
   and, only on a finite step, every parameter's step count and bias corrections;
3. one update kernel per parameter (:func:`update_kernels`), which returns without writing when
   the flag is set.

Block layout (float64 slots; ``n`` parameters, one row each)::

    [0, 4)                          outputs:  NORM, FOUND_INF, CLIP_COEF, FACTOR
    [4, 6)                          inputs:   INV_SCALE, MAX_NORM (< 0: no clipping)
    [6 + r*ROW_IN, ...)             inputs of row r:  LR .. LR_DECAY
    [6 + n*ROW_IN + r*ROW_DEV, ...) device state of row r:  STEP .. BUFFER_READY

The host writes the input slots ``[4, 6 + n*ROW_IN)``, one contiguous range, with an asynchronous
copy when they change; the device writes everything else. Row inputs that the host computes
(``1 - beta``, the decoupled decay ``1 - lr*wd`` of AdamW and Lion) are rounded to the
parameter's dtype exactly as :mod:`fastopt.backends.cuda.optim`'s launchers do, then stored in
float64 (exactly); the kernels cast every slot back to the parameter's dtype, so a float32 step
does float32 arithmetic on the same scalars as the non-capturable step. Step-dependent scalars
(bias corrections, Adagrad's decayed rate) are computed on the device by :func:`finalize` from
the device step count, in float64, with the host's formulas.
"""

import functools
import math
import warnings

import numba
import numpy as np
from numba import cuda

from fastopt.backends.elements.optim_legacy import make_elements
from fastopt.backends.cuda.optim import SIMULATOR, _partial_sums_of_squares, launch_config

#: Added to the norm before dividing, as ``torch.nn.utils.clip_grad_norm_`` (and
#: :data:`fastopt.optim.optimizers.CLIP_EPS`).
CLIP_EPS = 1e-6

# Outputs, written by finalize.
NORM, FOUND_INF, CLIP_COEF, FACTOR = range(4)
# Step inputs, written by the host.
INV_SCALE, MAX_NORM = 4, 5
HEADER = 6
# Row inputs (offsets within a row), written by the host. ALPHA is RMSprop's alpha or Adadelta's
# rho; L2 is the weight decay the kernel adds to the gradient (0 for decoupled decay, which is
# DECAY = 1 - lr*wd instead).
LR, BETA1, BETA2, ONE_MINUS_BETA1, ONE_MINUS_BETA2, EPS, L2, DECAY, MOMENTUM, \
    ONE_MINUS_DAMPENING, ALPHA, ONE_MINUS_ALPHA, LR_DECAY = range(13)
ROW_IN = 13
# Row device state (offsets within a row), written by finalize. STEP_SIZE is Adam's
# lr / (1 - beta1^t) and Adamax's clr; CLR is Adagrad's lr / (1 + (t - 1) * lr_decay).
STEP, STEP_SIZE, BIAS_CORRECTION2_SQRT, CLR, FIRST_STEP, BUFFER_READY = range(6)
ROW_DEV = 6

#: The element updates (:mod:`fastopt.backends.elements.optim`) as CUDA device functions.
E = make_elements(cuda.jit(device=True))


def block_size(rows):
    """Slots in the block of ``rows`` parameters."""
    return HEADER + rows * (ROW_IN + ROW_DEV)


def row_in(row):
    """The first input slot of ``row``."""
    return HEADER + row * ROW_IN


def row_dev(rows, row):
    """The first device-state slot of ``row`` in a block of ``rows`` parameters."""
    return HEADER + rows * ROW_IN + row * ROW_DEV


@cuda.jit
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
    :mod:`fastopt.optim.algorithms`' host ones.
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


#: Each update kernel's mode flags (kernel arguments after the block offsets), in order.
FLAGS = {"adam": ("amsgrad", "maximize"), "sgd": ("nesterov", "maximize"),
         "adagrad": ("maximize",), "rmsprop": ("centered", "maximize"), "adamax": ("maximize",),
         "adadelta": ("maximize",), "lion": ("maximize",)}


@functools.cache
def update_kernels(dtype):
    r"""The update kernels for parameters of ``dtype`` (float32 or float64), by algorithm.

    Every kernel takes ``(param, grad, *state, block, src, dst, *flags)``: the arrays of
    :mod:`fastopt.backends`' contract (flattened), the block, the first input and device-state
    slots of the parameter's row, and the mode flags of :data:`FLAGS`. It returns without writing
    when ``block[FOUND_INF]`` is set; otherwise it casts the block's float64 slots to ``dtype``
    (as :func:`fastopt.optim._step.launch` casts the host scalars), sets the gradient factor
    :math:`s = \pm\,` ``block[FACTOR]`` (negative to maximize) and, in a grid-stride loop, runs
    the algorithm's element step ``E.<algo>_at`` (:mod:`fastopt.backends.elements.optim`, as the
    ``cuda`` backend does), touching no state array the mode does not use. Compiled once per dtype.
    """
    T = numba.from_dtype(np.dtype(dtype))

    @cuda.jit(device=True)
    def factor(block, maximize):
        """The gradient factor s in dtype: block[FACTOR], negated to maximize"""
        scale = T(block[FACTOR])
        return -scale if maximize else scale

    @cuda.jit
    def adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, block, src, dst, amsgrad, maximize):
        r"""Adam/AdamW (:func:`fastopt.optim.reference.adam`), scalars from the block:

        .. math::
            x &= \delta\theta, \quad d = s\nabla + \lambda_{L2} x, \quad
            m \leftarrow \beta_1 m + (1-\beta_1) d, \quad
            v \leftarrow \beta_2 v + (1-\beta_2) d^2 \\
            \theta &\leftarrow x - \mathrm{step\_size}\; m /
                (\sqrt{\hat v} / \mathrm{bias\_correction2\_sqrt} + \epsilon)

        (:math:`\delta = 1 - \eta\lambda`, :math:`\lambda_{L2} = 0` for AdamW; :math:`\delta
        = 1` for Adam; :math:`\hat v = \max(\hat v, v)` with AMSGrad, else :math:`v`).
        """
        if block[FOUND_INF] != 0:
            return
        scale = factor(block, maximize)
        beta1, one_minus_beta1 = T(block[src + BETA1]), T(block[src + ONE_MINUS_BETA1])
        beta2, one_minus_beta2 = T(block[src + BETA2]), T(block[src + ONE_MINUS_BETA2])
        eps, weight_decay, decay = T(block[src + EPS]), T(block[src + L2]), T(block[src + DECAY])
        step_size = T(block[dst + STEP_SIZE])
        bias_correction2_sqrt = T(block[dst + BIAS_CORRECTION2_SQRT])
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.size:
            E.adam_at(i, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                      beta2, one_minus_beta2, eps, weight_decay, decay, amsgrad, step_size,
                      bias_correction2_sqrt, scale)
            i += stride

    @cuda.jit
    def sgd(p, g, buf, block, src, dst, nesterov, maximize):
        r"""SGD (:func:`fastopt.optim.reference.sgd`), scalars from the block:

        .. math::
            d &= s\nabla + \lambda\theta, \quad
            b \leftarrow d \text{ (first step) or } \mu b + (1-\tau) d \quad (\mu \ne 0) \\
            \theta &\leftarrow \theta - \eta\,(d + \mu b \text{ (Nesterov) or } b
                \text{ or } d \;(\mu = 0))

        The first step is the first finite one the buffer sees (``block[dst + FIRST_STEP]``).
        """
        if block[FOUND_INF] != 0:
            return
        scale = factor(block, maximize)
        lr, weight_decay = T(block[src + LR]), T(block[src + L2])
        momentum = T(block[src + MOMENTUM])
        one_minus_dampening = T(block[src + ONE_MINUS_DAMPENING])
        first_step = block[dst + FIRST_STEP] != 0
        buffered = momentum != 0
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.size:
            E.sgd_at(i, p, g, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov,
                     first_step, scale, buffered)
            i += stride

    @cuda.jit
    def adagrad(p, g, state_sum, block, src, dst, maximize):
        r"""Adagrad (:func:`fastopt.optim.reference.adagrad`), scalars from the block:

        .. math::
            d = s\nabla + \lambda\theta, \quad S \leftarrow S + d^2, \quad
            \theta \leftarrow \theta - \mathrm{clr}\; d / (\sqrt{S} + \epsilon), \quad
            \mathrm{clr} = \eta / (1 + (t-1)\,\mathrm{lr\_decay})
        """
        if block[FOUND_INF] != 0:
            return
        scale = factor(block, maximize)
        weight_decay, eps, clr = T(block[src + L2]), T(block[src + EPS]), T(block[dst + CLR])
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.size:
            E.adagrad_at(i, p, g, state_sum, weight_decay, eps, clr, scale)
            i += stride

    @cuda.jit
    def rmsprop(p, g, square_avg, grad_avg, buf, block, src, dst, centered, maximize):
        r"""RMSprop (:func:`fastopt.optim.reference.rmsprop`), scalars from the block:

        .. math::
            d &= s\nabla + \lambda\theta, \quad v \leftarrow \alpha v + (1-\alpha) d^2,
            \quad \bar g \leftarrow \alpha \bar g + (1-\alpha) d \text{ (centered)} \\
            q &= \sqrt{v - \bar g^2 \text{ or } v} + \epsilon, \quad
            b \leftarrow \mu b + d/q,\; \theta \leftarrow \theta - \eta b \;(\mu > 0)
            \text{ or } \theta \leftarrow \theta - \eta d / q
        """
        if block[FOUND_INF] != 0:
            return
        scale = factor(block, maximize)
        lr, alpha, one_minus_alpha = (T(block[src + LR]), T(block[src + ALPHA]),
                                      T(block[src + ONE_MINUS_ALPHA]))
        eps, weight_decay = T(block[src + EPS]), T(block[src + L2])
        momentum = T(block[src + MOMENTUM])
        buffered = momentum > 0
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.size:
            E.rmsprop_at(i, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                         weight_decay, momentum, centered, scale, buffered)
            i += stride

    @cuda.jit
    def adamax(p, g, exp_avg, exp_inf, block, src, dst, maximize):
        r"""Adamax (:func:`fastopt.optim.reference.adamax`), scalars from the block:

        .. math::
            d = s\nabla + \lambda\theta, \quad m \leftarrow \beta_1 m + (1-\beta_1) d,
            \quad u \leftarrow \max(\beta_2 u, |d| + \epsilon), \quad
            \theta \leftarrow \theta - \frac{\eta}{1 - \beta_1^t}\, m / u
        """
        if block[FOUND_INF] != 0:
            return
        scale = factor(block, maximize)
        beta1, one_minus_beta1 = T(block[src + BETA1]), T(block[src + ONE_MINUS_BETA1])
        beta2, eps, weight_decay = T(block[src + BETA2]), T(block[src + EPS]), T(block[src + L2])
        clr = T(block[dst + STEP_SIZE])
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.size:
            E.adamax_at(i, p, g, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps,
                        weight_decay, clr, scale)
            i += stride

    @cuda.jit
    def adadelta(p, g, square_avg, acc_delta, block, src, dst, maximize):
        r"""Adadelta (:func:`fastopt.optim.reference.adadelta`), scalars from the block:

        .. math::
            d = s\nabla + \lambda\theta, \quad v \leftarrow \rho v + (1-\rho) d^2, \quad
            \Delta = \frac{\sqrt{a + \epsilon}}{\sqrt{v + \epsilon}}\, d, \quad
            a \leftarrow \rho a + (1-\rho)\Delta^2, \quad \theta \leftarrow \theta - \eta\Delta
        """
        if block[FOUND_INF] != 0:
            return
        scale = factor(block, maximize)
        lr, rho, one_minus_rho = (T(block[src + LR]), T(block[src + ALPHA]),
                                  T(block[src + ONE_MINUS_ALPHA]))
        eps, weight_decay = T(block[src + EPS]), T(block[src + L2])
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.size:
            E.adadelta_at(i, p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps,
                          weight_decay, scale)
            i += stride

    @cuda.jit
    def lion(p, g, exp_avg, block, src, dst, maximize):
        r"""Lion (:func:`fastopt.optim.reference.lion`), scalars from the block:

        .. math::
            d = s\nabla, \quad c = \beta_1 m + (1-\beta_1) d, \quad
            \theta \leftarrow (1 - \eta\lambda)\theta - \eta \operatorname{sign}(c), \quad
            m \leftarrow \beta_2 m + (1-\beta_2) d
        """
        if block[FOUND_INF] != 0:
            return
        scale = factor(block, maximize)
        lr, decay = T(block[src + LR]), T(block[src + DECAY])
        beta1, one_minus_beta1 = T(block[src + BETA1]), T(block[src + ONE_MINUS_BETA1])
        beta2, one_minus_beta2 = T(block[src + BETA2]), T(block[src + ONE_MINUS_BETA2])
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.size:
            E.lion_at(i, p, g, exp_avg, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, decay,
                      scale)
            i += stride

    return {"adam": adam, "sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adamax": adamax,
            "adadelta": adadelta, "lion": lion}


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
           "reduction", "row_dev", "row_in", "update_kernels"]
