"""The update rules as a ``torch.optim.Optimizer``: the torch side of nesterov_bench.rules.

The rules themselves (each written once, as an in-place step, with its math and conventions in the
docstring) are :mod:`nesterov_bench.rules` (the compared four) and :mod:`nesterov_bench.formulations`
(the other forms); :mod:`nesterov_bench.optimizer_config` validates an ``optimizer.*`` setting
(:class:`OptimizerConfig`) and gives the step's keyword arguments. :class:`Optimizer` applies the
rule a setting names to each parameter; :func:`build` makes one from a setting, for the training loop
or your own code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import optimizer as torch_optimizer  # its step-hook registries

from .optimizer_config import OptimizerConfig, hyperparameters

__all__ = ["Optimizer", "OptimizerConfig", "build"]


class Optimizer(torch.optim.Optimizer):
    """A thin ``torch.optim.Optimizer`` that applies the rule ``cfg.rule`` to each parameter.

    The hyperparameters live in each param group (keys of
    :func:`~nesterov_bench.optimizer_config.hyperparameters`, e.g. ``lr``), so learning-rate
    schedulers that edit ``group["lr"]`` work.  Parameters whose ``.grad`` is None are skipped, as in
    torch.  The rule's in-place step updates each parameter and its state dict ``self.state[p]`` under
    ``torch.no_grad()``. For a population whose parameters are stacked along a leading axis of size K
    (``population.Population``), a group's hyperparameter may be a tensor of shape (K,): member k is
    stepped with entry k.
    """

    def __init__(self, params: Iterable[Any], cfg: OptimizerConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.rule = cfg.rule
        self._hp_keys = tuple(hyperparameters(cfg))
        super().__init__(params, hyperparameters(cfg))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._update()
        return loss

    def update(self) -> None:
        """``step()`` without a closure, as the training loop calls it: the same update, without
        torch.optim's wrapper around ``step`` (a profiler range and the hook lists, a fixed cost of
        about 20-60 us a step, a sixth of mnist_logreg's step on a fast CPU) unless a step hook is
        registered, which then runs as it would under ``step()``."""
        if self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _global_hooks():
            self.step()
        else:
            with torch.no_grad():
                self._update()

    def _update(self) -> None:
        for group in self.param_groups:
            hp = {k: group[k] for k in self._hp_keys}
            per_member = [k for k, v in hp.items() if isinstance(v, Tensor)]
            views: dict[int, dict[str, Tensor]] = {}  # per-member values shaped for a p of each dim
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{self.cfg.name} does not support sparse gradients")
                if per_member:  # (K,) -> (K, 1, ..., 1): member k's value on p[k]
                    if p.dim() not in views:
                        shape = (-1,) + (1,) * (p.dim() - 1)
                        views[p.dim()] = {k: group[k].view(shape) for k in per_member}
                    hp.update(views[p.dim()])
                self.rule.step(p, p.grad, self.state[p], **hp)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim's, without its profiler range (a fixed cost a step that weighs on tiny models)."""
        if not set_to_none:
            super().zero_grad(set_to_none=False)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None


def _global_hooks() -> bool:
    """Whether a step hook is registered for every optimizer (``register_optimizer_step_*_hook``)."""
    return bool(torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks)


def build(params: Iterable[Any], cfg: OptimizerConfig | Mapping[str, Any]) -> Optimizer:
    """The :class:`Optimizer` for ``params``; ``cfg`` may also be a plain ``optimizer`` mapping."""
    if not isinstance(cfg, OptimizerConfig):
        cfg = OptimizerConfig.from_mapping(cfg)
    return Optimizer(params, cfg)
