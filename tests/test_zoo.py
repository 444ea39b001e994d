"""The optimizer zoo against fastopt.functional steps, bit for bit, and the test functions'
gradients against finite differences."""

import numpy as np
import pytest

import fastopt
from fastopt.dynamics import surfaces, zoo

from conftest import HOST

#: (preset, functional step, its state arrays, the hyperparameters beside lr)
CASES = [
    ("sgd", "sgd", 1, {}),
    ("nesterov", "sgd", 1, {"momentum": 0.9, "nesterov": True}),
    ("adam", "adam", 3, {}),
    ("nadam", "nadam", 2, {}),
    ("radam", "radam", 2, {}),
    ("asgd", "asgd", 1, {}),
    ("rprop", "rprop", 2, {}),
    ("adagrad", "adagrad", 1, {}),
]
STEPS = 12
STARTS = [(-1.5, 2.5), (0.3, -0.4)]
LRS = [1e-3, 2e-2]


@pytest.fixture(scope="module")
def rosenbrock_runs():
    return zoo.run("rosenbrock", [c[0] for c in CASES], lrs=LRS, starts=STARTS, steps=STEPS)


def _functional_run(function, name, n_states, hyper, lr, start, backend):
    step = getattr(fastopt.functional, name)
    algorithm = fastopt.optim.algorithms.ALGORITHMS[name]
    h = algorithm.check({**algorithm.defaults, **hyper, "lr": lr})
    p = np.array(start, np.float64)
    states = [np.full(2, algorithm.initial_state(h, s)) for s in algorithm.state[:n_states]]
    host = {}
    path, losses = [p.copy()], []
    for t in range(1, STEPS + 1):
        if not np.isfinite(p).all() or np.abs(p).max() > function.bound:
            break  # diverged: the zoo stops here too
        f, gx, gy = function(p[0], p[1])
        losses.append(f)
        out = step(p, np.array([gx, gy]), *states, step=t, lr=lr, backend=backend, **hyper,
                   **host)
        if name == "nadam":
            host = {"mu_product": out}
        elif name == "asgd":
            host = out
        path.append(p.copy())
    else:
        losses.append(function(p[0], p[1])[0])
    return np.array(path), np.array(losses)


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_runs_equal_functional_steps(rosenbrock_runs, case, backend):
    preset, name, n_states, hyper = CASES[case]
    r = rosenbrock_runs
    for i, lr in enumerate(LRS):
        for j, start in enumerate(STARTS):
            path, losses = _functional_run(r.function, name, n_states, hyper, lr, start, backend)
            if r.diverged_at[case, i, j] >= 0:  # equal up to the divergence
                stop = r.diverged_at[case, i, j] + 1
                path, losses = path[:stop], losses[:stop]
            np.testing.assert_array_equal(r.paths[case, i, j, :len(path)], path)
            np.testing.assert_array_equal(r.losses[case, i, j, :len(losses)], losses)


def test_divergence_is_recorded_not_raised():
    # GD on the ravine 0.5 (x^2 + k y^2) converges for lr < 2/L and diverges for lr > 2/L.
    k = 10.0
    r = zoo.run(surfaces.surface("ravine", condition=k), ["sgd"], lrs=[1.9 / k, 2.1 / k],
                starts=[(1.0, 1.0)], steps=400, bound=1e3)
    assert r.diverged_at[0, 0, 0] == -1 and r.final_loss[0, 0, 0] < 1e-10
    assert r.diverged_at[0, 1, 0] > 0 and r.diverged[0, 1, 0]
    assert np.isnan(r.paths[0, 1, 0, -1]).all() and r.final_loss[0, 1, 0] == np.inf
    # the y coordinate is multiplied by (1 - lr k) each step, exactly as GD on a quadratic does
    y = r.paths[0, 0, 0, :5, 1]
    np.testing.assert_allclose(y[1:] / y[:-1], 1 - 1.9, rtol=1e-12)


