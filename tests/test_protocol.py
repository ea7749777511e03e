"""The benchmark protocol: the selection rule, sweeps through Hydra's launchers, resume and concurrency."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nesterov_bench import store
from nesterov_bench.config import tuned_lr
from nesterov_bench.errors import ConfigError
from nesterov_bench.select import choose, select

from .conftest import DATA, REPO, cli

CONF = REPO / "conf"


def record(lr, value, status="completed", mode="max"):
    return {"status": status, "final": {"val/accuracy": value},
            "selection": {"split": "val", "metric": "accuracy", "mode": mode},
            "config": {"optimizer": {"lr": lr}, "lr_grid": [0.001, 0.01, 0.1, 1.0]}}


def test_selection_takes_best_validation_value():
    c = choose([record(0.001, 0.90), record(0.01, 0.95), record(0.1, 0.93), record(1.0, 0.2)])
    assert c["lr"] == 0.01 and c["value"] == 0.95 and not c["at_edge"] and c["missing"] == []


def test_selection_ranks_diverged_last_and_breaks_ties_toward_smaller_lr():
    c = choose([record(0.001, 0.5), record(0.01, 0.9), record(0.1, 0.9), record(1.0, 0.99, "diverged")])
    assert c["lr"] == 0.01
    nan = choose([record(0.001, 0.5), record(0.01, math.nan), record(0.1, 0.4), record(1.0, 0.3)])
    assert nan["lr"] == 0.001
    low = choose([record(0.001, 0.2, mode="min"), record(0.01, 0.1, mode="min"),
                  record(0.1, 0.1, mode="min"), record(1.0, 0.0, "failed", mode="min")])
    assert low["lr"] == 0.01


def test_selection_flags_the_grid_edge_and_missing_points():
    c = choose([record(0.1, 0.5), record(1.0, 0.9)])
    assert c["at_edge"] and c["missing"] == [0.001, 0.01]
    assert choose([record(0.001, 0.5, "diverged"), record(0.01, 0.5, "diverged")])["all_diverged"]


@pytest.mark.parametrize("module", ["train", "members"])
def test_final_stage_refuses_to_run_without_tuned_rates(tmp_path, module):
    proc = cli("-m", "experiment=final", "profile=smoke", f"results_dir={tmp_path}", *DATA, module=module)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nesterov_bench.select" in lines[0], proc.stderr
    with pytest.raises(ConfigError, match="missing"):
        tuned_lr(str(tmp_path), "smoke", "linreg", "gd")


def finished_records(root: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text())
            for p in root.glob("runs/**/run.json") if store.is_finished(p.parent)}


def test_tune_select_final_on_one_task(tmp_path):
    """The protocol as make reproduce runs it (members -m; train -m makes the same runs: the sweeps
    below and tests/test_population.py)."""
    args = ["profile=smoke", f"results_dir={tmp_path}", "task=linreg", *DATA]
    assert cli("-m", "experiment=tune", *args, module="members").returncode == 0
    tune = finished_records(tmp_path)
    assert len(tune) == 4 * 10  # every optimizer x its 10-point grid, one seed
    assert {r["config"]["seed"] for r in tune.values()} == {0}
    out, choices, _ = select(tmp_path, "smoke")
    assert set(choices["linreg"]) == {"gd", "momentum", "nesterov", "adam"}
    for opt, c in choices["linreg"].items():  # the rule, recomputed from the files by hand
        runs = [r for r in tune.values() if r["config"]["optimizer"]["name"] == opt]
        ok = [r for r in runs if r["status"] == "completed"]
        best = min(ok, key=lambda r: (r["final"]["val/loss"], r["config"]["optimizer"]["lr"]))
        assert c["lr"] == best["config"]["optimizer"]["lr"]
    proc = cli("-m", "experiment=final", *args, module="members")
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = {k: r for k, r in finished_records(tmp_path).items() if "/final/" in k}
    assert len(final) == 4 * 2
    for r in final.values():
        assert r["config"]["optimizer"]["lr"] == choices["linreg"][r["config"]["optimizer"]["name"]]["lr"]
        assert r["config"]["seed"] in (100, 101)  # distinct from the tuning seed


def _sweep(tmp_path: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nesterov_bench.train", "-m", "experiment=tune", "profile=smoke",
           f"results_dir={tmp_path}", "task=linreg", *DATA, *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "WANDB_MODE": "disabled"})


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_completes_without_redoing(tmp_path):
    proc = _sweep(tmp_path)
    deadline = time.time() + 120
    while len(finished_records(tmp_path)) < 10 and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished_records(tmp_path)
    assert 10 <= len(before) < 40, "the sweep must be killed half way"
    rerun = _sweep(tmp_path)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out[-2000:]
    after = finished_records(tmp_path)
    assert len(after) == 40
    for key, rec in before.items():  # nothing completed was redone or lost
        assert after[key]["started_at"] == rec["started_at"]
    assert out.count("completed: ") + out.count("diverged: ") == 40 - len(before)


@pytest.mark.slow
def test_two_launches_of_one_sweep_do_not_collide(tmp_path):
    a, b = _sweep(tmp_path), _sweep(tmp_path)
    outs = [p.communicate(timeout=600)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    runs = finished_records(tmp_path)
    assert len(runs) == 40
    trained = sum(o.count("completed: ") + o.count("diverged: ") for o in outs)
    assert trained == 40  # every run trained by exactly one of the two
    for key in runs:
        files = {p.name for p in (tmp_path / key).iterdir()}
        assert files == {"run.json", "metrics.parquet", ".lock"}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local", "submitit_local"])
def test_launchers_run_a_sweep(tmp_path, launcher):
    proc = cli("-m", "task=linreg", "optimizer=gd,nesterov", "train.epochs=1", f"results_dir={tmp_path}",
               f"hydra/launcher={launcher}", "wandb.mode=disabled", *DATA)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(finished_records(tmp_path)) == 2


@pytest.mark.slow
@pytest.mark.xdist_group("smoke")
def test_reproduce_smoke_profile_runs_every_stage(smoke):
    proc, results = smoke.proc, smoke.results
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "runs in all" in proc.stdout
    tuned = json.loads((results / "tuned" / "smoke.json").read_text())["choices"]
    tasks = {p.stem for p in (CONF / "task").glob("*.yaml")}
    assert set(tuned) == tasks and all(len(v) == 4 for v in tuned.values())
    runs = finished_records(results)
    final = [k for k in runs if k.startswith("runs/smoke/final/")]
    assert len(final) == len(tasks) * 4 * 2
    assert any(k.startswith("runs/smoke-seed000_linreg/") for k in runs)
    assert sum(k.startswith("runs/smoke-seed002_mnist/") for k in runs) == 2 * 3 * 2
    assert sum(k.startswith("runs/smoke-quadratic_theory/") for k in runs) == 3 * 3 * 2
    assert sum(k.startswith("runs/smoke-noise_floor/") for k in runs) == 2 * 3 * 3 * 2


@pytest.mark.slow
@pytest.mark.xdist_group("smoke")
def test_reproduce_smoke_writes_its_report_and_leaves_the_paper_alone(smoke):
    """smoke is not the paper's profile: its analysis goes to <results>/reports/smoke/ and leaves the
    README and paper/generated of the folder it ran from alone."""
    gen = smoke.results / "reports" / "smoke" / "generated"
    assert smoke.proc.returncode == 0 and f"report in {gen.parent}/" in smoke.proc.stdout
    assert (smoke.work / "README.md").read_text() == smoke.readme and (gen.parent / "report.md").exists()
    assert [p.name for p in (smoke.work / "paper" / "generated").iterdir()] == ["numbers.tex"]
    assert (smoke.work / "paper" / "generated" / "numbers.tex").read_text() == "committed"


@pytest.mark.slow
@pytest.mark.xdist_group("smoke")
def test_reproduce_smoke_analysis_covers_every_table_and_figure(smoke):
    gen = smoke.results / "reports" / "smoke" / "generated"
    assert smoke.proc.returncode == 0
    for name in ("final", "tuned", "ttt", "claims", "sensitivity", "theory", "recipes", "noise_floor"):
        assert (gen / "tables" / f"{name}.tex").exists(), name
    for name in ("curves", "sensitivity", "ttt", "profile", "quadratic", "noise_floor"):
        assert (gen / "figures" / f"{name}.png").exists(), name
    numbers = (gen / "numbers.tex").read_text()
    assert "\\nbdef{meta/profile}{smoke}" in numbers and "\\nbdef{final/fmnist_cnn/nesterov}" in numbers
    # CIFAR-10 ran on generated tensors: a code-path check that never enters a table
    assert "cifar10" not in (gen / "tables" / "final.tex").read_text()


def test_reproduce_sends_vectorized_tasks_through_members_and_the_rest_through_train(tmp_path):
    """On a CPU (CI), auto vectorizes linreg, quadratic and mnist_logreg (make bench); the other tasks
    stay one job per run, so a launcher can spread them."""
    from nesterov_bench.reproduce import plan

    stages = {st.name: st for st in plan("quick", str(tmp_path), None)}
    assert stages["tune"].modules == [("members", ["linreg", "quadratic", "mnist_logreg"]),
                                      ("train", ["mnist_mlp", "mnist_cnn", "fmnist_cnn"])]
    assert stages["quadratic_theory"].modules == [("members", ["quadratic"])]
    assert stages["select"].modules == []
    everything = ["linreg", "quadratic", "mnist_logreg", "mnist_mlp", "mnist_cnn", "fmnist_cnn"]
    assert plan("quick", str(tmp_path), None, "false")[0].modules == [("train", everything)]
    assert plan("quick", str(tmp_path), None, "true")[0].modules == [("members", everything)]
