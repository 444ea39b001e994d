"""fastopt.landscape against plain per-point evaluation (``model.params = theta;
model.evaluate(X, y)``) on every backend, and the definitions of the experiments by hand."""

import numpy as np
import pytest

import fastopt
from fastopt import landscape as L
from conftest import AVAILABLE, run_cli

# Batched and per-point sums are grouped differently (X (W + a D) against X W + a X D) and the
# per-point path rounds theta to the dtype first: float32 agrees to ~1e-7 relative here, float64
# to ~1e-15; the bounds leave room for other data.
RTOL = {np.float32: 1e-4, np.float64: 1e-9}


def _data(n=13, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)), rng.integers(0, classes, n)


def _model(backend="numpy", dtype=np.float64, loss="cross_entropy", sizes=(5, 7, 6, 3),
           activation="tanh", seed=1):
    return fastopt.MLP(list(sizes), activation=activation, dtype=dtype, backend=backend,
                       seed=seed, loss=loss)


def _per_point(model, thetas, X, y):
    """``(3, K)``: loss, 0-1 error, and the fraction of rows whose top two outputs tie to within
    rounding (where the two evaluations may pick different argmaxes)."""
    probe = model.copy()
    out = [None] * len(thetas)
    for k, theta in enumerate(thetas):
        probe.params = theta
        top2 = np.sort(probe.forward(X), axis=1)[:, -2:]
        ties = np.count_nonzero(top2[:, 1] - top2[:, 0] <= 1e-5 * (1 + abs(top2[:, 1])))
        out[k] = (*probe.evaluate(X, y), ties / len(X))
    return np.array(out).T


def _close(model, got_loss, got_error, want):
    np.testing.assert_allclose(got_loss, want[0], rtol=RTOL[model.dtype.type])
    assert (np.abs(got_error - want[1]) <= want[2] + 1e-12).all(), (got_error, want)


HOST = [b for b in AVAILABLE if b != "cuda"]


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plane_line_interpolate_equal_per_point(backend, dtype):
    X, y = _data()
    model = _model(backend, dtype)
    center = model.get_params().astype(np.float64)
    d = L.directions(model, seed=3)
    xs, ys = np.array([-1.0, 0.0, 0.7]), np.array([-0.5, 0.5])
    surface = L.plane(model, X, y, d, xs, ys, test=(X[:5], y[:5]))
    thetas = [center + a * d[0] + b * d[1] for a in xs for b in ys]
    want = _per_point(model, thetas, X, y).reshape(3, 3, 2)
    _close(model, surface.loss, surface.error, want)
    want_test = _per_point(model, thetas, X[:5], y[:5]).reshape(3, 3, 2)
    _close(model, surface.test_loss, surface.test_error, want_test)
    assert surface.meta["directions_seed"] == 3 and surface.meta["train_rows"] == 13

    along = L.line(model, X, y, d[1], xs)
    _close(model, along.loss, along.error,
           _per_point(model, [center + a * d[1] for a in xs], X, y))

    end = center + 0.3 * d[0]
    alphas = np.array([-0.5, 0.25, 1.5])
    curve = L.interpolate(model, center, end, X, y, alphas)
    _close(model, curve.loss, curve.error,
           _per_point(model, [center + a * (end - center) for a in alphas], X, y))


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("loss,activation,dtype", [
    *((loss, activation, np.float64) for loss in ("cross_entropy", "mse")
      for activation in ("relu", "gelu", "sigmoid")),
    ("cross_entropy", "relu", np.float32), ("mse", "tanh", np.float32)])
def test_losses_and_activations_equal_per_point(loss, activation, dtype, backend):
    """One hidden layer: on ``cpu`` the fused kernel (fastopt/backends/cpu/landscape.py)."""
    X, y = _data(n=9, seed=2)
    model = _model(backend, dtype, loss=loss, activation=activation, sizes=(5, 4, 3))
    d = L.directions(model, seed=1, count=1, biases="copy")
    xs = np.linspace(-2, 2, 5)
    along = L.line(model, X, y, d, xs)
    center = model.get_params()
    _close(model, along.loss, along.error, _per_point(model, [center + x * d[0] for x in xs],
                                                        X, y))


@pytest.mark.skipif("cuda" not in AVAILABLE, reason="no CUDA device and no simulator "
                    "(set NUMBA_ENABLE_CUDASIM=1)")
