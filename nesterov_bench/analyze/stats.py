"""One aggregation everywhere: per-seed values -> mean with a 95% Student-t interval, median, n."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    mean: float
    half_width: float  # the 95% interval is mean +- half_width (nan when n < 2)
    median: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def summarize(values) -> Summary:
    """Mean, 95% t-interval half-width (t_{0.975, n-1} s / sqrt n), median and n of finite values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, 0)
    if n == 1:
        return Summary(float(x[0]), math.nan, float(x[0]), 1)
    hw = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return Summary(float(x.mean()), float(hw), float(np.median(x)), n)


def paired(a: dict, b: dict) -> Summary:
    """Summary of a[s] - b[s] over the seeds s both have (a paired comparison on the same seeds)."""
    common = sorted(set(a) & set(b))
    return summarize([a[s] - b[s] for s in common])
