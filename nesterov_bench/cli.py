"""Turn Hydra's multi-line composition errors into one line that says what to change.

``check_overrides`` composes the config for the command line's overrides (for a sweep, once per
swept value) and validates it with ``train.resolve`` -- before Hydra starts and before anything is
written -- so a typo costs one line on stderr and exit status 2, never a half-made results tree.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from . import store
from .config import CONF_DIR, USER_GROUPS, group_options
from .errors import ConfigError

def _conf_dir():
    return CONF_DIR


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` with overrides; Hydra errors become one-line ConfigErrors."""
    try:
        with initialize_config_dir(config_dir=str(_conf_dir()), version_base="1.3"):
            return compose("config", overrides=overrides)
    except MissingConfigException as e:
        m = re.search(r"Could not find '([^/']+)/([^']*)'", str(e))
        if m:
            group, name = m.groups()
            options = group_options(group)
            raise ConfigError(
                f"unknown {group} {name!r}; choose one of: {', '.join(options)}"
            ) from None
        raise ConfigError(str(e).splitlines()[0]) from None
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse {str(e).splitlines()[0].removeprefix('Error parsing ')}: "
                          "write overrides as key=value") from None
    except HydraException as e:
        msg = str(e)
        m = re.match(r"Could not override '([^']+)'", msg)
        if m:
            raise ConfigError(_unknown_key(m.group(1), overrides)) from None
        m = re.match(r"Ambiguous value for argument '([^']+)'", msg)
        if m:
            raise ConfigError(
                f"{m.group(1)} lists several values: add -m to sweep over them, or quote the value"
            ) from None
        raise ConfigError(msg.splitlines()[0]) from None


def _unknown_key(key: str, overrides: list[str]) -> str:
    rest = [o for o in overrides if not o.startswith(key + "=")]
    try:
        keys = list(_dotted_keys(compose_config(rest)))
    except ConfigError:
        keys = []
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else " (see conf/config.yaml and conf/<group>/)"
    return f"unknown setting {key}{hint}"


def _dotted_keys(cfg, prefix: str = "") -> Iterator[str]:
    for k, v in cfg.items():
        if isinstance(v, DictConfig):
            yield from _dotted_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def _variants(overrides: list[str]) -> list[list[str]]:
    """One override list per swept value (the other sweeps held at their first value)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = {i: list(o.sweep_string_iterator()) for i, o in enumerate(parsed) if o.is_sweep_override()}
    if not sweeps:
        return [overrides]
    firsts = {i: vals[0] for i, vals in sweeps.items()}
    variants = []
    for i, values in sweeps.items():
        for v in values:
            chosen = {**firsts, i: v}
            variants.append([
                f"{o.get_key_element()}={chosen[j]}" if j in chosen else overrides[j]
                for j, o in enumerate(parsed)
            ])
    return variants


def sweeper_params(overrides: list[str]) -> dict[str, str]:
    """The experiment's ``hydra.sweeper.params`` for these overrides, resolved: ``{key: "a,b,c"}``."""
    try:
        with initialize_config_dir(config_dir=str(_conf_dir()), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        params = cfg.hydra.sweeper.params
        params = {} if params is None else OmegaConf.to_container(params, resolve=True)
    except HydraException:
        compose_config(overrides)  # raises the one-line ConfigError for what is wrong
        raise
    return {str(k): str(v) for k, v in params.items()}


def swept_values(key: str, value: str) -> list[str]:
    """The values ``key=value`` sweeps over, as Hydra's basic sweeper expands them (``range(0,3)``,
    ``a,b``); one value for a plain override."""
    parsed = OverridesParser.create().parse_override(f"{key}={value}")
    return list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [str(value)]


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
    from .train import resolve

    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return Checked()  # Hydra's own flags (--cfg job, --info, ...): let Hydra answer them
    overrides = [a for a in argv if not a.startswith("-") and not a.lstrip("~").startswith("hydra")]
    multirun = bool(flags)
    try:
        variants = _variants(overrides) if multirun else [overrides]
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    checked, by_path = Checked(), {}
    for variant in variants:
        composed = compose_config(variant)
        try:
            settings = resolve(composed)
            if check is not None:
                check(settings.cfg)
        except ConfigError as e:
            raise ConfigError(_as_written(str(e), composed, variant)) from None
        cfg = settings.cfg
        checked.results_dirs.add(cfg["results_dir"])
        check_writable(cfg["results_dir"])  # (a sweep: Hydra writes there before the first run starts)
        if multirun:
            by_path.setdefault(store.run_path(cfg), []).append(store.identity(cfg))
    keys = sorted({k for ids in by_path.values() for other in ids[1:] for k in store.differences(ids[0], other)})
    if keys:
        given = next((v for v in variants[0] if v.startswith("path_keys=")), None)
        if given is not None:
            raise ConfigError(f"the sweep's runs would share a directory: add {', '.join(keys)} to {given}")
        checked.extra.append(f"path_keys=[{','.join(keys)}]")
    return checked


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
        if resolved is None or str(resolved) == "":
            continue
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


def help_text(prog: str, about: str) -> str:
    """The ``--help`` page of an entry point: what it does, the groups a user picks, the settings."""
    try:
        cfg = compose_config([])
    except ConfigError:
        cfg = None
    lines = [f"usage: {prog} [-m] [group=option ...] [key=value ...]", "", about.strip(), "",
             "Config groups (group=option):"]
    lines += [f"  {g:<11} {', '.join(group_options(g))}" for g in USER_GROUPS]
    lines += ["", "Settings you will reach for (key=value; each documented with its unit in conf/):"]
    for key in COMMON_SETTINGS:
        value = OmegaConf.select(cfg, key, default="") if cfg is not None else ""
        lines.append(f"  {key}={_as_override(value)}")
    lines += ["", "Flags:",
              "  -m, --multirun   sweep: comma lists (seed=0,1,2) or an experiment's grid, one run each",
              "  --cfg job        print the composed config and stop",
              "  --hydra-help     Hydra's own flags (launchers, --info, shell completion)",
              "", "Shell completion (bash): eval \"$(nesterov-train -sc install=bash)\"",
              "Results: <results_dir>/runs/<experiment>/<stage>/<task>/<optimizer>/<lr,...>/seed=<s>/"]
    return "\n".join(lines)


def _as_override(value: Any) -> str:
    """A default as one would type it on the command line (null, true, 0.01)."""
    return {None: "null", True: "true", False: "false"}.get(value, value) if isinstance(
        value, bool | type(None)) else str(value)


#: The settings ``--help`` lists with their defaults.
COMMON_SETTINGS = ("seed", "optimizer.lr", "optimizer.momentum", "train.epochs", "train.batch_size",
                   "train.max_steps", "device", "threads", "results_dir", "experiment_name",
                   "wandb.mode", "force")
