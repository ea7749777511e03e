"""Rebuild a profile's results in order: tune -> select -> final -> the articles' recipes, the
quadratic-theory, noise-floor and schedule runs -> the analysis (tables, figures and numbers) -> the PDF
where LaTeX is installed.

    python -m nesterov_bench.reproduce [--profile quick] [--results results] [--launcher local] [KEY=VALUE]

KEY=VALUE overrides go to every training stage (e.g. ``data.download=true`` for the full profile's
CIFAR-10). Every dataset the profile needs is checked before the first run. The profile the paper is
built from (``paper_profile`` in conf/analysis.yaml) writes ``paper/generated``, the README's results
block and ``paper/main.pdf``; any other profile writes its report to ``<results>/reports/<profile>/``
and leaves the paper and the README alone.

Each training stage is a Hydra multirun: of ``nesterov_bench.members`` for the tasks that
``members.vectorize`` trains as vectorized populations on this device (one job per task x optimizer x
..., its seeds and grid points together), of ``nesterov_bench.train`` for the rest (one job per run);
``--vectorize`` (default auto) decides. A stage's log goes to ``<results>/logs/<profile>-<stage>.log``.
The total number of runs is printed up front, and one progress bar counts finished runs across all
stages. Everything is resumable: finished runs are skipped, so rerunning after an interruption (Ctrl-C:
one line, exit 130) redoes only what was unfinished.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig
from tqdm import tqdm

from . import CONF_DIR, minibatch, store
from .analyze.outputs import destinations, typeset
from .config import check_list_sweeps, compose, resolve_device, sweeper_params, swept_values
from .data import missing
from .env import host
from .errors import ConfigError
from .population import vectorizes
from .tasks import TASKS

DEFAULT_PROFILE = "quick"  # a 2-core CPU in under an hour; paper in hours; full needs a GPU and CIFAR-10

# The articles' own recipes run at their own budgets, except in the smoke profile.
RECIPES = ("seed000_linreg", "seed002_mnist", "seed002_as_written", "quadratic_theory", "noise_floor",
           "noisy_quadratic", "minibatch_quadratic", "schedule_forms", "schedule_forms_quadratic",
           "stability_map")
# The width sweep (claim v): the main study's tune -> select -> final once per width of mnist_mlp, each
# width its own study <profile>-width<W> (conf/experiment/width_tune.yaml, width_final.yaml).
WIDTH_STAGES = ("width_tune", "width_select", "width_final")
SMOKE_RECIPE_BUDGET = ["train.max_steps=20"]


@dataclass
class Stage:
    name: str  # tune | select | final | seed000_linreg | ...
    overrides: list[str]  # for a training stage; empty for select
    runs: int = 0
    stage_dir: Path | None = None  # where its run directories appear
    depth: int = 3  # directory levels between stage_dir and seed=N (task/optimizer/hp)
    modules: list[tuple[str, list[str]]] = field(default_factory=list)  # (module, its tasks), in order
    base: list[str] = field(default_factory=list)  # the overrides its config was composed with
    studies: list[str] = field(default_factory=list)  # a selection stage's studies (default: the profile)
    pattern: str = ""  # glob of its finished runs' run.json under stage_dir (default: by depth)


def by_vectorizing(cfg: DictConfig, params: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Which module trains which of a stage's tasks (``cfg``, ``params``: its composed config and
    sweeper params): ``members`` (one job per setting, its seeds and grid points one vectorized
    population) where ``members.vectorize`` vectorizes the task on this device, ``train`` (one job per
    run) for the rest -- a job of K runs one after another would only make the launcher's units of
    work coarser (a slow tail locally, K runs in series on a cluster)."""
    tasks = swept_values("task", params["task"]) if "task" in params else [cfg.task.name]
    device = resolve_device(cfg.device)
    together = [t for t in tasks if vectorizes(t, device, cfg.members.vectorize)]
    alone = [t for t in tasks if t not in together]
    return [(module, ts) for module, ts in (("members", together), ("train", alone)) if ts]


def swept(overrides: list[str], params: dict[str, str]) -> dict[str, list[str]]:
    """Each key a multirun sweeps, with its values: the experiment's sweeper ``params`` that the
    overrides do not set, and the overrides' own sweeps."""
    explicit = {o.split("=", 1)[0] for o in overrides if "=" in o}
    values = {key: swept_values(key, value) for key, value in params.items() if key not in explicit}
    parser = OverridesParser.create()
    for o in overrides:
        parsed = parser.parse_override(o)
        if parsed.is_sweep_override():
            values[parsed.get_key_element()] = list(parsed.sweep_string_iterator())
    return values


