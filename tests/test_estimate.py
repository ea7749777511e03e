"""scripts/estimate_paper_time.py: its plumbing, not its speeds (no timed unit tests). The jobs it projects
are the jobs reproduce launches; the steps and evaluations it projects are the loop's (test_train.py,
``loop.Budget``)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from nesterov_bench.reproduce import plan

from .conftest import CPU, DATA, REPO

SCRIPT = REPO / "scripts" / "estimate_paper_time.py"


def _module():
    spec = importlib.util.spec_from_file_location("estimate_paper_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("profile", ["smoke", pytest.param("paper", marks=pytest.mark.slow)])
def test_the_projected_jobs_hold_every_run_of_every_stage(tmp_path, profile):
    est = _module()
    for st in plan(profile, str(tmp_path), None, overrides=CPU):
        if not st.overrides:
            continue
        jobs = est.jobs_of(st, str(tmp_path))
        assert sum(j.runs for j in jobs) == st.runs, st.name
        together = {t for module, tasks in st.modules if module == "members" for t in tasks}
        assert {j.task for j in jobs if j.vectorized} == together, st.name
        for j in jobs:  # a population's members share what run_all requires them to share
            assert all(m[key] == j.members[0][key] for m in j.members for key in ("task", "train", "data"))


def test_a_task_override_reaches_the_tasks_that_have_the_key(tmp_path):
    est = _module()
    (tune,) = [st for st in plan("smoke", str(tmp_path), None, overrides=CPU) if st.name == "tune"]
    jobs = est.jobs_of(tune, str(tmp_path), ["task.memory_format=channels_last"])
    layouts = {j.task: j.cfg["task"].get("memory_format", "absent") for j in jobs}
    assert layouts["mnist_cnn"] == layouts["fmnist_cnn"] == "channels_last"
    assert layouts["linreg"] == layouts["mnist_mlp"] == "absent"
    assert all(m["task"] == j.cfg["task"] for j in jobs for m in j.members)


def test_lay_out_hands_jobs_to_the_first_free_worker():
    est = _module()
    assert est.lay_out([3, 1, 1, 1], 2) == 3
    assert est.lay_out([1, 1, 1, 3], 2) == 4
    assert est.lay_out([2, 2], 1) == 4
    assert est.lay_out([], 2) == 0


@pytest.mark.slow
@pytest.mark.xdist_group("smoke")
def test_projection_matches_the_runs_and_populations_a_smoke_reproduce_made(smoke, tmp_path):
    """Against the smoke reproduce (from an empty store): per stage and task, the runs and the jobs (a
    vectorized population is one) the projection counts are those the store holds."""
    stages = "tune,final,noise_floor,stability_map,width_tune"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--profile", "smoke", "--results", str(smoke.results),
                           "--check", "--stages", stages, "--out", str(tmp_path), *CPU, *DATA],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (out,) = tmp_path.glob("estimate-smoke-*.json")
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {r["stage"] for r in rows} == set(stages.split(","))
    for r in rows:
        assert (r["measured_runs"], r["measured_jobs"]) == (r["runs"], r["jobs"]), r
        assert r["projected_min"] > 0 and r["measured_min"] > 0
    assert 0 < report["parallel_hours"] < report["serial_hours"]
    assert "projected" in proc.stdout and "measured" in proc.stdout
