"""Rebuilding run directories from W&B: the mirror sends a whole run, the importer writes it back.

The W&B service cannot be reached here, so the tests build public-API run objects two ways:

* from a real offline W&B run, which the mirror writes inside the run directory
  (``wandb/offline-run-*/run-*.wandb``, the records W&B would sync): what the real SDK sends;
* from a stub ``wandb`` module that records what the mirror sends (config, log calls, summary,
  exit code), turned into a run the way the service does: one history row per step holding every
  key logged at that step (later values win), W&B's ``_step``/``_runtime`` keys, non-finite floats
  as the strings "NaN"/"Infinity", and (optionally) a row's keys in another order. Fast, and lets
  a test break the mirror on purpose.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest

from nesterov_bench import store
from nesterov_bench.analyze.load import load
from nesterov_bench.errors import ConfigError
from nesterov_bench.train import run as train_run
from nesterov_bench.wandb_import import (
    import_run,
    metric_rows,
    project_path,
    record_and_rows,
    run_filters,
)

from .conftest import REPO, compose_config

LINREG = ["task=linreg", "optimizer=nesterov", "train.epochs=2", "train.log_every=7"]
DIVERGES = ["task=linreg", "optimizer=momentum", "optimizer.lr=1e6", "train.epochs=3",
            "train.log_every=1"]


# --- a stub wandb that records what the mirror sends ---------------------------------------------

class StubRun:
    def __init__(self, fail_on: str | None = None, **init):
        self.init, self.logs, self.summary_data, self.exit_code = init, [], {}, None
        self.fail_on = fail_on
        stub = self

        class Summary:
            def update(self, d):
                if stub.fail_on == "summary" and "run_record" in d:
                    raise RuntimeError("summary too large")
                stub.summary_data.update(d)

        self.summary = Summary()

    def log(self, data, step):
        if self.fail_on == "log" and len(self.logs) == 3:
            raise RuntimeError("connection lost")
        self.logs.append((dict(data), step))

    def finish(self, exit_code):
        self.exit_code = exit_code


@pytest.fixture
def stub_wandb(monkeypatch):
    """Install a stub ``wandb``; returns the list of StubRuns it created (one per training run)."""
    runs: list[StubRun] = []
    module = types.ModuleType("wandb")
    module.fail_on = None

    def init(**kw):
        runs.append(StubRun(fail_on=module.fail_on, **kw))
        return runs[-1]

    module.init = init
    module.Settings = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "wandb", module)
    return types.SimpleNamespace(runs=runs, module=module)


def train_mirrored(results: Path, *extra: str) -> dict:
    """A tiny real run with the W&B mirror on (offline; into the stub when one is installed)."""
    return train_run(compose_config([f"results_dir={results}", "wandb.mode=offline", *extra]))


def _safe(obj):
    """What the service hands back: NaN and infinities as strings (wandb.util.make_safe_for_json)."""
    if isinstance(obj, dict):
        return {k: _safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    return obj


class FakeWandbRun:
    """A public-API run (wandb.apis.public.Run) as the service would return the stub's recording."""

    def __init__(self, stub: StubRun, *, reorder_keys: bool = False, run_id: str = "abc123"):
        self.id, self.name = run_id, stub.init["name"]
        self.path = ["team", stub.init["project"], run_id]
        self.url = f"https://wandb.example/team/{stub.init['project']}/runs/{run_id}"
        self.state = "finished" if stub.exit_code == 0 else "failed"
        self.config = json.loads(json.dumps(_safe(stub.init["config"])))
        self.summary = json.loads(json.dumps(_safe(stub.summary_data)))
        rows: dict[int, dict] = {}
        for data, step in stub.logs:  # W&B merges the log calls of one step into one row
            rows.setdefault(step, {}).update(data)
        self.rows = []
        for step, row in sorted(rows.items()):
            row = {**row, "_step": step, "_runtime": 1.5, "_timestamp": 1.7e9}
            if reorder_keys:
                row = dict(sorted(row.items(), reverse=True))
            self.rows.append(json.loads(json.dumps(_safe(row))))
        self.scans = 0

    def scan_history(self):
        self.scans += 1
        return iter(self.rows)

    def history(self, *a, **kw):
        raise AssertionError("run.history() samples 500 rows: the importer must use scan_history()")


