"""Shared helpers: compose configs the way the command line does, and run them in a temp results tree."""

from __future__ import annotations

import os
import subprocess
import sys
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


def overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [f"results_dir={tmp_path}", "wandb.mode=disabled", *DATA, *extra]


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
