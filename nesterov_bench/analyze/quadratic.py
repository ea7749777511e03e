"""Theory beside measurement on quadratics: predicted rates (``nesterov_bench.theory``) and the rates
fitted to measured suboptimality curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import theory
from . import measures
from .stats import weighted_line
from .study import Study

KEY = "train/suboptimality"


def fitted_rate(steps, subopt, decades: float = 24.0) -> float:
    """The per-step rate r of the error norm ||x_k - x*|| from a suboptimality curve f_k ~ C r^(2k).

    f - f* is quadratic in the error, so r is the square root of the per-step ratio of f: r =
    exp(slope / 2), slope fitted by least squares (``stats.weighted_line``) to log f over the late part
    of the linear phase -- the second half of the iterations between the curve's first decade below its
    start and ``decades`` below it (before float64's floor). Late, because where the iteration matrix
    has a repeated eigenvalue (heavy ball at Polyak's setting) the error decays like k r^k, and early
    iterations would bias the slope by 1/k. nan when fewer than 3 points qualify."""
    k, f = np.asarray(steps, dtype=float), np.asarray(subopt, dtype=float)
    ok = np.isfinite(f) & (f > 0)
    k, f = k[ok], f[ok]
    if len(f) < 3:
        return math.nan
    inside = np.flatnonzero((f <= f[0] * 1e-1) & (f >= f[0] * 10.0 ** -decades))
    if len(inside) < 6:
        inside = np.flatnonzero(f >= f[0] * 10.0 ** -decades)
    late = inside[len(inside) // 2:]
    if len(late) < 3:
        return math.nan
    slope = weighted_line(k[late], [math.log(v) for v in f[late]]).slope  # same bits on every CPU
    return float(math.exp(slope / 2))


def steps_to(steps, subopt, relative: float) -> float:
    """The first step at which f - f* falls to ``relative`` times its start; nan if never."""
    f = np.asarray(subopt, dtype=float)
    hit = np.flatnonzero(f <= relative * f[0])
    return float(np.asarray(steps)[hit[0]]) if len(hit) else math.nan


def median_curve(study: Study, run_ids) -> tuple[np.ndarray, np.ndarray]:
    """Step and the per-step median over runs of the suboptimality."""
    frames = [measures.evals(study.metrics_of(r), KEY)[["step", "value"]] for r in run_ids]
    both = np.concatenate([f.to_numpy() for f in frames])
    steps = np.unique(both[:, 0])
    med = np.array([np.median(both[both[:, 0] == s, 1]) for s in steps])
    return steps, med


def theory_rates(study: Study) -> dict[tuple[float, str], dict]:
    """(kappa, optimizer) -> predicted and measured rate, for the quadratic_theory experiment."""
    out = {}
    for (kappa, opt), runs in study.theory.groupby(["kappa", "optimizer"]):
        measured = [fitted_rate(*median_curve(study, [r])) for r in runs.run_id]
        lr, mom = float(runs.lr.iloc[0]), float(runs.momentum.iloc[0])
        setting = f"lr {lr:.3g}" + (f", m {mom:.3g}" if opt != "gd" else "")
        out[float(kappa), opt] = {"predicted": theory.classic_rate(opt, kappa),
                                  "measured": float(np.median(measured)), "setting": setting,
                                  "n": len(runs)}
    return out


def task_config(run_path: str) -> dict:
    return json.loads((Path(run_path) / "run.json").read_text())["config"]["task"]


def predicted_rate(task_cfg: dict, method: str, lr: float, momentum: float) -> float:
    """Rate of a run at any (lr, momentum) on the task's spectrum; nan for methods without theory."""
    if method not in theory.CLASSIC_FOR:
        return math.nan
    eig = theory.spectrum(task_cfg["mu"], task_cfg["kappa"], task_cfg["dim"], task_cfg["spectrum"])
    return theory.rate(method, eig, lr, momentum)


def stability_grids(study) -> dict[tuple[str, float], pd.DataFrame]:
    """The stability maps of the stability_map runs, by (optimizer, kappa): read once, drawn by
    ``figures.stability`` and counted by ``numbers.stability_numbers``."""
    return {(opt, float(kappa)): stability_grid(study, sel)
            for (opt, kappa), sel in study.stability.groupby(["optimizer", "kappa"])}


def stability_grid(study, runs) -> pd.DataFrame:
    """The stability map of one (kappa, optimizer): one row per (lr L, momentum) with the median over seeds
    of log10(final / initial suboptimality) and whether any seed diverged (non-finite, or ended above
    where it started)."""
    cfg = task_config(runs.path.iloc[0])  # one kappa and mu: the same task for every run of the map
    rows = []
    for r in runs.itertuples():
        sub = study.metrics_of(r.Index)
        sub = sub[sub.metric == "suboptimality"].sort_values("step").value.to_numpy()
        first, last = (sub[0], sub[-1]) if len(sub) else (math.nan, math.nan)
        grew = r.status != "completed" or not math.isfinite(last) or last > first
        rows.append({"x": r.lr * cfg["kappa"] * cfg["mu"], "momentum": r.momentum, "diverged": grew,
                     "log_ratio": math.log10(max(last, 1e-300) / first) if not grew else math.nan})
    grid = pd.DataFrame(rows)
    return grid.groupby(["momentum", "x"]).agg(diverged=("diverged", "any"), seeds=("diverged", "size"),
                                               log_ratio=("log_ratio", "median")).reset_index()


def measured_limits(grid: pd.DataFrame) -> dict[float, tuple[float, float]]:
    """Per momentum: (last lr L before the first diverged point, the first diverged lr L)."""
    out = {}
    for mu, g in grid.groupby("momentum"):
        g = g.sort_values("x")
        bad = g[g.diverged]
        first = float(bad.x.iloc[0]) if len(bad) else math.inf
        good = g[(g.x < first) & ~g.diverged]
        out[float(mu)] = (float(good.x.iloc[-1]) if len(good) else 0.0, first)
    return out
