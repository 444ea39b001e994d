"""Optimizer state sharded over ranks (ZeRO stage 1) on a flat arena.

Every rank holds the whole parameter vector and computes a gradient of it; each keeps the optimizer
state (and the float32 master weights of 16-bit parameters) of one contiguous block of it only, and
updates that block. A step is:

1. a reduce-scatter of the gradient arena: rank ``r`` receives the sum over ranks of block ``r``;
2. the global decisions, from one all-reduce of one or two scalars: the gradient norm for clipping
   (the sum of the ranks' sums of squares) or the largest magnitude for the non-finite check, so
   every rank clips by the same factor and skips the same steps;
3. the fused update of the block by a fastopt optimizer over the block's pieces of the parameter
   groups (the same kernels, bound once, as the single-process step);
4. an in-place all-gather of the parameter arena.

The arena is padded to ``W * n`` elements, ``n`` a multiple of 64 bytes' worth of elements, so every
block starts on a vector boundary and the collectives see blocks of one size.
"""

import inspect
import math
import warnings

import numpy as np

from fastopt.distributed.comm import SingleProcess
from fastopt.optim.arena import FlatParams
from fastopt.optim.optimizers import (CLIP_EPS, StepInfo, _LOW_PRECISION, _check_range,
                                      _mixed_options)
from fastopt.optim._step import check_hyper
from fastopt._core import lowp
from fastopt._core.validate import check_number

#: Blocks start at multiples of this many bytes of the parameters and of the gradients.
VECTOR_BYTES = 64
REDUCTIONS = ("mean", "sum")
_ROUNDING_CHUNK = 1 << 16  # elements rounded stochastically at a time (bounds the temporaries)


def _is_16_bit(dtype):
    return np.dtype(dtype) in _LOW_PRECISION


