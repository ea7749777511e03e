"""What Nesterov's method is, checked: its three common forms coincide (and where they do not), the
first article's two rules are something else, and the second article's weight-decay step does what it
does. The forms run on a float64 quadratic f(x) = 1/2 x^T A x - b^T x, stepping the rules of rules.py and
formulations.py (as pure functions, tests/pure_rules.py);
the decay step runs loop._article_decay_step with real torch.optim.SGD / AdamW / Adam.

Change of variables (constant lr): PyTorch's p (``nesterov``) = Sutskever's look-ahead theta + mu v
(``nesterov_sutskever`` keeps that point as p) = 1983's y_k (``nesterov_1983``); Sutskever's theta = 1983's
x_k; his v_k = x_k - x_{k-1} = -lr times PyTorch's buffer b_k."""

from __future__ import annotations

import math

import pytest
import torch

from nesterov_bench import theory
from nesterov_bench.formulations import FORMULATIONS
from nesterov_bench.loop import _article_decay_step
from nesterov_bench.optimizers import build

from . import pure_rules as P

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


@pytest.mark.parametrize("form", [P.nesterov_sutskever, P.nesterov_1983])
def test_nesterov_forms_coincide_under_a_constant_learning_rate(form):
    """PyTorch's p, Sutskever's look-ahead theta + mu v and 1983's y are one sequence."""
    A, b, x0 = problem()
    assert close(iterate(P.nesterov, CONSTANT, A, b, x0), iterate(form, CONSTANT, A, b, x0))


def test_change_of_variables_between_the_forms():
    """Sutskever's base point theta = p - mu v is 1983's x; his v is -lr times PyTorch's buffer."""
    A, b, x0 = problem()
    ps, vs = iterate(P.nesterov_sutskever, CONSTANT, A, b, x0, keep="velocity")
    _, xs = iterate(P.nesterov_1983, CONSTANT, A, b, x0, keep="x")
    _, bufs = iterate(P.nesterov, CONSTANT, A, b, x0, keep="momentum_buffer")
    assert close(ps[1:] - MU * vs, xs)
    assert close(vs, -0.01 * bufs)


def test_forms_differ_under_a_learning_rate_schedule():
    """PyTorch's buffer stores raw gradients, Sutskever's velocity lr-scaled steps: when the learning
    rate drops, PyTorch's next step rescales the whole buffer, Sutskever's only the new gradient.
    1983's x_{k+1} - x_k is an lr-scaled step too (it is Sutskever's v), so 1983 and Sutskever stay one
    sequence under any schedule."""
    A, b, x0 = problem()
    schedule = [0.01] * 50 + [0.001] * 50
    torch_form = iterate(P.nesterov, schedule, A, b, x0)
    sutskever = iterate(P.nesterov_sutskever, schedule, A, b, x0)
    assert close(sutskever, iterate(P.nesterov_1983, schedule, A, b, x0))
    assert close(torch_form[:51], sutskever[:51])  # identical until the schedule changes
    gap = (torch_form[60] - sutskever[60]).norm() / (torch_form[60] - torch_form[50]).norm()
    assert gap > 0.1


def test_the_schedule_difference_is_exactly_a_rescaled_buffer():
    """Exactly why: Sutskever's v = -lr1 b carries the old rate. PyTorch's form continued at lr2 from a
    buffer multiplied by lr1/lr2 at the switch reproduces Sutskever's iterates step for step."""
    A, b, x0 = problem()
    lr1, lr2 = 0.01, 0.001
    sutskever = iterate(P.nesterov_sutskever, [lr1] * 50 + [lr2] * 50, A, b, x0)
    p, state = x0.clone(), {}
    for _ in range(50):
        p, state = P.nesterov(p, A @ p - b, state, lr=lr1, momentum=MU)
    state = {"momentum_buffer": state["momentum_buffer"] * (lr1 / lr2)}
    ps = [p]
    for _ in range(50):
        p, state = P.nesterov(p, A @ p - b, state, lr=lr2, momentum=MU)
        ps.append(p)
    assert close(torch.stack(ps), sutskever[50:])


