"""The training loop: minibatch SGD (or full-batch GD) with reshuffling, any fastopt optimizer,
learning-rate schedules, gradient-norm monitoring and clipping, per-epoch evaluation.

::

    model = fastopt.MLP([64, 128, 10], seed=0)
    opt = fastopt.Adam([model.params], lr=1e-3)
    history = fastopt.train(model, opt, X, y, epochs=20, batch_size=32,
                            eval_data=(X_test, y_test))
    history.epoch["test_error"][-1]

Each step runs the model's forward and backward kernels (:meth:`fastopt.MLP.loss_and_grad`), then
one optimizer kernel over the whole parameter vector. The data are checked once, before the first
step.
"""

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from fastopt._core import memory as _memory
from fastopt.nn import reference as ref
from fastopt.optim._step import check_hyper
from fastopt._core.validate import check_number
from fastopt.nn.mlp import check_batch

__all__ = ["train", "History"]


@dataclass
class History:
    """What :func:`train` measured.

    ``step``: one entry per optimizer step: ``loss`` (mean over the batch), ``error`` (0-1 error of
    the batch), ``grad_norm`` (Euclidean norm of the full gradient, before clipping), ``lr``.
    ``epoch``: one entry per epoch: ``train_loss`` and ``train_error`` (averages over the epoch's
    batches, weighted by rows, measured while the parameters moved), ``test_loss`` and
    ``test_error`` when ``eval_data`` was given (after the epoch), ``seconds`` (wall time of the
    epoch's steps, evaluation excluded).
    ``sharpness``: with ``track_sharpness_every``, the ``step`` after which the Hessian's
    ``top_eigenvalue`` on the training data was measured, and its Lanczos ``residual``.
    ``noise``: with ``track_noise_every``, the ``step`` and its batch's unbiased estimates of the
    per-example gradient covariance's trace (``trace_sigma``) and of the squared gradient norm
    (``grad_sq``) (:func:`fastopt.noise.b_simple` makes the noise scale of them).
    """

    step: dict = field(default_factory=lambda: {k: [] for k in ("loss", "error", "grad_norm",
                                                                "lr")})
    epoch: dict = field(default_factory=lambda: {k: [] for k in ("train_loss", "train_error",
                                                                 "test_loss", "test_error",
                                                                 "seconds")})
    sharpness: dict = field(default_factory=lambda: {k: [] for k in ("step", "top_eigenvalue",
                                                                     "residual")})
    noise: dict = field(default_factory=lambda: {k: [] for k in ("step", "trace_sigma",
                                                                 "grad_sq")})
    #: With ``record_every``: the recorded parameter vectors ``(rows, P)`` (read-only memory map
    #: of ``record_to``, or an array) and the step after which each was taken (0: before any).
    iterates: object = None
    iterate_steps: object = None

    def as_arrays(self):
        """The history as ``{part: {name: array}}`` for ``step``, ``epoch``, ``sharpness`` and
        ``noise``."""
        return {part: {k: np.asarray(v, float) for k, v in getattr(self, part).items()}
                for part in ("step", "epoch", "sharpness", "noise")}

    def __repr__(self):
        last = {k: v[-1] for k, v in self.epoch.items() if v}
        return f"History({len(self.step['loss'])} steps, {len(self.epoch['seconds'])} epochs, " \
               f"last epoch {last})"


def _check_optimizer(model, optimizer):
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if len(params) != 1 or params[0] is not model.params:
        raise ValueError("optimizer: expected an optimizer over exactly [model.params] (the flat "
                         "parameter vector), e.g. fastopt.Adam([model.params], lr=1e-3)")


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _progress_bar(total, enabled):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", leave=False, dynamic_ncols=True)