def sweep_size(overrides: list[str], cfg: DictConfig, params: dict[str, str]) -> tuple[int, Path]:
    """Runs a multirun will launch (the product of its swept values) and where they land."""
    stage_dir = Path(cfg.results_dir) / "runs" / cfg.experiment_name / cfg.stage
    return math.prod(len(v) for v in swept(overrides, params).values()), stage_dir


def run_jsons(st: Stage) -> list[Path]:
    """The run.json files under a training stage's directory, finished or not (nothing is read); only
    its own tasks' (``<task>/<optimizer>/<hp>/seed=N/run.json``) where two stages share a directory
    (schedule_forms and schedule_forms_quadratic)."""
    if st.stage_dir is None or not st.stage_dir.is_dir():
        return []
    tasks = {t for _, ts in st.modules for t in ts}
    return [p for p in st.stage_dir.glob(st.pattern or "*/" * st.depth + "seed=*/run.json")
            if not tasks or p.parts[-5] in tasks]


def run_files(st: Stage) -> list[Path]:
    """The run.json of each finished run of a training stage."""
    return [p for p in run_jsons(st) if store.is_finished(p.parent)]


def clashing(stages: list[Stage], overrides: list[str]) -> str | None:
    """The refusal when ``overrides`` (reproduce's KEY=VALUE) set what a stage's finished runs were made
    without (``ARGS='train.precision=bf16'`` over a store of float32 runs): the new runs would lie beside
    them as another setting, which the selection and the analysis refuse to pool
    (``store.check_one_setting``); said before any run, from one finished run per stage and task."""
    parser = OverridesParser.create()
    values = {o.key_or_group: o.value() for o in map(parser.parse_override, overrides)
              if not o.is_sweep_override()}
    for st in stages if values else ():
        seen = set()
        for path in run_jsons(st):
            if path.parts[-5] in seen or not store.is_finished(path.parent):
                continue
            seen.add(path.parts[-5])
            cfg = store.read_run(path.parent)["config"]
            if keys := store.clashes(cfg, values):
                return (f"{store.described(values, keys)} would make runs of another setting beside the "
                        f"finished runs of stage {st.name} ({path.parent} has "
                        f"{store.described(store.shared_setting(cfg), keys)}), and the selection and the "
                        "analysis refuse to pool them: drop it, or reproduce into another results directory "
                        "(RESULTS=DIR)")
    return None


def finished(st: Stage) -> int:
    return len(run_files(st))


class Timing:
    """``<results>/timing/<profile>.json``: the wall time of each ``reproduce`` of a profile, stage by stage.

    Each command is a sitting, appended to the file's ``sittings``: when it started, on what (host, commit,
    launcher), how many runs were already finished (0: from an empty store), each stage's seconds and
    finished runs as it ends, and how the sitting ended (done, failed, interrupted). A heartbeat every
    ``BEAT`` seconds keeps ``last_seen_at`` current, so a sitting killed outright (SIGKILL, a lost
    machine) still says how long it ran, to within a beat. A resumed reproduce adds a sitting; the time
    of a profile is the sum over its sittings (``total_hours``), the pauses between them not counted.
    Written atomically, so a kill never leaves half a file."""

    BEAT = 60.0

    def __init__(self, results: str, profile: str, launcher: str | None, finished_before: int) -> None:
        self.path = Path(results) / "timing" / f"{profile}.json"
        try:
            self.record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.record = {"profile": profile, "sittings": []}
        self.sitting = {"started_at": _now(), "last_seen_at": _now(), "outcome": "running",
                        "launcher": launcher, "finished_before": finished_before, **host(), "stages": []}
        self.record["sittings"].append(self.sitting)
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.write()
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self.stop.wait(self.BEAT):
            self.write()

    def begin(self, name: str) -> None:
        """The stage now running and since when: what a sitting killed outright was doing."""
        self.sitting["running"] = {"stage": name, "since": _now()}
        self.write()

    def stage(self, name: str, seconds: float, runs: int, finished: int | None, whole: bool = True) -> None:
        """A stage's seconds in this sitting; ``whole=False``: it was cut short (its finished runs so far)."""
        self.sitting.pop("running", None)
        self.sitting["stages"].append({"stage": name, "seconds": round(seconds, 1), "runs": runs,
                                       "finished": finished, "whole": whole})
        self.write()

    def end(self, outcome: str) -> None:
        self.stop.set()
        self.sitting["outcome"] = outcome
        self.write()

    def write(self) -> None:
        with self.lock:
            self.sitting["last_seen_at"] = _now()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            store.write_json(self.path, self.record)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def total_hours(record: dict) -> float:
    """A timing record's hours over all its sittings (each from its start to its last sign of life)."""
    return sum(_seconds(s["started_at"], s["last_seen_at"]) for s in record["sittings"]) / 3600


