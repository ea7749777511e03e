"""Read run directories into tidy pandas tables. The run store is the only input.

Corrupt, partial, failed or generated-data runs are reported and left out, never mixed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import FINISHED, METRIC_COLUMNS, check_one_setting

KEY = ["experiment", "stage", "task", "optimizer", "lr", "momentum", "weight_decay", "epoch_decay", "seed"]


@dataclass
class Loaded:
    runs: pd.DataFrame  # one row per usable run (index run_id): KEY columns, status, final metrics, times
    metrics: pd.DataFrame  # long format (step, epoch, split, metric, value, time_s), with run_id and KEY
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    tuned: dict = field(default_factory=dict)  # <results>/tuned/<profile>.json's choices (select.py), if any


def _row(run_dir: Path, rec: dict) -> dict:
    cfg = rec["config"]
    opt = cfg["optimizer"]
    row = {
        "experiment": cfg["experiment_name"], "stage": cfg["stage"], "task": cfg["task"]["name"],
        "optimizer": opt["name"], "lr": float(opt["lr"]), "momentum": float(opt.get("momentum", 0.0)),
        "beta1": float(opt["betas"][0]) if "betas" in opt else float("nan"),
        "trial": float("nan") if cfg.get("trial") is None else int(cfg["trial"]),
        "task_cfg": cfg["task"],  # the task's settings as run (a model's width, a data subset)
        "weight_decay": float(opt.get("weight_decay", 0.0)),
        "epoch_decay": float(cfg["train"].get("epoch_decay", 0.0)), "seed": int(cfg["seed"]),
        "precision": cfg["train"].get("precision") or "float32",  # of the forward passes (bf16: autocast)
        "kappa": float(cfg["task"]["kappa"]) if "kappa" in cfg["task"] else float("nan"),
        "status": rec["status"], "steps": rec.get("steps"), "train_time_s": rec.get("train_time_s"),
        "wall_time_s": rec.get("wall_time_s"), "path": str(run_dir),
        "started_at": rec.get("started_at"), "finished_at": rec.get("finished_at"),
        "select_split": rec["selection"]["split"], "select_metric": rec["selection"]["metric"],
        "select_mode": rec["selection"]["mode"],
        "device": rec.get("environment", {}).get("device_name"),
        "host": _host(rec.get("environment", {})),
        "torch": rec.get("environment", {}).get("torch"),
        "commit": rec.get("environment", {}).get("git_commit"),
        "population": int((rec.get("vectorized") or {}).get("members", 1)),  # 1: trained on its own
    }
    row.update({f"final:{k}": v for k, v in rec.get("final", {}).items()})
    return row


def _host(env: dict) -> str | None:
    """The machine a run ran on: its name, device and the vector kernels torch picked (float results may
    differ between kernels)."""
    if not env.get("hostname"):
        return None
    return f"{env['hostname']} ({env.get('device_name')}, {env.get('cpu_capability') or env.get('device')})"


def experiments(root: Path, profile: str | None) -> list[Path]:
    """The experiment folders under ``root`` (``<results>/runs``) that belong to ``profile``:
    ``<profile>`` (tune, final) and ``<profile>-*`` (its recipes and studies); all when None."""
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (
        profile is None or d.name == profile or d.name.startswith(f"{profile}-")))


def load(results_dir: str | Path, profile: str | None = None) -> Loaded:
    """The runs under ``<results_dir>/runs``; with ``profile``, only that profile's experiments, so
    another profile's runs (skipped, corrupt or not) never enter its analysis or its counts, and the
    selection's choices for it (``<results_dir>/tuned/<profile>.json``, with their flags)."""
    root = Path(results_dir) / "runs"
    exps = experiments(root, profile)
    rows, frames, skipped, configs = [], [], [], []
    for run_json in sorted(p for e in exps for p in e.glob("*/*/*/*/seed=*/run.json")):
        run_dir = run_json.parent
        try:
            rec = json.loads(run_json.read_text())
            row = _row(run_dir, rec)
        except (OSError, ValueError, KeyError, TypeError) as e:
            skipped.append((str(run_dir), f"corrupt run.json ({type(e).__name__})"))
            continue
        if rec["status"] not in FINISHED:
            skipped.append((str(run_dir), f"status {rec['status']}"))
            continue
        if rec["config"].get("data", {}).get("generated"):
            skipped.append((str(run_dir), "generated data (code-path test only)"))
            continue
        try:
            m = pd.read_parquet(run_dir / "metrics.parquet")
        except Exception as e:  # noqa: BLE001 -- any unreadable file is reported, not fatal
            skipped.append((str(run_dir), f"unreadable metrics.parquet ({type(e).__name__})"))
            continue
        if list(m.columns) != METRIC_COLUMNS:
            skipped.append((str(run_dir), f"metrics.parquet has columns {list(m.columns)}, not "
                            f"the run store's {METRIC_COLUMNS}"))
            continue
        row["run_id"] = len(rows)
        rows.append(row)
        configs.append((run_dir, rec["config"]))
        frames.append(m)
    check_one_setting(configs)
    for partial in sorted(p for e in exps for p in e.glob("*/*/*/*/seed=*")):
        if partial.is_dir() and not (partial / "run.json").exists():
            skipped.append((str(partial), "unfinished (no run.json)"))
    runs = pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*KEY, "run_id", "status"])  # index = run_id
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frames:  # each metric row gets its run's id and KEY, column by column (not frame by frame: slow)
        run_id = np.repeat(np.arange(len(frames)), [len(m) for m in frames])
        metrics["run_id"] = run_id
        for k in KEY:
            metrics[k] = runs[k].to_numpy()[run_id]
    if not metrics.empty:
        metrics["split"] = metrics["split"].astype(str)
        metrics["metric"] = metrics["metric"].astype(str)
    tuned_file = Path(results_dir) / "tuned" / f"{profile}.json"
    try:
        tuned = json.loads(tuned_file.read_text())["choices"] if profile else {}
    except (OSError, ValueError, KeyError):
        tuned = {}
    return Loaded(runs, metrics, skipped, tuned)
