"""Train several runs of one (task, optimizer), the seeds x learning rates, as one vectorized program.

    python -m nesterov_bench.members task=linreg optimizer=nesterov \\
        'members.seeds=[0,1,2,3]' 'members.lrs=[0.001,0.01,0.1]'

``members.seeds`` (null: ``[seed]``) times ``members.lrs`` (null: ``[optimizer.lr]``) are the members.
Each member's run directory is exactly the one ``python -m nesterov_bench.train`` writes for its seed and
learning rate (same path, same files, same config in run.json), plus ``"vectorized": {"members": K,
"index": k}`` in run.json; its numbers equal that run's within float tolerance
(tests/test_population.py). Members already finished are skipped, as ``train`` skips them, and the rest
are trained together: a sweep and ``members`` fill one results tree. ``members.vectorize=auto``
trains one at a time where ``make bench`` measured vectorizing slower on this kind of device
(``population.ONE_AT_A_TIME``: on a CPU, mnist_mlp and the CNNs), and says so; ``true`` forces the
vectorized program, ``false`` one run after another. Every member's config is checked before anything
is written; errors are one line, as for ``train``.
"""

from __future__ import annotations

import logging
import math
import sys
from contextlib import ExitStack
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import store, train
from .errors import ConfigError
from .loop import fit_members
from .population import ONE_AT_A_TIME, Population, build_optimizer
from .tasks import Task

log = logging.getLogger("nesterov_bench")
#: A member's own ``members`` block: that of a single run (conf/config.yaml's defaults).
SINGLE = {"seeds": None, "lrs": None, "vectorize": "auto"}


def member_configs(cfg: dict) -> list[dict]:
    """The runs ``cfg["members"]`` names: one config per (seed, lr), each as ``train`` would take it."""
    spec = cfg.get("members") or {}
    if not isinstance(spec, dict) or set(spec) - {"seeds", "lrs", "vectorize"}:
        raise ConfigError(f"members takes seeds, lrs (lists, or null) and vectorize, got {spec!r}")
    seeds = spec.get("seeds")
    lrs = spec.get("lrs")
    seeds = [cfg["seed"]] if seeds is None else seeds
    lrs = [cfg["optimizer"].get("lr")] if lrs is None else lrs
    for key, values, ok in (
        ("seeds", seeds, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        ("lrs", lrs, lambda v: isinstance(v, int | float) and not isinstance(v, bool)
         and math.isfinite(v) and v > 0),
    ):
        if not isinstance(values, list) or not values or not all(ok(v) for v in values):
            kind = "non-negative integers" if key == "seeds" else "positive numbers"
            raise ConfigError(f"members.{key} must be a non-empty list of {kind}, got {values!r}")
        if len(set(values)) != len(values):
            raise ConfigError(f"members.{key} lists a value twice: {values!r}")
    return [{**cfg, "seed": seed, "optimizer": {**cfg["optimizer"], "lr": lr}, "members": dict(SINGLE)}
            for seed in seeds for lr in lrs]


def vectorize(cfg: dict, task: str, device: torch.device) -> bool:
    """``members.vectorize``: true, false, or auto (true unless measured slower: ``ONE_AT_A_TIME``)."""
    mode = (cfg.get("members") or {}).get("vectorize", "auto")
    if mode not in ("auto", True, False):
        raise ConfigError(f"members.vectorize must be auto, true or false, got {mode!r}")
    return mode is True or (mode == "auto" and task not in ONE_AT_A_TIME.get(device.type, ()))


def run(cfg: DictConfig | dict) -> list[dict]:
    """Train (or skip, where finished) every member; return their records in member order."""
    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # noqa: BLE001 -- an interpolation that cannot resolve
            raise ConfigError(f"config does not resolve: {str(e).splitlines()[0]}") from None
    configs = member_configs(dict(cfg))
    settings = [train.resolve(c) for c in configs]  # every member checked before anything is written
    if not vectorize(dict(cfg), settings[0].task.name, settings[0].device):
        log.info("%s on %s: training the %d members one at a time (members.vectorize=%s; vectorizing "
                 "was measured slower here, see make bench)", settings[0].task.name,
                 settings[0].device.type, len(configs), cfg["members"].get("vectorize", "auto"))
        return [train.run(c) for c in configs]
    train.configure_torch(settings[0])

    records: list[dict | None] = [None] * len(settings)
    todo = []
    for k, s in enumerate(settings):
        run_dir = store.run_path(s.cfg)
        if store.is_finished(run_dir) and not s.cfg["force"]:
            records[k] = train.skip(run_dir, s)
        else:
            todo.append((k, s, run_dir))
    if not todo:
        return records
    lead = todo[0][1]  # its task loads the data (and keeps what evaluation needs, e.g. x*)
    data = lead.task.load_data(lead.cfg["data"], lead.device)
    lead.train.check_against(len(data.train))
    for _, s, run_dir in todo:
        train.make_run_dir(s, run_dir)
    with ExitStack() as locks:
        ready = []
        for k, s, run_dir in todo:
            try:
                locks.enter_context(store.locked(run_dir))
            except store.RunBusy as e:
                log.warning("skipped: %s", e)
                records[k] = {"status": "busy", "run_dir": str(run_dir)}
                continue
            if store.is_finished(run_dir) and not s.cfg["force"]:  # finished while we waited
                records[k] = train.skip(run_dir, s)
                continue
            store.clear_unfinished(run_dir)
            ready.append((k, s, run_dir))
        if ready:  # all busy or finished meanwhile: nothing left to train
            for (k, _, _), result in zip(ready, _train_together(ready, lead.task, data), strict=True):
                records[k] = result
    return records


def _train_together(members: list[tuple[int, train.Settings, Path]], task: Task, data) -> list[dict]:
    """One population for ``members``: init, batches and learning rate each as its own run's."""
    size = len(members)
    recordings = [train.Recording(s, run_dir, vectorized={"members": size, "index": i})
                  for i, (_, s, run_dir) in enumerate(members)]
    first = members[0][1]
    try:
        models = []
        for _, s, _ in members:
            torch.manual_seed(train.derived_seed(s.seed, 0))
            models.append(s.task.build_model().to(s.device))
        population = Population(task, models)
        optimizer = build_optimizer(population, [s.opt for _, s, _ in members])
        outcomes = fit_members(
            task, population, optimizer, data, first.train,
            batch_generators=[torch.Generator().manual_seed(train.derived_seed(s.seed, 1))
                              for _, s, _ in members],
            records=[r.record for r in recordings], progress=train.show_progress(first.cfg),
        )
        results = [r.save(o) for r, o in zip(recordings, outcomes, strict=True)]
    except BaseException as e:
        for r in recordings:
            r.fail(e)
        raise
    for r, result in zip(recordings, results, strict=True):
        r.close(result)
    return results


def main() -> None:
    """Entry point: compose the config from the command line's overrides (no sweeps: the members are
    the sweep), then train."""
    from .cli import compose_config

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:]
    try:
        if any(a.startswith("-") for a in args):
            raise ConfigError("members takes key=value overrides only: list the runs in members.seeds "
                              "and members.lrs instead of sweeping with -m")
        run(compose_config(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except store.SaveError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
