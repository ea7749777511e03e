r"""The four update rules of the benchmark, each written once, as an in-place step on tensors.

Overview
--------
The benchmark compares

* ``gd``       -- plain (stochastic) gradient descent,
* ``momentum`` -- heavy-ball momentum (Polyak 1964),
* ``nesterov`` -- Nesterov's accelerated gradient (Nesterov 1983) in the form of
  Sutskever et al. (2013), written the way ``torch.optim.SGD(nesterov=True)`` writes it,
* ``adam``     -- Adam with bias correction (Kingma & Ba 2015), as ``torch.optim.Adam``.

Besides these, ``FORMULATIONS`` holds other forms, selectable by ``optimizer.name`` (conf/optimizer/):
``nesterov_sutskever`` (Sutskever et al.'s velocity form) and ``nesterov_1983`` (Nesterov's two
sequences), which give ``nesterov``'s iterates under a constant learning rate; and the first
article's two rules as written, ``article_ema`` (heavy ball at lr·(1 − β)) and ``article_stated``
(a diverging, delayed gradient ascent). tests/test_formulations.py checks each claim.

Each rule is written once, as an in-place step ``name_(p, g, state, **hyperparameters)``,
with its pure form ``name(p, g, state, **hyperparameters) -> (new_p, new_state)`` derived from it:

* ``p`` and ``g`` are tensors of the same shape (parameter and its gradient at ``p``);
* ``state`` is a dict of tensors, ``{}`` before the first step; the rule creates its own
  buffers (all starting at zero).  ``name_`` updates ``p`` and ``state`` in place (what
  :class:`Optimizer` and the training loop use: no new tensors per step beyond a temporary or
  two, as in ``torch.optim``); ``name`` runs it on copies and modifies nothing passed in;
* ``g`` is never written to;
* hyperparameters may be python floats *or* tensors that broadcast against ``p``: a
  population of K models stacked along a leading axis (``p`` of shape ``(K, ...)``) can be
  stepped in one call with, e.g., ``lr`` of shape ``(K, 1, ..., 1)``.  The rules never branch
  on tensor values; with floats the compared four use ``torch.optim``'s fused single-tensor
  kernels and give its numbers bit for bit, with tensors they evaluate the same formula as
  products then sums (equal within rounding).  Adam's step count is a CPU scalar, so reading
  it never waits for a GPU.

Parameters are real floating-point tensors.  Weight decay is *coupled* L2 regularisation,
``g <- g + wd * p`` applied to the gradient before the rule, exactly as in
``torch.optim.SGD`` and ``torch.optim.Adam`` (not the decoupled AdamW form); it is off by
default.  All conventions match ``torch.optim`` (with ``dampening=0``, ``maximize=False``,
``amsgrad=False``), and the tests check equality step by step.

:class:`Optimizer` wraps any rule as a drop-in ``torch.optim.Optimizer`` for a single model;
:class:`OptimizerConfig` is the validated user setting (``optimizer.*`` keys).

Fairness caveat
---------------
With momentum μ and a slowly varying gradient, the buffer approaches ``g / (1 - μ)``, so the
steady-state step of heavy ball and Nesterov is about ``1 / (1 - μ)`` times GD's step at the
same learning rate (10x for μ = 0.9).  Adam's step is normalised to about ``lr`` per
coordinate, a different scale again.  Comparing optimizers at one shared learning rate
therefore compares step sizes, not methods: learning rates are tuned per optimizer.

References
----------
* B. T. Polyak (1964). Some methods of speeding up the convergence of iteration methods.
  USSR Computational Mathematics and Mathematical Physics 4(5):1-17.
* Yu. E. Nesterov (1983). A method for solving the convex programming problem with
  convergence rate O(1/k^2). Soviet Mathematics Doklady 27:372-376.
* I. Sutskever, J. Martens, G. Dahl, G. Hinton (2013). On the importance of initialization
  and momentum in deep learning. ICML 2013.
* D. P. Kingma, J. Ba (2015). Adam: A method for stochastic optimization. ICLR 2015.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from nesterov_bench.errors import ConfigError

__all__ = [
    "ALL_RULES",
    "FORMULATIONS",
    "MOMENTUM_FAMILY",
    "RULES",
    "Optimizer",
    "OptimizerConfig",
    "adam",
    "adam_",
    "article_ema",
    "article_ema_",
    "article_stated",
    "article_stated_",
    "build",
    "gd",
    "gd_",
    "hyperparameters",
    "momentum",
    "momentum_",
    "nesterov",
    "nesterov_",
    "nesterov_1983",
    "nesterov_1983_",
    "nesterov_sutskever",
    "nesterov_sutskever_",
]

Hyper = float | Tensor
State = dict[str, Tensor]
Rule = Callable[..., tuple[Tensor, State]]


# ---------------------------------------------------------------------------------------------
# The update rules, each written once, in place
# ---------------------------------------------------------------------------------------------
# Each ``name_(p, g, state, **hp)`` updates ``p`` and the tensors of ``state`` in place (creating
# missing buffers in ``state``) and never writes to ``g``. With float hyperparameters the compared
# four run torch.optim's own single-tensor arithmetic (``add_(x, alpha=a)``, ``lerp_``, ``addcmul_``,
# ``addcdiv_``: fused kernels, one pass over memory), so they give torch.optim's numbers bit for
# bit on the same machine; with per-member tensors (a stacked population) the same formula is
# evaluated as products then sums, equal within rounding. ``_functional`` makes the pure forms.


def _plus_scaled(x: Tensor, a: Hyper, y: Tensor) -> Tensor:
    """x + a·y as a new tensor: torch's ``x.add(y, alpha=a)`` for a float a, else x + (a·y)."""
    return x + a * y if isinstance(a, Tensor) else x.add(y, alpha=a)


