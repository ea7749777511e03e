"""The noisy quadratic: additive gradient noise (``task.grad_noise``) and the exact expected-loss trajectory
of GD, heavy ball and Nesterov from the second-moment recursion (``theory.expected_suboptimality``); the
measured mean over 64 seeds (one vectorized population) holds the prediction within its 95% interval."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from nesterov_bench import CONF_DIR, THEORY_DIR, theory
from nesterov_bench.config import compose, resolve
from nesterov_bench.members import member_configs
from nesterov_bench.store import run_path
from nesterov_bench.train import run_all

from .conftest import overrides

SEEDS, STEPS, SIGMA = 64, 300, 1.0


def measured(tmp_path, method: str, lr: float, momentum: float, cov: str) -> tuple[np.ndarray, object]:
    over = overrides(tmp_path, "task=quadratic", f"optimizer={method}", f"optimizer.lr={lr}", "task.dim=20",
                     "task.kappa=100", "task.dtype=float64", f"task.grad_noise={SIGMA}",
                     f"task.grad_noise_cov={cov}", f"train.epochs={STEPS}")
    if method != "gd":
        over.append(f"optimizer.momentum={momentum}")
    s = resolve(compose(over))
    cfg = {**s.cfg, "members": {**s.cfg["members"], "seeds": list(range(SEEDS))}}
    records = run_all([resolve(c) for c in member_configs(cfg)], vectorized=True)
    curves = []
    for r in records:
        m = pd.read_parquet(run_path(r["config"]) / "metrics.parquet")
        curves.append(m[m.metric == "suboptimality"].sort_values("step").value.to_numpy())
    return np.stack(curves), s


def predicted(s, method: str, lr: float, momentum: float, cov: str) -> np.ndarray:
    lam, mean0, var0 = _spectrum(s)  # x_0 ~ N(0, I): e_0 = x_0 - x* has mean -x*, variance 1 per direction
    noise_var = SIGMA**2 * (lam if cov == "hessian" else np.ones(len(lam)))
    return theory.expected_suboptimality(method, lam, lr, momentum, STEPS, mean0, var0, noise_var)


def _spectrum(s) -> tuple[np.ndarray, np.ndarray, float]:
    data = s.task.load_data(s.cfg["data"], torch.device("cpu"))
    lam, v = torch.linalg.eigh(data.optimum.hessian.double())
    return lam.numpy(), -(v.T @ data.optimum.x_star.double()).numpy(), 1.0


def within(samples: np.ndarray, value: float) -> bool:
    lo, hi = stats.t.interval(0.95, len(samples) - 1, loc=samples.mean(), scale=stats.sem(samples))
    return lo <= value <= hi


@pytest.mark.parametrize(("method", "lr", "momentum"), [("gd", 0.01, 0.0), ("momentum", 0.002, 0.9),
                                                        ("nesterov", 0.005, 0.9)])
@pytest.mark.parametrize("cov", ["hessian", "identity"])
def test_measured_mean_holds_the_exact_expected_loss(tmp_path, method, lr, momentum, cov):
    curves, s = measured(tmp_path, method, lr, momentum, cov)
    pred = predicted(s, method, lr, momentum, cov)
    assert curves.shape == (SEEDS, STEPS + 1)
    assert within(curves[:, 0], pred[0])  # the start: x_0 ~ N(0, I)
    assert within(curves[:, 20], pred[20])  # the transient
    assert within(curves[:, 200:].mean(axis=1), pred[200:].mean())  # the noise floor, averaged over time
    lam, mean0, var0 = _spectrum(s)
    quiet = theory.expected_suboptimality(method, lam, lr, momentum, STEPS, mean0, var0, np.zeros(len(lam)))
    assert pred[200:].mean() > 5 * quiet[200:].mean()  # the noise sets the floor: without it, a miss


def test_without_noise_the_recursion_is_the_deterministic_rate():
    lam = np.linspace(1, 10, 5)
    f = theory.expected_suboptimality("nesterov", lam, 0.05, 0.5, 200, np.ones(5), 0.0, np.zeros(5))
    rho = theory.rate("nesterov", lam, 0.05, 0.5)
    assert f[-1] / f[-51] == pytest.approx(rho ** 100, rel=0.2)  # f contracts by the rate squared


def test_fastest_under_noise_finds_the_one_step_setting_and_reports_the_unreachable():
    lam = np.array([1.0])
    steps, lr, _ = theory.fastest_under_noise("gd", lam, [(0.5, 0.0), (1.0, 0.0)], 10, 1.0, np.zeros(1),
                                              1e-12)
    assert (steps, lr) == (1.0, 1.0)  # lr = 1/lambda lands on x* in one step
    noisy = theory.fastest_under_noise("gd", lam, [(1.0, 0.0)], 10, 1.0, np.ones(1), 1e-3)
    assert noisy[0] == float("inf")  # the noise floor (0.5 lr^2 sigma^2 = 0.5) lies above the target


def test_the_speedup_vanishes_where_the_table_says():
    from nesterov_bench.analyze.noisy import vanishing
    row = lambda s, gd, n: {"sigma": s, "gd": {"steps": gd}, "nesterov": {"steps": n}}  # noqa: E731
    data = {"settings": {"vanish": 1.1}, "rows": [row(0, 100, 40), row(0.1, 100, 80), row(0.2, 100, 95)]}
    assert vanishing(data) == 0.2
    data["rows"][1] = row(0.1, float("inf"), float("inf"))  # neither reaches the target: no speed-up
    assert vanishing(data) == 0.1


def test_the_table_names_a_point_only_where_one_reaches_the_target():
    """Where no point of a method's space reaches the target, theory.fastest returns its first point (the
    one the runs use); the table says none reaches instead of showing it as the best."""
    from nesterov_bench.analyze.tables import minibatch_table
    pt = lambda steps, lr: {"steps": steps, "lr": lr, "momentum": 0.9}  # noqa: E731
    data = {"settings": {"kappa": 100, "dim": 20, "rows": 200, "target": 1e-6, "max_steps": 3000},
            "rows": [{"batch": b, **{m: pt(s, lr) for m in ("gd", "momentum", "nesterov")}}
                     for b, s, lr in (("full", 50.0, 0.01), (1, math.inf, 1e-5))]}
    full, one = minibatch_table(data).rows
    assert full[1:4] == ["50 (0.01)", "50 (0.01; 0.9)", "50 (0.01; 0.9)"]
    assert one[1:] == ["-- (no point reaches it)"] * 3 + ["--", "--"]


def runs_at_the_recursions_points(experiment: str, level: str, row: dict) -> None:
    """Each method of ``experiment`` at ``level`` (an override) trains at the point ``row`` of the committed
    closed form names, on the float64 quadratic with x* = 0 the recursion assumes."""
    for method in ("gd", "momentum", "nesterov"):
        s = resolve(compose([f"experiment={experiment}", level, f"optimizer={method}"]))
        assert (s.opt.lr, s.opt.momentum) == (row[method]["lr"], row[method]["momentum"])
        assert s.cfg["task"]["optimum"] == "zero" and s.cfg["task"]["dtype"] == "float64"


def test_the_measured_experiment_runs_the_levels_and_points_of_the_closed_form():
    """experiment=noisy_quadratic sweeps conf/analysis.yaml's noise levels, each method at the point the
    recursion chose for that level (the committed results/theory/noisy_quadratic.json)."""
    from omegaconf import OmegaConf

    from nesterov_bench.config import swept_values
    from nesterov_bench.errors import ConfigError

    declared = OmegaConf.load(CONF_DIR / "analysis.yaml").noisy_quadratic.sigmas
    swept = swept_values("task.grad_noise", str(compose(["experiment=noisy_quadratic"]).sweep.noisy_sigmas))
    assert [float(v) for v in swept] == [float(v) for v in declared]
    cached = json.loads((THEORY_DIR / "noisy_quadratic.json").read_text())
    row = cached["rows"][2]
    runs_at_the_recursions_points("noisy_quadratic", f"task.grad_noise={row['sigma']}", row)
    with pytest.raises(ConfigError, match="no row for sigma=0.7"):
        resolve(compose(["experiment=noisy_quadratic", "task.grad_noise=0.7"]))


def test_measured_steps_are_the_mean_curves_first_arrival():
    from nesterov_bench.analyze.noisy import agreement, first_at

    steps = np.array([0, 5, 10, 15])
    curves = np.array([[4.0, 2.0, 1.0, 0.5], [4.0, 1.0, 0.4, 0.1]])  # mean 4, 1.5, 0.7, 0.3
    assert first_at(curves, steps, 1.0) == 10 and first_at(curves, steps, 0.1) == math.inf
    assert first_at(np.array([[4.0, 0.5, np.nan, np.nan], [4.0, 2.0, 0.2, 0.1]]), steps, 0.3) == math.inf
    point = {"steps": 100.0, "lr": 0.1, "momentum": 0.0}
    data = {"rows": [{"sigma": 0.0, **dict.fromkeys(("gd", "momentum", "nesterov"), point)}]}
    seen = {"rows": [{"sigma": 0.0, "gd": {"steps": 90.0, "low": 80.0, "high": 95.0, "every": 5},
                      "momentum": {"steps": 100.0, "low": 90.0, "high": 110.0, "every": 5},
                      "nesterov": {"steps": 60.0, "low": 50.0, "high": 70.0, "every": 5}}]}
    assert agreement(data, seen) == (2, 3)  # 100 within [80, 95] widened by 5; not within [50, 70] + 5


@pytest.mark.parametrize(("method", "lr", "momentum"), [("gd", 0.3, 0.0), ("momentum", 0.2, 0.6),
                                                        ("nesterov", 0.25, 0.7)])
@pytest.mark.parametrize("batch", [1, 2, None])
def test_minibatch_recursion_equals_the_expectation_over_every_batch_sequence(method, lr, momentum, batch):
    """theory.minibatch_losses against the exact expectation: every sequence of batches drawn with
    replacement (n^B per step, equally likely) stepped through torch.optim.SGD, from starting points
    whose mean and covariance are the recursion's (m +- sqrt(d var0) u_j: covariance var0 I), on a least-
    squares problem with residuals at its minimiser (so the noise does not vanish there)."""
    import itertools

    rng = np.random.default_rng(3)
    n, d, steps, var0 = 3, 2, 3, 0.7
    a, y = rng.normal(size=(n, d)), rng.normal(size=n)
    x_star = np.linalg.lstsq(a, y, rcond=None)[0]
    h, mean0 = a.T @ a / n, rng.normal(size=d)
    starts = [x_star + mean0 + sign * math.sqrt(d * var0) * np.eye(d)[j]
              for j in range(d) for sign in (1, -1)]
    draws = [None] if batch is None else list(itertools.product(range(n), repeat=batch))
    expected = np.zeros(steps + 1)
    for x0 in starts:
        for path in itertools.product(draws, repeat=steps):
            x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
            opt = torch.optim.SGD([x], lr=lr, momentum=momentum, nesterov=method == "nesterov")
            losses = []
            for rows in (*path, None):
                e = x.detach().numpy() - x_star
                losses.append(0.5 * e @ h @ e)
                if len(losses) > steps:
                    break
                idx = list(range(n)) if rows is None else list(rows)
                x.grad = torch.tensor(a[idx].T @ (a[idx] @ x.detach().numpy() - y[idx]) / len(idx))
                opt.step()
            expected += np.array(losses) / (len(starts) * len(draws) ** steps)
    gen = theory.minibatch_losses(method, a, a @ x_star - y, [(lr, momentum)], batch, mean0, var0)
    assert np.array([next(gen)[0] for _ in range(steps + 1)]) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("method", "lr", "momentum"), [("nesterov", 0.005, 0.5), ("momentum", 0.012, 0.9)])
def test_minibatch_noise_slows_and_the_full_batch_is_the_deterministic_rate(method, lr, momentum):
    """Over 600 steps near the stability limit (lr L = 3 for heavy ball: the rounding of the moments'
    recursion must not grow), the full batch is the noise-free recursion, and small batches only slow it."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 4)) * np.array([1.0, 3.0, 6.0, 10.0])
    lam = np.linalg.eigvalsh(a.T @ a / 40)
    lr = lr * 250 / lam.max()  # lr L = 1.25 (Nesterov), 3 (heavy ball)
    full = theory.minibatch_losses(method, a, np.zeros(40), [(lr, momentum)], None, np.zeros(4), 1.0)
    small = theory.minibatch_losses(method, a, np.zeros(40), [(lr / 10, momentum)], 4, np.zeros(4), 1.0)
    f, s = (np.array([next(g)[0] for _ in range(601)]) for g in (full, small))
    quiet = theory.expected_suboptimality(method, lam, lr, momentum, 600, np.zeros(4), 1.0, np.zeros(4))
    assert f == pytest.approx(quiet, rel=1e-6, abs=1e-300)  # the full batch: the noise-free recursion
    assert f[-1] < 1e-6 * f[0]
    slow = theory.expected_suboptimality(method, lam, lr / 10, momentum, 600, np.zeros(4), 1.0, np.zeros(4))
    assert np.all(s[1:] > slow[1:])  # batch noise (interpolating: r = 0) only slows it
    assert s[-1] < 1e-3 * s[0]  # ... and still converges: at r = 0 the noise vanishes at x*


