"""Tests of the update rules (nesterov_bench.rules, .formulations), their settings
(nesterov_bench.optimizer_config) and the torch.optim wrapper (nesterov_bench.optimizers): agreement
with torch.optim, hand traces, validation, run directory names, the registry against conf/optimizer/."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from nesterov_bench.errors import ConfigError
from nesterov_bench.formulations import FORMULATIONS
from nesterov_bench.optimizer_config import ALL_RULES, OptimizerConfig, dirname, hyperparameters
from nesterov_bench.optimizers import Optimizer, build
from nesterov_bench.rules import RULES

from .conftest import REPO
from .pure_rules import PURE, adam, gd, momentum, nesterov

# ---------------------------------------------------------------------------------------------
# The table every equivalence test runs over: our setting <-> the matching torch.optim optimizer.
# The learning rates suit both the MLP and the quadratic (eigenvalues of A in [1, 100]):
# gd needs lr < 2/100; heavy ball lr*100 < 2(1+mu); Nesterov lr*100 < 2(1+mu)/(1+2mu) = 1.36.
# ---------------------------------------------------------------------------------------------

TABLE = {
    "gd": (
        {"name": "gd", "lr": 0.01},
        lambda ps, wd: torch.optim.SGD(ps, lr=0.01, weight_decay=wd),
    ),
    "momentum": (
        {"name": "momentum", "lr": 0.01, "momentum": 0.9},
        lambda ps, wd: torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=wd),
    ),
    "nesterov": (
        {"name": "nesterov", "lr": 0.01, "momentum": 0.9},
        lambda ps, wd: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, weight_decay=wd),
    ),
    "adam": (
        {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8},
        lambda ps, wd: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd),
    ),
}
WEIGHT_DECAY = 0.05
CASES = [
    pytest.param(name, wd, id=f"{name}{'-wd' if wd else ''}")
    for name in RULES
    for wd in (0.0, WEIGHT_DECAY)
]


def _ours_and_torch(name, wd, params_ours, params_torch):
    cfg_dict, torch_factory = TABLE[name]
    cfg = OptimizerConfig.from_mapping({**cfg_dict, "weight_decay": wd})
    return build(params_ours, cfg), torch_factory(params_torch, wd)


def test_table_covers_every_rule():
    assert set(TABLE) == set(RULES) == {"gd", "momentum", "nesterov", "adam"}


def sample_setting(name: str, **extra) -> dict:
    """A valid ``optimizer.*`` setting for any registered rule: lr 0.1, momentum 0.9 where it needs one,
    the rule's own defaults otherwise."""
    return {"name": name, "lr": 0.1, "momentum": 0.9 if ALL_RULES[name].needs_momentum else 0.0, **extra}


# ---------------------------------------------------------------------------------------------
# Equivalence with torch.optim
# ---------------------------------------------------------------------------------------------


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 10))


