"""The selection: choose each (task, optimizer)'s hyperparameters from the tuning runs' files.

Rule (stated once, here): the tuning runs of one task and optimizer are grouped by trial (a point of the
optimizer's tuning space: learning rate, and momentum or Adam's beta1 where the protocol tunes them), each
trial run on the protocol's tuning seeds. Two choices are made, and both are kept. By final score: the
trial with the best mean over its seeds of the task's selection metric at the end of the budget
(validation accuracy for classifiers, validation loss for regression, log10 suboptimality on the
quadratic). By speed: the trial with the fewest mean steps to the task's target (conf/analysis.yaml),
among those whose every seed reaches it; ties by final score. A trial with a seed that diverged, failed
or ended non-finite ranks last under both. Remaining ties go to the smaller learning rate, then the
smaller momentum (the more conservative choice). A choice at an end of one of the space's axes, or next to
a trial with a diverged seed, is flagged: the space should then be widened, or the choice sits at a
cliff.

The choices are written to ``<results_dir>/tuned/<study>.json``; the final stage reads the trial chosen by
``sweep.select_by`` (final | speed) through the ``${tuned_trial:...}`` config resolver and never re-tunes.

    python -m nesterov_bench.select --profile quick [--results results]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from . import CONF_DIR, store
from .analyze.measures import score, time_to_target
from .config import group_options, space_point, space_size
from .errors import ConfigError


def _trial(config: dict) -> tuple[int, dict]:
    """A tuning run's trial and its space (runs made before trials were named it lr_index of lr_grid)."""
    if config.get("trial") is not None:
        return int(config["trial"]), config["space"]
    if config.get("lr_index") is not None:
        return int(config["lr_index"]), {"lr": config["lr_grid"]}
    raise ConfigError(f"a tuning run of {config['task']['name']} x {config['optimizer']['name']} has no "
                      "trial (it was made with optimizer.* set by hand): select ranks the trials of a "
                      "tuning space; make tuning runs with experiment=tune or trial=N")


def summarize(records: list[dict], target: dict | None) -> dict[int, dict]:
    """Per trial of one (task, optimizer): its point, seeds, statuses, mean final score and mean steps to
    the target (inf when a seed diverged, or for steps when a seed never reached it)."""
    by_trial: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        by_trial[_trial(r["config"])[0]].append(r)
    out = {}
    for trial, runs in sorted(by_trial.items()):
        sel = runs[0]["selection"]
        metric = f"{sel['split']}/{sel['metric']}"
        ok = all(r.get("status") == "completed" and math.isfinite(r.get("final", {}).get(metric, math.nan))
                 for r in runs)
        scores = [score(metric, r.get("final", {}).get(metric)) for r in runs]
        steps = [time_to_target(pd.read_parquet(Path(r["run_dir"]) / "metrics.parquet"), target)[0]
                 for r in runs] if target and ok else [math.nan]
        out[trial] = {"point": space_point(_trial(runs[0]["config"])[1], trial), "metric": metric,
                      "seeds": sorted(r["config"]["seed"] for r in runs), "stable": ok,
                      "score": statistics.fmean(scores) if ok else -math.inf,
                      "steps": statistics.fmean(steps) if not any(map(math.isnan, steps)) else math.inf}
    return out


def _flags(trials: dict[int, dict], chosen: int, space: dict) -> dict:
    """Is the chosen trial at an end of an axis of the space, or next to a trial with a diverged seed?"""
    sizes = [len(v) for v in space.values()]
    index, rest = [], chosen
    for n in sizes:
        rest, i = divmod(rest, n)
        index.append(i)
    edges = [key for key, i, n in zip(space, index, sizes, strict=True) if n > 1 and i in (0, n - 1)]
    neighbours = []
    for axis, n in enumerate(sizes):
        stride = math.prod(sizes[:axis])
        neighbours += [chosen + d * stride for d in (-1, 1) if 0 <= index[axis] + d < n]
    cliff = any(t in trials and not trials[t]["stable"] for t in neighbours)
    return {"at_edge": edges, "next_to_diverged": cliff}


