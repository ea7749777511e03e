"""Closed-form convergence rates on quadratics, for the settings the suite actually runs.

On f(x) = 1/2 x^T A x - b^T x every method here is linear, so along an eigenvector of A with
eigenvalue lam the error obeys a fixed linear recursion; its spectral radius is the rate. In
PyTorch's conventions (buffer b, step lr, momentum mu; see rules.py):

    GD:        e <- (1 - lr lam) e                                        rate |1 - lr lam|
    heavy ball: [e, b] <- [[1 - lr lam, -lr mu], [lam, mu]] [e, b]
    Nesterov:   [e, b] <- [[1 - lr lam (1 + mu), -lr mu^2], [lam, mu]] [e, b]

The rate of a method on a spectrum is the worst (largest) radius over its eigenvalues; the error
norm then shrinks like rate^k and the suboptimality f - f* like rate^(2k) (up to polynomial factors
when the 2x2 matrix has a repeated eigenvalue). Classic tuned settings (Polyak 1964; Nesterov 2004):

    GD, lr = 2/(L+mu):                               (kappa-1)/(kappa+1)
    GD, lr = 1/L:                                    1 - 1/kappa
    heavy ball, lr = 4/(sqrt L + sqrt mu)^2, mu_m = ((sqrt kappa - 1)/(sqrt kappa + 1))^2:
                                                     (sqrt kappa - 1)/(sqrt kappa + 1)
    Nesterov, lr = 1/L, mu_m = (sqrt kappa - 1)/(sqrt kappa + 1):   1 - 1/sqrt kappa
"""

from __future__ import annotations

import math

import numpy as np


def iteration_matrix(method: str, lam: float, lr: float, momentum: float = 0.0) -> np.ndarray:
    if method == "gd":
        return np.array([[1 - lr * lam]])
    if method == "momentum":
        return np.array([[1 - lr * lam, -lr * momentum], [lam, momentum]])
    if method == "nesterov":
        return np.array([[1 - lr * lam * (1 + momentum), -lr * momentum**2], [lam, momentum]])
    raise ValueError(f"no linear theory for {method!r}")


def rate(method: str, eigenvalues, lr: float, momentum: float = 0.0) -> float:
    """Worst-case spectral radius over the eigenvalues: the asymptotic rate of ||x_k - x*||."""
    return max(float(np.max(np.abs(np.linalg.eigvals(iteration_matrix(method, lam, lr, momentum)))))
               for lam in np.asarray(eigenvalues, dtype=float))


def stability_limit(method: str, momentum: float = 0.0) -> float:
    """The largest ``lr * L`` at which ``method`` converges on every quadratic with top eigenvalue L
    (for ``lr * lam`` in (0, limit) every mode contracts; above it the top mode grows):

        GD:         lr L < 2
        heavy ball: lr L < 2 (1 + mu)
        Nesterov:   lr L < 2 (1 + mu) / (1 + 2 mu)      (PyTorch's form; see ``iteration_matrix``)

    Each is where an eigenvalue of the mode's iteration matrix crosses -1: its characteristic
    polynomial z^2 - tr z + det at z = -1 is 1 + tr + det, which is 2 + 2 mu - lr lam (heavy ball)
    and 2 + 2 mu - lr lam (1 + 2 mu) (Nesterov: tr = 1 + mu - lr lam (1 + mu), det = mu (1 - lr lam)).
    The other root stays inside the unit circle for mu in [0, 1)."""
    if method == "gd":
        return 2.0
    if method == "momentum":
        return 2.0 * (1.0 + momentum)
    if method == "nesterov":
        return 2.0 * (1.0 + momentum) / (1.0 + 2.0 * momentum)
    raise ValueError(f"no linear theory for {method!r}")


def noise_input(method: str, lr: float, momentum: float = 0.0) -> np.ndarray:
    """How additive gradient noise xi enters a mode's state ``(e, b)``: the step's coefficient on the
    gradient. GD: e -= lr xi; heavy ball: e -= lr xi, b += xi; Nesterov: e -= lr (1 + mu) xi, b += xi."""
    if method == "gd":
        return np.array([-lr])
    if method == "momentum":
        return np.array([-lr, 1.0])
    if method == "nesterov":
        return np.array([-lr * (1 + momentum), 1.0])
    raise ValueError(f"no linear theory for {method!r}")


def expected_suboptimality(method: str, eigenvalues, lr: float, momentum: float, steps: int,
                           mean0, var0, noise_var) -> np.ndarray:
    """E[f(x_k) - f*], k = 0..steps, on a quadratic with additive gradient noise: g = H (x - x*) + xi,
    xi independent across steps, with variance ``noise_var`` along each eigenvector (sigma^2 lam for
    covariance sigma^2 H; sigma^2 for sigma^2 I), from x_0 - x* of mean ``mean0`` and variance ``var0`` per
    eigen-direction (buffers start at 0). Each mode's state s = (e, b) obeys s' = A s + B xi (A:
    ``iteration_matrix``, B: ``noise_input``), so its mean m' = A m and its second moment
    S' = A S A^T + noise_var B B^T evolve exactly; E[f - f*] = 1/2 sum lam (S_ee)."""
    losses = _expected_losses(method, eigenvalues, [(lr, momentum)], mean0, var0, noise_var)
    return np.asarray([next(losses)[0] for _ in range(steps + 1)])


