"""Pull runs of a W&B project back into the run store, so the analysis reads them like local runs.

For sweeps whose nodes logged only to W&B: the mirror (``tracking.Mirror``) sends everything a
run directory holds, and this module writes it back into the store's layout::

    run directory                      W&B run
    run.json "config"                  run.config (the resolved config given to wandb.init)
    run.json, every other field        run.summary["run_record"] (written by Mirror.finish)
    metrics.parquet: one row           one "<split>/<metric>" key of the history row at _step,
      (step, split, metric, value)       read with run.scan_history() (the full history; never
                                         run.history(), which W&B samples down to 500 rows)
    metrics.parquet: epoch, time_s     the "epoch" and "time_s" keys of the same history row
    row order within a step            run.summary["history_layout"]["key_orders"] (the order
                                         logged; W&B does not promise to keep a row's key order)

Keys starting with "_" (W&B's own: _step, _runtime, _timestamp) are not metrics. Non-finite
values, which the mirror sends in the record (and W&B may return in the history) as the strings
"NaN", "Infinity", "-Infinity", become floats again.

What does not survive the trip exactly: W&B keeps one value per key and step, so every row of a
step gets the step's last ``time_s``. At an evaluation step the train-loss row therefore carries
the evaluation's time, a few microseconds of loop overhead later than the one on the node.

The imported run.json is the record the run would have had if trained here: ``config.results_dir``
is the target results directory and ``run_dir`` the run's new path; their original values, the W&B
run path and its URL are kept under ``imported_from``. The run's identity (``store.identity``) is
untouched, so a later local run of the same config finds it finished and skips it.

Only runs that finished in W&B with a ``run_record`` whose status is one of ``store.FINISHED``
are imported; a history with fewer metric rows than the mirror logged is refused, not imported.
A run is written as ``train`` writes one: under the run's lock, metrics first, run.json last,
each file atomically; nothing is written before the whole run has been converted, an existing
finished run is kept unless ``force`` (which removes it before writing the imported one), and a
write that fails removes what it wrote.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import store
from .errors import ConfigError

RESERVED = ("epoch", "time_s")  # history keys that are not "<split>/<metric>"
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
RECORD_KEYS = ("status", "selection", "final", "steps")  # what the analysis reads from run.json


class NotConvertible(ValueError):
    """This W&B run cannot be rebuilt as a run directory; the message says why (one line)."""


# --- reading a W&B run ---------------------------------------------------------------------------

def project_path(path: str) -> str:
    """``ENTITY/PROJECT``, checked; ConfigError (one line) when it cannot name a W&B project."""
    parts = path.strip().strip("/").split("/") if isinstance(path, str) else []
    if len(parts) != 2 or not all(parts) or any(re.search(r"\s", p) for p in parts):
        raise ConfigError(f"a W&B project is ENTITY/PROJECT (e.g. my-team/nesterov_bench), got {path!r}")
    return "/".join(parts)


def run_filters(group: str | None) -> dict | None:
    """The ``Api.runs`` filter for runs whose group matches the regular expression ``group``."""
    if group is None:
        return None
    try:
        re.compile(group)
    except re.error as e:
        raise ConfigError(f"--group is not a regular expression ({e}): {group!r}") from e
    return {"group": {"$regex": group}}


def to_plain(obj: Any) -> Any:
    """W&B's summary objects (dict-like, not Mappings) as plain dicts and lists."""
    if isinstance(obj, Mapping) or (hasattr(obj, "items") and hasattr(obj, "keys")):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj


def _number(v: Any) -> float:
    if isinstance(v, str) and v in NON_FINITE:
        return NON_FINITE[v]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise NotConvertible(f"non-numeric history value {v!r}")
    return float(v)


def _non_finite_floats(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _non_finite_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_non_finite_floats(v) for v in obj]
    return NON_FINITE.get(obj, obj) if isinstance(obj, str) else obj


def _summary(run: Any, key: str) -> Any:
    summary = run.summary
    return to_plain(summary.get(key) if hasattr(summary, "get") else None)


def run_record(run: Any) -> dict:
    """The run.json record: config from ``run.config``, the rest from the summary's ``run_record``.

    Raises NotConvertible when the run did not finish, has no record, or its config cannot place
    it in the store. The record is as the node wrote it (no path rewritten yet).
    """
    state = getattr(run, "state", None)
    if state != "finished":
        raise NotConvertible(f"W&B state is {state!r}, not 'finished'")
    rec = _summary(run, "run_record")
    if not isinstance(rec, dict):
        raise NotConvertible("no run_record in its summary (not logged by this suite's mirror, "
                             "or by a version before it sent one)")
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        raise NotConvertible(f"run_record lacks {', '.join(missing)}")
    if rec["status"] not in store.FINISHED:
        raise NotConvertible(f"status {rec['status']!r}")
    rec = _non_finite_floats(rec)  # the mirror sends NaN and infinities as strings
    cfg = to_plain(run.config)
    if not isinstance(cfg, dict):
        raise NotConvertible("its config is not a mapping")
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}  # W&B's own (_wandb)
    _check_placeable(cfg)
    return {**rec, "config": cfg}