def _add_scaled_(x: Tensor, a: Hyper, y: Tensor, z: Tensor | None = None) -> Tensor:
    """x ← x + a·y (or x + a·y·z), in place: torch's ``add_(y, alpha=a)`` / ``addcmul_(y, z,
    value=a)`` for a float a, else the products then the sum."""
    if isinstance(a, Tensor):
        return x.add_(a * y if z is None else a * y * z)
    return x.add_(y, alpha=a) if z is None else x.addcmul_(y, z, value=a)


def _decayed(p: Tensor, g: Tensor, weight_decay: Hyper) -> Tensor:
    """Coupled L2 weight decay: g + wd·p (a new tensor; ``g`` itself when wd is the float 0)."""
    if isinstance(weight_decay, numbers.Real) and weight_decay == 0:
        return g
    return _plus_scaled(g, weight_decay, p)


def _buffer(state: State, key: str, p: Tensor) -> Tensor:
    """``state[key]``, created as zeros shaped like ``p`` on the first step."""
    if key not in state:
        state[key] = torch.zeros_like(p)
    return state[key]


def gd_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, weight_decay: Hyper = 0.0) -> None:
    r"""Gradient descent: one step.

    Algorithm (one step, gradient g = ∇f(p) taken at the current parameters p)::

        g ← g + wd · p          (coupled L2 weight decay; wd = 0 by default)
        p ← p − lr · g

    Conventions: the learning rate multiplies the gradient directly; there is no state.
    Equals ``torch.optim.SGD(params, lr, weight_decay=wd)``.

    Args:
        p: parameters; g: gradient at ``p`` (same shape); state: ``{}`` (unused).
        lr, weight_decay: floats or tensors broadcastable against ``p``.
    """
    g = _decayed(p, g, weight_decay)
    _add_scaled_(p, -lr, g)