def block_size(size, world, itemsize):
    """Elements of each rank's block for an arena of ``size`` elements: ``size / world`` rounded
    up to a multiple of ``VECTOR_BYTES // itemsize``."""
    unit = max(1, VECTOR_BYTES // itemsize)
    return -(-size // (world * unit)) * unit


def _groups(params):
    """``[(segment, hyperparameters)]`` from the forms a fastopt class takes (an arena, a list of
    arena segments, a list of group dicts each holding one segment)."""
    if isinstance(params, FlatParams):
        return [(params, {})]
    groups = list(params)
    if not groups:
        raise ValueError("params: got an empty list of parameters")
    out = []
    for i, group in enumerate(groups):
        hyper = {}
        if isinstance(group, dict):
            if "params" not in group:
                raise TypeError(f"params[{i}]: expected a dict with a 'params' arena segment")
            hyper = {k: v for k, v in group.items() if k != "params"}
            group = group["params"]
            if isinstance(group, (list, tuple)) and len(group) == 1:
                group = group[0]
        if not isinstance(group, FlatParams):
            raise TypeError(f"params[{i}]: expected a FlatParams arena segment, got "
                            f"{type(group).__name__} (a sharded optimizer steps one arena; "
                            "give each group one segment of it)")
        out.append((group, hyper))
    return out


class ZeroOptimizer:
    """A fastopt optimizer whose state is sharded over the ranks of ``comm`` (ZeRO stage 1).

    ``ZeroOptimizer(fastopt.AdamW, arena, comm=MPICommunicator(), lr=1e-3)``. ``params`` is a
    :class:`~fastopt.FlatParams` arena on the host, or parameter groups that are consecutive
    segments covering one arena (``[{"params": arena.segment(0, 1)}, {"params":
    arena.segment(1, 2), "weight_decay": 0.0}]``), with the optimizer class's hyperparameters and
    options (``skip_nonfinite``, ``backend``, ``state_dtype``).

    The optimizer copies the arena's values into its own padded arena, :attr:`params`, of the same
    layout: build the model on ``opt.params.views`` (as on any arena's views). Write each step's
    gradients into :attr:`grads` (float32 for 16-bit parameters, else the parameters' dtype), or
    pass an arena or flat array of them to :meth:`step`, which copies it there.

    ``reduce``: ``"mean"`` (the default, as PyTorch's DistributedDataParallel) steps with the mean
    of the ranks' gradients, ``"sum"`` with their sum. The mean is applied inside the kernel as a
    gradient scale of ``W`` (a step with ``grad_scale=s`` is the single-process step of the summed
    gradients with ``grad_scale=s * W``): no extra pass.

    Every rank must call :meth:`step` with the same hyperparameters and options. The step equals the
    single-process step of the reduced gradients bit for bit whenever the reduction is exact (the
    order in which MPI adds the ranks' gradients, and their sums of squares for the norm, is the
    MPI library's). Stochastic rounding of 16-bit parameters draws element ``i``'s bits from the
    stream of its index in the whole group, as one process does; it costs a numpy pass over the
    block. Refused: LAMB (its per-tensor trust ratios need per-segment sums across blocks).
    """

    def __init__(self, optimizer_class, params, comm=None, *, reduce="mean", **options):
        algorithm = getattr(optimizer_class, "algorithm", None)
        if algorithm is None:
            raise TypeError(f"optimizer_class: expected a fastopt optimizer class (fastopt.AdamW, "
                            f"...), got {optimizer_class!r}")
        if algorithm.segmented:
            raise NotImplementedError(f"{optimizer_class.__name__}: per-tensor trust ratios "
                                      "across blocks are not supported by ZeroOptimizer")
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce: expected one of {REDUCTIONS}, got {reduce!r}")
        self.comm = SingleProcess() if comm is None else comm
        self.algorithm = algorithm
        self.reduce = reduce
        hyper = {k: options.pop(k) for k in list(options) if k in algorithm.defaults}
        # Checked here, on every rank, not only by the ranks whose block holds parameters.
        accepted = {p.name for p in inspect.signature(optimizer_class).parameters.values()
                    if p.kind is p.KEYWORD_ONLY}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise TypeError(f"{optimizer_class.__name__}: unexpected options {unknown}; it takes "
                            f"{sorted(accepted | set(algorithm.defaults))}")
        self.defaults = check_hyper(algorithm, {**algorithm.defaults, **hyper})
        #: The seed of stochastic rounding, ``None`` when rounding to nearest.
        self._stochastic_seed = None
        if algorithm.mixed:
            mixed = _mixed_options(options.get("rounding", "nearest"), options.get("seed", 0),
                                   options.get("state_dtype", "float32"))
            if mixed["rounding"] == "stochastic":
                # The block's kernels round to nearest; the model copy is then rounded again from
                # the master weights, keyed on the index in the whole parameter (see step).
                self._stochastic_seed = mixed["seed"]
                options["rounding"] = "nearest"
        self.skip_nonfinite = bool(options.get("skip_nonfinite", True))
        self.skipped_steps = 0
        self._skipping = False

        groups = _groups(params)
        root = groups[0][0].origin[0]
        expected = 0
        for i, (segment, _) in enumerate(groups):
            if segment.origin != (root, expected):
                raise ValueError(f"params[{i}]: the groups must be consecutive segments covering "
                                 f"one arena, in order; expected one starting at tensor {expected}")
            expected += len(segment)
        if expected != len(root):
            raise ValueError(f"params: the groups cover tensors 0:{expected} of an arena of "
                             f"{len(root)}; they must cover all of it")
        if root.on_device:
            raise ValueError("params: ZeroOptimizer steps host arenas")
        dtype = np.dtype(root.dtype)
        if dtype not in (np.float32, np.float64, *_LOW_PRECISION):
            raise TypeError(f"params: expected a float32, float64, float16 or bfloat16 (uint16) "
                            f"arena, got {dtype}")
        low = dtype in _LOW_PRECISION
        grad_dtype = np.dtype(np.float32) if low else dtype
        world, rank = self.comm.size, self.comm.rank
        size = root.size
        #: Elements of each rank's block, and the padded length of the arenas' buffers.
        self.block = block_size(size, world, min(dtype.itemsize, grad_dtype.itemsize))
        padded = self.block * world
        shapes = list(root.shapes) + ([(padded - size,)] if padded > size else [])
        full_params = FlatParams.empty(shapes, dtype)
        full_params.data[:size] = root.data
        full_grads = FlatParams.empty(shapes, grad_dtype)
        #: The parameters (the model is built on its views) and the gradients, padded arenas.
        self.params = full_params.segment(0, len(root))
        self.grads = full_grads.segment(0, len(root))
        self._param_buffer, self._grad_buffer = full_params.data, full_grads.data
        self._shard_grad = np.zeros(self.block, grad_dtype)
        #: This rank's block of the parameter vector, ``[start, stop)`` (padding excluded).
        self.shard = (min(rank * self.block, size), min((rank + 1) * self.block, size))
        precision = np.finfo(np.float64 if dtype == np.float64 else np.float32)
        self._largest, self._narrowest = float(precision.max), precision.dtype.name

        #: The groups as a fastopt optimizer's: ``{"params": [segment of self.params], ...}``.
        self.param_groups = []
        #: Each group's ``[start, stop)`` in the arena.
        self.ranges = []
        for segment, group_hyper in groups:
            first = segment.origin[1]
            start = root.offsets[first]
            new = {**self.defaults, **group_hyper,
                   "params": [self.params.segment(first, first + len(segment))]}
            try:
                check_hyper(algorithm, new)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"params[{len(self.param_groups)}]: {exc}") from None
            self.param_groups.append(new)
            self.ranges.append((start, start + segment.size))
        #: ``(group, start, stop)`` of each piece of a group in this rank's block, in group order:
        #: the parameters of :attr:`local`.
        self.pieces = [(g, max(a, self.shard[0]), min(b, self.shard[1]))
                       for g, (a, b) in enumerate(self.ranges)
                       if max(a, self.shard[0]) < min(b, self.shard[1])]
        base = rank * self.block
        self._local_grads = [self._shard_grad[lo - base:hi - base] for _, lo, hi in self.pieces]
        local_groups = [{**{k: v for k, v in self.param_groups[g].items() if k != "params"},
                         "params": [self._param_buffer[lo:hi]]} for g, lo, hi in self.pieces]
        #: The fastopt optimizer of this rank's block (``None`` when the block is all padding).
        self.local = optimizer_class(local_groups, **hyper, **options) if local_groups else None

    # -----------------------------------------------------------------------------------------
    # step

    def step(self, grads=None, *, grad_scale=None, max_norm=None, return_norm=False):
        """One step of every rank: reduce-scatter, clip or check, update the block, all-gather.

        ``grads``: ``None`` when the gradients were written into :attr:`grads`; else an arena of
        the parameters' layout or a flat array of ``params.size`` elements, copied there.
        ``grad_scale``, ``max_norm``, ``return_norm``: as :meth:`fastopt.Optimizer.step`, on the
        reduced gradient (the global norm, one all-reduced sum of squares). Returns the same
        :class:`~fastopt.StepInfo` on every rank; a skipped step leaves every rank's parameters
        and state as they were. Everything is checked before any collective, the same on every
        rank.
        """
        world = self.comm.size
        if grad_scale is not None:
            grad_scale = check_number("grad_scale", grad_scale)
            if grad_scale <= 0:
                raise ValueError(f"grad_scale: expected a value > 0, got {grad_scale}")
        if max_norm is not None:
            max_norm = check_number("max_norm", max_norm, 0.0)
        if self.reduce == "mean" and world > 1:
            grad_scale = (1.0 if grad_scale is None else grad_scale) * world
        inv_scale = 1.0 if grad_scale is None else 1.0 / grad_scale
        if inv_scale > self._largest:
            raise ValueError(f"grad_scale: 1/grad_scale = {inv_scale:g} overflows "
                             f"{self._narrowest}, the parameters' precision")
        self._check_groups()
        if grads is not None:
            self._take(grads)

        self.comm.reduce_scatter(self._grad_buffer, self._shard_grad)
        local, plan = self.local, []
        if local is not None:
            for k, (g, _, _) in enumerate(self.pieces):
                group = local.param_groups[k]
                group.update((name, self.param_groups[g][name])
                             for name in self.algorithm.defaults)
                hyper, uses = local._checked_hyper(k, group)
                plan.append(local._prepare(k, group["params"][0], self._local_grads[k], hyper,
                                           uses))
        info, factor = self._decide(plan, inv_scale, grad_scale, max_norm, return_norm)
        if info.skipped:
            self._count_skip(True)
            return info
        state = local.state if local is not None else {}
        for index, new_state, step, _, _, run in plan:
            run(factor)
            entry = state.setdefault(index, {})
            entry.update(new_state)
            entry["step"] = step
        if self._stochastic_seed is not None and _is_16_bit(self.params.dtype):
            self._round_stochastically()
        self.comm.all_gather(self._param_buffer)
        self._count_skip(False)
        return info

    def _round_stochastically(self):
        """The block's 16-bit model copy rounded stochastically from the master weights, element
        ``i`` of group ``g`` from ``random32(stream_key(seed, step, g + 1), i)``: the stream of the
        single-process step, whose parameter ``g`` is the group's segment. A numpy pass."""
        fmt = "float16" if np.dtype(self.params.dtype) == np.float16 else "bfloat16"
        bits = self._param_buffer.view(np.uint16)
        for k, (g, lo, hi) in enumerate(self.pieces):
            state = self.local.state[k]
            key = lowp.stream_key(self._stochastic_seed, state["step"], stream=g + 1)
            first = lo - self.ranges[g][0]
            master = state["master"]
            for c in range(0, hi - lo, _ROUNDING_CHUNK):
                part = master[c:c + _ROUNDING_CHUNK]
                bits[lo + c:lo + c + part.size] = lowp.round_bits(part, fmt, "stochastic", key,
                                                                  first + c)

    def _decide(self, plan, inv_scale, grad_scale, max_norm, return_norm):
        """``(StepInfo, gradient factor)``, the same on every rank: the global norm and clip
        coefficient, or the non-finite check, from all-reduced scalars."""
        local = self.local
        if max_norm is not None or return_norm:
            total = np.array([sum(entry[3]() for entry in plan)], np.float64)
            self.comm.all_reduce(total, "sum")
            total = float(total[0])
            root = math.sqrt(total)
            norm = root * inv_scale
            if total - total != 0:
                if not (self.skip_nonfinite or grad_scale is not None or max_norm is not None):
                    return StepInfo(norm, True, False), inv_scale  # reported, as one process
                # inf from finite float64 gradients is reported, not skipped (as one process).
                bad = np.array([0.0 if local is None or local._finite(self._local_grads, plan)
                                else 1.0])
                if total != math.inf or self._any(bad):
                    return StepInfo(norm, True, True), 0.0
            clip = 1.0 if max_norm is None else min(1.0, max_norm / (norm + CLIP_EPS))
            factor = inv_scale * clip
            if root * factor > self._largest:
                top = np.array([0.0 if local is None else
                                local._largest_scaled(self._local_grads, plan, factor)])
                self.comm.all_reduce(top, "max")
                if top[0] > self._largest:
                    return StepInfo(norm, True, True), 0.0
            return StepInfo(norm, False, False, clip), factor
        if self.skip_nonfinite or grad_scale is not None:
            largest = 0.0
            for entry in plan:
                top = entry[4]()
                if not top <= largest:
                    largest = top
                    if top != top:
                        break
            nan = largest != largest
            found = np.array([0.0 if nan else largest, 1.0 if nan else 0.0])
            self.comm.all_reduce(found, "max")
            if found[1] or found[0] * inv_scale > self._largest:
                return StepInfo(None, True, True), 0.0
        return StepInfo(), inv_scale

    def _any(self, flag):
        self.comm.all_reduce(flag, "max")
        return bool(flag[0])

    def _check_groups(self):
        """Every group's hyperparameters, checked on every rank before any collective."""
        for g, group in enumerate(self.param_groups):
            try:
                hyper = check_hyper(self.algorithm, group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{g}]: {exc}") from None
            _check_range(hyper, self._largest, self._narrowest, f"param_groups[{g}]: ")

    def _take(self, grads):
        """Copies a gradient arena or flat array into :attr:`grads`."""
        if isinstance(grads, FlatParams):
            if grads.shapes != self.grads.shapes:
                raise ValueError("grads: arena layout does not match the parameters'")
            data = grads.data
        else:
            data = np.asarray(grads)
            if data.shape != (self.grads.size,):
                raise ValueError(f"grads: expected an arena of the parameters' layout or a flat "
                                 f"array of {self.grads.size} elements, got shape {data.shape}")
        if data.dtype.kind != "f":
            raise TypeError(f"grads: expected floating-point gradients, got {data.dtype}")
        if data is not self.grads.data:
            self.grads.data[...] = data

    def _count_skip(self, skipped):
        if skipped:
            self.skipped_steps += 1
            if not self._skipping:
                warnings.warn("ZeroOptimizer.step skipped: a gradient holds inf or NaN, or "
                              "overflows the parameters' precision once unscaled (skipped_steps "
                              "counts them; this warns once per run of skipped steps)",
                              RuntimeWarning, stacklevel=3)
        self._skipping = skipped

    def __repr__(self):
        return (f"ZeroOptimizer({self.algorithm.name}, {self.params.size:,} parameters, "
                f"block {self.block:,}, {self.comm!r})")
