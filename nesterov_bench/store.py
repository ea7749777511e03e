"""The run store: one directory of plain files per run, the single source of truth.

Layout (paths come from the config, never the clock, so a rerun finds what is done)::

    <results_dir>/runs/<experiment_name>/<stage>/<task>/<optimizer>/lr=<lr>[,momentum=<m>][,...]/seed=<s>/
        run.json          status, resolved config, final metrics, times, environment (written last)
        metrics.parquet   long format: step, epoch, split, metric, value, time_s
        wandb/            the offline W&B mirror, if any (not committed)

A run is complete only when ``run.json`` says ``completed`` or ``diverged`` and its metrics file is
there, whole. Anything else found at a run's path is an unfinished attempt and is cleared before a redo.
Files are written to a temporary name and renamed, so no reader ever sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError
from .optimizer_config import dirname
from .tracking import results_root
from .wandb_sync import unsynced_offline_runs

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FINISHED = ("completed", "diverged")  # a run in one of these states is never redone unless forced
METRIC_COLUMNS = ["step", "epoch", "split", "metric", "value", "time_s"]
LOCK = ".lock"

# Settings that do not change a run's numbers: two configs differing only here are the same run.
NOT_IDENTITY = ("results_dir", "force", "progress", "device", "threads", "wandb", "data.root",
                "data.source", "data.download", "sweep", "space", "trial", "members", "path_keys",
                "lr_grid", "lr_index")  # (the last two: the tuning grid's names in runs made before trial)

#: ``train`` settings named in a run's directory when set (off by default): the second article's per-step
#: decay as written, and bf16 mixed precision
NAMED_TRAIN_KEYS = ("epoch_decay", "precision")

#: What the runs of one experiment, stage and task may differ in, besides the settings their sweep names in
#: ``path_keys``: the seed, the optimizer's settings, and the second article's decay as written (a recipe
#: sweeps it). Anything else they must share, or the selection and the analysis would pool runs of two
#: settings as seeds of one (``check_one_setting``).
STAGE_VARIES = ("seed", "optimizer", "train.epoch_decay")


def run_path(cfg: Mapping[str, Any]) -> Path:
    hp = dirname(cfg["optimizer"])  # lr=0.01,momentum=0.9: the optimizer's own settings
    for key in NAMED_TRAIN_KEYS:  # when set: not the run of the same settings without them
        if cfg["train"].get(key):
            hp += f",{key}={_path_value(cfg['train'][key])}"
    for key in cfg.get("path_keys") or ():  # settings a sweep varies beyond those above
        hp += f",{key}={_path_value(lookup(cfg, key))}"
    return (
        Path(cfg["results_dir"]) / "runs" / cfg["experiment_name"] / cfg["stage"]
        / cfg["task"]["name"] / cfg["optimizer"]["name"] / hp / f"seed={cfg['seed']}"
    )


def tuned_path(results_dir: str | Path, name: str) -> Path:
    """Where the selection writes a study's choices: ``<results_dir>/tuned/<name>.json``."""
    return Path(results_dir) / "tuned" / f"{name}.json"


def lookup(cfg: Mapping[str, Any], dotted: str) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``; KeyError when a part is missing."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _path_value(value: Any) -> str:
    """A setting's value as a directory-name part: numbers as ``%g``, lists joined by ``-``."""
    if isinstance(value, list | tuple):
        return "-".join(_path_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("/", "_").replace(",", "_")


def identity(cfg: Mapping[str, Any]) -> dict:
    """The config without the settings that do not change a run's numbers (``NOT_IDENTITY``)."""
    out = json.loads(json.dumps(cfg))
    for key in NOT_IDENTITY:
        head, _, tail = key.partition(".")
        if tail:
            out.get(head, {}).pop(tail, None)
        else:
            out.pop(head, None)
    return out


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def shared_setting(cfg: Mapping[str, Any]) -> dict:
    """What a run shares with every run of its experiment, stage and task: its identity without
    ``STAGE_VARIES`` and its ``path_keys``."""
    out = identity(cfg)
    for key in (*STAGE_VARIES, *(cfg.get("path_keys") or ())):
        node, last = _parent(out, key)
        if node is not None:
            node.pop(last, None)
    return out


def _parent(tree: dict, dotted: str) -> tuple[dict | None, str]:
    """The mapping that holds ``dotted``'s last part (None when a part above it is missing), and that part."""
    *parents, last = dotted.split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), last


