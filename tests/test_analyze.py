"""The analysis: aggregation, the loader's refusals, the verdict rule, the generated files and the paper.

Most tests build small run stores in the store's own format with curves whose answer is known (e.g.
Nesterov reaching the target in half the steps); the real-data path (a smoke profile end to end,
analysis included) is exercised in test_protocol.py, and the committed results are reanalysed here.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from nesterov_bench import select, store, theory
from nesterov_bench.analyze import claims, figures, measures, numbers, quadratic, speed, tables, verdicts
from nesterov_bench.analyze.load import load
from nesterov_bench.analyze.outputs import copy_paper_sources, destinations, typeset
from nesterov_bench.analyze.stats import paired, summarize, weighted_line
from nesterov_bench.analyze.study import Study
from nesterov_bench.analyze.tables import tex
from nesterov_bench.errors import ConfigError

from .conftest import REPO

OPTS = ["gd", "momentum", "nesterov", "adam"]
TASKS = {"mnist_logreg": ("val", "accuracy", "max"), "linreg": ("val", "loss", "min"),
         "mnist_mlp": ("val", "accuracy", "max")}


def write_run(root: Path, *, task: str, opt: str, lr: float, seed: int, stage: str, tau: float,
              experiment: str = "quick", status: str = "completed", steps: int = 1000,
              task_cfg: dict | None = None, train: dict | None = None, path_keys: list | None = None) -> Path:
    """One run in the store's format whose validation curve approaches its limit with time constant tau
    steps (smaller = faster): accuracy 0.95 (1 - e^(-t/tau)), or loss 400 + 4000 e^(-t/tau)."""
    split, metric, mode = TASKS[task]
    cfg = {"results_dir": str(root), "experiment_name": experiment, "stage": stage, "seed": seed,
           "task": {"name": task, **(task_cfg or {})}, "train": {"epoch_decay": 0.0, **(train or {})},
           "path_keys": path_keys or [],
           "data": {"generated": False},
           "optimizer": {"name": opt, "lr": lr, "momentum": 0.9 if opt in ("momentum", "nesterov") else 0.0,
                         "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}}
    t = np.arange(0, steps + 1, 50, dtype=float)
    noise = 1 + 0.01 * ((seed * 7 + int(tau)) % 5 - 2)  # a little seed-to-seed spread
    curve = 0.95 * (1 - np.exp(-t / (tau * noise))) if metric == "accuracy" else 400 + 4000 * np.exp(
        -t / (tau * noise))
    rows = []
    for s, v in zip(t, curve, strict=True):
        for sp in ("val", "test"):
            rows.append({"step": int(s), "epoch": s / 100, "split": sp, "metric": metric, "value": float(v),
                         "time_s": s / 1000})
        rows.append({"step": int(s), "epoch": s / 100, "split": "train", "metric": "loss",
                     "value": float(1 - v / 2 if metric == "accuracy" else v), "time_s": s / 1000})
    run_dir = store.run_path(cfg)
    run_dir.mkdir(parents=True)
    store.write_metrics(run_dir / "metrics.parquet", rows)
    store.write_json(run_dir / "run.json", {
        "schema_version": 1, "config": cfg, "status": status, "steps": steps,
        "selection": {"split": split, "metric": metric, "mode": mode},
        "final": {f"val/{metric}": float(curve[-1]), f"test/{metric}": float(curve[-1])},
        "train_time_s": 1.0, "wall_time_s": 1.5,
        "environment": {"device_name": "test CPU", "torch": "2.14.1", "git_commit": "0" * 40}})
    return run_dir


def make_store(root: Path, tau: dict[str, float], seeds=(100, 101, 102)) -> Path:
    """Tune (3 rates, the middle one best) and final runs for every task and optimizer."""
    for task in ("mnist_logreg", "linreg"):
        for opt in OPTS:
            for lr, factor in ((0.001, 3.0), (0.01, 1.0), (0.1, 1.5)):
                write_run(root, task=task, opt=opt, lr=lr, seed=0, stage="tune", tau=tau[opt] * factor)
            for seed in seeds:
                write_run(root, task=task, opt=opt, lr=0.01, seed=seed, stage="final", tau=tau[opt])
    return root


FAST_NESTEROV = {"gd": 200.0, "momentum": 160.0, "nesterov": 80.0, "adam": 100.0}
ALL_EQUAL = {o: 100.0 for o in OPTS}


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nesterov_bench.analyze", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


# --- aggregation -------------------------------------------------------------------------------

def test_summary_is_the_student_t_interval_over_seeds():
    x = [0.91, 0.93, 0.92, 0.95]
    s = summarize(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert s.n == 4 and s.mean == pytest.approx(np.mean(x)) and s.median == pytest.approx(0.925)
    assert (s.low, s.high) == (pytest.approx(lo), pytest.approx(hi))
    assert summarize([1.0, float("nan"), float("inf")]).n == 1  # non-finite values are not averaged in
    assert math.isnan(summarize([1.0]).half_width)


def test_paired_comparison_uses_the_shared_seeds_only():
    s = paired({1: 5.0, 2: 7.0, 3: 100.0}, {1: 4.0, 2: 5.0, 4: -100.0})
    assert s.n == 2 and s.mean == pytest.approx(1.5)


def test_time_to_target_is_the_first_evaluation_reaching_it():
    m = pd.DataFrame({"step": [0, 10, 20, 30], "split": "val", "metric": "accuracy",
                      "value": [0.1, 0.5, 0.91, 0.95], "time_s": [0, 1, 2, 3]})
    assert measures.time_to_target(m, {"metric": "val/accuracy", "value": 0.9}) == (20.0, 2.0)
    assert all(map(math.isnan, measures.time_to_target(m, {"metric": "val/accuracy", "value": 0.99})))


def test_loader_reports_and_leaves_out_unusable_runs(tmp_path):
    root = make_store(tmp_path / "r", ALL_EQUAL, seeds=(100,))
    good = len(load(root).runs)
    bad = {
        "corrupt": write_run(root, task="linreg", opt="gd", lr=0.5, seed=1, stage="final", tau=1),
        "running": write_run(root, task="linreg", opt="gd", lr=0.5, seed=2, stage="final", tau=1,
                             status="running"),
        "failed": write_run(root, task="linreg", opt="gd", lr=0.5, seed=3, stage="final", tau=1,
                            status="failed"),
        "no metrics": write_run(root, task="linreg", opt="gd", lr=0.5, seed=4, stage="final", tau=1),
        "generated": write_run(root, task="linreg", opt="gd", lr=0.5, seed=5, stage="final", tau=1),
    }
    (bad["corrupt"] / "run.json").write_text('{"config": ')  # cut short
    (bad["no metrics"] / "metrics.parquet").unlink()
    rec = json.loads((bad["generated"] / "run.json").read_text())
    rec["config"]["data"]["generated"] = True
    (bad["generated"] / "run.json").write_text(json.dumps(rec))
    half = bad["corrupt"].parent / "seed=9"
    half.mkdir()  # a run killed before it wrote run.json
    loaded = load(root)
    assert len(loaded.runs) == good
    reasons = {Path(p).name: why for p, why in loaded.skipped}
    assert "corrupt" in reasons["seed=1"] and "running" in reasons["seed=2"]
    assert "failed" in reasons["seed=3"] and "metrics" in reasons["seed=4"]
    assert "generated" in reasons["seed=5"] and "unfinished" in reasons["seed=9"]
    assert set(loaded.metrics.run_id) == set(loaded.runs.run_id)


def test_runs_of_two_settings_in_one_stage_are_refused_not_pooled(tmp_path):
    """Runs of one stage and task made under two settings (bf16 runs beside float32 ones, as
    `make reproduce ARGS='train.precision=bf16'` into a store of float32 runs makes them) would be pooled
    as seeds of one setting: the loader, the selection and `analyze` refuse them in one line that names
    the setting and both runs. What a stage varies (seed, optimizer, the recipes' decay, a sweep's path
    keys) and a setting unset in older runs are not a second setting."""
    root = make_store(tmp_path / "r", ALL_EQUAL, seeds=(100,))
    for seed, extra in ((101, {"train": {"epoch_decay": 0.5}}), (102, {"train": {"precision": None}}),
                        (103, {"task_cfg": {"width": 2}, "path_keys": ["task.width"]})):
        write_run(root, task="linreg", opt="gd", lr=0.01, seed=seed, stage="final", tau=100, **extra)
    assert len(load(root).runs) == 2 * 4 * 4 + 3
    bf16 = write_run(root, task="linreg", opt="gd", lr=0.01, seed=100, stage="final", tau=100,
                     train={"precision": "bf16"})
    assert bf16.parent.name == "lr=0.01,precision=bf16"  # its own directory: both are on disk
    said = (r"runs of quick/final/linreg were made under different settings "
            r"\(train.precision=unset in .*; train.precision=bf16 in .*precision=bf16")
    with pytest.raises(ConfigError, match=said):
        load(root)
    out = tmp_path / "gen"
    proc = analyze("--results", str(root), "--profile", "quick", "--out", str(out), "--no-readme")
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.startswith("error: runs of quick/final/linreg") and proc.stderr.count("\n") == 1
    shutil.rmtree(bf16)
    tune = write_run(root, task="mnist_logreg", opt="adam", lr=0.01, seed=0, stage="tune", tau=100,
                     train={"precision": "bf16"})
    with pytest.raises(ConfigError, match="runs of quick/tune/mnist_logreg .* train.precision=bf16"):
        select.tuning_records(root, "quick")
    shutil.rmtree(tune)
    assert len(select.tuning_records(root, "quick")) == 2 * 4 * 3


# --- claims and the verdict rule -----------------------------------------------------------------

RULE = {"level": 0.95, "bootstrap_min_n": 10, "bootstrap_resamples": 2000, "power": 0.8}
ROPE = math.log2(1.1)


def rule_verdict(per_task_values, resolution_var=0.0) -> str:
    """The verdict of a claim whose tasks have these per-seed effects (log2 speed-ups)."""
    effects = [verdicts.task_effect(v, ROPE, RULE, resolution_var) for v in per_task_values]
    pooled = verdicts.pool(effects, ROPE, RULE)
    return verdicts.verdict(pooled.outcome if pooled else verdicts.INCONCLUSIVE)


def test_outcome_against_the_equivalence_region():
    assert verdicts.outcome(0.2, 0.5, 0.1) == verdicts.FOR
    assert verdicts.outcome(0.05, 0.5, 0.1) == verdicts.FOR  # above 0, not inside the region
    assert verdicts.outcome(-0.5, -0.2, 0.1) == verdicts.AGAINST
    assert verdicts.outcome(-0.05, 0.08, 0.1) == verdicts.EQUIVALENT
    assert verdicts.outcome(0.01, 0.08, 0.1) == verdicts.EQUIVALENT  # real but too small to matter
    assert verdicts.outcome(-0.3, 0.5, 0.1) == verdicts.INCONCLUSIVE
    assert verdicts.outcome(math.nan, math.nan, 0.1) == verdicts.INCONCLUSIVE
    assert [verdicts.verdict(o) for o in (verdicts.FOR, verdicts.AGAINST, verdicts.EQUIVALENT,
                                          verdicts.INCONCLUSIVE)] == ["supported", "refuted", "refuted",
                                                                      "inconclusive"]


def test_a_true_twofold_speedup_with_ten_seeds_is_supported():
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert rule_verdict([rng.normal(1.0, 0.3, 10) for _ in range(6)]) == verdicts.SUPPORTED


def test_identical_optimizers_are_refuted_and_never_supported():
    # the same optimizer twice: the same steps on every seed, known to within the evaluation spacing
    assert rule_verdict([np.zeros(10)] * 6, resolution_var=0.01) == verdicts.REFUTED
    assert rule_verdict([np.zeros(3)] * 6, resolution_var=0.01) == verdicts.REFUTED
    rng = np.random.default_rng(2)
    seen = [rule_verdict([rng.normal(0.0, 0.1, 10) for _ in range(6)]) for _ in range(50)]
    assert verdicts.SUPPORTED not in seen and seen.count(verdicts.REFUTED) >= 40
    # much noisier seeds: a 95% interval excludes 0 upwards by chance 2.5% of the time, no more
    noisy = [rule_verdict([rng.normal(0.0, 0.8, 10) for _ in range(6)]) for _ in range(200)]
    assert noisy.count(verdicts.SUPPORTED) <= 10 and noisy.count(verdicts.UNDECIDED) >= 150


def test_three_noisy_seeds_of_a_small_effect_are_inconclusive():
    rng = np.random.default_rng(3)  # a 7% speed-up, seed-to-seed spread of a factor 1.4
    one_task = [rule_verdict([rng.normal(0.1, 0.5, 3)]) for _ in range(200)]
    three_tasks = [rule_verdict([rng.normal(0.1, 0.5, 3) for _ in range(3)]) for _ in range(200)]
    assert one_task.count(verdicts.INCONCLUSIVE) >= 180 and three_tasks.count(verdicts.INCONCLUSIVE) >= 180


def test_task_interval_is_t_below_the_declared_seeds_and_bootstrap_from_them():
    rng = np.random.default_rng(4)
    x = rng.normal(1.0, 0.5, 10)
    t9, b10 = verdicts.task_effect(x[:9], ROPE, RULE), verdicts.task_effect(x, ROPE, RULE)
    assert t9.method == "t" and b10.method == "bootstrap"
    hw = sps.t.ppf(0.975, 8) * x[:9].std(ddof=1) / 3
    assert (t9.low, t9.high) == pytest.approx((x[:9].mean() - hw, x[:9].mean() + hw))
    ref = sps.bootstrap((x,), np.mean, method="BCa", n_resamples=2000, rng=np.random.default_rng(0))
    assert (b10.low, b10.high) == pytest.approx(tuple(ref.confidence_interval))
    # identical values still carry their measurement's resolution
    flat = verdicts.task_effect([1.0, 1.0, 1.0], ROPE, RULE, resolution_var=0.03)
    assert flat.low < 1.0 < flat.high and flat.se == pytest.approx(0.1)


def test_pooling_is_statsmodels_random_effects_with_modified_hartung_knapp():
    from statsmodels.stats.meta_analysis import combine_effects

    effects = [verdicts.task_effect(v, ROPE, RULE) for v in ([1, 1.2, 0.8], [0.3, 0.5, 0.4], [2, 1.5, 1.7])]
    pooled = verdicts.pool(effects, ROPE, RULE)
    res = combine_effects(np.array([e.estimate for e in effects]), np.array([e.se**2 for e in effects]),
                          method_re="chi2", use_t=True)
    se = max(res.sd_eff_w_re, res.sd_eff_w_re_hksj)
    hw = sps.t.ppf(0.975, 2) * se
    assert (pooled.estimate, pooled.low, pooled.high) == pytest.approx(
        (res.mean_effect_re, res.mean_effect_re - hw, res.mean_effect_re + hw))
    assert pooled.n == 3 and pooled.tau2 == pytest.approx(res.tau2) and pooled.tau2 > 0
    # tasks agreeing exactly: tau^2 = 0, the fixed-effect mean, and an interval no narrower than DL's
    same = verdicts.pool([verdicts.task_effect([0.0] * 3, ROPE, RULE, 0.01)] * 4, ROPE, RULE)
    assert same.tau2 == 0 and same.estimate == 0 and same.high == pytest.approx(
        sps.t.ppf(0.975, 3) * math.sqrt(0.01 / 3 / 4))


def test_seeds_for_power_matches_the_t_test_power():
    from statsmodels.stats.power import TTestPower

    n = verdicts.seeds_for_power(1.0, 1.0, RULE)  # effect of one standard deviation
    assert n == 10  # the textbook answer for d = 1, alpha 0.05, power 0.8, paired
    p = TTestPower()
    assert p.power(1.0, n, 0.05) >= 0.8 > p.power(1.0, n - 1, 0.05)
    assert verdicts.seeds_for_power(math.nan, 1.0, RULE) != verdicts.seeds_for_power(math.nan, 1.0, RULE)


def test_kaplan_meier_median_and_restricted_mean():
    km = speed.survival([100, 200, 300, 300], [True, True, False, False], tau=300)
    assert km["median"] == 200 and km["never"] == 0.5
    assert km["rmst"] == pytest.approx(np.mean([100, 200, 300, 300]))  # censoring only at tau
    assert math.isnan(speed.survival([300, 300, 300], [True, False, False], tau=300)["median"])


def test_expected_best_of_k_trials_is_the_mean_over_every_draw():
    import itertools

    scores = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, -1.0]
    for k in range(1, len(scores) + 1):
        brute = np.mean([max(c) for c in itertools.combinations(scores, k)])
        assert speed.expected_best_of(scores, k) == pytest.approx(brute)
    assert math.isnan(speed.expected_best_of(scores, 0))


def test_holm_adjusts_over_the_tasks_of_a_claim():
    adjusted = verdicts.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adjusted["a"] == pytest.approx(0.03) and adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06) and math.isnan(adjusted["d"])


def claim_verdicts(root: Path) -> dict[str, str]:
    return {c.key: c.verdict for c in claims.evaluate(Study("quick", load(root)))}


def test_claims_supported_when_nesterov_is_faster_everywhere(tmp_path):
    v = claim_verdicts(make_store(tmp_path / "r", FAST_NESTEROV, seeds=range(100, 110)))
    assert v["faster_than_gd"] == v["faster_than_momentum"] == verdicts.SUPPORTED
    assert v["less_sensitive"] == verdicts.UNDECIDED  # one tuning seed: no interval


def test_claims_not_supported_when_all_optimizers_are_alike(tmp_path):
    v = claim_verdicts(make_store(tmp_path / "r", ALL_EQUAL, seeds=range(100, 110)))
    assert v["faster_than_gd"] in (verdicts.REFUTED, verdicts.UNDECIDED)
    assert v["faster_than_momentum"] in (verdicts.REFUTED, verdicts.UNDECIDED)
    assert v["larger_gains_small"] == verdicts.NO_DATA  # two tasks cannot give a slope


def test_speedup_is_the_paired_log2_ratio_of_restricted_steps(tmp_path):
    study = Study("quick", load(make_store(tmp_path / "r", FAST_NESTEROV)))
    h = study.hits
    for task, (values, _) in claims.speedups(study, "gd").items():
        gd = h[(h.task == task) & (h.optimizer == "gd")].set_index(["seed", "level"]).steps
        nest = h[(h.task == task) & (h.optimizer == "nesterov")].set_index(["seed", "level"]).steps
        per_seed = np.log2(gd / nest).groupby(level="seed").mean()
        assert values == pytest.approx(list(per_seed))
        assert np.mean(values) > 0.8  # tau 200 vs 80: about 2.5x fewer steps


def test_target_levels_are_reached_by_every_reference_seed_in_time(tmp_path):
    study = Study("quick", load(make_store(tmp_path / "r", FAST_NESTEROV)))
    h = study.hits
    for task, (ref, levels) in study.target_levels.items():
        assert ref == "nesterov" and levels == sorted(levels)  # tighter with a larger budget share
        mine = h[(h.task == task) & (h.optimizer == ref)]
        assert mine.reached.all() and (mine.steps <= mine.fraction * mine.tau).all()


def test_every_fitted_line_is_statsmodels_wls_in_exactly_rounded_sums():
    """The one line fit (claim (v)'s meta-regression, the width figure, the quadratic's rates) equals
    statsmodels' WLS -- slope, intercept and the slope's standard error -- and np.polyfit (weights
    sqrt(w)) to float rounding, while computed from exactly rounded sums so that it does not depend on
    the CPU's LAPACK kernels; unweighted when no weights are given."""
    import statsmodels.api as sm
    rng = np.random.default_rng(0)
    for n in (3, 4, 7):
        x, y, w = rng.normal(size=n) * 2 + 4, rng.normal(size=n), rng.uniform(0.1, 5.0, size=n)
        line = weighted_line(x, y, w)
        fit = sm.WLS(y, sm.add_constant(x), weights=w).fit()
        assert line.slope == pytest.approx(fit.params[1], rel=1e-10, abs=1e-12)
        assert line.intercept == pytest.approx(fit.params[0], rel=1e-10, abs=1e-12)
        assert line.se == pytest.approx(fit.bse[1], rel=1e-10)
        ref_slope, ref_icpt = np.polyfit(x, y, 1, w=np.sqrt(w))
        assert (line.slope, line.intercept) == pytest.approx((ref_slope, ref_icpt), rel=1e-10, abs=1e-12)
        assert weighted_line(x, y).slope == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-10, abs=1e-12)
    # points on a line with unequal weights: that line exactly, with no residual spread
    line = weighted_line([1.0, 2.0, 4.0], [3.0, 5.0, 9.0], [1.0, 10.0, 0.5])
    assert (line.intercept, line.slope, line.se) == (1.0, 2.0, 0.0)
    assert math.isnan(weighted_line([1.0, 2.0], [0.0, 1.0]).se)  # two points: no spread to estimate
    with pytest.raises(ValueError, match="3 x, 2 y"):
        weighted_line([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 1.0, 1.0])