def test_a_wrong_look_ahead_is_caught():
    """The checks have teeth: the gradient at theta instead of theta + mu v (heavy ball) is not
    Nesterov, and neither is a look-ahead of the wrong sign."""
    A, b, x0 = problem()
    ref = iterate(P.nesterov, CONSTANT, A, b, x0)
    assert not close(iterate(P.momentum, CONSTANT, A, b, x0), ref, rtol=1e-3)

    def wrong_sign(p, g, state, *, lr, momentum):
        v = state.get("velocity", torch.zeros_like(p))
        v_new = momentum * v - lr * g
        return p + momentum * v + (1 - momentum) * v_new, {"velocity": v_new}

    assert not close(iterate(wrong_sign, CONSTANT, A, b, x0), ref, rtol=1e-3)

    def gradient_at_x(p, g, state, *, lr, momentum):
        """1983's form holding x and taking the gradient there: x' = x + mu (x - x_prev) - lr grad f(x)."""
        x_prev = state.get("x_prev", p.clone())
        return p + momentum * (p - x_prev) - lr * g, {"x_prev": p}

    assert not close(iterate(gradient_at_x, CONSTANT, A, b, x0), ref, rtol=1e-3)

    def velocity_stores_raw_gradients(p, g, state, *, lr, momentum):
        """Sutskever's update with v in gradient units (v <- mu v - g, p moves by lr times it)."""
        v = state.get("velocity", torch.zeros_like(p))
        v_new = momentum * v - g
        return p + lr * (-momentum * v + (1 + momentum) * v_new), {"velocity": v_new}

    # Under a constant lr it is the same method; under a schedule it is PyTorch's, not Sutskever's --
    # so the schedule test above separates exactly "where the lr is applied".
    schedule = [0.01] * 50 + [0.001] * 50
    raw = iterate(velocity_stores_raw_gradients, schedule, A, b, x0)
    assert close(raw, iterate(P.nesterov, schedule, A, b, x0))
    assert not close(raw, iterate(P.nesterov_sutskever, schedule, A, b, x0), rtol=1e-3)


def test_article_ema_rule_is_heavy_ball_with_a_scaled_learning_rate():
    """v <- b v + (1-b) g, p <- p - lr v is heavy ball at lr (1 - b): v = (1 - b) x the buffer."""
    A, b, x0 = problem()
    ema = iterate(P.article_ema, CONSTANT, A, b, x0)
    assert close(ema, iterate(P.momentum, [0.01 * (1 - MU)] * 100, A, b, x0))
    assert not close(ema, iterate(P.nesterov, CONSTANT, A, b, x0), rtol=1e-3)
    assert not close(ema, iterate(P.nesterov, [0.01 * (1 - MU)] * 100, A, b, x0), rtol=1e-3)


def test_article_stated_rule_climbs_and_blows_up():
    """v' = (1 + b) v - lr grad(previous iterate), p' = p - lr v': the velocity's factor 1 + b > 1 makes
    it grow like (1 + b)^t, and the two minus signs move p up the gradient -- where heavy ball and
    Nesterov at the same setting converge."""
    A, b, x0 = problem()
    lrs = [0.01] * 60
    ps, vs = iterate(P.article_stated, lrs, A, b, x0, keep="velocity")
    losses = torch.stack([f(A, b, p) for p in ps])
    assert losses[1] == losses[0]  # the first step uses the (zero) gradient before the start
    assert losses[2] > losses[0]  # the first real move goes uphill
    assert losses[-1] > 1e6 * abs(losses[0])
    growth = (vs[-1].norm() / vs[-11].norm()) ** 0.1
    assert growth == pytest.approx(1 + MU, rel=0.02)
    for rule in (P.momentum, P.nesterov):
        assert f(A, b, iterate(rule, lrs, A, b, x0)[-1]) < f(A, b, x0)


def delayed(rule, lrs, A, b, x0, **hp):
    """``rule`` fed the gradient of the previous iterate (zero at the first step)."""
    p, state, ps, g_prev = x0.clone(), {}, [x0.clone()], torch.zeros_like(x0)
    for lr in lrs:
        g = A @ p - b
        p, state = rule(p, g_prev, state, lr=lr, **hp)
        g_prev = g
        ps.append(p.clone())
    return torch.stack(ps)


