"""The configuration: how conf/ composes, what a valid run config is, and the config resolvers.

``compose(overrides)`` composes ``conf/config.yaml`` as the command line would (Hydra's multi-line
errors become one-line ``ConfigError``s that say what to change); ``resolve(cfg)`` validates a
composed config into ``Settings`` -- everything a run needs, nothing touched on disk. The resolvers
(``${tuned_trial:}``, ``${tuned_value:}``, ``${classic:}``, ``${scaled_lr:}``, ``${stability_lrs:}``,
``${noisy_setting:}``, ...) are registered by ``register_resolvers``, which ``compose`` and the command line
call: importing a module registers nothing.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR, THEORY_DIR, store, theory
from .errors import ConfigError
from .optimizer_config import OptimizerConfig, hyperparameters
from .tasks import Task, make_task
from .tracking import MODES
from .train_config import TrainConfig, positive_int

#: The config groups a user picks on the command line (``budget/`` is chosen by the profile).
USER_GROUPS = ("task", "optimizer", "profile", "experiment", "schedule", "decay", "tuning")
TOP_LEVEL = {"seed", "device", "threads", "deterministic", "results_dir", "experiment_name", "stage",
             "force", "progress", "task", "optimizer", "train", "data", "wandb", "trial", "space", "sweep",
             "members", "path_keys"}


def group_options(group: str) -> list[str]:
    """The options of a config group: the names of ``conf/<group>/*.yaml``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# --- composing ----------------------------------------------------------------------------------

def compose(overrides: list[str], *, hydra: bool = False) -> DictConfig:
    """``conf/config.yaml`` with command-line overrides (with Hydra's own node when ``hydra``)."""
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=overrides, return_hydra_config=hydra)
    except MissingConfigException as e:
        m = re.search(r"Could not find '([^/']+)/([^']*)'", str(e))
        if m:
            group, name = m.groups()
            raise ConfigError(f"unknown {group} {name!r}; choose one of: {', '.join(group_options(group))}"
                              ) from None
        raise ConfigError(str(e).splitlines()[0]) from None
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse {str(e).splitlines()[0].removeprefix('Error parsing ')}: "
                          "write overrides as key=value") from None
    except HydraException as e:
        msg = str(e)
        if m := re.match(r"Could not override '([^']+)'", msg):
            raise ConfigError(_unknown_key(m.group(1), overrides)) from None
        if m := re.match(r"Ambiguous value for argument '([^']+)'", msg):
            raise ConfigError(f"{m.group(1)} lists several values: add -m to sweep over them, "
                              "or quote the value") from None
        raise ConfigError(msg.splitlines()[0]) from None


def _unknown_key(key: str, overrides: list[str]) -> str:
    try:
        keys = list(_dotted_keys(compose([o for o in overrides if not o.startswith(key + "=")])))
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


def sweeper_params(overrides: list[str]) -> dict[str, str]:
    """The experiment's ``hydra.sweeper.params`` for these overrides, resolved: ``{key: "a,b,c"}``."""
    params = compose(overrides, hydra=True).hydra.sweeper.params
    params = {} if params is None else OmegaConf.to_container(params, resolve=True)
    return {str(k): str(v) for k, v in params.items()}


def check_list_sweeps(overrides: list[str]) -> None:
    """Refuse a sweep over a ``sweep.*`` list that the experiment's own sweep reads (``seed:
    ${sweep.final_seeds}``): Hydra would sweep the list itself, so every run of the experiment would be
    launched once per value of it. Quoted, the override sets the list (``sweep.final_seeds='range(0,5)'``)."""
    parser = OverridesParser.create()
    sweeps = [o for o in overrides if "=" in o and o.startswith("sweep.")
              and parser.parse_override(o).is_sweep_override()]
    if not sweeps:
        return
    plain = [o for o in overrides if o not in sweeps and not parser.parse_override(o).is_sweep_override()]
    params = compose(plain, hydra=True).hydra.sweeper.params
    raw = "" if params is None else str(OmegaConf.to_container(params, resolve=False))
    for o in sweeps:
        key, value = o.split("=", 1)
        if "${" + key + "}" in raw:
            raise ConfigError(f"{key} is a list the sweep reads, and {o} would sweep over it (every run once "
                              f"per value); quote it to set the list: {key}='{value}'")


def swept_values(key: str, value: str) -> list[str]:
    """The values ``key=value`` sweeps over, as Hydra's basic sweeper expands them (``range(0,3)``,
    ``a,b``); one value for a plain override."""
    parsed = OverridesParser.create().parse_override(f"{key}={value}")
    return list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [str(value)]


# --- validating ---------------------------------------------------------------------------------

@dataclass
class Settings:
    """A run's config, validated: everything a run needs, and nothing touched on disk yet."""

    cfg: dict  # the resolved config as plain containers (what run.json records)
    task: Task
    opt: OptimizerConfig
    train: TrainConfig
    device: torch.device
    seed: int


def resolve(cfg: DictConfig | Mapping[str, Any]) -> Settings:
    """Validate a composed config; raise ConfigError (one line) on the first bad setting. A ``trial``
    sets the optimizer's hyperparameters from its tuning space first (``with_trial``)."""
    cfg = with_trial(plain(cfg))
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
    _check_path_keys(cfg)
    threads = cfg["threads"]
    if threads is not None and not positive_int(threads):
        raise ConfigError(f"threads must be a positive integer or null, got {threads!r}")
    if cfg["progress"] not in ("auto", True, False):
        raise ConfigError(f"progress must be auto, true or false, got {cfg['progress']!r}")
    if cfg["wandb"]["mode"] not in MODES:
        raise ConfigError(f"wandb.mode must be one of {', '.join(MODES)}, got {cfg['wandb']['mode']!r}")
    s = Settings(cfg=cfg, task=make_task(cfg["task"]), opt=OptimizerConfig.from_mapping(cfg["optimizer"]),
                 train=TrainConfig.from_mapping(cfg["train"]), device=resolve_device(cfg["device"]),
                 seed=seed)
    if s.train.precision == "bf16" and cfg["task"].get("dtype") == "float64":
        raise ConfigError("train.precision=bf16 would change nothing: autocast leaves float64 alone, and "
                          f"task {cfg['task']['name']} computes in float64 (task.dtype=float64); drop one")
    if s.train.momentum_schedule is not None and "momentum" not in hyperparameters(s.opt):
        raise ConfigError(f"train.momentum_schedule ramps momentum, which optimizer {s.opt.name} does not "
                          "have; use schedule=none or a momentum optimizer")
    return s


def space_size(space: Mapping[str, list]) -> int:
    """The number of points (trials) of a tuning space: the product of its lists' lengths (0: none)."""
    return math.prod(len(values) for values in space.values()) if space else 0


def space_point(space: Mapping[str, list], trial: int) -> dict[str, float]:
    """Point ``trial`` of a tuning space (``{"lr": [...], "momentum": [...]}``, the product of its lists):
    the first key varies fastest, so trial = i_lr + len(lr) * i_momentum."""
    size = space_size(space)
    if not isinstance(trial, int) or isinstance(trial, bool) or not 0 <= trial < size:
        raise ConfigError(f"trial must be an integer in [0, {size - 1}] (the tuning space has {size} "
                          f"points), got {trial!r}")
    point = {}
    for key, values in space.items():
        trial, i = divmod(trial, len(values))
        point[key] = float(values[i])
    return point


def with_trial(cfg: dict) -> dict:
    """``cfg`` with ``optimizer.*`` set from ``space[trial]`` (``beta1`` is Adam's ``betas[0]``); as
    given when ``trial`` is null."""
    trial = cfg.get("trial")
    if trial is None:
        return cfg
    space = cfg.get("space") or {}
    if not space:
        raise ConfigError(f"trial={trial}, but optimizer {cfg['optimizer'].get('name')} has no tuning space "
                          f"under protocol {cfg.get('sweep', {}).get('protocol')} (conf/space/)")
    opt = dict(cfg["optimizer"])
    for key, value in space_point(space, trial).items():
        if key == "beta1":
            opt["betas"] = [value, opt["betas"][1]]
        elif key in opt:
            opt[key] = value
        else:
            raise ConfigError(f"the tuning space names {key}, which optimizer {opt.get('name')} does not "
                              "take")
    return {**cfg, "optimizer": opt}


def _check_path_keys(cfg: dict) -> None:
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
        register_resolvers()
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


# --- resolvers ----------------------------------------------------------------------------------

def tuned_trial(results_dir: str, name: str, task: str, optimizer: str, by: str = "final") -> int:
    """``${tuned_trial:results_dir,name,task,optimizer,by}``: the trial the selection chose by ``by``
    (final | speed)."""
    path = store.tuned_path(results_dir, name)
    hint = f"run `python -m nesterov_bench.select --profile {name}` after the tune stage"
    try:
        choices = json.loads(path.read_text())["choices"]
    except OSError:
        raise ConfigError(f"no tuned hyperparameters: {path} is missing; {hint}") from None
    except (ValueError, KeyError):
        raise ConfigError(f"{path} is unreadable; {hint}") from None
    if by not in ("final", "speed"):
        raise ConfigError(f"sweep.select_by must be final or speed, got {by!r}")
    try:
        return int(choices[task][optimizer][by]["trial"])
    except KeyError:
        raise ConfigError(f"{path} has no {by} choice for {task} x {optimizer}; {hint}") from None
    except TypeError:
        raise ConfigError(f"{path}: {task} x {optimizer} has no {by} choice (every trial diverged or never "
                          "reached the target); widen the tuning space") from None


def tuned_value(results_dir: str, name: str, task: str, optimizer: str, key: str, by: str = "final",
                default: float | None = None) -> float:
    """``${tuned_value:results_dir,name,task,optimizer,key,by[,default]}``: one hyperparameter of a
    selected trial (e.g. Nesterov's lr, for a study of its variants); ``default`` when the protocol did
    not tune ``key`` (the lr protocol leaves momentum at 0.9)."""
    tuned_trial(results_dir, name, task, optimizer, by)  # the file, the choice: checked, with its messages
    chosen = json.loads(store.tuned_path(results_dir, name).read_text())["choices"][task][optimizer][by]
    if key not in chosen and default is None:
        raise ConfigError(f"the {by} choice of {task} x {optimizer} has no {key}")
    return float(chosen.get(key, default))


def noisy_setting(sigma, method: str, key: str) -> float:
    """``${noisy_setting:sigma,method,key}``: the lr or momentum at which ``method`` reaches the noisy
    quadratic's target fastest at gradient noise ``sigma``, from the exact recursion
    (``results/theory/noisy_quadratic.json``, what ``python -m nesterov_bench.analyze`` computes)."""
    return _theory_setting("noisy_quadratic", "sigma", lambda v: math.isclose(float(v), float(sigma)), method,
                           key, f"sigma={sigma}", "python -m nesterov_bench.analyze")


def batch_setting(batch, method: str, key: str) -> float:
    """``${batch_setting:batch,method,key}``: the lr or momentum at which ``method`` reaches the mini-batch
    quadratic's target fastest at batch size ``batch`` (or full), from the exact recursion
    (``results/theory/minibatch_quadratic.json``, what ``python -m nesterov_bench.minibatch`` computes)."""
    return _theory_setting("minibatch_quadratic", "batch", lambda v: str(v) == str(batch), method, key,
                           f"batch={batch}", "python -m nesterov_bench.minibatch")


def _theory_setting(name: str, level: str, match, method: str, key: str, what: str, command: str) -> float:
    """``key`` of ``method`` in the row of ``results/theory/<name>.json`` whose ``level`` ``match``-es."""
    path = THEORY_DIR / f"{name}.json"
    try:
        rows = json.loads(path.read_text())["rows"]
        row = next(r for r in rows if match(r[level]))
        return float(row[method][key])
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"{path} is missing or unreadable; run {command}") from None
    except StopIteration:
        raise ConfigError(f"{path} has no row for {what} (conf/analysis.yaml {name})") from None


def eval_spacing(steps, rows, batch, key: str) -> int:
    """``${eval_spacing:steps,rows,batch,key}``: ``train.eval_every`` or ``train.evals_per_epoch`` (``key``)
    that evaluate every ``steps`` optimizer steps when an epoch of ``rows`` examples takes ceil(rows /
    batch) steps (one at batch full): runs of several batch sizes evaluated at the same steps."""
    per_epoch = 1 if batch == "full" else math.ceil(int(rows) / int(batch))
    steps = int(steps)
    if (per_epoch % steps if per_epoch >= steps else steps % per_epoch) != 0:
        raise ConfigError(f"cannot evaluate every {steps} steps at batch {batch} "
                          f"({per_epoch} steps an epoch)")
    every, per = (1, per_epoch // steps) if per_epoch >= steps else (steps // per_epoch, 1)
    return {"eval_every": every, "evals_per_epoch": per}[key]


def stability_lrs(mu, kappa) -> list[float]:
    """``${stability_lrs:mu,kappa}``: 16 learning rates c / L, c = 2^(k/3) from 0.25 to 8 (L = kappa mu):
    a grid over every stability limit of GD, heavy ball and Nesterov (``theory.stability_limit``)."""
    L = float(kappa) * float(mu)
    return [2.0 ** (k / 3) / L for k in range(-6, 10)]


def _scaled_lr(effective_lr, momentum) -> float:
    """``${scaled_lr:eff,momentum}``: the lr whose momentum step equals GD at ``eff``,
    eff * (1 - momentum) (the buffer of a slowly varying gradient g sums to g / (1 - momentum))."""
    return float(effective_lr) * (1.0 - float(momentum))


def register_resolvers() -> None:
    """Register the config's resolvers with OmegaConf (idempotent)."""
    for name, fn in (("tuned_trial", tuned_trial), ("tuned_value", tuned_value), ("classic", theory.classic),
                     ("stability_lrs", stability_lrs), ("scaled_lr", _scaled_lr),
                     ("noisy_setting", noisy_setting), ("batch_setting", batch_setting),
                     ("eval_spacing", eval_spacing)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
