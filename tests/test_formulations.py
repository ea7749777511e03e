"""What Nesterov's method is, checked: its three common forms coincide (and where they do not), the
first article's two rules are something else, and the second article's weight-decay step does what it
does. All on a float64 quadratic f(x) = 1/2 x^T A x - b^T x, stepping the rules of optimizers.py."""

from __future__ import annotations

import math

import pytest
import torch

from nesterov_bench import optimizers as O

MU = 0.9


@pytest.fixture(autouse=True)
def float64():
    """float64 for these checks only (a module-level default would leak into every later test)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def problem(dim: int = 20, kappa: float = 50.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    A = q @ torch.diag(torch.linspace(1.0, kappa, dim)) @ q.T
    b = torch.randn(dim, generator=g)
    x0 = torch.randn(dim, generator=g)
    return A, b, x0


def f(A, b, x):
    return 0.5 * x @ A @ x - b @ x


def iterate(rule, lrs, A, b, x0, momentum=MU, keep=None):
    """The sequence of parameters p_k (the points where gradients are taken), and optionally a state
    entry's sequence."""
    p, state, ps, kept = x0.clone(), {}, [x0.clone()], []
    for lr in lrs:
        p, state = rule(p, A @ p - b, state, lr=lr, momentum=momentum)
        ps.append(p.clone())
        if keep:
            kept.append(state[keep].clone())
    return (torch.stack(ps), torch.stack(kept)) if keep else torch.stack(ps)


def close(a, b, rtol=1e-10):
    return torch.allclose(a, b, rtol=rtol, atol=rtol * float(a.abs().max()))


CONSTANT = [0.01] * 100


@pytest.mark.parametrize("form", [O.nesterov_sutskever, O.nesterov_1983])
def test_nesterov_forms_coincide_under_a_constant_learning_rate(form):
    """PyTorch's p, Sutskever's look-ahead theta + mu v and 1983's y are one sequence."""
    A, b, x0 = problem()
    assert close(iterate(O.nesterov, CONSTANT, A, b, x0), iterate(form, CONSTANT, A, b, x0))


def test_change_of_variables_between_the_forms():
    """Sutskever's base point theta = p - mu v is 1983's x; his v is -lr times PyTorch's buffer."""
    A, b, x0 = problem()
    ps, vs = iterate(O.nesterov_sutskever, CONSTANT, A, b, x0, keep="velocity")
    _, xs = iterate(O.nesterov_1983, CONSTANT, A, b, x0, keep="x")
    _, bufs = iterate(O.nesterov, CONSTANT, A, b, x0, keep="momentum_buffer")
    assert close(ps[1:] - MU * vs, xs)
    assert close(vs, -0.01 * bufs)


def test_forms_differ_under_a_learning_rate_schedule():
    """PyTorch's buffer stores raw gradients, Sutskever's velocity lr-scaled steps: when the learning
    rate drops, PyTorch's next step rescales the whole buffer, Sutskever's only the new gradient."""
    A, b, x0 = problem()
    schedule = [0.01] * 50 + [0.001] * 50
    torch_form = iterate(O.nesterov, schedule, A, b, x0)
    sutskever = iterate(O.nesterov_sutskever, schedule, A, b, x0)
    assert close(torch_form[:51], sutskever[:51])  # identical until the schedule changes
    gap = (torch_form[60] - sutskever[60]).norm() / (torch_form[60] - torch_form[50]).norm()
    assert gap > 0.1


def test_a_wrong_look_ahead_is_caught():
    """The checks have teeth: the gradient at theta instead of theta + mu v (heavy ball) is not
    Nesterov, and neither is a look-ahead of the wrong sign."""
    A, b, x0 = problem()
    ref = iterate(O.nesterov, CONSTANT, A, b, x0)
    assert not close(iterate(O.momentum, CONSTANT, A, b, x0), ref, rtol=1e-3)

    def wrong_sign(p, g, state, *, lr, momentum):
        v = state.get("velocity", torch.zeros_like(p))
        v_new = momentum * v - lr * g
        return p + momentum * v + (1 - momentum) * v_new, {"velocity": v_new}

    assert not close(iterate(wrong_sign, CONSTANT, A, b, x0), ref, rtol=1e-3)


def test_article_ema_rule_is_heavy_ball_with_a_scaled_learning_rate():
    """v <- b v + (1-b) g, p <- p - lr v is heavy ball at lr (1 - b): v = (1 - b) x the buffer."""
    A, b, x0 = problem()
    ema = iterate(O.article_ema, CONSTANT, A, b, x0)
    assert close(ema, iterate(O.momentum, [0.01 * (1 - MU)] * 100, A, b, x0))
    assert not close(ema, iterate(O.nesterov, CONSTANT, A, b, x0), rtol=1e-3)
    assert not close(ema, iterate(O.nesterov, [0.01 * (1 - MU)] * 100, A, b, x0), rtol=1e-3)


