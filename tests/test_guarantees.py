"""Guarantees that had no test of their own: a results root that cannot be written, a write error
while saving, the environment record, and the sensitivity figure showing diverged rates."""

from __future__ import annotations

import errno
import json

import pytest

from nesterov_bench import store

from .conftest import cli, train


def test_unwritable_results_root_is_one_line_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = cli(f"results_dir={blocker / 'results'}", "task=linreg", "train.epochs=1", "wandb.mode=disabled")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: results_dir=") and "writable" in lines[0]


def test_write_error_while_saving_marks_the_run_failed_and_leaves_no_partial_file(tmp_path, monkeypatch):
    real = store.write_atomic

    def disk_full(path, write):
        if path.name == "metrics.parquet":
            def half(tmp):  # half a file under the temporary name, then the disk is full
                tmp.write_bytes(b"PAR1 half a parquet file")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, half)
        return real(path, write)

    monkeypatch.setattr(store, "write_atomic", disk_full)
    with pytest.raises(OSError, match="No space"):
        train(tmp_path, "task=linreg", "train.epochs=1")
    run_dir = next(tmp_path.glob("runs/*/*/linreg/*/*/seed=0"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "run.json"]  # no partial, no temp file
    assert not store.is_finished(run_dir)
    monkeypatch.setattr(store, "write_atomic", real)
    assert train(tmp_path, "task=linreg", "train.epochs=1")["status"] == "completed"  # the rerun redoes it


def test_environment_record_tells_setups_apart(tmp_path):
    env = train(tmp_path, "task=linreg", "train.epochs=1")["environment"]
    for key in ("python", "torch", "cuda", "device", "device_name", "cpu", "threads", "git_commit",
                "git_dirty", "packages"):
        assert key in env, key
    assert env["torch"].startswith("2.") and env["device"] == "cpu" and env["packages"]["numpy"]


@pytest.mark.parametrize("argv,expected", [
    (["task=linreg", "train.batch_size=5000"], "larger than the training split"),
    (["task=mnist_logreg", "data.root={blocker}/data"], "data.root: cannot create"),
], ids=["batch larger than the data", "data root not writable"])
def test_input_refused_only_once_the_data_is_known(tmp_path, argv, expected):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    results = tmp_path / "results"
    proc = cli(f"results_dir={results}", "wandb.mode=disabled", *[a.format(blocker=blocker) for a in argv])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr
    assert not results.exists()


def test_every_test_named_in_the_readme_exists():
    import re

    from .conftest import REPO

    named = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", (REPO / "README.md").read_text()))
    assert len(named) >= 15
    for path, name in named:
        assert f"def {name}(" in (REPO / path).read_text(), f"{path}::{name} is not a test"