class _FusedEpochs:
    """Runs whole epochs in one compiled call (the backend's ``train_epoch``, contract in
    :mod:`fastopt.nn.reference`), through the optimizer's own kernel on the model's backend and
    on the optimizer's own state arrays and step count, so that histories, parameters and state
    are bit for bit those of per-step training, and the optimizer can go on stepping (or be saved
    with ``state_dict``) afterwards.

    The host computes each step's kernel scalars as :meth:`fastopt.Optimizer.step` does
    (``Algorithm.scalars``, cast to the dtype). A step whose gradient is not finite is skipped as
    the optimizer skips it (``skip_nonfinite``): the call ends there and the rest of the epoch
    runs in a new call, with the step counts one lower."""

    def __init__(self, model, optimizer, batch_size):
        self.model, self.optimizer, self.batch_size = model, optimizer, batch_size
        self.kernel = model._kernels.train_epoch
        self.algorithm = optimizer.algorithm
        self.optimizer_code = ref.EPOCH_OPTIMIZERS.index(self.algorithm.kernel)
        self.loss = ref.LOSSES.index(model.loss_name)
        layout, offsets = [], model.param_arena.offsets
        for layer in range(model.n_layers):
            layout.append((offsets[2 * layer], model.sizes[layer], model.sizes[layer + 1],
                           offsets[2 * layer + 1]))
        self.layout = np.array(layout, np.int64)
        self.codes = np.array(model._codes, np.int64)

    def _labels_and_targets(self, y):
        """``(labels, targets)`` of the kernel: one of them empty; MSE labels become one-hot."""
        model = self.model
        no_labels = np.empty(0, np.int64)
        if self.loss == ref.CROSS_ENTROPY:
            return y, np.empty((0, model.sizes[-1]), model.dtype)
        if y.ndim == 1:
            return no_labels, ref.one_hot(y, model.sizes[-1], model.dtype)
        return no_labels, y

    def _states(self, hyper, state):
        """The state arrays of the kernel (the existing ones, new ones created but not stored),
        the new ones, and whether any is new (the optimizer's ``fresh``)."""
        alg, model = self.algorithm, self.model
        arrays, new = [], {}
        for name, used in zip(alg.state, alg.uses(hyper)):
            if used and name not in state:
                new[name] = np.full(model.params.shape, alg.initial_state(hyper, name),
                                    model.dtype)
            arrays.append(new.get(name, state.get(name)) if used else None)
        return arrays, new, bool(new)

    def run(self, X, y, order, schedule, first_global_step, max_grad_norm, squares=False):
        """One epoch over the rows ``order`` of the checked ``(X, y)``; returns the per-step
        ``(losses, wrongs, norms, lrs)``, and with ``squares`` the rows' mean squared gradient
        norms after them (for :mod:`fastopt.dynamics.noise`)."""
        model, opt, alg = self.model, self.optimizer, self.algorithm
        group = opt.param_groups[0]
        batch = self.batch_size
        order = np.ascontiguousarray(order, np.int64)
        steps = -(-len(order) // batch)
        hyper = check_hyper(alg, group)
        if schedule is None:
            lrs = [hyper["lr"]] * steps
        else:  # the whole epoch's learning rates, checked as the optimizer checks lr
            lrs = [check_number("lr", float(schedule(first_global_step + s)), 0.0)
                   for s in range(steps)]
            group["lr"] = lrs[-1]
        labels, targets = self._labels_and_targets(y)
        parts = []
        done = 0
        while done < steps:
            state = opt.state.get(0, {})
            states, new, fresh = self._states(hyper, state)
            step = state.get("step", 0)
            host = alg.host_before(hyper, state)
            rows, hosts = [], []
            for s in range(done, steps):  # Optimizer.step's scalars for each step
                h = hyper if schedule is None else {**hyper, "lr": lrs[s]}
                t = step + 1 + s - done
                rows.append(alg.scalars(h, t, fresh and s == done, **host))
                host = alg.advance(h, t, host)
                hosts.append(host)
            scalars = np.array(rows, np.float64).astype(model.dtype)  # flags become 0 or 1
            out = self.kernel(
                X, labels, targets, order[done * batch:], batch, self.layout, self.codes,
                self.loss, model.params, model.grads, self.optimizer_code, states, scalars,
                float(max_grad_norm or 0.0), opt.skip_nonfinite, **(
                    {"squares": True} if squares else {}))
            losses, norms = out[0], out[2]
            ran = len(losses)
            applied = ran - (opt.skip_nonfinite and not math.isfinite(norms[-1]))
            if ran:
                opt._count_skip(applied < ran, stacklevel=5)
            if applied:
                state = opt.state.setdefault(0, state)
                state.update(new)
                state.update(hosts[applied - 1])
                state["step"] = step + applied
            parts.append(out)
            done += ran
        joined = [np.concatenate(a) for a in zip(*parts)]
        return (*joined[:3], np.array(lrs), *joined[3:])


def _fused_epochs(model, optimizer, batch_size, fused):
    """A :class:`_FusedEpochs` when the epoch can run as one compiled call, else ``None`` (or an
    error when ``fused=True`` asked for it)."""
    reasons = []
    kernels = model._kernels
    if not hasattr(kernels, "train_epoch"):
        reasons.append(f"the {model.backend!r} backend has no compiled epoch ('cpu' and 'c' have)")
    if getattr(optimizer.algorithm, "kernel", None) not in ref.EPOCH_OPTIMIZERS:
        reasons.append(f"optimizer {type(optimizer).__name__} has no kernel that a compiled "
                       "epoch runs")
    if getattr(optimizer.algorithm, "segmented", False) and optimizer.backend != model.backend:
        reasons.append(f"{type(optimizer).__name__}'s reduction rounds differently on the "
                       f"model's {model.backend!r} backend than on the optimizer's "
                       f"{optimizer.backend!r} (create it with backend={model.backend!r})")
    if reasons:
        if fused:
            raise ValueError("fused: cannot run whole epochs in one call: " + "; ".join(reasons))
        return None
    return _FusedEpochs(model, optimizer, batch_size) if fused is not False else None


def train(model, optimizer, X, y, epochs=10, batch_size=32, shuffle=True, schedule=None,
          max_grad_norm=None, eval_data=None, seed=0, progress=None, callback=None, fused=None,
          track_sharpness_every=None, track_noise_every=None, record_every=None,
          record_to=None):
    r"""Trains ``model`` in place with ``optimizer``; returns a :class:`History`.

    Every epoch visits each row of ``(X, y)`` once, in a new random order when ``shuffle``
    (reshuffled every epoch: a single shuffle would leave the batches' composition fixed), in
    batches of ``batch_size`` rows (the last one smaller); ``batch_size=None`` is full-batch
    gradient descent. A step is

    .. math::
        g = \nabla_\theta \tfrac{1}{|B|}\textstyle\sum_{i \in B} \ell(f_\theta(x_i), y_i), \quad
        g \leftarrow g \cdot \min(1, c / (\lVert g \rVert + 10^{-6})) \text{ if clipping}, \quad
        \theta \leftarrow \mathrm{optimizer}(\theta, g)

    Arguments:
        model: a :class:`fastopt.MLP`.
        optimizer: a fastopt optimizer over ``[model.params]``.
        X, y: training rows and labels (targets for MSE); checked once (feature count, finite,
            labels in range).
        epochs: passes over the data.
        batch_size: rows per step, or ``None`` for the full batch.
        shuffle: reshuffle every epoch (``numpy.random.default_rng(seed)``).
        schedule: ``None`` or ``schedule(step) -> lr`` with ``step`` counted from 0 over the whole
            run; sets every parameter group's ``lr`` before each step.
        max_grad_norm: clip the gradient to this Euclidean norm (the rule of
            ``torch.nn.utils.clip_grad_norm_``); ``None`` does not clip.
        eval_data: ``(X_test, y_test)`` evaluated after every epoch.
        progress: show a tqdm progress bar; ``None``: only when stderr is a terminal.
        callback: called as ``callback(epoch, history)`` after every epoch (epoch from 0).
        fused: run each epoch as one compiled call (``cpu`` or ``c`` backend; either loss; every
            optimizer class): the same batches through the same kernels, the optimizer's own
            update kernel (on the model's backend: the host backends' elementwise optimizer
            kernels agree bit for bit; LAMB, whose trust ratio is a reduction, fuses only when
            the optimizer runs on the model's backend), the same skipping of non-finite steps:
            the history, parameters and optimizer state are bit for bit those of per-step
            training, without Python per step.
            ``None`` (default) fuses when possible; ``True`` insists (error if impossible);
            ``False`` never fuses. The schedule is then called for all of an epoch's steps at
            the epoch's start.
        track_sharpness_every: every this many steps, the top eigenvalue of the Hessian of the
            loss on ``(X, y)`` (:func:`fastopt.curvature.lanczos`, relative residual 1e-3, each
            search started from the last eigenvector) into ``history.sharpness``; to compare
            with ``2 / lr`` (the edge of stability). Steps then run one by one (not fused).
        track_noise_every: every this many steps, the gradient noise estimates of the step's
            batch into ``history.noise`` (:mod:`fastopt.noise`), from the activations and
            deltas the step computed anyway (inside the compiled epoch where one runs).
        record_every: record the parameter vector before the first step and after every
            ``record_every``-th step (for :func:`fastopt.landscape.project`), into
            ``history.iterates`` with the steps in ``history.iterate_steps``. Epochs run fused
            only when ``record_every`` is a multiple of the steps per epoch.
        record_to: a path: the iterates go to a memory-mapped ``.npy`` file there (written as
            training goes, so long runs do not hold them in memory); ``history.iterates`` is
            then a read-only memory map of it. ``None``: an array in memory.
    """
    _check_optimizer(model, optimizer)
    epochs = _check_positive_int("epochs", epochs)
    track_sharpness_every = _check_positive_int("track_sharpness_every", track_sharpness_every,
                                                allow_none=True)
    track_noise_every = _check_positive_int("track_noise_every", track_noise_every,
                                            allow_none=True)
    if track_sharpness_every is not None:
        if fused:
            raise ValueError("fused: steps run one by one when track_sharpness_every is set")
        fused = False
    X, y = check_batch(X, y, model.sizes[0], model.sizes[-1], model.dtype, model.loss_name)
    n = X.shape[0]
    batch_size = n if batch_size is None else min(_check_positive_int("batch_size", batch_size), n)
    if max_grad_norm is not None and not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm: expected a finite number > 0, got {max_grad_norm!r}")
    if eval_data is not None:
        X_eval, y_eval = check_batch(*eval_data, model.sizes[0], model.sizes[-1], model.dtype,
                                     model.loss_name, "eval_data[0]", "eval_data[1]")
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-n // batch_size)
    history = History()
    record_every = _check_positive_int("record_every", record_every, allow_none=True)
    if record_to is not None and record_every is None:
        raise ValueError("record_to: needs record_every (how often to record the parameters)")
    if record_every is not None:
        if record_every % steps_per_epoch:
            if fused:
                raise ValueError(f"fused: a compiled epoch cannot record every {record_every} "
                                 f"steps (not a multiple of the {steps_per_epoch} steps per "
                                 "epoch)")
            fused = False
        recorder = _Recorder(model, epochs * steps_per_epoch // record_every + 1, record_to)
    bar = _progress_bar(epochs * steps_per_epoch, progress)
    on_device = model.backend == "cuda"
    if on_device:  # the data go to the device once; batches are gathered there
        X_side, y_side = _memory.from_host(True, X), _memory.from_host(True, y)
    fused_runner = _fused_epochs(model, optimizer, batch_size, fused) if not on_device else None
    if track_sharpness_every is not None:
        from fastopt.dynamics.curvature import SharpnessTracker

        tracker = SharpnessTracker(model, X, y)
    if fused and fused_runner is None:
        raise ValueError("fused: the 'cuda' backend has no compiled epoch")
    step = 0
    if record_every is not None:
        recorder.record(model, step)
    try:
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else None
            total_loss = total_wrong = 0.0
            start = time.perf_counter()
            if fused_runner is not None:
                rows = np.arange(n) if order is None else order
                losses, wrongs, norms, lrs, *squares = fused_runner.run(
                    X, y, rows, schedule, step, max_grad_norm, track_noise_every is not None)
                sizes = np.minimum(batch_size, n - batch_size * np.arange(len(losses)))
                if squares:
                    from fastopt.dynamics.noise import record_steps

                    record_steps(squares[0], norms, sizes, step, track_noise_every,
                                 history.noise)
                history.step["loss"].extend(losses.tolist())
                history.step["error"].extend((wrongs / sizes).tolist())
                history.step["grad_norm"].extend(norms.tolist())
                history.step["lr"].extend(lrs.tolist())
                total_loss, total_wrong = float(losses @ sizes), float(wrongs.sum())
                step += len(losses)
                if record_every is not None and step % record_every == 0:
                    recorder.record(model, step)
                if bar is not None:
                    bar.update(len(losses))
                    bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
            for first in range(0, n if fused_runner is None else 0, batch_size):
                rows = slice(first, first + batch_size) if order is None else \
                    order[first:first + batch_size]
                if on_device:
                    xb, yb = _gather_device(X_side, y_side, X, y, rows)
                else:
                    xb, yb = X[rows], y[rows]
                if schedule is not None:
                    lr = float(schedule(step))
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                loss, wrong = model._loss_and_grad(xb, yb)
                norm = model.grad_norm()
                if track_noise_every is not None and (step + 1) % track_noise_every == 0:
                    from fastopt.dynamics.noise import record_training_step

                    record_training_step(model, xb, norm, history.noise, step + 1)
                if max_grad_norm is not None and norm > max_grad_norm:
                    model.scale_grads(max_grad_norm / (norm + 1e-6))
                optimizer.step([model.grads])
                rows_in_batch = xb.shape[0]
                history.step["loss"].append(loss)
                history.step["error"].append(wrong / rows_in_batch)
                history.step["grad_norm"].append(norm)
                history.step["lr"].append(float(optimizer.param_groups[0]["lr"]))
                total_loss += loss * rows_in_batch
                total_wrong += wrong
                step += 1
                if track_sharpness_every is not None and step % track_sharpness_every == 0:
                    tracker.record(history.sharpness, step)
                if record_every is not None and step % record_every == 0:
                    recorder.record(model, step)
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step == epochs * steps_per_epoch:
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.4f}")
            _end_epoch(model, history, total_loss / n, total_wrong / n,
                       time.perf_counter() - start,
                       (X_eval, y_eval) if eval_data is not None else None)
            if callback is not None:
                callback(epoch, history)
    finally:
        if bar is not None:
            bar.close()
        if record_every is not None:
            history.iterates, history.iterate_steps = recorder.close()
    return history


class _Recorder:
    """Rows of parameter vectors written as training goes: into a ``.npy`` memory map at
    ``path`` (flushed and reopened read-only at the end), or an array."""

    def __init__(self, model, rows, path):
        shape = (rows, model.num_params)
        self.path = path
        if path is None:
            self.rows = np.empty(shape, model.dtype)
        else:
            self.rows = np.lib.format.open_memmap(path, mode="w+", dtype=model.dtype, shape=shape)
        self.steps = np.zeros(rows, np.int64)
        self.count = 0

    def record(self, model, step):
        self.rows[self.count] = model.get_params()
        self.steps[self.count] = step
        self.count += 1

    def close(self):
        if self.path is None:
            return self.rows[:self.count], self.steps[:self.count]
        self.rows.flush()
        del self.rows
        return np.load(self.path, mmap_mode="r")[:self.count], self.steps[:self.count]


def _gather_device(X_side, y_side, X, y, rows):
    if isinstance(rows, slice):
        return X_side[rows], y_side[rows]
    # A shuffled batch is gathered on the host and copied: simple, and small next to the step.
    return _memory.from_host(True, X[rows]), _memory.from_host(True, y[rows])


def _end_epoch(model, history, train_loss, train_error, seconds, eval_data):
    history.epoch["train_loss"].append(train_loss)
    history.epoch["train_error"].append(train_error)
    history.epoch["seconds"].append(seconds)
    if eval_data is not None:
        test_loss, test_error = model.evaluate(*eval_data)
    else:
        test_loss = test_error = float("nan")
    history.epoch["test_loss"].append(test_loss)
    history.epoch["test_error"].append(test_error)


# -------------------------------------------------------------------- the `fastopt train` command

#: Learning rates that train the default digits model well in 20 epochs of batch 32, by
#: command-line name: every optimizer of the table, and ``momentum``/``nesterov`` (SGD with 0.9).
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 1e-3,
              "adam": 3e-3, "adamw": 3e-3, "adamax": 1e-2, "nadam": 3e-3, "radam": 1e-2,
              "adadelta": 3.0, "lion": 1e-3, "lamb": 3e-3, "rprop": 1e-3, "asgd": 0.1}
