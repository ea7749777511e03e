"""The verdict rule: an effect per task with its interval, pooled over tasks, read against a region of
practical equivalence (ROPE) declared in conf/analysis.yaml (``verdict``) before the results are read.

Every effect is oriented so that > 0 favours the claim. Per task, from the per-seed values (a paired
comparison on the same seeds):

    estimate   the mean over seeds
    interval   Student-t over seeds when n < ``bootstrap_min_n``; from ``bootstrap_min_n`` seeds on, the
               BCa bootstrap of the mean (``scipy.stats.bootstrap``, Efron 1987). The measurement's own
               resolution (e.g. time to target known only to within an evaluation interval) adds its
               variance to the standard error, so n identical values still carry an honest width.
    outcome    equivalent  the interval lies inside (-rope, +rope)                 (Lakens 2017)
               for         the interval lies above 0 and the task is not equivalent
               against     the interval lies below 0 and the task is not equivalent
               inconclusive otherwise

Over tasks, a random-effects estimate (DerSimonian and Laird's between-task variance, Hartung and
Knapp's t-interval with k - 1 degrees of freedom, modified as in ``pool``; statsmodels'
``combine_effects``) gets an outcome by the same four cases, and the claim's verdict follows from it:

    supported     the pooled outcome is *for*
    refuted       the pooled outcome is *against* or *equivalent* (the data rule out a practically
                  meaningful effect in the claim's favour)
    inconclusive  otherwise, or with no task that has an interval

Per task, a two-sided p-value of "no effect" is reported too, Holm-adjusted over the claim's tasks
(``holm``); the verdict does not use it.

Power: the seeds a paired t-test needs to detect an effect of ``rope`` at ``power`` (two-sided,
``1 - level``) given a task's measured seed-to-seed spread (``statsmodels``' ``TTestPower``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

FOR, AGAINST, EQUIVALENT, INCONCLUSIVE = "for", "against", "equivalent", "inconclusive"
SUPPORTED, REFUTED, UNDECIDED, NO_DATA = "supported", "refuted", "inconclusive", "no data"


@dataclass(frozen=True)
class Estimate:
    """An effect with its interval; ``se`` is nan when it has none (n < 2 and no resolution)."""

    estimate: float
    low: float
    high: float
    se: float
    n: int  # seeds (per task) or tasks (pooled)
    sd: float = math.nan  # seed-to-seed standard deviation of the per-seed values (per task)
    outcome: str = INCONCLUSIVE
    tau2: float = math.nan  # between-task variance (pooled)
    method: str = ""
    p: float = math.nan  # two-sided p-value of "no effect" (t on n - 1 degrees of freedom, per task)
    intercept: float = math.nan  # a meta-regression's line: -estimate is its slope (claim (v))

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def outcome(low: float, high: float, rope: float) -> str:
    """for / against / equivalent / inconclusive of an interval against the region (-rope, rope)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if -rope < low and high < rope:
        return EQUIVALENT
    if low > 0:
        return FOR
    if high < 0:
        return AGAINST
    return INCONCLUSIVE


def verdict(pooled_outcome: str | None) -> str:
    if pooled_outcome is None:
        return NO_DATA
    return {FOR: SUPPORTED, AGAINST: REFUTED, EQUIVALENT: REFUTED}.get(pooled_outcome, UNDECIDED)


