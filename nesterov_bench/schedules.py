"""Learning-rate and momentum schedules: a factor per step, applied to the optimizer's own settings.

With T the run's total steps and t the step about to be taken (0, 1, ..., T-1), p = t / T:

    constant (null):  lr_t = lr
    warmup_cosine:    lr_t = lr (t + 1) / (w T)                                    while p < w
                      lr_t = lr [floor + (1 - floor) (1 + cos(pi (p - w) / (1 - w))) / 2]   after
                      (linear warm-up over the first fraction w, then cosine decay to floor x lr)
    step:             lr_t = lr factor^(number of milestones m in ``at`` with p >= m)

    sutskever (momentum): mu_t = min(1 - 2^(-1 - log2(floor(t / 250) + 1)), mu)
                      (Sutskever et al. 2013, eq. 5: 0.5 for the first 250 steps, then 0.75, 0.833,
                      ... up to the configured momentum mu)

Each run's config holds its schedules (``train.lr_schedule``, ``train.momentum_schedule``; null =
constant), chosen with ``schedule=<name>`` (conf/schedule/). The loop calls ``Schedules.apply`` before
every step; the per-member settings of a population (tensors of shape (K,)) are scaled alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ConfigError

LR = {"warmup_cosine": {"warmup": float, "floor": float}, "step": {"at": list, "factor": float}}
MOMENTUM = {"sutskever": {"every": int}}


def check(kind: str, spec: Any, known: dict) -> dict | None:
    """A schedule's config (``{"name": ..., its settings}``) validated; None for constant."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or spec.get("name") not in known:
        raise ConfigError(f"train.{kind} must be null or have a name in {', '.join(known)}, got {spec!r}")
    name, settings = spec["name"], known[spec["name"]]
    extra = set(spec) - set(settings) - {"name"}
    if extra:
        raise ConfigError(f"train.{kind} ({name}) takes {', '.join(settings)}, "
                          f"not {', '.join(sorted(extra))}")
    out = {"name": name, **{k: spec[k] for k in settings if k in spec}}
    if name == "warmup_cosine" and not (0 <= out.get("warmup", 0) < 1 and 0 <= out.get("floor", 0) <= 1):
        raise ConfigError(f"train.{kind}: warmup must be in [0, 1) and floor in [0, 1], got {spec!r}")
    if name == "step" and not (isinstance(out.get("at"), list) and all(0 < m < 1 for m in out["at"])
                               and 0 < out.get("factor", 0) <= 1):
        raise ConfigError(f"train.{kind}: at must be a list of fractions in (0, 1), factor in (0, 1], "
                          f"got {spec!r}")
    if name == "sutskever" and not (isinstance(out.get("every", 250), int) and out.get("every", 250) > 0):
        raise ConfigError(f"train.{kind}: every must be a positive integer, got {spec!r}")
    return out


def lr_factor(spec: dict | None, t: int, total: int) -> float:
    """The learning rate's factor at step ``t`` of ``total`` (see the module's formulas)."""
    if spec is None:
        return 1.0
    p = t / total
    if spec["name"] == "warmup_cosine":
        w, floor = spec.get("warmup", 0.0), spec.get("floor", 0.0)
        if p < w:
            return (t + 1) / (w * total)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (p - w) / (1 - w)))
    return spec["factor"] ** sum(p >= m for m in spec["at"])


def momentum_at(spec: dict | None, t: int) -> float:
    """Sutskever et al.'s ramp at step ``t`` (before the cap at the configured momentum); 1 = no cap."""
    if spec is None:
        return 1.0
    return 1.0 - 2.0 ** (-1.0 - math.log2(t // spec.get("every", 250) + 1))


@dataclass
class Schedules:
    """The schedules of one run (or population): ``apply`` sets each step's lr and momentum from the
    values the optimizer was built with."""

    lr: dict | None
    momentum: dict | None
    total: int
    base: list[dict] = field(default_factory=list)

    def active(self) -> bool:
        return self.lr is not None or self.momentum is not None

    def apply(self, optimizer: torch.optim.Optimizer, t: int) -> None:
        if not self.base:
            if self.momentum is not None and "momentum" not in optimizer.param_groups[0]:
                raise ConfigError("train.momentum_schedule needs an optimizer with momentum")
            self.base = [{k: g[k] for k in ("lr", "momentum") if k in g} for g in optimizer.param_groups]
        f = lr_factor(self.lr, t, self.total)
        cap = momentum_at(self.momentum, t)
        for group, base in zip(optimizer.param_groups, self.base, strict=True):
            group["lr"] = base["lr"] * f
            if self.momentum is not None:
                mu = base["momentum"]
                group["momentum"] = mu.clamp(max=cap) if isinstance(mu, torch.Tensor) else min(mu, cap)
