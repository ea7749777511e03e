"""Per-run measurements derived from the metrics: oriented scores and time to target."""

from __future__ import annotations

import math

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


def tolerance_slack(metric: str, best: float, tol: dict) -> float:
    """How far below the best score a score may be and still count as as good (``tolerance`` in
    conf/analysis.yaml): a factor in suboptimality (log10), else a share of the best's magnitude."""
    return tol["log10_suboptimality"] if metric.endswith("suboptimality") else tol["relative"] * abs(best)
