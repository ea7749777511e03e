r"""Other forms of Nesterov's method, and the first article's rules as written: not the compared four.

* ``nesterov_sutskever`` -- Sutskever et al. (2013)'s velocity form, and
* ``nesterov_1983``      -- Nesterov's (1983) two sequences, which both give ``nesterov``'s iterates
  under a constant learning rate (the change of variables is in their docstrings);
* ``article_ema``        -- the first article's algorithm: heavy ball at lr·(1 − β), and
* ``article_stated``     -- the first article's formula taken literally: a diverging, delayed
  gradient ascent.

Each is a :class:`~nesterov_bench.rules.Rule` with the conventions of :mod:`nesterov_bench.rules`
(an in-place step, coupled weight decay, hyperparameters as floats or broadcasting tensors),
selectable by ``optimizer.name`` (conf/optimizer/) for the math checks of
tests/test_formulations.py, which checks each claim. The training loop takes the gradient at the
parameters it holds, so each form keeps, as ``p``, the point where its gradient is evaluated, and
whatever else it needs in its state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rules import NESTEROV_NEEDS_MOMENTUM, Rule, decayed_gradient, state_buffer

if TYPE_CHECKING:
    from torch import Tensor

    Hyper = float | Tensor
    State = dict[str, Tensor]

__all__ = ["FORMULATIONS"]


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
    g = decayed_gradient(p, g, weight_decay)
    v = state_buffer(state, "velocity", p)
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
    g = decayed_gradient(p, g, weight_decay)
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
    g = decayed_gradient(p, g, weight_decay)
    v = state_buffer(state, "ema", p)
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
    g = decayed_gradient(p, g, weight_decay)
    v = state_buffer(state, "velocity", p)
    g_prev = state_buffer(state, "prev_grad", p)
    v.add_(beta * v).sub_(lr * g_prev)
    p.sub_(lr * v)
    g_prev.copy_(g)


#: Selectable by name beside the compared four, for the math checks (tests/test_formulations.py).
FORMULATIONS: dict[str, Rule] = {rule.name: rule for rule in (
    Rule("nesterov_sutskever", nesterov_sutskever_, settings=("momentum",),
         momentum_error=NESTEROV_NEEDS_MOMENTUM),
    Rule("nesterov_1983", nesterov_1983_, settings=("momentum",), momentum_error=NESTEROV_NEEDS_MOMENTUM),
    Rule("article_ema", article_ema_, settings=("momentum",)),
    Rule("article_stated", article_stated_, settings=("momentum",)),
)}
