"""Train one run: one task x one optimizer x one seed, recorded as a run directory.

    python -m nesterov_bench.train task=mnist_logreg optimizer=nesterov seed=0
    python -m nesterov_bench.train -m optimizer=gd,momentum,nesterov,adam seed=0,1   # a sweep

Everything a run needs is checked before anything is written: a bad setting is one line on
stderr, exit status 2, and no run directory. A write error while saving (a full disk) is one line
too, exit status 1, and leaves the run unfinished. A run whose directory already holds a finished
record is skipped (``force=true`` redoes it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import optimizers, protocol, store
from .config import CONF_DIR
from .env import environment
from .errors import ConfigError
from .loop import Outcome, TrainConfig, fit
from .tasks import Task, make_task
from .tracking import MODES, Mirror

protocol.register_resolvers()  # ${tuned_lr:...} in experiment=final
log = logging.getLogger("nesterov_bench")
TOP_LEVEL = {"seed", "device", "threads", "deterministic", "results_dir", "experiment_name", "stage",
             "force", "progress", "task", "optimizer", "train", "data", "wandb", "lr_index",
             "lr_grid", "sweep", "members", "path_keys"}


@dataclass
class Settings:
    """A run's config, validated: everything ``run`` needs, and nothing touched on disk yet."""

    cfg: dict  # the resolved config as plain containers (what run.json records)
    task: Task
    opt: optimizers.OptimizerConfig
    train: TrainConfig
    device: torch.device
    seed: int


def resolve(cfg: DictConfig | Mapping[str, Any]) -> Settings:
    """Validate a composed config; raise ConfigError (one line) on the first bad setting."""
    cfg = plain(cfg)
    unknown = sorted(set(cfg) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"unknown setting {', '.join(unknown)}")
    seed = cfg["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    for key in ("experiment_name", "stage"):
        name = cfg[key]
        if not isinstance(name, str) or not name or "/" in name or "\0" in name or name.startswith("."):
            raise ConfigError(f"{key} must be a folder name (not empty, no '/', not starting with '.'), "
                              f"got {name!r}")
    if not isinstance(cfg["results_dir"], str) or not cfg["results_dir"].strip():
        raise ConfigError(f"results_dir must name a folder, got {cfg['results_dir']!r}; "
                          "e.g. results_dir=results")
    check_path_keys(cfg)
    threads = cfg["threads"]
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or threads < 1):
        raise ConfigError(f"threads must be a positive integer or null, got {threads!r}")
    if cfg["progress"] not in ("auto", True, False):
        raise ConfigError(f"progress must be auto, true or false, got {cfg['progress']!r}")
    if cfg["wandb"]["mode"] not in MODES:
        raise ConfigError(f"wandb.mode must be one of {', '.join(MODES)}, got {cfg['wandb']['mode']!r}")
    return Settings(
        cfg=cfg,
        task=make_task(cfg["task"]),
        opt=optimizers.OptimizerConfig.from_mapping(cfg["optimizer"]),
        train=TrainConfig.from_mapping(cfg["train"]),
        device=resolve_device(cfg["device"]),
        seed=seed,
    )


