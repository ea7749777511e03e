"""Bad input through real processes: a one-line message that says what to change, exit status 2, no run
directory. The whole table of refused input runs in-process in tests/test_faults.py."""

from pathlib import Path

import pytest

from nesterov_bench.cli import check_overrides
from nesterov_bench.errors import ConfigError

from .conftest import DATA, REPO, cli


def test_sweep_checks_every_swept_value():
    check_overrides(["-m", "optimizer.lr=0.1,0.01", "seed=0,1"])
    with pytest.raises(ConfigError, match="optimizer.lr"):
        check_overrides(["-m", "optimizer.lr=0.1,-1", "seed=0,1"])


def test_a_sweep_over_a_list_the_experiment_sweeps_is_refused_and_quoting_sets_it():
    """``sweep.final_seeds=range(0,3)`` unquoted would launch every final run once per value of the list."""
    with pytest.raises(ConfigError, match=r"sweep.final_seeds is a list the sweep reads.*='range"):
        check_overrides(["-m", "experiment=final", "profile=smoke", "sweep.final_seeds=range(0,3)"])
    with pytest.raises(ConfigError, match="sweep.tasks is a list the sweep reads"):
        check_overrides(["-m", "experiment=tune", "profile=smoke", "sweep.tasks=linreg,quadratic"])
    check_overrides(["-m", "experiment=seed000_linreg", "profile=smoke", "sweep.final_seeds='range(0,3)'"])
    check_overrides(["-m", "experiment=noise_floor", "profile=smoke", "sweep.effective_lr=0.001,0.01"])


def _assert_refused(proc, tmp_path: Path, expected: str):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv,expected", [
    (["task=nope"], "unknown task"),  # one real process in the fast tier; test_faults runs the matrix
    pytest.param(["train.epoch=3"], "did you mean train.epochs", marks=pytest.mark.slow),
    pytest.param(["optimizer.lr=-1"], "optimizer.lr", marks=pytest.mark.slow),
    pytest.param(["optimizer.lr=0"], "optimizer.lr", marks=pytest.mark.slow),
], ids=["unknown task", "typo", "negative lr", "zero lr"])
def test_command_line_refuses_bad_override(tmp_path, argv, expected):
    _assert_refused(cli(f"results_dir={tmp_path}", *argv), tmp_path, expected)


def test_missing_data_names_path_and_both_fixes(tmp_path):
    proc = cli(f"results_dir={tmp_path}", "task=mnist_logreg", f"data.root={tmp_path / 'nodata'}",
               f"data.source={tmp_path / 'nomirror'}")
    _assert_refused(proc, tmp_path, "MNIST not found")
    assert str(tmp_path / "nodata" / "MNIST" / "raw") in proc.stderr
    assert "data.source" in proc.stderr and "data.download=true" in proc.stderr


def test_cuda_requested_without_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _assert_refused(cli(f"results_dir={tmp_path}", "task=linreg", "device=cuda", *DATA), tmp_path,
                    "device=cuda but torch sees no CUDA GPU")


def test_help_still_reaches_hydra():
    proc = cli("--help", cwd=REPO)
    assert proc.returncode == 0 and "task" in proc.stdout