def node_run(tmp_path: Path, stub_wandb, *extra: str) -> tuple[Path, dict, StubRun]:
    record = train_mirrored(tmp_path / "node", *extra)
    (stub,) = stub_wandb.runs[-1:]
    return Path(record["run_dir"]), record, stub


# --- a real offline W&B run, read back ----------------------------------------------------------

def wandb_records(path: Path):
    """The protobuf records of an offline run's ``.wandb`` file (W&B's LevelDB-style log: a
    7-byte ``:W&B`` header, then 32 KiB blocks of chunks with a 7-byte crc/length/type header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"unknown .wandb format in {path} (wandb changed it?)"
    pos, buf = 7, b""
    while pos < len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


class OfflineWandbRun:
    """A public-API run rebuilt from the offline W&B run in a run directory: what W&B would serve."""

    def __init__(self, run_dir: Path):
        (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
        # W&B's service may still be writing the last records when run.finish() has returned
        deadline = time.monotonic() + 60
        while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(path)):
            assert time.monotonic() < deadline, f"no exit record in {path}"
            time.sleep(0.2)
        self.config, self.summary, self.rows, self.state = {}, {}, [], "running"
        for r in wandb_records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                self.id, self.name = r.run.run_id, r.run.display_name
                self.path = [r.run.entity or "team", r.run.project, r.run.run_id]
                self.url = f"https://wandb.example/{'/'.join(self.path)}"
                self.config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
            elif kind == "config":
                self.config.update({i.key: json.loads(i.value_json) for i in r.config.update})
            elif kind == "history":
                self.rows.append({i.key or ".".join(i.nested_key): json.loads(i.value_json)
                                  for i in r.history.item})
            elif kind == "summary":
                for i in r.summary.update:
                    keys = [i.key] if i.key else list(i.nested_key)
                    node = self.summary
                    for k in keys[:-1]:
                        node = node.setdefault(k, {})
                    node[keys[-1]] = json.loads(i.value_json)
            elif kind == "exit":
                self.state = "finished" if r.exit.exit_code == 0 else "failed"
        self.config.pop("_wandb", None)  # the public API leaves W&B's own keys out

    def scan_history(self):
        return iter(self.rows)

    def history(self, *a, **kw):
        raise AssertionError("run.history() samples 500 rows: the importer must use scan_history()")


@pytest.mark.parametrize("overrides", [LINREG, DIVERGES], ids=["completed", "diverged"])
def test_round_trip_through_a_real_offline_wandb_run(tmp_path, overrides):
    record = train_mirrored(tmp_path / "node", *overrides)
    run_dir = Path(record["run_dir"])
    fake = OfflineWandbRun(run_dir)
    assert fake.state == "finished" and fake.summary["status"] == record["status"]
    outcome, new_dir = import_run(fake, tmp_path / "imported")
    assert outcome == "imported"
    ours, theirs = (json.loads((d / "run.json").read_text()) for d in (run_dir, new_dir))
    assert _without_paths(theirs) == _without_paths(ours)
    local = pd.read_parquet(run_dir / "metrics.parquet")
    imported = pd.read_parquet(new_dir / "metrics.parquet")
    pd.testing.assert_frame_equal(imported.drop(columns="time_s"), local.drop(columns="time_s"),
                                  check_exact=True)
    pd.testing.assert_series_equal(imported.time_s, local.groupby("step").time_s.transform("last"),
                                   check_exact=True, check_names=False)
    if record["status"] == "diverged":  # W&B's history keeps NaN and infinities; so does the import
        assert not imported.value.map(math.isfinite).all()
    a, b = load(tmp_path / "node"), load(tmp_path / "imported")
    pd.testing.assert_frame_equal(a.runs.drop(columns="path"), b.runs.drop(columns="path"),
                                  check_exact=True)


def test_non_finite_record_values_survive_the_real_summary(tmp_path):
    """W&B's summary turns NaN and infinities into null: the mirror sends them as strings."""
    from nesterov_bench.tracking import Mirror
    from nesterov_bench.wandb_import import run_record

    cfg = {"experiment_name": "e", "stage": "single", "task": {"name": "linreg"}, "seed": 0,
           "optimizer": {"name": "gd", "lr": 0.1}, "train": {}, "results_dir": str(tmp_path)}
    final = {"train/loss": math.inf, "val/loss": math.nan, "test/loss": -math.inf, "val/accuracy": 0.25}
    record = {"config": cfg, "status": "diverged", "reason": "non-finite evaluation loss at step 3",
              "final": final, "steps": 3, "selection": {"split": "val", "metric": "loss", "mode": "min"}}
    mirror = Mirror({"mode": "offline", "project": "p"}, tmp_path, name="n", group="g",
                    job_type="single", tags=[], config=cfg)
    assert mirror.run is not None
    mirror.log(0, 0.0, "train", {"loss": math.nan}, 0.0)
    mirror.finish("diverged", final, record=record)
    fake = OfflineWandbRun(tmp_path)
    assert fake.summary["val/loss"] is None  # what W&B does to a NaN in the summary
    got = run_record(fake)
    assert got["final"]["train/loss"] == math.inf and got["final"]["test/loss"] == -math.inf
    assert math.isnan(got["final"]["val/loss"]) and got["final"]["val/accuracy"] == 0.25
    assert got["reason"] == record["reason"] and got["config"] == cfg
    assert math.isnan(metric_rows(fake.scan_history())[0]["value"])


