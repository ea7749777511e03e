"""Real runs at tiny sizes: every task with every optimizer, the files they leave, and their guarantees."""

import json

import pandas as pd
import pytest

from nesterov_bench.errors import ConfigError
from nesterov_bench.store import METRIC_COLUMNS, run_path
from nesterov_bench.tasks import TASKS

from .conftest import DATA, SMALL_IMAGES, cli, compose_config, overrides, train

OPTIMIZERS = ["gd", "momentum", "nesterov", "adam"]


def small(task: str) -> list[str]:
    """Tiny budgets per task; images from the real datasets (CIFAR-10 generated: not to be had here)."""
    if task == "linreg":
        return ["train.epochs=2"]
    if task == "quadratic":
        return ["train.epochs=20", "task.dim=10", "optimizer.lr=0.01"]  # stable: lr < 2/L = 0.02
    extra = ["data.generated=true"] if task == "cifar10_cnn" else []
    return [*SMALL_IMAGES, "train.max_steps=6", "train.log_every=2", *extra]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_trains_with_every_optimizer(tmp_path, task, optimizer):
    record = train(tmp_path, f"task={task}", f"optimizer={optimizer}", *small(task))
    assert record["status"] == "completed", record.get("reason")
    run_dir = tmp_path / "runs" / "adhoc" / "single" / task / optimizer
    (seed_dir,) = run_dir.glob("*/seed=0")
    on_disk = json.loads((seed_dir / "run.json").read_text())
    assert on_disk["status"] == "completed"
    assert on_disk["config"]["task"]["name"] == task
    df = pd.read_parquet(seed_dir / "metrics.parquet")
    assert list(df.columns) == METRIC_COLUMNS
    splits = set(df.split)
    assert "train" in splits
    if task not in ("quadratic",):
        assert {"val", "test"} <= splits
    if task.endswith(("_cnn", "_mlp", "_logreg")):
        assert {"loss", "accuracy"} <= set(df[df.split == "test"].metric)
        assert 0.0 <= on_disk["final"]["test/accuracy"] <= 1.0
    if task == "quadratic":
        assert "suboptimality" in set(df.metric)
    assert (df.step.diff().dropna() >= 0).all()


