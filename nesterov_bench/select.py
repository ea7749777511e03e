"""The selection: choose each (task, optimizer)'s learning rate from the tuning runs' files.

Rule (stated once, here): among the tuning runs of one task and optimizer (one seed, the optimizer's
``lr_grid``), rank by the task's selection metric at the end of the budget -- validation accuracy
for classifiers (higher is better), validation loss for regression, suboptimality on the quadratic
(lower is better). A run that diverged, failed or ended with a non-finite value ranks last. Ties go
to the smaller learning rate (the more conservative choice). A choice at either end of the grid is
flagged: the grid should then be widened, and the selection says so.

The choices are written to ``<results_dir>/tuned/<study>.json``; the final stage reads them through
the ``${tuned_lr:...}`` config resolver and never re-tunes.

    python -m nesterov_bench.select --profile quick [--results results] [--study main|momentum]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

from . import store
from .config import group_options
from .errors import ConfigError


def _score(record: dict) -> float:
    """The selection value oriented so that lower is better; +inf for a run that must rank last."""
    sel = record["selection"]
    value = record.get("final", {}).get(f"{sel['split']}/{sel['metric']}")
    if record.get("status") != "completed" or value is None or not math.isfinite(value):
        return math.inf
    return value if sel["mode"] == "min" else -value


def choose(records: list[dict]) -> dict:
    """Pick one learning rate from the tuning records of one (task, optimizer[, momentum])."""
    ranked = sorted(records, key=lambda r: (_score(r), r["config"]["optimizer"]["lr"]))
    best = ranked[0]
    sel = best["selection"]
    grid = sorted(best["config"]["lr_grid"])
    lr = best["config"]["optimizer"]["lr"]
    found = sorted(r["config"]["optimizer"]["lr"] for r in records)
    return {
        "lr": lr,
        "metric": f"{sel['split']}/{sel['metric']}",
        "mode": sel["mode"],
        "value": best.get("final", {}).get(f"{sel['split']}/{sel['metric']}"),
        "all_diverged": math.isinf(_score(best)),
        "at_edge": lr in (grid[0], grid[-1]),
        "grid": grid,
        "missing": [x for x in grid if x not in found],
        "runs": {f"{r['config']['optimizer']['lr']:g}": {"status": r["status"],
                                                        "value": r.get("final", {}).get(
                                                            f"{sel['split']}/{sel['metric']}")}
                 for r in records},
    }


def tuning_records(results_dir: Path, experiment: str) -> list[dict]:
    root = results_dir / "runs" / experiment / "tune"
    records = []
    for run_json in sorted(root.glob("*/*/*/seed=*/run.json")):
        if store.is_finished(run_json.parent):
            records.append(store.read_run(run_json.parent))
    return records


def select(results_dir: Path, name: str, study: str = "main") -> tuple[Path, dict, list[str]]:
    """Write ``tuned/<name>[-momentum].json``; return its path, the choices, and the warnings."""
    experiment = name if study == "main" else f"{name}-{study}"
    records = tuning_records(results_dir, experiment)
    if not records:
        where = results_dir / "runs" / experiment / "tune"
        known = group_options("profile")
        if name not in known:
            raise ConfigError(f"no finished tuning runs under {where}, and {name!r} is not a profile; "
                              f"choose one of: {', '.join(known)} (conf/profile/)")
        elsewhere = "" if Path(results_dir) == Path("results") else f" results_dir={results_dir}"
        raise ConfigError(f"no finished tuning runs under {where}; run `python -m nesterov_bench.train -m "
                          f"experiment=tune profile={name}{elsewhere}` first")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        opt = r["config"]["optimizer"]
        key = (r["config"]["task"]["name"], opt["name"])
        if study == "momentum":
            key += (f"{opt['momentum']:g}",)
        groups[key].append(r)
    choices: dict = {}
    warnings = []
    for key, recs in sorted(groups.items()):
        c = choose(recs)
        node = choices.setdefault(key[0], {})
        if study == "momentum":
            node = node.setdefault(key[1], {})
        node[key[-1]] = c
        label = " x ".join(key)
        if c["missing"]:
            warnings.append(f"{label}: no finished run for lr {', '.join(f'{x:g}' for x in c['missing'])}")
        if c["all_diverged"]:
            warnings.append(f"{label}: every learning rate diverged; lower the grid")
        elif c["at_edge"]:
            warnings.append(f"{label}: chosen lr {c['lr']:g} is at the edge of the grid "
                            f"[{c['grid'][0]:g}, {c['grid'][-1]:g}]; widen lr_grid")
    out = store.tuned_path(results_dir, experiment)
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(out, {"study": experiment, "rule": __doc__.split("\n\n")[1].replace("\n", " "),
                           "choices": choices})
    return out, choices, warnings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nesterov_bench.select", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True, help="the study's name (sweep.name; the profile)")
    ap.add_argument("--results", default="results", help="results_dir of the runs (default: results)")
    ap.add_argument("--study", default="main", choices=["main", "momentum"])
    args = ap.parse_args(argv)
    try:
        out, choices, warnings = select(Path(args.results), args.profile, args.study)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for task, opts in choices.items():
        for opt, c in opts.items():
            if "lr" in c:
                print(f"{task:14s} {opt:9s} lr={c['lr']:<8g} {c['metric']}={c['value']}")
            else:
                for mom, cc in c.items():
                    print(f"{task:14s} {opt:9s} momentum={mom:<5s} lr={cc['lr']:<8g} "
                          f"{cc['metric']}={cc['value']}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
