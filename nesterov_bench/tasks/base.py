"""What every task is: data as device tensors, a model, a loss, and its metrics.

A task is a small object with the same few methods (the benchopt / DeepOBS shape), looked up by
name in ``TASKS``. It owns its data split and metrics; it knows nothing of optimizers or logging.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..errors import ConfigError


@dataclass
class Split:
    """One split of a dataset, whole, as two tensors on the run's device."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class Optimum:
    """What a problem with a known solution gives its evaluation: the minimiser ``x_star``, the
    Hessian and the optimal value (the quadratic: f(x) - f* = 1/2 (x - x*)^T H (x - x*))."""

    x_star: Tensor
    hessian: Tensor
    f_star: float


@dataclass
class Data:
    """Everything a run's training and evaluation need, as ``load_data`` made it: the splits (``val``
    and ``test`` are absent for pure optimisation problems), the true parameters a generator drew
    (``truth``), and the optimum where it is known. A task keeps no state of its own."""

    train: Split
    val: Split | None = None
    test: Split | None = None
    truth: dict[str, float] = field(default_factory=dict)
    optimum: Optimum | None = None
    #: additive gradient noise: the factor F (float64, CPU) of xi = F z, z ~ N(0, I), added to the
    #: gradient at every step (the noisy quadratic); None without
    grad_noise: Tensor | None = None

    def evaluation_splits(self) -> dict[str, Split]:
        return {k: s for k, s in (("val", self.val), ("test", self.test)) if s is not None}


@dataclass(frozen=True)
class Selection:
    """The metric a tuning stage ranks runs by: ``split/metric``, lower or higher is better."""

    split: str
    metric: str
    mode: str  # "min" | "max"


class Task:
    """Base class. Subclasses set ``name``, ``selection`` and implement the four methods.

    A task holds only its validated config: whatever ``load_data`` computes travels in the ``Data``
    it returns, so one task object serves any number of runs and models."""

    name: ClassVar[str]
    selection: ClassVar[Selection]
    #: keys accepted under ``task:`` in the config, with their types; anything else is refused
    options: ClassVar[dict[str, type | tuple[type, ...]]] = {}

    def __init__(self, cfg: Mapping[str, Any]):
        unknown = sorted(set(cfg) - set(self.options) - {"name"})
        if unknown:
            raise ConfigError(
                f"task {self.name} has no setting {', '.join('task.' + k for k in unknown)}; "
                f"it takes: {', '.join('task.' + k for k in sorted(self.options))}"
            )
        for key, typ in self.options.items():
            if key not in cfg:
                raise ConfigError(f"task.{key} is missing for task {self.name}")
            value = cfg[key]
            if isinstance(value, bool) or not isinstance(value, typ):
                if typ is float and isinstance(value, int) and not isinstance(value, bool):
                    continue
                raise ConfigError(f"task.{key} must be of type {_type_name(typ)}, got {value!r}")
        self.cfg = dict(cfg)

    def load_data(self, data_cfg: Mapping[str, Any], device: torch.device) -> Data:
        """Build or load every split onto ``device``; raise ConfigError when data is missing."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """A freshly initialised model, drawn from torch's global RNG (seeded by the caller)."""
        raise NotImplementedError

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The mean training loss over a batch."""
        raise NotImplementedError

    def member_losses(self, output: Tensor, target: Tensor) -> Tensor:
        """Each member's ``loss`` at once, for a population: output (S, P, B, ...) and target (S, P, B, ...)
        with two leading member dimensions; shape (S, P). By default ``loss`` vmapped over both; a task
        may write it with tensor ops over the leading dimensions instead (no vmap dispatch: about 200 us a
        step less for 16 members of the quadratic), equal to the vmapped ``loss`` bit for bit, gradients
        included (tests/test_population.py)."""
        return vmap(vmap(self.loss))(output, target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int, data: Data) -> dict[str, float]:
        """Metrics of ``model`` on a whole split of ``data`` (mean loss, and accuracy for classifiers)."""
        raise NotImplementedError


def _type_name(typ: type | tuple[type, ...]) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return typ.__name__


TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def make_task(cfg: Mapping[str, Any]) -> Task:
    name = cfg.get("name")
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name](cfg)


def batched(fn: Callable[[Tensor, Tensor], Tensor], split: Split, batch_size: int) -> Tensor:
    """Sum of ``fn(x_chunk, y_chunk)`` over fixed-size chunks of a split (evaluation only)."""
    total = None
    for start in range(0, len(split), batch_size):
        part = fn(split.x[start : start + batch_size], split.y[start : start + batch_size])
        total = part if total is None else total + part
    return total
