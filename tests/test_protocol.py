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
from nesterov_bench.config import tuned_trial
from nesterov_bench.errors import ConfigError
from nesterov_bench.select import choose, select

from .conftest import DATA, REPO, cli

CONF = REPO / "conf"


SPACE = {"lr": [0.001, 0.01, 0.1, 1.0], "momentum": [0.5, 0.9]}


def trials(*rows) -> dict[int, dict]:
    """``select.summarize``'s output for rows (trial, [scores per seed] or None for diverged, steps)."""
    from nesterov_bench.config import space_point
    return {t: {"point": space_point(SPACE, t), "seeds": [0, 1, 2], "stable": scores is not None,
                "score": sum(scores) / len(scores) if scores else -math.inf, "steps": steps}
            for t, scores, steps in rows}


def test_selection_by_final_takes_the_best_mean_over_seeds():
    t = trials((1, [0.90, 0.90, 0.90], 50), (2, [0.99, 0.80, 0.80], 40), (5, [0.91, 0.91, 0.88], 60))
    c = choose(t, SPACE, "final")
    assert c["trial"] == 1 and c["lr"] == 0.01 and c["momentum"] == 0.5  # mean 0.90 beats 0.863 and 0.9
    assert select_rule_is_stated()


def select_rule_is_stated() -> bool:
    from nesterov_bench import select as module
    return "mean over its seeds" in module.__doc__ and "ranks last" in module.__doc__


def test_selection_ranks_a_trial_with_a_diverged_seed_last_and_breaks_ties_conservatively():
    t = trials((3, None, math.inf), (1, [0.5, 0.5, 0.5], 70), (2, [0.5, 0.5, 0.5], 70), (5, [0.5] * 3, 70))
    assert choose(t, SPACE, "final")["trial"] == 1  # the tie goes to the smaller lr, then momentum
    assert choose(trials((0, None, math.inf)), SPACE, "final") is None  # all diverged: no choice


def test_selection_by_speed_takes_the_fewest_steps_among_trials_that_always_reach_the_target():
    t = trials((1, [0.95] * 3, 300), (2, [0.90] * 3, 100), (6, [0.99] * 3, math.inf))
    assert choose(t, SPACE, "speed")["trial"] == 2 and choose(t, SPACE, "final")["trial"] == 6
    assert choose(trials((1, [0.9] * 3, math.inf)), SPACE, "speed") is None


def test_selection_flags_an_edge_of_the_space_and_a_diverged_neighbour():
    edge = choose(trials((0, [0.9] * 3, 10), (1, [0.5] * 3, 10)), SPACE, "final")
    assert edge["at_edge"] == ["lr", "momentum"] and not edge["next_to_diverged"]
    # trial 5 = (lr 0.01, momentum 0.9): its lr neighbour 6 diverged, its momentum neighbour is 1
    cliff = choose(trials((5, [0.9] * 3, 10), (6, None, math.inf), (1, [0.5] * 3, 10)), SPACE, "final")
    assert cliff["next_to_diverged"] and cliff["at_edge"] == ["momentum"]


@pytest.mark.parametrize("module", ["train", "members"])
def test_final_stage_refuses_to_run_without_tuned_rates(tmp_path, module):
    proc = cli("-m", "experiment=final", "profile=smoke", f"results_dir={tmp_path}", *DATA, module=module)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nesterov_bench.select" in lines[0], proc.stderr
    with pytest.raises(ConfigError, match="missing"):
        tuned_trial(str(tmp_path), "smoke", "linreg", "gd")


def finished_records(root: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text())
            for p in root.glob("runs/**/run.json") if store.is_finished(p.parent)}


