"""fastopt.train, the datasets (embedded digits, IDX files) and the `fastopt train` command."""

import gzip

import numpy as np
import pytest

import fastopt
from fastopt import datasets
from fastopt.cli import main as cli_main
from fastopt.nn.mlp import MLP
from fastopt.nn.train import train
from test_mlp_backends import HOST_BACKENDS


@pytest.fixture(scope="module")
def digits():
    return datasets.load_digits()


# ------------------------------------------------------------------------------------ datasets

def test_digits_are_embedded_and_split_reproducibly(digits):
    assert digits.X_train.shape == (1438, 64) and digits.X_test.shape == (359, 64)
    assert digits.X_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert 0 <= digits.X_train.min() and digits.X_train.max() <= 1
    assert digits.classes == 10
    counts = np.bincount(digits.y_test)
    assert counts.min() >= 34 and counts.max() <= 37  # stratified: 20% of 174..183 per class
    again = datasets.load_digits()
    np.testing.assert_array_equal(again.X_train, digits.X_train)
    other = datasets.load_digits(seed=1)
    assert not np.array_equal(other.y_train, digits.y_train)
    assert len(digits.y_train) + len(digits.y_test) == 1797


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
def test_idx_round_trip(tmp_path, dtype, gz):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5)
    a = (a % 256 if dtype == np.uint8 else a).astype(dtype)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    datasets.save_idx(path, a)
    b = datasets.load_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_idx_errors(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.load_idx(path)
    path.write_bytes(bytes([0, 0, 8, 1]) + np.array([5], ">u4").tobytes() + b"\x00\x01")
    with pytest.raises(ValueError, match="announces shape"):
        datasets.load_idx(path)


def write_tiny_mnist(directory, gz):
    rng = np.random.default_rng(0)
    for part, rows in [("train", 60), ("t10k", 20)]:
        images = rng.integers(0, 256, (rows, 4, 4), dtype=np.uint8)
        labels = rng.integers(0, 10, rows).astype(np.uint8)
        suffix = ".gz" if gz else ""
        datasets.save_idx(directory / f"{part}-images-idx3-ubyte{suffix}", images)
        datasets.save_idx(directory / f"{part}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_mnist_from_a_directory(tmp_path, gz):
    images, labels = write_tiny_mnist(tmp_path, gz)
    if gz:
        with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz") as f:
            assert f.read(4) == bytes([0, 0, 8, 1])
    data = datasets.load(str(tmp_path))
    assert data.X_train.shape == (60, 16) and data.X_test.shape == (20, 16)
    np.testing.assert_allclose(data.X_test, images.reshape(20, 16) / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, labels)
    with pytest.raises(FileNotFoundError, match="train-images"):
        datasets.load_mnist(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------- train

def test_history_records_every_step_and_epoch(digits):
    model = MLP([64, 16, 10], backend="numpy", seed=0)
    opt = fastopt.SGD([model.params], lr=0.1, momentum=0.9)
    seen = []
    history = train(model, opt, digits.X_train[:100], digits.y_train[:100], epochs=3,
                    batch_size=32, eval_data=(digits.X_test, digits.y_test), progress=False,
                    callback=lambda epoch, h: seen.append(epoch))
    assert seen == [0, 1, 2]
    assert all(len(v) == 3 * 4 for v in history.step.values())  # 100 rows: 32+32+32+4
    assert all(len(v) == 3 for v in history.epoch.values())
    arrays = history.as_arrays()
    norms = arrays["step"]["grad_norm"]
    assert np.isfinite(norms).all() and (norms > 0).all()
    assert 0 <= arrays["epoch"]["test_error"].min() <= 1
    assert arrays["epoch"]["train_loss"][-1] < arrays["epoch"]["train_loss"][0]


def test_reshuffling_is_reproducible_and_changes_the_order(digits):
    def run(seed, shuffle=True):
        model = MLP([64, 8, 10], backend="numpy", seed=0)
        opt = fastopt.SGD([model.params], lr=0.05)
        return train(model, opt, digits.X_train[:64], digits.y_train[:64], epochs=2,
                     batch_size=16, shuffle=shuffle, seed=seed, progress=False).step["loss"]

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert run(1, shuffle=False) == run(2, shuffle=False)


def test_full_batch_gradient_descent(digits):
    model = MLP([64, 8, 10], backend="numpy", seed=0)
    opt = fastopt.SGD([model.params], lr=0.5)
    history = train(model, opt, digits.X_train, digits.y_train, epochs=5, batch_size=None,
                    progress=False)
    assert len(history.step["loss"]) == 5
    loss, _ = model.evaluate(digits.X_train, digits.y_train)
    assert loss < history.step["loss"][0]


def test_schedule_and_gradient_clipping(digits):
    model = MLP([64, 8, 10], backend="numpy", seed=0)
    opt = fastopt.SGD([model.params], lr=1.0)
    before = model.get_params()
    history = train(model, opt, digits.X_train[:32], digits.y_train[:32], epochs=1,
                    batch_size=32, schedule=lambda step: 0.1 * (step + 1), max_grad_norm=1e-3,
                    progress=False)
    assert history.step["lr"] == [pytest.approx(0.1)]
    assert history.step["grad_norm"][0] > 1e-3  # recorded before clipping
    moved = np.linalg.norm(model.get_params().astype(np.float64) - before)
    assert moved == pytest.approx(0.1 * 1e-3, rel=1e-3)  # SGD moved lr * clipped norm


def test_train_rejects_bad_arguments(digits):
    model = MLP([64, 8, 10], backend="numpy", seed=0)
    X, y = digits.X_train[:10], digits.y_train[:10]
    with pytest.raises(ValueError, match="optimizer: expected an optimizer over exactly"):
        train(model, fastopt.SGD([np.zeros(3, np.float32)], lr=0.1), X, y)
    opt = fastopt.SGD([model.params], lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        train(model, opt, X, y, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, opt, X, y, batch_size=0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        train(model, opt, X, y, max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="X: expected 64 features"):
        train(model, opt, X[:, :10], y)
    with pytest.raises(ValueError, match="eval_data\\[1\\]: labels must lie"):
        train(model, opt, X, y, eval_data=(X, y + 10))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_digits_reach_95_percent_with_adam(digits, backend):
    """The default digits model (64-64-10, relu, He init) with Adam, 20 epochs of batch 32."""
    model = MLP([64, 64, 10], backend=backend, seed=0)
    opt = fastopt.Adam([model.params], lr=3e-3, backend=backend)
    history = train(model, opt, digits.X_train, digits.y_train, epochs=20, batch_size=32,
                    eval_data=(digits.X_test, digits.y_test), progress=False)
    accuracy = 1 - history.epoch["test_error"][-1]
    assert accuracy >= 0.95, f"{backend}: test accuracy {accuracy:.2%}"


def test_cli_train_prints_a_table_and_the_test_accuracy(capsys):
    status = cli_main(["train", "--backend", "numpy", "--epochs", "3", "--widths", "32",
                       "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    assert "train loss" in out and "test acc" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("1 ", "2 ", "3 "))]
    assert len(rows) == 3
    assert "test accuracy:" in out


def test_cli_train_on_idx_files(tmp_path, capsys):
    write_tiny_mnist(tmp_path, gz=True)
    status = cli_main(["train", "--data", str(tmp_path), "--backend", "numpy", "--epochs", "1",
                       "--optimizer", "momentum", "--batch-size", "0", "--no-progress"])
    assert status == 0 and "test accuracy:" in capsys.readouterr().out


# ------------------------------------------------------------------------- the fused epoch

#: (optimizer class, options): every class, and the modes of each kernel (flags, decay kinds).
FUSED_OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, maximize=True)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=1e-3, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=1e-3, centered=True, momentum=0.5)),
    ("RMSprop", dict(lr=1e-3, weight_decay=1e-2)),
    ("Adam", dict(lr=3e-3, weight_decay=1e-3)),
    ("Adam", dict(lr=3e-3, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=3e-3, weight_decay=0.1)),
    ("Adamax", dict(lr=2e-3, weight_decay=1e-3)),
    ("NAdam", dict(lr=2e-3)),
    ("NAdam", dict(lr=2e-3, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=1e-3, weight_decay=1e-3)),  # 10 steps: unrectified, then rectified
    ("RAdam", dict(lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True)),
    ("Adadelta", dict(weight_decay=1e-3)),
    ("Lion", dict(lr=1e-3, weight_decay=0.1)),
    ("LAMB", dict(lr=1e-2, weight_decay=1e-2)),
    ("Rprop", dict(lr=1e-3)),
    ("ASGD", dict(lr=1e-2, weight_decay=1e-3, t0=4)),  # averaging from step 5 on
]
FUSED_IDS = [f"{n}-{','.join(o)}" for n, o in FUSED_OPTIMIZERS]

FUSED_BACKENDS = [b for b in HOST_BACKENDS if b in ("cpu", "c")]


def test_the_epoch_numbers_the_optimizers_as_the_c_library():
    """Every optimizer kernel of the table has a compiled epoch, numbered as C's table does."""
    from fastopt.nn.reference import EPOCH_OPTIMIZERS
    from fastopt.optim.algorithms import ALGORITHMS

    assert set(EPOCH_OPTIMIZERS) == {a.kernel for a in ALGORITHMS.values()}
    if "c" in HOST_BACKENDS:
        from fastopt.backends.c import mlp

        assert mlp.EPOCH_OPTIMIZERS == EPOCH_OPTIMIZERS


def train_both_ways(backend, name, options, dtype, loss="cross_entropy", X=None, y=None,
                    activation=None, **kwargs):
    """``{fused: (history, params, state_dict)}`` of the same training per step and fused. The
    optimizer runs on its default backend (``cpu``): on ``c`` the per-step path then updates with
    numba kernels and the fused epoch with C ones, which agree bit for bit, except LAMB's
    reduction (created on the model's backend, as the fused path requires)."""
    from fastopt.optim import optimizers

    results = {}
    for fused in (False, True):
        model = MLP([X.shape[1], 12, 7, 10], dtype=dtype, backend=backend, seed=1, loss=loss,
                    activation=activation or ("gelu" if name == "Adam" else "tanh"))
        opt = getattr(optimizers, name)([model.params], **options,
                                        backend=backend if name == "LAMB" else None)
        base = opt.param_groups[0]["lr"]
        history = train(model, opt, X, y, epochs=2, batch_size=48, fused=fused,
                        schedule=lambda step: base / (1 + 0.1 * step), max_grad_norm=0.5,
                        progress=False, **kwargs)
        results[fused] = history, model.get_params(), opt.state_dict()
    return results


def assert_same_training(results):
    """Histories, parameters and optimizer state bit for bit equal."""
    (h0, p0, s0), (h1, p1, s1) = results[False], results[True]
    for key in h0.step:
        np.testing.assert_array_equal(h1.step[key], h0.step[key], err_msg=key)
    np.testing.assert_array_equal(h1.epoch["train_loss"], h0.epoch["train_loss"])
    np.testing.assert_array_equal(p1, p0)
    assert s1["state"].keys() == s0["state"].keys()
    for index, state in s0["state"].items():
        assert s1["state"][index].keys() == state.keys()
        for key, value in state.items():
            np.testing.assert_array_equal(s1["state"][index][key], value, err_msg=key)


#: float64 for a plain, a stateful and a two-pass optimizer only: each optimizer's float64 kernel
#: is tested against the reference elsewhere, and a fused epoch compiles per optimizer and dtype.
FUSED_DTYPE_CASES = [pytest.param(name, options, np.float32, id=f"{i}-f32")
                     for (name, options), i in zip(FUSED_OPTIMIZERS, FUSED_IDS)] + \
                    [pytest.param(name, options, np.float64, id=f"{i}-f64")
                     for (name, options), i in zip(FUSED_OPTIMIZERS, FUSED_IDS)
                     if i in ("SGD-lr", "Adam-lr,weight_decay", "LAMB-lr,weight_decay")]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("name,options,dtype", FUSED_DTYPE_CASES)
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fused_epoch_is_bit_identical_to_per_step_training(digits, backend, name, options, dtype,
                                                           loss):
    """The compiled epoch runs the same batches through the same layer kernels and the
    optimizer's own update kernel with the scalars Optimizer.step computes: every optimizer,
    either loss, with a schedule and clipping, gives the per-step results bit for bit."""
    results = train_both_ways(backend, name, options, dtype, loss, digits.X_train[:200],
                              digits.y_train[:200], seed=4)
    assert results[True][2]["state"][0]["step"] == 2 * 5
    assert_same_training(results)


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fused_epoch_with_mse_on_float_targets(digits, backend):
    X = digits.X_train[:150]
    targets = np.random.default_rng(0).standard_normal((150, 10)).astype(np.float32)
    assert_same_training(train_both_ways(backend, "Adam", dict(lr=1e-3), np.float32, "mse", X,
                                         targets, seed=2))


@pytest.mark.parametrize("name,options", [("Adam", dict(lr=1e-3)), ("LAMB", dict(lr=1e-3))])
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fused_epoch_with_parallel_kernels(backend, name, options):
    """A first layer of 80 x 300 x 110 = 2.6M multiply-adds and 34,220 parameters take the
    parallel layer and optimizer kernels, in the compiled epoch too: still bit for bit the
    per-step training (an elementwise optimizer, and LAMB's passes of their own)."""
    from fastopt.optim import optimizers

    rng = np.random.default_rng(5)
    X = rng.standard_normal((240, 300)).astype(np.float32)
    y = rng.integers(0, 10, 240)
    results = {}
    for fused in (False, True):
        model = MLP([300, 110, 10], backend=backend, seed=3)
        opt = getattr(optimizers, name)([model.params], **options, backend=backend)
        history = train(model, opt, X, y, epochs=2, batch_size=80, fused=fused, progress=False)
        results[fused] = history, model.get_params(), opt.state_dict()
    assert_same_training(results)


@pytest.mark.parametrize("huge_rows", [[0], [60, 150]], ids=["first-step", "later-steps"])
@pytest.mark.parametrize("name,options", [("SGD", dict(lr=0.05, momentum=0.9)),
                                          ("NAdam", dict(lr=2e-3)), ("Adam", dict(lr=3e-3))])
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fused_epoch_skips_nonfinite_steps_as_the_optimizer_does(digits, backend, name, options,
                                                                 huge_rows):
    """A batch holding a huge row overflows to a non-finite gradient: the optimizer skips that
    step (no update, no step count, a fresh momentum buffer still fresh); the fused epoch ends
    its call there and continues in another, with the same results."""
    X = digits.X_train[:200].copy()
    X[huge_rows] = 3e38  # finite float32; relu(x @ w) overflows to inf, the logits to nan
    results = train_both_ways(backend, name, options, np.float32, "cross_entropy", X,
                              digits.y_train[:200], activation="relu", shuffle=False)
    norms = np.array(results[False][0].step["grad_norm"])
    skipped = int((~np.isfinite(norms)).sum())
    assert skipped == 2 * len(huge_rows)
    assert results[True][2]["state"][0]["step"] == 2 * 5 - skipped
    assert_same_training(results)


def test_fused_epoch_is_chosen_only_where_it_can_run(digits):
    from fastopt.nn.train import _fused_epochs

    X, y = digits.X_train[:64], digits.y_train[:64]
    model = MLP([64, 8, 10], backend="numpy", seed=0)
    opt = fastopt.Adam([model.params], lr=1e-3)
    with pytest.raises(ValueError, match="fused: cannot run whole epochs in one call"):
        train(model, opt, X, y, epochs=1, fused=True)
    for backend in FUSED_BACKENDS:
        model = MLP([64, 8, 10], backend=backend, seed=0, loss="mse")
        assert _fused_epochs(model, fastopt.Lion([model.params]), 32, None) is not None
        assert _fused_epochs(model, fastopt.Lion([model.params]), 32, False) is None
    if "c" in FUSED_BACKENDS and "cpu" in FUSED_BACKENDS:
        model = MLP([64, 8, 10], backend="c", seed=0)
        lamb = fastopt.LAMB([model.params], backend="cpu")
        assert _fused_epochs(model, lamb, 32, None) is None
        with pytest.raises(ValueError, match="LAMB's reduction rounds differently"):
            train(model, lamb, X, y, epochs=1, fused=True)