#: Optimizers meant for full-batch gradients, left out of the minibatch comparison: Rprop's step
#: sizes follow the gradient's sign from one step to the next, which minibatches flip at random.
FULL_BATCH = ("rprop",)


def optimizer_names():
    """The optimizers ``fastopt train`` takes: every one of the table, ``momentum``,
    ``nesterov``."""
    from fastopt.optim.algorithms import ALGORITHMS

    return [*ALGORITHMS, "momentum", "nesterov"]


def optimizer_class(name):
    """The optimizer class of the table's ``name``; ``ValueError`` if it has none yet."""
    from fastopt.optim import optimizers as o

    for cls in vars(o).values():
        if (isinstance(cls, type) and issubclass(cls, o.Optimizer) and cls.algorithm is not None
                and cls.algorithm.name == name):
            return cls
    raise ValueError(f"optimizer: {name} is in the table of optimizers but has no optimizer "
                     "class yet")


def make_optimizer(name, params, lr=None, backend=None):
    """A fastopt optimizer by command-line name (``momentum``/``nesterov``: SGD with 0.9)."""
    lr = DEFAULT_LR.get(name, 1e-3) if lr is None else lr
    if name in ("momentum", "nesterov"):
        return optimizer_class("sgd")(params, lr=lr, momentum=0.9, nesterov=name == "nesterov",
                                      backend=backend)
    return optimizer_class(name)(params, lr=lr, backend=backend)