@pytest.mark.parametrize(("name", "wd"), CASES)
def test_mlp_float32_matches_torch_optim_bit_for_bit(name, wd):
    ours_model = _mlp()
    torch_model = copy.deepcopy(ours_model)
    initial = [p.detach().clone() for p in ours_model.parameters()]
    ours_opt, torch_opt = _ours_and_torch(
        name, wd, ours_model.parameters(), torch_model.parameters())

    data_gen = torch.Generator().manual_seed(1)
    x_all = torch.randn(512, 20, generator=data_gen)
    y_all = torch.randint(0, 10, (512,), generator=data_gen)
    for step in range(100):
        idx = torch.randint(0, 512, (32,), generator=torch.Generator().manual_seed(100 + step))
        x, y = x_all[idx], y_all[idx]
        for model, opt in ((ours_model, ours_opt), (torch_model, torch_opt)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    moved = max((p.detach() - p0).abs().max().item()
                for p, p0 in zip(ours_model.parameters(), initial, strict=True))
    assert moved > 1e-2  # the comparison below is not vacuous
    for p_ours, p_torch in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        # Bit for bit: with float hyperparameters the rules run torch.optim's own single-tensor
        # arithmetic (its CPU default), so 100 steps land on the very same float32 numbers.
        assert torch.equal(p_ours, p_torch)


def _quadratic(d: int = 10):
    """f(x) = ½ xᵀAx − bᵀx in float64, A SPD with eigenvalues 1..100 (condition number 100)."""
    gen = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    eig = torch.linspace(1.0, 100.0, d, dtype=torch.float64)
    a = q @ torch.diag(eig) @ q.T
    a = (a + a.T) / 2
    b = torch.randn(d, generator=gen, dtype=torch.float64)
    x0 = torch.randn(d, generator=gen, dtype=torch.float64)
    return a, b, x0


@pytest.mark.parametrize(("name", "wd"), CASES)
def test_quadratic_float64_pure_rule_matches_torch_optim(name, wd):
    a, b, x0 = _quadratic()
    cfg = OptimizerConfig.from_mapping({**TABLE[name][0], "weight_decay": wd})
    rule, hp = PURE[name], hyperparameters(cfg)

    x_torch = x0.clone().requires_grad_(True)
    torch_opt = TABLE[name][1]([x_torch], wd)
    x, state = x0.clone(), {}
    for _ in range(100):
        x, state = rule(x, a @ x - b, state, **hp)
        with torch.no_grad():
            x_torch.grad = a @ x_torch - b
        torch_opt.step()

    assert (x - x0).abs().max() > 1e-2
    # atol = 1e-13: x has entries of order 0.1..1; it only absorbs an entry that happens to be
    # near 0, where 1e-12 relative would ask for more digits than float64 round-off allows.
    torch.testing.assert_close(x, x_torch.detach(), rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# Stacked populations: tensor hyperparameters
# ---------------------------------------------------------------------------------------------

STACK_HP = {
    "gd": {"lr": [0.01, 0.02, 0.05, 0.1], "weight_decay": [0.0, 0.1, 0.0, 0.2]},
    "momentum": {"lr": [0.01, 0.02, 0.05, 0.1], "momentum": [0.5, 0.9, 0.0, 0.99],
                 "weight_decay": [0.0, 0.1, 0.0, 0.2]},
    "nesterov": {"lr": [0.01, 0.02, 0.05, 0.1], "momentum": [0.5, 0.9, 0.0, 0.99],
                 "weight_decay": [0.0, 0.1, 0.0, 0.2]},
    "adam": {"lr": [0.01, 0.02, 0.05, 0.1], "beta1": [0.9, 0.5, 0.0, 0.95],
             "beta2": [0.999, 0.9, 0.99, 0.5], "eps": [1e-8, 1e-3, 1e-8, 1.0],
             "weight_decay": [0.0, 0.1, 0.0, 0.2]},
}


@pytest.mark.parametrize("name", list(RULES))
def test_tensor_hyperparameters_equal_separate_calls(name):
    k, d = 4, 6
    gen = torch.Generator().manual_seed(3)
    p0 = torch.randn(k, d, generator=gen, dtype=torch.float64)
    grads = [torch.randn(k, d, generator=gen, dtype=torch.float64) for _ in range(3)]
    rule = PURE[name]
    hp_floats = STACK_HP[name]
    hp_tensors = {key: torch.tensor(vals, dtype=torch.float64).reshape(k, 1)
                  for key, vals in hp_floats.items()}

    stacked, state = p0.clone(), {}
    for g in grads:
        stacked, state = rule(stacked, g, state, **hp_tensors)

    for i in range(k):
        single, single_state = p0[i].clone(), {}
        for g in grads:
            kwargs = {key: vals[i] for key, vals in hp_floats.items()}
            single, single_state = rule(single, g[i], single_state, **kwargs)
        torch.testing.assert_close(stacked[i], single, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", list(ALL_RULES))
def test_pure_forms_are_out_of_place(name):
    """The tests' pure forms (tests/pure_rules.py) leave their inputs and the passed state alone."""
    p = torch.tensor([1.0, -2.0, 3.0])
    g = torch.tensor([0.5, 0.5, -1.0])
    hp = hyperparameters(OptimizerConfig.from_mapping(sample_setting(name)))
    p_copy, g_copy = p.clone(), g.clone()
    new_p, state = PURE[name](p, g, {}, **hp)
    state_copy = {k: v.clone() for k, v in state.items()}
    new_p2, state2 = PURE[name](new_p, g, state, **hp)
    assert torch.equal(p, p_copy) and torch.equal(g, g_copy)
    assert state.keys() == state_copy.keys()
    assert all(torch.equal(state[k], state_copy[k]) for k in state)
    assert state2 is not state
    assert not torch.equal(new_p2, new_p)


@pytest.mark.parametrize("name", list(ALL_RULES))
def test_inplace_step_updates_p_and_state_never_g(name):
    """``Rule.step`` (what Optimizer runs) updates p and the state's own tensors in place, leaves the
    gradient alone, and lands on the pure form's numbers exactly."""
    gen = torch.Generator().manual_seed(5)
    p = torch.randn(4, 3, generator=gen)
    hp = hyperparameters(OptimizerConfig.from_mapping(sample_setting(name, weight_decay=0.01)))
    p0, p_id, pure_p, pure_state, state = p.clone(), p.data_ptr(), p.clone(), {}, {}
    for _ in range(3):
        g = torch.randn(4, 3, generator=gen)
        g_copy = g.clone()
        pure_p, pure_state = PURE[name](pure_p, g, pure_state, **hp)
        buffers = dict(state)
        ALL_RULES[name].step(p, g, state, **hp)
        assert torch.equal(g, g_copy) and p.data_ptr() == p_id
        assert all(state[k] is v for k, v in buffers.items())  # same buffers, updated in place
        assert torch.equal(p, pure_p)
        assert state.keys() == pure_state.keys()
        assert all(torch.equal(state[k], pure_state[k]) for k in state)
    assert not torch.equal(p, p0)


# ---------------------------------------------------------------------------------------------
# Hand-computed traces: these fail if a rule is swapped for a neighbouring variant.
# f(x) = ½·a·x² with a = 4, so g(x) = 4x; x0 = 1, lr = 0.1, mu = 0.5.
# ---------------------------------------------------------------------------------------------

A_1D, X0, LR, MU = 4.0, 1.0, 0.1, 0.5


def _two_steps(rule, **hp):
    x, state, trace = torch.tensor([X0], dtype=torch.float64), {}, []
    for _ in range(2):
        x, state = rule(x, A_1D * x, state, **hp)
        trace.append(x.item())
    return trace


def test_trace_gd():
    # x1 = 1 - 0.1*4 = 0.6;  x2 = 0.6 - 0.1*(4*0.6) = 0.6 - 0.24 = 0.36
    assert _two_steps(gd, lr=LR) == pytest.approx([0.6, 0.36], rel=1e-14)


def test_trace_gd_coupled_weight_decay():
    # g <- 4x + 0.5x = 4.5x.  x1 = 1 - 0.1*4.5 = 0.55;  x2 = 0.55 - 0.1*4.5*0.55 = 0.3025
    assert _two_steps(gd, lr=LR, weight_decay=0.5) == pytest.approx([0.55, 0.3025], rel=1e-14)


def test_trace_heavy_ball():
    # b1 = 0.5*0 + 4 = 4,          x1 = 1 - 0.1*4 = 0.6
    # g2 = 4*0.6 = 2.4, b2 = 0.5*4 + 2.4 = 4.4,  x2 = 0.6 - 0.1*4.4 = 0.16
    assert _two_steps(momentum, lr=LR, momentum=MU) == pytest.approx([0.6, 0.16], rel=1e-14)


def test_trace_nesterov():
    # b1 = 0.5*0 + 4 = 4,          x1 = 1 - 0.1*(4 + 0.5*4) = 1 - 0.6 = 0.4
    # g2 = 4*0.4 = 1.6, b2 = 0.5*4 + 1.6 = 3.6,  x2 = 0.4 - 0.1*(1.6 + 0.5*3.6) = 0.4 - 0.34 = 0.06
    assert _two_steps(nesterov, lr=LR, momentum=MU) == pytest.approx([0.4, 0.06], rel=1e-12)


def test_nesterov_and_heavy_ball_differ_after_two_steps():
    gen = torch.Generator().manual_seed(4)
    p = torch.randn(8, generator=gen, dtype=torch.float64)
    gs = [torch.randn(8, generator=gen, dtype=torch.float64) for _ in range(2)]
    p_hb, s_hb, p_nag, s_nag = p, {}, p, {}
    for g in gs:
        p_hb, s_hb = momentum(p_hb, g, s_hb, lr=0.1, momentum=0.9)
        p_nag, s_nag = nesterov(p_nag, g, s_nag, lr=0.1, momentum=0.9)
    # Same gradients fed to both.  Heavy ball moved lr*(b1 + b2), Nesterov lr*(g1 + mu*b1 +
    # g2 + mu*b2); with b1 = g1, b2 = mu*g1 + g2 the gap p_hb - p_nag is exactly lr*mu*b2.
    expected_gap = 0.1 * 0.9 * (0.9 * gs[0] + gs[1])
    torch.testing.assert_close(p_hb - p_nag, expected_gap, rtol=1e-12, atol=1e-14)
    assert (p_hb - p_nag).abs().max() > 0.05


def test_trace_adam():
    # beta1 = 0.5, beta2 = 0.96, eps = 1 (large on purpose, so where eps sits shows up).
    # Step 1: g = 4.  m1 = 0.5*4 = 2,  v1 = 0.04*16 = 0.64,  1-b1 = 0.5,  1-b2 = 0.04.
    #   m̂ = 2/0.5 = 4,  √v̂ = √(0.64/0.04) = 4,  x1 = 1 - 0.1*4/(4 + 1) = 0.92.
    #   (eps added before the correction: 1 - (0.1/0.5)*√0.04 * 2/(0.8 + 1) = 0.9556 -- differs;
    #    no bias correction: 1 - 0.1*2/(0.8 + 1) = 0.8889 -- differs.)
    # Step 2: g = 4*0.92 = 3.68.  m2 = 0.5*2 + 0.5*3.68 = 2.84,
    #   v2 = 0.96*0.64 + 0.04*3.68² = 0.6144 + 0.541696 = 1.156096,
    #   1-b1² = 0.75, 1-b2² = 1 - 0.9216 = 0.0784,
    #   x2 = 0.92 - 0.1*(2.84/0.75)/(√(1.156096/0.0784) + 1)
    #      = 0.92 - 0.1*3.78667/(3.84004 + 1) ≈ 0.92 - 0.078236 = 0.841764
    x2 = 0.92 - 0.1 * (2.84 / 0.75) / (math.sqrt(1.156096 / 0.0784) + 1.0)
    trace = _two_steps(adam, lr=LR, beta1=0.5, beta2=0.96, eps=1.0)
    assert trace == pytest.approx([0.92, x2], rel=1e-12)
    assert x2 == pytest.approx(0.841764, abs=1e-6)


def test_adam_first_step_is_lr_times_sign_of_gradient():
    # With bias correction, step 1 is lr*g/(|g| + eps) ≈ lr*sign(g) whatever |g| is.  Without
    # it the step would be lr*(1-b1)/√(1-b2)*sign(g) = 3.16*lr for the default betas.
    lr = 1e-3
    g = torch.tensor([1e-3, -2e-2, 0.5, -3.0, 40.0, -1e3], dtype=torch.float64)
    p = torch.zeros_like(g)
    new_p, state = adam(p, g, {}, lr=lr, beta1=0.9, beta2=0.999, eps=1e-8)
    torch.testing.assert_close(new_p, -lr * torch.sign(g), rtol=1e-5, atol=0.0)
    assert state["t"].item() == 1.0
    assert isinstance(state["t"], torch.Tensor)


# ---------------------------------------------------------------------------------------------
# The torch.optim wrapper
# ---------------------------------------------------------------------------------------------


def test_optimizer_skips_params_without_grad_and_returns_closure_loss():
    used = nn.Parameter(torch.tensor([1.0, 2.0]))
    unused = nn.Parameter(torch.tensor([3.0]))
    opt = build([used, unused], {"name": "momentum", "lr": 0.1, "momentum": 0.9})
    assert isinstance(opt, Optimizer) and isinstance(opt, torch.optim.Optimizer)

    def closure():
        opt.zero_grad()
        loss = (used**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    assert unused.grad is None
    assert torch.equal(unused.detach(), torch.tensor([3.0]))
    assert len(opt.state[unused]) == 0
    # b1 = g = 2*used = (2, 4); used <- used - 0.1*b1
    torch.testing.assert_close(used.detach(), torch.tensor([0.8, 1.6]))
    torch.testing.assert_close(opt.state[used]["momentum_buffer"], torch.tensor([2.0, 4.0]))


def test_optimizer_follows_lr_scheduler_like_torch():
    a, b, x0 = _quadratic()
    x_ours, x_torch = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    ours, theirs = _ours_and_torch("nesterov", 0.0, [x_ours], [x_torch])
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5) for o in (ours, theirs)]
    for _ in range(20):
        for x, opt, sched in ((x_ours, ours, scheds[0]), (x_torch, theirs, scheds[1])):
            with torch.no_grad():
                x.grad = a @ x - b
            opt.step()
            sched.step()
    assert ours.param_groups[0]["lr"] == pytest.approx(0.01 / 16)
    torch.testing.assert_close(x_ours, x_torch, rtol=1e-12, atol=1e-13)




@pytest.mark.parametrize("name", list(RULES))
def test_update_is_step_bit_for_bit_and_runs_registered_step_hooks(name):
    """The loop's ``update()`` (step without torch.optim's wrapper) moves the parameters exactly as
    ``step()``; with a step hook registered, on the optimizer or for every optimizer, the hook runs."""
    torch.manual_seed(0)
    grads = [torch.randn(3, 4) for _ in range(4)]
    xs = [nn.Parameter(torch.ones(3, 4)) for _ in range(2)]
    opts = [build([x], TABLE[name][0]) for x in xs]
    for g in grads:
        for x, opt, call in zip(xs, opts, ("step", "update"), strict=True):
            opt.zero_grad()
            x.grad = g.clone()
            getattr(opt, call)()
    assert torch.equal(xs[0], xs[1])
    calls = []
    handles = [opts[1].register_step_post_hook(lambda *a: calls.append("own")),
               register_optimizer_step_pre_hook(lambda *a: calls.append("global"))]
    try:
        xs[1].grad = grads[0].clone()
        opts[1].update()
    finally:
        for h in handles:
            h.remove()
    assert calls == ["global", "own"]


def test_zero_grad_sets_none_or_zeros_as_torch_does():
    x = nn.Parameter(torch.ones(3))
    opt = build([x], {"name": "gd", "lr": 0.1})
    x.grad = torch.full((3,), 2.0)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(x.grad, torch.zeros(3))
    opt.zero_grad()
    assert x.grad is None
# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def test_from_mapping_accepts_betas_as_list_and_gives_rule_kwargs():
    cfg = OptimizerConfig.from_mapping({"name": "adam", "lr": 3e-4, "betas": [0.8, 0.99]})
    assert cfg.betas == (0.8, 0.99)
    assert hyperparameters(cfg) == {
        "lr": 3e-4, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.0}
    assert hyperparameters(OptimizerConfig.from_mapping({"name": "gd", "lr": 1})) == {
        "lr": 1.0, "weight_decay": 0.0}
    assert set(hyperparameters(OptimizerConfig.from_mapping(TABLE["nesterov"][0]))) == {
        "lr", "momentum", "weight_decay"}


INVALID = [
    ({"name": "gd", "lr": -0.1}, "optimizer.lr"),
    ({"name": "gd", "lr": 0.0}, "optimizer.lr"),
    ({"name": "gd", "lr": float("nan")}, "optimizer.lr"),
    ({"name": "gd", "lr": float("inf")}, "optimizer.lr"),
    ({"name": "gd", "lr": "abc"}, "optimizer.lr must be a positive number, got 'abc'"),
    ({"name": "gd", "lr": True}, "optimizer.lr"),
    ({"name": "momentum", "lr": 0.1, "momentum": -0.1}, "optimizer.momentum"),
    ({"name": "momentum", "lr": 0.1, "momentum": 1.0}, "optimizer.momentum"),
    ({"name": "momentum", "lr": 0.1, "momentum": 0.0}, "optimizer.name=gd"),
    ({"name": "nesterov", "lr": 0.1, "momentum": 0.0}, "Nesterov needs momentum > 0"),
    ({"name": "nesterov", "lr": 0.1}, "Nesterov needs momentum > 0"),
    ({"name": "adam", "lr": 0.1, "betas": [1.0, 0.999]}, "optimizer.betas"),
    ({"name": "adam", "lr": 0.1, "betas": [0.9, -0.1]}, "optimizer.betas"),
    ({"name": "adam", "lr": 0.1, "betas": [0.9]}, "optimizer.betas"),
    ({"name": "adam", "lr": 0.1, "betas": "0.9"}, "optimizer.betas"),
    ({"name": "adam", "lr": 0.1, "eps": 0.0}, "optimizer.eps"),
    ({"name": "gd", "lr": 0.1, "weight_decay": -1.0}, "optimizer.weight_decay"),
    ({"name": "sgd", "lr": 0.1}, "optimizer.name must be one of gd, momentum, nesterov, adam"),
    ({"name": "gd", "lr": 0.1, "nesterov": True}, "optimizer.nesterov"),
    ({"name": "gd", "lr": 0.1, "momentum": 0.9}, "optimizer.momentum"),
    ({"name": "adam", "lr": 0.1, "momentum": 0.9}, "optimizer.betas[0]"),
    ({"lr": 0.1}, "optimizer.name is required"),
    ({"name": "gd"}, "optimizer.lr is required"),
]


@pytest.mark.parametrize(("setting", "needle"), INVALID, ids=[str(s) for s, _ in INVALID])
def test_invalid_settings_are_refused_in_one_line(setting, needle):
    with pytest.raises(ConfigError) as info:
        OptimizerConfig.from_mapping(setting)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_optimizer_validates_a_directly_built_config():
    with pytest.raises(ConfigError, match="optimizer.lr"):
        Optimizer([nn.Parameter(torch.zeros(1))], OptimizerConfig(name="gd", lr=-1.0))


@pytest.mark.parametrize("name", list(ALL_RULES))
def test_momentum_that_does_not_suit_the_rule_is_refused(name):
    """A rule that needs momentum refuses 0; every other rule refuses a momentum it would ignore."""
    wrong = 0.0 if ALL_RULES[name].needs_momentum else 0.9
    with pytest.raises(ConfigError, match="momentum") as info:
        OptimizerConfig.from_mapping(sample_setting(name, momentum=wrong))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# The registry: one Rule per optimizer.name, read by the configs, the store and the wrapper
# ---------------------------------------------------------------------------------------------

CONF_OPTIMIZER = REPO / "conf" / "optimizer"


def test_every_optimizer_config_names_a_registered_rule():
    assert sorted(p.stem for p in CONF_OPTIMIZER.glob("*.yaml")) == sorted(ALL_RULES)
    assert list(ALL_RULES) == [*RULES, *FORMULATIONS]  # the compared four first, in the tables' order


@pytest.mark.parametrize("name", list(ALL_RULES))
def test_each_rule_has_a_config_that_sets_its_settings_and_defaults(name):
    """conf/optimizer/<name>.yaml selects the rule, validates, sets exactly the rule's own settings (besides
    lr and weight_decay), at the defaults the Rule states, and the wrapper it builds steps with the rule."""
    rule = ALL_RULES[name]
    setting = OmegaConf.to_container(OmegaConf.load(CONF_OPTIMIZER / f"{name}.yaml"))["optimizer"]
    assert setting["name"] == rule.name == name
    assert set(setting) - {"name", "lr", "weight_decay"} == set(rule.settings)
    cfg = OptimizerConfig.from_mapping(setting)
    assert all(getattr(cfg, key) == default for key, default in rule.defaults.items())
    assert build([nn.Parameter(torch.zeros(3))], setting).rule is rule


DIRNAMES = [
    ({"name": "gd", "lr": 0.1}, "lr=0.1"),
    ({"name": "nesterov", "lr": 0.01, "momentum": 0.9}, "lr=0.01,momentum=0.9"),
    ({"name": "article_stated", "lr": 0.001, "momentum": 0.5, "weight_decay": 0.0}, "lr=0.001,momentum=0.5"),
    ({"name": "momentum", "lr": 3e-05, "momentum": 0.99, "weight_decay": 0.01},
     "lr=3e-05,momentum=0.99,wd=0.01"),
    ({"name": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}, "lr=0.001"),
    ({"name": "adam", "lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8}, "lr=0.001"),
    ({"name": "adam", "lr": 0.001, "betas": [0.8, 0.99], "eps": 1e-8, "weight_decay": 1e-3},
     "lr=0.001,betas=0.8-0.99,eps=1e-08,wd=0.001"),
    ({"name": "adam", "lr": 1, "betas": [0.9, 0.999], "eps": 1e-6}, "lr=1,betas=0.9-0.999,eps=1e-06"),
    ({"name": "not_a_rule", "lr": 0.1, "momentum": 0.9}, "lr=0.1"),
]


@pytest.mark.parametrize(("setting", "expected"), DIRNAMES, ids=[e for _, e in DIRNAMES])
def test_dirname_is_the_stores_directory_name(setting, expected):
    """The run store's directory names, which results/ and the committed tables depend on."""
    assert dirname(setting) == expected


@pytest.mark.parametrize("name", list(ALL_RULES))
def test_dirname_names_the_settings_each_rule_reads(name):
    rule = ALL_RULES[name]
    setting = {**sample_setting(name), "betas": [0.9, 0.999], "eps": 1e-8}
    expected = "lr=0.1,momentum=0.9" if rule.needs_momentum else "lr=0.1"
    assert dirname(setting) == expected
    assert dirname({**setting, "weight_decay": 0.5}) == expected + ",wd=0.5"


def test_the_store_and_the_analysis_run_without_torch():
    """The run store, the rules' settings and every module of the analysis import with torch absent.

    The issue's check (``sys.modules['torch'] = None``), then every module of the analysis with an
    import hook that refuses torch (scipy.stats itself stumbles over a None in sys.modules)."""
    issue = "import sys; sys.modules['torch'] = None; import nesterov_bench.analyze, nesterov_bench.store"
    whole = ("import sys, pkgutil, importlib\n"
             "class NoTorch:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.partition('.')[0] == 'torch': raise ImportError(f'{name} imported')\n"
             "sys.meta_path.insert(0, NoTorch())\n"
             "import nesterov_bench.analyze as a, nesterov_bench.store, nesterov_bench.optimizer_config\n"
             "for m in pkgutil.iter_modules(a.__path__): importlib.import_module(f'{a.__name__}.{m.name}')\n"
             "assert 'torch' not in sys.modules\n")
    for code in (issue, whole):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
