"""One profile's study, split into its parts, with the per-run measures every table and figure uses.

A results root may hold several profiles (``sweep.name``: smoke, quick, paper); a study reads only its
own (``load(results, profile)``), and each part of it is an experiment of the run store: ``<profile>``
(stages tune and final), ``<profile>-quadratic_theory``, ``<profile>-seed000_linreg`` and
``<profile>-seed002_mnist`` (the articles' recipes).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ..errors import ConfigError
from . import measures, speed
from .load import Loaded
from .outputs import ANALYSIS_CFG, paper_profile

TASK_ORDER = ["linreg", "quadratic", "mnist_logreg", "mnist_mlp", "mnist_cnn", "fmnist_cnn", "cifar10_cnn"]
OPT_ORDER = ["gd", "momentum", "nesterov", "adam"]
OPT_LABEL = {"gd": "GD", "momentum": "Heavy ball", "nesterov": "Nesterov", "adam": "Adam"}
#: The tuning space's axis beside the learning rate, per optimizer (GD: none), and its symbol.
SECOND_AXIS = {"momentum": "momentum", "nesterov": "momentum", "adam": "beta1"}
AXIS_SYMBOL = {"momentum": "μ", "beta1": "β1"}


def analysis_config(path: Path = ANALYSIS_CFG) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def profiles_with_finals(results_dir: Path) -> list[str]:
    """The profiles whose final stage has run directories in a results tree."""
    runs = Path(results_dir) / "runs"
    return sorted(d.parent.name for d in runs.glob("*/final") if d.is_dir()) if runs.is_dir() else []


def choose_profile(runs: pd.DataFrame, wanted: str | None, results_dir: Path | None = None) -> str:
    """The profile to analyse: ``wanted``, else the paper's (``paper_profile``); it must have final
    runs among ``runs``."""
    name = wanted or paper_profile()
    if len(runs) and ((runs.experiment == name) & (runs.stage == "final")).any():
        return name
    others = [p for p in profiles_with_finals(results_dir) if p != name] if results_dir else []
    hint = (f"profiles with final runs here: {', '.join(others)} (pass --profile)" if others
            else f"run `make reproduce PROFILE={name}` first")
    raise ConfigError(f"no final runs of profile {name!r} in the results; {hint}")


def _ordered(values, order) -> list:
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))


@dataclass
class Study:
    profile: str
    loaded: Loaded
    cfg: dict = field(default_factory=analysis_config)

    # --- parts -------------------------------------------------------------------------------
    def part(self, suffix: str = "", stage: str | None = None) -> pd.DataFrame:
        runs = self.loaded.runs
        exp = self.profile + (f"-{suffix}" if suffix else "")
        sel = runs[runs.experiment == exp]
        return sel[sel.stage == stage] if stage else sel

    @cached_property
    def tune(self) -> pd.DataFrame:
        return self.part(stage="tune")

    @cached_property
    def final(self) -> pd.DataFrame:
        return self.part(stage="final")

    @cached_property
    def theory(self) -> pd.DataFrame:
        return self.part("quadratic_theory")

    @cached_property
    def noise(self) -> pd.DataFrame:
        """The noise-floor runs, with their batch size and effective learning rate lr / (1 - momentum)."""
        runs = self.part("noise_floor")
        return runs.assign(batch=runs.stage.str.removeprefix("batch=").astype(int) if len(runs) else [],
                           effective_lr=(runs.lr / (1 - runs.momentum)).round(12))

    @cached_property
    def schedules(self) -> pd.DataFrame:
        """The schedule_forms runs: the three Nesterov forms under each learning-rate schedule (stage)."""
        return self.part("schedules")

    @cached_property
    def stability(self) -> pd.DataFrame:
        """The stability_map runs (the quadratic over lr x momentum, per kappa)."""
        return self.part("stability")

    def recipe(self, name: str) -> pd.DataFrame:
        return self.part(name, "recipe")

    @cached_property
    def tasks(self) -> list[str]:
        return _ordered(self.final.task, TASK_ORDER)

    @cached_property
    def optimizers(self) -> list[str]:
        return _ordered(self.final.optimizer, OPT_ORDER)

    @cached_property
    def _metrics_by_run(self):
        return dict(tuple(self.loaded.metrics.groupby("run_id"))) if len(self.loaded.metrics) else {}

    def metrics_of(self, run_id: int) -> pd.DataFrame:
        return self._metrics_by_run[run_id]

    def chosen(self, task: str, optimizer: str) -> dict | None:
        """The selection's choice (``<results>/tuned/<profile>.json``: the point, its flags) that the final
        runs of ``task`` x ``optimizer`` were made at: the choice by final score or by speed whose point
        they ran; else their own hyperparameters, unflagged."""
        runs = self.final[(self.final.task == task) & (self.final.optimizer == optimizer)]
        if runs.empty:
            return None
        r = runs.iloc[0]
        point = {"lr": r.lr, "momentum": r.momentum, "beta1": r.beta1}
        picks = self.loaded.tuned.get(task, {}).get(optimizer, {})
        for by in ("final", "speed"):
            c = picks.get(by)
            if c and all(math.isclose(c[k], point[k]) for k in point if k in c):
                return {**point, **c, "by": by}
        return point

    # --- what is measured on each task ---------------------------------------------------------
    def select_key(self, task: str) -> str:
        """The validation quantity the tuning stage selects on (e.g. ``val/accuracy``)."""
        r = self.loaded.runs[self.loaded.runs.task == task].iloc[0]
        return f"{r.select_split}/{r.select_metric}"

    def report_key(self, task: str) -> str:
        """The test-set counterpart of ``select_key`` when the task has a test split."""
        metric = self.select_key(task).split("/")[1]
        col = f"final:test/{metric}"
        runs = self.loaded.runs
        if col in runs and runs.loc[runs.task == task, col].notna().any():
            return f"test/{metric}"
        return self.select_key(task)

    # --- per-run measures ----------------------------------------------------------------------
    @cached_property
    def per_run(self) -> pd.DataFrame:
        """One row per final run: final validation score and time to the declared target (``ttt_steps``
        nan when never reached; ``tau`` the task's budget, where an unreached run is censored)."""
        rows = []
        for task, runs in self.final.groupby("task"):
            key, target = self.select_key(task), self.cfg["targets"].get(task)
            budget = runs.steps.max()
            for r in runs.itertuples():
                m = self.metrics_of(r.run_id)
                steps, secs = measures.time_to_target(m, target) if target else (math.nan, math.nan)
                rows.append({
                    "run_id": r.run_id, "task": task, "optimizer": r.optimizer, "seed": r.seed,
                    "status": r.status,
                    "final_score": measures.score(key, self.final.at[r.Index, f"final:{key}"]),
                    "reached": not math.isnan(steps), "ttt_steps": steps, "ttt_s": secs, "tau": float(budget),
                })
        return pd.DataFrame(rows)

    def levels_of(self, runs: pd.DataFrame, key: str) -> tuple[str, list[float]] | None:
        """(reference optimizer, the oriented score of each level of ``target_fractions``) of a group
        of final runs compared with each other (a task; a width of the width sweep); see ``speed``.
        The reference is the optimizer with the best mean final validation score."""
        done = runs[runs.status == "completed"]
        if done.empty:
            return None
        scores = [measures.score(key, v) for v in done[f"final:{key}"]]
        ref = str(done.assign(score=scores).groupby("optimizer").score.mean().idxmax())
        curves = [speed.best_so_far(self.metrics_of(i), key) for i in done[done.optimizer == ref].run_id]
        return ref, speed.levels(curves, self.cfg["target_fractions"], float(runs.steps.max()))

    def hits_of(self, unit: str, runs: pd.DataFrame, key: str, levels: list[float]) -> list[dict]:
        """One row per run and level: the restricted time to it (``speed.hit``); ``task`` = ``unit``."""
        rows = []
        tau = float(runs.steps.max())
        for r in runs.itertuples():
            curve = speed.best_so_far(self.metrics_of(r.run_id), key)
            for i, (fraction, level) in enumerate(zip(self.cfg["target_fractions"], levels, strict=True)):
                h = (speed.hit(curve, level, tau) if r.status == "completed"
                     else speed.Hit(tau, False, 0.0))  # a diverged run never arrives
                rows.append({"task": unit, "optimizer": r.optimizer, "seed": r.seed, "level": i,
                             "fraction": fraction, "steps": h.steps, "reached": h.reached,
                             "log2_var": h.log2_var, "tau": tau})
        return rows

    @cached_property
    def target_levels(self) -> dict[str, tuple[str, list[float]]]:
        """task -> (reference optimizer, levels) of the final runs (``levels_of``)."""
        out = {t: self.levels_of(self.final[self.final.task == t], self.select_key(t)) for t in self.tasks}
        return {t: v for t, v in out.items() if v is not None}

    @cached_property
    def hits(self) -> pd.DataFrame:
        """One row per final run and target level: the restricted time to it (``hits_of``)."""
        rows = [row for task, (_, lv) in self.target_levels.items()
                for row in self.hits_of(task, self.final[self.final.task == task], self.select_key(task), lv)]
        return pd.DataFrame(rows, columns=HIT_COLUMNS)

    # --- the width sweep ---------------------------------------------------------------------------
    @cached_property
    def width_runs(self) -> pd.DataFrame:
        """The width sweep's runs (experiments ``<profile>-width<W>``), with their ``width``."""
        runs = self.loaded.runs
        width = runs.experiment.str.extract(rf"^{re.escape(self.profile)}-width(\d+)$")[0]
        return runs[width.notna()].assign(width=width.dropna().astype(int))

    @cached_property
    def widths(self) -> list[int]:
        final = self.width_runs[self.width_runs.stage == "final"]
        return sorted(set(final.width))

    def width_unit(self, width: int) -> str:
        return f"width {width}"

    @cached_property
    def width_levels(self) -> dict[int, tuple[str, list[float]]]:
        final = self.width_runs[self.width_runs.stage == "final"]
        out = {}
        for w in self.widths:
            runs = final[final.width == w]
            got = self.levels_of(runs, self.select_key(runs.task.iloc[0]))
            if got is not None:
                out[w] = got
        return out

    @cached_property
    def width_hits(self) -> pd.DataFrame:
        """``hits`` of the width sweep's final runs, ``task`` = ``width_unit(W)``."""
        final = self.width_runs[self.width_runs.stage == "final"]
        rows = []
        for w, (_, lv) in self.width_levels.items():
            runs = final[final.width == w]
            rows += self.hits_of(self.width_unit(w), runs, self.select_key(runs.task.iloc[0]), lv)
        return pd.DataFrame(rows, columns=HIT_COLUMNS)

    @cached_property
    def width_parameters(self) -> dict[int, int]:
        """width -> the model's trainable parameters, counted from a final run's task config."""
        final = self.width_runs[self.width_runs.stage == "final"]
        return {w: n for w in self.widths
                if (n := count_parameters(Path(final[final.width == w].path.iloc[0]))) is not None}

    @cached_property
    def sizing(self) -> str:
        """``sized`` for every task of the study: the note on the captions that show them all."""
        return self.sized()

    def sized(self, tasks: tuple[str, ...] | None = None) -> str:
        """What the final runs of ``tasks`` (default: the study's) trained at other than the task's full
        size (a CPU profile's smaller networks and data subsets) and full precision (bf16 forward passes),
        for the caption of a table or figure that shows them; "" when none."""
        tasks = [t for t in self.tasks if tasks is None or t in tasks]
        parts = []
        for task in tasks:
            cfg = self.final[self.final.task == task].task_cfg.iloc[0]
            sized = []
            if (cfg.get("width") or 1) < 1:
                sized.append(f"{cfg['width']:g} of DeepOBS's width")
            if cfg.get("hidden"):
                sized.append("784-" + "-".join(map(str, cfg["hidden"])) + "-10")
            if cfg.get("train_size"):
                sized.append(f"the first {cfg['train_size']:,} training images")
            if sized:
                parts.append(f"{task} ({', '.join(sized)})")
        notes = [f"Sized for a CPU, not DeepOBS's: {'; '.join(parts)}."] if parts else []
        bf16 = [t for t in tasks if (self.final[self.final.task == t].precision == "bf16").any()]
        if bf16:
            notes.append(f"Forward passes in bf16 (autocast): {', '.join(bf16)}.")
        return " ".join(notes)

    @cached_property
    def tune_points(self) -> pd.DataFrame:
        """The tuning stage per point of each optimizer's space (task, optimizer, lr, momentum, beta1):
        the mean over its seeds of the final validation metric (``value``; nan when a seed diverged or
        ended non-finite), that mean oriented so higher is better (``score``), the share of its seeds
        that did not end finite (``unstable``), and its seeds."""
        rows = []
        cols = ["task", "optimizer", "lr", "momentum", "beta1"]
        for (task, opt, lr, mu, b1), runs in self.tune.groupby(cols, dropna=False):
            key = self.select_key(task)
            vals = runs[f"final:{key}"].astype(float)
            ok = (runs.status == "completed") & np.isfinite(vals)
            mean = float(vals.mean()) if ok.all() else math.nan
            rows.append({"task": task, "optimizer": opt, "lr": lr, "momentum": mu, "beta1": b1,
                         "value": mean, "score": measures.score(key, mean), "unstable": float((~ok).mean()),
                         "seeds": len(runs)})
        return pd.DataFrame(rows, columns=[*cols, "value", "score", "unstable", "seeds"])

    @cached_property
    def tolerance_shares(self) -> pd.DataFrame:
        """Per task, optimizer and tuning seed: the trials of the tuning space (``trials``), the share
        whose final validation score is within tolerance of that optimizer's best on the seed
        (``good``) and the share that diverged (``diverged``)."""
        tol = self.cfg["tolerance"]
        rows = []
        for (task, opt, seed), runs in self.tune.groupby(["task", "optimizer", "seed"]):
            key = self.select_key(task)
            scores = np.array([measures.score(key, v) if st == "completed" else -math.inf
                               for v, st in zip(runs[f"final:{key}"], runs.status, strict=True)])
            best = scores.max()
            if math.isfinite(best):
                good = float((scores >= best - measures.tolerance_slack(key, best, tol)).mean())
            else:
                good = 0.0
            rows.append({"task": task, "optimizer": opt, "seed": seed, "trials": len(runs), "good": good,
                         "diverged": float((runs.status == "diverged").mean())})
        return pd.DataFrame(rows, columns=["task", "optimizer", "seed", "trials", "good", "diverged"])

    @cached_property
    def parameters(self) -> dict[str, int]:
        """task -> the number of trainable parameters of its model, counted from a final run's task
        config."""
        out = {t: count_parameters(Path(self.final[self.final.task == t].path.iloc[0])) for t in self.tasks}
        return {t: n for t, n in out.items() if n is not None}

    def by_seed(self, task: str, optimizer: str, column: str) -> dict[int, float]:
        p = self.per_run
        sel = p[(p.task == task) & (p.optimizer == optimizer)]
        return dict(zip(sel.seed, sel[column], strict=True))

    def theory_kappas(self) -> list[float]:
        return sorted(self.theory.kappa.dropna().unique()) if len(self.theory) else []


HIT_COLUMNS = ["task", "optimizer", "seed", "level", "fraction", "steps", "reached", "log2_var", "tau"]


def count_parameters(run_dir: Path) -> int | None:
    """The trainable parameters of the model a run's task config builds (the only place the analysis
    imports torch); None for a task config this code cannot build (e.g. a test's stand-in)."""
    from ..tasks import make_task  # noqa: PLC0415 -- torch: only when a claim needs the count

    cfg = json.loads((run_dir / "run.json").read_text())["config"]["task"]
    try:
        model = make_task(cfg).build_model()
    except ConfigError:
        return None
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def finite(values) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    return x[np.isfinite(x)]
