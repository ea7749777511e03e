"""The update rules as pure functions, for the tests: ``rule(p, g, state, **hp) -> (new_p, new_state)``.

Each runs the rule's in-place step (``Rule.step``) on copies, so nothing passed in is modified: same
arithmetic, same numbers. Production code steps in place (nesterov_bench.optimizers); only the tests
chain steps this way.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from nesterov_bench.optimizer_config import ALL_RULES
from nesterov_bench.rules import Rule

PureRule = Callable[..., tuple[Tensor, dict[str, Tensor]]]


def pure(rule: Rule) -> PureRule:
    """``rule.step`` run on copies of ``p`` and ``state``; returns ``(new_p, new_state)``."""

    def step(p: Tensor, g: Tensor, state: dict[str, Tensor], **hp) -> tuple[Tensor, dict[str, Tensor]]:
        new_p, new_state = p.clone(), {k: v.clone() for k, v in state.items()}
        rule.step(new_p, g, new_state, **hp)
        return new_p, new_state

    step.__name__ = step.__qualname__ = rule.name
    return step


#: Every registered rule's pure form, by ``optimizer.name``.
PURE: dict[str, PureRule] = {name: pure(rule) for name, rule in ALL_RULES.items()}

gd, momentum, nesterov, adam = PURE["gd"], PURE["momentum"], PURE["nesterov"], PURE["adam"]
nesterov_sutskever, nesterov_1983 = PURE["nesterov_sutskever"], PURE["nesterov_1983"]
article_ema, article_stated = PURE["article_ema"], PURE["article_stated"]