def stage_minutes(record: dict) -> dict[str, float]:
    """Minutes per stage summed over a timing record's sittings, in the order they first ran; a sitting
    killed outright counts its running stage up to its last sign of life."""
    minutes: dict[str, float] = {}
    for s in record["sittings"]:
        spans = [(g["stage"], g["seconds"]) for g in s["stages"]]
        if "running" in s:
            spans.append((s["running"]["stage"], _seconds(s["running"]["since"], s["last_seen_at"])))
        for name, seconds in spans:
            minutes[name] = minutes.get(name, 0.0) + seconds / 60
    return minutes


def resume_minutes(record: dict) -> float:
    """Minutes a timing record's later sittings spent on stages that an earlier sitting had finished
    whole: the cost of resuming (listing and skipping their finished runs, selecting again), which
    one sitting from start to end does not pay."""
    done: set[str] = set()
    minutes = 0.0
    for s in record["sittings"]:
        minutes += sum(g["seconds"] for g in s["stages"] if g["stage"] in done) / 60
        done |= {g["stage"] for g in s["stages"] if g.get("whole", True)}
    return minutes


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def launchers() -> list[str]:
    """The Hydra launchers this installation knows (conf/hydra/launcher/ and the installed plugins)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options("hydra/launcher"))


def plan(profile: str, results: str, launcher: str | None, vectorize: str = "auto",
         overrides: list[str] | tuple[str, ...] = ()) -> list[Stage]:
    """The stages in order; ``vectorize`` (auto | true | false) is every stage's members.vectorize;
    ``overrides`` (``key=value``, e.g. ``data.download=true``) go to every training stage. A bad
    launcher or override is a ConfigError here, before anything runs."""
    if launcher:
        known = launchers()
        if launcher not in known:
            raise ConfigError(f"unknown launcher {launcher!r}; choose one of: {', '.join(known)}")
    common = [f"profile={profile}", f"results_dir={results}", f"members.vectorize={vectorize}"]
    if launcher:
        common.append(f"hydra/launcher={launcher}")
    stages = [Stage("tune", ["experiment=tune", *common, *overrides]), Stage("select", []),
              Stage("final", ["experiment=final", *common, *overrides])]
    extra = SMOKE_RECIPE_BUDGET if profile == "smoke" else []
    for recipe in RECIPES:
        stages.append(Stage(recipe, [f"experiment={recipe}", *common, *extra, *overrides]))
    for name in WIDTH_STAGES:
        stages.append(Stage(name, [] if name == "width_select" else
                            [f"experiment={name}", *common, *extra, *overrides]))
    for st in stages:
        if st.overrides:
            base = [o for o in st.overrides if not o.startswith("hydra/")]
            if st.name in ("final", "width_final"):  # its trial comes from a tuned file, maybe not there yet
                base = [*base, "trial=0"]
            if st.name.startswith("schedule_forms"):  # so do its lr and momentum
                base = [*base, "optimizer.lr=1.0", "optimizer.momentum=0.9"]
            check_list_sweeps(base)
            cfg, params = compose(base), sweeper_params(base)
            st.runs, st.stage_dir = sweep_size(base, cfg, params)
            st.modules = by_vectorizing(cfg, params)
            st.base = base
            if st.name.startswith(("quadratic_theory", "noise_floor", "noisy", "minibatch", "schedule_forms",
                                   "stability")):
                # their stage (kappa=, batch=, sigma=, the schedule) is swept
                st.stage_dir, st.depth = st.stage_dir.parent, 4
            if st.name.startswith("width"):  # one experiment per width: <profile>-width<W>/<tune|final>
                st.pattern = f"{cfg.sweep.name}-width*/{cfg.stage}/*/*/*/seed=*/run.json"
                st.stage_dir = st.stage_dir.parent.parent
    widths = swept_values("sweep.width", str(compose([*common, "experiment=width_tune"]).sweep.widths))
    stages[[s.name for s in stages].index("width_select")].studies = [f"{profile}-width{w}" for w in widths]
    stages.append(Stage("analyze", []))
    return stages


def missing_data(profile: str, stages: list[Stage]) -> str | None:
    """The first dataset the profile's runs need and cannot find (``data.missing``), as one line with
    the fixes; None when every one is there or will be downloaded. Reads and creates nothing."""
    checked = set()
    for st in stages:
        for task in (t for _, tasks in st.modules for t in tasks):
            dataset = getattr(TASKS.get(task), "dataset", None)  # None: generated in memory
            data = compose([*st.base, f"task={task}"]).data if dataset else None
            key = (dataset, data and str(data.root), data and str(data.source))
            if dataset is None or data.download or data.generated or key in checked:
                continue
            checked.add(key)
            if why := missing(dataset, data.root, data.source):
                return (f"profile {profile} needs {dataset} (task {task}): {why} "
                        f"(make reproduce PROFILE={profile} ARGS='data.download=true')")
    return None


def commands(st: Stage, args: argparse.Namespace) -> list[list[str]]:
    """A stage's commands (``python`` arguments), run in order: a training stage's one sweep per
    module (``Stage.modules``), else the one selection or analysis command."""
    if st.name in ("select", "width_select"):
        return [["-m", "nesterov_bench.select", "--profile", study, "--results", args.results]
                for study in st.studies or [args.profile]]
    if st.name == "analyze":
        return [["-m", "nesterov_bench.analyze", "--profile", args.profile, "--results", args.results,
                 *(["--out", args.analysis_out] if args.analysis_out else []),
                 *(["--no-readme"] if args.no_readme else [])]]
    return [["-m", f"nesterov_bench.{module}", "-m", *st.overrides, f"task={','.join(tasks)}"]
            for module, tasks in st.modules]


def run_logged(cmd: list[str], log) -> int:
    """Run ``python cmd`` with its output in ``log``; its exit status. On Ctrl-C the child (which got
    the same SIGINT from the terminal) is given time to finish its own cleanup, then stopped."""
    child = subprocess.Popen([sys.executable, *cmd], stdout=log, stderr=subprocess.STDOUT)
    try:
        return child.wait()
    except KeyboardInterrupt:
        for sig, grace in ((None, 2.0), (signal.SIGINT, 10.0), (signal.SIGKILL, None)):
            if sig is not None:
                child.send_signal(sig)
            try:
                child.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:  # a second Ctrl-C: stop it now
                child.kill()
                child.wait()
                break
        raise


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nesterov_bench.reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="Hydra overrides for every training stage, e.g. data.download=true")
    ap.add_argument("--profile", default=DEFAULT_PROFILE,
                    help=f"smoke | quick | paper | full (default: {DEFAULT_PROFILE})")
    ap.add_argument("--results", default="results", help="results_dir (default: results)")
    ap.add_argument("--launcher", default=None,
                    help="a Hydra launcher, e.g. local (parallel jobs on this machine) or slurm")
    ap.add_argument("--vectorize", default="auto", choices=("auto", "true", "false"),
                    help="members.vectorize for every stage: auto (default) trains a setting's seeds and "
                         "grid points as one vectorized program where make bench measured it faster; "
                         "false trains every run on its own")
    ap.add_argument("--analysis-out", default=None,
                    help="where the analysis writes tables, figures and numbers (default: paper/generated "
                         "for the paper's profile, <results>/reports/<profile>/generated for another)")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the README's results block")
    ap.add_argument("--no-pdf", action="store_true", help="do not typeset the PDF")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan (runs per stage, the commands) and stop")
    args = ap.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        ap.error(f"{bad[0]!r} is not an override: write KEY=VALUE (e.g. data.download=true)")
    stages: list[Stage] = []
    try:
        try:
            stages = plan(args.profile, args.results, args.launcher, args.vectorize, args.overrides)
            clash = clashing(stages, args.overrides)
            if clash:
                raise ConfigError(clash)
            lacking = missing_data(args.profile, stages)
            if lacking and not args.dry_run:
                raise ConfigError(lacking)
            if lacking:
                print(f"warning: {lacking}", file=sys.stderr)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        _run(args, stages)
    except KeyboardInterrupt:
        done = sum(finished(st) for st in stages if st.overrides and st.stage_dir.is_dir())
        print(f"interrupted: {done} runs finished, rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def _run(args: argparse.Namespace, stages: list[Stage]) -> None:
    total = sum(st.runs for st in stages)
    print(f"profile {args.profile}: {total} runs in all -- "
          + ", ".join(f"{st.name} {st.runs}" for st in stages if st.overrides), flush=True)
    if args.dry_run:
        for st in stages:
            for cmd in commands(st, args):
                print(f"  {st.name}: python {' '.join(cmd)}")
        return
    dest = destinations(args.results, args.profile, args.analysis_out, no_readme=args.no_readme)
    logs = Path(args.results) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    minibatch.ensure()  # the points ${batch_setting:} reads (committed: recomputed only for new settings)
    timing = _run_stages(args, stages, logs)
    t_pdf = time.perf_counter()
    timing.begin("pdf")
    try:
        pdf = "no PDF (--no-pdf)" if args.no_pdf else typeset(dest, logs / f"{args.profile}-pdf.log")
    except RuntimeError as e:
        timing.end("failed: pdf")
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    timing.stage("pdf", time.perf_counter() - t_pdf, 0, None)
    timing.end("done")
    tuned = store.tuned_path(args.results, args.profile)  # (the selected hyperparameters)
    if dest.is_paper:
        where = f"tables, figures and numbers in {dest.out}" + (
            f", the results block of {dest.readme}" if dest.readme else "")
    else:
        where = f"report in {dest.out.parent}/ ({'report.md, ' if dest.report else ''}{dest.out.name}/)"
    print(f"profile {args.profile}: done in {time.perf_counter() - t0:.0f} s; {total} runs; selected "
          f"hyperparameters in {tuned}; {where}; {pdf}")


def _progress(stages: list[Stage], known: set[Path], running: list[Stage]) -> tuple[tqdm, threading.Event]:
    """The progress bar over all runs, from the ``known`` finished ones, and the event that stops its
    watcher. On a terminal a watcher thread counts finished run directories, whichever launcher made
    them: every 2 s it lists the ``running`` stage's run.json files and reads only the new ones
    (re-reading the whole store each second cost a quarter of a core at about 1,000 runs, and more with
    every run). Without a terminal (a log, CI) there is neither bar nor watcher."""
    stop, interactive = threading.Event(), sys.stderr.isatty()
    bar = tqdm(total=sum(st.runs for st in stages), initial=len(known), unit="run", dynamic_ncols=True,
               disable=not interactive)

    def watch() -> None:
        while not stop.wait(2.0):
            known.update(p for p in run_jsons(running[0]) if p not in known and store.is_finished(p.parent))
            bar.n = len(known)
            bar.refresh()

    if interactive:
        threading.Thread(target=watch, daemon=True).start()
    return bar, stop


def _run_commands(st: Stage, args: argparse.Namespace, log_path: Path) -> int:
    """A stage's commands in order, logged to ``log_path``; the first non-zero exit status, else 0."""
    with open(log_path, "w") as log:
        for cmd in commands(st, args):
            log.write(f"--- {' '.join(cmd[1:])}\n")
            log.flush()
            if (code := run_logged(cmd, log)) != 0:
                return code
    return 0


