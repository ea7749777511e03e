"""What a new user trips on: sweeps over settings outside the run path, Ctrl-C, names that would
leave runs/, values that would be echoed resolved, shell completion, where output goes, --help, and
the batch loss of a float64 run."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nesterov_bench import store
from nesterov_bench.cli import check_overrides
from nesterov_bench.errors import ConfigError

from .conftest import DATA, REPO, cli, train, with_ctrl_c

LINREG = ["task=linreg", "optimizer=gd", "wandb.mode=disabled", *DATA]
ENTRY = Path(sys.executable).parent / "nesterov-train"


# --- a sweep never aborts on, or overwrites, its own runs -----------------------------------------

def test_a_swept_setting_outside_the_run_path_goes_into_the_path(tmp_path):
    checked = check_overrides(["-m", f"results_dir={tmp_path}", *LINREG, "train.batch_size=16,32,64"])
    assert checked.extra == ["path_keys=[train.batch_size]"]
    # A sweep whose values already differ in the path needs nothing more.
    assert check_overrides(["-m", f"results_dir={tmp_path}", *LINREG, "seed=0,1"]).extra == []


def test_a_sweep_over_batch_size_trains_every_value_in_its_own_directory(tmp_path):
    proc = cli("-m", f"results_dir={tmp_path}", *LINREG, "train.batch_size=16,32")
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p.parent.parent.name for p in (tmp_path / "runs").glob("**/seed=0/run.json"))
    assert runs == ["lr=0.1,train.batch_size=16", "lr=0.1,train.batch_size=32"]
    for name, size in zip(runs, (16, 32), strict=True):
        record = store.read_run(next((tmp_path / "runs").glob(f"**/{name}/seed=0")))
        assert record["config"]["train"]["batch_size"] == size and record["status"] == "completed"


def test_a_single_run_that_collides_says_how_to_get_its_own_directory(tmp_path):
    train(tmp_path, *LINREG)
    with pytest.raises(ConfigError, match=r"path_keys=\[train.batch_size\]"):
        train(tmp_path, *LINREG, "train.batch_size=16")
    train(tmp_path, *LINREG, "train.batch_size=16", "path_keys=[train.batch_size]")  # its own path


@pytest.mark.parametrize("keys,expected", [("[train.batch_sise]", "not a setting"),
                                           ("[results_dir]", "does not change a run's numbers"),
                                           ("train.batch_size", "must be a list")])
def test_bad_path_keys_are_refused(tmp_path, keys, expected):
    with pytest.raises(ConfigError, match=expected):
        check_overrides([f"results_dir={tmp_path}", *LINREG, f"path_keys={keys}"])


# --- Ctrl-C ----------------------------------------------------------------------------------------

def _interrupt(args: list[str], results: Path, after_runs: int = 0,
               module: str = "train") -> subprocess.CompletedProcess:
    """Start the command line in its own process group, wait until a run is training (its lock
    exists) after ``after_runs`` have finished, and press Ctrl-C (SIGINT to the group)."""
    proc = subprocess.Popen([sys.executable, "-m", f"nesterov_bench.{module}", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=with_ctrl_c,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            finished = list(results.glob("runs/**/run.json"))
            training = [p for p in results.glob("runs/**/.lock") if not (p.parent / "run.json").exists()]
            if len(finished) >= after_runs and training:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, "the command ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:  # never leave a training process group behind (the runs here would go on for hours)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


LONG = ["task=linreg", "train.epochs=100000", "train.log_every=1000"]


@pytest.mark.parametrize("how", ["run", *(pytest.param(h, marks=pytest.mark.slow)
                                          for h in ("sweep", "joblib sweep", "members"))])
def test_ctrl_c_is_one_line_and_exit_130(tmp_path, how):
    results = tmp_path / "results"
    base = [f"results_dir={results}", *DATA]
    args, after, module = {
        "run": ([*base, *LONG], 0, "train"),
        # Two short runs finish, then the first long one is interrupted.
        "sweep": (["-m", *base, "task=linreg", "train.log_every=1000", "train.epochs=1,100000", "seed=0,1"],
                  2, "train"),
        "joblib sweep": (["-m", *base, *LONG, "seed=0,1,2,3", "hydra/launcher=local"], 0, "train"),
        "members": ([*base, *LONG, "members.seeds=[0,1]", "members.vectorize=true"], 0, "members"),
    }[how]
    proc = _interrupt(args, results, after, module)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"interrupted: \d+ runs? finished, rerun the same command to resume", last), last
    assert f"interrupted: {after} run" in last
    interrupted = [p.parent for p in results.glob("runs/**/.lock") if not p.parent.parent.name.endswith("=1")]
    assert interrupted and not any(store.is_finished(d) for d in interrupted)  # left for the rerun


# --- names, folders and values -------------------------------------------------------------------

def test_a_results_dir_where_nothing_can_be_made_is_one_line_even_for_root(tmp_path):
    proc = cli("-m", "results_dir=/proc/forbidden", *LINREG, "seed=0,1", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: results_dir=/proc/forbidden: cannot create /proc/forbidden (nothing can be made in /proc: "
        "No such file or directory); set results_dir to a writable folder"]


def test_an_interpolated_value_is_echoed_as_written_never_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("NB_SECRET", "hunter2-not-a-rate")
    with pytest.raises(ConfigError) as info:
        check_overrides([f"results_dir={tmp_path}", *LINREG, "optimizer.lr=${oc.env:NB_SECRET}"])
    assert "hunter2" not in str(info.value) and "${oc.env:NB_SECRET}" in str(info.value)


# --- shell completion ----------------------------------------------------------------------------

def test_shell_completion_through_the_entry_point_answers_without_torch(tmp_path):
    assert ENTRY.exists(), "pip install -e . installs nesterov-train"
    install = subprocess.run([str(ENTRY), "-sc", "install=bash"], capture_output=True, text=True,
                             cwd=tmp_path)
    assert install.returncode == 0 and install.stdout.rstrip().endswith("nesterov-train"), install.stderr
    probe = ("import sys, runpy; sys.argv = ['nesterov-train', '-sc', 'query=bash']\n"
             "from nesterov_bench.entry import train_entry\ntrain_entry()\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    env = {**os.environ, "COMP_LINE": "nesterov-train task=mn", "COMP_POINT": "22"}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "task=mnist_logreg" in proc.stdout and proc.stdout.strip().endswith("NO-TORCH")


def test_hydra_help_names_a_completion_command_that_works():
    proc = cli("--hydra-help")
    assert 'eval "$(nesterov-train -sc install=bash)"' in proc.stdout, proc.stdout
    assert "train.py -sc" not in proc.stdout


# --- output --------------------------------------------------------------------------------------

def test_log_lines_go_to_stderr_and_stdout_stays_empty(tmp_path):
    proc = cli("-m", f"results_dir={tmp_path}", *LINREG, "seed=0,1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("completed: ") == 2 and "Launching 2 jobs" in proc.stderr


def test_info_prints_once():
    proc = cli("--info")
    assert proc.returncode == 0 and (proc.stdout + proc.stderr).count("Installed Hydra Plugins") == 1


def test_help_says_what_the_tool_does_and_lists_the_groups_a_user_picks():
    proc = cli("--help")
    assert proc.returncode == 0
    text = proc.stdout
    assert text.startswith("usage: nesterov-train") and "Train one run" in text
    for group in ("task", "optimizer", "profile", "experiment", "decay", "tuning"):
        assert re.search(rf"^  {group} +\w", text, re.M), group
    assert "budget" not in text and "mnist_logreg" in text and "optimizer.lr=0.01" in text
    members = cli("--help", module="members")
    assert members.stdout.startswith("usage: nesterov-members") and "vectorized" in members.stdout


def test_a_sweep_leaves_no_empty_job_folders(tmp_path):
    assert cli("-m", f"results_dir={tmp_path}", *LINREG, "seed=0,1").returncode == 0
    sweep = tmp_path / ".multirun" / "adhoc-single"
    assert [p.name for p in sweep.iterdir()] == ["multirun.yaml"]


@pytest.mark.slow
def test_parallel_jobs_draw_no_progress_bars_on_a_terminal(tmp_path):
    """Two joblib workers drawing bars on one terminal erase each other's lines: progress=auto keeps
    the bar to a run that has the terminal to itself."""
    main, sub = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "nesterov_bench.train", "-m", f"results_dir={tmp_path}",
                             *LINREG, "train.epochs=300", "seed=0,1", "hydra/launcher=local"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=sub, stdin=subprocess.DEVNULL,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    os.close(sub)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert text.count("completed: ") == 2, text
    assert "step/s" not in text and "\r" not in text.replace("\r\n", "\n"), text


def test_readme_commands_use_one_python():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", readme, re.S)
    commands = [ln.strip() for b in blocks for ln in b.splitlines()]
    assert not [c for c in commands if ".venv/bin/python" in c]
    assert any(c.startswith("python -m nesterov_bench.train") for c in commands)


# --- numbers -------------------------------------------------------------------------------------

def test_a_float64_run_logs_its_batch_loss_in_float64(tmp_path):
    record = train(tmp_path, "task=quadratic", "task.dtype=float64", "optimizer=gd", "optimizer.lr=0.01",
                   "train.max_steps=40")
    rows = pd.read_parquet(Path(record["run_dir"]) / "metrics.parquet")
    losses = rows[(rows.split == "train") & (rows.metric == "batch_loss")].value.to_numpy()
    assert len(losses) == 40 and np.isfinite(losses).all()
    rounded = losses.astype(np.float32).astype(np.float64)
    assert (losses != rounded).any(), "every batch loss is a float32 value: summed in float32"
