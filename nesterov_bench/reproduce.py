"""Rebuild a profile's results in order: tune -> select -> final -> the articles' recipes and the
quadratic-theory runs -> the analysis (tables, figures and numbers of the paper).

    python -m nesterov_bench.reproduce --profile quick [--results results] [--launcher local]

Each training stage is a Hydra multirun: of ``nesterov_bench.members`` for the tasks that
``members.vectorize`` trains as vectorized populations on this device (one job per task x optimizer x
..., its seeds and grid points together), of ``nesterov_bench.train`` for the rest (one job per run);
``--vectorize`` (default auto) decides. A stage's log goes to ``<results>/logs/<profile>-<stage>.log``.
The total number of runs is printed up front, and one progress bar counts finished runs across all
stages. Everything is resumable: finished runs are skipped, so rerunning after an interruption redoes
only what was unfinished.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig
from tqdm import tqdm

from . import store
from .cli import compose_config, sweeper_params, swept_values
from .errors import ConfigError

# The articles' own recipes run at their own budgets, except in the smoke profile.
RECIPES = ("seed000_linreg", "seed002_mnist", "quadratic_theory", "noise_floor")
SMOKE_RECIPE_BUDGET = ["train.max_steps=20"]


@dataclass
class Stage:
    name: str  # tune | select | final | seed000_linreg | ...
    overrides: list[str]  # for a training stage; empty for select
    runs: int = 0
    stage_dir: Path | None = None  # where its run directories appear
    depth: int = 3  # directory levels between stage_dir and seed=N (task/optimizer/hp)
    modules: list[tuple[str, list[str]]] = field(default_factory=list)  # (module, its tasks), in order


def by_vectorizing(cfg: DictConfig, params: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Which module trains which of a stage's tasks (``cfg``, ``params``: its composed config and
    sweeper params): ``members`` (one job per setting, its seeds and grid points one vectorized
    population) where ``members.vectorize`` vectorizes the task on this device, ``train`` (one job per
    run) for the rest -- a job of K runs one after another would only make the launcher's units of
    work coarser (a slow tail locally, K runs in series on a cluster)."""
    from . import members
    from .train import resolve_device

    tasks = swept_values("task", params["task"]) if "task" in params else [cfg.task.name]
    device = resolve_device(cfg.device)
    together = [t for t in tasks if members.vectorize(cfg, t, device)]
    alone = [t for t in tasks if t not in together]
    return [(module, ts) for module, ts in (("members", together), ("train", alone)) if ts]


def sweep_size(overrides: list[str], cfg: DictConfig, params: dict[str, str]) -> tuple[int, Path]:
    """Runs a multirun will launch (the product of its swept values) and where they land."""
    explicit = {o.split("=", 1)[0] for o in overrides if "=" in o}
    sizes = [len(swept_values(key, value)) for key, value in params.items() if key not in explicit]
    parser = OverridesParser.create()
    for o in overrides:
        parsed = parser.parse_override(o)
        if parsed.is_sweep_override():
            sizes.append(len(list(parsed.sweep_string_iterator())))
    stage_dir = Path(cfg.results_dir) / "runs" / cfg.experiment_name / cfg.stage
    return math.prod(sizes), stage_dir


def finished(st: Stage) -> int:
    pattern = "*/" * st.depth + "seed=*/run.json"
    return sum(store.is_finished(p.parent) for p in st.stage_dir.glob(pattern))


def plan(profile: str, results: str, launcher: str | None, vectorize: str = "auto") -> list[Stage]:
    """The stages in order; ``vectorize`` (auto | true | false) is every stage's members.vectorize."""
    common = [f"profile={profile}", f"results_dir={results}", f"members.vectorize={vectorize}"]
    if launcher:
        common.append(f"hydra/launcher={launcher}")
    stages = [Stage("tune", ["experiment=tune", *common]), Stage("select", []),
              Stage("final", ["experiment=final", *common])]
    for recipe in RECIPES:
        extra = SMOKE_RECIPE_BUDGET if profile == "smoke" else []
        stages.append(Stage(recipe, [f"experiment={recipe}", *common, *extra]))
    for st in stages:
        if st.overrides:
            base = [o for o in st.overrides if not o.startswith("hydra/")]
            if st.name == "final":  # its lr comes from the tuned file, which does not exist yet
                base = [*base, "optimizer.lr=1.0"]
            cfg, params = compose_config(base), sweeper_params(base)
            st.runs, st.stage_dir = sweep_size(base, cfg, params)
            st.modules = by_vectorizing(cfg, params)
            if st.name in ("quadratic_theory", "noise_floor"):  # their stage name (kappa=, batch=) is swept
                st.stage_dir, st.depth = st.stage_dir.parent, 4
    stages.append(Stage("analyze", []))
    return stages


