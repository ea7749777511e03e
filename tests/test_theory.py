"""Theory on quadratics, measured through the benchmark's own loop.

Each method runs at its textbook setting (experiment=quadratic_theory: GD at 2/(L+mu), heavy ball at
Polyak's, Nesterov at 1/L with momentum (sqrt k - 1)/(sqrt k + 1)) on the `quadratic` task in float64.
The measured rate of ||x_k - x*|| (from the suboptimality, r = sqrt of its per-step ratio, fitted late)
must match theory within 5% relative in 1 - r, and the iterations to 1e-8 relative suboptimality must
show the predicted speed-up over GD.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nesterov_bench import theory
from nesterov_bench.analyze.quadratic import fitted_rate, steps_to
from nesterov_bench.store import run_path

from .conftest import train

pytestmark = pytest.mark.slow  # the fixture trains nine runs of up to 12,000 steps

ITERATIONS = {10.0: 300, 100.0: 2000, 1000.0: 12000}  # GD reaches 1e-16 relative in each


def curve(tmp_path, kappa: float, method: str, **extra) -> tuple[np.ndarray, np.ndarray, dict]:
    rec = train(tmp_path, "experiment=quadratic_theory", "profile=quick", f"task.kappa={kappa:g}",
                f"optimizer={method}", "seed=0", f"train.epochs={ITERATIONS[kappa]}",
                *[f"{k}={v}" for k, v in extra.items()])
    m = pd.read_parquet(run_path(rec["config"]) / "metrics.parquet")
    m = m[(m.split == "train") & (m.metric == "suboptimality")].sort_values("step")
    return m.step.to_numpy(), m.value.to_numpy(), rec


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("theory")
    return {(kappa, method): curve(tmp, kappa, method) for kappa in ITERATIONS
            for method in theory.CLASSIC_FOR}


@pytest.mark.parametrize("kappa", list(ITERATIONS))
@pytest.mark.parametrize("method", list(theory.CLASSIC_FOR))
def test_measured_rate_matches_theory(curves, kappa, method):
    steps, f, rec = curves[kappa, method]
    opt = rec["config"]["optimizer"]
    assert opt["lr"] == pytest.approx(theory.classic("lr", method, 1.0, kappa))
    predicted = theory.classic_rate(method, kappa)
    measured = fitted_rate(steps, f)
    assert abs((1 - measured) - (1 - predicted)) <= 0.05 * (1 - predicted), (measured, predicted)


@pytest.mark.parametrize("kappa", list(ITERATIONS))
@pytest.mark.parametrize("method", ["momentum", "nesterov"])
def test_acceleration_over_gd_by_the_predicted_factor(curves, kappa, method):
    """Iterations per factor eps in suboptimality scale like ln(1/eps) / (-2 ln r), so the speed-up over
    GD is ln r_method / ln r_GD (about sqrt(kappa)/2 for Nesterov, sqrt(kappa) for heavy ball at large
    kappa). Measured in the asymptotic phase, from 1e-8 to 1e-16 relative suboptimality: before it, the
    start's spread over eigenvalues and heavy ball's k r^k factor dominate (at 1e-8 heavy ball is ahead of
    GD by less than its asymptotic factor)."""
    def phase(m):
        steps, f = curves[kappa, m][:2]
        return steps_to(steps, f, 1e-16) - steps_to(steps, f, 1e-8), steps_to(steps, f, 1e-8)

    (gd_phase, gd_first), (m_phase, m_first) = phase("gd"), phase(method)
    predicted = math.log(theory.classic_rate(method, kappa)) / math.log(theory.classic_rate("gd", kappa))
    assert m_first < gd_first
    assert 0.8 * predicted <= gd_phase / m_phase <= 1.25 * predicted, (gd_phase / m_phase, predicted)


def test_a_wrong_rate_would_be_caught(curves):
    """The check has teeth: swapping the methods' predicted rates fails it."""
    steps, f, _ = curves[100.0, "nesterov"]
    wrong = theory.classic_rate("momentum", 100.0)
    assert abs((1 - fitted_rate(steps, f)) - (1 - wrong)) > 0.05 * (1 - wrong)


def test_fitted_rate_handles_a_repeated_root():
    k = np.arange(400)
    f = (1 + k) ** 2 * 0.9 ** (2 * k)  # error ~ k r^k: the repeated-eigenvalue case
    assert abs((1 - fitted_rate(k, f)) - 0.1) <= 0.05 * 0.1

