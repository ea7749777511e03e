"""Shared helpers: compose configs the way the command line does, and run them in a temp results tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nesterov_bench.config import compose as compose_config
from nesterov_bench.train import run

REPO = Path(__file__).resolve().parents[1]
# Real datasets: staged once into the repo's (git-ignored) data root from the offline mirror.
DATA = [f"data.root={REPO / 'data'}", f"data.source={REPO.parent / 'shared' / 'data'}"]
# Small image subsets: enough to exercise the real-data code paths in seconds.
SMALL_IMAGES = ["task.val_size=200", "task.train_size=512", "task.test_size=200",
                "train.eval_train_size=200"]


def with_ctrl_c() -> None:
    """``preexec_fn`` for a child a test presses Ctrl-C on: SIGINT back to its default, which a process
    started in the background by a non-interactive shell (as CI may start the tests) inherits ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: The CPU tests pin the CPU: device=auto would pick a GPU on a host that has one, whose numbers are
#: not bit-identical and whose runs a CPU run never replaces (the CUDA tests ask for device=cuda).
CPU = ["device=cpu"]


def overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [f"results_dir={tmp_path}", "wandb.mode=disabled", *CPU, *DATA, *extra]


def train(tmp_path: Path, *extra: str) -> dict:
    """Compose with the command-line overrides and run in-process; returns run.json's record."""
    return run(compose_config(overrides(tmp_path, *extra)))


def cli(*args: str, cwd: Path = REPO, env_extra: dict | None = None,
        module: str = "train") -> subprocess.CompletedProcess:
    """``python -m nesterov_bench.<module> args`` (train, or members), W&B offline unless told."""
    env = {**os.environ, "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", f"nesterov_bench.{module}", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


@dataclass
class Smoke:
    """One smoke reproduce (every stage, tiny budgets, the joblib launcher), run from a checkout-like
    folder (a README with a results block, a paper/generated of its own)."""

    results: Path
    work: Path
    proc: subprocess.CompletedProcess
    readme: str


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Smoke:
    """The smoke results tree, built once per test run and shared by the tests that read it (their
    ``xdist_group`` keeps them on one worker)."""
    root = tmp_path_factory.mktemp("smoke")
    work = root / "work"
    (work / "paper" / "generated").mkdir(parents=True)
    readme = "<!-- generated:results:start -->\ncommitted\n<!-- generated:results:end -->\n"
    (work / "README.md").write_text(readme)
    (work / "paper" / "generated" / "numbers.tex").write_text("committed")
    proc = subprocess.run([sys.executable, "-m", "nesterov_bench.reproduce", "--profile", "smoke",
                           "--results", str(root), "--launcher", "local", "--no-pdf", *CPU, *DATA], cwd=work,
                          capture_output=True, text=True, timeout=1200)
    return Smoke(root, work, proc, readme)