def test_claim_v_is_the_slope_over_the_width_sweep(tmp_path):
    """Nesterov 4x faster than GD at width 16, halving with every factor 4 of width (about 1.6x per decade
    of parameters): larger gains for small models, measured over the widths."""
    root = make_store(tmp_path / "r", FAST_NESTEROV, seeds=range(100, 110))
    mlp = {"val_size": 100, "train_size": None, "test_size": None, "data_seed": 0}
    for width, gain in ((16, 4.0), (64, 2.0), (256, 1.0), (1024, 0.5)):
        for opt, tau in (("gd", 200.0), ("nesterov", 200.0 / gain)):
            for seed in range(100, 110):
                write_run(root, task="mnist_mlp", opt=opt, lr=0.01, seed=seed, stage="final", tau=tau,
                          experiment=f"quick-width{width}", task_cfg={**mlp, "hidden": [width, width]})
    study = Study("quick", load(root))
    assert study.widths == [16, 64, 256, 1024]
    assert study.width_parameters[16] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    size = next(c for c in claims.evaluate(study) if c.key == "larger_gains_small")
    assert size.main.pooled.method.endswith("over widths") and size.verdict == verdicts.SUPPORTED
    assert 0.3 < size.main.pooled.estimate < 1.2  # log2 of the gain lost per decade of parameters
    assert "width_sweep" in {t.name for t in [tables.width_table(study, claims.evaluate(study))] if t}


