"""fastopt.train, the datasets (embedded digits, IDX files) and the `fastopt train` command."""

import gzip

import numpy as np
import pytest

import fastopt
from fastopt import datasets
from fastopt.cli import main as cli_main
from fastopt.mlp import MLP
from fastopt.train import train
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

FUSED_OPTIMIZERS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=False)),
    ("adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=1e-3)),
    ("rmsprop", dict(lr=1e-3, centered=True, momentum=0.5)),
    ("adam", dict(lr=3e-3, weight_decay=1e-3)),
    ("adam", dict(lr=3e-3, amsgrad=True)),
    ("adamw", dict(lr=3e-3, weight_decay=0.1)),
]


FUSED_BACKENDS = [b for b in HOST_BACKENDS if b in ("cpu", "c")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,options", FUSED_OPTIMIZERS,
                         ids=[f"{n}-{','.join(o)}" for n, o in FUSED_OPTIMIZERS])
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fused_epoch_matches_per_step_training(digits, backend, name, options, dtype):
    """The compiled epoch runs the same batches through the same kernels and the optimizer's
    update (fastopt.reference's formulas): histories, parameters and optimizer state agree with
    per-step training to rounding (rtol 1e-5 in float32: the optimizer kernels may fuse
    multiply-adds differently; float64 1e-12)."""
    from fastopt import optimizers

    cls = {"sgd": optimizers.SGD, "adagrad": optimizers.Adagrad, "rmsprop": optimizers.RMSprop,
           "adam": optimizers.Adam, "adamw": optimizers.AdamW}[name]
    X, y = digits.X_train[:200], digits.y_train[:200]
    results = {}
    for fused in (False, True):
        model = MLP([64, 12, 7, 10], activation="gelu" if name == "adam" else "tanh",
                    dtype=dtype, backend=backend, seed=1)
        opt = cls([model.params], **options)
        history = train(model, opt, X, y, epochs=2, batch_size=48, fused=fused, seed=4,
                        schedule=lambda step: options["lr"] / (1 + 0.1 * step),
                        max_grad_norm=0.5, progress=False)
        results[fused] = history, model.get_params(), opt.state_dict()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    (h0, p0, s0), (h1, p1, s1) = results[False], results[True]
    for key in ("loss", "error", "grad_norm", "lr"):
        np.testing.assert_allclose(h1.step[key], h0.step[key], rtol=rtol * 10, err_msg=key)
    np.testing.assert_allclose(p1, p0, rtol=rtol * 100, atol=rtol)
    assert s1["state"][0]["step"] == s0["state"][0]["step"] == 2 * 5
    for key, value in s0["state"][0].items():
        if key != "step":
            np.testing.assert_allclose(s1["state"][0][key], value, rtol=rtol * 100, atol=rtol,
                                       err_msg=key)


def test_fused_epoch_is_chosen_only_where_it_can_run(digits):
    X, y = digits.X_train[:64], digits.y_train[:64]
    model = MLP([64, 8, 10], backend="numpy", seed=0)
    opt = fastopt.Adam([model.params], lr=1e-3)
    with pytest.raises(ValueError, match="fused: cannot run whole epochs in one call"):
        train(model, opt, X, y, epochs=1, fused=True)
    model = MLP([64, 8, 10], backend="cpu", seed=0, loss="mse")
    with pytest.raises(ValueError, match="only the cross-entropy loss"):
        train(model, fastopt.Adam([model.params]), X, y, epochs=1, fused=True)
