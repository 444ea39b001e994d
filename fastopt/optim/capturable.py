r"""Capturable optimizer steps on CUDA: no host synchronization, scalars read from the device.

``opt = fastopt.capturable.Adam(device_params, lr=1e-3)`` then ``result = opt.step(grads,
grad_scale=..., max_norm=...)`` updates the parameters as :class:`fastopt.Adam` does on the same
device arrays (with unscaling, clipping and the non-finite skip), but the step is a fixed sequence
of launches that never copies anything back to the host:

1. the partial sums of squares of every gradient (float64, into device memory);
2. one single-thread kernel that finishes the global norm and computes the skip flag
   (``found_inf``), the clipping coefficient and, only when the gradients are finite, each
   parameter's new step count and bias corrections from it;
3. the update kernels, which read their scalars from the device and return without writing when
   ``found_inf`` is set: parameters, state and step counts are left exactly as they were.

Classes: :class:`Adam`, :class:`AdamW`, :class:`SGD`, :class:`Adagrad`, :class:`RMSprop`,
:class:`Adamax`, :class:`Adadelta`, :class:`Lion`, :class:`Rprop`, with the hyperparameters and
defaults of the fastopt classes of the same names. (NAdam, RAdam, ASGD and LAMB are not
capturable here: their step-dependent host state, branch or per-tensor norms would need more
device-side work.)

**What is captured.** Everything a step reads that can change between steps lives in one small
float64 device array per optimizer, the *block* (layout: :mod:`fastopt.backends.cuda.capturable`):
each parameter's hyperparameters (learning rate, betas, eps, weight decay, momentum, dampening,
alpha or rho, lr_decay: inputs, written by the host, from which each update kernel derives
``1 - beta``, the decoupled decay ``1 - lr*wd`` and the like); ``1 / grad_scale`` and
``max_norm`` (inputs); each parameter's step count, ``lr / (1 - beta1**t)``,
``sqrt(1 - beta2**t)``, Adagrad's ``lr / (1 + (t-1)*lr_decay)`` and the first-step flag of a
momentum buffer (device state); the step's norm, ``found_inf``, clipping coefficient and gradient
factor (outputs). The launch arguments (array pointers, block offsets, the mode flags, the grid)
are the same at every step, so a captured launch sequence (:meth:`CapturableOptimizer.launch`
recorded into a CUDA graph) replays correctly while a schedule changes the learning rate and the
step count advances on the device.

**Host-to-device updates.** A change of ``param_groups[i][...]`` (by hand, :meth:`set_lr` or a
:class:`fastopt.schedules.LRScheduler`), of ``grad_scale`` or of ``max_norm`` is copied into
the block's input slots with one asynchronous copy from pinned memory on the optimizer's stream
before the next launch sequence (:meth:`push_hyperparameters`, which :meth:`step` calls); a step
with nothing changed copies nothing. The pinned staging buffers are reused once the copy that last
read them has completed (an event query, never a wait); a new one is allocated when all are in
flight.

**Reading results.** :meth:`step` returns a :class:`StepResult` whose ``norm``, ``found_inf``,
``clip_coef`` and ``skipped`` are one-element float64 device arrays (views of the block, valid until
the next step); ``result.info`` copies them to the host, once, when read, as a
:class:`fastopt.StepInfo`. :meth:`state_dict` is :class:`fastopt.Adam`'s format (step counts
included), so state moves both ways between the two.

Differences from the non-capturable classes: every parameter needs a gradient at every step (a
captured sequence cannot skip a launch); the parameters, their dtypes and the mode flags
(``amsgrad``, ``nesterov``, ``centered``, ``maximize``, and whether momentum is used) are fixed at
construction, and changing a flag raises ``ValueError`` at the next step; the global norm is
always computed (it is the skip decision); float32 and float64 parameters only (no
float16/bfloat16 master weights).

On the bits: in numba's simulator the results are bit-identical to the fastopt classes of the
same names: the same element arithmetic in the same order (the update kernels call the elements
of :mod:`fastopt.backends.elements.optim` and derive their constants as the ``cuda`` backend's
kernels do), the same rounding of the scalars, the same reduction order and the same C ``pow``
for the bias corrections. On a GPU the bias corrections use the
device's ``pow`` (libdevice, within 2 ulp in float64) where the other classes use the host's, so
results may differ in the last bits.

.. warning::
    Not verified on a GPU: this module was written and tested under numba's CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``) only. Real CUDA-graph capture of :meth:`launch` (for instance
    under ``torch.cuda.graph`` or CuPy's stream capture, with ``stream=`` set to the capturing
    stream through ``numba.cuda.external_stream``) has not been tried. Capture needs a stream other
    than the legacy default stream, and the hyperparameter copies must stay outside the captured
    region (call :meth:`push_hyperparameters` before each replay).
"""

