"""The command line of ``train`` and ``members``: check everything, then hand over to Hydra.

``command_line(job)`` composes the config for the command line's overrides (for a sweep, once per
swept value) and validates it with ``config.resolve`` -- before Hydra starts and before anything is
written -- so a typo costs one line on stderr and exit status 2, never a half-made results tree. It
answers ``--help`` itself, and a Ctrl-C with one line and exit status 130.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR, store
from .config import USER_GROUPS, check_list_sweeps, compose, group_options, register_resolvers, resolve
from .errors import ConfigError

Job = Callable[[DictConfig], Any]


def command_line(job: Job, *, prog: str, about: str, regroup: Callable[[list[str]], list[str]] | None = None,
                 check: Callable[[dict], Any] | None = None) -> None:
    """Check the command line's overrides, then let Hydra call ``job(cfg)`` once, or once per setting
    of a -m sweep. ``regroup`` rewrites a sweep's overrides first; ``check`` validates each composed
    config beyond ``resolve``; ``prog`` (the installed command) and ``about`` make the ``--help`` page."""
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        print(help_text(prog, about))
        return
    flags = [a for a in args if a.startswith("-")]
    multirun = bool(flags) and all(f in ("-m", "--multirun") for f in flags)
    try:
        if multirun and regroup is not None:
            args = [*flags, *regroup([a for a in args if not a.startswith("-")])]
        checked = check_overrides(args, check=check)
    except ConfigError as e:
        _fail(e, 2)
    if multirun:  # Hydra's parser takes -m only before the overrides; accept it anywhere on the line.
        args = [*flags, *(a for a in args if not a.startswith("-"))]
    sys.argv[1:] = [*args, *checked.extra]
    exe = Path(sys.executable).parent / prog  # Hydra's completion line then names the installed command
    if sys.argv[0].endswith(".py") and exe.exists():
        sys.argv[0] = str(exe)
    register_resolvers()
    # After a Ctrl-C, joblib's worker pool would add "leaked semaphore objects" warnings to the one line.
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"),
                                                          "ignore:resource_tracker:UserWarning"]))
    started = time.time()
    try:
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(_guarded(job))()
    except KeyboardInterrupt:
        done = sum(store.finished_since(Path(d), started) for d in checked.results_dirs)
        print(f"interrupted: {done} run{'' if done == 1 else 's'} finished, rerun the same command to resume",
              file=sys.stderr)
        sys.exit(130)


def _fail(e: Exception, code: int) -> NoReturn:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(code)


def _guarded(job: Job) -> Job:
    """``job`` as Hydra calls it: a refused setting exits 2, a save error 1, each as one line; a job
    of a parallel launcher draws no progress bar and leaves reporting Ctrl-C to the launching process."""

    def entry(cfg: DictConfig) -> None:
        parallel = HydraConfig.initialized() and "BasicLauncher" not in HydraConfig.get().launcher.get(
            "_target_", "")
        if cfg.progress == "auto" and parallel:
            cfg.progress = False  # bars of jobs side by side would overwrite each other's lines
        try:
            job(cfg)
        except ConfigError as e:
            _fail(e, 2)
        except store.SaveError as e:  # disk full, a write error: a fault, not a bad setting
            _fail(e, 1)
        except KeyboardInterrupt:
            if parallel:
                sys.exit(130)
            raise

    return entry


@dataclass
class Checked:
    """What checking a command line found: overrides to add before Hydra runs, and the results roots
    its runs write to."""

    extra: list[str] = field(default_factory=list)
    results_dirs: set[str] = field(default_factory=set)


def check_overrides(argv: list[str], check: Callable[[dict], Any] | None = None) -> Checked:
    """Validate a command line's config overrides (and ``check`` each resolved config, when given);
    raise ConfigError with a one-line message.

    For a sweep, two swept values that change a run's numbers but not its directory (a swept
    ``train.batch_size``: the run path names lr, momentum and seed) would collide at one path; the
    settings that tell them apart are returned as ``path_keys=[...]``, which adds them to the path.
    """
    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return Checked()  # Hydra's own flags (--cfg job, --info, ...): let Hydra answer them
    overrides = [a for a in argv if not a.startswith("-") and not a.lstrip("~").startswith("hydra")]
    try:
        if flags:
            check_list_sweeps(overrides)
        variants = _variants(overrides) if flags else [overrides]
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    checked, by_path = Checked(), {}
    for variant in variants:
        composed = compose(variant)
        try:
            cfg = resolve(composed).cfg
            if check is not None:
                check(cfg)
        except ConfigError as e:
            raise ConfigError(_as_written(str(e), composed, variant)) from None
        checked.results_dirs.add(cfg["results_dir"])
        check_writable(cfg["results_dir"])  # (a sweep: Hydra writes there before the first run starts)
        by_path.setdefault(store.run_path(cfg), []).append(store.identity(cfg))
    keys = sorted({k for ids in by_path.values() for other in ids[1:]
                   for k in store.differences(ids[0], other)})
    if keys:
        given = next((v for v in variants[0] if v.startswith("path_keys=")), None)
        if given is not None:
            raise ConfigError(f"the sweep's runs would share a directory: add {', '.join(keys)} to {given}")
        checked.extra.append(f"path_keys=[{','.join(keys)}]")
    return checked


def _variants(overrides: list[str]) -> list[list[str]]:
    """One override list per swept value (the other sweeps held at their first value)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = {i: list(o.sweep_string_iterator()) for i, o in enumerate(parsed) if o.is_sweep_override()}
    if not sweeps:
        return [overrides]
    firsts = {i: vals[0] for i, vals in sweeps.items()}
    return [[f"{o.get_key_element()}={chosen[j]}" if j in chosen else overrides[j]
             for j, o in enumerate(parsed)]
            for i, values in sweeps.items() for chosen in ({**firsts, i: v} for v in values)]