# --- the mirror ----------------------------------------------------------------------------------

def test_mirror_sends_the_whole_run(tmp_path, stub_wandb):
    run_dir, record, stub = node_run(tmp_path, stub_wandb, *LINREG)
    on_disk = json.loads((run_dir / "run.json").read_text())
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert stub.init["config"] == on_disk["config"]
    assert stub.exit_code == 0
    summary = stub.summary_data
    assert summary["status"] == "completed"
    assert {k: summary[k] for k in on_disk["final"]} == on_disk["final"]
    assert summary["run_record"] == {k: v for k, v in on_disk.items() if k != "config"}
    assert summary["history_layout"]["rows"] == len(metrics)
    # each log call is one record: its "<split>/<metric>" keys are the next rows, in order, and it
    # carries the rows' step, epoch and time
    rows = iter(metrics.itertuples())
    for data, step in stub.logs:
        keys = [k for k in data if k not in ("epoch", "time_s")]
        assert keys and all("/" in k for k in keys)
        for key in keys:
            r = next(rows)
            assert (step, key, data[key], data["epoch"], data["time_s"]) == \
                (r.step, f"{r.split}/{r.metric}", r.value, r.epoch, r.time_s)
    assert next(rows, None) is None
    # the distinct within-step key orders, in the order first met: step 0's evaluation, the
    # train-loss steps, train loss + evaluation at the end of an epoch
    per_step = [list(g.split + "/" + g.metric) for _, g in metrics.groupby("step", sort=False)]
    distinct = [o for i, o in enumerate(per_step) if o not in per_step[:i]]
    assert summary["history_layout"]["key_orders"] == distinct
    assert ["train/batch_loss"] in distinct and distinct[0][0] == "train/loss"
    assert ["train/batch_loss", *distinct[0]] in distinct


def test_failed_run_sends_no_record_and_fails_in_wandb(tmp_path, stub_wandb, monkeypatch):
    def disk_full(*a, **kw):
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "write_metrics", disk_full)
    with pytest.raises(OSError):
        train_mirrored(tmp_path / "node", *LINREG)
    (stub,) = stub_wandb.runs
    assert stub.summary_data == {"status": "failed"}
    assert stub.exit_code == 1


@pytest.mark.parametrize("fail_on", ["log", "summary"])
def test_wandb_failures_never_fail_the_run(tmp_path, stub_wandb, fail_on):
    stub_wandb.module.fail_on = fail_on
    record = train_mirrored(tmp_path / "node", *LINREG)
    assert record["status"] == "completed"
    assert store.is_finished(Path(record["run_dir"]))
    (stub,) = stub_wandb.runs
    assert "run_record" not in stub.summary_data
    if fail_on == "summary":  # a W&B run without its record is closed as failed: never imported
        assert stub.exit_code == 1
        assert import_run(FakeWandbRun(stub), tmp_path / "imported")[0].startswith("skipped: W&B state")
    else:  # the mirror gave up at the fourth record and sent nothing more
        assert len(stub.logs) == 3 and stub.exit_code is None