import copy

import numpy as np

from fastopt.optim import _api, algorithms as alg
from fastopt._core.dispatch import is_device_array
from fastopt.optim._step import check_hyper
from fastopt._core.validate import check_arrays, check_number
from fastopt.optim.arena import FlatParams
from fastopt.optim.optimizers import StepInfo, checked_layout

#: Pinned staging buffers made at construction (more are made only while all are in flight).
STAGING_BUFFERS = 2


def _cuda():
    from numba import cuda

    return cuda


def _kernels():
    from fastopt.backends.cuda import capturable as cuda_capturable

    return cuda_capturable


def _single(x):
    return hasattr(x, "shape") or is_device_array(x) or isinstance(x, FlatParams)


def _buffer(x):
    return x.data if isinstance(x, FlatParams) else x


def _flat(a):
    return a if a.ndim == 1 else a.reshape(a.size)


def _raw(group, names):
    """A group's hyperparameters as a comparable snapshot (lists of betas as tuples)."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in (group[n] for n in names))


class _Uploads:
    """Asynchronous host-to-device copies of the block's input slots from pinned memory.

    A staging buffer is written only when the copy that last read it has completed (an event
    query, which never waits); when every buffer is still in flight, a new one is made.
    """

    def __init__(self, size, stream):
        self._size, self._stream, self._slots = size, stream, []
        for _ in range(STAGING_BUFFERS):
            self._slots.append(self._new())

    def _new(self):
        cuda = _cuda()
        event = cuda.event() if _kernels().SIMULATOR else cuda.event(timing=False)
        return cuda.pinned_array(self._size, np.float64), event

    @staticmethod
    def _free(event):
        query = getattr(event, "query", None)  # the simulator's events have none: all is done
        return query is None or query()

    def copy(self, values, target):
        """``target[:] = values`` on the stream, without waiting for it."""
        for slot in self._slots:
            if self._free(slot[1]):
                break
        else:
            slot = self._new()
            self._slots.append(slot)
        staging, event = slot
        staging[:] = values
        target.copy_to_device(staging, stream=self._stream)
        event.record(self._stream)


class StepResult:
    """What a capturable step did, on the device; copied to the host only when read.

    ``norm`` (the global gradient norm after unscaling, before clipping), ``found_inf`` /
    ``skipped`` (1.0 when a gradient held an inf or nan and the step was skipped, else 0.0) and
    ``clip_coef`` are one-element float64 device arrays: views of the optimizer's block, valid
    until its next step writes them again. ``info`` copies them to the host (once) as a
    :class:`fastopt.StepInfo`; reading it after the optimizer has stepped again raises
    ``RuntimeError``, because the device values are then the later step's.
    """

    __slots__ = ("norm", "found_inf", "skipped", "clip_coef", "_optimizer", "_serial", "_info")

    def __init__(self, optimizer, serial):
        self.norm, self.found_inf, self.clip_coef = optimizer._output_views
        self.skipped = self.found_inf
        self._optimizer, self._serial, self._info = optimizer, serial, None

    @property
    def info(self):
        """The step's :class:`fastopt.StepInfo`, copied from the device at the first read."""
        if self._info is None:
            if self._optimizer._serial != self._serial:
                raise RuntimeError("StepResult.info: the optimizer has stepped since this result "
                                   "was returned and its device values were overwritten; read "
                                   "info (or copy the device arrays) before the next step")
            norm, found_inf, clip = self._optimizer._read_outputs()
            self._info = StepInfo(grad_norm=norm, found_inf=found_inf, skipped=found_inf,
                                  clip_coef=clip)
        return self._info

    @property
    def grad_norm(self):
        """``info.grad_norm``: the global norm as a float (a host copy at the first read)."""
        return self.info.grad_norm

    def __repr__(self):
        return f"StepResult({self._info!r})" if self._info else "StepResult(<on the device>)"


