"""W&B round trip: a run hands W&B its run.json and metrics.parquet as files; the pull downloads them.

The first test runs the real wandb library offline (no network): the offline run's ``files/``, which
``wandb sync`` uploads, holds both files byte for byte. The pull is tested against a fake of the
public ``wandb.Api`` (``runs(path, filters)``, a run's ``file(name).download(root, replace)``)
serving those very files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from nesterov_bench import store, wandb_import
from nesterov_bench.tracking import RUN_FILES
from nesterov_bench.train import run as train_run

from .conftest import REPO, compose_config

LINREG = ["task=linreg", "optimizer=nesterov", "train.epochs=2"]


def train_offline(results: Path, *extra: str) -> dict:
    return train_run(compose_config([f"results_dir={results}", "wandb.mode=offline", *LINREG, *extra]))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A tiny real run mirrored offline: (its run directory, its W&B run's files/)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WANDB_")}
    try:
        record = train_offline(tmp_path_factory.mktemp("node"))
    finally:
        os.environ.update(saved)
    run_dir = Path(record["run_dir"])
    (files,) = run_dir.glob("wandb/offline-run-*/files")
    return run_dir, files


def test_an_offline_run_holds_exact_copies_of_its_files(node):
    run_dir, files = node
    for name in RUN_FILES:
        assert not (files / name).is_symlink()  # a copy: stays whole if the run is redone or moved
        assert (files / name).read_bytes() == (run_dir / name).read_bytes()


# --- the pull, against a fake public API ----------------------------------------------------------

class FakeFile:
    def __init__(self, src: Path, md5: str = "ok"):
        self.src, self.name, self.md5, self.downloads = src, src.name, md5, 0

    def download(self, root=".", replace=False):
        dst = Path(root) / self.name
        if dst.exists() and not replace:
            raise ValueError("File already exists")
        self.downloads += 1
        shutil.copyfile(self.src, dst)
        return open(dst)  # noqa: SIM115 -- as W&B does; the pull closes it


class FakeRun:
    def __init__(self, files: Path, run_id: str = "abc123", state: str = "finished",
                 names=RUN_FILES, placeholder: str | None = None):
        self.id, self.name, self.state = run_id, f"run-{run_id}", state
        self.group, self.job_type, self.tags = "g", "single", ["linreg"]
        self.files = {n: FakeFile(files / n, md5="0" if n == placeholder else "ok") for n in names}

    def file(self, name):
        if name not in self.files:
            raise IndexError("list index out of range")  # W&B's Files(...)[0] when nothing matched
        return self.files[name]


class FakeApi:
    def __init__(self, *runs):
        self.served, self.calls = list(runs), []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return iter(self.served)


def pull(*args: str, api) -> tuple[int, list[str]]:
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        rc = wandb_import.main(["team/proj", *args], api=api)
    return rc, out.getvalue().splitlines()


def edited(node_files: Path, tmp: Path, change) -> Path:
    """A copy of the W&B run's files with run.json edited by ``change(text) -> text``."""
    tmp.mkdir()
    for name in RUN_FILES:
        shutil.copyfile(node_files / name, tmp / name)
    (tmp / "run.json").write_text(change((tmp / "run.json").read_text()))
    return tmp


def test_pull_writes_the_exact_files_where_the_config_places_them(node, tmp_path):
    run_dir, files = node
    target = tmp_path / "pulled"
    api = FakeApi(FakeRun(files), FakeRun(files, "old1", names=()),
                  FakeRun(files, "old2", placeholder="metrics.parquet"), FakeRun(files, "r", state="running"))
    rc, out = pull("--results", str(target), "--group", "^adhoc__", "--job-type", "single",
                   "--tag", "linreg", api=api)
    assert rc == 0, out
    assert api.calls == [("team/proj", {"state": "finished", "group": {"$regex": "^adhoc__"},
                                        "jobType": "single", "tags": {"$in": ["linreg"]}})]
    new_dir = target / run_dir.relative_to(run_dir.parents[6])
    assert out[0] == f"abc123 (run-abc123): pulled -> {new_dir}"
    assert out[1].startswith("old1 (run-old1): skipped: no run.json or metrics.parquet among its W&B files")
    assert out[2].startswith("old2 (run-old2): skipped: no metrics.parquet among")
    assert out[3] == "r (run-r): skipped: W&B state is 'running', not 'finished'"
    assert out[4].startswith(f"1 pulled, 3 skipped, 0 failed (from team/proj into {target}")
    for name in RUN_FILES:
        assert (new_dir / name).read_bytes() == (run_dir / name).read_bytes()
    assert store.is_finished(new_dir) and sorted(p.name for p in target.iterdir()) == ["runs"]