def _as_written(message: str, cfg: DictConfig, overrides: list[str]) -> str:
    """``message`` with each value that an override interpolated (``optimizer.lr=${oc.env:HOME}``)
    shown as written, not resolved: an error line must never print an environment variable's value."""
    for o in overrides:
        key, _, value = o.partition("=")
        if "${" not in value:
            continue
        try:
            resolved = OmegaConf.select(cfg, key.lstrip("+~"), throw_on_missing=False)
        except Exception:  # noqa: BLE001 -- an interpolation that does not resolve: nothing to hide
            continue
        if resolved is not None and str(resolved) != "":
            message = message.replace(repr(resolved), repr(value)).replace(str(resolved), value)
    return message


def check_writable(results_dir: str) -> None:
    """Refuse a results_dir that cannot be created or written (a file in the way, a read-only place).

    The nearest existing folder is probed by making (and removing) a folder in it: permission bits
    say yes to root in places where nothing can be made (``/proc``, a read-only mount)."""
    path = Path(results_dir).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        why = f"{existing} is not a folder"
    else:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=existing))
            return
        except OSError as e:
            why = f"nothing can be made in {existing}: {e.strerror or type(e).__name__}"
    raise ConfigError(f"results_dir={results_dir}: cannot create {path} ({why}); "
                      "set results_dir to a writable folder")


#: The settings ``--help`` lists with their defaults.
COMMON_SETTINGS = ("seed", "optimizer.lr", "optimizer.momentum", "train.epochs", "train.batch_size",
                   "train.max_steps", "device", "threads", "results_dir", "experiment_name",
                   "wandb.mode", "force")


def help_text(prog: str, about: str) -> str:
    """The ``--help`` page of a command: what it does, the groups a user picks, the settings."""
    cfg = compose([])
    lines = [f"usage: {prog} [-m] [group=option ...] [key=value ...]", "", about.strip(), "",
             "Config groups (group=option):"]
    lines += [f"  {g:<11} {', '.join(group_options(g))}" for g in USER_GROUPS]
    lines += ["", "Settings you will reach for (key=value; each documented with its unit in conf/):"]
    for key in COMMON_SETTINGS:
        value = OmegaConf.select(cfg, key, default="")
        shown = {None: "null", True: "true", False: "false"}[value] if value is None or isinstance(
            value, bool) else value
        lines.append(f"  {key}={shown}")
    lines += ["", "Flags:",
              "  -m, --multirun   sweep: comma lists (seed=0,1,2) or an experiment's grid, one run each",
              "  --cfg job        print the composed config and stop",
              "  --hydra-help     Hydra's own flags (launchers, --info, shell completion)",
              "", f"Shell completion (bash): eval \"$({prog} -sc install=bash)\"",
              "Results: <results_dir>/runs/<experiment>/<stage>/<task>/<optimizer>/<lr,...>/seed=<s>/"]
    return "\n".join(lines)
