"""Learning-rate and momentum schedules (``schedule=``): their formulas, when the loop applies them (the
same steps as torch.optim.lr_scheduler), populations, and the three Nesterov forms parting under them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from nesterov_bench.config import compose, resolve
from nesterov_bench.errors import ConfigError
from nesterov_bench.members import member_configs
from nesterov_bench.schedules import lr_factor, momentum_at
from nesterov_bench.store import run_path
from nesterov_bench.train import run_all

from .conftest import overrides

COSINE = {"name": "warmup_cosine", "warmup": 0.1, "floor": 0.0}
STEP = {"name": "step", "at": [0.5, 0.75], "factor": 0.1}


def test_warmup_cosine_and_step_factors():
    total = 100
    assert [lr_factor(COSINE, t, total) for t in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(COSINE, 10, total) == pytest.approx(1.0)
    assert lr_factor(COSINE, 55, total) == pytest.approx(0.5)  # halfway through the decay
    assert lr_factor(COSINE, 99, total) < 1e-3
    assert [lr_factor(STEP, t, total) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(None, 7, total) == 1.0


def test_sutskever_ramp():
    ramp = {"name": "sutskever", "every": 250}
    assert [momentum_at(ramp, t) for t in (0, 249, 250, 500, 750, 1750)] == pytest.approx(
        [0.5, 0.5, 0.75, 1 - 2 ** (-1 - math.log2(3)), 0.875, 0.9375])


def _run(tmp_path, *extra):
    s = resolve(compose(overrides(tmp_path, "task=quadratic", "task.dim=10", "task.dtype=float64",
                                  "train.epochs=60", *extra)))
    (record,) = run_all([s])
    return pd.read_parquet(run_path(record["config"]) / "metrics.parquet")


@pytest.mark.parametrize("schedule", ["warmup_cosine", "step"])
def test_the_loop_applies_the_schedule_as_torch_lr_scheduler_would(tmp_path, schedule):
    """The quadratic (full batch, float64) under the suite's loop and schedule, against torch.optim.SGD
    with nesterov=True and a LambdaLR of the same factors, stepped by hand: the same suboptimality curve."""
    curve = _run(tmp_path, "optimizer=nesterov", "optimizer.lr=0.002", f"schedule={schedule}")
    s = resolve(compose(overrides(tmp_path, "task=quadratic", "task.dim=10", "task.dtype=float64",
                                  "train.epochs=60", f"schedule={schedule}")))
    data = s.task.load_data(s.cfg["data"], torch.device("cpu"))
    from nesterov_bench.train import derived_seed
    torch.manual_seed(derived_seed(s.seed, 0))
    model = s.task.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(s.train.lr_schedule, t, 60))
    expected = []
    for _ in range(60):
        opt.zero_grad()
        s.task.loss(model(data.train.x), data.train.y).backward()
        opt.step()
        sched.step()
        expected.append(s.task.evaluate(model, data.train, 256, data)["suboptimality"])
    got = curve[(curve.metric == "suboptimality") & (curve.step > 0)].sort_values("step").value.to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_momentum_ramp_is_refused_for_an_optimizer_without_momentum(tmp_path):
    with pytest.raises(ConfigError, match="ramps momentum, which optimizer adam does not have"):
        resolve(compose(overrides(tmp_path, "optimizer=adam", "schedule=sutskever")))
    with pytest.raises(ConfigError, match="warmup must be in"):
        resolve(compose(overrides(tmp_path, "schedule=warmup_cosine", "train.lr_schedule.warmup=1.5")))


def test_a_scheduled_population_equals_its_members_alone(tmp_path):
    """Per-member learning rates and momenta (tensors of shape (K,)) are scaled and capped alike."""
    base = resolve(compose(overrides(tmp_path, "task=linreg", "optimizer=nesterov", "train.epochs=3",
                                     "schedule=sutskever", "train.lr_schedule={name: step, at: [0.5], "
                                     "factor: 0.1}"))).cfg
    finals = {}
    for mode in (True, False):
        cfg = {**base, "results_dir": str(tmp_path / str(mode)),
               "members": {**base["members"], "lrs": [0.001, 0.003]}}
        finals[mode] = [r["final"]["val/loss"] for r in run_all([resolve(c) for c in member_configs(cfg)],
                                                                 vectorized=mode)]
    np.testing.assert_allclose(finals[True], finals[False], rtol=2e-5)


@pytest.mark.parametrize("schedule", ["none", "warmup_cosine", "step", "sutskever"])
def test_the_three_nesterov_forms_coincide_under_a_constant_lr_and_part_under_an_lr_schedule(tmp_path,
                                                                                            schedule):
    """PyTorch's form, Sutskever's velocity form and Nesterov's 1983 sequences give the same iterates
    under a constant learning rate (a momentum ramp included) and part once the learning rate changes:
    Sutskever's and the 1983 form store lr-scaled steps, PyTorch's raw gradients."""
    curves = {form: _run(tmp_path / form, f"optimizer={form}", "optimizer.lr=0.002", f"schedule={schedule}")
              for form in ("nesterov", "nesterov_sutskever", "nesterov_1983")}
    sub = {f: c[c.metric == "suboptimality"].sort_values("step").value.to_numpy() for f, c in curves.items()}
    np.testing.assert_allclose(sub["nesterov_sutskever"], sub["nesterov_1983"], rtol=1e-9)
    if schedule in ("none", "sutskever"):
        np.testing.assert_allclose(sub["nesterov"], sub["nesterov_sutskever"], rtol=1e-9)
    else:
        assert np.max(np.abs(sub["nesterov"] / sub["nesterov_sutskever"] - 1)) > 1e-3
