"""Bad input: a one-line message that says what to change, exit status 2, no run directory."""

from pathlib import Path

import pytest

from nesterov_bench.cli import check_overrides
from nesterov_bench.errors import ConfigError

from .conftest import DATA, REPO, cli

BAD = {
    "unknown task": (["task=mnist_logregg"], "unknown task 'mnist_logregg'; choose one of"),
    "unknown optimizer": (["optimizer=nag"], "unknown optimizer 'nag'"),
    "unknown experiment": (["experiment=nope"], "unknown experiment 'nope'"),
    "unknown profile": (["profile=nope"], "unknown profile 'nope'"),
    "typo'd key": (["train.epoch=3"], "unknown setting train.epoch (did you mean train.epochs?)"),
    "key of another optimizer": (["optimizer=nesterov", "optimizer.betas=[0.9,0.99]"],
                                 "unknown setting optimizer.betas"),
    "lr zero": (["optimizer.lr=0"], "optimizer.lr"),
    "lr negative": (["optimizer.lr=-0.1"], "optimizer.lr"),
    "lr not a number": (["optimizer.lr=abc"], "optimizer.lr"),
    "momentum 1": (["optimizer=momentum", "optimizer.momentum=1.0"], "optimizer.momentum"),
    "nesterov without momentum": (["optimizer=nesterov", "optimizer.momentum=0"], "momentum"),
    "adam beta 1": (["optimizer=adam", "optimizer.betas=[1.0,0.999]"], "optimizer.betas"),
    "epochs 0": (["train.epochs=0"], "train.epochs must be a positive integer"),
    "batch size 0": (["train.batch_size=0"], "train.batch_size"),
    "seed not an int": (["seed=abc"], "seed must be a non-negative integer"),
    "bad device": (["device=tpu"], "device must be auto, cpu or cuda"),
    "bad wandb mode": (["wandb.mode=sometimes"], "wandb.mode"),
    "sweep without -m": (["seed=0,1"], "add -m"),
    "not key=value": (["lr"], "key=value"),
    "unknown task setting": (["task=quadratic", "+task.dimension=3"], "task.dimension"),
}


@pytest.mark.parametrize("argv,expected", BAD.values(), ids=BAD.keys())
def test_bad_override_is_one_clear_line(argv, expected):
    with pytest.raises(ConfigError) as info:
        check_overrides(argv)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_sweep_checks_every_swept_value():
    check_overrides(["-m", "optimizer.lr=0.1,0.01", "seed=0,1"])
    with pytest.raises(ConfigError, match="optimizer.lr"):
        check_overrides(["-m", "optimizer.lr=0.1,-1", "seed=0,1"])


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