# --- the round trip ------------------------------------------------------------------------------

def _without_paths(rec: dict) -> str:
    """The record less the fields that say where it lies, as JSON text (NaN compares equal)."""
    rec = json.loads(json.dumps(rec))
    rec.pop("run_dir"), rec.pop("imported_from", None), rec["config"].pop("results_dir")
    return json.dumps(rec, sort_keys=True)


@pytest.mark.parametrize("reorder_keys", [False, True], ids=["keys-as-logged", "keys-reordered"])
@pytest.mark.parametrize("overrides", [LINREG, DIVERGES], ids=["completed", "diverged"])
def test_round_trip_rebuilds_the_run_directory(tmp_path, stub_wandb, overrides, reorder_keys):
    run_dir, record, stub = node_run(tmp_path, stub_wandb, *overrides)
    fake = FakeWandbRun(stub, reorder_keys=reorder_keys)
    outcome, new_dir = import_run(fake, tmp_path / "imported")
    assert outcome == "imported"
    assert new_dir == tmp_path / "imported" / run_dir.relative_to(tmp_path / "node")
    assert sorted(p.name for p in new_dir.iterdir()) == [".lock", "metrics.parquet", "run.json"]

    # run.json: the node's record, placed here (run_dir, config.results_dir) with its provenance
    ours, theirs = (json.loads((d / "run.json").read_text()) for d in (run_dir, new_dir))
    assert _without_paths(theirs) == _without_paths(ours)
    assert theirs["run_dir"] == str(new_dir)
    assert theirs["config"]["results_dir"] == str(tmp_path / "imported")
    assert theirs["imported_from"]["wandb_run"] == "team/nesterov_bench/abc123"
    assert theirs["imported_from"]["run_dir"] == str(run_dir)
    assert theirs["imported_from"]["results_dir"] == str(tmp_path / "node")
    assert store.identity(theirs["config"]) == store.identity(ours["config"])
    assert record["status"] == ("diverged" if overrides is DIVERGES else "completed")

    # metrics.parquet: every row, in order, exactly; time_s is the step's last (one value per step)
    local = pd.read_parquet(run_dir / "metrics.parquet")
    imported = pd.read_parquet(new_dir / "metrics.parquet")
    assert len(imported) == len(local) > 0
    pd.testing.assert_frame_equal(imported.drop(columns="time_s"), local.drop(columns="time_s"),
                                  check_exact=True)
    step_last = local.groupby("step").time_s.transform("last")
    pd.testing.assert_series_equal(imported.time_s, step_last, check_exact=True, check_names=False)
    assert (imported.time_s - local.time_s).abs().max() < 0.05  # loop overhead only
    if record["status"] == "diverged":
        assert not imported.value.map(math.isfinite).all()  # NaN/inf came back as numbers

    # the analysis reads both stores to the same tables
    a, b = load(tmp_path / "node"), load(tmp_path / "imported")
    assert len(a.runs) == len(b.runs) == 1 and a.skipped == b.skipped == []
    pd.testing.assert_frame_equal(a.runs.drop(columns="path"), b.runs.drop(columns="path"),
                                  check_exact=True)
    a_metrics = a.metrics.assign(time_s=a.metrics.groupby("step").time_s.transform("last"))
    pd.testing.assert_frame_equal(a_metrics, b.metrics, check_exact=True)


