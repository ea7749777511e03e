"""The ``train:`` block of a run's config, validated: its budget and its evaluation schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .schedules import LR, MOMENTUM, check


@dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` block of the config; see conf/config.yaml for units."""

    epochs: int
    batch_size: int | None  # None = full batch
    log_every: int
    eval_every: int
    eval_train_size: int | None
    eval_batch_size: int
    max_steps: int | None = None  # stop early after this many steps (None = the epochs budget)
    epoch_decay: float = 0.0  # the second article's per-step decay, reproduced as written (0 = off)
    evals_per_epoch: int = 1  # evaluations spread evenly over each epoch (finer time-to-target curves)
    lr_schedule: dict | None = None  # None = constant (schedules.py)
    momentum_schedule: dict | None = None  # None = constant
    eval_test: str | None = None  # None = "every": test split at every evaluation; "last": at the last only
    sampling: str | None = None  # None = "permutation" (each epoch a shuffle); "replacement": iid draws
    precision: str | None = None  # None = float32 throughout; "bf16": forward passes under bf16 autocast

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown setting {', '.join('train.' + k for k in unknown)}")
        bs = d["batch_size"]
        if bs == "full":
            bs = None
        elif not positive_int(bs):
            raise ConfigError(f"train.batch_size must be a positive integer or 'full', got {bs!r}")
        for key in ("epochs", "log_every", "eval_every", "eval_batch_size"):
            if key not in d:
                raise ConfigError(f"train.{key} is missing")
            if not positive_int(d[key]):
                raise ConfigError(f"train.{key} must be a positive integer, got {d[key]!r}")
        if not positive_int(epe := d.get("evals_per_epoch", 1)):
            raise ConfigError(f"train.evals_per_epoch must be a positive integer, got {epe!r}")
        for key in ("eval_train_size", "max_steps"):
            if d.get(key) is not None and not positive_int(d[key]):
                raise ConfigError(f"train.{key} must be a positive integer or null, got {d[key]!r}")
        decay = d.get("epoch_decay", 0.0)
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not math.isfinite(decay):
            raise ConfigError(f"train.epoch_decay must be a number, got {decay!r}")
        if d.get("eval_test") not in (None, "every", "last"):
            raise ConfigError(f"train.eval_test must be every, last or null, got {d['eval_test']!r}")
        if d.get("sampling") not in (None, "permutation", "replacement"):
            raise ConfigError("train.sampling must be permutation, replacement or null, "
                              f"got {d['sampling']!r}")
        if d.get("precision") not in (None, "bf16"):
            raise ConfigError(f"train.precision must be bf16 or null (float32), got {d['precision']!r}")
        return cls(d["epochs"], bs, d["log_every"], d["eval_every"], d.get("eval_train_size"),
                   d["eval_batch_size"], d.get("max_steps"), float(decay), d.get("evals_per_epoch", 1),
                   check("lr_schedule", d.get("lr_schedule"), LR),
                   check("momentum_schedule", d.get("momentum_schedule"), MOMENTUM), d.get("eval_test"),
                   d.get("sampling"), d.get("precision"))

    def check_against(self, n_train: int) -> None:
        """Refuse a batch larger than the training split (it would silently become full batch)."""
        if self.batch_size is not None and self.batch_size > n_train:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is larger than the training split ({n_train} "
                "examples); use train.batch_size=full for full-batch training"
            )


def positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0
