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


def test_a_tasks_override_reaches_the_named_tasks_only(tmp_path):
    """TASKS:KEY=VALUE, a lever no single override can set: bf16 for the float32 tasks, while the smoke
    profile's quadratic recipe runs in float64 (where train.precision=bf16 is refused)."""
    est = _module()
    bf16 = "mnist_mlp,mnist_cnn:train.precision=bf16"
    for st in plan("smoke", str(tmp_path), None, overrides=CPU):
        if not st.overrides:
            continue
        for j in est.jobs_of(st, str(tmp_path), [bf16]):
            want = "bf16" if j.task in ("mnist_mlp", "mnist_cnn") else None
            assert j.cfg["train"].get("precision") == want, (st.name, j.task)
            assert all(m["train"] == j.cfg["train"] for m in j.members)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--profile", "smoke", "--out", str(tmp_path),
                           "mnist_mpl:train.precision=bf16", *CPU, *DATA], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: unknown task 'mnist_mpl' in a TASKS:KEY=VALUE override")
    assert not list(tmp_path.glob("estimate-*"))


def test_lay_out_hands_jobs_to_the_first_free_worker():
    est = _module()
    assert est.lay_out([3, 1, 1, 1], 2) == 3
    assert est.lay_out([1, 1, 1, 3], 2) == 4
    assert est.lay_out([2, 2], 1) == 4
    assert est.lay_out([], 2) == 0


def test_a_timed_reproduce_is_a_line_against_the_goal(tmp_path):
    """reproduce's timing record (two sittings: one cut short by a kill, one resumed to the end) becomes the
    README's "Timed" line: hours summed over sittings, pauses left out, minutes per stage summed."""
    est = _module()
    where = {"launcher": "local", "cpu": "CPU X", "cpu_count": 2, "cpu_capability": "AVX2",
             "git_commit": "abcdef0123", "git_dirty": False, "hostname": "h", "torch": "2"}
    record = {"profile": "paper", "sittings": [
        {**where, "started_at": "2026-11-30T10:00:00+00:00", "last_seen_at": "2026-11-30T11:00:00+00:00",
         "outcome": "running", "finished_before": 0, "stages": [{"stage": "tune", "seconds": 1800.0}],
         "running": {"stage": "final", "since": "2026-11-30T10:50:00+00:00"}},  # killed 10 min into final
        {**where, "started_at": "2026-12-01T09:00:00+00:00", "last_seen_at": "2026-12-01T09:30:00+00:00",
         "outcome": "done", "finished_before": 900,  # tune again: its finished runs listed and skipped
         "stages": [{"stage": "tune", "seconds": 300.0}, {"stage": "final", "seconds": 1200.0}]}]}
    line = est.timed(record)
    assert "from an empty store" in line and "**1.50 h**, 0.75x its goal of 2 h (done; 2 sittings" in line
    assert "pauses not counted, 5 min of them resuming" in line  # tune's second pass, not final's
    assert "CPU X (2 cores, AVX2)" in line and "commit abcdef0" in line
    assert line.endswith("Minutes per stage: tune 35, final 30.")
    assert est.timed({**record, "profile": "smoke"}) is None  # no goal
    cut = est.timed({**record, "sittings": record["sittings"][:1]})
    assert "**1.00 h so far** (goal 2 h)" in cut
    assert "its last sitting running, or killed at 2026-11-30 11:00 UTC" in cut
    (tmp_path / "bench").mkdir()
    (tmp_path / "timing").mkdir()
    (tmp_path / "timing" / "paper.json").write_text(json.dumps(record))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- generated:estimate:start -->\nold\n<!-- generated:estimate:end -->\n")
    (tmp_path / "bench" / "compare-paper.json").write_text(json.dumps({
        "a": "results", "b": "/x/results", "experiment": "paper", "worst": {"run": "r", "relative": 2e-7},
        "rows": [{"identical": 5, "close": 1, "different": 0, "only_a": 2, "only_b": 0},
                 {"identical": 4, "close": 0, "different": 0, "only_a": 0, "only_b": 1}]}))
    est.update_readme(readme, tmp_path / "bench", tmp_path / "timing")
    text = readme.read_text()
    assert line in text and "old" not in text
    assert ("Compared (`scripts/compare_stores.py --experiment paper`): of 10 runs made in both `results` "
            "and `/x/results`, 9 bit-identical, 1 within float rounding, 0 different; the largest relative "
            "difference 2e-07; 2 only in the first, 1 only in the second.") in text
    line = est.compared({"a": "results", "b": "/x/results", "label": "a rerun", "experiment": None,
                         "hosts": {"a": {"CPU A": 3}, "b": {"CPU B": 3}}, "worst": {"run": "", "relative": 0},
                         "rows": [{"identical": 3, "close": 0, "different": 0, "copied": 4, "only_a": 0,
                                   "only_b": 0}]})
    assert line == ("Compared (`scripts/compare_stores.py`): of 3 runs made in both `results` and a rerun "
                    "(`/x/results`) (made on CPU A 3 against CPU B 3), 3 bit-identical, 0 within float "
                    "rounding, 0 different; 4 copied from the first into the second, so not compared; 0 only "
                    "in the first, 0 only in the second.")
    counts = {"identical": 3, "close": 1, "parted": 2, "different": 1, "copied": 0, "only_a": 0, "only_b": 0}
    parted = est.compared({"a": "results", "b": "/x", "experiment": None,
                           "worst": {"run": "", "relative": 0.5}, "rows": [counts]})
    assert ("of 7 runs made in both `results` and `/x`, 3 bit-identical, 1 within float rounding, 2 parted "
            "(first differing within float rounding, more later), 1 different; the largest") in parted


