r"""The four update rules of the benchmark, each written once, as an in-place step on tensors.

Overview
--------
The benchmark compares

* ``gd``       -- plain (stochastic) gradient descent,
* ``momentum`` -- heavy-ball momentum (Polyak 1964),
* ``nesterov`` -- Nesterov's accelerated gradient (Nesterov 1983) in the form of
  Sutskever et al. (2013), written the way ``torch.optim.SGD(nesterov=True)`` writes it,
* ``adam``     -- Adam with bias correction (Kingma & Ba 2015), as ``torch.optim.Adam``.

Each is a :class:`Rule`: its in-place step ``step(p, g, state, **hyperparameters)`` with the
algorithm and its conventions in the docstring, the ``optimizer.*`` settings it reads and their
defaults. ``RULES`` holds the four; other forms of Nesterov's method and the first article's rules
are in :mod:`nesterov_bench.formulations`; :mod:`nesterov_bench.optimizer_config` looks both up by
``optimizer.name`` and validates a setting; :mod:`nesterov_bench.optimizers` wraps a rule as a
``torch.optim.Optimizer``. This module does not import torch (the run store and the analysis read
the rules' settings without it); the steps use tensor methods only.

Conventions of a step ``step(p, g, state, **hyperparameters)``:

* ``p`` and ``g`` are tensors of the same shape (parameter and its gradient at ``p``);
* ``state`` is a dict of tensors, ``{}`` before the first step; the rule creates its own
  buffers (all starting at zero).  The step updates ``p`` and ``state`` in place (no new tensors
  per step beyond a temporary or two, as in ``torch.optim``);
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

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    Hyper = float | Tensor
    State = dict[str, Tensor]

__all__ = ["ADAM", "GD", "MOMENTUM", "NESTEROV", "RULES", "Rule"]


@dataclass(frozen=True)
class Rule:
    """An update rule: its in-place step and the ``optimizer.*`` settings it reads.

    Attributes:
        name: ``optimizer.name``.
        step: ``step(p, g, state, **hyperparameters)``, updating ``p`` and ``state`` in place; the
            algorithm, its conventions and references are its docstring.
        settings: the ``optimizer.*`` keys the rule reads besides ``lr`` and ``weight_decay`` (which
            every rule takes), in the order they appear in a run's directory name.
        defaults: those of ``settings`` that have a default. They enter a run's directory name only
            when one of them differs from it; the others always do.
        keywords: the step's keyword arguments from those settings (Adam's ``betas`` become
            ``beta1``, ``beta2``); by default each setting is the keyword of its own name.
        momentum_error: the one-line error for an ``optimizer.momentum`` that does not suit the rule
            (0 for a rule that needs it, anything else for one that would ignore it), with
            ``{momentum!r}`` for the value given; empty: a generic line.
    """

    name: str
    step: Callable[..., None]
    settings: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    keywords: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    momentum_error: str = ""

    @property
    def needs_momentum(self) -> bool:
        """Whether ``optimizer.momentum`` must be in (0, 1); every other rule refuses a nonzero one."""
        return "momentum" in self.settings

    def step_keywords(self, setting: Mapping[str, Any]) -> dict[str, Any]:
        """The step's own keyword arguments (not ``lr``, ``weight_decay``) for an ``optimizer.*`` mapping."""
        if self.keywords is not None:
            return self.keywords(setting)
        return {key: setting[key] for key in self.settings}

    def wrong_momentum(self, momentum: Any) -> str:
        """The error line for ``optimizer.momentum=momentum`` with this rule."""
        if self.momentum_error:
            return self.momentum_error.format(momentum=momentum)
        if self.needs_momentum:
            return f"optimizer.name={self.name} needs optimizer.momentum in (0, 1), e.g. 0.9"
        return f"optimizer.momentum={momentum!r} would be ignored by optimizer.name={self.name}: remove it"


# ---------------------------------------------------------------------------------------------
# Tensor arithmetic shared by the rules
# ---------------------------------------------------------------------------------------------
# With float hyperparameters the compared four run torch.optim's own single-tensor arithmetic
# (``add_(x, alpha=a)``, ``lerp_``, ``addcmul_``, ``addcdiv_``: fused kernels, one pass over memory), so
# they give torch.optim's numbers bit for bit on the same machine; with per-member tensors (a stacked
# population) the same formula is evaluated as products then sums, equal within rounding. A python
# number is a ``numbers.Real``; a tensor is not.


def _is_float(a: Any) -> bool:
    return isinstance(a, numbers.Real)