class CapturableOptimizer:
    """Base class: parameter groups over CUDA arrays, the device block, the launch sequence.

    ``params`` is a device array, a :class:`~fastopt.FlatParams` arena on the device (one launch
    per step for all its tensors), a list of them, or a list of parameter-group dicts, as for
    :class:`fastopt.Optimizer`. ``stream``: the numba stream every copy and launch goes to
    (default: the stream of the first parameter's ``__cuda_array_interface__``, that of a torch
    or CuPy producer, else ``numba.cuda.default_stream()``); a CUDA graph is captured from a
    stream of your own (``numba.cuda.external_stream(ptr)`` wraps one of torch or CuPy).
    Construction allocates everything a step uses and synchronizes that stream once.
    """

    algorithm = None  # an :class:`fastopt.optim.algorithms.Algorithm`, set by each subclass

    def __init__(self, params, *, stream=None, **defaults):
        cuda, kern = _cuda(), _kernels()
        self._flags = kern.FLAGS[self.algorithm.kernel]  # fixed at construction
        self.defaults = check_hyper(self.algorithm, defaults)
        groups = [params] if _single(params) else list(params)
        if not groups:
            raise ValueError("params: got an empty list of parameters")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups, self._params, self._group_rows, self._modes = [], [], [], []
        for g_index, group in enumerate(groups):
            self._add_group(g_index, group)
        if stream is None:  # the producer's stream of the first parameter, else the default one
            stream = getattr(self._params[0][1], "stream", 0) or cuda.default_stream()
        self._stream = stream
        rows = len(self._params)
        self._rows = rows
        self._dev_start = kern.row_dev(rows, 0)

        # State arrays, allocated once: a captured sequence keeps their addresses.
        self._states = []
        for row, (_, view) in enumerate(self._params):
            hyper = self._hyper_of_row(row)
            arrays = []
            for name, used in zip(self.algorithm.state, self.algorithm.uses(hyper)):
                fill = self.algorithm.initial_state(hyper, name)
                arrays.append(_memory_full(view.shape, view.dtype, fill, self._stream) if used
                              else cuda.device_array(0, view.dtype))
            self._states.append(arrays)

        # The block: outputs, step inputs, row inputs, row device state.
        host = np.zeros(kern.block_size(rows), np.float64)
        host[kern.CLIP_COEF] = host[kern.FACTOR] = host[kern.INV_SCALE] = 1.0
        host[kern.MAX_NORM] = -1.0
        self._inputs = host[kern.INV_SCALE:self._dev_start].copy()
        self._header = (1.0, -1.0)
        self._raws = [None] * len(self.param_groups)
        self._refresh_groups(validate_only=False)
        host[kern.INV_SCALE:self._dev_start] = self._inputs
        self._block = cuda.to_device(host, stream=self._stream)
        self._block_inputs = self._block[kern.INV_SCALE:self._dev_start]
        self._output_views = (self._block[kern.NORM:kern.NORM + 1],
                              self._block[kern.FOUND_INF:kern.FOUND_INF + 1],
                              self._block[kern.CLIP_COEF:kern.CLIP_COEF + 1])
        self._uploads = _Uploads(self._inputs.size, self._stream)
        self._serial = 0

        # The launch sequence: configured once, only the gradients change between steps.
        ends, self._reductions = [0], []
        for _, view in self._params:
            if view.size:
                blocks, launch = kern.reduction(view.size, self._stream)
            else:
                blocks, launch = 0, None
            self._reductions.append((launch, ends[-1], ends[-1] + blocks))
            ends.append(ends[-1] + blocks)
        self._partial = cuda.device_array(max(1, ends[-1]), np.float64)
        self._reductions = [(launch, self._partial[a:b]) for launch, a, b in self._reductions]
        self._ends = cuda.to_device(np.array(ends, np.int64), stream=self._stream)
        self._finalize = kern.configured(kern.finalize, 1, self._stream)
        self._updates = []
        for row, ((_, view), states) in enumerate(zip(self._params, self._states)):
            if not view.size:
                self._updates.append(None)
                continue
            uses, flags = self._modes[self._group_of(row)]
            kernel = kern.update_kernel(self.algorithm.name, uses)
            tail = (self._block, kern.row_in(row), kern.row_dev(rows, row), flags)
            self._updates.append((kern.configured(kernel, view.size, self._stream), _flat(view),
                                  tuple(_flat(s) for s in states), tail))
        self._stream.synchronize()

    # -- construction helpers ------------------------------------------------------------------

    def _add_group(self, g_index, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("param_group: expected a dict with a 'params' list")
        params = group["params"]
        params = [params] if _single(params) else list(params)
        if not params:
            raise ValueError(f"param_groups[{g_index}]['params']: got an empty list")
        new = {**self.defaults, **group, "params": params}
        try:
            hyper = check_hyper(self.algorithm, new)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"param_groups[{g_index}]: {exc}") from None
        start = len(self._params)
        for i, p in enumerate(params, start=start):
            name = f"params[{i}]"
            if any(p is q for q, _ in self._params):
                raise ValueError(f"{name}: appears more than once in the parameter groups")
            buffer = _buffer(p)
            if not is_device_array(buffer):
                raise TypeError(f"{name}: is a host array ({type(buffer).__name__}); "
                                "fastopt.capturable steps CUDA device arrays only (numba "
                                "device arrays, CuPy, torch CUDA tensors: numba.cuda.to_device "
                                "moves a numpy array); for host arrays use "
                                f"fastopt.{type(self).__name__}")
            (view,) = check_arrays({name: buffer}, {name}, True)
            self._params.append((p, view))
        self._group_rows.append(range(start, len(self._params)))
        self._modes.append(self._mode(hyper))
        self.param_groups.append(new)

    def _mode(self, hyper):
        """What is fixed at construction: the state arrays used and the kernel's flags."""
        return tuple(self.algorithm.uses(hyper)), tuple(hyper[f] for f in self._flags)

    def _group_of(self, row):
        for g, rows in enumerate(self._group_rows):
            if row in rows:
                return g
        raise IndexError(row)

    def _hyper_of_row(self, row):
        return check_hyper(self.algorithm, self.param_groups[self._group_of(row)])

    # -- host inputs ---------------------------------------------------------------------------

    def _row_inputs(self, hyper):
        """One row's input slots (see :mod:`fastopt.backends.cuda.capturable`): the
        hyperparameters, which the update kernel rounds to the parameter's dtype."""
        kern = _kernels()
        row = np.zeros(kern.ROW_IN)
        row[kern.LR], row[kern.WEIGHT_DECAY] = hyper["lr"], hyper.get("weight_decay", 0.0)
        row[kern.BETA1], row[kern.BETA2] = hyper.get("betas", (0.0, 0.0))
        row[kern.EPS] = hyper.get("eps", 0.0)
        row[kern.MOMENTUM] = hyper.get("momentum", 0.0)
        row[kern.DAMPENING] = hyper.get("dampening", 0.0)
        row[kern.ALPHA] = hyper.get("alpha", hyper.get("rho", 0.0))  # RMSprop's, Adadelta's rho
        row[kern.LR_DECAY] = hyper.get("lr_decay", 0.0)
        row[kern.ETAMINUS], row[kern.ETAPLUS] = hyper.get("etas", (0.0, 0.0))
        row[kern.STEP_SIZE_MIN], row[kern.STEP_SIZE_MAX] = hyper.get("step_sizes", (0.0, 0.0))
        return row

    def _refresh_groups(self, validate_only=True):
        """Checks the groups that changed since the last call and, all checked, writes their rows
        into the host copy of the inputs; returns whether anything changed. ``validate_only``
        False: (re)writes every group's rows."""
        kern = _kernels()
        names = tuple(self.algorithm.defaults)
        pending = []
        for g_index, group in enumerate(self.param_groups):
            params = group["params"]
            params = [params] if _single(params) else list(params)
            rows = self._group_rows[g_index]
            if len(params) != len(rows) or any(p is not self._params[r][0]
                                               for p, r in zip(params, rows)):
                raise ValueError(f"param_groups[{g_index}]['params']: changed; the parameters of "
                                 "a capturable optimizer are fixed at construction")
            raw = _raw(group, names)
            if validate_only and raw == self._raws[g_index]:
                continue
            try:
                hyper = check_hyper(self.algorithm, group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{g_index}]: {exc}") from None
            if self._mode(hyper) != self._modes[g_index]:
                fixed = ", ".join(self._flags + (("momentum != 0",) if "momentum" in group
                                                 else ()))
                raise ValueError(f"param_groups[{g_index}]: {fixed} cannot change in a capturable "
                                 "optimizer (its kernels and state arrays are fixed at "
                                 "construction); make a new optimizer")
            pending.append((g_index, raw, hyper))
        for g_index, raw, hyper in pending:
            for row in self._group_rows[g_index]:
                at = kern.row_in(row) - kern.INV_SCALE
                self._inputs[at:at + kern.ROW_IN] = self._row_inputs(hyper)
            self._raws[g_index] = raw
        return bool(pending)

    def push_hyperparameters(self, *, grad_scale=None, max_norm=None):
        """Copies changed hyperparameters (the groups', ``grad_scale``, ``max_norm``) into the
        block, asynchronously on the stream; copies nothing when nothing changed. :meth:`step`
        calls it; call it yourself before replaying a captured :meth:`launch`.

        ``grad_scale``: the loss scale the gradients carry (divided out inside the update; None: 1).
        ``max_norm``: clip by the global norm as ``torch.nn.utils.clip_grad_norm_`` (None: no
        clipping). Everything is checked before anything is written.
        """
        inv_scale = 1.0
        if grad_scale is not None:
            grad_scale = check_number("grad_scale", grad_scale)
            if grad_scale <= 0:
                raise ValueError(f"grad_scale: expected a value > 0, got {grad_scale}")
            inv_scale = 1.0 / grad_scale
        clip = -1.0 if max_norm is None else check_number("max_norm", max_norm, 0.0)
        changed = self._refresh_groups()
        header = (inv_scale, clip)
        if header != self._header:
            self._inputs[0], self._inputs[1] = header
            self._header = header
            changed = True
        if changed:
            self._uploads.copy(self._inputs, self._block_inputs)

    def set_lr(self, lr, group=None):
        """Sets the learning rate of every group (or of group ``group``) and copies it to the
        device now, asynchronously."""
        lr = check_number("lr", lr, 0.0)
        groups = self.param_groups if group is None else [self.param_groups[group]]
        for g in groups:
            g["lr"] = lr
        self._refresh_groups()
        self._uploads.copy(self._inputs, self._block_inputs)

    # -- the step ------------------------------------------------------------------------------

    def _checked_grads(self, grads):
        grads = [grads] if _single(grads) else list(grads)
        if len(grads) != self._rows:
            raise ValueError(f"grads: expected {self._rows} gradients (one per parameter, in "
                             f"param_groups order), got {len(grads)}")
        out = []
        for index, (grad, (param, view)) in enumerate(zip(grads, self._params)):
            pname, gname = f"params[{index}]", f"grads[{index}]"
            if grad is None:
                raise ValueError(f"{gname}: is None; a capturable step needs a gradient for "
                                 "every parameter (pass zeros to leave the state as a zero "
                                 "gradient would)")
            if isinstance(param, FlatParams):
                if isinstance(grad, FlatParams):
                    if grad.shapes != param.shapes:
                        raise ValueError(f"{gname}: arena layout does not match {pname}'s")
                elif not (hasattr(grad, "shape") and tuple(grad.shape) == tuple(view.shape)):
                    raise ValueError(f"{gname}: expected a FlatParams of the same layout as "
                                     f"{pname} (or a flat array of {view.size} elements)")
            buffer = _buffer(grad)
            if not is_device_array(buffer):
                raise TypeError(f"{gname}: is a host array ({type(buffer).__name__}); a "
                                "capturable step takes CUDA device arrays only")
            out.append(_flat(check_arrays({pname: view, gname: buffer}, {pname}, True)[1]))
        return out

    def launch(self, grads):
        """The launch sequence of one step, with the hyperparameters already on the device:
        partial sums of squares, finalize, updates. Copies nothing and never synchronizes; this
        is what a CUDA graph captures. Returns a :class:`StepResult`."""
        flat = self._checked_grads(grads)
        self._launch(flat)
        return StepResult(self, self._serial)

    def _launch(self, flat_grads):
        for (launch, partial), g in zip(self._reductions, flat_grads):
            if launch is not None:
                launch(g, partial)
        self._finalize(self._partial, self._ends, self._block, self._rows)
        for update, g in zip(self._updates, flat_grads):
            if update is not None:
                launch, param, states, tail = update
                launch(param, g, states, *tail)
        self._serial += 1

    def step(self, grads, *, grad_scale=None, max_norm=None):
        """One step: :meth:`push_hyperparameters` then :meth:`launch`, after checking everything.

        ``grads`` lists one device gradient per parameter in ``param_groups`` order (an arena of
        the same layout for an arena). Returns a :class:`StepResult`; nothing is copied back.
        """
        flat = self._checked_grads(grads)
        self.push_hyperparameters(grad_scale=grad_scale, max_norm=max_norm)
        self._launch(flat)
        return StepResult(self, self._serial)

    def _read_outputs(self):
        kern = _kernels()
        out = self._block[kern.NORM:kern.CLIP_COEF + 1].copy_to_host(stream=self._stream)
        self._stream.synchronize()
        return float(out[0]), bool(out[1] != 0), float(out[2])

    # -- state ---------------------------------------------------------------------------------

    def _device_rows(self):
        """The rows' device state on the host: an array of shape (rows, ROW_DEV)."""
        kern = _kernels()
        self._stream.synchronize()
        rows = self._block[self._dev_start:].copy_to_host(stream=self._stream)
        self._stream.synchronize()
        return rows.reshape(self._rows, kern.ROW_DEV)

    def state_dict(self):
        """The state in :meth:`fastopt.Optimizer.state_dict`'s format (numpy copies; ``step``
        an int; a parameter that has not stepped has no entry), loadable by the non-capturable
        class of the same algorithm and by this one. Synchronizes the stream."""
        kern = _kernels()
        groups, start = [], 0
        for group in self.param_groups:
            n = len(self._group_rows[len(groups)])
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            groups.append({**saved, "params": list(range(start, start + n))})
            start += n
        rows = self._device_rows()
        state = {}
        for row, arrays in enumerate(self._states):
            steps = int(rows[row, kern.STEP])
            if steps == 0:
                continue
            used = self._modes[self._group_of(row)][0]
            entry = {}
            for name, use, a in zip(self.algorithm.state, used, arrays):
                if use and not (name == "momentum_buffer" and rows[row, kern.BUFFER_READY] == 0):
                    entry[name] = a.copy_to_host(stream=self._stream)
                    self._stream.synchronize()
            entry["step"] = steps
            state[row] = entry
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores a :meth:`state_dict` (this class's or the non-capturable one's); checks all of
        it first and changes nothing if it fails. The mode flags must match this optimizer's.
        Copies into the existing device arrays (their addresses, captured, stay valid) and
        synchronizes."""
        kern = _kernels()
        saved_groups, saved_state = checked_layout(state_dict)
        if [len(g["params"]) for g in saved_groups] != [len(r) for r in self._group_rows]:
            raise ValueError("state_dict: its parameter groups do not match this optimizer's "
                             "(different number of groups or of parameters per group)")
        new_groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            new = {**group, **{k: v for k, v in saved.items() if k != "params"},
                   "params": group["params"]}
            try:
                hyper = check_hyper(self.algorithm, new)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"state_dict['param_groups'][{i}]: {exc}") from None
            if self._mode(hyper) != self._modes[i]:
                raise ValueError(f"state_dict['param_groups'][{i}]: its mode flags differ from "
                                 "this capturable optimizer's, which are fixed at construction")
            new_groups.append(new)
        host_rows = np.zeros((self._rows, kern.ROW_DEV), np.float64)
        writes = []
        for index, saved in saved_state.items():
            where = f"state_dict['state'][{index}]"
            if type(index) is not int or not 0 <= index < self._rows:  # True is no index
                raise ValueError(f"state_dict['state']: no parameter with index {index!r}")
            view = self._params[index][1]
            used = dict(zip(self.algorithm.state, self._modes[self._group_of(index)][0]))
            for name, value in saved.items():
                if name == "step":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{where}['step']: expected an int >= 0, got {value!r}")
                    host_rows[index, kern.STEP] = value
                    continue
                if not used.get(name, False):
                    raise ValueError(f"{where}: unknown or unused state {name!r} for this "
                                     f"{self.algorithm.name} configuration")
                host = value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value)
                if host.shape != tuple(view.shape) or host.dtype != view.dtype:
                    raise ValueError(f"{where}[{name!r}]: expected shape {tuple(view.shape)} and "
                                     f"dtype {view.dtype}, got {host.shape} {host.dtype}")
                writes.append((index, name, host))
                if name == "momentum_buffer":
                    host_rows[index, kern.BUFFER_READY] = 1.0
        # Everything checked: now write.
        self._stream.synchronize()
        written = {(index, name) for index, name, _ in writes}
        for index, name, host in writes:
            a = self._states[index][self.algorithm.state.index(name)]
            a.copy_to_device(np.ascontiguousarray(host), stream=self._stream)
        for row, arrays in enumerate(self._states):
            hyper = check_hyper(self.algorithm, new_groups[self._group_of(row)])
            for name, a in zip(self.algorithm.state, arrays):
                if a.size and (row, name) not in written:
                    fill = self.algorithm.initial_state(hyper, name)
                    a.copy_to_device(np.full(a.shape, fill, a.dtype), stream=self._stream)
        self._block[self._dev_start:].copy_to_device(host_rows.reshape(-1), stream=self._stream)
        self.param_groups[:] = new_groups
        self._raws = [None] * len(new_groups)
        self._refresh_groups()
        self._uploads.copy(self._inputs, self._block_inputs)
        self._stream.synchronize()

    def __repr__(self):
        groups = ", ".join(
            "{" + ", ".join(f"{k}={v!r}" for k, v in g.items() if k != "params")
            + f", params={len(r)}" + "}" for g, r in zip(self.param_groups, self._group_rows))
        return f"capturable.{type(self).__name__}(groups=[{groups}])"


def _memory_full(shape, dtype, value, stream):
    from fastopt.backends.cuda import memory as cuda_memory

    return cuda_memory.full(shape, dtype, value, stream)


def _capturable_class(algorithm, base):
    """The capturable class of ``algorithm``, with the fastopt class's hyperparameters and
    ``stream`` (see :func:`fastopt.optim._api.optimizer_class`)."""

    def construct(self, a):
        CapturableOptimizer.__init__(self, a["params"], stream=a["stream"],
                                     **{n: a[n] for n in algorithm.defaults})

    return _api.optimizer_class(algorithm, base, __name__, _api.text(algorithm.capturable_doc),
                                dict(stream=None), construct)


#: The capturable class of each algorithm that has one, by the algorithm's name.
CLASSES = {}
for _algorithm in alg.ALGORITHMS.values():
    if _algorithm.capturable_doc is not None:
        _base = CLASSES[_algorithm.extends] if _algorithm.extends else CapturableOptimizer
        CLASSES[_algorithm.name] = _capturable_class(_algorithm, _base)
        globals()[CLASSES[_algorithm.name].__name__] = CLASSES[_algorithm.name]
del _algorithm, _base

__all__ = [c.__name__ for c in CLASSES.values()] + ["CapturableOptimizer", "StepResult"]