def test_bold_only_beyond_the_equivalence_region(tmp_path):
    root = make_store(tmp_path / "r", ALL_EQUAL)
    study = Study("quick", load(root))
    rows = tables.final_table(study).rows
    assert not any(c.bold for row in rows for c in row if isinstance(c, tables.Cell))


def test_sizing_names_every_cpu_sized_task_and_nothing_at_full_size():
    """Study.sized, the note a caption carries: a width multiplier, an MLP's hidden widths and a training
    subset are each named for their task, and bf16 forward passes; a task at full size is not mentioned,
    and a table or figure that shows only some tasks (``Table.tasks``, ``figures.FIGURE_TASKS``) names
    only theirs."""
    from types import SimpleNamespace

    final = pd.DataFrame({"task": ["mnist_cnn", "mnist_mlp", "mnist_logreg"], "task_cfg": [
        {"name": "mnist_cnn", "width": 0.25, "train_size": 8000},
        {"name": "mnist_mlp", "hidden": [250, 125, 25]},
        {"name": "mnist_logreg", "width": None, "train_size": None}], "precision": "float32"})
    stub = SimpleNamespace(tasks=["mnist_logreg", "mnist_mlp", "mnist_cnn"], final=final)
    sized = ("Sized for a CPU, not DeepOBS's: mnist_mlp (784-250-125-25-10); "
             "mnist_cnn (0.25 of DeepOBS's width, the first 8,000 training images).")
    assert Study.sized(stub) == sized
    assert Study.sized(stub, ("mnist_logreg", "quadratic")) == ""  # (a task the study lacks: nothing)
    assert Study.sized(stub, ("mnist_cnn",)) == ("Sized for a CPU, not DeepOBS's: mnist_cnn (0.25 of "
                                                 "DeepOBS's width, the first 8,000 training images).")
    final.loc[final.task.isin(["mnist_cnn", "mnist_logreg"]), "precision"] = "bf16"  # said too, per task
    assert Study.sized(stub) == f"{sized} Forward passes in bf16 (autocast): mnist_logreg, mnist_cnn."
    assert Study.sized(stub, ("mnist_logreg",)) == "Forward passes in bf16 (autocast): mnist_logreg."
    stub.tasks = ["mnist_mlp"]
    assert Study.sized(stub) == "Sized for a CPU, not DeepOBS's: mnist_mlp (784-250-125-25-10)."
    stub.final = final.assign(task_cfg=[{}] * 3, precision="float32")
    assert Study.sized(stub) == ""
    made = {p.stem for p in (REPO / "paper" / "generated" / "figures").glob("*.pdf")}
    assert set(figures.FIGURE_TASKS) <= made  # figures the analysis makes, by their names