def test_tune_select_final_on_one_task(tmp_path):
    """The protocol as make reproduce runs it (members -m; train -m makes the same runs: the sweeps
    below and tests/test_population.py)."""
    args = ["profile=smoke", f"results_dir={tmp_path}", "task=linreg", *DATA]
    assert cli("-m", "experiment=tune", *args, module="members").returncode == 0
    tune = finished_records(tmp_path)
    assert len(tune) == 4 * 4 * 2  # every optimizer x its 4 trials (the smoke protocol) x 2 seeds
    assert {r["config"]["seed"] for r in tune.values()} == {0, 1}
    out, choices, _ = select(tmp_path, "smoke")
    assert set(choices["linreg"]) == {"gd", "momentum", "nesterov", "adam"}
    for opt, c in choices["linreg"].items():  # the rule, recomputed from the files by hand
        runs = [r for r in tune.values() if r["config"]["optimizer"]["name"] == opt]
        by_trial = {}
        for r in runs:
            by_trial.setdefault(r["config"]["trial"], []).append(r)
        ok = {t: rs for t, rs in by_trial.items() if all(r["status"] == "completed" for r in rs)}
        best = min(ok, key=lambda t: (sum(r["final"]["val/loss"] for r in ok[t]) / len(ok[t]),
                                      ok[t][0]["config"]["optimizer"]["lr"]))
        assert c["final"]["trial"] == best
    proc = cli("-m", "experiment=final", *args, module="members")
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = {k: r for k, r in finished_records(tmp_path).items() if "/final/" in k}
    assert len(final) == 4 * 2
    for r in final.values():
        chosen = choices["linreg"][r["config"]["optimizer"]["name"]]["final"]
        assert r["config"]["trial"] == chosen["trial"] and r["config"]["optimizer"]["lr"] == chosen["lr"]
        if "momentum" in chosen:  # the jointly tuned momentum is the final runs' momentum
            assert r["config"]["optimizer"]["momentum"] == chosen["momentum"]
        assert r["config"]["seed"] in (100, 101)  # distinct from the tuning seeds


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
    assert 8 <= len(before) < 32, "the sweep must be killed half way"
    rerun = _sweep(tmp_path)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out[-2000:]
    after = finished_records(tmp_path)
    assert len(after) == 32
    for key, rec in before.items():  # nothing completed was redone or lost
        assert after[key]["started_at"] == rec["started_at"]
    assert out.count("completed: ") + out.count("diverged: ") == 32 - len(before)


@pytest.mark.slow
def test_two_launches_of_one_sweep_do_not_collide(tmp_path):
    a, b = _sweep(tmp_path), _sweep(tmp_path)
    outs = [p.communicate(timeout=600)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    runs = finished_records(tmp_path)
    assert len(runs) == 32
    trained = sum(o.count("completed: ") + o.count("diverged: ") for o in outs)
    assert trained == 32  # every run trained by exactly one of the two
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
    # the width sweep: each width its own study, tuned by the main rule, then its final seeds
    for width in (16, 64):
        choices = json.loads((results / "tuned" / f"smoke-width{width}.json").read_text())["choices"]
        assert set(choices["mnist_mlp"]) == {"gd", "momentum", "nesterov"}
        assert sum(k.startswith(f"runs/smoke-width{width}/final/") for k in runs) == 3 * 2


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


# --- the tuning budget: declared in conf/protocol/ and conf/space/, equal for every optimizer ---------------

COMPARED = ("gd", "momentum", "nesterov", "adam")


@pytest.mark.parametrize("protocol", ["lr", "joint", "smoke"])
def test_every_optimizer_gets_the_protocols_number_of_trials(protocol):
    from nesterov_bench.config import compose, group_options, resolve
    assert protocol in group_options("protocol")
    for opt in COMPARED:
        cfg = resolve(compose(["experiment=tune", f"protocol={protocol}", f"optimizer={opt}"])).cfg
        assert math.prod(len(v) for v in cfg["space"].values()) == cfg["sweep"]["trials"], opt


def test_the_joint_protocol_tunes_every_hyperparameter_and_does_not_handicap_gd():
    from nesterov_bench.config import compose, resolve
    spaces = {opt: resolve(compose(["experiment=tune", "profile=paper", f"optimizer={opt}"])).cfg["space"]
              for opt in COMPARED}
    assert set(spaces["momentum"]) == set(spaces["nesterov"]) == {"lr", "momentum"}
    assert set(spaces["adam"]) == {"lr", "beta1"} and set(spaces["gd"]) == {"lr"}
    gd = spaces["gd"]["lr"]
    assert max(b / a for a, b in zip(gd, gd[1:], strict=False)) <= math.sqrt(2)
    cfg = resolve(compose(["experiment=tune", "profile=paper"])).cfg
    assert len(list(range(*map(int, cfg["sweep"]["tune_seeds"][6:-1].split(","))))) >= 3


@pytest.mark.parametrize(("profile", "protocol"), [("paper", "joint"), ("quick", "lr"), ("smoke", "smoke")])
def test_each_profile_names_its_protocol(profile, protocol):
    from nesterov_bench.config import compose
    assert compose([f"profile={profile}"]).sweep.protocol == protocol