def test_cuda_plane_equals_per_point():
    """The first layer's products run on the device kernel (tiny: the simulator is slow)."""
    X, y = _data(n=4)
    model = _model("cuda", sizes=(5, 3, 2))
    y = y % 2
    d = L.directions(model, seed=3)
    surface = L.plane(model, X, y, d, [0.5], [-1.0, 1.0])
    center = model.get_params()
    thetas = [center + 0.5 * d[0] + b * d[1] for b in (-1.0, 1.0)]
    _close(model, surface.loss[0], surface.error[0], _per_point(model, thetas, X, y))


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_scaled_last_layer_equal_per_point(backend, loss):
    X, y = _data()
    model = _model(backend, loss=loss)
    cs = np.array([0.0, 0.5, 1.0, 3.0])
    got = L.scaled_last_layer(model, X, y, cs)
    center = model.get_params()
    start = model.param_arena.offsets[-2]
    thetas = []
    for c in cs:
        theta = center.copy()
        theta[start:] *= c
        thetas.append(theta)
    _close(model, got.loss, got.error, _per_point(model, thetas, X, y))


def test_filter_normalization_by_hand():
    model = _model(sizes=(2, 3, 2))  # W1 (2, 3), b1 (3,), W2 (3, 2), b2 (2,)
    params = np.arange(1.0, model.num_params + 1)
    model.params = params
    raw = np.random.default_rng(7).standard_normal(model.num_params)
    want = raw.copy()
    # Filters are the columns of (in, out) weights: column j of W1 is params[j], params[3 + j].
    for j in range(3):
        idx = [j, 3 + j]
        want[idx] = raw[idx] / np.linalg.norm(raw[idx]) * np.linalg.norm(params[idx])
    want[6:9] = 0.0                                  # b1
    for j in range(2):
        idx = [9 + j, 11 + j, 13 + j]                # column j of W2
        want[idx] = raw[idx] / np.linalg.norm(raw[idx]) * np.linalg.norm(params[idx])
    want[15:17] = 0.0                                # b2
    got = L.directions(model, seed=7, count=1)
    np.testing.assert_allclose(got[0], want, rtol=1e-12)

    copied = L.directions(model, seed=7, count=1, biases="copy")[0]
    np.testing.assert_array_equal(copied[6:9], params[6:9])
    layer = L.directions(model, seed=7, count=1, normalization="layer")[0]
    np.testing.assert_allclose(np.linalg.norm(layer[:6]), np.linalg.norm(params[:6]))
    plain = L.directions(model, seed=7, count=1, normalization=None)[0]
    np.testing.assert_array_equal(plain[:6], raw[:6])

    d1, d2 = L.directions(model, seed=0, orthogonalize=True)
    assert abs(d1 @ d2) < 1e-10 * np.linalg.norm(d1) * np.linalg.norm(d2)


def test_projection_known_trajectories():
    start, end = np.zeros(3), np.array([2.0, 0.0, 0.0])
    straight = np.outer(np.linspace(0, 1, 5), end)
    p = L.project(start, end, straight)
    np.testing.assert_allclose(p.alpha, np.linspace(0, 2, 5))
    np.testing.assert_allclose(p.beta, 0, atol=1e-15)
    detour = np.array([[0, 0, 0], [0, 3, 0], [1, 3, 4], [2, 0, 0]], float)
    p = L.project(start, end, detour)
    np.testing.assert_allclose(p.alpha, [0, 0, 1, 2])
    np.testing.assert_allclose(p.beta, [0, 3, 5, 0])


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_monotone_path(loss):
    X, y = _data(n=20, seed=4)
    model = _model(loss=loss, sizes=(5, 6, 3), activation="relu")
    start = model.get_params()
    end = start + 0.5 * L.directions(model, seed=2, count=1)[0]
    if loss == "cross_entropy":  # a final point better than the start: train a little
        trained = model.copy()
        opt = fastopt.SGD([trained.params], lr=0.5)
        fastopt.train(trained, opt, X, y, epochs=20, batch_size=None, progress=False)
        end = trained.get_params()
    path = L.monotone_path(model, start, end, X, y, alphas=np.linspace(0, 1, 7))
    ok = path.feasible
    assert ok[0] and path.c[0] == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(path.loss[ok], path.target[ok], rtol=1e-9)
    # the loss at c, evaluated per point through the model
    probe = model.copy()
    first = model.param_arena.offsets[-2]
    for k in np.flatnonzero(ok):
        theta = start + path.alphas[k] * (end - start)
        theta[first:] *= path.c[k]
        probe.params = theta
        assert probe.evaluate(X, y)[0] == pytest.approx(path.target[k], rel=1e-9)
    for branch, pick in (("left", np.nanmin), ("right", np.nanmax)):
        side = L.monotone_path(model, start, end, X, y, alphas=path.alphas, branch=branch)
        np.testing.assert_array_equal(side.feasible, path.feasible)
        np.testing.assert_allclose(side.loss[ok], side.target[ok], rtol=1e-9)
        assert pick([side.c[ok], path.c[ok]], axis=0) == pytest.approx(side.c[ok], rel=1e-9)
    if loss == "mse":
        root = L.monotone_path(model, start, end, X, y, alphas=np.linspace(0, 1, 7),
                               method="root")
        assert path.meta["method"] == "closed_form" and root.meta["method"] == "root"
        np.testing.assert_allclose(root.c, path.c, rtol=1e-9)