def test_arithmetic_names_the_runs_not_in_float32():
    """meta/arithmetic, quoted in the paper's limitations: float32, and which runs (how many, which tasks)
    computed in float64 or with bf16 forward passes."""
    runs = pd.DataFrame({"task": ["quadratic", "quadratic", "mnist_cnn", "mnist_mlp"],
                         "task_cfg": [{"dtype": "float64"}, {"dtype": "float32"}, {}, {}],
                         "precision": ["float32", "float32", "bf16", "float32"]})
    assert numbers._arithmetic(runs.iloc[[1, 3]]) == "float32"
    assert numbers._arithmetic(runs) == ("float32, but 1 runs in float64 (quadratic); "
                                         "1 runs with bf16 forward passes (autocast) (mnist_cnn)")


def test_budget_check_counts_the_optimizers_that_arrive_on_nine_seeds_in_ten():
    """numbers.budget_numbers (issue 17's sizing rule): a task's budget is long enough when at least 3
    optimizers reach its declared target on at least 90% of their seeds."""
    from types import SimpleNamespace

    from nesterov_bench.analyze.numbers import budget_numbers

    rows = [{"task": t, "optimizer": o, "seed": s, "reached": s < k}
            for t, arrivals in (("linreg", (10, 10, 9, 0)), ("mnist_cnn", (10, 10, 8, 10)))
            for o, k in zip(OPTS, arrivals, strict=True) for s in range(10)]
    stub = SimpleNamespace(per_run=pd.DataFrame(rows), tasks=["linreg", "mnist_cnn"])
    assert budget_numbers(stub) == {"budget/reach_ok": "2 of 2", "budget/reach_short": "none",
                                    "budget/reach_rule": "at least 3 optimizers on at least 90% of seeds"}
    assert budget_numbers(stub, share=0.95)["budget/reach_short"] == "linreg (2 of 4)"  # 9 of 10 < 95%


