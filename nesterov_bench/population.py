"""K runs of one (task, optimizer) trained as one vectorized program.

The K members (seeds, points of a tuning space) share an architecture. Their parameters are stacked
along a leading axis of size K, and the update rule steps each stacked tensor once, with per-member
hyperparameters as tensors of shape (K,) (``optimizers.Optimizer`` broadcasts them). Each member sees
what its own run would: its own initialisation (its seed's draw), its own batch order and its own
hyperparameters, through the one training loop (``loop.fit_members``).

Members of one seed draw the same batches, so the loop draws and gathers each batch once per group of
them (S groups of P members, K = S P). Models made of ``DENSE`` layers (the linear models and MLPs) run
layer by layer as batched matrix products, the first one per group: its P members' weights stacked
against their shared batch, one product instead of P small ones. Other models (the CNNs) run all K
forward and backward passes as one ``torch.func.vmap`` of ``torch.func.functional_call``.

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
SAVING = 0.1  # the least share of the one-at-a-time time that vectorizing must save to be chosen


def vectorizes(task: str, device: torch.device, mode: str | bool = "auto", measured: Path = MEASURED) -> bool:
    """``members.vectorize``: True or False as given; ``auto``: vectorized where ``make bench`` measured
    K members as one program at least ``SAVING`` faster than K runs one at a time on this kind of device
    (the task's last row), one at a time where it measured less or never measured them (the one-at-a-time
    runs are the reference; the margin keeps a break-even measurement from flipping the choice)."""
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
    return bool(ratios) and ratios[-1] <= 1.0 - SAVING


def _members(row: dict) -> int:
    """K of a population row ("64 members (one seed, a grid) vs 1 member", as scripts/bench.py writes it)."""
    return int(row["measurement"].split()[0])


#: Layers the dense path stacks (``Population.forward``); a model of other layers goes through vmap.
DENSE = (nn.Linear, nn.ReLU, nn.Flatten)


def _dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model's layers, each with its parameters' name prefix, when every one is ``DENSE`` (a
    Flatten over one example's dimensions); None otherwise."""
    layers = list(model.named_children()) if isinstance(model, nn.Sequential) else [("", model)]
    if not all(isinstance(layer, DENSE) and (not isinstance(layer, nn.Flatten)
               or (layer.start_dim, layer.end_dim) == (1, -1)) for _, layer in layers):
        return None
    return [(f"{name}." if name else "", layer) for name, layer in layers]


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
        self._by_name = dict(zip(self._names, self.flat, strict=True))
        self._dense = _dense_layers(models[0])

    @property
    def module(self) -> nn.Module:
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Outputs of all members, (K, B, ...), for the batches of S groups, x of shape (S, B, ...):
        members [g P, (g + 1) P) (P = K / S) get x[g]."""
        s = x.shape[0]
        p = len(self.members) // s
        if self._dense is None:
            def one(params: tuple[Tensor, ...], xk: Tensor) -> Tensor:
                return functional_call(self.members[0], dict(zip(self._names, params, strict=True)), (xk,))

            xk = x if p == 1 else x.index_select(0, torch.arange(s, device=x.device).repeat_interleave(p))
            return vmap(one)(tuple(self.flat), xk)
        # Activations features-first, (S, P, features, B), from the first layer on: each layer is
        # z = W h (not h W^T), so the gradient of W comes out in W's own layout, with no copy.
        h, features_first = x.unsqueeze(1), False  # (S, 1, B, ...): one batch per group, for its P members
        for prefix, layer in self._dense:
            if isinstance(layer, nn.Linear):
                o, i = layer.weight.shape
                w = self._by_name[prefix + "weight"]  # (K, out, in)
                h = h if features_first else h.transpose(-1, -2)
                if h.shape[1] == 1:  # a group's batch against its P members' weights stacked: one product
                    h = torch.matmul(w.view(s, p * o, i), h[:, 0]).view(s, p, o, -1)
                else:
                    h = torch.matmul(w.view(s, p, o, i), h)
                if layer.bias is not None:
                    h = h + self._by_name[prefix + "bias"].view(s, p, o, 1)
                features_first = True
            elif isinstance(layer, nn.Flatten):
                h = (h.transpose(-1, -2) if features_first else h).flatten(3)
                features_first = False
            else:
                h = layer(h)
        h = h.transpose(-1, -2).contiguous() if features_first else h  # (the loss reads rows: 2x faster)
        return h.reshape(len(self.members), *h.shape[2:])

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The sum of the members' losses (to differentiate: member k's parameters get exactly
        the gradient of its own loss), and each member's loss, detached, shape (K,), for the batches
        of S groups (``forward``) and their targets, y of shape (S, B, ...)."""
        out = self(x)
        s, p = y.shape[0], len(self.members) // y.shape[0]
        targets = y.unsqueeze(1).expand(s, p, *y.shape[1:])  # (S, P, B, ...), a view
        per_member = self.task.member_losses(out.view(s, p, *out.shape[1:]), targets).reshape(-1)
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