def _run_stages(args: argparse.Namespace, stages: list[Stage], logs: Path) -> Timing:
    """Each stage's commands in order, logged to ``logs`` and timed (``Timing``); one progress bar counts
    finished runs (on a terminal; in CI logs one line per stage). A failed stage ends reproduce with its
    log's last lines."""
    known = {p for st in stages if st.overrides for p in run_files(st)}  # finished run.json files, once
    if known:
        print(f"{len(known)} runs already finished: resuming", flush=True)
    timing = Timing(args.results, args.profile, args.launcher, len(known))
    running = [stages[0]]
    bar, stop = _progress(stages, known, running)
    t_stage = time.perf_counter()
    try:
        for st in stages:
            running[0] = st
            timing.begin(st.name)
            bar.set_description(st.name)
            log_path, t_stage = logs / f"{args.profile}-{st.name}.log", time.perf_counter()
            code = _run_commands(st, args, log_path)
            files = run_files(st) if st.overrides else []  # the stage's finished runs, read once
            count = len(files) if st.overrides else None
            if not bar.disable:  # the bar's count, exact at the stage's end
                known.update(files)
                bar.n = len(known)
                bar.refresh()
            timing.stage(st.name, time.perf_counter() - t_stage, st.runs, count)
            if bar.disable:
                done = f"{count}/{st.runs} runs finished, " if st.overrides else ""
                print(f"stage {st.name}: {done}{time.perf_counter() - t_stage:.0f} s", flush=True)
            lines = log_path.read_text().splitlines()
            if code != 0:
                timing.end(f"failed: stage {st.name}")
                bar.close()
                print(f"stage {st.name} failed (exit {code}); last lines of {log_path}:", file=sys.stderr)
                print("\n".join(lines[-15:]), file=sys.stderr)
                sys.exit(code)
            for w in (ln for ln in lines if st.name.endswith("select") and ln.startswith("warning")):
                tqdm.write(w)
    except KeyboardInterrupt:
        st = running[0]
        timing.stage(st.name, time.perf_counter() - t_stage, st.runs, finished(st) if st.overrides else None,
                     whole=False)
        timing.end("interrupted")
        bar.leave = False  # the one line main prints replaces the bar
        raise
    finally:
        stop.set()
        bar.close()
    return timing


if __name__ == "__main__":
    main()