def test_article_stated_rule_is_heavy_ball_ascent_on_a_delayed_gradient():
    """Exactly: with b = -v/eta it is heavy ball (b <- m b + g, p <- p - lr b) with momentum m = 1 + beta
    and learning rate lr = -eta^2, fed the gradient of the previous iterate. Not the plausible intended
    reading (heavy ball with m = beta, lr = eta^2 on the delayed gradient), not Nesterov, and the delay
    matters (the same ascent on the current gradient differs)."""
    A, b, x0 = problem()
    eta, steps = 0.01, 40
    stated = iterate(P.article_stated, [eta] * steps, A, b, x0)
    assert (stated[-1] - x0).norm() > 1.0  # it moved (a lot)
    assert close(stated, delayed(P.momentum, [-eta**2] * steps, A, b, x0, momentum=1 + MU))
    assert not close(stated, delayed(P.momentum, [eta**2] * steps, A, b, x0, momentum=MU), rtol=1e-3)
    assert not close(stated, iterate(P.momentum, [-eta**2] * steps, A, b, x0, momentum=1 + MU), rtol=1e-3)
    for lr in (eta, eta**2):
        assert not close(stated, iterate(P.nesterov, [lr] * steps, A, b, x0), rtol=1e-3)


def test_article_stated_rule_grows_at_the_spectral_radius_of_its_recursion():
    """Along an eigenvector of A (eigenvalue lam), with e = p - x*, the state (e_t, e_{t-1}, v_t) evolves by
    M(lam) = [[1, eta^2 lam, -eta (1 + beta)], [1, 0, 0], [0, -eta lam, 1 + beta]]. Its spectral radius,
    a little above 1 + beta (1.9055 for lam = 50), is the measured growth of that component per step."""
    A, b, x0 = problem()
    eta = 0.01
    _, vs = iterate(P.article_stated, [eta] * 200, A, b, x0, keep="velocity")
    lams, vecs = torch.linalg.eigh(A)
    for lam, vec in zip(lams, vecs.T, strict=True):
        m = torch.tensor([[1.0, eta**2 * lam, -eta * (1 + MU)], [1.0, 0.0, 0.0], [0.0, -eta * lam, 1 + MU]])
        radius = float(torch.linalg.eigvals(m).abs().max())
        assert 1 + MU < radius < 1 + MU + 0.01
        assert float((vs[-1] @ vec) / (vs[-2] @ vec)) == pytest.approx(radius, rel=1e-6)


@pytest.mark.parametrize("name", list(FORMULATIONS))
def test_formulations_are_selectable_by_name(name):
    """optimizer.name selects each form, and the optimizer it builds steps with that very rule."""
    opt = build([torch.nn.Parameter(torch.zeros(3))], {"name": name, "lr": 0.01, "momentum": 0.9})
    assert opt.rule is FORMULATIONS[name] and opt.rule.needs_momentum


# --- the second article's weight-decay step ------------------------------------------------------
# The article trains with torch.optim.SGD(lr=0.01 or 0.001, momentum=0.9, nesterov=True), weight_decay = 0.01,
# and after every optimizer.step() runs
#     weight_decay_factor = weight_decay * (epoch - 1)      # epoch from range(num_epochs): 0, 1, 2, ...
#     optimizer.zero_grad()
#     for param in model.parameters(): param.data -= weight_decay_factor * param.data
#     optimizer.step()
# nesterov_bench.loop._article_decay_step is that code (the training loop's decay=as_written); the tests
# drive it with real torch.optim.SGD.

WD, LR_ART = 0.01, 0.01


class Weights(torch.nn.Module):
    """A model whose only parameter is the vector p (what _article_decay_step iterates over)."""

    def __init__(self, p):
        super().__init__()
        self.p = torch.nn.Parameter(p.clone())


def train(model, opt, grad_fn, steps, epoch=None):
    """``steps`` training steps (gradient from ``grad_fn(p)``), each followed by the article's decay step
    of ``epoch`` (none when epoch is None). Returns the parameter after every step."""
    out = []
    for _ in range(steps):
        opt.zero_grad()
        model.p.grad = grad_fn(model.p.detach())
        opt.step()
        if epoch is not None:
            _article_decay_step(model, opt, WD, epoch)
        out.append(model.p.detach().clone())
    return torch.stack(out)


