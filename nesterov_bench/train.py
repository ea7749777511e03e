"""Train runs: the one path from validated settings to run directories, for one run or many.

    python -m nesterov_bench.train task=mnist_logreg optimizer=nesterov seed=0
    python -m nesterov_bench.train -m optimizer=gd,momentum,nesterov,adam seed=0,1   # a sweep

``run_all(settings)`` takes the settings of runs that share a task and an optimizer, skips those
already finished, loads the data once, claims each run's directory, trains the rest -- as one
vectorized population (``population.Population``) or one after another -- and records each in its
own run directory. ``python -m nesterov_bench.train`` is that path with one run;
``python -m nesterov_bench.members`` with many.

Everything a run needs is checked before anything is written: a bad setting is one line on
stderr, exit status 2, and no run directory. A write error while saving (a full disk) is one line
too, exit status 1, and leaves the run unfinished. A run whose directory already holds a finished
record is skipped (``force=true`` redoes it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from . import optimizers, store
from .cli import command_line
from .config import Settings, resolve
from .env import environment, set_determinism, set_fp32_precision
from .errors import ConfigError
from .loop import Outcome, Single, fit_members
from .population import Population, build_optimizer
from .tasks import Data, Task
from .tracking import Mirror

log = logging.getLogger("nesterov_bench")
#: What the runs of one ``run_all`` share (their data is loaded once): they differ in seed and optimizer.
SHARED = ("task", "train", "data", "device")


def derived_seed(seed: int, purpose: int) -> int:
    """Independent streams from one seed (model init = 0, batch order = 1): no two share a stream."""
    return int(np.random.SeedSequence([seed, purpose]).generate_state(1)[0])


def configure_torch(s: Settings) -> None:
    """Threads and determinism, as the config says (before any tensor work of the run)."""
    if s.cfg["threads"] is not None:
        torch.set_num_threads(s.cfg["threads"])
    if s.device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        set_fp32_precision()
    set_determinism(bool(s.cfg["deterministic"]))


def run(cfg: DictConfig | Mapping[str, Any]) -> dict:
    """Train (or skip, if already finished) the run the config describes; return its record."""
    s = resolve(cfg)
    members = s.cfg.get("members") or {}
    if any(members.get(k) is not None for k in ("seeds", "lrs", "trials")):
        raise ConfigError("members.seeds and members.lrs are read by python -m nesterov_bench.members; "
                          "train runs one seed and one optimizer.lr")
    return run_all([s])[0]


def run_all(settings: list[Settings], *, vectorized: bool = False) -> list[dict]:
    """Train (or skip, where finished) runs that share a task and an optimizer; their records in order.

    The data is loaded once, after every finished run is skipped and before any run directory is
    made (so a batch too large for it is refused with nothing written). ``vectorized``: the runs left
    train as one population, each member recorded as ``"vectorized": {"members": K, "index": k}``;
    else one after another, each holding its directory's lock only while it trains.
    """
    first = settings[0]
    differ = [k for s in settings[1:] for key in SHARED
              for k in store.differences(first.cfg[key], s.cfg[key], f"{key}.")]
    if differ:  # the data is loaded once, from the first run's settings: never silently for the others
        raise ConfigError(f"runs trained together must share their {', '.join(SHARED)} settings; "
                          f"these differ: {', '.join(sorted(set(differ)))}")
    configure_torch(first)
    records: list[dict | None] = [None] * len(settings)
    todo = []
    for k, s in enumerate(settings):
        run_dir = store.run_path(s.cfg)
        if store.is_finished(run_dir) and not s.cfg["force"]:
            records[k] = skip(run_dir, s)
        else:
            todo.append((k, s, run_dir))
    if not todo:
        return records
    data = load_data(first)
    first.train.check_against(len(data.train))
    for group in [todo] if vectorized else [[t] for t in todo]:
        with ExitStack() as locks:
            ready = []
            for k, s, run_dir in group:
                records[k] = claim(s, run_dir, locks)
                if records[k] is None:
                    ready.append((k, s, run_dir))
            if ready:  # none when all are busy, or finished meanwhile
                results = _train([(s, d) for _, s, d in ready], first.task, data, vectorized)
                for (k, _, _), result in zip(ready, results, strict=True):
                    records[k] = result
    return records


#: The data this process loaded last, by task, data and device settings: a sweep's runs of one task that
#: land in one worker process load it once (nothing writes into a Data's tensors).
_LOADED: dict[str, Data] = {}
LOADED_KEEP = 2


def load_data(s: Settings) -> Data:
    """The run's data, as ``s.task.load_data`` makes it, made once per process for the same settings."""
    key = json.dumps([s.cfg["task"], s.cfg["data"], str(s.device)], sort_keys=True, default=str)
    if key not in _LOADED:
        data = s.task.load_data(s.cfg["data"], s.device)
        while len(_LOADED) >= LOADED_KEEP:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = data
    return _LOADED[key]