def test_protocol_numbers_tell_joint_tuning_from_the_learning_rate_alone():
    """numbers.protocol_numbers reads the tuning stage's points (Study.tune_points): trials per task and
    optimizer, seeds per trial, and ``protocol/joint`` only where a momentum or beta1 was tuned (the
    paper's Tuning paragraph)."""
    from types import SimpleNamespace

    from nesterov_bench.analyze.numbers import protocol_numbers

    nan = float("nan")

    def points(momenta: tuple[float, ...], seeds: int) -> pd.DataFrame:
        rows = [{"task": "linreg", "optimizer": "gd", "lr": lr, "momentum": nan, "beta1": nan, "seeds": seeds}
                for lr in (0.1, 0.3)]
        rows += [{"task": "linreg", "optimizer": "nesterov", "lr": 0.1, "momentum": m, "beta1": nan,
                  "seeds": seeds} for m in momenta]
        return pd.DataFrame(rows)

    assert protocol_numbers(SimpleNamespace(tune_points=points((0.9,), 1))) == {
        "protocol/trials": "2", "protocol/tune_seeds": "1"}  # lr protocol: momentum fixed
    assert protocol_numbers(SimpleNamespace(tune_points=points((0.5, 0.9), 3))) == {
        "protocol/trials": "2", "protocol/tune_seeds": "3", "protocol/joint": "joint"}
    assert protocol_numbers(SimpleNamespace(tune_points=points((), 1).iloc[:0])) == {}