@pytest.mark.parametrize("epoch,factor", [(0, 1.01), (1, 1.0), (2, 0.99), (5, 0.96)])
def test_article_decay_factor_is_negative_in_the_first_epoch(epoch, factor):
    """p -= 0.01 (epoch - 1) p: in epoch 0 every step multiplies the weights by 1.01 (they grow), in epoch 1
    it does nothing, from epoch 2 on it shrinks them by 1 - 0.01 (epoch - 1). After a real training step
    (so the momentum buffer is nonzero), the decay step scales the weights by exactly that factor and the
    second step() moves nothing: zero_grad() left the gradients None, and the buffer is untouched."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=LR_ART, momentum=0.9, nesterov=True)
    opt.zero_grad()
    model(torch.randn(8, 3)).pow(2).mean().backward()
    opt.step()
    after_step = [p.detach().clone() for p in model.parameters()]
    buffers = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    assert all(float(buf.abs().max()) > 0 for buf in buffers)
    _article_decay_step(model, opt, WD, epoch)
    for p0, buf, p in zip(after_step, buffers, model.parameters(), strict=True):
        assert torch.allclose(p, factor * p0, rtol=1e-12, atol=0)
        assert p.grad is None
        assert torch.equal(opt.state[p]["momentum_buffer"], buf)


def test_in_epoch_0_weights_grow_where_the_loss_is_flat():
    """On f = 1/2 p^T A p - b^T p with A = diag(0, 0.05, 1, 5, 10) (b = 0 on the flat coordinate),
    SGD-Nesterov alone leaves the flat coordinate where it is and converges on the others. With the
    epoch-0 decay the flat coordinate grows by exactly 1.01 per step (1.01^500 = 144.77 after 500 steps;
    1.01^938 ~ 1.1e4 after one MNIST epoch at batch 64), and the curvature-0.05 one grows too: the decay
    acts as a negative L2 penalty (next tests). A direction of curvature lam diverges exactly when 1.01 times
    Nesterov's rate there (theory.rate) exceeds 1: for lam below about 0.090 at lr = 0.01, mu = 0.9."""
    A = torch.diag(torch.tensor([0.0, 0.05, 1.0, 5.0, 10.0]))
    b = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0])
    x0 = torch.ones(5)
    steps = 500

    def run(epoch):
        model = Weights(x0)
        opt = torch.optim.SGD(model.parameters(), lr=LR_ART, momentum=0.9, nesterov=True)
        return train(model, opt, lambda p: A @ p - b, steps, epoch)

    plain, decayed = run(None), run(0)
    assert plain[-1, 0] == 1.0
    assert torch.allclose(plain[-1, 2:], b[2:] / A.diagonal()[2:], rtol=1e-6)
    assert float(decayed[-1, 0]) == pytest.approx(1.01**steps, rel=1e-10)
    assert 1.01**steps == pytest.approx(144.77, abs=0.01)
    assert torch.allclose(decayed[1:, 0] / decayed[:-1, 0], torch.full((steps - 1,), 1.01), rtol=1e-12)
    assert float(decayed[-1, 1]) > 10 * float(plain[-1, 1]) > 0
    for lam, grows in [(0.0, True), (0.05, True), (0.089, True), (0.091, False), (1.0, False)]:
        assert (1.01 * theory.rate("nesterov", [lam], LR_ART, 0.9) > 1) is grows


def test_per_step_factors_of_the_article_decay_and_of_coupled_and_decoupled_decay():
    """Pure decay (zero loss gradient), lr = 0.01, wd = 0.01, real torch optimizers, per-step factor of |p|:
    the article's step      1 - wd (epoch - 1), whatever lr:   1.01 (epoch 0), 1 (epoch 1), 0.99 (epoch 2);
    coupled L2, plain SGD   (g += wd p)                       1 - lr wd = 0.9999;
    coupled L2, SGD mu=0.9  the buffer accumulates wd p: the factor tends to the spectral radius of the
                            momentum recursion at curvature wd (theory.rate), ~ 1 - lr wd / (1 - mu):
                            0.998991 (heavy ball), 0.998992 (Nesterov);
    decoupled (AdamW)       p -= lr wd p                      1 - lr wd = 0.9999.
    So per step, in epoch 2 the article's decay (shrink 0.01) is 10x coupled L2 with momentum (0.001) and 100x
    plain coupled or decoupled decay (0.0001) at lr = 0.01, and 100x / 1000x at the article's other lr, 0.001;
    these are per-step factors with no loss gradient -- where training ends up is the next test."""
    lr, mu, steps = LR_ART, 0.9, 3000

    def factor(opt_factory, epoch=None):
        model = Weights(torch.ones(4))
        ps = train(model, opt_factory(model.parameters()), lambda p: torch.zeros_like(p), steps, epoch)
        return float(ps[-1, 0] / ps[-2, 0])

    sgd = torch.optim.SGD
    for epoch, expected in [(0, 1.01), (1, 1.0), (2, 0.99)]:
        got = factor(lambda ps: sgd(ps, lr=lr, momentum=mu, nesterov=True), epoch)
        assert got == pytest.approx(expected, rel=1e-12)
    assert factor(lambda ps: sgd(ps, lr=lr, weight_decay=WD)) == pytest.approx(1 - lr * WD, rel=1e-12)
    hb = factor(lambda ps: sgd(ps, lr=lr, momentum=mu, weight_decay=WD))
    nag = factor(lambda ps: sgd(ps, lr=lr, momentum=mu, nesterov=True, weight_decay=WD))
    assert hb == pytest.approx(theory.rate("momentum", [WD], lr, mu), rel=1e-9)
    assert nag == pytest.approx(theory.rate("nesterov", [WD], lr, mu), rel=1e-9)
    assert hb == pytest.approx(0.998991, abs=1e-6) and nag == pytest.approx(0.998992, abs=1e-6)
    assert hb == pytest.approx(1 - lr * WD / (1 - mu), abs=2e-5)
    adamw = factor(lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=WD))
    assert adamw == pytest.approx(1 - lr * WD, rel=1e-12)
    # Coupled decay inside Adam is normalised away: on a zero loss gradient, wd p is the whole gradient
    # and Adam's first step moves each weight by ~lr, whatever wd.
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([p], lr=lr, weight_decay=WD)
    p.grad = torch.zeros(4)
    opt.step()
    assert torch.allclose(p, torch.full((4,), 1 - lr), rtol=1e-6)


