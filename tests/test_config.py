"""Every YAML under conf/ composes, and the composed config validates."""

from pathlib import Path

import pytest

from nesterov_bench.config import compose as compose_config
from nesterov_bench.config import resolve
from nesterov_bench.tasks import TASKS

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUP_FILES = sorted(p for p in CONF.glob("*/*.yaml") if p.parent.name not in ("hydra", "experiment"))
PROFILES = sorted(p.stem for p in (CONF / "profile").glob("*.yaml"))


def test_every_group_file_is_tested():
    assert {p.parent.name for p in GROUP_FILES} >= {"task", "optimizer", "profile"}


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_group_file_composes(path: Path):
    extra = ["task=quadratic"] if path.parent.name == "tuning" else []  # theory needs a known spectrum
    cfg = compose_config([f"{path.parent.name}={path.stem}", *extra])
    settings = resolve(cfg)
    if path.parent.name == "task":
        assert settings.task.name == path.stem
    if path.parent.name == "optimizer":
        assert settings.opt.name == path.stem


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "adam"])
def test_every_task_with_every_optimizer_resolves(task: str, optimizer: str):
    s = resolve(compose_config([f"task={task}", f"optimizer={optimizer}"]))
    assert (s.task.name, s.opt.name) == (task, optimizer)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_profile_budget_composes(profile, task):
    s = resolve(compose_config([f"profile={profile}", f"task={task}"]))
    if profile != "default" and task in s.cfg["sweep"]["tasks"].split(","):
        assert (CONF / "budget" / profile / f"{task}.yaml").is_file(), "a profile budgets its tasks"
    assert s.task.name == task


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_composes(tmp_path, experiment, profile):
    from nesterov_bench.store import write_json

    name = "default" if profile == "default" else profile
    chosen = {"final": {"trial": 0, "lr": 0.01}, "speed": {"trial": 0, "lr": 0.01}}
    choices = {t: dict.fromkeys(("gd", "momentum", "nesterov", "adam"), chosen) for t in TASKS}
    (tmp_path / "tuned").mkdir()
    write_json(tmp_path / "tuned" / f"{name}.json", {"choices": choices})
    write_json(tmp_path / "tuned" / f"{name}-width64.json", {"choices": choices})  # experiment=width_final
    s = resolve(compose_config([f"experiment={experiment}", f"profile={profile}",
                                f"results_dir={tmp_path}"]))
    assert s.cfg["experiment_name"].startswith(name)


@pytest.mark.parametrize("launcher", sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml")))
def test_launcher_configs_compose(launcher):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher


def test_task_configs_match_registry():
    assert {p.stem for p in (CONF / "task").glob("*.yaml")} == set(TASKS)


def test_root_config_documents_the_overrides_users_reach_for():
    cfg = compose_config(["optimizer=adam"])
    for key in ("optimizer.lr", "optimizer.betas", "optimizer.eps", "train.epochs",
                "train.batch_size", "seed", "device", "data.root", "results_dir", "wandb.mode"):
        node, *rest = key.split(".")
        value = cfg[node]
        for k in rest:
            assert k in value, key
    momentum = compose_config(["optimizer=nesterov"])
    assert "momentum" in momentum.optimizer
    text = (CONF / "config.yaml").read_text()
    for key in ("epochs:", "batch_size:", "seed:", "device:", "root:", "results_dir:", "mode:"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(key))
        assert "#" in line, f"{key} has no comment giving its unit or meaning"