def test_occupied_hours_count_overlapping_runs_once_and_pauses_not_at_all():
    runs = pd.DataFrame({"started_at": ["2026-01-01T00:00:00+00:00", "2026-01-01T00:30:00+00:00",
                                        "2026-01-01T02:00:00+00:00", None],
                         "finished_at": ["2026-01-01T01:00:00+00:00", "2026-01-01T01:30:00+00:00",
                                         "2026-01-01T02:15:00+00:00", None]})
    assert tables.occupied_hours(runs) == pytest.approx(1.75)  # 0:00-1:30 (two side by side), 2:00-2:15


# --- the command, its files, and the paper ---------------------------------------------------------

def test_analyze_writes_every_output_and_tracks_a_changed_result(tmp_path):
    root = make_store(tmp_path / "r", FAST_NESTEROV)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- generated:results:start -->\nSTALE-BLOCK\n"
                      "<!-- generated:results:end -->\ntail\n")
    out = tmp_path / "gen"
    proc = analyze("--results", str(root), "--profile", "quick", "--out", str(out), "--readme",
                   str(readme))
    assert proc.returncode == 0, proc.stderr
    for name in ("final", "tuned", "ttt", "claims", "claims_detail", "sensitivity", "speed_levels", "time"):
        assert (out / "tables" / f"{name}.tex").read_text().count("\\toprule") == 1
        assert (out / "tables" / f"{name}.md").exists()
    for name in ("curves", "sensitivity", "ttt", "profile", "forest", "speedup_curve", "tunability"):
        assert (out / "figures" / f"{name}.pdf").stat().st_size > 1000
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    text = readme.read_text()
    assert "STALE-BLOCK" not in text and text.startswith("# x\n") and text.endswith("tail\n")
    assert "**supported**" in text and (out / "tables" / "final.md").read_text() in text
    numbers = (out / "numbers.tex").read_text()
    assert "\\nbdef{claim/faster_than_gd/verdict}{supported}" in numbers
    assert "\\nbdef{final/mnist_logreg/nesterov}{95.00 $\\pm$ 0.00}" in numbers

    # one number changed in one committed result -> that number, and only what depends on it, changes
    run_dir = next((root / "runs/quick/final/mnist_logreg/nesterov").glob("*/seed=100"))
    rec = json.loads((run_dir / "run.json").read_text())
    rec["final"]["test/accuracy"] = 0.5
    (run_dir / "run.json").write_text(json.dumps(rec))
    assert analyze("--results", str(root), "--profile", "quick", "--out", str(out),
                   "--no-readme").returncode == 0
    changed = (out / "numbers.tex").read_text()
    diff = set(changed.splitlines()) ^ set(numbers.splitlines())
    assert {line.split("}")[0] for line in diff} == {"\\nbdef{final/mnist_logreg/nesterov"}
    assert "80.00" in (out / "tables" / "final.tex").read_text()  # (0.5 + 0.95 + 0.95) / 3


