"""Does acceleration survive gradient noise? The noisy quadratic in closed form.

For each noise level sigma (``noisy_quadratic`` in conf/analysis.yaml), each method's fewest steps to a
target expected suboptimality, at the best point of its tuning space under the joint protocol
(conf/space/joint/: the same spaces the benchmark tunes over), from ``theory.fastest_under_noise`` (the
exact second-moment recursion, no sampling: tests/test_noisy_quadratic.py checks the recursion against
runs), and ``measured`` the same from the ``noisy_quadratic`` experiment's runs. Cached in
``<results>/theory/noisy_quadratic.json`` with the settings it was computed for (the
repository's committed copy is read for any results tree; ~17 s to recompute on this CPU).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from .. import CONF_DIR, THEORY_DIR, store, theory
from ..errors import ConfigError
from . import measures

METHODS = ("gd", "momentum", "nesterov")


def settings_space(method: str) -> list[tuple[float, float]]:
    space = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "space" / "joint" / f"{method}.yaml").space)
    return [(float(lr), float(mu)) for mu in space.get("momentum", [0.0]) for lr in space["lr"]]


def compute(cfg: dict) -> dict:
    lam = theory.spectrum(cfg["mu"], cfg["kappa"], cfg["dim"])
    goal = target(cfg)
    spaces = {m: settings_space(m) for m in METHODS}
    rows = []
    with np.errstate(all="ignore"):  # the space's diverging points overflow; they never reach the target
        for sigma in cfg["sigmas"]:
            row = {"sigma": sigma}
            for m in METHODS:
                steps, lr, mu = theory.fastest_under_noise(m, lam, spaces[m], cfg["max_steps"],
                                                           cfg["var0"], sigma**2 * lam, goal)
                row[m] = {"steps": steps, "lr": lr, "momentum": mu}
            rows.append(row)
    return {"settings": cfg, "rows": rows}


def cached(name: str, cfg: dict, results_dir: Path | None = None) -> dict | None:
    """``<results>/theory/<name>.json`` or else the repository's copy (a closed form depends on its
    settings alone, so the committed copy serves any results tree), if computed for ``cfg``."""
    dirs = [Path(results_dir) / "theory"] if results_dir is not None else []
    for candidate in (d / f"{name}.json" for d in (*dirs, THEORY_DIR)):
        try:
            data = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if data.get("settings") == cfg:
            return data
    return None


def results(cfg: dict, results_dir: Path) -> dict:
    """The table's data: from the cache when it was computed for these settings, else computed and cached."""
    if (data := cached("noisy_quadratic", cfg, results_dir)) is not None:
        return data
    out = compute(cfg)
    path = Path(results_dir) / "theory" / "noisy_quadratic.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, out)
    return out


def minibatch_results(cfg: dict, results_dir: Path) -> dict:
    """The mini-batch quadratic's closed form (nesterov_bench.minibatch, which needs torch to draw the
    problem's rows), computed for ``cfg``."""
    if (data := cached("minibatch_quadratic", cfg, results_dir)) is not None:
        return data
    raise ConfigError("no results/theory/minibatch_quadratic.json for conf/analysis.yaml's "
                      "minibatch_quadratic settings; run python -m nesterov_bench.minibatch")


def speedup(row: dict, base: str) -> float:
    a, b = row[base]["steps"], row["nesterov"]["steps"]
    return a / b if math.isfinite(a) and math.isfinite(b) else math.nan


def vanishing(data: dict, level: str = "sigma") -> float | str:
    """The first level (noise ``sigma``, or mini-batch ``batch`` from full down) at which Nesterov's
    speed-up over GD falls below ``vanish`` (nan: never)."""
    bar = data["settings"]["vanish"]
    return next((r[level] for r in data["rows"] if not speedup(r, "gd") >= bar), math.nan)


def target(cfg: dict) -> float:
    """The target expected suboptimality: ``target`` of the start's, 1/2 tr(H) var0."""
    trace = float(theory.spectrum(cfg["mu"], cfg["kappa"], cfg["dim"]).sum())
    return cfg["target"] * 0.5 * trace * cfg["var0"]


def first_at(curves: np.ndarray, steps: np.ndarray, goal: float) -> float:
    """The first of ``steps`` at which the mean of ``curves`` (seeds x evaluations) is at ``goal`` or
    below; inf when it never is (a seed's nan, after it stopped, keeps the mean above)."""
    hit = np.flatnonzero(curves.mean(axis=0) <= goal)
    return float(steps[hit[0]]) if len(hit) else math.inf


def goal(data: dict) -> float:
    """The target expected suboptimality of a closed form's ``data`` (noisy or mini-batch quadratic)."""
    return data["goal"] if "goal" in data else target(data["settings"])


def measured(study, data: dict, part: str = "noisy_quadratic", level: str = "sigma",
             resamples: int = 999) -> dict:
    """The closed form's rows, measured: per level (the stage ``<level>=<value>``) run by the ``part``
    experiment (conf/experiment/noisy_quadratic.yaml, minibatch_quadratic.yaml: each method at the point
    ``data`` names), the first evaluated step at which the mean over seeds of the suboptimality is at
    the target (inf: never), with a 95% percentile-bootstrap interval over seeds (``low``, ``high``;
    seeded, so the same every time). A mean over few seeds is noisy late in a run: its slowest
    directions hold a few seeds' draws. Only the levels that were run, in ``data``'s order."""
    runs = study.part(part)
    aim, order = goal(data), [r[level] for r in data["rows"]]
    rng = np.random.default_rng(0)
    rows: dict = {}
    for (stage, opt), sel in runs.groupby(["stage", "optimizer"]):
        text = stage.removeprefix(f"{level}=")
        value = next((v for v in order if str(v) == text or _close(v, text)), None)
        if value is None:  # a level no longer declared
            continue
        frame = pd.concat([measures.evals(study.metrics_of(r), "train/suboptimality").set_index("step").value
                           for r in sel.run_id], axis=1)
        curves, steps = frame.to_numpy(float).T, frame.index.to_numpy()
        boot = [first_at(curves[rng.integers(0, len(curves), len(curves))], steps, aim)
                for _ in range(resamples)]
        rows.setdefault(value, {level: value})[opt] = {
            "steps": first_at(curves, steps, aim), "low": float(np.percentile(boot, 2.5, method="lower")),
            "high": float(np.percentile(boot, 97.5, method="higher")), "seeds": len(sel),  # (inf: never)
            "every": int(steps[1] - steps[0]) if len(steps) > 1 else 1}
    return {"settings": data["settings"], "rows": [rows[v] for v in order
                                                   if v in rows and all(m in rows[v] for m in METHODS)]}


def _close(value, text: str) -> bool:
    try:
        return math.isclose(float(value), float(text))
    except ValueError:
        return False


def agreement(data: dict, seen: dict, level: str = "sigma") -> tuple[int, int]:
    """How many predicted steps (level x method, where measured) lie within the measured interval
    widened by the evaluation spacing, of how many."""
    pred = {r[level]: r for r in data["rows"]}
    inside = total = 0
    for row in seen["rows"]:
        for m in METHODS:
            p, r = pred[row[level]][m]["steps"], row[m]
            total += 1
            inside += (not math.isfinite(p) and not math.isfinite(r["steps"])) or (
                r["low"] - r["every"] <= p <= r["high"] + r["every"])
    return inside, total