def add_cli_arguments(parser, types=None):
    """The options of ``fastopt train``; ``types`` maps ``positive_int``, ``batch_size``,
    ``positive_float``, ``widths``, ``data`` and ``save`` to argument types that refuse bad
    values."""
    from fastopt.nn import init
    from fastopt.nn.reference import ACTIVATIONS

    types = types or {}
    plain = types.get
    parser.add_argument("--data", default="digits", type=plain("data", str),
                        help="'digits' (embedded, default) or a directory of MNIST IDX files")
    parser.add_argument("--optimizer", choices=optimizer_names(), default="adam",
                        metavar="NAME", help="one of " + ", ".join(optimizer_names())
                        + " (default adam)")
    parser.add_argument("--lr", type=plain("positive_float", float),
                        help="learning rate (default: one per optimizer that trains the digits)")
    parser.add_argument("--epochs", type=plain("positive_int", int), default=20,
                        help="default 20")
    parser.add_argument("--batch-size", type=plain("batch_size", int), default=32,
                        help="rows per step; 0: full batch (default 32)")
    parser.add_argument("--widths", type=plain("widths", str), default=[64],
                        help="hidden layer widths, comma-separated (default 64)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    parser.add_argument("--init", choices=[*init.INITIALIZERS, *init.ALIASES], default="he",
                        metavar="NAME", help="weight initializer: "
                        + ", ".join([*init.INITIALIZERS, *init.ALIASES]) + " (default he)")
    parser.add_argument("--backend", choices=["cpu", "c", "numpy", "cuda"],
                        help="where the model and its optimizer run (default: the first "
                             "available of cpu, c, numpy)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--max-grad-norm", type=plain("positive_float", float),
                        help="clip the gradient norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", type=plain("save", str),
                        help="save the trained model (.npz)")
    parser.add_argument("--plot", metavar="PATH", type=plain("save", str),
                        help="save a plot of the loss, error and gradient norm against steps "
                             "(.png; needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def prepare_cli(args):
    """``(data, model, optimizer)`` of ``fastopt train``'s arguments; raises ``ValueError``,
    ``OSError`` or :class:`fastopt.BackendUnavailableError` saying what is wrong."""
    from fastopt.nn.datasets import load
    from fastopt.nn.mlp import MLP

    if getattr(args, "plot", None):
        from fastopt.dynamics.plots import pyplot

        try:
            pyplot()
        except ImportError as exc:
            raise ValueError(f"--plot: {exc}") from None
    data = load(args.data)
    widths = args.widths
    if isinstance(widths, str):
        widths = [int(w) for w in widths.split(",") if w.strip()]
    model = MLP([data.n_features, *widths, data.classes], activation=args.activation,
                init=args.init, dtype=args.dtype, backend=args.backend, seed=args.seed)
    return data, model, make_optimizer(args.optimizer, [model.params], args.lr, model.backend)


def run_cli(args, data=None, model=None, optimizer=None):
    """Runs ``fastopt train``: prints a per-epoch table, ends with the test accuracy."""
    if model is None:
        data, model, optimizer = prepare_cli(args)
    print(f"\n{data}\n{model}\n{optimizer}\n")
    header = (f"{'epoch':>5} {'train loss':>11} {'train err':>10} {'test loss':>10} "
              f"{'test acc':>9} {'|grad|':>9} {'seconds':>8}")
    print(header)
    print("-" * len(header))

    def report(epoch, history):
        e, s = history.epoch, history.step
        steps = len(s["grad_norm"]) // (epoch + 1)
        norm = float(np.mean(s["grad_norm"][-steps:]))
        print(f"{epoch + 1:>5} {e['train_loss'][-1]:>11.4f} {e['train_error'][-1]:>10.4f} "
              f"{e['test_loss'][-1]:>10.4f} {1 - e['test_error'][-1]:>9.2%} {norm:>9.3g} "
              f"{e['seconds'][-1]:>8.3f}", flush=True)

    history = train(model, optimizer, data.X_train, data.y_train, epochs=args.epochs,
                    batch_size=args.batch_size or None, max_grad_norm=args.max_grad_norm,
                    eval_data=(data.X_test, data.y_test), seed=args.seed,
                    progress=False if args.no_progress else None, callback=report)
    accuracy = 1 - history.epoch["test_error"][-1]
    print(f"\ntest accuracy: {accuracy:.2%} ({len(data.y_test)} test rows, "
          f"{sum(history.epoch['seconds']):.2f} s of training)")
    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}")
    if getattr(args, "plot", None):
        from fastopt.dynamics.plots import training_history

        training_history(history, args.plot, title=f"{args.optimizer}, {model}")
        print(f"plot saved to {args.plot}")
    return 0


