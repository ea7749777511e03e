"""Speed as a curve: time to several target levels per task, with runs that never arrive censored.

Targets (``target_fractions`` in conf/analysis.yaml). Per task, the reference is the optimizer with the
best mean final validation score over the final seeds; the level at fraction f is the score that *every*
reference seed has reached (best so far) by the last evaluation at or before f x the budget. So the
loosest level is what the best method reaches early, the tightest what it reaches at the end, and the
reference itself is never censored.

Times. A run's time to a level is the step of its first evaluation at or past the level. A run that
never gets there (or diverges) is right-censored at the budget tau. Summaries use the survival estimate
of the time (``scipy.stats.ecdf`` on ``CensoredData``, Kaplan and Meier 1958): its median (undefined
when half the seeds never arrive) and its restricted mean up to tau (RMST, Royston and Parmar 2013).
Censoring here is only at tau, so the restricted mean equals the mean of min(T, tau) over seeds, and
the paired per-seed quantity the verdicts use is the restricted time r = min(T, tau): the log ratio of
two restricted times is a lower bound of the speed-up whenever the slower run is censored, which is why
the share that never arrives is reported beside every speed-up.

Resolution. An evaluation every Delta steps knows T only to within (T - Delta, T]: a uniform error of
variance Delta^2 / 12, i.e. (Delta / (T ln 2))^2 / 12 on log2 T. It is carried into the verdicts'
standard errors (``verdicts.task_effect``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

from . import measures


@dataclass(frozen=True)
class Hit:
    steps: float  # restricted time: the first evaluation at or past the level, or tau when never
    reached: bool
    log2_var: float  # variance of log2(steps) from the evaluation spacing (0 when censored)


def best_so_far(run_metrics: pd.DataFrame, key: str) -> pd.DataFrame:
    """(step, score) of every evaluation, the score oriented (higher is better) and cumulative."""
    e = measures.evals(run_metrics, key)
    scores = [measures.score(key, v) for v in e.value]
    return pd.DataFrame({"step": e.step.to_numpy(dtype=float), "score": np.maximum.accumulate(scores)
                         if len(scores) else []})


def level_at(curve: pd.DataFrame, fraction: float, budget: float) -> float:
    """The best-so-far score at the last evaluation at or before ``fraction`` x ``budget`` (after
    step 0; the first evaluation after 0 when none is that early)."""
    after = curve[curve.step > 0]
    if after.empty:
        return -math.inf
    early = after[after.step <= fraction * budget + 1e-9]
    return float((early if len(early) else after.iloc[:1]).score.iloc[-1])


def levels(curves: list[pd.DataFrame], fractions: list[float], budget: float) -> list[float]:
    """Per fraction, the level every reference curve has reached by then (their minimum)."""
    return [min(level_at(c, f, budget) for c in curves) for f in fractions]


def hit(curve: pd.DataFrame, level: float, tau: float) -> Hit:
    """The restricted time of one run to ``level`` (see the module's docstring)."""
    at = np.flatnonzero(curve.score.to_numpy() >= level)
    if not len(at):
        return Hit(float(tau), False, 0.0)
    i = int(at[0])
    t = float(curve.step.iloc[i])
    if t <= 0:
        return Hit(1.0, True, 0.0)  # at the start already: one step, no spacing
    prev = float(curve.step.iloc[i - 1]) if i > 0 else 0.0
    return Hit(t, True, ((t - prev) / (t * math.log(2))) ** 2 / 12)


def survival(times, reached, tau: float) -> dict[str, float]:
    """Kaplan-Meier summary of times with the unreached ones right-censored at ``tau``: median (nan
    when the survival never falls to 1/2), restricted mean up to tau, and the share never arriving."""
    times, reached = np.asarray(times, dtype=float), np.asarray(reached, dtype=bool)
    if not len(times):
        return {"median": math.nan, "rmst": math.nan, "never": math.nan, "n": 0}
    never = float(1 - reached.mean())
    if reached.any():
        km = stats.ecdf(stats.CensoredData(uncensored=times[reached], right=np.full((~reached).sum(), tau)))
        q, sf = km.sf.quantiles, km.sf.probabilities
        below = np.flatnonzero(sf <= 0.5)
        median = float(q[below[0]]) if len(below) else math.nan
        grid = np.concatenate([[0.0], q[q < tau], [tau]])  # the survival is a step function: integrate it
        steps = np.concatenate([[1.0], sf[q < tau]])
        rmst = float(np.sum(steps * np.diff(grid)))
    else:
        median, rmst = math.nan, float(tau)
    return {"median": median, "rmst": rmst, "never": never, "n": len(times)}


def expected_best_of(scores, k: int) -> float:
    """The expected best of ``k`` trials drawn without replacement from ``scores`` (higher is better):
    sum_i s_(i) C(i-1, k-1) / C(n, k) over the scores sorted ascending (Sivaprasad et al. 2020's
    tunability, in closed form)."""
    s = np.sort(np.asarray(scores, dtype=float))
    n = len(s)
    if not 1 <= k <= n:
        return math.nan
    i = np.arange(1, n + 1)
    log_w = (_log_comb(i - 1, k - 1) - _log_comb(np.array([n]), k)[0])
    w = np.where(i >= k, np.exp(log_w), 0.0)
    return float(np.sum(w * s))


def _log_comb(n, k: int):
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(n >= k, gammaln(n + 1) - gammaln(k + 1) - gammaln(np.maximum(n - k, 0) + 1), -np.inf)