def momentum_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, momentum: Hyper,
              weight_decay: Hyper = 0.0) -> None:
    r"""Heavy-ball momentum (Polyak 1964), in PyTorch's form: one step.

    Algorithm (gradient g = ∇f(p) at the current parameters p, buffer b, μ = ``momentum``)::

        g ← g + wd · p          (coupled L2 weight decay; wd = 0 by default)
        b ← μ · b + g           (b starts at 0, so b = g after the first step)
        p ← p − lr · b

    Conventions: the learning rate sits *outside* the buffer (b accumulates raw gradients;
    Polyak's original p ← p − α g + β (p − p_prev) is the same iteration with α = lr and
    β = μ).  The buffer starts at zero, which for dampening = 0 is exactly
    ``torch.optim.SGD``'s "buffer = g on the first step".  Equals
    ``torch.optim.SGD(params, lr, momentum=μ, weight_decay=wd)``.  In steady state the
    step is about lr/(1 − μ) · g: see the module's fairness caveat.

    State: ``{"momentum_buffer": b}`` (created as zeros when ``state`` is ``{}``).
    """
    mu = momentum
    g = _decayed(p, g, weight_decay)
    b = _buffer(state, "momentum_buffer", p)
    b.mul_(mu).add_(g)
    _add_scaled_(p, -lr, b)


def nesterov_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, momentum: Hyper,
              weight_decay: Hyper = 0.0) -> None:
    r"""Nesterov's accelerated gradient (Nesterov 1983; Sutskever et al. 2013), PyTorch's form.

    Algorithm (gradient g = ∇f(p) at the current parameters p, buffer b, μ = ``momentum``)::

        g ← g + wd · p          (coupled L2 weight decay; wd = 0 by default)
        b ← μ · b + g           (b starts at 0)
        p ← p − lr · (g + μ · b)

    Conventions: the gradient is taken at the *current* parameters p, and the look-ahead
    is folded into the step direction g + μ b.  This is Sutskever et al. (2013)'s form

        v ← μ v − ε ∇f(θ + μ v),    θ ← θ + v

    (gradient at the look-ahead point θ + μ v) rewritten in the variable θ̃ = θ + μ v, with
    v = −lr · b and ε = lr: then p = θ̃ is the point where the gradient is evaluated and
    θ̃ ← θ̃ + μ v_new − lr·g = θ̃ − lr (g + μ b_new).  The learning rate sits outside the
    buffer and the buffer starts at zero, as for heavy ball.  Equals
    ``torch.optim.SGD(params, lr, momentum=μ, nesterov=True, weight_decay=wd)``.

    State: ``{"momentum_buffer": b}`` (created as zeros when ``state`` is ``{}``).
    """
    mu = momentum
    g = _decayed(p, g, weight_decay)
    b = _buffer(state, "momentum_buffer", p)
    b.mul_(mu).add_(g)
    _add_scaled_(p, -lr, _plus_scaled(g, mu, b))


def adam_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, beta1: Hyper, beta2: Hyper,
          eps: Hyper, weight_decay: Hyper = 0.0) -> None:
    r"""Adam (Kingma & Ba 2015) with bias correction, in ``torch.optim.Adam``'s arithmetic.

    Algorithm (gradient g = ∇f(p) at the current parameters p; m, v, t start at 0)::

        g ← g + wd · p                      (coupled L2 weight decay, not AdamW; wd = 0)
        t ← t + 1
        m ← β1 · m + (1 − β1) · g
        v ← β2 · v + (1 − β2) · g²
        m̂ = m / (1 − β1^t),   v̂ = v / (1 − β2^t)
        p ← p − lr · m̂ / (√v̂ + eps)

    Conventions: the last line is evaluated as torch does,

        denom = √v / √(1 − β2^t) + eps,     p ← p − (lr / (1 − β1^t)) · m / denom,

    which is the same number as lr · m̂ / (√v̂ + eps): eps is added *after* the bias
    correction of √v (Kingma & Ba's Algorithm 1), not to √v before it (their "efficient"
    variant, which differs when √v̂ is comparable to eps).  With bias correction the first
    step is lr · g / (|g| + eps) ≈ lr · sign(g) per coordinate.  Equals
    ``torch.optim.Adam(params, lr, betas=(β1, β2), eps=eps, weight_decay=wd)``.

    State: ``{"m": m, "v": v, "t": t}``; t is a 0-d float64 CPU tensor counting steps, shared
    by all entries of p (so by all members of a stacked population).  The bias corrections
    1 − β^t are computed in python floats, as torch does, when the hyperparameters are floats;
    tensor hyperparameters should have p's dtype, and are then used in that precision.
    """
    g = _decayed(p, g, weight_decay)
    m = _buffer(state, "m", p)
    v = _buffer(state, "v", p)
    if "t" not in state:
        # A float64 CPU scalar: read without a device sync, and as precise as the python float torch
        # uses (1 − β^t cancels digits for small t; in float32 it would be off by ~1e-5 relative).
        state["t"] = torch.zeros((), dtype=torch.float64)
    t = state["t"].add_(1)
    m.lerp_(g, 1 - beta1)  # m + (1 − β1)(g − m) = β1 m + (1 − β1) g
    _add_scaled_(v.mul_(beta2), 1 - beta2, g, g)
    if any(isinstance(h, Tensor) for h in (lr, beta1, beta2, eps)):
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        denom = v.sqrt().div_(bias_correction2.sqrt()).add_(eps)
        p.sub_(lr / bias_correction1 * m / denom)
    else:  # torch.optim.Adam's arithmetic, in python floats
        step = t.item()
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
        p.addcdiv_(m, denom, value=-lr / bias_correction1)