def test_record_and_rows_reads_the_full_history_in_logged_order(tmp_path, stub_wandb):
    run_dir, _, stub = node_run(tmp_path, stub_wandb, *LINREG)
    rec, rows = record_and_rows(FakeWandbRun(stub, reorder_keys=True))
    assert rec["config"] == json.loads((run_dir / "run.json").read_text())["config"]
    assert rec["run_dir"] == str(run_dir)  # as the node wrote it: import_run places it
    local = pd.read_parquet(run_dir / "metrics.parquet")
    assert [(r["step"], r["split"], r["metric"]) for r in rows] == list(
        zip(local.step, local.split, local.metric, strict=True))
    # without the layout, a step's rows follow the history row's key order
    plain = metric_rows([{"_step": 3, "val/loss": 1.0, "epoch": 0.5, "time_s": 2.0, "train/loss": "NaN",
                          "test/loss": None, "_runtime": 9}])
    assert [(r["split"], r["metric"]) for r in plain] == [("val", "loss"), ("train", "loss")]
    assert math.isnan(plain[1]["value"]) and plain[0] == dict(
        step=3, epoch=0.5, split="val", metric="loss", value=1.0, time_s=2.0)


# --- what is not imported ------------------------------------------------------------------------

def _runs_written(results: Path) -> list[Path]:
    return sorted(results.glob("runs/*/*/*/*/*/seed=*")) if results.exists() else []


def test_unconvertible_runs_are_skipped_with_a_reason(tmp_path, stub_wandb):
    _, _, stub = node_run(tmp_path, stub_wandb, *LINREG)
    target = tmp_path / "imported"

    def variant(change):
        fake = FakeWandbRun(stub)
        change(fake)
        return import_run(fake, target)[0]

    assert variant(lambda f: setattr(f, "state", "running")) == \
        "skipped: W&B state is 'running', not 'finished'"
    assert variant(lambda f: setattr(f, "state", "crashed")).startswith("skipped: W&B state")
    assert variant(lambda f: f.summary.pop("run_record")).startswith("skipped: no run_record")
    assert variant(lambda f: f.summary["run_record"].update(status="failed")) == \
        "skipped: status 'failed'"
    assert variant(lambda f: f.summary["run_record"].pop("selection")) == \
        "skipped: run_record lacks selection"
    assert variant(lambda f: f.config.pop("task")).startswith("skipped: config lacks")
    assert variant(lambda f: f.config.update(stage="../x")) == "skipped: config names a path component '../x'"
    assert variant(lambda f: f.rows.pop(1)).startswith("skipped: its history has")
    assert variant(lambda f: f.rows.clear()) == "skipped: its history holds no metrics"
    assert _runs_written(target) == []
    assert not list(target.glob("runs/**/*.parquet"))


def test_a_failed_run_is_skipped(tmp_path, stub_wandb, monkeypatch):
    def disk_full(*a, **kw):
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "write_metrics", disk_full)
    with pytest.raises(OSError):
        train_mirrored(tmp_path / "node", *LINREG)
    outcome, path = import_run(FakeWandbRun(stub_wandb.runs[0]), tmp_path / "imported")
    assert outcome == "skipped: W&B state is 'failed', not 'finished'" and path is None
    assert _runs_written(tmp_path / "imported") == []


def test_finished_run_is_kept_unless_forced(tmp_path, stub_wandb):
    run_dir, _, stub = node_run(tmp_path, stub_wandb, *LINREG)
    target = tmp_path / "imported"
    fake = FakeWandbRun(stub)
    assert import_run(fake, target)[0] == "imported"
    first = json.loads((store.run_path({**fake.config, "results_dir": str(target)}) / "run.json")
                       .read_text())
    scans = fake.scans
    again = FakeWandbRun(stub)
    assert import_run(again, target) == ("skipped: already finished", Path(first["run_dir"]))
    assert again.scans == 0  # decided before downloading the history
    assert json.loads((Path(first["run_dir"]) / "run.json").read_text()) == first
    outcome, path = import_run(again, target, force=True)
    assert outcome == "imported" and again.scans == 1 and scans == 1
    assert json.loads((path / "run.json").read_text())["imported_from"]["imported_at"] != \
        first["imported_from"]["imported_at"]
    # the node's own store already holds the run it trained
    assert import_run(FakeWandbRun(stub), tmp_path / "node")[0] == "skipped: already finished"
    assert "imported_from" not in json.loads((run_dir / "run.json").read_text())
    # a finished run of other settings at the same path is named, not replaced
    other = FakeWandbRun(stub)
    other.config["train"]["eval_batch_size"] = 128
    outcome, _ = import_run(other, target)
    assert outcome == ("skipped: already finished, with other settings (train.eval_batch_size); "
                       "--force replaces it")