def check_path_keys(cfg: dict) -> None:
    """``path_keys``: a list of dotted settings of this config that change a run's numbers."""
    keys = cfg.get("path_keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"path_keys must be a list of settings, e.g. [train.batch_size], got {keys!r}")
    for key in keys:
        try:
            store.lookup(cfg, key)
        except KeyError:
            raise ConfigError(f"path_keys names {key}, which is not a setting of this config") from None
        if key.split(".")[0] in store.NOT_IDENTITY or key in store.NOT_IDENTITY:
            raise ConfigError(f"path_keys names {key}, which does not change a run's numbers")


def plain(cfg: DictConfig | Mapping[str, Any]) -> dict:
    """A composed config as plain containers, interpolations resolved (one-line error otherwise)."""
    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # noqa: BLE001 -- an interpolation that cannot resolve
            raise ConfigError(f"config does not resolve: {str(e).splitlines()[0]}") from None
    return dict(cfg)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but torch sees no CUDA GPU here; use device=cpu or device=auto")
        return torch.device("cuda")
    raise ConfigError(f"device must be auto, cpu or cuda, got {name!r}")


def derived_seed(seed: int, purpose: int) -> int:
    """Independent streams from one seed (model init = 0, batch order = 1): no two share a stream."""
    return int(np.random.SeedSequence([seed, purpose]).generate_state(1)[0])


def configure_torch(s: Settings) -> None:
    """Threads and determinism, as the config says (before any tensor work of the run)."""
    if s.cfg["threads"] is not None:
        torch.set_num_threads(s.cfg["threads"])
    if s.device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(bool(s.cfg["deterministic"]), warn_only=False)


def run(cfg: DictConfig | Mapping[str, Any]) -> dict:
    """Train (or skip, if already finished) the run the config describes; return its record."""
    s = resolve(cfg)
    members = s.cfg.get("members") or {}
    if members.get("seeds") is not None or members.get("lrs") is not None:
        raise ConfigError("members.seeds and members.lrs are read by python -m nesterov_bench.members; "
                          "train runs one seed and one optimizer.lr")
    configure_torch(s)

    run_dir = store.run_path(s.cfg)
    if store.is_finished(run_dir) and not s.cfg["force"]:
        return skip(run_dir, s)

    # Everything that can be refused is checked before the run directory exists.
    data = s.task.load_data(s.cfg["data"], s.device)
    s.train.check_against(len(data.train))

    with ExitStack() as lock:
        record = claim(s, run_dir, lock)
        return _train(s, data, run_dir) if record is None else record


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
    """The finished run's record, after checking it was made with the same settings."""
    record = store.read_run(run_dir)
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


def _train(s: Settings, data, run_dir: Path) -> dict:
    rec = Recording(s, run_dir)
    try:
        torch.manual_seed(derived_seed(s.seed, 0))
        model = s.task.build_model().to(s.device)
        opt = optimizers.build(model.parameters(), s.opt)
        outcome = fit(
            s.task, model, opt, data, s.train,
            batch_generator=torch.Generator().manual_seed(derived_seed(s.seed, 1)),
            record=rec.record, progress=show_progress(s.cfg),
        )
        result = rec.save(outcome)
    except BaseException as e:
        rec.fail(e)
        raise
    rec.close(result)
    return result


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


# --- command line -------------------------------------------------------------------------------

def main() -> None:
    """Entry point: one run, or with -m a Hydra sweep of runs."""
    command_line(run, prog="nesterov-train", about="\n\n".join(__doc__.split("\n\n")[:2]))


def command_line(job: Callable[[DictConfig], Any], *, prog: str, about: str,
                 regroup: Callable[[list[str]], list[str]] | None = None,
                 check: Callable[[dict], Any] | None = None) -> None:
    """Check the command line's overrides (an error is one line, exit status 2), then hand over to
    Hydra, which calls ``job(cfg)`` once, or once per setting of a -m sweep. ``regroup`` rewrites a
    sweep's overrides first; ``check`` validates each composed config beyond ``resolve``. ``prog``
    (the installed entry point) and ``about`` make the ``--help`` page. Ctrl-C ends with one line and
    exit status 130: what finished is on disk, and the same command resumes."""
    from .cli import check_overrides, help_text

    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        print(help_text(prog, about))
        return
    _point_at_entry_point(prog)
    flags = [a for a in args if a.startswith("-")]
    multirun = bool(flags) and all(f in ("-m", "--multirun") for f in flags)
    try:
        if multirun and regroup is not None:
            args = [*flags, *regroup([a for a in args if not a.startswith("-")])]
        checked = check_overrides(args, check=check)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if multirun:  # Hydra's parser takes -m only before the overrides; accept it anywhere on the line.
        args = [*flags, *(a for a in args if not a.startswith("-"))]
    sys.argv[1:] = [*args, *checked.extra]

    def entry(cfg: DictConfig) -> None:
        if cfg.progress == "auto" and _parallel_launcher():
            cfg.progress = False  # bars of jobs side by side would overwrite each other's lines
        try:
            job(cfg)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except store.SaveError as e:  # disk full, a write error: a fault, not a bad setting
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            if _parallel_launcher():  # a worker: its launcher reports the interruption once
                sys.exit(130)
            raise

    import hydra

    started = time.time()
    try:
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(entry)()
    except KeyboardInterrupt:
        done = sum(store.finished_since(Path(d), started) for d in checked.results_dirs)
        print(f"interrupted: {done} run{'s' if done != 1 else ''} finished, "
              "rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def _point_at_entry_point(prog: str) -> None:
    """Make Hydra's shell-completion line name the installed entry point (``nesterov-train``): for
    ``python -m`` it would print ``python .../train.py``, which cannot be run as a script."""
    exe = Path(sys.executable).parent / prog
    if sys.argv[0].endswith(".py") and exe.exists():
        sys.argv[0] = str(exe)


def _parallel_launcher() -> bool:
    """Whether this job runs under a launcher that runs jobs side by side (joblib, SLURM)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    target = HydraConfig.get().launcher.get("_target_", "")
    return "BasicLauncher" not in target


if __name__ == "__main__":
    main()