@pytest.mark.parametrize("name", surfaces.NAMES)
def test_gradients_and_minima(name):
    s = surfaces.surface(name)
    rng = np.random.default_rng(0)
    x0, x1, y0, y1 = s.domain
    h = 1e-6
    for x, y in zip(rng.uniform(x0, x1, 5), rng.uniform(y0, y1, 5)):
        f, gx, gy = s(x, y)
        fx = (s(x + h, y)[0] - s(x - h, y)[0]) / (2 * h)
        fy = (s(x, y + h)[0] - s(x, y - h)[0]) / (2 * h)
        scale = 1 + abs(f)
        assert abs(fx - gx) < 1e-5 * scale and abs(fy - gy) < 1e-5 * scale, (x, y)
    for m in s.minima:
        f, gx, gy = s(*m)
        assert abs(f - s.minimum) < 1e-9 and np.hypot(gx, gy) < 1e-4, m


def test_steps_to_tolerance_and_bad_input():
    r = zoo.run("booth", ["adam", ("sgd", {"momentum": 0.5})], lrs=[0.05], steps=300)
    steps = r.steps_to(1e-6)
    assert steps.shape == (2, 1, len(r.starts))
    hit = steps[steps >= 0]
    assert hit.size and (r.losses[..., :][steps >= 0][np.arange(hit.size), hit] <= 1e-6).all()
    with pytest.raises(ValueError, match="optimizers\\[0\\]"):
        zoo.run("booth", ["nope"], lrs=[0.1])
    with pytest.raises(ValueError, match="lrs"):
        zoo.run("booth", ["sgd"], lrs=[-1.0])
    with pytest.raises(ValueError, match="starts"):
        zoo.run("booth", ["sgd"], lrs=[0.1], starts=[(1, 2, 3)])
    with pytest.raises(ValueError, match="momentum"):
        zoo.run("booth", [("sgd", {"momentum": -1.0})], lrs=[0.1])
    with pytest.raises(ValueError, match="function"):
        zoo.run("nope", ["sgd"])


def test_plots_write_pngs(rosenbrock_runs, tmp_path):
    pytest.importorskip("matplotlib")
    from fastopt.dynamics import plots

    plots.zoo_trajectories(rosenbrock_runs, 1, tmp_path / "paths.png")
    plots.zoo_loss_map(rosenbrock_runs, tmp_path / "map.png")
    plots.zoo_loss_map(rosenbrock_runs, tmp_path / "steps.png", tolerance=1.0)
    for name in ("paths.png", "map.png", "steps.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_animation_writes_a_gif(rosenbrock_runs, tmp_path):
    pytest.importorskip("matplotlib")
    image = pytest.importorskip("PIL.Image")
    from fastopt.dynamics import plots

    path = plots.zoo_animation(rosenbrock_runs, tmp_path / "paths.gif", frames=5)
    with image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5
    with pytest.raises(ValueError, match="frames"):
        plots.zoo_animation(rosenbrock_runs, tmp_path / "none.gif", frames=0)


def test_dynamics_zoo_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from fastopt.cli import main

    out = tmp_path / "zoo"
    assert main(["dynamics", "zoo", "--function", "rosenbrock", "--optimizers", "sgd,adam",
                 "--lrs", "3", "--steps", "20", "--gif-frames", "3", "--out", str(out)]) == 0
    with np.load(out / "zoo_rosenbrock.npz") as f:
        assert f["paths"].shape == (2, 3, 4, 21, 2) and list(f["optimizers"]) == ["sgd", "adam"]
    assert (out / "zoo_rosenbrock_paths.png").exists()
    assert (out / "zoo_rosenbrock_loss_map.png").exists()
    assert (out / "zoo_rosenbrock_paths.gif").read_bytes()[:4] == b"GIF8"
    for bad in (["--optimizers", "sgd,nope"], ["--lr-range", "1,0.1"], ["--function", "x"],
                ["--gif-frames", "-1"]):
        with pytest.raises(SystemExit) as exit:
            main(["dynamics", "zoo", "--out", str(out), *bad])
        assert exit.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_parallel_runs_equal_serial_runs():
    lrs = np.geomspace(1e-3, 0.3, 40)  # 80 runs: the parallel kernel where numba has one
    starts = [(-8.0, -8.0), (6.0, 8.0)]
    many = zoo.run("booth", ["sgd"], lrs=lrs, starts=starts, steps=30)
    for i in (0, 17, 39):
        one = zoo.run("booth", ["sgd"], lrs=lrs[i:i + 1], starts=starts, steps=30)
        np.testing.assert_array_equal(many.paths[:, i], one.paths[:, 0])
        np.testing.assert_array_equal(many.diverged_at[:, i], one.diverged_at[:, 0])