# ---------------------------------------------------------------------------------------------
# Other formulations of Nesterov's method, and the first article's rules as written
# ---------------------------------------------------------------------------------------------
# The training loop takes the gradient at the parameters it holds, so each form keeps, as ``p``, the
# point where its gradient is evaluated, and whatever else it needs in its state.


def nesterov_sutskever_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, momentum: Hyper,
                        weight_decay: Hyper = 0.0) -> None:
    r"""Nesterov's method in Sutskever et al. (2013)'s velocity form.

    Their iteration (θ the "base" point, v an lr-scaled velocity, ε = lr, μ = ``momentum``)::

        v ← μ · v − ε · ∇f(θ + μ · v)
        θ ← θ + v

    The gradient is taken at the look-ahead point θ + μ v, so ``p`` holds p = θ + μ v and the
    state holds v (θ = p − μ v). In p::

        v' = μ · v − lr · g           (g = ∇f(p))
        p' = θ + v' + μ · v' = p − μ · v + (1 + μ) · v'

    Change of variables to PyTorch's form (``nesterov``): v = −lr · b, and p is the same
    sequence. With a constant lr the iterates coincide; with a schedule they do not, because
    v stores lr-scaled steps and b raw gradients (a new lr rescales only b's new term).

    State: ``{"velocity": v}`` (zeros at first).
    """
    mu = momentum
    g = _decayed(p, g, weight_decay)
    v = _buffer(state, "velocity", p)
    mv = mu * v
    p.sub_(mv)
    v.copy_(mv.sub_(lr * g))
    p.add_((1 + mu) * v)


def nesterov_1983_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, momentum: Hyper,
                   weight_decay: Hyper = 0.0) -> None:
    r"""Nesterov's (1983) two-sequence form, with a constant momentum coefficient μ.

    Two sequences, x (the iterates) and y (the extrapolated points where gradients are taken)::

        x_{k+1} = y_k − lr · ∇f(y_k)
        y_{k+1} = x_{k+1} + μ · (x_{k+1} − x_k)          (x_0 = y_0 = the initial parameters)

    ``p`` holds y (the gradient's point) and the state holds the last x. Nesterov (1983) lets
    μ_k = (k − 1)/(k + 2) grow for convex f; the constant μ = (√κ − 1)/(√κ + 1) is the
    strongly convex scheme (Nesterov 2004), and what the benchmark compares.

    Change of variables: y_k is PyTorch's p (``nesterov``) and Sutskever's θ + μ v; x_k is
    Sutskever's θ, x_{k+1} − x_k his v_{k+1} and −lr times PyTorch's buffer. All three give the
    same y sequence under a constant lr.

    State: ``{"x": x_k}`` (the initial parameters at first).
    """
    mu = momentum
    g = _decayed(p, g, weight_decay)
    if "x" not in state:
        state["x"] = p.clone()
    x = state["x"]
    x_new = p - lr * g
    p.copy_(x_new).add_(mu * (x_new - x))
    x.copy_(x_new)