def test_article_stated_rule_climbs_and_blows_up():
    """v' = (1 + b) v - lr grad(previous iterate), p' = p - lr v': the velocity's factor 1 + b > 1 makes
    it grow like (1 + b)^t, and the two minus signs move p up the gradient -- where heavy ball and
    Nesterov at the same setting converge."""
    A, b, x0 = problem()
    lrs = [0.01] * 60
    ps, vs = iterate(O.article_stated, lrs, A, b, x0, keep="velocity")
    losses = torch.stack([f(A, b, p) for p in ps])
    assert losses[1] == losses[0]  # the first step uses the (zero) gradient before the start
    assert losses[2] > losses[0]  # the first real move goes uphill
    assert losses[-1] > 1e6 * abs(losses[0])
    growth = (vs[-1].norm() / vs[-11].norm()) ** 0.1
    assert growth == pytest.approx(1 + MU, rel=0.02)
    for rule in (O.momentum, O.nesterov):
        assert f(A, b, iterate(rule, lrs, A, b, x0)[-1]) < f(A, b, x0)


def test_variants_are_selectable_by_name():
    for name in ("nesterov_sutskever", "nesterov_1983", "article_ema", "article_stated"):
        cfg = O.OptimizerConfig.from_mapping({"name": name, "lr": 0.01, "momentum": 0.9})
        assert O.build([torch.nn.Parameter(torch.zeros(3))], cfg).rule is O.FORMULATIONS[name]


@pytest.mark.parametrize("name", list(O.FORMULATIONS))
def test_formulations_are_pure_functions(name):
    """Like the compared four: inputs and the passed state untouched, a new state returned."""
    p, g = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 0.5, -1.0])
    new_p, state = O.FORMULATIONS[name](p, g, {}, lr=0.1, momentum=0.9)
    frozen = {k: v.clone() for k, v in state.items()}
    O.FORMULATIONS[name](new_p, g, state, lr=0.1, momentum=0.9)
    assert torch.equal(p, torch.tensor([1.0, -2.0, 3.0])) and torch.equal(g, torch.tensor([0.5, 0.5, -1.0]))
    assert all(torch.equal(state[k], frozen[k]) for k in state)


# --- the second article's weight-decay step ------------------------------------------------------

def article_step(model, opt, decay, epoch):
    from nesterov_bench.loop import _article_decay_step

    _article_decay_step(model, opt, decay, epoch)


@pytest.mark.parametrize("epoch,factor", [(0, 1.01), (1, 1.0), (2, 0.99), (5, 0.96)])
def test_article_decay_factor_is_negative_in_the_first_epoch(epoch, factor):
    """p -= 0.01 (epoch - 1) p: in epoch 0 every step multiplies the weights by 1.01 (they grow)."""
    model = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    article_step(model, opt, 0.01, epoch)
    for p0, p in zip(before, model.parameters(), strict=True):
        assert torch.allclose(p, factor * p0, rtol=1e-12)


def test_coupled_and_decoupled_decay_shrink_by_the_documented_factors():
    """One step on a zero gradient: coupled L2 (g += wd p) and decoupled (p -= lr wd p) both shrink by
    1 - lr wd with SGD; with Adam, coupled decay is normalised away, decoupled (AdamW) is not."""
    lr, wd = 0.1, 0.01
    for opt_cls, kw, expected in [
        (torch.optim.SGD, {"weight_decay": wd}, 1 - lr * wd),
        (torch.optim.AdamW, {"weight_decay": wd}, 1 - lr * wd),
    ]:
        p = torch.nn.Parameter(torch.ones(4))
        opt = opt_cls([p], lr=lr, **kw)
        p.grad = torch.zeros(4)
        opt.step()
        assert torch.allclose(p, torch.full((4,), expected), rtol=1e-12)
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([p], lr=lr, weight_decay=wd)
    p.grad = torch.zeros(4)
    opt.step()  # coupled: the decay term wd p is the whole gradient, so Adam steps by ~lr
    assert torch.allclose(p, torch.full((4,), 1 - lr), rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_articles_second_step_moves_nothing_unless_gradients_are_zeroed(nesterov):
    """After zero_grad() the gradients are None and SGD skips them: the second step() does nothing.
    With zero_grad(set_to_none=False) they are zeros, and the momentum buffer b alone moves the weights
    again: by lr mu b (heavy ball, b <- mu b) or lr mu^2 b (Nesterov: b <- mu b, step g + mu b = mu^2 b)."""
    lr, mu = 0.1, 0.9
    for set_to_none in (True, False):
        p = torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.SGD([p], lr=lr, momentum=mu, nesterov=nesterov)
        p.grad = torch.full((3,), 2.0)
        opt.step()  # the training step
        buf = opt.state[p]["momentum_buffer"].clone()
        after_first = p.detach().clone()
        opt.zero_grad(set_to_none=set_to_none)  # the article: decay, zero_grad(), step() again
        opt.step()
        moved = after_first - p.detach()
        if set_to_none:
            assert torch.equal(moved, torch.zeros(3))
        else:
            expected = lr * (mu**2 if nesterov else mu) * buf
            assert torch.allclose(moved, expected, rtol=1e-12)
            assert not math.isclose(float(moved.abs().max()), 0.0)