def test_finished_runs_are_kept_unless_forced_and_other_settings_are_named(node, tmp_path):
    run_dir, files = node
    target = tmp_path / "pulled"
    assert pull("--results", str(target), api=FakeApi(FakeRun(files)))[0] == 0
    again = FakeRun(files)
    rc, out = pull("--results", str(target), api=FakeApi(again))
    assert rc == 0 and out[0].endswith("skipped: already finished -> " + str(store.run_path(
        {**store.read_run(run_dir)["config"], "results_dir": str(target)})))
    assert again.files["metrics.parquet"].downloads == 0  # decided on run.json alone
    rc, out = pull("--results", str(target), "--force", api=FakeApi(again))
    assert rc == 0 and ": pulled -> " in out[0] and again.files["metrics.parquet"].downloads == 1
    # the node's own store already holds the run it trained
    out = pull("--results", str(run_dir.parents[6]), api=FakeApi(FakeRun(files)))[1]
    assert ": skipped: already finished -> " in out[0]
    other = edited(files, tmp_path / "other",
                   lambda t: t.replace('"eval_batch_size": ', '"eval_batch_size": 7'))
    out = pull("--results", str(target), api=FakeApi(FakeRun(other)))[1]
    assert "skipped: already finished, with other settings (train.eval_batch_size); --force replaces it" \
        in out[0]


def test_a_broken_or_misplaced_download_is_not_placed(node, tmp_path):
    run_dir, files = node
    target = tmp_path / "pulled"
    cut = edited(files, tmp_path / "cut", lambda t: t)
    (cut / "metrics.parquet").write_bytes((cut / "metrics.parquet").read_bytes()[:-20])
    outside = edited(files, tmp_path / "outside", lambda t: re.sub(r'"stage": "\w+"', '"stage": ".."', t))
    api = FakeApi(FakeRun(cut, "cut"), FakeRun(outside, "out"))
    rc, out = pull("--results", str(target), api=api)
    assert rc == 0
    assert out[0].startswith("cut (run-cut): skipped: its run.json and metrics.parquet do not make a "
                             "finished run")
    assert out[1].startswith("out (run-out): skipped: its run.json places it outside the store")
    assert not list(target.rglob("*.parquet")) and not list(target.glob(".wandb_pull-*"))
    # an unfinished attempt at the run's path is replaced
    new_dir = target / run_dir.relative_to(run_dir.parents[6])
    new_dir.mkdir(parents=True)
    (new_dir / "run.json").write_text('{"status": "compl')
    (new_dir / "stray.tmp").write_text("x")
    assert pull("--results", str(target), api=FakeApi(FakeRun(files)))[0] == 0
    assert sorted(p.name for p in new_dir.iterdir()) == [".lock", "metrics.parquet", "run.json"]


def test_unreachable_wandb_and_bad_arguments_are_one_line(capsys):
    class Down:
        def runs(self, path, filters=None):
            raise ConnectionError("Failed to resolve 'api.wandb.ai'\nretrying...")

    assert wandb_import.main(["team/proj"], api=Down()) == 1
    assert capsys.readouterr().err == ("error: cannot read W&B project team/proj: "
                                       "Failed to resolve 'api.wandb.ai'\n")
    assert wandb_import.main(["just-a-project"], api=Down()) == 2
    assert capsys.readouterr().err.startswith("error: a W&B project is ENTITY/PROJECT")
    assert wandb_import.main(["team/proj", "--group", "("], api=Down()) == 2
    assert "not a regular expression" in capsys.readouterr().err


def test_readme_pull_command_is_the_module_and_its_options_exist():
    readme = (REPO / "README.md").read_text()
    (command,) = set(re.findall(r"python -m nesterov_bench\.wandb_import [^\n`]*", readme))
    proc = subprocess.run([sys.executable, "-m", "nesterov_bench.wandb_import", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in re.findall(r"--[a-z-]+", command):
        assert option in proc.stdout


# --- W&B failures never fail the run --------------------------------------------------------------

@pytest.mark.parametrize("fail_on", ["log", "save"])
def test_wandb_failures_never_fail_the_run(tmp_path, monkeypatch, fail_on, caplog):
    ended = []

    class StubRun:
        dir = str(tmp_path / "files")
        summary = types.SimpleNamespace(update=lambda d: None)

        def log(self, data, step):
            if fail_on == "log" and step > 0:
                raise RuntimeError("connection lost")

        def save(self, *a, **kw):
            raise RuntimeError("upload refused")

        def finish(self, exit_code):
            ended.append(exit_code)

    (tmp_path / "files").mkdir()
    stub = types.ModuleType("wandb")
    stub.init, stub.Settings = lambda **kw: StubRun(), lambda **kw: kw
    monkeypatch.setitem(sys.modules, "wandb", stub)
    record = train_offline(tmp_path / "r")
    assert record["status"] == "completed" and store.is_finished(Path(record["run_dir"]))
    said = [m for m in (r.getMessage() for r in caplog.records)  # (the offline notice: once a process)
            if m.startswith("W&B") and not m.startswith("W&B runs offline")]
    if fail_on == "log":
        assert len(said) == 1 and "logging unavailable (connection lost)" in said[0], said
    else:
        assert len(said) == 1, said
        assert "is incomplete (upload refused): W&B holds the run without its files" in said[0]
    assert ended == ([] if fail_on == "log" else [1])  # a W&B run without its files ends failed
