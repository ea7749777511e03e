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
    return fastest(_expected_losses(method, eigenvalues, settings, 0.0, var0, noise_var), settings, max_steps,
                   target)


def fastest(losses, settings: list[tuple[float, float]], max_steps: int,
            target: float) -> tuple[float, float, float]:
    """(steps, lr, momentum) of the setting whose loss in ``losses`` (a generator of every setting's
    expected loss at k = 0, 1, ...) first reaches ``target``; steps = inf when none does in ``max_steps``."""
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


def step_coefficients(method: str, lr: float, momentum: float = 0.0) -> tuple[float, float]:
    """(alpha, beta) of ``e' = e - alpha g - beta b`` with the buffer ``b' = momentum b + g`` (PyTorch's
    forms; GD has no buffer): heavy ball (lr, lr mu), Nesterov (lr (1 + mu), lr mu^2), GD (lr, 0)."""
    if method == "gd":
        return lr, 0.0
    if method == "momentum":
        return lr, lr * momentum
    if method == "nesterov":
        return lr * (1 + momentum), lr * momentum**2
    raise ValueError(f"no linear theory for {method!r}")


def minibatch_losses(method: str, rows, residuals, settings: list[tuple[float, float]], batch: int | None,
                     mean0, var0: float):
    """Yield the exact E[f(x_k) - f*] of every (lr, momentum) in ``settings`` at k = 0, 1, 2, ... for
    mini-batch SGD (``method``'s update) on the least-squares problem f(x) = 1/(2n) sum_i (a_i^T x - y_i)^2
    (``rows``: the n x d matrix of a_i; ``residuals``: r_i = a_i^T x* - y_i at its minimiser x*), each
    step's batch ``batch`` rows drawn uniformly *with* replacement (None: the full batch, no noise),
    from x_0 - x* of mean ``mean0`` (d,) and covariance ``var0`` I, buffers at 0.

    The batch gradient is g = H_B e + c_B (e = x - x*, H_B = 1/B sum_j a_j a_j^T, c_B = 1/B sum_j r_j a_j;
    E[H_B] = H, E[c_B] = 0 since grad f(x*) = 0). Given the state, the batch is fresh, so with
    S = E[z z^T] of z = (e, b) and m = E[z], the step's moments are exact:

        E[g | z] = H e,      E[g g^T] = (1 - 1/B) H S_ee H + 1/B * 1/n sum_i w_i a_i a_i^T,
        w_i = E[(a_i^T e + r_i)^2] = a_i^T S_ee a_i + 2 r_i a_i^T m_e + r_i^2

    (the i-th example's expected squared residual). With e' = e - alpha g - beta b, b' = mu b + g
    (``step_coefficients``) the second moments follow by expanding the products:

        S_bb' = mu^2 S_bb + mu (S_be H + H S_eb) + G
        S_eb' = mu S_eb + S_ee H - alpha mu H S_eb - alpha G - beta mu S_bb - beta S_be H
        S_ee' = S_ee - alpha (S_ee H + H S_ee) - beta (S_eb + S_be) + alpha^2 G
                + alpha beta (H S_eb + S_be H) + beta^2 S_bb

    (G = E[g g^T]), the means m_e' = m_e - alpha H m_e - beta m_b, m_b' = mu m_b + H m_e, and
    E[f - f*] = 1/2 tr(H S_ee). Costs O(n d^2) per step and setting. Sampling without replacement
    (a permutation per epoch) would correlate a step's batch with the past, and this is not exact for it.
    """
    a = np.asarray(rows, dtype=float)
    r = np.asarray(residuals, dtype=float)
    n, d = a.shape
    h = a.T @ a / n
    coef = np.array([step_coefficients(method, lr, mu) for lr, mu in settings])  # (C, 2)
    alpha, beta = coef[:, 0, None, None], coef[:, 1, None, None]
    mu = np.array([mu for _, mu in settings])[:, None, None]
    c = len(settings)
    me = np.broadcast_to(np.asarray(mean0, dtype=float), (c, d)).copy()
    mb = np.zeros((c, d))
    see = np.broadcast_to(var0 * np.eye(d) + np.outer(me[0], me[0]), (c, d, d)).copy()
    seb, sbb = np.zeros((c, d, d)), np.zeros((c, d, d))
    inv = 0.0 if batch is None else 1.0 / batch
    while True:
        yield 0.5 * np.einsum("ij,cji->c", h, see)
        if inv:
            w = np.sum((a @ see) * a, axis=-1) + 2 * r * (me @ a.T) + r**2  # (C, n)
            g = (1 - inv) * h @ see @ h + inv * (a.T * w[:, None, :]) @ a / n
        else:
            g = h @ see @ h
        hse, sbe = h @ seb, np.swapaxes(seb, 1, 2)
        see, seb, sbb = (
            see - alpha * (see @ h + h @ see) - beta * (seb + sbe) + alpha**2 * g
            + alpha * beta * (hse + sbe @ h) + beta**2 * sbb,
            mu * seb + see @ h - alpha * mu * hse - alpha * g - beta * mu * sbb - beta * sbe @ h,
            mu**2 * sbb + mu * (sbe @ h + hse) + g,
        )
        me, mb = me - alpha[..., 0] * me @ h - beta[..., 0] * mb, mu[..., 0] * mb + me @ h
        # the blocks' update is A S A^T only on symmetric S_ee, S_bb; rounding's antisymmetric part would grow
        see, sbb = 0.5 * (see + np.swapaxes(see, 1, 2)), 0.5 * (sbb + np.swapaxes(sbb, 1, 2))


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
