"""K runs of one (task, optimizer) trained as one vectorized program.

The K members (seeds, learning rates) share an architecture. Their parameters are stacked along a
leading axis of size K; one ``torch.func.vmap`` of ``torch.func.functional_call`` runs all K
forward and backward passes as one program, and the update rule steps each stacked tensor once,
with per-member hyperparameters as tensors of shape (K,) (``optimizers.Optimizer`` broadcasts
them). Each member sees what its own run would: its own initialisation (its seed's draw), its own
batch order and its own learning rate, through the one training loop (``loop.fit_members``).

The numbers equal the one-at-a-time runs' within float tolerance, not bit for bit: a batched
matrix product may round differently from K separate ones (tests/test_population.py). Vectorizing
pays where a step is dominated by per-step overhead (``linreg``, ``quadratic``); ``vectorizes`` says
where, from ``make bench``'s measurements on this kind of device.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .errors import ConfigError
from .optimizer_config import OptimizerConfig, hyperparameters
from .optimizers import Optimizer, build
from .tasks import Task

#: make bench's measurements (scripts/bench.py, section "population"): K members of a task as one
#: program against K runs of it one at a time, per kind of device. ``vectorizes`` decides from them.
MEASURED = Path(__file__).resolve().parents[1] / "results" / "bench" / "population.json"


def vectorizes(task: str, device: torch.device, mode: str | bool = "auto", measured: Path = MEASURED) -> bool:
    """``members.vectorize``: True or False as given; ``auto``: vectorized where ``make bench`` measured
    K members as one program faster than K runs one at a time on this kind of device, one at a time
    where it measured them slower or never measured them (the one-at-a-time runs are the reference)."""
    if mode not in ("auto", True, False):
        raise ConfigError(f"members.vectorize must be auto, true or false, got {mode!r}")
    if mode != "auto":
        return mode
    try:
        rows = json.loads(measured.read_text())
    except (OSError, ValueError):
        return False
    ratios = [r["measured"] / (_members(r) * r["baseline"]) for r in rows
              if r.get("task") == task and r.get("device_type", "cpu") == device.type]
    return bool(ratios) and ratios[-1] < 1.0


def _members(row: dict) -> int:
    """K of a population row ("16 members vectorized vs 1 member", as scripts/bench.py writes it)."""
    return int(row["measurement"].split()[0])


class Population(nn.Module):
    """K models of one architecture, parameters stacked, trained as one program.

    ``parameters()`` are the stacked tensors (shape (K, ...)), what the optimizer steps.
    ``members[k]`` is member k as an ordinary module whose parameters are views into the stacked
    tensors (no copy): evaluation and ``task.evaluate`` use it as they would a single run's model.
    """

    stacked = True  # batches are (K, B, ...)

    def __init__(self, task: Task, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ConfigError("a population needs at least one member")
        if any(True for m in models for _ in m.buffers()):
            raise ConfigError(f"task {task.name}: a model with buffers cannot be vectorized here")
        self.task = task
        self._names = [name for name, _ in models[0].named_parameters()]
        self.flat = nn.ParameterList(
            torch.stack([m.get_parameter(name).detach() for m in models]) for name in self._names
        )
        for k, model in enumerate(models):
            for name, stacked in zip(self._names, self.flat, strict=True):
                owner, _, attr = name.rpartition(".")
                setattr(model.get_submodule(owner), attr,
                        nn.Parameter(stacked.detach()[k], requires_grad=False))
        self.members = tuple(models)  # a tuple, so not registered as submodules

    @property
    def module(self) -> nn.Module:
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Outputs of all members, (K, B, ...), for inputs (K, B, ...) (member k gets x[k])."""

        def one(params: tuple[Tensor, ...], xk: Tensor) -> Tensor:
            return functional_call(self.members[0], dict(zip(self._names, params, strict=True)), (xk,))

        return vmap(one)(tuple(self.flat), x)

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The sum of the members' losses (to differentiate: member k's parameters get exactly
        the gradient of its own loss), and each member's loss, detached, shape (K,)."""
        per_member = vmap(self.task.loss)(self(x), y)
        return per_member.sum(), per_member.detach()


def build_optimizer(population: Population, cfgs: Sequence[OptimizerConfig]) -> Optimizer:
    """The members' update rule over the stacked parameters: a hyperparameter that differs between
    members becomes a tensor of shape (K,) in the parameters' dtype; one they share stays a float,
    so the arithmetic is the single run's."""
    names = sorted({c.name for c in cfgs})
    if len(names) != 1:
        raise ConfigError(f"members must share one optimizer, got {', '.join(names)}")
    opt = build(population.parameters(), cfgs[0])
    dtype, device = population.flat[0].dtype, population.flat[0].device
    group = opt.param_groups[0]
    for key in group:
        if key == "params":
            continue
        values = [hyperparameters(c)[key] for c in cfgs]
        if any(v != values[0] for v in values):
            group[key] = torch.tensor(values, dtype=dtype, device=device)
    return opt