def choose(trials: dict[int, dict], space: dict, by: str) -> dict | None:
    """The trial chosen ``by`` final score or speed (see the rule), with its flags; None when no trial
    qualifies (all diverged; for speed, none reached the target on every seed)."""
    def conservative(t: int) -> tuple:
        return tuple(trials[t]["point"].get(k, 0.0) for k in ("lr", "momentum", "beta1"))

    if by == "final":
        pool = [t for t in trials if trials[t]["stable"]]
        key = lambda t: (-trials[t]["score"], conservative(t))  # noqa: E731
    else:
        pool = [t for t in trials if math.isfinite(trials[t]["steps"])]
        key = lambda t: (trials[t]["steps"], -trials[t]["score"], conservative(t))  # noqa: E731
    if not pool:
        return None
    best = min(pool, key=key)
    t = trials[best]
    return {"trial": best, **t["point"], "value": t["score"], "steps": t["steps"], "seeds": len(t["seeds"]),
            **_flags(trials, best, space)}


def tuning_records(results_dir: Path, experiment: str) -> list[dict]:
    root = results_dir / "runs" / experiment / "tune"
    # run_dir: where the run lies now (run.json records where it was made, maybe on another machine)
    records = [{**store.read_run(p.parent), "run_dir": str(p.parent)}
               for p in sorted(root.glob("*/*/*/seed=*/run.json")) if store.is_finished(p.parent)]
    store.check_one_setting((Path(r["run_dir"]), r["config"]) for r in records)  # no pooling of two settings
    return records


def select(results_dir: Path, name: str) -> tuple[Path, dict, list[str]]:
    """Write ``tuned/<name>.json``; return its path, the choices, and the warnings."""
    records = tuning_records(results_dir, name)
    if not records:
        where = results_dir / "runs" / name / "tune"
        known = group_options("profile")
        if name not in known:
            raise ConfigError(f"no finished tuning runs under {where}, and {name!r} is not a profile; "
                              f"choose one of: {', '.join(known)} (conf/profile/)")
        elsewhere = "" if Path(results_dir) == Path("results") else f" results_dir={results_dir}"
        raise ConfigError(f"no finished tuning runs under {where}; run `python -m nesterov_bench.train -m "
                          f"experiment=tune profile={name}{elsewhere}` first")
    targets = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "analysis.yaml").targets)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["config"]["task"]["name"], r["config"]["optimizer"]["name"]].append(r)
    choices: dict = {}
    warnings = []
    for (task, opt), recs in sorted(groups.items()):
        space = _trial(recs[0]["config"])[1]
        trials = summarize(recs, targets.get(task))
        size = space_size(space)
        picked = {by: choose(trials, space, by) for by in ("final", "speed")}
        choices.setdefault(task, {})[opt] = {**picked, "space": space, "trials": {
            str(t): {k: v for k, v in d.items() if k != "metric"} for t, d in trials.items()}}
        label = f"{task} x {opt}"
        if len(trials) < size:
            warnings.append(f"{label}: {size - len(trials)} of its {size} trials have no finished run")
        if picked["final"] is None:
            warnings.append(f"{label}: every trial diverged; lower the space's learning rates")
        for by, c in picked.items():
            if c and c["at_edge"]:
                warnings.append(f"{label}: chosen by {by} at the edge of the space "
                                f"({', '.join(c['at_edge'])}); widen it")
            if c and c["next_to_diverged"]:
                warnings.append(f"{label}: chosen by {by} next to a trial that diverged")
    out = store.tuned_path(results_dir, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(out, {"study": name, "rule": " ".join(__doc__.split("\n\n")[1].split()),
                           "choices": choices})
    return out, choices, warnings


def _point(c: dict | None) -> str:
    if c is None:
        return "none"
    hp = ", ".join(f"{k}={c[k]:g}" for k in ("lr", "momentum", "beta1") if k in c)
    return f"{hp} (trial {c['trial']}, {c['seeds']} seeds)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nesterov_bench.select", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True, help="the study's name (sweep.name; the profile)")
    ap.add_argument("--results", default="results", help="results_dir of the runs (default: results)")
    args = ap.parse_args(argv)
    try:
        out, choices, warnings = select(Path(args.results), args.profile)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for task, opts in choices.items():
        for opt, c in opts.items():
            print(f"{task:14s} {opt:9s} by final: {_point(c['final'])}; by speed: {_point(c['speed'])}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
