"""Train several runs of one (task, optimizer), the seeds x learning rates, as one vectorized program.

    python -m nesterov_bench.members task=linreg optimizer=nesterov \\
        'members.seeds=[0,1,2,3]' 'members.lrs=[0.001,0.01,0.1]'
    python -m nesterov_bench.members -m experiment=tune profile=quick     # a sweep, grouped

``members.seeds`` (null: ``[seed]``) times ``members.lrs`` (null: ``[optimizer.lr]``; or
``members.trials``, points of the optimizer's tuning space) are the members. With -m, the sweep's ``seed``
and ``trial`` (or ``optimizer.lr``) values, from the command line or the experiment, become each job's
members, and Hydra sweeps the rest (tasks, optimizers): the same runs as ``train -m``, one population
per setting. ``make reproduce`` trains the tasks it vectorizes this way.

Each member's run directory is exactly the one ``python -m nesterov_bench.train`` writes for its seed and
learning rate (same path, same files, same config in run.json), plus ``"vectorized": {"members": K,
"index": k}`` in run.json; its numbers equal that run's within float tolerance
(tests/test_population.py). Members already finished are skipped, as ``train`` skips them, and the rest
are trained together through ``train.run_all``, the one run path: a sweep and ``members`` fill one
results tree. ``members.vectorize=auto`` trains one at a time where ``make bench`` measured vectorizing
save less than 10% on this kind of device, or never measured it (``population.vectorizes``), and says
so; ``true`` forces the vectorized program, ``false`` one run after another. Every member's config is
checked before anything is written; errors are one line, as for ``train``.
"""

from __future__ import annotations

import logging
import math

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig

from .cli import command_line
from .config import plain, resolve, resolve_device, space_size, sweeper_params, swept_values
from .errors import ConfigError
from .population import vectorizes
from .train import run_all

log = logging.getLogger("nesterov_bench")
#: A member's own ``members`` block: that of a single run (conf/config.yaml's defaults).
SINGLE = {"seeds": None, "lrs": None, "trials": None, "vectorize": "auto"}


def member_configs(cfg: dict) -> list[dict]:
    """The runs ``cfg["members"]`` names: one config per (seed, lr or trial), each as ``train`` would
    take it. ``members.trials`` are points of the optimizer's tuning space (``config.with_trial`` sets
    each member's hyperparameters from its ``trial``, as the tune stage's runs are made)."""
    spec = cfg.get("members") or {}
    if not isinstance(spec, dict) or set(spec) - set(SINGLE):
        raise ConfigError("members takes seeds, lrs, trials (lists, or null) and vectorize, "
                          f"got {spec!r}")
    seeds, lrs, trials = spec.get("seeds"), spec.get("lrs"), spec.get("trials")
    if lrs is not None and trials is not None:
        raise ConfigError("members.lrs and members.trials both name the learning rates: set one")
    size = space_size(cfg.get("space") or {})
    checks = [("seeds", seeds, "non-negative integers",
               lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
              ("lrs", lrs, "positive numbers", lambda v: isinstance(v, int | float)
               and not isinstance(v, bool) and math.isfinite(v) and v > 0),
              ("trials", trials, f"integers in [0, {size - 1}] (points of the tuning space)",
               lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < size)]
    for key, values, kind, ok in checks:
        if values is None:
            continue
        if not isinstance(values, list) or not values or not all(ok(v) for v in values):
            raise ConfigError(f"members.{key} must be a non-empty list of {kind}, got {values!r}")
        if len(set(values)) != len(values):
            raise ConfigError(f"members.{key} lists a value twice: {values!r}")
    seeds = [cfg["seed"]] if seeds is None else seeds
    if trials is not None:
        points = [(cfg["optimizer"], t) for t in trials]
    elif lrs is not None:
        points = [({**cfg["optimizer"], "lr": lr}, None) for lr in lrs]
    else:
        points = [(cfg["optimizer"], cfg.get("trial"))]
    return [{**cfg, "seed": seed, "optimizer": dict(opt), "trial": trial, "members": dict(SINGLE)}
            for seed in seeds for opt, trial in points]


def run(cfg: DictConfig | dict) -> list[dict]:
    """Train (or skip, where finished) every member; return their records in member order."""
    cfg = plain(cfg)
    settings = [resolve(c) for c in member_configs(cfg)]  # every member checked before anything is written
    first = settings[0]
    vectorized = vectorizes(first.task.name, first.device, cfg["members"].get("vectorize", "auto"))
    if not vectorized and len(settings) > 1:
        log.info("%s on %s: training the %d members one at a time (members.vectorize=%s; see make bench)",
                 first.task.name, first.device.type, len(settings), cfg["members"].get("vectorize", "auto"))
    return run_all(settings, vectorized=vectorized)


#: Swept keys that ``members -m`` turns into member lists: seeds, and learning rates (or trials of the
#: tuning space).
GROUPED = {"seed": "seeds", "trial": "trials", "optimizer.lr": "lrs"}


def group_sweep(overrides: list[str]) -> list[str]:
    """A sweep's overrides with its ``seed``, ``trial`` and ``optimizer.lr`` sweeps (from the command
    line or the experiment's ``hydra.sweeper.params``) turned into member lists (``GROUPED``).

    What remains swept (tasks, optimizers, ...) is Hydra's: one job per setting, and each job trains
    that setting's seeds x trials as its members.
    """
    parser = OverridesParser.create()
    kept, plain, lists = [], [], {}
    for o in overrides:
        try:
            parsed = parser.parse_override(o)
        except OverrideParseException as e:
            raise ConfigError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
        key = parsed.get_key_element()
        if key in GROUPED:
            lists[key] = swept_values(key, o.split("=", 1)[1])
            continue
        kept.append(o)
        if not parsed.is_sweep_override():
            plain.append(o)
    for key, value in sweeper_params(plain).items():
        # A dotted key (optimizer.lr) cannot be deleted from hydra.sweeper.params by an override:
        # from an experiment's params it stays Hydra's sweep, one job per value.
        if key in GROUPED and key not in lists and "." not in key:
            lists[key] = swept_values(key, value)
            kept.append(f"~hydra.sweeper.params.{key}")
    if "trial" in lists and "optimizer.lr" in lists:
        raise ConfigError("trial and optimizer.lr both set the learning rate: give one")
    given = {o.split("=", 1)[0].lstrip("+~") for o in kept}
    for key, values in lists.items():
        name = GROUPED[key]
        clash = {f"members.{n}" for n in ((name,) if key == "seed" else ("lrs", "trials"))} & given
        if clash:
            raise ConfigError(f"{key} is swept and {' / '.join(sorted(clash))} is set: give the members "
                              "one way")
        kept.append(f"members.{name}=[{','.join(values)}]")
    return kept


def check(cfg: dict) -> None:
    """Every member of a job's config resolves, and members.vectorize is valid (for the command line)."""
    for c in member_configs(cfg):
        resolve(c)
    vectorizes(cfg["task"]["name"], resolve_device(cfg["device"]), cfg["members"].get("vectorize", "auto"))


def main() -> None:
    """Entry point: one population, or with -m one per setting of a sweep (its seeds and trials
    become the members of each job)."""
    command_line(run, prog="nesterov-members", about="\n\n".join(__doc__.split("\n\n")[:2]),
                 regroup=group_sweep, check=check)


if __name__ == "__main__":
    main()
