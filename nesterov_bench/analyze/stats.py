"""One aggregation everywhere: per-seed values -> mean with a 95% Student-t interval, median, n; and
one straight-line fit (weighted least squares in closed form) for every fitted line."""

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


@dataclass(frozen=True)
class Line:
    intercept: float
    slope: float
    se: float  # standard error of the slope (nan with fewer than 3 points)


def weighted_line(x, y, w=None) -> Line:
    """The weighted least-squares line y = a + b x, minimizing sum_i w_i (y_i - a - b x_i)^2 (w = 1
    when not given), in closed form:

        xbar = sum w x / sum w,   Sxx = sum w (x - xbar)^2,   b = sum w (x - xbar)(y - ybar) / Sxx,
        a = ybar - b xbar,        se(b) = sqrt(s^2 / Sxx),    s^2 = sum w r^2 / (n - 2),

    with r the residuals -- statsmodels' ``WLS`` slope and ``bse`` and ``np.polyfit``'s line with
    weights sqrt(w). Every sum is exactly rounded (``math.fsum``), so the same inputs give the same
    bits on any CPU: ``np.polyfit`` and ``WLS`` go through LAPACK, whose kernels differ by CPU, and
    their last bits once moved pixels of a figure between two hosts (``make paper`` changed the tree)."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    w = [1.0] * len(x) if w is None else [float(v) for v in w]
    if not len(x) == len(y) == len(w):
        raise ValueError(f"weighted_line: {len(x)} x, {len(y)} y and {len(w)} weights")
    pts = list(zip(w, x, y, strict=True))
    sw = math.fsum(w)
    mx, my = math.fsum(wi * xi for wi, xi, _ in pts) / sw, math.fsum(wi * yi for wi, _, yi in pts) / sw
    sxx = math.fsum(wi * (xi - mx) ** 2 for wi, xi, _ in pts)
    slope = math.fsum(wi * (xi - mx) * (yi - my) for wi, xi, yi in pts) / sxx
    icpt = my - slope * mx
    if len(pts) < 3:
        return Line(icpt, slope, math.nan)
    s2 = math.fsum(wi * (yi - icpt - slope * xi) ** 2 for wi, xi, yi in pts) / (len(pts) - 2)
    return Line(icpt, slope, math.sqrt(s2 / sxx))
