"""The ``optimizer.*`` setting: the rule it names, its validation, the step's keyword arguments, and
the part of a run's directory name it gives.

Every rule selectable by ``optimizer.name`` is in ``ALL_RULES``: the compared four
(``nesterov_bench.rules.RULES``) then the other formulations (``nesterov_bench.formulations.FORMULATIONS``).
Everything here reads the rules' :class:`~nesterov_bench.rules.Rule` objects (which settings a rule
takes, their defaults, whether it needs momentum), and nothing here imports torch, so the run store and
the analysis use it without torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import ConfigError
from .formulations import FORMULATIONS
from .rules import ADAM, RULES, Rule

__all__ = ["ALL_RULES", "OptimizerConfig", "dirname", "hyperparameters"]

#: Every rule by ``optimizer.name``: the compared four, then the formulations.
ALL_RULES: dict[str, Rule] = {**RULES, **FORMULATIONS}


def _is_number(x: Any) -> bool:
    """A real number, refusing bools and strings (``True`` is an int in python)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _in_unit_interval(x: Any) -> bool:
    """x is a number in [0, 1) (NaN fails the comparisons)."""
    return _is_number(x) and 0.0 <= x < 1.0


@dataclass(frozen=True)
class OptimizerConfig:
    """The user's ``optimizer.*`` setting.

    Attributes:
        name: a key of ``ALL_RULES``: ``gd``, ``momentum``, ``nesterov``, ``adam`` (the compared
            four), or a formulation: ``nesterov_sutskever``, ``nesterov_1983``, ``article_ema``,
            ``article_stated``.
        lr: learning rate, a finite number > 0 (tuned per optimizer; see nesterov_bench.rules).
        momentum: μ in (0, 1) for a rule that needs momentum (``Rule.needs_momentum``); 0 for the others.
        betas: Adam's (β1, β2), each in [0, 1).
        eps: Adam's ε > 0, added to √v̂.
        weight_decay: coupled L2 coefficient ≥ 0 (0 = off).
    """

    name: str
    lr: float
    momentum: float = 0.0
    betas: tuple[float, float] = ADAM.defaults["betas"]
    eps: float = ADAM.defaults["eps"]
    weight_decay: float = 0.0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> OptimizerConfig:
        """Build and validate from a plain mapping (e.g. ``OmegaConf.to_container(cfg.optimizer)``).

        Unknown keys, missing ``name``/``lr`` and every invalid value raise
        :class:`~nesterov_bench.errors.ConfigError`.  ``betas`` may be a list.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"optimizer must be a mapping of settings (name, lr, ...), got {d!r}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            names = ", ".join(f"optimizer.{k}" for k in unknown)
            raise ConfigError(
                f"unknown setting(s) {names}; the known ones are "
                + ", ".join(f"optimizer.{k}" for k in known))
        for required in ("name", "lr"):
            if required not in d:
                raise ConfigError(f"optimizer.{required} is required but was not given")
        kwargs = dict(d)
        if "betas" in kwargs:
            betas = kwargs["betas"]
            if isinstance(betas, Sequence) and not isinstance(betas, str):
                kwargs["betas"] = tuple(betas)
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @property
    def rule(self) -> Rule:
        """The rule ``name`` selects (KeyError for an unknown name: ``validate`` first)."""
        return ALL_RULES[self.name]

    def validate(self) -> None:
        """Refuse any setting that is invalid or would be silently ignored (ConfigError)."""
        name = self.name
        if not isinstance(name, str) or name not in ALL_RULES:
            valid = ", ".join(ALL_RULES)
            raise ConfigError(f"optimizer.name must be one of {valid}, got {name!r}")

        lr = self.lr
        if not (_is_number(lr) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"optimizer.lr must be a positive number, got {lr!r}")

        mu = self.momentum
        if not _in_unit_interval(mu):
            raise ConfigError(f"optimizer.momentum must be a number in [0, 1), got {mu!r}")
        if self.rule.needs_momentum == (mu == 0):
            raise ConfigError(self.rule.wrong_momentum(mu))

        betas = self.betas
        if not (isinstance(betas, tuple) and len(betas) == 2
                and all(_in_unit_interval(b) for b in betas)):
            raise ConfigError(
                f"optimizer.betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got {betas!r}")

        eps = self.eps
        if not (_is_number(eps) and math.isfinite(eps) and eps > 0):
            raise ConfigError(f"optimizer.eps must be a positive number, got {eps!r}")

        wd = self.weight_decay
        if not (_is_number(wd) and math.isfinite(wd) and wd >= 0):
            raise ConfigError(
                f"optimizer.weight_decay must be a number >= 0 (0 = off), got {wd!r}")


def hyperparameters(cfg: OptimizerConfig) -> dict[str, float]:
    """The keyword arguments of ``cfg.rule.step`` for this configuration (all python floats): ``lr``,
    the rule's own (e.g. ``momentum``; Adam's ``beta1``, ``beta2``, ``eps``), ``weight_decay``."""
    if cfg.name not in ALL_RULES:
        raise ConfigError(f"optimizer.name must be one of {', '.join(ALL_RULES)}, got {cfg.name!r}")
    own = cfg.rule.step_keywords(asdict(cfg))
    return {"lr": float(cfg.lr), **{k: float(v) for k, v in own.items()},
            "weight_decay": float(cfg.weight_decay)}


def dirname(setting: Mapping[str, Any]) -> str:
    """``lr=0.01,momentum=0.9``: the hyperparameters that tell runs of one optimizer apart, from an
    ``optimizer.*`` mapping (a run's config).

    ``lr``; then the rule's settings without a default (``momentum``); its settings with a default
    (Adam's ``betas``, ``eps``), all of them, only when one differs from its default; ``wd`` when
    weight decay is on. Numbers are ``%g``, a pair is joined by ``-``: ``betas=0.8-0.99,eps=1e-08``.
    A name that is no rule (a run.json from elsewhere) gives ``lr`` and ``wd`` only.
    """
    rule = ALL_RULES.get(setting["name"])
    parts = [f"lr={setting['lr']:g}"]
    if rule is not None:
        parts += [f"{key}={_g(setting[key])}" for key in rule.settings if key not in rule.defaults]
        given = {key: setting.get(key, default) for key, default in rule.defaults.items()}
        if any(_as_list(given[key]) != _as_list(default) for key, default in rule.defaults.items()):
            parts += [f"{key}={_g(value)}" for key, value in given.items()]
    if setting.get("weight_decay"):
        parts.append(f"wd={setting['weight_decay']:g}")
    return ",".join(parts)


def _g(value: Any) -> str:
    """A setting's value in a directory name: ``%g``, the entries of a list joined by ``-``."""
    if isinstance(value, list | tuple):
        return "-".join(f"{v:g}" for v in value)
    return f"{value:g}"


def _as_list(value: Any) -> Any:
    """A list for a list or tuple (a config gives ``betas`` as either), the value itself otherwise."""
    return list(value) if isinstance(value, list | tuple) else value