def test_failed_analysis_leaves_previous_outputs_alone(tmp_path):
    out = tmp_path / "gen"
    (out / "tables").mkdir(parents=True)
    (out / "numbers.tex").write_text("previous")
    root = make_store(tmp_path / "r", ALL_EQUAL, seeds=(100,))
    proc = analyze("--results", str(root), "--out", str(out), "--profile", "paper", "--no-readme")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
    assert (out / "numbers.tex").read_text() == "previous"
    proc = analyze("--results", str(tmp_path / "nowhere"), "--out", str(out), "--no-readme")
    assert proc.returncode == 2 and "no run store" in proc.stderr
    assert not list(tmp_path.glob(".gen.*"))  # no temporary folder left behind


def test_tex_escapes_and_typesets_numbers():
    assert tex("mnist_logreg 95% 1.5e-05 ± 2 ≤ 3") == \
        "mnist\\_logreg 95\\% $1.5\\times10^{-5}$ $\\pm$ 2 $\\leq$ 3"


COMMITTED = REPO / "results" / "runs"


@pytest.mark.slow  # a whole analysis of the committed profile (~40 s): make test-all and CI
@pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed results")
def test_committed_tables_and_numbers_are_generated_from_committed_results(tmp_path):
    """paper/generated and the README's block are what the analysis makes of results/: none is edited
    by hand, and none is stale."""
    out = tmp_path / "paper" / "generated"  # the same place relative to the README as in the repo
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    proc = analyze("--results", str(REPO / "results"), "--out", str(out), "--readme", str(readme))
    assert proc.returncode == 0, proc.stderr
    committed = REPO / "paper" / "generated"
    for f in [out / "numbers.tex", *sorted((out / "tables").iterdir())]:
        rel = f.relative_to(out)
        assert f.read_text() == (committed / rel).read_text(), f"{rel} is stale: run make paper"
    assert readme.read_text() == (REPO / "README.md").read_text(), "README results block is stale: make paper"
    assert sorted(p.name for p in (out / "figures").iterdir()) == \
        sorted(p.name for p in (committed / "figures").iterdir())