def test_monotone_path_reports_unreachable_targets():
    X, y = _data(n=10)
    model = _model(loss="mse", sizes=(5, 4, 3))
    start = model.get_params()
    end = start + L.directions(model, seed=0, count=1)[0]
    path = L.monotone_path(model, start, end, X, y, alphas=[0.0, 0.5, 1.0],
                           target=[-1.0, -1.0, -1.0])  # below any squared error
    assert not path.feasible.any() and np.isnan(path.c).all()


def test_torch_module_equals_mlp():
    torch = pytest.importorskip("torch")
    X, y = _data()
    model = _model(sizes=(5, 7, 3), activation="relu")
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(),
                              torch.nn.Linear(7, 3)).double()
    with torch.no_grad():
        for linear, w, b in zip([net[0], net[2]], model.weights, model.biases):
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))
    fm = L.torch_model(net, chunk=4)
    # the same directions, laid out for each model: torch's (out, in) against fastopt's (in, out)
    d_mlp = L.directions(model, seed=5)
    d_torch = L.directions(fm, seed=5)
    assert d_torch.vectors.shape == d_mlp.vectors.shape
    to_torch = np.concatenate(list(_split(model, d_mlp.vectors)), axis=1)
    xs, ys = np.array([-1.0, 0.5]), np.array([0.0, 1.0, 2.0])
    a = L.plane(model, X, y, d_mlp, xs, ys)
    b = L.plane(fm, X, y, to_torch, xs, ys)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-10)
    np.testing.assert_array_equal(b.error, a.error)
    cs = np.array([0.0, 2.0])
    np.testing.assert_allclose(L.scaled_last_layer(fm, X, y, cs).loss,
                               L.scaled_last_layer(model, X, y, cs).loss, rtol=1e-10)


def _split(model, vectors):
    """The rows of ``vectors`` in PyTorch's layout: each weight transposed to ``(out, in)``."""
    arena = model.param_arena
    for o, s in zip(arena.offsets, arena.shapes):
        block = vectors[:, o:o + int(np.prod(s))].reshape((len(vectors),) + tuple(s))
        yield block.transpose(0, 2, 1).reshape(len(vectors), -1) if len(s) == 2 else block


def test_results_save_and_load(tmp_path):
    X, y = _data()
    model = _model()
    surface = L.plane(model, X, y, L.directions(model, seed=0), [0.0, 1.0], [0.0],
                      trajectory=np.stack([model.get_params()] * 2))
    path = surface.save(tmp_path / "plane.npz")
    back = L.PlaneResult.load(path)
    assert back.meta == surface.meta
    for k, v in surface.arrays.items():
        np.testing.assert_array_equal(back.arrays[k], v)
    np.testing.assert_allclose(back.trajectory, 0, atol=1e-12)  # the center's own coordinates
    with pytest.raises(ValueError, match="holds a PlaneResult"):
        L.LineResult.load(path)


def test_bad_input():
    X, y = _data()
    model = _model()
    d = L.directions(model, seed=0)
    with pytest.raises(ValueError, match="direction: expected a vector of"):
        L.line(model, X, y, np.ones(3), [0.0])
    with pytest.raises(ValueError, match="xs: expected a non-empty"):
        L.line(model, X, y, d, [])
    with pytest.raises(ValueError, match="ys: contains NaN"):
        L.plane(model, X, y, d, [0.0], [np.nan])
    bad = model.get_params()
    bad[0] = np.inf
    with pytest.raises(ValueError, match="theta_b: contains NaN"):
        L.interpolate(model, model.get_params(), bad, X, y)
    other = _model(sizes=(5, 4, 3))
    with pytest.raises(ValueError, match="theta_a: expected a vector of"):
        L.interpolate(model, other.get_params(), model.get_params(), X, y)
    with pytest.raises(ValueError, match="X: expected 5 features"):
        L.line(model, X[:, :4], y, d, [0.0])
    with pytest.raises(ValueError, match="normalization"):
        L.directions(model, normalization="filters")
    with pytest.raises(ValueError, match="biases"):
        L.directions(model, biases="keep")
    with pytest.raises(TypeError, match="model: expected a fastopt.MLP"):
        L.line(object(), X, y, d, [0.0])
    broken = model.copy()
    broken.params.fill(np.nan)  # the live view: set_params would refuse it
    with pytest.raises(ValueError, match="model: its parameters contain NaN"):
        L.line(broken, X, y, d, [0.0])
    with pytest.raises(ValueError, match="theta_final: equals theta_init"):
        L.project(np.zeros(2), np.zeros(2), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"thetas: expected a non-empty array"):
        L.project(np.zeros(2), np.ones(2), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="alphas: expected values in"):
        L.monotone_path(model, model.get_params(), model.get_params() + 1, X, y, alphas=[2.0])
    with pytest.raises(ValueError, match="closed_form"):
        L.monotone_path(model, model.get_params(), model.get_params() + 1, X, y,
                        method="closed_form")