def claim(s: Settings, run_dir: Path, locks: ExitStack) -> dict | None:
    """Take ``run_dir`` to train in: create it and hold its lock until ``locks`` closes. None when this
    process is to train it (what an unfinished attempt left is cleared), else the record that stands
    for it: the finished run's (finished while we loaded data) or ``busy`` (another process holds it)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"results_dir={s.cfg['results_dir']}: cannot create {run_dir} ({e.strerror}); "
                          "set results_dir to a writable folder") from None
    try:
        locks.enter_context(store.locked(run_dir))
    except store.RunBusy as e:
        log.warning("skipped: %s", e)
        return {"status": "busy", "run_dir": str(run_dir)}
    if store.is_finished(run_dir) and not s.cfg["force"]:
        return skip(run_dir, s)
    store.clear_unfinished(run_dir)
    return None


def skip(run_dir: Path, s: Settings) -> dict:
    """The finished run's record, after checking it was made with the same settings on the same kind of
    device (a GPU's numbers differ from a CPU's: never one in place of the other)."""
    record = store.read_run(run_dir)
    made_on = record.get("environment", {}).get("device", "cpu")
    if made_on != s.device.type:
        raise ConfigError(
            f"{run_dir} holds a finished run made on {made_on}, and this one would train on {s.device.type}; "
            "give the runs of each device their own results_dir or experiment_name (force=true replaces "
            "the finished run)"
        )
    changed = store.differences(store.identity(record["config"]), store.identity(s.cfg))
    if changed:
        raise ConfigError(
            f"{run_dir} holds a finished run with other settings ({', '.join(changed)}); "
            f"give this run its own directory with path_keys=[{','.join(changed)}], or set experiment_name "
            "or results_dir (force=true replaces the finished run)"
        )
    log.info("skipped (already %s): %s", record["status"], run_dir)
    return record


class Recording:
    """One run's record while it trains: the metric rows, the W&B mirror, then run.json.

    ``save`` writes metrics.parquet and run.json (last: its presence marks the run finished);
    ``fail`` leaves a ``failed`` record instead, unless the run was already saved; ``close``
    finishes the mirror after a save.
    """

    def __init__(self, s: Settings, run_dir: Path, **extra: Any):
        cfg = s.cfg
        self.run_dir, self.rows, self.saved = run_dir, [], False
        self.name = f"{cfg['task']['name']}__{s.opt.name}__{run_dir.parent.name}__seed={s.seed}"
        self.mirror = Mirror(
            cfg["wandb"], run_dir, name=self.name,
            group=f"{cfg['experiment_name']}__{cfg['task']['name']}__{s.opt.name}",
            job_type=cfg["stage"],
            tags=[cfg["task"]["name"], s.opt.name, cfg["experiment_name"], cfg["stage"]],
            config=cfg,
        )
        self.t0 = time.perf_counter()
        self.base = {"schema_version": store.SCHEMA_VERSION, "run_dir": str(run_dir), "config": cfg,
                     "selection": dataclasses.asdict(s.task.selection),
                     "started_at": datetime.now(UTC).isoformat(), "environment": environment(s.device),
                     **extra}

    def record(self, step: int, epoch: float, split: str, metrics: dict[str, float], time_s: float):
        self.rows.extend(dict(step=step, epoch=epoch, split=split, metric=k, value=v, time_s=time_s)
                         for k, v in metrics.items())
        self.mirror.log(step, epoch, split, metrics, time_s)

    def save(self, outcome: Outcome) -> dict:
        with store.saving(self.run_dir):
            store.write_metrics(self.run_dir / "metrics.parquet", self.rows)
            result = {
                **self.base, "status": outcome.status, "reason": outcome.reason, "final": outcome.final,
                "steps": outcome.steps, "epochs": outcome.epochs, "train_time_s": outcome.train_time_s,
                "wall_time_s": time.perf_counter() - self.t0, "finished_at": datetime.now(UTC).isoformat(),
            }
            store.write_json(self.run_dir / "run.json", result)  # last: marks the run finished
        self.saved = True
        return result

    def fail(self, e: BaseException) -> None:
        if not self.saved:
            _record_failure(self.run_dir, self.base, e, self.t0)
            self.mirror.finish("failed", {})

    def close(self, result: dict) -> None:
        self.mirror.finish(result["status"], result["final"], record=result)
        log.info("%s: %s in %.1fs -> %s", result["status"], self.name, result["wall_time_s"], self.run_dir)


def show_progress(cfg: Mapping[str, Any]) -> bool:
    return sys.stderr.isatty() if cfg["progress"] == "auto" else bool(cfg["progress"])


def _train(runs: list[tuple[Settings, Path]], task: Task, data: Data, vectorized: bool) -> list[dict]:
    """Train ``runs`` side by side (one model, or a population): init, batches and hyperparameters
    each as its own run's; save each run's files, or leave each ``failed`` on an error."""
    size = len(runs)
    recordings = [Recording(s, d, **({"vectorized": {"members": size, "index": i}} if vectorized else {}))
                  for i, (s, d) in enumerate(runs)]
    first = runs[0][0]
    try:
        models = []
        for s, _ in runs:
            torch.manual_seed(derived_seed(s.seed, 0))
            models.append(s.task.build_model().to(s.device))
        if vectorized:
            members = Population(task, models)
            optimizer = build_optimizer(members, [s.opt for s, _ in runs])
        else:
            members, optimizer = Single(task, models[0]), optimizers.build(models[0].parameters(), first.opt)
        outcomes = fit_members(
            task, members, optimizer, data, first.train,
            batch_generators=[torch.Generator().manual_seed(derived_seed(s.seed, 1)) for s, _ in runs],
            records=[r.record for r in recordings], progress=show_progress(first.cfg),
        )
        results = [r.save(o) for r, o in zip(recordings, outcomes, strict=True)]
    except BaseException as e:
        for r in recordings:
            r.fail(e)
        raise
    for r, result in zip(recordings, results, strict=True):
        r.close(result)
    return results


def _record_failure(run_dir: Path, base: dict, e: BaseException, t0: float) -> None:
    """Leave a ``failed`` record (never counted as finished; the next attempt redoes the run)."""
    (run_dir / "metrics.parquet").unlink(missing_ok=True)
    try:
        store.write_json(run_dir / "run.json", {
            **base, "status": "failed", "reason": f"{type(e).__name__}: {e}".splitlines()[0],
            "wall_time_s": time.perf_counter() - t0,
        })
    except OSError:
        pass  # e.g. the disk is full: no record at all also reads as unfinished


def main() -> None:
    """``python -m nesterov_bench.train``: one run, or with -m a Hydra sweep of runs."""
    command_line(run, prog="nesterov-train", about=ABOUT)


ABOUT = """Train one run -- a task x an optimizer x a seed -- recorded as a run directory of plain files
(run.json, metrics.parquet); with -m, a sweep of runs, each skipped if it already finished.

    nesterov-train task=mnist_logreg optimizer=nesterov seed=0
    nesterov-train -m optimizer=gd,momentum,nesterov,adam seed=0,1"""


if __name__ == "__main__":
    main()