def test_a_reports_pdf_gets_the_papers_whole_text_beside_its_generated_files(tmp_path, monkeypatch):
    """typeset for another profile's report copies main.tex with the sections it inputs and its
    bibliography (only main.tex was copied once, and every report's PDF failed on a missing section)."""
    dest = destinations(tmp_path, "smoke")
    dest.out.mkdir(parents=True)
    monkeypatch.setattr("nesterov_bench.analyze.outputs.shutil.which", lambda _: None)
    assert typeset(dest, tmp_path / "pdf.log").startswith("no PDF: LaTeX is not installed")
    report = tmp_path / "reports" / "smoke"
    inputs = {ln.split("{")[1].split("}")[0] for ln in (report / "main.tex").read_text().splitlines()
              if ln.startswith("\\input{sections/")}
    assert inputs and all((report / f"{name}.tex").is_file() for name in inputs)
    assert (report / "refs.bib").read_text() == (REPO / "paper" / "refs.bib").read_text()


def latexmk(paper: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-quiet",
                           "main.tex"], cwd=paper, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two LaTeX passes and BibTeX (~20 s): make test-all and CI
@pytest.mark.skipif(shutil.which("latexmk") is None, reason="no LaTeX here (CI builds it via make paper)")
def test_the_committed_paper_typesets_cleanly(tmp_path):
    """The paper from the committed generated files: no overfull line, no float too large for its page,
    no undefined reference or citation."""
    paper = copy_paper_sources(tmp_path / "paper")
    shutil.copytree(REPO / "paper" / "generated", paper / "generated")
    assert latexmk(paper).returncode == 0
    log = (paper / "main.log").read_text(errors="replace")
    for bad in ("Overfull \\hbox", "Overfull \\vbox", "Float too large", "undefined", "Citation"):
        assert bad not in log, f"{bad} in the LaTeX log"
    assert "Warning--" not in (paper / "main.blg").read_text()


@pytest.mark.slow  # analysis, then two LaTeX builds (~18 s): make test-all and CI
@pytest.mark.skipif(shutil.which("latexmk") is None, reason="no LaTeX here (CI builds it via make paper)")
def test_paper_builds_and_refuses_an_unknown_number(tmp_path):
    root = make_store(tmp_path / "r", FAST_NESTEROV)
    paper = copy_paper_sources(tmp_path / "paper")
    assert analyze("--results", str(root), "--profile", "quick", "--out", str(paper / "generated"),
                   "--no-readme").returncode == 0

    def build() -> subprocess.CompletedProcess:
        return latexmk(paper)

    assert build().returncode == 0 and (paper / "main.pdf").stat().st_size > 50_000
    tex_src = (paper / "main.tex").read_text().replace("\\nb{meta/runs}", "\\nb{meta/no_such_number}")
    (paper / "main.tex").write_text(tex_src)
    (paper / "main.pdf").unlink()
    assert build().returncode != 0
    assert "no generated number" in (paper / "main.log").read_text()


# --- theory --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_textbook_settings_give_the_textbook_rates(kappa):
    eig = theory.spectrum(1.0, kappa, 50)
    for method in theory.CLASSIC_FOR:
        lr, mom = (theory.classic(k, method, 1.0, kappa) for k in ("lr", "momentum"))
        predicted = theory.classic_rate(method, kappa)
        assert theory.rate(method, eig, lr, mom) == pytest.approx(predicted, rel=1e-6)


def test_fitted_rate_recovers_a_geometric_rate():
    k = np.arange(200)
    assert quadratic.fitted_rate(k, 5.0 * 0.9 ** (2 * k)) == pytest.approx(0.9, rel=1e-9)