# ------------------------------------------------------------------- recording the iterates

@pytest.mark.parametrize("fused", [None, False])
def test_train_records_iterates(tmp_path, fused):
    X, y = _data(n=12)
    model = _model(backend="cpu" if "cpu" in AVAILABLE else "numpy", dtype=np.float32)
    opt = fastopt.SGD([model.params], lr=0.1)
    per_epoch = 3  # 12 rows in batches of 4
    start = model.get_params()
    seen = []
    history = fastopt.train(model, opt, X, y, epochs=2, batch_size=4, shuffle=False,
                            progress=False, fused=fused, record_every=per_epoch,
                            record_to=tmp_path / "it.npy",
                            callback=lambda e, h: seen.append(model.get_params()))
    assert isinstance(history.iterates, np.memmap)
    np.testing.assert_array_equal(history.iterate_steps, [0, 3, 6])
    np.testing.assert_array_equal(history.iterates, np.stack([start, *seen]))
    np.testing.assert_array_equal(np.load(tmp_path / "it.npy"), history.iterates)

    model2 = _model(backend="numpy", dtype=np.float32)
    steps = []
    history2 = fastopt.train(model2, fastopt.SGD([model2.params], lr=0.1), X, y, epochs=1,
                             batch_size=4, shuffle=False, progress=False, record_every=2)
    np.testing.assert_array_equal(history2.iterate_steps, [0, 2])
    assert history2.iterates.shape == (2, model2.num_params)
    with pytest.raises(ValueError, match="record_to: needs record_every"):
        fastopt.train(model2, fastopt.SGD([model2.params], lr=0.1), X, y, record_to="x.npy")
    with pytest.raises(ValueError, match="record_every: expected an integer"):
        fastopt.train(model2, fastopt.SGD([model2.params], lr=0.1), X, y, record_every=0)


# ------------------------------------------------------------- plots and `fastopt landscape`

@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """One small ``fastopt landscape`` run, shared by the tests that read its folder."""
    pytest.importorskip("matplotlib")
    from fastopt import cli

    out = tmp_path_factory.mktemp("report") / "landscape"
    status = cli.main(["landscape", "--out", str(out), "--epochs", "1", "--widths", "8",
                       "--grid", "5", "--points", "7", "--record-every", "9",
                       "--backend", "numpy", "--no-progress", "--formats", "png"])
    assert status == 0
    return out