@pytest.mark.parametrize("task,optimizer", [  # the entry point on each kind of data (every task x
    ("linreg", "momentum"),  # optimizer runs in-process above); the fast tier keeps one
    pytest.param("mnist_mlp", "adam", marks=pytest.mark.slow),
    pytest.param("fmnist_cnn", "momentum", marks=pytest.mark.slow),
    pytest.param("cifar10_cnn", "adam", marks=pytest.mark.slow),
])
def test_command_line_run_leaves_its_files(tmp_path, task, optimizer):
    proc = cli(f"results_dir={tmp_path}", f"task={task}", f"optimizer={optimizer}", "seed=0",
               *DATA, *small(task))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (seed_dir,) = (tmp_path / "runs" / "adhoc" / "single" / task / optimizer).glob("*/seed=0")
    assert {"run.json", "metrics.parquet", "wandb"} <= {p.name for p in seed_dir.iterdir()}
    record = json.loads((seed_dir / "run.json").read_text())
    env = record["environment"]
    for key in ("python", "torch", "cuda", "device_name", "cpu_count", "cpu_capability", "git_commit",
                "git_dirty", "packages"):
        assert key in env
    assert record["wall_time_s"] > 0 and record["status"] == "completed"
    # the offline W&B run lies inside the run directory, named after the run
    assert list((seed_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_run_path_comes_from_config_not_clock(tmp_path):
    cfg = compose_config(overrides(tmp_path, "task=linreg", "optimizer=nesterov", "seed=3",
                                   "optimizer.lr=0.05"))
    from omegaconf import OmegaConf

    path = run_path(OmegaConf.to_container(cfg, resolve=True))
    assert path == tmp_path / "runs/adhoc/single/linreg/nesterov/lr=0.05,momentum=0.9/seed=3"


def test_same_config_and_seed_give_identical_metrics_across_processes(tmp_path):
    args = ["task=mnist_mlp", "optimizer=nesterov", "seed=1", *DATA, *SMALL_IMAGES,
            "train.max_steps=8", "train.log_every=1", "wandb.mode=disabled"]
    frames = []
    for name in ("a", "b"):
        proc = cli(f"results_dir={tmp_path / name}", *args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (f,) = (tmp_path / name).glob("runs/**/metrics.parquet")
        frames.append(pd.read_parquet(f).drop(columns="time_s"))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
    other = train(tmp_path / "c", "task=mnist_mlp", "optimizer=nesterov", "seed=2", *SMALL_IMAGES,
                  "train.max_steps=8", "train.log_every=1")
    assert other["final"]["train/loss"] != frames[0][frames[0].metric == "loss"].value.iloc[-1]


def test_runs_in_one_process_share_its_loaded_data_and_their_numbers_do_not_change(tmp_path, monkeypatch):
    """train.load_data: the runs of one task in one process (a sweep's worker) load its data once; a run
    after another in the same process gives the numbers a fresh process gives (the data is never written)."""
    from nesterov_bench import train as train_module
    from nesterov_bench.config import resolve

    monkeypatch.setattr(train_module, "_LOADED", {})
    small = ["task=mnist_mlp", "optimizer=nesterov", *SMALL_IMAGES, "train.max_steps=8", "train.log_every=1"]
    s = resolve(compose_config(overrides(tmp_path, *small)))
    assert train_module.load_data(s) is train_module.load_data(s)
    other = resolve(compose_config(overrides(tmp_path, *small, "task.train_size=256")))
    assert train_module.load_data(other) is not train_module.load_data(s)
    train_module.load_data(resolve(compose_config(overrides(tmp_path, "task=linreg"))))
    assert len(train_module._LOADED) == train_module.LOADED_KEEP
    frames = []
    for name in ("a", "b"):  # the second run's data comes from the first's load
        record = train(tmp_path / name, *small, "seed=1")
        frames.append(pd.read_parquet(f"{record['run_dir']}/metrics.parquet").drop(columns="time_s"))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
    proc = cli(f"results_dir={tmp_path / 'fresh'}", *small, "seed=1", *DATA, "wandb.mode=disabled")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (f,) = (tmp_path / "fresh").glob("runs/**/metrics.parquet")
    pd.testing.assert_frame_equal(frames[0], pd.read_parquet(f).drop(columns="time_s"), check_exact=True)


def test_nan_loss_ends_run_as_diverged_and_keeps_metrics(tmp_path):
    record = train(tmp_path, "task=linreg", "optimizer=momentum", "optimizer.lr=1e6",
                   "train.epochs=5", "train.log_every=1")
    assert record["status"] == "diverged"
    assert "non-finite" in record["reason"]
    assert record["steps"] < 5 * 32
    (f,) = tmp_path.glob("runs/**/metrics.parquet")
    df = pd.read_parquet(f)
    assert len(df[df.metric == "batch_loss"]) == record["steps"]  # every step up to the stop is kept


def test_finished_run_is_skipped_and_a_changed_one_refused(tmp_path):
    first = train(tmp_path, "task=linreg", "train.epochs=1")
    again = train(tmp_path, "task=linreg", "train.epochs=1")
    assert again["started_at"] == first["started_at"]  # skipped: the record on disk is returned
    from nesterov_bench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"other settings \(train.epochs\).*force=true"):
        train(tmp_path, "task=linreg", "train.epochs=2")
    forced = train(tmp_path, "task=linreg", "train.epochs=2", "force=true")
    assert forced["started_at"] != first["started_at"] and forced["steps"] == 2 * 32


def test_a_finished_run_of_another_device_is_never_taken_in_its_place(tmp_path):
    """A run finished on a GPU is not the CPU's run of the same config (its numbers differ): refused,
    in one line, and replaced only with force=true."""
    first = train(tmp_path, "task=linreg", "train.epochs=1")
    path = f"{first['run_dir']}/run.json"
    record = json.loads(open(path).read())
    record["environment"]["device"] = "cuda"
    with open(path, "w") as f:
        f.write(json.dumps(record))
    with pytest.raises(ConfigError, match=r"made on cuda, and this one would train on cpu.*force=true"):
        train(tmp_path, "task=linreg", "train.epochs=1")
    assert train(tmp_path, "task=linreg", "train.epochs=1", "force=true")["environment"]["device"] == "cpu"


def test_half_written_run_is_redone(tmp_path):
    cfg = overrides(tmp_path, "task=linreg", "train.epochs=1")
    from omegaconf import OmegaConf

    run_dir = run_path(OmegaConf.to_container(compose_config(cfg), resolve=True))
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text('{"status": "compl')  # truncated by a crash
    (run_dir / "metrics.parquet").write_bytes(b"PAR1 garbage")
    record = train(tmp_path, "task=linreg", "train.epochs=1")
    assert record["status"] == "completed"
    assert len(pd.read_parquet(run_dir / "metrics.parquet")) > 0


@pytest.mark.parametrize("task,optimizer,lr,threshold", [
    ("mnist_logreg", "nesterov", 0.01, 0.89),  # the second article's setting (batch 64, momentum 0.9)
    pytest.param("mnist_cnn", "adam", 0.001, 0.97, marks=pytest.mark.slow),  # a real CNN epoch: ~75 s
])
def test_one_epoch_reaches_article_level_accuracy(tmp_path, task, optimizer, lr, threshold):
    record = train(tmp_path, f"task={task}", f"optimizer={optimizer}", f"optimizer.lr={lr}",
                   "train.epochs=1", "train.batch_size=64" if task == "mnist_logreg" else "seed=0",
                   "threads=2")
    assert record["status"] == "completed"
    assert record["final"]["test/accuracy"] >= threshold, record["final"]


@pytest.mark.parametrize("task", ["mnist_mlp", "mnist_cnn"])
def test_bf16_runs_in_its_own_directory_close_to_float32_with_float32_state(tmp_path, task):
    """train.precision=bf16 (mixed precision): the forward passes in bfloat16 -- numbers that differ from
    float32's, yet stay within bf16's rounding of them over a short CPU-sized run -- while the parameters
    stay float32; recorded in run.json and named in its own directory, so the float32 run of the same
    settings is never taken in its place (nor refused as a changed one)."""
    import torch

    from nesterov_bench import optimizers
    from nesterov_bench.config import resolve
    from nesterov_bench.loop import fit
    from nesterov_bench.train import load_data

    over = [f"task={task}", "optimizer=nesterov", "optimizer.lr=0.01", *SMALL_IMAGES, "train.max_steps=8",
            "train.log_every=2", "train.evals_per_epoch=1"]
    fp32 = train(tmp_path, *over)
    bf16 = train(tmp_path, *over, "train.precision=bf16")
    assert fp32["status"] == bf16["status"] == "completed"
    assert bf16["run_dir"] == fp32["run_dir"].replace(",momentum=0.9/", ",momentum=0.9,precision=bf16/")
    assert bf16["config"]["train"]["precision"] == "bf16" and fp32["config"]["train"]["precision"] is None
    a, b = (pd.read_parquet(f"{r['run_dir']}/metrics.parquet") for r in (fp32, bf16))
    assert list(a.step) == list(b.step) and list(a.metric) == list(b.metric)
    losses = a.metric.isin(["loss", "batch_loss"])
    assert not a.value.equals(b.value)  # autocast did run in bf16
    assert (b.value[losses] - a.value[losses]).abs().max() <= 0.02 * a.value[losses].abs().max()
    # through the loop itself: the parameters, their gradients and the momentum buffers stay float32
    s = resolve(compose_config(overrides(tmp_path, *over, "train.precision=bf16")))
    model = s.task.build_model()
    opt = optimizers.build(model.parameters(), s.opt)
    fit(s.task, model, opt, load_data(s), s.train, batch_generator=torch.Generator().manual_seed(0),
        record=lambda *_: None)
    tensors = [t for p in model.parameters() for t in (p, p.grad, *opt.state[p].values())]
    assert len(tensors) == 3 * len(list(model.parameters()))
    assert {t.dtype for t in tensors} == {torch.float32}


@pytest.mark.parametrize("when", ["last", "every"])
def test_eval_test_last_scores_the_test_split_once_at_the_end(tmp_path, when):
    """train.eval_test=last: validation and train at every evaluation, the test split only at the last
    (its final score is the same number a run evaluating it every time ends with)."""
    record = train(tmp_path, "task=linreg", "optimizer=gd", "train.epochs=3", "train.evals_per_epoch=2",
                   f"train.eval_test={when}")
    rows = pd.read_parquet(f"{record['run_dir']}/metrics.parquet")
    steps = {split: sorted(rows[rows.split == split].step.unique()) for split in ("val", "test")}
    assert len(steps["val"]) == 7  # at 0, then twice an epoch
    assert steps["test"] == (steps["val"][-1:] if when == "last" else steps["val"])
    assert "test/loss" in record["final"]
    every = train(tmp_path / "every", "task=linreg", "optimizer=gd", "train.epochs=3",
                  "train.evals_per_epoch=2")
    assert record["final"] == every["final"]


def test_eval_test_refuses_other_values(tmp_path):
    with pytest.raises(ConfigError, match="train.eval_test must be every, last or null"):
        train(tmp_path, "task=linreg", "train.eval_test=sometimes")


def test_a_full_batch_run_logs_every_log_every_steps_not_every_step(tmp_path):
    """Full batch, every step is an epoch: the training loss is logged every train.log_every steps (each
    the mean over its interval) and at the last, not at every epoch's end."""
    record = train(tmp_path, "task=quadratic", "optimizer=gd", "optimizer.lr=0.01", "train.epochs=25",
                   "train.log_every=10", "train.eval_every=5")
    rows = pd.read_parquet(f"{record['run_dir']}/metrics.parquet")
    logged = rows[rows.metric == "batch_loss"].step.tolist()
    assert logged == [10, 20, 25]
    assert sorted(rows[rows.metric == "suboptimality"].step.unique()) == [0, 5, 10, 15, 20, 25]


@pytest.mark.parametrize("extra", [
    [],  # 1000 examples at batch 32: 32 steps an epoch, the last one short
    ["train.evals_per_epoch=3", "train.eval_test=last"],
    ["train.evals_per_epoch=4", "train.max_steps=70"],  # cut short mid-epoch, after two mid-epoch points
    ["train.eval_every=2", "train.max_steps=96"],  # cut at an epoch's end that is not an evaluation epoch
    ["train.eval_every=2", "train.evals_per_epoch=2"],
    ["train.batch_size=full", "train.epochs=7", "train.eval_every=3", "train.evals_per_epoch=5"],
    ["train.batch_size=1000", "train.max_steps=4", "train.eval_test=last"],
])
def test_budget_counts_the_steps_and_evaluations_a_run_makes(tmp_path, extra):
    """loop.Budget (what scripts/estimate_paper_time.py projects from) is the schedule the loop follows."""
    from nesterov_bench.config import resolve
    from nesterov_bench.loop import Budget

    over = ["task=linreg", "optimizer=gd", "optimizer.lr=0.001", "train.epochs=3", *extra]
    record = train(tmp_path, *over)
    rows = pd.read_parquet(f"{record['run_dir']}/metrics.parquet")
    b = Budget.of(1000, resolve(compose_config(overrides(tmp_path, *over))).train)
    assert (b.total_steps, b.evaluations, b.test_evaluations) == (
        record["steps"], rows[rows.split == "val"].step.nunique(), rows[rows.split == "test"].step.nunique())
