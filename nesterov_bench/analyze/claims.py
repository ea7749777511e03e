"""The articles' claims, each mapped to the measurement that tests it, against the article's baseline.

Each claim is measured against the baseline the articles name (plain gradient descent) and, in their
own columns, against heavy ball and Adam; the verdict is the primary comparison's. Per task, the effect
is a paired comparison over seeds (> 0 favours the claim); ``verdicts`` turns the per-task effects into
an outcome per task, a random-effects estimate over tasks and a verdict, against the region of practical
equivalence declared for the claim in conf/analysis.yaml (``verdict.rope``).

    (i)   faster than GD          both articles. Per seed: log2(restricted steps of the baseline / of
                                  Nesterov), averaged over the target levels of ``speed`` (> 0: faster)
    (ii)  faster than heavy ball  no article (a secondary question): (i)'s comparison against heavy ball
    (iii) especially early        the second article. Per seed: the log2 speed-up at the loosest level
                                  minus at the tightest
    (iv)  less sensitive          the second article. Per tuning seed: the share of the equal-budget
                                  tuning space within tolerance of the best, Nesterov minus the baseline
    (v)   larger gains for small  the second article. Minus the slope of (i)'s speed-up against log10 of
          models                  the parameter count (weighted meta-regression): over the width sweep's
                                  widths when it has three, else over tasks (size confounded with the rest)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from . import verdicts
from .stats import weighted_line
from .study import Study
from .verdicts import Estimate

PRIMARY = "gd"
SECONDARY = ("momentum", "adam")


@dataclass
class Comparison:
    baseline: str
    effects: dict[str, Estimate] = field(default_factory=dict)  # task -> estimate
    pooled: Estimate | None = None
    verdict: str = verdicts.NO_DATA
    seeds_needed: dict[str, float] = field(default_factory=dict)  # task -> seeds for the power target
    p_holm: dict[str, float] = field(default_factory=dict)  # task -> Holm-adjusted p of "no effect"

    def seeds_for_power(self) -> tuple[float, float] | None:
        """(median, most) over the tasks of the seeds each needs for the power target; None if unknown."""
        need = [v for v in self.seeds_needed.values() if math.isfinite(v)]
        return (float(np.median(need)), max(need)) if need else None

    def tally(self) -> dict[str, int]:
        return {o: sum(e.outcome == o for e in self.effects.values())
                for o in (verdicts.FOR, verdicts.AGAINST, verdicts.EQUIVALENT, verdicts.INCONCLUSIVE)}


@dataclass
class Claim:
    key: str
    label: str  # (i) ... (v)
    text: str  # what is claimed (who claims it, and what is measured: the module's docstring)
    scale: str  # "log2" (shown as a factor), "share", "slope" (log2 per decade, shown as a factor)
    rope: float
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # baseline -> comparison
    primary: str = PRIMARY

    @property
    def main(self) -> Comparison:
        return self.comparisons[self.primary]

    @property
    def verdict(self) -> str:
        return self.main.verdict


def _rule(study: Study) -> dict:
    return study.cfg["verdict"]


def _compare(study: Study, baseline: str, per_task: dict[str, tuple[list[float], list[float]]],
             rope: float, units: list[str] | None = None) -> Comparison:
    """A comparison from per-unit (per-seed values, per-seed resolution variances), over ``units``
    (default: the tasks; or the width sweep's widths), in that order."""
    rule = _rule(study)
    c = Comparison(baseline)
    for task in study.tasks if units is None else units:
        if task in per_task:
            values, res = per_task[task]
            e = verdicts.task_effect(values, rope, rule, res)
            c.effects[task] = e
            c.seeds_needed[task] = verdicts.seeds_for_power(e.sd, rope, rule)
    c.p_holm = verdicts.holm({t: e.p for t, e in c.effects.items()})
    c.pooled = verdicts.pool(list(c.effects.values()), rope, rule)
    c.verdict = verdicts.NO_DATA if not c.effects else verdicts.verdict(c.pooled.outcome if c.pooled else
                                                                          verdicts.INCONCLUSIVE)
    return c


def _log_ratios(hits, task: str, baseline: str) -> tuple[dict, dict]:
    """seed -> per-level log2(restricted steps of ``baseline`` / of Nesterov) and its variance, from
    ``hits`` (``Study.hits`` or ``Study.width_hits``) of one ``task`` (or width)."""
    h = hits[hits.task == task]
    nest = h[h.optimizer == "nesterov"].set_index(["seed", "level"])
    base = h[h.optimizer == baseline].set_index(["seed", "level"])
    common = nest.index.intersection(base.index)
    ratio, var = {}, {}
    for seed, level in common:
        n, b = nest.loc[(seed, level)], base.loc[(seed, level)]
        ratio.setdefault(seed, {})[level] = math.log2(b.steps / n.steps)
        var.setdefault(seed, {})[level] = b.log2_var + n.log2_var
    return ratio, var


def speedups(study: Study, baseline: str, widths: bool = False) -> dict[str, tuple[list[float], list[float]]]:
    """task (or width unit) -> per-seed log2 speed-up over ``baseline``, averaged over the target
    levels; ``widths``: of the width sweep's widths instead of the tasks."""
    out = {}
    units = [study.width_unit(w) for w in study.width_levels] if widths else list(study.target_levels)
    hits = study.width_hits if widths else study.hits
    for task in units:
        ratio, var = _log_ratios(hits, task, baseline)
        seeds = sorted(ratio)
        if seeds:
            out[task] = ([float(np.mean(list(ratio[s].values()))) for s in seeds],
                         [float(np.mean(list(var[s].values()))) for s in seeds])
    return out


def early_minus_late(study: Study, baseline: str) -> dict[str, tuple[list[float], list[float]]]:
    """task -> per-seed log2 speed-up at the loosest level minus at the tightest."""
    out = {}
    last = len(study.cfg["target_fractions"]) - 1
    for task in study.target_levels:
        ratio, var = _log_ratios(study.hits, task, baseline)
        seeds = [s for s in sorted(ratio) if 0 in ratio[s] and last in ratio[s]]
        if seeds:
            out[task] = ([ratio[s][0] - ratio[s][last] for s in seeds],
                         [var[s][0] + var[s][last] for s in seeds])
    return out


def share_differences(study: Study, baseline: str) -> dict[str, tuple[list[float], list[float]]]:
    """task -> per tuning seed: Nesterov's share of its space within tolerance minus the baseline's;
    resolution: one trial in each space."""
    sh = study.tolerance_shares
    out = {}
    for task in study.tasks:
        nest = sh[(sh.task == task) & (sh.optimizer == "nesterov")].set_index("seed")
        base = sh[(sh.task == task) & (sh.optimizer == baseline)].set_index("seed")
        seeds = sorted(set(nest.index) & set(base.index))
        if seeds:
            out[task] = ([float(nest.good[s] - base.good[s]) for s in seeds],
                         [(1 / nest.trials[s]) ** 2 / 12 + (1 / base.trials[s]) ** 2 / 12 for s in seeds])
    return out


def size_slope(study: Study, baseline: str, rope: float, across_tasks: Comparison) -> Comparison:
    """Minus the slope of the per-unit speed-up over ``baseline`` against log10(parameters), weighted by
    1 / (se^2 + tau^2), with a t-interval on k - 2 degrees of freedom; > 0: larger gains for smaller
    models. The units are the width sweep's widths of one architecture when it has three or more;
    otherwise the tasks (``across_tasks``: claim (i)'s comparison), where size is confounded with data,
    architecture and budget."""
    rule = _rule(study)
    per_width = _compare(study, baseline, speedups(study, baseline, widths=True), math.log2(
        rule["rope"]["speedup"]), [study.width_unit(w) for w in study.widths])
    if sum(e.has_interval for e in per_width.effects.values()) >= 3:
        source = per_width
        params = {study.width_unit(w): n for w, n in study.width_parameters.items()}
    else:
        source, params = across_tasks, study.parameters
    c = Comparison(baseline)
    units = [t for t, e in source.effects.items() if e.has_interval and t in params]
    c.effects = {t: source.effects[t] for t in units}
    c.seeds_needed = {t: source.seeds_needed[t] for t in units if t in source.seeds_needed}
    if len(units) < 3:
        return c
    tau2 = source.pooled.tau2 if source.pooled and math.isfinite(source.pooled.tau2) else 0.0
    ses = [max(source.effects[t].se, 1e-12) for t in units]  # (se 0: no spread)
    line = weighted_line([math.log10(params[t]) for t in units],  # math, not numpy: same bits anywhere
                         [source.effects[t].estimate for t in units], [1 / (s ** 2 + tau2) for s in ses])
    slope, se = -line.slope, line.se
    hw = float(stats.t.ppf(0.5 + rule["level"] / 2, len(units) - 2)) * se
    c.pooled = Estimate(slope, slope - hw, slope + hw, se, len(units),
                        outcome=verdicts.outcome(slope - hw, slope + hw, rope), tau2=tau2,
                        intercept=line.intercept,
                        method="weighted meta-regression" + (" over widths" if source is per_width
                                                             else " over tasks"))
    c.verdict = verdicts.verdict(c.pooled.outcome)
    return c


def evaluate(study: Study) -> list[Claim]:
    rope = _rule(study)["rope"]
    speed_rope = math.log2(rope["speedup"])
    claims = [
        Claim("faster_than_gd", "(i)", "Nesterov converges faster than gradient descent", "log2", speed_rope),
        Claim("faster_than_momentum", "(ii)", "Nesterov converges faster than heavy-ball momentum", "log2",
              speed_rope, primary="momentum"),
        Claim("faster_early", "(iii)", "the advantage is largest early in training", "log2",
              math.log2(rope["early"])),
        Claim("less_sensitive", "(iv)", "Nesterov is more stable and less sensitive to hyperparameters",
              "share", rope["share"]),
        Claim("larger_gains_small", "(v)", "the gains are larger for small models than for large ones",
              "slope", math.log2(rope["size_per_decade"])),
    ]
    for c in claims:
        baselines = [c.primary] if c.primary != PRIMARY else [PRIMARY, *SECONDARY]
        for b in baselines:
            if c.key == "faster_than_gd":
                c.comparisons[b] = _compare(study, b, speedups(study, b), c.rope)
            elif c.key == "faster_than_momentum":  # (i)'s comparison against heavy ball, not made twice
                c.comparisons[b] = claims[0].comparisons[b]
            elif c.key == "faster_early":
                c.comparisons[b] = _compare(study, b, early_minus_late(study, b), c.rope)
            elif c.key == "less_sensitive":
                c.comparisons[b] = _compare(study, b, share_differences(study, b), c.rope)
            else:
                c.comparisons[b] = size_slope(study, b, c.rope, claims[0].comparisons[b])
    return claims


__all__ = ["Claim", "Comparison", "evaluate"]