def commands(st: Stage, args: argparse.Namespace) -> list[list[str]]:
    """A stage's commands (``python`` arguments), run in order: a training stage's one sweep per
    module (``Stage.modules``), else the one selection or analysis command."""
    if st.name == "select":
        return [["-m", "nesterov_bench.select", "--profile", args.profile, "--results", args.results]]
    if st.name == "analyze":
        return [["-m", "nesterov_bench.analyze", "--profile", args.profile, "--results", args.results,
                 "--out", args.analysis_out, *(["--no-readme"] if args.no_readme else [])]]
    return [["-m", f"nesterov_bench.{module}", "-m", *st.overrides, f"task={','.join(tasks)}"]
            for module, tasks in st.modules]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nesterov_bench.reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="paper", help="smoke | quick | paper (default: paper)")
    ap.add_argument("--results", default="results", help="results_dir (default: results)")
    ap.add_argument("--launcher", default=None,
                    help="a Hydra launcher, e.g. joblib (parallel jobs on this machine)")
    ap.add_argument("--vectorize", default="auto", choices=("auto", "true", "false"),
                    help="members.vectorize for every stage: auto (default) trains a setting's seeds and "
                         "grid points as one vectorized program where make bench measured it faster; "
                         "false trains every run on its own")
    ap.add_argument("--analysis-out", default="paper/generated",
                    help="where the analysis writes tables, figures and numbers (default: paper/generated)")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the README's results block")
    ap.add_argument("--dry-run", action="store_true", help="print the plan (runs per stage) and stop")
    args = ap.parse_args(argv)
    try:
        stages = plan(args.profile, args.results, args.launcher, args.vectorize)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    total = sum(st.runs for st in stages)
    print(f"profile {args.profile}: {total} runs in all -- "
          + ", ".join(f"{st.name} {st.runs}" for st in stages if st.overrides))
    if args.dry_run:
        return
    logs = Path(args.results) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    train_stages = [st for st in stages if st.overrides]
    done0 = sum(finished(st) for st in train_stages)
    if done0:
        print(f"{done0} runs already finished: resuming")
    interactive = sys.stderr.isatty()  # in CI logs: one line per stage instead of a live bar
    bar = tqdm(total=total, initial=done0, unit="run", dynamic_ncols=True, disable=not interactive)
    stop = threading.Event()

    def watch() -> None:  # counts finished run directories, whichever launcher made them
        while not stop.wait(1.0):
            bar.n = sum(finished(st) for st in train_stages)
            bar.refresh()

    threading.Thread(target=watch, daemon=True).start()
    t0 = time.perf_counter()
    try:
        for st in stages:
            bar.set_description(st.name)
            log_path = logs / f"{args.profile}-{st.name}.log"
            t_stage = time.perf_counter()
            with open(log_path, "w") as log:
                for cmd in commands(st, args):
                    log.write(f"--- {' '.join(cmd[1:])}\n")
                    log.flush()
                    code = subprocess.run([sys.executable, *cmd], stdout=log,
                                          stderr=subprocess.STDOUT).returncode
                    if code != 0:
                        break
            if not interactive:
                done = f"{finished(st)}/{st.runs} runs finished, " if st.overrides else ""
                print(f"stage {st.name}: {done}{time.perf_counter() - t_stage:.0f} s", flush=True)
            if code != 0:
                stop.set()
                bar.close()
                tail = log_path.read_text().splitlines()[-15:]
                print(f"stage {st.name} failed (exit {code}); last lines of {log_path}:", file=sys.stderr)
                print("\n".join(tail), file=sys.stderr)
                sys.exit(code)
            if st.name == "select":
                warnings = [ln for ln in log_path.read_text().splitlines() if ln.startswith("warning")]
                for w in warnings:
                    tqdm.write(w)
    finally:
        stop.set()
    bar.n = sum(finished(st) for st in train_stages)
    bar.close()
    print(f"profile {args.profile}: done in {time.perf_counter() - t0:.0f} s; tuned learning rates in "
          f"{Path(args.results) / 'tuned' / (args.profile + '.json')}; tables, figures and numbers in "
          f"{args.analysis_out} (make paper-pdf builds the PDF)")


if __name__ == "__main__":
    main()
