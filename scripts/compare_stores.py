"""Do two run stores hold the same numbers? Run by run, for the runs they share.

    python scripts/compare_stores.py RESULTS_A RESULTS_B [--experiment paper] [--label TEXT] [--json out.json]

A run is the same run in both when it sits at the same path under ``runs/`` (the path names the
experiment, stage, task, optimizer, hyperparameters and seed). For each such pair, finished in both, it
compares the status, every final value in run.json and every metric value in metrics.parquet (step,
split, metric and value; wall times are left out), and counts the pair as

- identical: the same status and every value equal bit for bit;
- close: the same status, the same rows, every value within a relative 1e-5 (float rounding: a
  vectorized population of another size, another kernel);
- parted: the same status and rows, and at the first step where any value differs every difference is
  within float rounding (a relative 1e-5), while later ones are not: the two makings began to differ by
  rounding, and training carried the difference on (or a loss falling by many decades magnified it in
  relative terms). A logic change would show at its first difference;
- different: anything else (the largest relative difference is reported);
- copied: the same making in both (the same ``started_at``: one store's run copied into the other, as
  when a rerun resumes from committed runs), so not a check of anything and not compared.

It prints one row per experiment and stage (with the runs only one store has), the worst pair, and
writes the rows to ``--json``, with the CPUs that made the compared runs of each store and ``--label``
(what the second store is, for the README's line). What it says is a check of determinism across two
makings of a store (a rerun from an empty store against the committed runs, on the same host or
another); it reads both stores and changes neither.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nesterov_bench import store  # noqa: E402

CLOSE = 1e-5
KEY = ["step", "split", "metric"]


def finished_runs(root: Path, experiment: str | None) -> dict[str, Path]:
    """Relative path under runs/ -> run directory, for every finished run (of ``experiment``: its name or
    a prefix of ``<name>-...`` studies)."""
    base = root / "runs"
    out = {}
    for p in base.glob("**/seed=*/run.json"):
        rel = p.parent.relative_to(base)
        head = rel.parts[0]
        if experiment and head != experiment and not head.startswith(f"{experiment}-"):
            continue
        if store.is_finished(p.parent):
            out[str(rel)] = p.parent
    return out


def relative(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def compare(a: Path, b: Path, ra: dict, rb: dict) -> tuple[str, float]:
    """(identical | close | different | copied, the largest relative difference) of one run in two stores
    (its directories and their run.json records)."""
    if ra.get("started_at") is not None and ra.get("started_at") == rb.get("started_at"):
        return "copied", 0.0
    if ra.get("status") != rb.get("status"):
        return "different", math.inf
    fa, fb = ra.get("final") or {}, rb.get("final") or {}
    if set(fa) != set(fb):
        return "different", math.inf
    worst = max((relative(float(fa[k]), float(fb[k])) for k in fa), default=0.0)
    ma = pd.read_parquet(a / "metrics.parquet", columns=[*KEY, "value"]).sort_values(KEY, kind="stable")
    mb = pd.read_parquet(b / "metrics.parquet", columns=[*KEY, "value"]).sort_values(KEY, kind="stable")
    if len(ma) != len(mb) or not (ma[KEY].to_numpy() == mb[KEY].to_numpy()).all():
        return "different", math.inf
    va, vb = ma["value"].to_numpy(float), mb["value"].to_numpy(float)
    same = (va == vb) | (np.isnan(va) & np.isnan(vb))
    first = math.inf  # the largest relative difference at the first step where a value differs
    if not same.all():
        with np.errstate(invalid="ignore"):  # inf - inf: a run that diverged in both
            scale = np.maximum(np.maximum(np.abs(va), np.abs(vb)), 1e-300)
            diff = np.where(same, 0.0, np.abs(va - vb) / scale)
        diff = np.where(np.isnan(diff), math.inf, diff)  # a number against nan, or inf against -inf
        worst = max(worst, float(diff.max()))
        steps = ma["step"].to_numpy()
        first = float(diff[steps == steps[~same].min()].max())
    if worst == 0.0:
        return "identical", 0.0
    if worst <= CLOSE:
        return "close", worst
    return ("parted" if first <= CLOSE else "different"), worst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="a results_dir (its runs/ is read)")
    ap.add_argument("b", type=Path, help="another results_dir")
    ap.add_argument("--experiment", default=None, help="only this experiment and its <name>-... studies")
    ap.add_argument("--label", default=None, help="what the second store is (the README's line names it)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args(argv)
    for root in (args.a, args.b):
        if not (root / "runs").is_dir():
            print(f"error: {root / 'runs'} is not a folder: give two results_dirs", file=sys.stderr)
            sys.exit(2)
    runs_a, runs_b = finished_runs(args.a, args.experiment), finished_runs(args.b, args.experiment)
    rows: dict[tuple[str, str], dict] = defaultdict(lambda: {"identical": 0, "close": 0, "parted": 0,
                                                             "different": 0, "copied": 0, "only_a": 0,
                                                             "only_b": 0, "worst": 0.0})
    hosts: dict[str, Counter] = {"a": Counter(), "b": Counter()}  # the CPUs that made the compared runs
    worst_pair = ("", 0.0)
    for rel in sorted(set(runs_a) | set(runs_b)):
        parts = Path(rel).parts
        row = rows[parts[0], parts[1]]
        if rel not in runs_b:
            row["only_a"] += 1
        elif rel not in runs_a:
            row["only_b"] += 1
        else:
            records = {"a": store.read_run(runs_a[rel]), "b": store.read_run(runs_b[rel])}
            outcome, diff = compare(runs_a[rel], runs_b[rel], records["a"], records["b"])
            row[outcome] += 1
            if outcome != "copied":
                for side, record in records.items():
                    hosts[side][(record.get("environment") or {}).get("cpu", "?")] += 1
            row["worst"] = max(row["worst"], diff)
            if diff > worst_pair[1]:
                worst_pair = (rel, diff)
    table = pd.DataFrame([{"experiment": e, "stage": s, **r} for (e, s), r in sorted(rows.items())])
    if table.empty:
        print("no finished runs in either store")
        return
    total = table.drop(columns=["experiment", "stage"]).sum(numeric_only=True)
    total["worst"] = table["worst"].max()
    print(table.to_string(index=False))
    print(f"in both: {int(total.identical + total.close + total.parted + total.different)} runs -- "
          f"{int(total.identical)} identical, {int(total.close)} close (relative {CLOSE:g}), "
          f"{int(total.parted)} parted (first difference within it), "
          f"{int(total.different)} different, {int(total.copied)} copied (not compared); "
          f"only in {args.a}: {int(total.only_a)}, "
          f"only in {args.b}: {int(total.only_b)}")
    if worst_pair[0]:
        print(f"largest relative difference {worst_pair[1]:.3g}: {worst_pair[0]}")
    if args.json:
        store.write_json(args.json, {"a": str(args.a), "b": str(args.b), "label": args.label,
                                     "experiment": args.experiment, "close": CLOSE,
                                     "hosts": {k: dict(v) for k, v in hosts.items()},
                                     "rows": table.to_dict("records"),
                                     "worst": {"run": worst_pair[0], "relative": worst_pair[1]}})


if __name__ == "__main__":
    main()
