"""The articles' claims, each mapped to the measurement that tests it, and the rule for a verdict.

Per task, a claim's effect is a paired comparison over the final seeds (the same seeds for every
optimizer), summarised as mean and 95% Student-t interval (``stats``). A task counts *for* the claim
when the interval lies entirely on the claim's side of 0, *against* when it lies entirely on the other
side, and for neither otherwise (including n < 2). Verdict over the tasks (shares from
conf/analysis.yaml):

    supported      for on >= supported_share of the tasks, and against on none
    not supported  for on <= not_supported_share of the tasks
    mixed          otherwise

The sensitivity claim compares the width of the good learning-rate range from the tuning stage, which
has one seed per rate: there a task counts by the sign of the width difference. The small-vs-large
claim is one comparison across tasks (Welch's t over the per-task effects): supported when its interval
lies above 0, not supported otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import measures
from .stats import Summary, paired, summarize, welch
from .study import Study

SUPPORTED, NOT_SUPPORTED, MIXED, NO_DATA = "supported", "not supported", "mixed", "no data"


@dataclass
class Effect:
    task: str
    summary: Summary
    favour: int  # +1 for the claim, -1 against, 0 neither


@dataclass
class Claim:
    key: str
    text: str  # what the articles say
    measurement: str  # what is measured, in words (also the effect's unit)
    effects: list[Effect] = field(default_factory=list)
    verdict: str = NO_DATA
    evidence: str = ""


def favour(s: Summary) -> int:
    if s.n < 2 or math.isnan(s.half_width):
        return 0
    return 1 if s.low > 0 else -1 if s.high < 0 else 0


def verdict(favours: list[int], cfg: dict) -> str:
    if not favours:
        return NO_DATA
    share_for = sum(f > 0 for f in favours) / len(favours)
    if share_for >= cfg["supported_share"] and not any(f < 0 for f in favours):
        return SUPPORTED
    if share_for <= cfg["not_supported_share"]:
        return NOT_SUPPORTED
    return MIXED


def tally(effects: list[Effect]) -> str:
    n = len(effects)
    f = sum(e.favour > 0 for e in effects)
    a = sum(e.favour < 0 for e in effects)
    return f"for on {f} of {n} tasks, against on {a}"


def _speedup(study: Study, other: str) -> list[Effect]:
    """log2(steps to target of ``other`` / of Nesterov), per seed; > 0: Nesterov is faster."""
    out = []
    for task in study.tasks:
        if task not in study.cfg["targets"]:
            continue
        nest = study.by_seed(task, "nesterov", "ttt_steps_censored")
        oth = study.by_seed(task, other, "ttt_steps_censored")
        if not nest or not oth:
            continue
        s = paired({k: math.log2(v) for k, v in oth.items()}, {k: math.log2(v) for k, v in nest.items()})
        out.append(Effect(task, s, favour(s)))
    return out


def _early(study: Study) -> list[Effect]:
    """Nesterov's validation score early in training minus the better of GD and heavy ball's."""
    out = []
    for task in study.tasks:
        nest = study.by_seed(task, "nesterov", "early_score")
        gd, mom = study.by_seed(task, "gd", "early_score"), study.by_seed(task, "momentum", "early_score")
        best = {s: max(gd[s], mom[s]) for s in set(gd) & set(mom)}
        if not nest or not best:
            continue
        s = paired(nest, best)
        out.append(Effect(task, s, favour(s)))
    return out


def sensitivity(study: Study) -> dict[tuple[str, str], tuple[float, float, float, int, int]]:
    """(task, optimizer) -> (good-range width in decades, lowest good lr, highest, diverged, grid size)."""
    out = {}
    tol = study.cfg["tolerance"]
    for (task, opt), runs in study.tune.groupby(["task", "optimizer"]):
        key = study.select_key(task)
        scores = [measures.score(key, v) if st == "completed" else -math.inf
                  for v, st in zip(runs[f"final:{key}"], runs.status, strict=True)]
        width, lo, hi = measures.good_range(list(runs.lr), scores, key, tol)
        out[task, opt] = (width, lo, hi, int((runs.status == "diverged").sum()), len(runs))
    return out


def _less_sensitive(study: Study) -> list[Effect]:
    sens = sensitivity(study)
    out = []
    for task in study.tasks:
        if (task, "nesterov") not in sens or (task, "momentum") not in sens:
            continue
        d = sens[task, "nesterov"][0] - sens[task, "momentum"][0]
        if math.isnan(d):
            continue
        out.append(Effect(task, Summary(d, math.nan, d, 1), int(np.sign(d))))
    return out


def evaluate(study: Study) -> list[Claim]:
    cfg = study.cfg
    rule = cfg["verdict"]
    early_pct = f"{cfg['early_fraction']:.0%}"
    claims = [
        Claim("faster_than_gd", "Nesterov converges faster than gradient descent",
              "speed-up in steps to the target, log2(GD / Nesterov), paired over seeds",
              _speedup(study, "gd")),
        Claim("faster_than_momentum", "Nesterov converges faster than (heavy-ball) momentum",
              "speed-up in steps to the target, log2(heavy ball / Nesterov), paired over seeds",
              _speedup(study, "momentum")),
        Claim("faster_early", "the advantage is largest early in training",
              f"validation score at {early_pct} of the budget, Nesterov minus the better of GD and heavy "
              "ball, paired over seeds", _early(study)),
        Claim("less_sensitive", "Nesterov is more stable and less sensitive to hyperparameters",
              "width (decades) of the learning-rate range within tolerance of the best, Nesterov minus "
              "heavy ball, tuning stage", _less_sensitive(study)),
    ]
    for c in claims:
        c.verdict = verdict([e.favour for e in c.effects], rule)
        c.evidence = tally(c.effects)
    claims.append(_small_vs_large(study, claims[1]))
    return claims


def _small_vs_large(study: Study, vs_momentum: Claim) -> Claim:
    c = Claim("larger_gains_small", "the gains are larger for small models than for large ones",
              "speed-up over heavy ball (log2), mean over small-model tasks minus mean over large-model "
              "tasks, Welch interval over tasks")
    per_task = {e.task: e.summary.mean for e in vs_momentum.effects if math.isfinite(e.summary.mean)}
    small = [per_task[t] for t in study.cfg["small_models"] if t in per_task]
    large = [per_task[t] for t in study.cfg["large_models"] if t in per_task]
    if len(small) < 2 or len(large) < 2:
        c.evidence = f"too few tasks ({len(small)} small, {len(large)} large; 2 of each needed)"
        return c
    s = welch(small, large)
    c.effects = [Effect("small - large", s, favour(s))]
    c.verdict = SUPPORTED if c.effects[0].favour > 0 else NOT_SUPPORTED
    c.evidence = f"{len(small)} small vs {len(large)} large tasks"
    return c


__all__ = ["Claim", "Effect", "evaluate", "sensitivity", "summarize"]