def _plus_scaled(x: Tensor, a: Hyper, y: Tensor) -> Tensor:
    """x + a·y as a new tensor: torch's ``x.add(y, alpha=a)`` for a float a, else ``x.addcmul(a, y)``
    (a broadcast against y, one pass)."""
    return x.add(y, alpha=a) if _is_float(a) else x.addcmul(a, y)


def _add_scaled_(x: Tensor, a: Hyper, y: Tensor, z: Tensor | None = None) -> Tensor:
    """x ← x + a·y (or x + a·y·z), in place: torch's ``add_(y, alpha=a)`` / ``addcmul_(y, z,
    value=a)`` for a float a, else ``addcmul_`` with the tensor a broadcast (one pass, no temporary
    for a·y)."""
    if not _is_float(a):
        return x.addcmul_(a, y) if z is None else x.addcmul_(a * y, z)
    return x.add_(y, alpha=a) if z is None else x.addcmul_(y, z, value=a)


def decayed_gradient(p: Tensor, g: Tensor, weight_decay: Hyper) -> Tensor:
    """Coupled L2 weight decay: g + wd·p (a new tensor; ``g`` itself when wd is the float 0)."""
    if _is_float(weight_decay) and weight_decay == 0:
        return g
    return _plus_scaled(g, weight_decay, p)


def state_buffer(state: State, key: str, p: Tensor) -> Tensor:
    """``state[key]``, created on the first step as ``torch.zeros_like(p)`` would (same dtype, device
    and memory layout, as torch.optim's buffers), from tensor methods."""
    if key not in state:
        state[key] = p.detach().clone().zero_()
    return state[key]


# ---------------------------------------------------------------------------------------------
# The four rules, each written once, in place
# ---------------------------------------------------------------------------------------------


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
    g = decayed_gradient(p, g, weight_decay)
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
    g = decayed_gradient(p, g, weight_decay)
    b = state_buffer(state, "momentum_buffer", p)
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
    g = decayed_gradient(p, g, weight_decay)
    b = state_buffer(state, "momentum_buffer", p)
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
    g = decayed_gradient(p, g, weight_decay)
    m = state_buffer(state, "m", p)
    v = state_buffer(state, "v", p)
    if "t" not in state:
        # A float64 CPU scalar: read without a device sync, and as precise as the python float torch
        # uses (1 − β^t cancels digits for small t; in float32 it would be off by ~1e-5 relative).
        state["t"] = p.new_zeros((), device="cpu").double()
    t = state["t"].add_(1)
    m.lerp_(g, 1 - beta1)  # m + (1 − β1)(g − m) = β1 m + (1 − β1) g
    _add_scaled_(v.mul_(beta2), 1 - beta2, g, g)
    if not all(_is_float(h) for h in (lr, beta1, beta2, eps)):
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


GD = Rule(
    "gd", gd_,
    momentum_error="optimizer.momentum={momentum!r} would be ignored by optimizer.name=gd: "
                   "remove it, or use optimizer.name=momentum or nesterov")
MOMENTUM = Rule(
    "momentum", momentum_, settings=("momentum",),
    momentum_error="optimizer.name=momentum needs optimizer.momentum in (0, 1), e.g. 0.9; "
                   "for plain gradient descent use optimizer.name=gd")
#: The error of every form of Nesterov's method given momentum 0.
NESTEROV_NEEDS_MOMENTUM = ("Nesterov needs momentum > 0: set optimizer.momentum in (0, 1), e.g. 0.9 "
                           "(with momentum 0 it is plain gd)")
NESTEROV = Rule("nesterov", nesterov_, settings=("momentum",), momentum_error=NESTEROV_NEEDS_MOMENTUM)
ADAM = Rule(
    "adam", adam_, settings=("betas", "eps"),
    # torch.optim.Adam's defaults: the decay of the first- and second-moment averages, and the ε added to
    # √v̂ (in gradient units). conf/optimizer/adam.yaml sets the same.
    defaults=MappingProxyType({"betas": (0.9, 0.999), "eps": 1e-8}),
    keywords=lambda s: {"beta1": s["betas"][0], "beta2": s["betas"][1], "eps": s["eps"]},
    momentum_error="optimizer.momentum={momentum!r} would be ignored by optimizer.name=adam: "
                   "remove it (Adam's momentum is optimizer.betas[0])")

#: The four optimizers the benchmark compares (each checked against torch.optim).
RULES: dict[str, Rule] = {rule.name: rule for rule in (GD, MOMENTUM, NESTEROV, ADAM)}