def digits_backends():
    """The host backends of the main job's digits table: the compiled ones, else ``numpy``."""
    from fastopt._core.dispatch import available_backends

    host = [b for b in available_backends() if b != "cuda"]
    return [b for b in host if b != "numpy"] or host


def trainable_optimizers():
    """The names of :data:`DEFAULT_LR` whose optimizer class exists, in its order."""
    out = []
    for name in DEFAULT_LR:
        try:
            optimizer_class("sgd" if name in ("momentum", "nesterov") else name)
        except ValueError:
            continue
        out.append(name)
    return out


def compare_optimizers(epochs=20, batch_size=32, backends=None, seed=0):
    """Trains the default digits model (64-64-10, relu, He) with every optimizer of
    :data:`DEFAULT_LR` that has a class (but :data:`FULL_BATCH`), on each host backend (default
    :func:`digits_backends`); rows of (optimizer, backend, learning rate, final train loss,
    test accuracy, steps per second). The main job prints them."""
    from fastopt.nn.datasets import load_digits
    from fastopt.nn.mlp import MLP

    data = load_digits()
    names = [name for name in trainable_optimizers() if name not in FULL_BATCH]
    rows = []
    for backend in backends or digits_backends():
        warm = MLP([data.n_features, 64, data.classes], seed=seed, backend=backend)
        for name in names:  # compile outside the timed runs (the evaluation of the whole
            # test set is large enough for the parallel forward kernels: compile those too)
            train(warm, make_optimizer(name, [warm.params], backend=backend), data.X_train[:64],
                  data.y_train[:64], epochs=1, batch_size=batch_size,
                  eval_data=(data.X_test, data.y_test), progress=False)
        for name in names:
            model = MLP([data.n_features, 64, data.classes], seed=seed, backend=backend)
            optimizer = make_optimizer(name, [model.params], backend=backend)
            start = time.perf_counter()
            history = train(model, optimizer, data.X_train, data.y_train, epochs=epochs,
                            batch_size=batch_size, eval_data=(data.X_test, data.y_test),
                            seed=seed, progress=False)
            seconds = time.perf_counter() - start
            steps = len(history.step["loss"])
            rows.append((name, backend, optimizer.param_groups[0]["lr"],
                         history.epoch["train_loss"][-1], 1 - history.epoch["test_error"][-1],
                         steps / seconds))
    return rows