def _check_placeable(cfg: dict) -> None:
    """The config must give the run a path inside the store, as ``store.run_path`` builds it."""
    try:
        names = [cfg["experiment_name"], cfg["stage"], cfg["task"]["name"], cfg["optimizer"]["name"]]
        store.run_path({**cfg, "results_dir": "."})
        seed = cfg["seed"]
    except (KeyError, TypeError, ValueError) as e:
        raise NotConvertible(f"config lacks what places the run in the store ({type(e).__name__}: "
                             f"{e})") from e
    for name in names:
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise NotConvertible(f"config names a path component {name!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise NotConvertible(f"config seed {seed!r} is not a non-negative integer")


def metric_rows(history: Iterable[Mapping[str, Any]],
                key_orders: list[list[str]] | None = None) -> list[dict]:
    """metrics.parquet's rows from W&B history rows (one per step, all keys logged at that step).

    Rows come in step order; within a step, in the logged order of the step's keys when
    ``key_orders`` has a list of exactly those keys, else in the history row's key order.
    """
    orders = {frozenset(o): o for o in key_orders or [] if isinstance(o, list)}
    out: list[tuple[int, int, dict]] = []
    for i, row in enumerate(history):
        if "_step" not in row:
            raise NotConvertible("a history row has no _step")
        step = row["_step"]
        present = [k for k, v in row.items() if v is not None and not k.startswith("_")
                   and k not in RESERVED]
        keys = [k for k in present if "/" in k]
        if len(keys) != len(present):
            raise NotConvertible(f"history key {next(k for k in present if '/' not in k)!r} is not "
                                 "<split>/<metric>")
        if not keys:
            continue
        if row.get("epoch") is None or row.get("time_s") is None:
            raise NotConvertible(f"history row at step {step} lacks epoch or time_s")
        epoch, time_s = _number(row["epoch"]), _number(row["time_s"])
        keys = orders.get(frozenset(keys), keys)
        for key in keys:
            split, metric = key.split("/", 1)
            out.append((int(step), i, dict(step=int(step), epoch=epoch, split=split, metric=metric,
                                            value=_number(row[key]), time_s=time_s)))
    out.sort(key=lambda t: (t[0], t[1]))  # step order (W&B's is already), stable within a step
    return [r for _, _, r in out]


def _layout(run: Any) -> dict:
    layout = _summary(run, "history_layout")
    return layout if isinstance(layout, dict) else {}


def _rows(run: Any, layout: dict) -> list[dict]:
    rows = metric_rows(run.scan_history(), layout.get("key_orders"))
    if not rows:
        raise NotConvertible("its history holds no metrics")
    expected = layout.get("rows")
    if isinstance(expected, int) and len(rows) != expected:
        raise NotConvertible(f"its history has {len(rows)} metric rows, the mirror logged {expected} "
                             "(not fully synced?)")
    return rows


def record_and_rows(run: Any) -> tuple[dict, list[dict]]:
    """A W&B run as (run.json record, metrics.parquet rows), exactly as the node wrote them
    (``time_s`` aside: see the module's docstring). Raises NotConvertible with the reason."""
    rec = run_record(run)
    return rec, _rows(run, _layout(run))


# --- writing into the store ----------------------------------------------------------------------

def _wandb_path(run: Any) -> str | None:
    path = getattr(run, "path", None)
    if isinstance(path, list | tuple):
        return "/".join(map(str, path))
    return str(path) if path is not None else None


def import_run(run: Any, results_dir: str | Path, force: bool = False) -> tuple[str, Path | None]:
    """Write one W&B run into ``results_dir``'s run store.

    Returns (outcome, run directory): ``"imported"``, ``"skipped: already finished"`` (possibly
    followed by what differs), or ``"skipped: <reason>"`` for a run that cannot be converted (its
    path is None when the config cannot place it).
    """
    try:
        rec = run_record(run)
    except NotConvertible as e:
        return f"skipped: {e}", None
    node_results_dir = rec["config"].get("results_dir")
    rec["config"] = {**rec["config"], "results_dir": str(results_dir)}
    run_dir = store.run_path(rec["config"])
    if not force and (skip := _finished_here(run_dir, rec)):
        return skip, run_dir  # before reading the history: a rerun of a pull costs no download
    try:
        rows = _rows(run, _layout(run))
    except NotConvertible as e:
        return f"skipped: {e}", run_dir
    imported = {
        **rec, "run_dir": str(run_dir),
        "imported_from": {
            "wandb_run": _wandb_path(run), "url": getattr(run, "url", None),
            "run_dir": rec.get("run_dir"), "results_dir": node_results_dir,
            "imported_at": datetime.now(UTC).isoformat(),
        },
    }
    created = not run_dir.exists()
    try:
        with store.locked(run_dir):
            if not force and (skip := _finished_here(run_dir, rec)):  # finished meanwhile
                return skip, run_dir
            try:
                (run_dir / "run.json").unlink(missing_ok=True)  # from here on: unfinished
                store.clear_unfinished(run_dir)
                store.write_metrics(run_dir / "metrics.parquet", rows)
                store.write_json(run_dir / "run.json", imported)  # last: marks the run finished
            except BaseException:
                store.clear_unfinished(run_dir)
                if created:
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
    except store.RunBusy as e:
        return f"skipped: busy ({e})", run_dir
    return "imported", run_dir


def _finished_here(run_dir: Path, rec: dict) -> str | None:
    """The skip outcome when ``run_dir`` already holds a finished run, else None."""
    if not store.is_finished(run_dir):
        return None
    existing = store.read_run(run_dir) or {}
    changed = store.differences(store.identity(existing.get("config", {})),
                                store.identity(rec["config"]))
    if changed:
        return (f"skipped: already finished, with other settings ({', '.join(changed)}); "
                "--force replaces it")
    return "skipped: already finished"
