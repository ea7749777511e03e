"""Per-run measurements derived from the metrics: scores, time to target, early values, sensitivity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def score(metric: str, value: float) -> float:
    """Orient a metric so that higher is better: accuracy as is, losses negated, suboptimality as
    -log10 (it spans orders of magnitude). Non-finite values become -inf (the worst)."""
    if value is None or not math.isfinite(value):
        return -math.inf
    if metric.endswith("accuracy"):
        return value
    if metric.endswith("suboptimality"):
        return -math.log10(max(value, 1e-300))
    return -value


def evals(metrics: pd.DataFrame, split_metric: str) -> pd.DataFrame:
    """The evaluation rows of one ``split/metric`` (step, time_s, value), in step order."""
    split, metric = split_metric.split("/")
    m = metrics[(metrics.split == split) & (metrics.metric == metric)]
    return m.sort_values("step")


def time_to_target(run_metrics: pd.DataFrame, target: dict) -> tuple[float, float]:
    """(steps, seconds) at the first evaluation reaching the target; (nan, nan) if never."""
    e = evals(run_metrics, target["metric"])
    higher = target["metric"].endswith("accuracy")
    hit = e[e.value >= target["value"]] if higher else e[e.value <= target["value"]]
    if hit.empty:
        return math.nan, math.nan
    return float(hit.step.iloc[0]), float(hit.time_s.iloc[0])


def value_near(run_metrics: pd.DataFrame, split_metric: str, fraction: float) -> float:
    """The metric at the evaluation (after step 0) nearest ``fraction`` of the run's last step."""
    e = evals(run_metrics, split_metric)
    e = e[e.step > 0]
    if e.empty:
        return math.nan
    goal = fraction * e.step.max()
    return float(e.value.iloc[int(np.argmin(np.abs(e.step.to_numpy() - goal)))])


def good_range(lrs, scores, metric: str, tol: dict) -> tuple[float, float, float]:
    """(width in decades, lowest good lr, highest good lr) of the learning rates whose final score is
    within tolerance of the best; width 0 when only one rate is good, nan when all diverged."""
    pairs = [(lr, s) for lr, s in zip(lrs, scores, strict=True)]
    best = max(s for _, s in pairs)
    if not math.isfinite(best):
        return math.nan, math.nan, math.nan
    if metric.endswith("suboptimality"):
        slack = tol["log10_suboptimality"]
    else:
        slack = tol["relative"] * abs(best)
    good = sorted(lr for lr, s in pairs if s >= best - slack)
    return math.log10(good[-1] / good[0]), good[0], good[-1]