def fastest_under_noise(method: str, eigenvalues, settings: list[tuple[float, float]], max_steps: int,
                        var0: float, noise_var, target: float) -> tuple[float, float, float]:
    """The fewest steps any of ``settings`` ((lr, momentum) pairs, tried together) needs for the exact
    expected suboptimality (``expected_suboptimality``, from x_0 - x* of mean 0 and variance ``var0``) to
    reach ``target``; (steps, lr, momentum) of the fastest, steps = inf when none does in ``max_steps``."""
    losses = _expected_losses(method, eigenvalues, settings, 0.0, var0, noise_var)
    next(losses)  # k = 0
    steps = np.full(len(settings), np.inf)
    for k in range(1, max_steps + 1):
        steps[np.isinf(steps) & (next(losses) <= target)] = k
        if np.isfinite(steps).any() and k > steps.min():
            break
    best = int(np.argmin(steps))
    return float(steps[best]), *settings[best]


def _expected_losses(method: str, eigenvalues, settings: list[tuple[float, float]], mean0, var0, noise_var):
    """Yield E[f - f*] of every (lr, momentum) in ``settings`` (shape (C,)) at k = 0, 1, 2, ...: the
    second-moment recursion of ``expected_suboptimality``, for several settings at once."""
    lam = np.asarray(eigenvalues, dtype=float)
    a = np.stack([[iteration_matrix(method, x, lr, mu) for x in lam] for lr, mu in settings])  # (C, d, n, n)
    b = np.stack([noise_input(method, lr, mu) for lr, mu in settings])  # (C, n)
    m = np.zeros((len(lam), a.shape[-1]))
    m[:, 0] = mean0
    s0 = np.einsum("di,dj->dij", m, m)
    s0[:, 0, 0] += var0
    s = np.broadcast_to(s0, a.shape).copy()
    bb = np.einsum("ci,cj->cij", b, b)[:, None] * np.asarray(noise_var, dtype=float)[None, :, None, None]
    while True:
        yield 0.5 * s[..., 0, 0] @ lam
        s = np.einsum("cdij,cdjk,cdlk->cdil", a, s, a) + bb


def spectrum(mu: float, kappa: float, dim: int, kind: str = "linear") -> np.ndarray:
    """The eigenvalues of the ``quadratic`` task (the same spacing as tasks/synthetic.py)."""
    L = kappa * mu
    if kind == "log":
        return np.logspace(math.log10(mu), math.log10(L), dim)
    return np.linspace(mu, L, dim)


def classic_rates(kappa: float) -> dict[str, float]:
    """The textbook rates of the tuned methods, as functions of kappa alone."""
    s = math.sqrt(kappa)
    return {
        "gd_2/(L+mu)": (kappa - 1) / (kappa + 1),
        "gd_1/L": 1 - 1 / kappa,
        "heavy_ball_polyak": (s - 1) / (s + 1),
        "nesterov_1/L": 1 - 1 / s,
    }


def classic_settings(mu: float, L: float) -> dict[str, dict[str, float]]:
    """The settings behind ``classic_rates`` in the suite's (lr, momentum) terms."""
    kappa, s = L / mu, math.sqrt(L / mu)
    return {
        "gd_2/(L+mu)": {"method": "gd", "lr": 2 / (L + mu), "momentum": 0.0},
        "gd_1/L": {"method": "gd", "lr": 1 / L, "momentum": 0.0},
        # Polyak's x <- x - a g + b (x - x_prev) is PyTorch's heavy ball with lr = a, momentum = b.
        "heavy_ball_polyak": {"method": "momentum", "lr": 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2,
                              "momentum": ((s - 1) / (s + 1)) ** 2},
        "nesterov_1/L": {"method": "nesterov", "lr": 1 / L, "momentum": (s - 1) / (s + 1)},
    } if kappa >= 1 else {}


#: The textbook setting of each optimizer the ``quadratic_theory`` experiment runs.
CLASSIC_FOR = {"gd": "gd_2/(L+mu)", "momentum": "heavy_ball_polyak", "nesterov": "nesterov_1/L"}


def classic(key: str, method: str, mu: float, kappa: float) -> float:
    """Config resolver ``${classic:lr|momentum,<optimizer>,<mu>,<kappa>}``: the textbook setting."""
    if mu is None or kappa is None:
        raise ValueError("tuning=theory needs a task with a known spectrum "
                         "(task=quadratic: task.mu, task.kappa)")
    if method not in CLASSIC_FOR:
        raise ValueError(f"no textbook quadratic setting for optimizer {method!r} "
                         f"(one of {', '.join(CLASSIC_FOR)})")
    setting = classic_settings(float(mu), float(kappa) * float(mu))[CLASSIC_FOR[method]]
    return float(setting[key])


def classic_rate(method: str, kappa: float) -> float:
    """The predicted rate of ``method`` at its textbook setting (see ``classic_rates``)."""
    return classic_rates(float(kappa))[CLASSIC_FOR[method]]