def article_ema_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, momentum: Hyper,
                 weight_decay: Hyper = 0.0) -> None:
    r"""The first article's algorithm for "Nesterov momentum", as written (β = ``momentum``)::

        v ← β · v + (1 − β) · ∇J(θ)
        θ ← θ − η · v

    The gradient is taken at θ itself, with no look-ahead: this is heavy-ball momentum on an
    exponential moving average. With v = (1 − β) b it is exactly ``momentum`` (b ← β b + g,
    θ ← θ − lr b) at lr = η (1 − β): heavy ball with a 1/(1 − β) smaller learning rate, not
    Nesterov.

    State: ``{"ema": v}`` (zeros at first).
    """
    beta = momentum
    g = _decayed(p, g, weight_decay)
    v = _buffer(state, "ema", p)
    v.mul_(beta).add_((1 - beta) * g)
    p.sub_(lr * v)


def article_stated_(p: Tensor, g: Tensor, state: State, *, lr: Hyper, momentum: Hyper,
                    weight_decay: Hyper = 0.0) -> None:
    r"""The first article's *formula* for Nesterov momentum, taken literally (β = ``momentum``)::

        v_{t+1} = v_t + β · v_t − η · ∇J(w_{t−1})
        θ_{t+1} = θ_t − η · v_{t+1}

    ∇J(w_{t−1}) is the gradient at the previous iterate (the article: "the partial derivative at the
    parameters w_{t−1} of the previous time step"): the state keeps the last gradient (zero before
    the first step, so the first step does not move), and the step taken at t uses the gradient of
    t − 1.

    What it is, exactly: with u = −η v (the displacement, θ_{t+1} = θ_t + u_{t+1})::

        u_{t+1} = (1 + β) · u_t + η² · ∇J(θ_{t−1})

    i.e. heavy ball (``momentum``: b ← μ b + g, θ ← θ − lr b) with momentum coefficient μ = 1 + β
    and learning rate lr = −η², fed the one-step-delayed gradient. The coefficient 1 + β > 1 makes
    the velocity grow like (1 + β)^t whatever the gradient, and the negative learning rate moves θ
    *up* the gradient: a diverging, delayed gradient ascent. It is no form of Nesterov's method
    (nor of heavy ball, whose coefficient is β < 1 and whose learning rate is positive).

    State: ``{"velocity": v, "prev_grad": ∇J(w_{t−1})}`` (zeros at first).
    """
    beta = momentum
    g = _decayed(p, g, weight_decay)
    v = _buffer(state, "velocity", p)
    g_prev = _buffer(state, "prev_grad", p)
    v.add_(beta * v).sub_(lr * g_prev)
    p.sub_(lr * v)
    g_prev.copy_(g)


def _functional(rule_: Callable[..., None]) -> Rule:
    """The pure form of an in-place rule: ``rule(p, g, state, **hp) -> (new_p, new_state)``.

    It runs ``rule_`` on copies, so nothing passed in is modified; same arithmetic, same numbers.
    """

    def rule(p: Tensor, g: Tensor, state: State, **hp: Hyper) -> tuple[Tensor, State]:
        new_p, new_state = p.clone(), {k: v.clone() for k, v in state.items()}
        rule_(new_p, g, new_state, **hp)
        return new_p, new_state

    rule.__name__ = rule.__qualname__ = rule_.__name__.rstrip("_")
    rule.__doc__ = (f"Pure form of :func:`{rule_.__name__}` (same arithmetic; inputs are not "
                    "modified); returns ``(new_p, new_state)``.")
    rule.inplace = rule_  # type: ignore[attr-defined]
    return rule


gd = _functional(gd_)
momentum = _functional(momentum_)
nesterov = _functional(nesterov_)
adam = _functional(adam_)
nesterov_sutskever = _functional(nesterov_sutskever_)
nesterov_1983 = _functional(nesterov_1983_)
article_ema = _functional(article_ema_)
article_stated = _functional(article_stated_)