@pytest.mark.parametrize("lr,lam_eff", [(0.01, 0.10101), (0.001, 1.0101)])
def test_article_decay_converges_like_an_l2_penalty_that_grows_with_the_epoch(lr, lam_eff):
    """At a fixed point of SGD(momentum mu, nesterov or not) followed by the decay p <- c p with
    c = 1 - wd (epoch - 1): the buffer is g/(1 - mu), the step lr g/(1 - mu), and p = c (p - lr g/(1 - mu)),
    i.e.
        g + lam_eff p = 0,   lam_eff = (1 - c)(1 - mu) / (c lr),
    the minimiser of f + lam_eff/2 ||p||^2. Epoch 2, wd = 0.01, mu = 0.9: lam_eff = 0.10101 at lr = 0.01
    and 1.0101 at the article's lr = 0.001 -- 10x and 101x the wd = 0.01 that coupled L2 (SGD
    weight_decay=0.01) converges to; lam_eff grows like (epoch - 1), and is -0.0990 (lr 0.01) or -0.990
    (lr 0.001) in epoch 0: a negative penalty."""
    mu, c = 0.9, 1 - WD * (2 - 1)
    assert (1 - c) * (1 - mu) / (c * lr) == pytest.approx(lam_eff, rel=1e-4)
    A = torch.diag(torch.tensor([1.0, 2.0, 5.0, 10.0]))
    b = torch.tensor([1.0, -2.0, 3.0, 1.0])
    x0 = torch.zeros(4)

    def minimiser(lam):
        return torch.linalg.solve(A + lam * torch.eye(4), b)

    def run(epoch, wd=0.0):
        model = Weights(x0)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mu, nesterov=True, weight_decay=wd)
        return train(model, opt, lambda p: A @ p - b, 4000, epoch)[-1]

    article = run(2)
    assert torch.allclose(article, minimiser((1 - c) * (1 - mu) / (c * lr)), rtol=1e-9)
    assert not torch.allclose(article, minimiser(WD), rtol=1e-2)
    assert torch.allclose(run(None, wd=WD), minimiser(WD), rtol=1e-9)


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_articles_second_step_moves_nothing_unless_gradients_are_zeroed(nesterov):
    """After zero_grad() the gradients are None and SGD skips them: the second step() does nothing.
    With zero_grad(set_to_none=False) they are zeros, and the momentum buffer b alone moves the weights
    again, and is itself shrunk to mu b: by lr mu b (heavy ball: b <- mu b, p -= lr b) or lr mu^2 b
    (Nesterov: b <- mu b, p -= lr (g + mu b) = lr mu^2 b). Here lr = 0.1, mu = 0.9, b = g = 2: 0.18 and
    0.162."""
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
            assert torch.equal(opt.state[p]["momentum_buffer"], buf)
        else:
            expected = lr * (mu**2 if nesterov else mu) * buf
            assert torch.allclose(moved, expected, rtol=1e-12)
            assert torch.allclose(moved, torch.full((3,), 0.162 if nesterov else 0.18), rtol=1e-12)
            assert torch.allclose(opt.state[p]["momentum_buffer"], mu * buf, rtol=1e-12)
            assert not math.isclose(float(moved.abs().max()), 0.0)