def test_the_minibatch_experiment_runs_the_batches_and_points_of_the_closed_form():
    """experiment=minibatch_quadratic sweeps conf/analysis.yaml's batch sizes on its problem, each method at
    the point the recursion chose for that batch (the committed results/theory/minibatch_quadratic.json),
    batches drawn with replacement and every run evaluated at the same steps."""
    from omegaconf import OmegaConf

    from nesterov_bench.config import swept_values
    from nesterov_bench.errors import ConfigError

    declared = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "analysis.yaml").minibatch_quadratic)
    cfg = compose(["experiment=minibatch_quadratic"])
    swept = swept_values("train.batch_size", str(cfg.sweep.minibatch_batches))
    assert swept == [str(b) for b in declared["batches"]]
    for key in ("dim", "rows", "kappa", "mu", "noise_std", "data_seed"):
        assert cfg.task[key] == declared[key]
    assert cfg.task.init_std**2 == pytest.approx(declared["var0"])
    assert cfg.train.max_steps == declared["max_steps"]
    cached = json.loads((THEORY_DIR / "minibatch_quadratic.json").read_text())
    assert cached["settings"] == declared  # the committed points are the declared settings'
    evals = set()
    for row in cached["rows"]:  # every batch: evaluated every 10 steps
        over = ["experiment=minibatch_quadratic", f"train.batch_size={row['batch']}"]
        tc = resolve(compose(over)).cfg["train"]
        per_epoch = 1 if row["batch"] == "full" else -(-declared["rows"] // row["batch"])
        evals.add(tc["eval_every"] * per_epoch / tc["evals_per_epoch"])
        assert tc["sampling"] == "replacement"
    assert evals == {10}
    row = cached["rows"][2]
    runs_at_the_recursions_points("minibatch_quadratic", f"train.batch_size={row['batch']}", row)
    with pytest.raises(ConfigError, match="no row for batch=100"):
        resolve(compose(["experiment=minibatch_quadratic", "train.batch_size=100"]))


def test_eval_spacing_refuses_a_batch_whose_epochs_miss_the_spacing():
    from nesterov_bench.config import eval_spacing
    from nesterov_bench.errors import ConfigError

    assert eval_spacing(10, 200, "full", "eval_every") == 10
    assert eval_spacing(10, 200, 5, "evals_per_epoch") == 4
    with pytest.raises(ConfigError, match="cannot evaluate every 10 steps at batch 50"):
        eval_spacing(10, 200, 50, "eval_every")


def test_replacement_sampling_draws_each_batch_independently(tmp_path, monkeypatch):
    """train.sampling=replacement: batches drawn uniformly with replacement (a batch may repeat an
    example, an epoch need not cover the split), the same from the same seed; the default is a shuffle."""
    from nesterov_bench import loop

    def batches(sampling: str, seed: int = 0) -> list[list[int]]:
        s = resolve(compose(overrides(tmp_path, "task=quadratic", "task.dim=4", "task.rows=12",
                                      "train.batch_size=4", "train.epochs=30", f"train.sampling={sampling}")))
        drawn = []
        real = loop._gather
        monkeypatch.setattr(loop, "_gather", lambda t, idx: drawn.append(idx.tolist()) or real(t, idx))
        model = s.task.build_model()
        loop.fit(s.task, model, torch.optim.SGD(model.parameters(), lr=0.01), s.task.load_data(
            s.cfg["data"], torch.device("cpu")), s.train, batch_generator=torch.Generator().manual_seed(seed),
            record=lambda *a: None)
        return drawn[::2]  # x, then y: the same indices

    perm, repl = batches("permutation"), batches("replacement")
    assert len(perm) == len(repl) == 90
    assert all(sorted(sum(perm[e * 3:(e + 1) * 3], [])) == list(range(12)) for e in range(30))  # shuffles
    assert any(len(set(b)) < 4 for b in repl)  # with replacement, some batch repeats an example
    assert any(sorted(sum(repl[e * 3:(e + 1) * 3], [])) != list(range(12)) for e in range(30))
    assert batches("replacement") == repl and batches("replacement", seed=1) != repl