#: The four optimizers the benchmark compares (each checked against torch.optim).
RULES: dict[str, Rule] = {
    "gd": gd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adam": adam,
}
#: Other forms, selectable by name for the math checks (tests/test_formulations.py).
FORMULATIONS: dict[str, Rule] = {
    "nesterov_sutskever": nesterov_sutskever,
    "nesterov_1983": nesterov_1983,
    "article_ema": article_ema,
    "article_stated": article_stated,
}
ALL_RULES: dict[str, Rule] = {**RULES, **FORMULATIONS}
#: The rules with a momentum coefficient (``optimizer.momentum`` in (0, 1)).
MOMENTUM_FAMILY = ("momentum", "nesterov", "nesterov_sutskever", "nesterov_1983", "article_ema",
                   "article_stated")


# ---------------------------------------------------------------------------------------------
# Validated configuration
# ---------------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    """A real number, refusing bools and strings (``True`` is an int in python)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _in_unit_interval(x: Any) -> bool:
    """x is a number in [0, 1) (NaN fails the comparisons)."""
    return _is_number(x) and 0.0 <= x < 1.0


@dataclass(frozen=True)
class OptimizerConfig:
    """The user's ``optimizer.*`` setting.

    Attributes:
        name: one of ``gd``, ``momentum``, ``nesterov``, ``adam`` (the compared four), or a
            formulation: ``nesterov_sutskever``, ``nesterov_1983``, ``article_ema``,
            ``article_stated``.
        lr: learning rate, a finite number > 0 (tuned per optimizer; see the module docs).
        momentum: μ in (0, 1) for the momentum family (``MOMENTUM_FAMILY``); 0 for the others.
        betas: Adam's (β1, β2), each in [0, 1).
        eps: Adam's ε > 0, added to √v̂.
        weight_decay: coupled L2 coefficient ≥ 0 (0 = off).
    """

    name: str
    lr: float
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> OptimizerConfig:
        """Build and validate from a plain mapping (e.g. ``OmegaConf.to_container(cfg.optimizer)``).

        Unknown keys, missing ``name``/``lr`` and every invalid value raise
        :class:`~nesterov_bench.errors.ConfigError`.  ``betas`` may be a list.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"optimizer must be a mapping of settings (name, lr, ...), got {d!r}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            names = ", ".join(f"optimizer.{k}" for k in unknown)
            raise ConfigError(
                f"unknown setting(s) {names}; the known ones are "
                + ", ".join(f"optimizer.{k}" for k in known))
        for required in ("name", "lr"):
            if required not in d:
                raise ConfigError(f"optimizer.{required} is required but was not given")
        kwargs = dict(d)
        if "betas" in kwargs:
            betas = kwargs["betas"]
            if isinstance(betas, Sequence) and not isinstance(betas, str):
                kwargs["betas"] = tuple(betas)
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Refuse any setting that is invalid or would be silently ignored (ConfigError)."""
        name = self.name
        if not isinstance(name, str) or name not in ALL_RULES:
            valid = ", ".join(ALL_RULES)
            raise ConfigError(f"optimizer.name must be one of {valid}, got {name!r}")

        lr = self.lr
        if not (_is_number(lr) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"optimizer.lr must be a positive number, got {lr!r}")

        mu = self.momentum
        if not _in_unit_interval(mu):
            raise ConfigError(f"optimizer.momentum must be a number in [0, 1), got {mu!r}")
        if name.startswith("nesterov") and mu == 0:
            raise ConfigError(
                "Nesterov needs momentum > 0: set optimizer.momentum in (0, 1), e.g. 0.9 "
                "(with momentum 0 it is plain gd)")
        if name.startswith("article_") and mu == 0:
            raise ConfigError(
                f"optimizer.name={name} needs optimizer.momentum in (0, 1), e.g. 0.9")
        if name == "momentum" and mu == 0:
            raise ConfigError(
                "optimizer.name=momentum needs optimizer.momentum in (0, 1), e.g. 0.9; "
                "for plain gradient descent use optimizer.name=gd")
        if name == "gd" and mu != 0:
            raise ConfigError(
                f"optimizer.momentum={mu!r} would be ignored by optimizer.name=gd: "
                "remove it, or use optimizer.name=momentum or nesterov")
        if name == "adam" and mu != 0:
            raise ConfigError(
                f"optimizer.momentum={mu!r} would be ignored by optimizer.name=adam: "
                "remove it (Adam's momentum is optimizer.betas[0])")

        betas = self.betas
        if not (isinstance(betas, tuple) and len(betas) == 2
                and all(_in_unit_interval(b) for b in betas)):
            raise ConfigError(
                f"optimizer.betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got {betas!r}")

        eps = self.eps
        if not (_is_number(eps) and math.isfinite(eps) and eps > 0):
            raise ConfigError(f"optimizer.eps must be a positive number, got {eps!r}")

        wd = self.weight_decay
        if not (_is_number(wd) and math.isfinite(wd) and wd >= 0):
            raise ConfigError(
                f"optimizer.weight_decay must be a number >= 0 (0 = off), got {wd!r}")


