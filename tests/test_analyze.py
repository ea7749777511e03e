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

from nesterov_bench import store, theory
from nesterov_bench.analyze import claims, measures, quadratic
from nesterov_bench.analyze.load import load
from nesterov_bench.analyze.stats import paired, summarize, welch
from nesterov_bench.analyze.study import Study
from nesterov_bench.analyze.tables import tex

from .conftest import REPO

OPTS = ["gd", "momentum", "nesterov", "adam"]
TASKS = {"mnist_logreg": ("val", "accuracy", "max"), "linreg": ("val", "loss", "min")}


def write_run(root: Path, *, task: str, opt: str, lr: float, seed: int, stage: str, tau: float,
              experiment: str = "quick", status: str = "completed", steps: int = 1000) -> Path:
    """One run in the store's format whose validation curve approaches its limit with time constant tau
    steps (smaller = faster): accuracy 0.95 (1 - e^(-t/tau)), or loss 400 + 4000 e^(-t/tau)."""
    split, metric, mode = TASKS[task]
    cfg = {"results_dir": str(root), "experiment_name": experiment, "stage": stage, "seed": seed,
           "task": {"name": task}, "train": {"epoch_decay": 0.0}, "data": {"generated": False},
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
    for task in TASKS:
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


def test_welch_interval_matches_scipy():
    a, b = [1.0, 2.0, 3.5], [0.0, 0.4, 0.1, 0.2]
    s = welch(a, b)
    res = sps.ttest_ind(a, b, equal_var=False)
    lo, hi = res.confidence_interval(0.95)
    assert (s.low, s.high) == (pytest.approx(lo), pytest.approx(hi))


def test_time_to_target_is_the_first_evaluation_reaching_it():
    m = pd.DataFrame({"step": [0, 10, 20, 30], "split": "val", "metric": "accuracy",
                      "value": [0.1, 0.5, 0.91, 0.95], "time_s": [0, 1, 2, 3]})
    assert measures.time_to_target(m, {"metric": "val/accuracy", "value": 0.9}) == (20.0, 2.0)
    assert all(map(math.isnan, measures.time_to_target(m, {"metric": "val/accuracy", "value": 0.99})))


def test_good_range_width_in_decades():
    width, lo, hi = measures.good_range([0.001, 0.01, 0.1, 1.0], [0.80, 0.95, 0.945, -math.inf],
                                        "val/accuracy", {"relative": 0.01})
    assert (width, lo, hi) == (pytest.approx(1.0), 0.01, 0.1)


# --- the loader ----------------------------------------------------------------------------------

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


# --- claims and the verdict rule -----------------------------------------------------------------

def test_verdict_rule():
    rule = {"supported_share": 0.66, "not_supported_share": 0.34}
    assert claims.verdict([1, 1, 1], rule) == claims.SUPPORTED
    assert claims.verdict([1, 1, 0], rule) == claims.SUPPORTED
    assert claims.verdict([1, 1, -1], rule) == claims.MIXED  # one task against blocks "supported"
    assert claims.verdict([1, 0, 0], rule) == claims.NOT_SUPPORTED
    assert claims.verdict([-1, -1, -1], rule) == claims.NOT_SUPPORTED
    assert claims.verdict([], rule) == claims.NO_DATA


def verdicts(root: Path) -> dict[str, str]:
    return {c.key: c.verdict for c in claims.evaluate(Study("quick", load(root)))}


def test_claims_supported_when_nesterov_is_faster_everywhere(tmp_path):
    v = verdicts(make_store(tmp_path / "r", FAST_NESTEROV))
    assert v["faster_than_gd"] == v["faster_than_momentum"] == v["faster_early"] == claims.SUPPORTED


def test_claims_not_supported_when_all_optimizers_are_alike(tmp_path):
    v = verdicts(make_store(tmp_path / "r", ALL_EQUAL))
    assert v["faster_than_gd"] == v["faster_than_momentum"] == claims.NOT_SUPPORTED
    assert v["less_sensitive"] == claims.NOT_SUPPORTED
    assert v["larger_gains_small"] == claims.NO_DATA  # two tasks cannot compare small with large models


def test_speedup_is_the_paired_log2_ratio_of_steps_to_target(tmp_path):
    study = Study("quick", load(make_store(tmp_path / "r", FAST_NESTEROV)))
    effects = {e.task: e.summary for e in claims._speedup(study, "gd")}
    p = study.per_run
    for task, s in effects.items():
        gd = p[(p.task == task) & (p.optimizer == "gd")].set_index("seed").ttt_steps_censored
        nest = p[(p.task == task) & (p.optimizer == "nesterov")].set_index("seed").ttt_steps_censored
        assert s.mean == pytest.approx(np.mean(np.log2(gd / nest)))
        assert s.mean > 0.8  # tau 200 vs 80: about 2.5x fewer steps


# --- the command, its files, and the paper ---------------------------------------------------------

def test_analyze_writes_every_output_and_tracks_a_changed_result(tmp_path):
    root = make_store(tmp_path / "r", FAST_NESTEROV)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- generated:results:start -->\nSTALE-BLOCK\n"
                      "<!-- generated:results:end -->\ntail\n")
    out = tmp_path / "gen"
    proc = analyze("--results", str(root), "--out", str(out), "--readme", str(readme))
    assert proc.returncode == 0, proc.stderr
    for name in ("final", "tuned", "ttt", "claims", "claims_detail", "sensitivity"):
        assert (out / "tables" / f"{name}.tex").read_text().count("\\toprule") == 1
        assert (out / "tables" / f"{name}.md").exists()
    for name in ("curves", "sensitivity", "ttt", "profile"):
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
    assert analyze("--results", str(root), "--out", str(out), "--no-readme").returncode == 0
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


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="no LaTeX here (CI builds it via make paper)")
def test_paper_builds_and_refuses_an_unknown_number(tmp_path):
    root = make_store(tmp_path / "r", FAST_NESTEROV)
    paper = tmp_path / "paper"
    paper.mkdir()
    shutil.copy(REPO / "paper" / "main.tex", paper / "main.tex")
    assert analyze("--results", str(root), "--out", str(paper / "generated"), "--no-readme").returncode == 0

    def build() -> subprocess.CompletedProcess:
        return subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-quiet",
                               "main.tex"], cwd=paper, capture_output=True, text=True, timeout=300)

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