def test_unfinished_leftovers_are_replaced_and_a_failed_write_leaves_nothing(tmp_path, stub_wandb,
                                                                            monkeypatch):
    _, _, stub = node_run(tmp_path, stub_wandb, *LINREG)
    target = tmp_path / "imported"
    fake = FakeWandbRun(stub)
    new_dir = store.run_path({**fake.config, "results_dir": str(target)})
    new_dir.mkdir(parents=True)
    (new_dir / "run.json").write_text('{"status": "compl')  # an earlier attempt, cut short
    (new_dir / "stray.tmp").write_text("x")
    assert import_run(fake, target)[0] == "imported"
    assert sorted(p.name for p in new_dir.iterdir()) == [".lock", "metrics.parquet", "run.json"]

    elsewhere = tmp_path / "elsewhere"

    def crash(path, obj):
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "write_json", crash)
    with pytest.raises(OSError, match="No space"):
        import_run(FakeWandbRun(stub), elsewhere)
    assert _runs_written(elsewhere) == []
    assert not list(elsewhere.rglob("*.parquet"))


# --- arguments and the command line --------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "project", "a/b/c", "a//b", "/b", "a b/c", None])
def test_an_unusable_project_path_is_one_line(bad):
    with pytest.raises(ConfigError, match=r"ENTITY/PROJECT") as e:
        project_path(bad)
    assert "\n" not in str(e.value)


def test_project_path_and_group_filter():
    assert project_path(" team/nesterov_bench/ ") == "team/nesterov_bench"
    assert run_filters(None) is None
    assert run_filters("^paper__") == {"group": {"$regex": "^paper__"}}
    with pytest.raises(ConfigError, match="not a regular expression"):
        run_filters("(")


def _script():
    spec = importlib.util.spec_from_file_location("wandb_pull", REPO / "scripts" / "wandb_pull.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_imports_each_run_and_counts(tmp_path, stub_wandb, capsys):
    _, _, stub = node_run(tmp_path, stub_wandb, *LINREG)
    running = FakeWandbRun(stub, run_id="r2")
    running.state = "running"
    calls = []

    class Api:
        def runs(self, path, filters=None):
            calls.append((path, filters))
            return [FakeWandbRun(stub), running]

    target = tmp_path / "pulled"
    rc = _script().main(["team/proj", "--results", str(target), "--group", "^adhoc__"], api=Api())
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert calls == [("team/proj", {"group": {"$regex": "^adhoc__"}})]
    assert out[0].startswith("abc123 (") and ": imported -> " in out[0]
    assert out[1].endswith("skipped: W&B state is 'running', not 'finished'")
    assert out[-1] == f"1 imported, 1 skipped, 0 failed (from team/proj into {target})"
    assert len(load(target).runs) == 1
    rc = _script().main(["team/proj", "--results", str(target)], api=Api())
    assert rc == 0 and capsys.readouterr().out.splitlines()[-1].startswith("0 imported, 2 skipped")


def test_script_unreachable_wandb_is_one_line(capsys):
    class Api:
        def runs(self, path, filters=None):
            raise ConnectionError("Failed to resolve 'api.wandb.ai'\nretrying...")

    assert _script().main(["team/proj"], api=Api()) == 1
    err = capsys.readouterr().err
    assert err == "error: cannot read W&B project team/proj: Failed to resolve 'api.wandb.ai'\n"


def test_script_command_line_errors(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_MODE="online", NETRC=str(tmp_path / "netrc"))

    def pull(*args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "wandb_pull.py"), *args],
                              cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
                              stdin=subprocess.DEVNULL)

    bad = pull("just-a-project", "--results", str(tmp_path / "r"))
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: a W&B project is ENTITY/PROJECT") and bad.stderr.count("\n") == 1
    logged_out = pull("team/proj", "--results", str(tmp_path / "r"))
    assert logged_out.returncode == 1, logged_out.stdout + logged_out.stderr
    assert logged_out.stderr.startswith("error: cannot read W&B project team/proj: ")
    assert logged_out.stderr.count("\n") == 1 and "login" in logged_out.stderr
    assert not (tmp_path / "r").exists()