def hyperparameters(cfg: OptimizerConfig) -> dict[str, float]:
    """The keyword arguments of ``RULES[cfg.name]`` for this configuration (all python floats)."""
    hp: dict[str, float] = {"lr": float(cfg.lr)}
    if cfg.name in MOMENTUM_FAMILY:
        hp["momentum"] = float(cfg.momentum)
    elif cfg.name == "adam":
        hp["beta1"] = float(cfg.betas[0])
        hp["beta2"] = float(cfg.betas[1])
        hp["eps"] = float(cfg.eps)
    elif cfg.name != "gd":
        raise ConfigError(f"optimizer.name must be one of {', '.join(ALL_RULES)}, got {cfg.name!r}")
    hp["weight_decay"] = float(cfg.weight_decay)
    return hp


# ---------------------------------------------------------------------------------------------
# Drop-in torch optimizer
# ---------------------------------------------------------------------------------------------


class Optimizer(torch.optim.Optimizer):
    """A thin ``torch.optim.Optimizer`` that applies ``ALL_RULES[cfg.name]`` to each parameter.

    The hyperparameters live in each param group (keys of :func:`hyperparameters`, e.g.
    ``lr``), so learning-rate schedulers that edit ``group["lr"]`` work.  Parameters whose
    ``.grad`` is None are skipped, as in torch.  The rule's in-place form (``gd_`` for ``gd``,
    ...) updates each parameter and its state dict ``self.state[p]`` under ``torch.no_grad()``.
    For a population whose parameters are stacked along a leading axis of size K
    (``population.Population``), a group's hyperparameter may be a tensor of shape (K,): member k
    is stepped with entry k.
    """

    def __init__(self, params: Iterable[Any], cfg: OptimizerConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.rule_ = ALL_RULES[cfg.name].inplace
        self._hp_keys = tuple(hyperparameters(cfg))
        super().__init__(params, hyperparameters(cfg))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hp = {k: group[k] for k in self._hp_keys}
            per_member = [k for k, v in hp.items() if isinstance(v, Tensor)]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{self.cfg.name} does not support sparse gradients")
                if per_member:  # (K,) -> (K, 1, ..., 1): member k's value on p[k]
                    shape = (-1,) + (1,) * (p.dim() - 1)
                    hp.update({k: group[k].view(shape) for k in per_member})
                self.rule_(p, p.grad, self.state[p], **hp)
        return loss


def build(params: Iterable[Any], cfg: OptimizerConfig | Mapping[str, Any]) -> Optimizer:
    """The :class:`Optimizer` for ``params``; ``cfg`` may also be a plain ``optimizer`` mapping."""
    if not isinstance(cfg, OptimizerConfig):
        cfg = OptimizerConfig.from_mapping(cfg)
    return Optimizer(params, cfg)