def fake_gpu_json(path, ms: dict[str, float]):
    """A gpu.json with per-step costs of one member for ``ms``'s tasks (and K=10 rows, to be left unused)."""
    rows = [{"task": t, "members": k, "ms_per_step": v * k, "batch": 32}
            for t, v in ms.items() for k in (1, 10)]
    env = {"device_name": "Fake GPU", "torch": "x", "git_commit": "abc1234"}
    path.write_text(json.dumps({"sections": {"per_step": {"rows": rows}}, "environment": env}))
    return path


def per_step_projection(tmp_path, stages: str) -> dict:
    gpu = fake_gpu_json(tmp_path / "gpu.json", {"linreg": 2.0, "mnist_mlp": 4.0})
    proc = subprocess.run([sys.executable, str(SCRIPT), "--profile", "smoke", "--per-step", str(gpu),
                           "--stages", stages, "--out", str(tmp_path), *CPU, *DATA],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (out,) = tmp_path.glob("projection-smoke-*.json")
    assert proc.stdout.startswith("Projected (") and "a lower bound" in proc.stdout
    return json.loads(out.read_text())


def test_a_steps_only_projection_is_each_runs_steps_at_the_measured_cost_of_one_member(tmp_path):
    """--per-step: nothing timed here; every run of the stages counted with the loop's own schedule
    (``loop.Budget``) at its task's one-member cost, and a task without a cost kept in steps only."""
    from nesterov_bench.config import compose, plain, resolve
    from nesterov_bench.loop import Budget

    p = per_step_projection(tmp_path, "tune,final")
    runs = {st.name: st.runs for st in plan("smoke", str(tmp_path), None, overrides=CPU)}
    assert p["runs"] == runs["tune"] + runs["final"] == sum(r["runs"] for r in p["rows"])
    by = {(r["stage"], r["task"]): r for r in p["rows"]}
    s = resolve(plain(compose(["task=linreg", "profile=smoke", *CPU])))  # smoke's linreg budget
    n = len(s.task.load_data(s.cfg["data"], s.device).train)
    tune = by["tune", "linreg"]
    assert tune["steps"] == tune["runs"] * Budget.of(n, s.train).total_steps
    for r in p["rows"]:
        if r["task"] in ("linreg", "mnist_mlp"):
            assert r["minutes"] == pytest.approx(r["steps"] * (2.0 if r["task"] == "linreg" else 4.0) / 60e3)
        else:
            assert r["minutes"] is None and r["ms_per_step"] is None
    assert p["hours"] == pytest.approx(sum(r["minutes"] or 0 for r in p["rows"]) / 60)
    assert p["untimed_steps"]["quadratic"] == sum(r["steps"] for r in p["rows"] if r["task"] == "quadratic")
    assert "linreg" not in p["untimed_steps"] and p["device"] == "Fake GPU"


def test_a_steps_only_projection_without_a_gpu_json_is_one_line(tmp_path):
    """Refused in one line before anything is planned or written."""
    path = tmp_path / "missing.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--profile", "smoke", "--per-step", str(path),
                           "--out", str(tmp_path), *CPU, *DATA], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: --per-step {path}: not a gpu.json with a per_step section")
    assert not list(tmp_path.glob("projection-*"))


def test_the_readmes_estimate_block_is_the_render_of_the_committed_records(tmp_path):
    """Projections, timed reproduces and store comparisons reach the README only through the render."""
    est = _module()
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text())
    est.update_readme(readme, REPO / "results" / "bench", REPO / "results" / "timing")
    stale = "the README's estimate block is stale: python scripts/estimate_paper_time.py --render"
    assert readme.read_text() == (REPO / "README.md").read_text(), stale


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
    # --per-step: its steps are those the store's runs made (no more where a run diverged and stopped)
    from nesterov_bench.reproduce import run_files

    steps = per_step_projection(tmp_path, stages)["rows"]
    made = {st.name: st for st in plan("smoke", str(smoke.results), None, overrides=CPU)}
    for r in steps:
        recs = [json.loads(f.read_text()) for f in run_files(made[r["stage"]])]
        recs = [rec for rec in recs if rec["config"]["task"]["name"] == r["task"]]
        assert len(recs) == r["runs"], r
        total = sum(rec["steps"] for rec in recs)
        if all(rec["status"] == "completed" for rec in recs):
            assert total == r["steps"], r
        else:
            assert total <= r["steps"], r