def test_landscape_command_writes_the_report(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    for stem in ("interpolation", "projection", "plane", "trajectory_plane", "line",
                 "scaled_last_layer", "monotone_path"):
        assert {f"{stem}.npz", f"{stem}.png"} <= names, stem
    assert {"plane_surface.png", "index.html", "iterates.npy"} <= names
    page = (report_dir / "index.html").read_text()
    for name in names:
        if name.endswith(".png"):
            assert f'<img src="{name}"' in page, name
        elif name.endswith(".npz"):
            assert f'href="{name}"' in page, name
    assert "final test accuracy" in page and "evaluation seconds" in page
    iterates = np.load(report_dir / "iterates.npy")
    projection = L.load(report_dir / "projection.npz")
    assert len(projection.alpha) == len(iterates) == 1 + 45 // 9  # 1438 rows / 32 = 45 steps
    assert projection.beta[0] == 0 and projection.beta[-1] == pytest.approx(0, abs=1e-4)
    plane = L.load(report_dir / "plane.npz")
    assert plane.loss.shape == (5, 5) and plane.meta["directions_normalization"] == "filter"
    with open(report_dir / "plane.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_landscape_command_loads_a_model(capsys, tmp_path, report_dir, monkeypatch):
    from fastopt.landscape import report

    written = {}
    monkeypatch.setattr(report, "write_report", lambda out, title, meta, sections, formats: (
        written.update(meta=meta, sections=[s.name for s in sections]) or "index.html"))
    model = fastopt.MLP([64, 8, 10], seed=3, backend="numpy")
    model.save(tmp_path / "m.npz")
    status, out, err = run_cli(capsys, "landscape", "--load", str(tmp_path / "m.npz"),
                                "--iterates", str(report_dir / "iterates.npy"), "--out",
                                str(tmp_path / "r"), "--grid", "3", "--points", "3",
                                "--no-progress", "--formats", "svg", "--backend", "numpy")
    assert status == 0, err
    assert written["sections"] == ["interpolation", "projection", "plane", "trajectory_plane",
                                   "line", "scaled_last_layer", "monotone_path"]
    assert written["meta"]["loaded from"] == str(tmp_path / "m.npz")
    other = fastopt.MLP([64, 5, 10], seed=3, backend="numpy")
    other.save(tmp_path / "other.npz")
    status, _, err = run_cli(capsys, "landscape", "--load", str(tmp_path / "other.npz"),
                              "--iterates", str(report_dir / "iterates.npy"))
    assert status == 2 and "--iterates: expected rows of" in err and "Traceback" not in err
    wrong = fastopt.MLP([3, 5, 10], seed=3, backend="numpy")
    wrong.save(tmp_path / "wrong.npz")
    status, _, err = run_cli(capsys, "landscape", "--load", str(tmp_path / "wrong.npz"))
    assert status == 2 and "does not fit the data" in err


@pytest.mark.parametrize("argv,words", [
    (["landscape", "--grid", "0"], ["--grid"]),
    (["landscape", "--formats", "gif"], ["--formats", "png, svg"]),
    (["landscape", "--load", "/nonexistent.npz"], ["--load", "no such file"]),
    (["landscape", "--iterates", __file__], ["--iterates: goes with --load"]),
])
def test_landscape_command_usage_errors(capsys, argv, words):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and err.startswith("usage: fastopt") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def test_plots_without_matplotlib_say_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = L.project(np.zeros(2), np.ones(2), np.ones((2, 2)))
    with pytest.raises(ImportError, match=r"pip install fastopt\[plot\]"):
        result.plot()


def test_plots_as_svg(tmp_path):
    """Every kind is drawn as PNG by the report above; here the SVG path and the 3-D surface."""
    pytest.importorskip("matplotlib")
    X, y = _data()
    model = _model(sizes=(5, 4, 3))
    start = model.get_params()
    L.project(start, start + 1, np.stack([start, start + 0.5])).plot(tmp_path / "p.svg")
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")
    surface = L.plane(model, X, y, L.directions(model, seed=0), [-1.0, 1.0], [-1.0, 0.0, 1.0])
    surface.plot_surface(tmp_path / "surface.svg")
    assert (tmp_path / "surface.svg").stat().st_size > 1000
    with pytest.raises(ValueError, match="path: expected a .png or .svg"):
        surface.plot(tmp_path / "plane.gif")


def test_report_images_load_in_headless_chromium(report_dir):
    import re
    import shutil
    import subprocess

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless Chromium on PATH (Debian: apt-get install chromium)")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--allow-file-access-from-files", "--virtual-time-budget=10000",
                          "--dump-dom", (report_dir / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    check = re.search(r'id="image-check"[^>]*', dom)
    assert check, dom[-2000:]
    broken = re.search(r'data-broken="(\d+)"', check.group(0))
    images = re.search(r'data-images="(\d+)"', check.group(0))
    assert broken and images, check.group(0)
    assert int(images.group(1)) == 8 and int(broken.group(1)) == 0


def test_bench_section_runs_and_prints_its_ratios():
    """`fastopt bench --sections landscape` at tiny sizes: it runs; the figures are the lead's."""
    from fastopt.bench.landscape import format_landscape, landscape

    backends = ["cpu"] if "cpu" in HOST else HOST[:1]
    rows = landscape(backends, repeat=1, max_s=0.01, grid=3, big_grid=4, loop_points=2,
                     rows=20, iterates=5, line_points=3, cs=3)
    assert [r["case"] for r in rows][-3:] == [
        f"784-128-10: 4x4 plane, {backends[0]}",
        "digits: 3-point interpolation + alpha/beta of 5 iterates",
        "784-128-10: scaled last layer, 3 values of c"]
    assert all(r["seconds"] > 0 for r in rows) and "numpy_loop_s" in rows[0]
    text = format_landscape(rows)
    assert "vs the numpy loop" in text and "target < 10 x" in text