def task_effect(values, rope: float, cfg: dict, resolution_var=0.0) -> Estimate:
    """The per-task estimate of the finite per-seed ``values`` (see the module's docstring).
    ``resolution_var``: the variance of one value's measurement error (scalar or per value)."""
    x = np.asarray(values, dtype=float)
    keep = np.isfinite(x)
    x = x[keep]
    q = np.broadcast_to(np.asarray(resolution_var, dtype=float), keep.shape)[keep]
    n = len(x)
    level = cfg["level"]
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, n, sd)
    se = math.sqrt((sd**2 + float(q.mean())) / n)
    if n >= cfg["bootstrap_min_n"] and sd > 0:
        res = stats.bootstrap((x,), np.mean, confidence_level=level, method="BCa",
                              n_resamples=cfg["bootstrap_resamples"], rng=np.random.default_rng(0))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        extra = stats.norm.ppf(0.5 + level / 2) * math.sqrt(float(q.mean()) / n)  # resolution, added
        low, high, method = low - extra, high + extra, "bootstrap"
    else:
        hw = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
        low, high, method = mean - hw, mean + hw, "t"
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else float(mean == 0)
    return Estimate(mean, low, high, se, n, sd, outcome(low, high, rope), method=method, p=p)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values over a claim's tasks (statsmodels' ``multipletests``); nan stays nan."""
    keys = [k for k, v in p_values.items() if math.isfinite(v)]
    if not keys:
        return {k: math.nan for k in p_values}
    adjusted = multipletests([p_values[k] for k in keys], method="holm")[1]
    return {k: float(dict(zip(keys, adjusted, strict=True)).get(k, math.nan)) for k in p_values}


def pool(effects: list[Estimate], rope: float, cfg: dict) -> Estimate | None:
    """Random-effects estimate over the tasks that have an interval (one task: its own estimate).

    statsmodels' ``combine_effects`` gives the DerSimonian-Laird between-task variance tau^2 (truncated
    at 0: then the random-effects estimate is the fixed-effect one) and both standard errors of the
    pooled mean; the interval is Hartung and Knapp's t on k - 1 degrees of freedom with the modification
    of Roever, Knapp and Friede (2015): its standard error is never below DerSimonian and Laird's, so
    tasks that agree better than their own errors predict do not shrink it to nothing."""
    usable = [e for e in effects if e.has_interval and math.isfinite(e.se)]
    if not usable:
        return None
    if len(usable) == 1:
        return usable[0]
    eff = np.array([e.estimate for e in usable])
    var = np.array([max(e.se, 1e-12) ** 2 for e in usable])
    with warnings.catch_warnings():  # per-sample intervals without nobs, and tau^2 < 0: handled below
        warnings.simplefilter("ignore")
        res = combine_effects(eff, var, method_re="chi2", use_t=True, alpha=1 - cfg["level"])
    if res.tau2 > 0:
        mean, se_dl, se_hk, tau2 = res.mean_effect_re, res.sd_eff_w_re, res.sd_eff_w_re_hksj, res.tau2
    else:
        mean, se_dl, se_hk, tau2 = res.mean_effect_fe, res.sd_eff_w_fe, res.sd_eff_w_fe_hksj, 0.0
    se = float(np.nanmax([se_dl, se_hk]))
    hw = float(stats.t.ppf(0.5 + cfg["level"] / 2, len(usable) - 1)) * se
    low, high = float(mean) - hw, float(mean) + hw
    return Estimate(float(mean), low, high, se, len(usable), outcome=outcome(low, high, rope),
                    tau2=float(tau2), method="random effects (DL, modified HK)")


MAX_SEEDS = 100_000


def seeds_for_power(sd: float, effect: float, cfg: dict) -> float:
    """The fewest seeds (at least 2) with which a paired two-sided t-test detects ``effect`` at
    ``cfg['power']`` given a seed-to-seed ``sd``; nan when the spread is unknown, inf past MAX_SEEDS."""
    if not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 2.0
    n = np.unique(np.geomspace(2, MAX_SEEDS, 400).astype(int))
    power = TTestPower().power(effect_size=effect / sd, nobs=n, alpha=1 - cfg["level"],
                               alternative="two-sided")
    enough = np.flatnonzero(power >= cfg["power"])
    if not len(enough):
        return math.inf
    hi = int(n[enough[0]])  # refine between the previous grid point and this one
    lo = int(n[enough[0] - 1]) + 1 if enough[0] > 0 else 2
    exact = np.arange(lo, hi + 1)
    power = TTestPower().power(effect_size=effect / sd, nobs=exact, alpha=1 - cfg["level"],
                               alternative="two-sided")
    return float(exact[np.flatnonzero(power >= cfg["power"])[0]])
