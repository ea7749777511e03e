"""The stability boundary on the quadratic: the suite's own runs diverge where the closed form says
(``theory.stability_limit``), within one step of a learning-rate grid, for kappa 10, 100 and 1000."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nesterov_bench import theory
from nesterov_bench.store import run_path

STEP = 2 ** 0.25  # the learning-rate grid's ratio: "within one grid step" is within this factor


@pytest.mark.parametrize(("method", "momentum"), [("gd", 0.0), ("momentum", 0.5), ("momentum", 0.9),
                                                  ("nesterov", 0.5), ("nesterov", 0.9)])
def test_closed_form_limit_is_where_the_iteration_matrix_turns_unstable(method, momentum):
    limit = theory.stability_limit(method, momentum)
    assert theory.rate(method, [1.0], limit * 0.999, momentum) < 1 < theory.rate(method, [1.0], limit * 1.001,
                                                                                   momentum)
    # and no smaller eigenvalue is unstable at a stable lr (the top one binds)
    assert theory.rate(method, np.linspace(1e-3, 1.0, 200), limit * 0.999, momentum) < 1


def measured_boundary(tmp_path, kappa: float, method: str, momentum: float) -> tuple[float, float]:
    """Train the quadratic (float64, full batch, 600 iterations) at nine learning rates a grid step apart
    around the closed-form limit, as one vectorized population through the run path; return (largest lr
    that did not diverge, smallest that did) in units of 1/L. Diverged: non-finite, or the final
    suboptimality above the initial one."""
    from nesterov_bench.config import compose, resolve
    from nesterov_bench.members import member_configs
    from nesterov_bench.train import run_all
    limit = theory.stability_limit(method, momentum)
    mu, steps = 1.0, 600
    lrs = [limit * STEP ** (j + 0.5) / (kappa * mu) for j in range(-4, 4)]  # the limit falls between points
    over = [f"results_dir={tmp_path}", "task=quadratic", f"optimizer={method}", "task.dim=20",
            f"task.kappa={kappa}", f"task.mu={mu}", "task.dtype=float64", f"train.epochs={steps}",
            f"train.eval_every={steps}", f"train.log_every={steps}", "wandb.mode=disabled", "device=cpu",
            f"experiment_name=stability-{kappa:g}"]
    if method != "gd":
        over.append(f"optimizer.momentum={momentum}")
    cfg = resolve(compose(over)).cfg
    cfg["members"] = {**cfg["members"], "lrs": lrs}
    records = run_all([resolve(c) for c in member_configs(cfg)], vectorized=True)
    stable = []
    for rec in records:
        curve = pd.read_parquet(run_path(rec["config"]) / "metrics.parquet")
        sub = curve[curve.metric == "suboptimality"].sort_values("step").value.to_numpy()
        stable.append(rec["status"] == "completed" and bool(np.isfinite(sub[-1])) and sub[-1] < sub[0])
    assert stable == sorted(stable, reverse=True), f"stability is not monotone in lr: {stable}"
    last = max(i for i, ok in enumerate(stable) if ok)
    assert last + 1 < len(lrs), "no diverged run: the grid does not reach the boundary"
    return lrs[last] * kappa * mu, lrs[last + 1] * kappa * mu


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
@pytest.mark.parametrize(("method", "momentum"), [("gd", 0.0), ("momentum", 0.5), ("momentum", 0.9),
                                                  ("nesterov", 0.5), ("nesterov", 0.9)])
def test_measured_stability_boundary_is_within_one_grid_step_of_theory(tmp_path, kappa, method, momentum):
    """On the quadratic with kappa 10, 100 and 1000, the last stable and first diverged learning rates of
    a grid with ratio 2^(1/4) bracket the closed-form limit (GD: lr L < 2; heavy ball: 2 (1 + mu);
    Nesterov: 2 (1 + mu) / (1 + 2 mu))."""
    below, above = measured_boundary(tmp_path, kappa, method, momentum)
    limit = theory.stability_limit(method, momentum)
    assert below < limit < above, (below, limit, above)
    assert above / below == pytest.approx(STEP)


def test_measured_limits_bracket_the_first_divergence_of_each_momentum_row():
    """The analysis's reading of a stability map (analyze/quadratic.py): per momentum, the last stable lr L
    before the first diverged one, and that one."""
    from nesterov_bench.analyze.quadratic import measured_limits
    grid = pd.DataFrame({"momentum": [0.5] * 4 + [0.9] * 4, "x": [1, 2, 4, 8] * 2,
                         "diverged": [False, False, True, True, False, True, False, True]})
    assert measured_limits(grid) == {0.5: (2.0, 4.0), 0.9: (1.0, 2.0)}  # a stable island after a divergence
    assert measured_limits(grid[grid.momentum == 0.5].assign(diverged=False)) == {0.5: (8.0, math.inf)}
