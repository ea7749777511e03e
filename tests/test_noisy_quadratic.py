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

from nesterov_bench import theory
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
    from nesterov_bench.analyze.noisy import vanishing_sigma
    row = lambda s, gd, n: {"sigma": s, "gd": {"steps": gd}, "nesterov": {"steps": n}}  # noqa: E731
    data = {"settings": {"vanish": 1.1}, "rows": [row(0, 100, 40), row(0.1, 100, 80), row(0.2, 100, 95)]}
    assert vanishing_sigma(data) == 0.2
    data["rows"][1] = row(0.1, float("inf"), float("inf"))  # neither reaches the target: no speed-up
    assert vanishing_sigma(data) == 0.1


def test_the_measured_experiment_runs_the_levels_and_points_of_the_closed_form():
    """experiment=noisy_quadratic sweeps conf/analysis.yaml's noise levels, each method at the point the
    recursion chose for that level (the committed results/theory/noisy_quadratic.json)."""
    from omegaconf import OmegaConf

    from nesterov_bench import CONF_DIR
    from nesterov_bench.config import swept_values
    from nesterov_bench.errors import ConfigError

    declared = OmegaConf.load(CONF_DIR / "analysis.yaml").noisy_quadratic.sigmas
    swept = swept_values("task.grad_noise", str(compose(["experiment=noisy_quadratic"]).sweep.noisy_sigmas))
    assert [float(v) for v in swept] == [float(v) for v in declared]
    cached = json.loads((CONF_DIR.parent / "results" / "theory" / "noisy_quadratic.json").read_text())
    row = cached["rows"][2]
    for method in ("gd", "momentum", "nesterov"):
        s = resolve(compose(["experiment=noisy_quadratic", f"task.grad_noise={row['sigma']}",
                             f"optimizer={method}"]))
        assert (s.opt.lr, s.opt.momentum) == (row[method]["lr"], row[method]["momentum"])
        assert s.cfg["task"]["optimum"] == "zero" and s.cfg["task"]["dtype"] == "float64"
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
