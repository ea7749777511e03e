"""Turn Hydra's multi-line composition errors into one line that says what to change.

``check_overrides`` composes the config for the command line's overrides (for a sweep, once per
swept value) and validates it with ``train.resolve`` -- before Hydra starts and before anything is
written -- so a typo costs one line on stderr and exit status 2, never a half-made results tree.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig

from .errors import ConfigError

GROUPS = ("task", "optimizer", "profile", "experiment")


def _conf_dir():
    from .train import CONF_DIR

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
            options = sorted(p.stem for p in (_conf_dir() / group).glob("*.yaml"))
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
    from omegaconf import OmegaConf

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


def check_overrides(argv: list[str], check: Callable[[dict], Any] | None = None) -> None:
    """Validate a command line's config overrides (and ``check`` each resolved config, when given);
    raise ConfigError with a one-line message."""
    from .train import resolve

    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return  # Hydra's own flags (--help, --cfg job, ...): let Hydra answer them
    overrides = [a for a in argv if not a.startswith("-") and not a.lstrip("~").startswith("hydra")]
    multirun = bool(flags)
    try:
        variants = _variants(overrides) if multirun else [overrides]
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    for variant in variants:
        settings = resolve(compose_config(variant))
        if check is not None:
            check(settings.cfg)
        if multirun:  # Hydra writes its sweep folder under results_dir before the first run starts
            check_writable(settings.cfg["results_dir"])


def check_writable(results_dir: str) -> None:
    """Refuse a results_dir that cannot be created or written (a file in the way, a read-only place)."""
    path = Path(results_dir).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        why = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing} is not writable"
    else:
        return
    raise ConfigError(f"results_dir={results_dir}: cannot create {path} ({why}); "
                      "set results_dir to a writable folder")