def check_one_setting(runs: Iterable[tuple[Path, Mapping[str, Any]]]) -> None:
    """Refuse, in one line (ConfigError), runs of one experiment, stage and task made under settings that
    differ beyond what the stage varies (e.g. ``train.precision=bf16`` runs beside float32 ones): read
    together they would be pooled as seeds of one setting. ``runs``: (run directory, config) pairs."""
    first: dict[tuple, tuple[Path, dict]] = {}
    for run_dir, cfg in runs:
        group = (cfg["experiment_name"], cfg["stage"], cfg["task"]["name"])
        setting = shared_setting(cfg)
        if group not in first:
            first[group] = (run_dir, setting)
            continue
        other_dir, other = first[group]
        keys = differences(other, setting)
        if keys:
            raise ConfigError(
                f"runs of {'/'.join(group)} were made under different settings ({described(other, keys)} in "
                f"{other_dir}; {described(setting, keys)} in {run_dir}): read together they would be pooled "
                "as seeds of one setting; keep one set in this results directory and make the other in "
                "another (RESULTS=DIR)")


def clashes(cfg: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """The dotted keys of ``values`` (settings of new runs) that would make them runs of another setting
    than the finished run of config ``cfg`` in their stage (``shared_setting``); keys ``cfg`` does not
    have at all (a config group, e.g. ``schedule``) are not compared."""
    changed = json.loads(json.dumps(cfg))
    for key, value in values.items():
        node, last = _parent(changed, key)
        if node is not None and ("." in key or last in node):
            node[last] = value
    return differences(shared_setting(cfg), shared_setting(changed))


def described(setting: dict, keys: list[str]) -> str:
    """``key=value, ...`` of a setting's ``keys`` (``unset`` where it has none); ``setting`` nested, or
    flat by dotted keys."""
    def shown(key: str) -> str:
        try:
            value = setting[key] if key in setting else lookup(setting, key)
        except KeyError:
            value = None
        return "unset" if value is None else str(value)
    return ", ".join(f"{k}={shown(k)}" for k in keys)


def write_atomic(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` then rename: the final name holds a whole file or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_generated(path: Path, name: str, body: str) -> bool:
    """Put ``body`` between the file's ``<!-- generated:NAME:start -->`` and ``<!-- generated:NAME:end -->``
    markers (a README's generated block), atomically; False, and the file untouched, without them."""
    start, end = f"<!-- generated:{name}:start -->", f"<!-- generated:{name}:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    write_atomic(path, lambda p: p.write_text(f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}"))
    return True


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str)))


def write_metrics(path: Path, rows: list[dict]) -> None:
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS).astype(
        {"step": "int64", "epoch": "float64", "split": "string", "metric": "string",
         "value": "float64", "time_s": "float64"}
    )
    write_atomic(path, lambda p: df.to_parquet(p, index=False))


def read_run(run_dir: Path) -> dict | None:
    """The run's record, or None when it is missing or unreadable (an unfinished attempt)."""
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_finished(run_dir: Path) -> bool:
    record = read_run(run_dir)
    return (
        record is not None and record.get("status") in FINISHED
        and _parquet_whole(run_dir / "metrics.parquet")
    )


def finished_since(results_dir: Path, since: float) -> int:
    """How many runs under ``results_dir`` were finished (run.json written) at or after ``since``."""
    count = 0
    for run_json in (results_dir / "runs").glob("**/seed=*/run.json"):
        try:
            recent = run_json.stat().st_mtime >= since
        except OSError:
            continue
        count += recent and is_finished(run_json.parent)
    return count


def _parquet_whole(path: Path) -> bool:
    """Whether a Parquet file is there and not cut short (it ends with the format's magic bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 12:
                return False
            f.seek(-4, os.SEEK_END)
            return f.read(4) == b"PAR1"
    except OSError:
        return False


class SaveError(OSError):
    """Saving a run's files failed (a full disk, a write error); the message is one line."""


@contextlib.contextmanager
def saving(run_dir: Path) -> Iterator[None]:
    """Turn an OSError while saving a run's files into a one-line SaveError that says what to do."""
    try:
        yield
    except OSError as e:
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise SaveError(
            f"could not save the run in {run_dir} ({detail}); it is left unfinished and a rerun redoes "
            "it: free space there, or set results_dir to another folder"
        ) from e


class RunBusy(RuntimeError):
    """Another process holds this run's lock (a concurrent sweep is training it)."""


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory for the length of a run.

    ``flock`` is released by the kernel when the process dies, even by SIGKILL, so a killed run
    never leaves a stale lock behind; a second process asking for the same run gets RunBusy.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RunBusy(f"{run_dir} is being trained by another process") from e
        yield
    finally:
        os.close(fd)


def clear_unfinished(run_dir: Path) -> None:
    """Remove what an earlier, unfinished (or replaced) attempt left, keeping the lock file. A W&B
    offline run there that was never synced is named first, in one warning line (it goes too)."""
    for path in unsynced_offline_runs(run_dir):
        log.warning("%s: deleting its W&B offline run %s, never synced (to keep W&B copies, sync them "
                    "before force=true or a rerun: python -m nesterov_bench.wandb_sync --results %s)",
                    run_dir, path.parent.name, results_root(run_dir))
    for child in run_dir.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
