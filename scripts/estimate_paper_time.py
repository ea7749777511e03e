"""Project how long ``make reproduce PROFILE=<profile>`` takes on this device, stage by stage, from
measured per-step and per-evaluation costs.

    python scripts/estimate_paper_time.py [--profile paper] [--device auto] [--jobs 2] [--check]
                                          [--out results/bench] [--readme README.md] [KEY=VALUE ...]
    make estimate PROFILE=paper [JOBS=2] [ARGS='task.memory_format=channels_last']
    python scripts/estimate_paper_time.py --profile full --per-step results/bench/gpu.json --readme README.md

Every training stage of ``reproduce.plan`` (tune, final, the recipes, the studies, the width sweep) is
expanded into the jobs its Hydra multirun launches -- one per run for the tasks ``train`` trains, one
vectorized population per setting for those ``members`` trains (``reproduce.by_vectorizing``) -- and each
job into its steps and evaluations (``loop.Budget``, the schedule the loop itself follows). Each kind of
job (a task, its sizes, batch, evaluation subset, optimizer and population size) is timed once, here, on
the real run path (``train.run_all`` for a slice of its steps, into a temporary store): seconds per
training step, per evaluation pass (each split timed on its own), per run for the rest of what a run's
``wall_time_s`` holds (building the model, writing its files), and per job for what lies outside it
(loading the data, claiming the directory). A short Hydra multirun measures the launcher's own cost per
job and per command. The projection is

    job = steps x step + members x (evaluations x evaluation pass + test evaluations x test pass + rest)
          + outside + launcher per job

summed per stage and task (one job after another) and laid out over ``--jobs`` workers in launch order
(``LAUNCHER=local``: ``hydra.launcher.n_jobs``). Each kind is timed as ``--jobs`` copies side by side
(their mean): a multirun launches the jobs of one setting one after another, so they run beside each
other, and each timing is taken under that load. A run that diverges stops early, so tuning stages come
out as upper bounds. Selection, analysis and the PDF are not projected. ``KEY=VALUE`` overrides go to
every stage, as for ``reproduce``; one of ``task.KEY=VALUE`` to the tasks that have KEY (e.g.
``task.memory_format=channels_last``, the CNNs laid out channels last: a lever projected), and one of
``TASK[,TASK...]:KEY=VALUE`` to those tasks' jobs only (e.g. ``mnist_mlp,mnist_cnn,fmnist_cnn:
train.precision=bf16``, bf16 where a task computes in float32: a lever no single override can set, since
the quadratic studies run in float64).

``--check`` sets the projection beside the profile's finished runs in ``--results``: per stage and
task, the minutes their ``run.json`` record (``wall_time_s``, a population's shared among its members,
as the paper's time table counts them) against the projected minutes of the same part of each run.
CIFAR-10 (no download here) is timed on generated tensors of its real shape and projected at its real
training-set size.

``--per-step GPU_JSON`` times nothing here: it projects the training steps alone of every run of the
profile at the per-step costs ``make gpu-check`` measured on its device (``GPU_JSON``'s per_step rows at
one member: ``members.vectorize=auto`` trains one run at a time on CUDA), each run at its task's cost
(measured at the task's default size and batch). That is a lower bound on the profile's time on that
device, eager and float32: evaluations, data loading and the launcher are not in it; a task gpu-check did
not time (cifar10_cnn, without its data there) is counted in steps, not minutes. Written to
``OUT/projection-<profile>.json`` and, with ``--readme``, as a line of its generated table.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from itertools import product
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from nesterov_bench import reproduce, store  # noqa: E402
from nesterov_bench.analyze.tables import occupied_hours  # noqa: E402
from nesterov_bench.config import compose, plain, resolve, resolve_device, sweeper_params  # noqa: E402
from nesterov_bench.data import missing  # noqa: E402
from nesterov_bench.env import environment  # noqa: E402
from nesterov_bench.errors import ConfigError  # noqa: E402
from nesterov_bench.loop import Budget, evaluation_splits  # noqa: E402
from nesterov_bench.members import member_configs  # noqa: E402
from nesterov_bench.reproduce import Stage, plan, run_files, swept  # noqa: E402
from nesterov_bench.tasks import TASKS  # noqa: E402
from nesterov_bench.train import configure_torch, derived_seed, run_all  # noqa: E402

BENCH = REPO / "results" / "bench"
CIFAR_TRAIN = 50_000  # real CIFAR-10 training images (before the validation split)
STEP_SECONDS = 0.5  # training time a timing run aims for (a slice of the run's steps)
#: a profile's goal for ``make reproduce`` from an empty store on a 2-core CPU (issue 17; README)
GOAL_HOURS = {"quick": 0.5, "paper": 2.0}
#: and on one H100-class GPU (issue 17)
GPU_GOAL_HOURS = {"full": 20 / 60}
EVAL_REPEATS = 3  # timed passes of each split (their median)
PILOT_MEMBERS = 8  # members of the pilot run that sizes a population's slice
#: ``train`` keys that change neither a step's nor an evaluation's cost (the schedule's length and
#: shape): jobs differing only there are timed once.
FREE_TRAIN_KEYS = ("epochs", "max_steps", "log_every", "eval_every", "evals_per_epoch", "lr_schedule",
                   "momentum_schedule", "eval_test", "epoch_decay")


@dataclass
class Job:
    """One job of a stage's multirun: ``members`` runs of one setting, trained as one population
    (``vectorized``) or, for ``train``, one of ``count`` identical-cost single runs."""

    stage: str
    task: str
    cfg: dict  # the composed config of its first run (results_dir a temporary store)
    members: list[dict]  # the member configs of one job (one config for a single run)
    vectorized: bool
    count: int = 1  # how many such jobs the stage launches (train: one per run)

    @property
    def runs(self) -> int:
        return self.count * len(self.members)


@dataclass
class Cost:
    """Measured seconds of one kind of job on this device."""

    step: float  # a training step of the whole job (all its members)
    eval_pass: float  # one member's evaluation of every split but test
    test_pass: float  # one member's evaluation of the test split
    rest: float  # per run, the rest of its wall_time_s (model, files)
    outside: float  # per job, outside the runs' wall_time_s (data loading, claims)
    n_train: int  # the training split's size (what the budget's steps follow)
    timed_steps: int = 0


def named_tasks(override: str) -> list[str] | None:
    """The TASKS of a ``TASKS:KEY=VALUE`` override (a comma list); None for any other override."""
    key = override.split("=", 1)[0]
    return key.split(":", 1)[0].split(",") if ":" in key else None


def scoped(override: str) -> bool:
    """Whether an override applies to some tasks only: ``task.KEY=VALUE`` or ``TASKS:KEY=VALUE``."""
    return override.startswith("task.") or named_tasks(override) is not None


def applies(override: str, task: dict) -> str | None:
    """The override to give a job of ``task`` (its config), or None: ``task.KEY=VALUE`` where the task has
    KEY, ``TASKS:KEY=VALUE`` (as ``KEY=VALUE``) where TASKS names it."""
    tasks = named_tasks(override)
    if tasks is not None:
        return override.split(":", 1)[1] if task["name"] in tasks else None
    return override if override.split("=", 1)[0].removeprefix("task.") in task else None


def jobs_of(st: Stage, results: str, task_overrides: list[str] = ()) -> list[Job]:
    """The jobs a training stage launches, grouped by setting (what ``members -m`` makes one job of).
    ``task_overrides`` apply to some tasks' jobs only (``applies``)."""
    own = swept(st.base, {})  # the overrides' own sweeps
    fixed = [o for o in st.base if o.split("=", 1)[0] not in own]
    values = swept(st.base, sweeper_params(fixed))
    grouped = {"seed", "trial"} | ({"optimizer.lr"} & set(own))  # members.group_sweep's rule
    together = {t for module, tasks in st.modules if module == "members" for t in tasks}
    member_keys = [k for k in values if k in grouped]
    other_keys = [k for k in values if k not in grouped]
    jobs = []
    for combo in product(*(values[k] for k in other_keys)):
        over = [*fixed, *(f"{k}={v}" for k, v in zip(other_keys, combo, strict=True)),
                f"results_dir={results}", "wandb.mode=disabled", "progress=false"]
        firsts = [f"{k}={values[k][0]}" for k in member_keys]
        cfg = plain(compose([*over, *firsts]))
        mine = [a for o in task_overrides if (a := applies(o, cfg["task"]))]
        if mine:
            cfg = plain(compose([*over, *mine, *firsts]))
        task = cfg["task"]["name"]
        lists = {"seeds": [int(v) for v in values.get("seed", [cfg["seed"]])],
                 "trials": [int(v) for v in values["trial"]] if "trial" in values else None,
                 "lrs": [float(v) for v in values["optimizer.lr"]] if "optimizer.lr" in member_keys else None}
        if task == "cifar10_cnn" and not cfg["data"].get("download") and missing(
                "CIFAR10", cfg["data"]["root"], cfg["data"].get("source")):
            cfg["data"]["generated"] = True  # its real shape; project() scales to its real training set
        members = member_configs({**cfg, "members": {**cfg["members"], **lists}})
        if task in together:  # (reproduce.by_vectorizing: where population.vectorizes says so)
            jobs.append(Job(st.name, task, cfg, members, True))
        else:
            jobs.append(Job(st.name, task, cfg, members[:1], False, count=len(members)))
    return jobs


def cost_key(job: Job) -> str:
    cfg = job.cfg
    train = {k: v for k, v in cfg["train"].items() if k not in FREE_TRAIN_KEYS}
    k = len(job.members) if job.vectorized else 1
    return json.dumps([cfg["task"], train, cfg["data"], cfg["device"], cfg["threads"],
                       cfg["optimizer"]["name"], k], sort_keys=True, default=str)


def real_train_size(job: Job) -> int | None:
    """CIFAR-10's real training-split size for a cifar10_cnn job timed on generated tensors in its place
    (no download here); None for every other job (its own data's size holds)."""
    if job.task == "cifar10_cnn" and job.cfg["data"].get("generated"):
        return CIFAR_TRAIN - job.cfg["task"]["val_size"]
    return None


def budget(job: Job, n_train: int) -> Budget:
    """The job's schedule on a training split of ``n_train`` examples (CIFAR-10's real size instead,
    when it was timed on generated tensors)."""
    return Budget.of(real_train_size(job) or n_train, resolve(job.cfg).train)


def _timed_run(job: Job, tmp: Path, steps: int, members: int | None = None) -> tuple[float, list[dict]]:
    """Run the job's first ``members`` members (all by default) for ``steps`` steps through the real run
    path into ``tmp``, evaluated only before the first step and after the last; the seconds ``run_all``
    took and the records."""
    cfgs = [{**c, "results_dir": str(tmp), "force": True,
             "train": {**c["train"], "max_steps": steps, "eval_every": 10**9, "evals_per_epoch": 1}}
            for c in job.members[:members]]
    t0 = time.perf_counter()
    records = run_all([resolve(c) for c in cfgs], vectorized=job.vectorized)
    return time.perf_counter() - t0, records


def measure(job: Job, tmp: Path) -> Cost:
    """Time one kind of job: its evaluation passes on their own, then (after a pilot of a few members that
    sizes it) a slice of its training steps on the real run path."""
    s = resolve(job.cfg)
    configure_torch(s)  # the run's threads (the evaluation passes below come before run_all sets them)
    data = s.task.load_data(s.cfg["data"], s.device)
    n_train = len(data.train)
    tc = s.train
    splits = evaluation_splits(data, tc)
    torch.manual_seed(derived_seed(s.seed, 0))
    model = s.task.build_model().to(s.device).eval()
    passes = {}
    for name, split in splits.items():
        s.task.evaluate(model, split, tc.eval_batch_size, data)  # warm-up
        times = []
        for _ in range(EVAL_REPEATS):
            t = time.perf_counter()
            s.task.evaluate(model, split, tc.eval_batch_size, data)
            times.append(time.perf_counter() - t)
        passes[name] = statistics.median(times)
    eval_pass = sum(v for k, v in passes.items() if k != "test")
    test_pass = passes.get("test", 0.0)
    full = Budget.of(n_train, tc).total_steps
    k = len(job.members)
    few = min(k, PILOT_MEMBERS)
    pilot = _timed_run(job, tmp / "pilot", min(full, 5), members=few)[1][0]
    per_step = pilot["train_time_s"] / max(pilot["steps"], 1) * k / few  # at most (K members as one program)
    for attempt in range(2):  # a second, longer slice when the first was too short to time
        steps = max(min(full, 5), min(full, 5000, math.ceil(STEP_SECONDS / max(per_step, 1e-6))))
        total, records = _timed_run(job, tmp / f"timed{attempt}", steps)
        rec = records[0]
        per_step = rec["train_time_s"] / rec["steps"]
        if rec["train_time_s"] >= STEP_SECONDS / 2 or steps == full:
            break
    timed = Budget.of(n_train, replace(tc, max_steps=steps, eval_every=10**9, evals_per_epoch=1))
    evals = k * (timed.evaluations * eval_pass + timed.test_evaluations * test_pass)
    wall = statistics.fmean(r["wall_time_s"] for r in records)  # each member's: the population's
    rest = max(0.0, (wall - rec["train_time_s"] - evals) / k)
    outside = max(0.0, total - wall)
    return Cost(rec["train_time_s"] / rec["steps"], eval_pass, test_pass, rest, outside, n_train, steps)


def mean_cost(costs: list[Cost]) -> Cost:
    """The mean of one kind's timings (its copies run side by side)."""
    fields = ("step", "eval_pass", "test_pass", "rest", "outside")
    return replace(costs[0], **{f: statistics.fmean(getattr(c, f) for c in costs) for f in fields})


def launcher_cost(tmp: Path, device: str) -> tuple[float, float]:
    """Seconds a Hydra multirun spends per command (start-up) and per job beyond the job's own run path,
    from one-step linreg multiruns of 1 and 11 jobs."""
    def once(n: int) -> float:
        cmd = [sys.executable, "-m", "nesterov_bench.train", "-m", "task=linreg", "train.max_steps=1",
               f"seed=range(0,{n})", f"results_dir={tmp / f'launcher{n}'}", "wandb.mode=disabled",
               f"device={device}"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            raise SystemExit(f"error: timing the launcher failed: {proc.stderr.strip().splitlines()[-1]}")
        return time.perf_counter() - t

    one, eleven = once(1), once(11)
    return one, (eleven - one) / 10


def lay_out(durations: list[float], workers: int) -> float:
    """Wall time of jobs handed out in order to the first free of ``workers`` (joblib's dispatch)."""
    free = [0.0] * workers
    for d in durations:
        i = min(range(workers), key=free.__getitem__)
        free[i] += d
    return max(free, default=0.0)


def project(jobs: list[Job], costs: dict[str, Cost], per_job: float) -> list[dict]:
    """One row per job kind: its runs, and the projected seconds of its runs' wall_time_s and of a job."""
    rows = []
    for job in jobs:
        c = costs[cost_key(job)]
        b = budget(job, c.n_train)
        k = len(job.members)
        run_part = b.total_steps * c.step + k * (b.evaluations * c.eval_pass
                                                  + b.test_evaluations * c.test_pass + c.rest)
        rows.append({"stage": job.stage, "task": job.task, "runs": job.runs, "jobs": job.count,
                     "vectorized": job.vectorized, "steps": b.total_steps, "evaluations": b.evaluations,
                     "run_s": run_part * job.count, "job_s": run_part + c.outside + per_job})
    return rows


def steps_projection(args, jobs: list[Job], measured: dict) -> dict:
    """The training steps of every run of ``jobs`` at the per-step costs of ``measured`` (a gpu.json):
    per stage and task, runs, steps and minutes (none for a task it did not time)."""
    cost = {r["task"]: r for r in measured["sections"]["per_step"]["rows"]
            if r.get("members") == 1 and "ms_per_step" in r and "precision" not in r}  # float32
    n_train: dict[str, int] = {}
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for job in jobs:
        key = json.dumps([job.cfg["task"], job.cfg["data"]], sort_keys=True, default=str)
        if key not in n_train:  # (generated CIFAR-10 is not made: budget() takes its real size)
            s = resolve(job.cfg)
            n_train[key] = real_train_size(job) or len(s.task.load_data(s.cfg["data"], s.device).train)
        runs, steps = totals.get((job.stage, job.task), (0, 0))
        steps += job.runs * budget(job, n_train[key]).total_steps
        totals[job.stage, job.task] = (runs + job.runs, steps)
    rows = [{"stage": st, "task": task, "runs": runs, "steps": steps,
             "ms_per_step": cost[task]["ms_per_step"] if task in cost else None,
             "minutes": steps * cost[task]["ms_per_step"] / 60e3 if task in cost else None}
            for (st, task), (runs, steps) in totals.items()]
    env = measured["environment"]
    return {"profile": args.profile, "overrides": args.overrides, "date": date.today().isoformat(),
            "source": str(args.per_step), "device": env.get("device_name"), "torch": env.get("torch"),
            "measured_at": (env.get("git_commit") or "?")[:7], "rows": rows,
            "runs": sum(r["runs"] for r in rows), "steps": sum(r["steps"] for r in rows),
            "hours": sum(r["minutes"] for r in rows if r["minutes"] is not None) / 60,
            "untimed_steps": {t: sum(r["steps"] for r in rows if r["task"] == t)
                              for t in dict.fromkeys(r["task"] for r in rows if r["minutes"] is None)}}


def projected(p: dict) -> str:
    """One line for a steps-only projection (``--per-step``): its hours, by task, and what it leaves out."""
    by_task: dict[str, float] = {}
    for r in p["rows"]:
        if r["minutes"] is not None:
            by_task[r["task"]] = by_task.get(r["task"], 0.0) + r["minutes"] / 60
    left = "".join(f", {t}'s {n / 1e6:.1f} M steps (not timed there)" for t, n in p["untimed_steps"].items())
    named = "".join(f" `{o}`" for o in p["overrides"])
    tasks = ", ".join(f"{t} {h:.1f} h" for t, h in sorted(by_task.items(), key=lambda kv: -kv[1]))
    goal = GPU_GOAL_HOURS.get(p["profile"])
    goal = f" ({p['hours'] / goal:.0f}x its goal of {60 * goal:.0f} min on one GPU)" if goal else ""
    return (f"Projected (`scripts/estimate_paper_time.py --profile {p['profile']}{named} --per-step "
            f"{p['source']}`, {p['date']}): the training steps alone of `{p['profile']}`'s {p['runs']} runs "
            f"({p['steps'] / 1e6:.1f} M steps) at the per-step costs `make gpu-check` measured on one "
            f"{p['device']} (commit {p['measured_at']}; one run at a time, eager, float32): "
            f"**{p['hours']:.1f} h**{goal}, a lower bound: without evaluations, data loading, the "
            f"launcher{left}. By task: {tasks}.")


def measured_minutes(st: Stage) -> pd.DataFrame:
    """The profile's finished runs of a stage: task and minutes (a population's shared among members)."""
    rows = []
    for p in run_files(st):
        rec = json.loads(p.read_text())
        vec = rec.get("vectorized") or {"members": 1, "index": 0}
        rows.append({"task": rec["config"]["task"]["name"], "job": vec["index"] == 0,
                     "minutes": rec["wall_time_s"] / vec["members"] / 60,
                     "started_at": rec.get("started_at"), "finished_at": rec.get("finished_at")})
    return pd.DataFrame(rows, columns=["task", "minutes", "job", "started_at", "finished_at"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for every training stage")
    ap.add_argument("--profile", default="paper", help="the profile to project (default: paper)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--jobs", type=int, default=2,
                    help="jobs side by side (LAUNCHER=local; default 2): the timings run as many at a time")
    ap.add_argument("--results", default="results", help="the run store --check reads (default: results)")
    ap.add_argument("--check", action="store_true", help="set the projection beside the finished runs")
    ap.add_argument("--stages", default=None, help="comma list: project only these stages")
    ap.add_argument("--out", type=Path, default=BENCH,
                    help="write OUT/estimate-<profile>[-<stages>][-<overrides>].json (default results/bench)")
    ap.add_argument("--readme", type=Path, default=None,
                    help="rewrite this README's generated:estimate table from OUT's estimates")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite --readme's table from OUT's estimates (no timing)")
    ap.add_argument("--per-step", type=Path, default=None, metavar="GPU_JSON",
                    help="time nothing: project the training steps alone at make gpu-check's per-step costs")
    args = ap.parse_args()
    if args.render:
        update_readme(args.readme or REPO / "README.md", args.out, Path(args.results) / "timing")
        return
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        ap.error(f"{bad[0]!r} is not an override: write KEY=VALUE")
    if args.per_step:
        try:
            gpu = json.loads(args.per_step.read_text())
            gpu["sections"]["per_step"]["rows"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"error: --per-step {args.per_step}: not a gpu.json with a per_step section "
                             f"(make gpu-check writes one): {type(e).__name__}: {e}") from None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        task_overrides = [o for o in args.overrides if scoped(o)]
        unknown = sorted({t for o in task_overrides for t in named_tasks(o) or ()} - set(TASKS))
        if unknown:
            raise SystemExit(f"error: unknown task {unknown[0]!r} in a TASKS:KEY=VALUE override (tasks: "
                             f"{', '.join(TASKS)})")
        overrides = [f"device={args.device}", *(o for o in args.overrides if o not in task_overrides)]
        try:
            stages = [st for st in plan(args.profile, str(tmp / "store"), None, overrides=overrides)
                      if st.overrides]
            checked = {st.name: st for st in plan(args.profile, args.results, None)} if args.check else {}
            if args.stages:
                wanted = set(args.stages.split(","))
                stages = [st for st in stages if st.name in wanted]
            jobs = [job for st in stages for job in jobs_of(st, str(tmp / "store"), task_overrides)]
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None
        if args.per_step:
            write(args, "projection", steps_projection(args, jobs, gpu))
            return
        kinds = {cost_key(j): j for j in jobs}
        print(f"profile {args.profile}: {sum(j.runs for j in jobs)} runs in {sum(j.count for j in jobs)} "
              f"jobs of {len(kinds)} kinds; timing each kind on {args.device}", file=sys.stderr, flush=True)
        costs = {}
        # Each kind is timed as JOBS copies side by side (their mean), under the load its jobs run under:
        # a multirun launches the jobs of one setting one after another, so they run beside each other.
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for i, (key, job) in enumerate(kinds.items()):
                copies = [pool.submit(measure, job, tmp / f"kind{i}-{c}") for c in range(args.jobs)]
                costs[key] = c = mean_cost([f.result() for f in copies])
                print(f"  {job.stage:>24s} {job.task:13s} {job.cfg['optimizer']['name']:9s} "
                      f"x{len(job.members):<4d} {1000 * c.step:8.2f} ms/step  eval "
                      f"{1000 * c.eval_pass:7.1f} ms  test {1000 * c.test_pass:6.1f} ms  rest "
                      f"{1000 * c.rest:5.0f} ms  outside {1000 * c.outside:5.0f} ms  "
                      f"({c.timed_steps} steps timed)", file=sys.stderr, flush=True)
        per_command, per_job = launcher_cost(tmp, args.device)
    out = report(args, stages, pd.DataFrame(project(jobs, costs, per_job)), per_command, per_job, checked)
    show(out)
    write(args, "estimate", out)


def write(args, kind: str, out: dict) -> None:
    """OUT/<kind>-<profile>[-stages=..][-overrides].json, then the README's table if asked."""
    parts = [args.profile, *([f"stages={args.stages}"] if args.stages else []), *args.overrides]
    path = args.out / f"{kind}-{'-'.join(re.sub(r'[^A-Za-z0-9_.]+', '_', p) for p in parts)}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    store.write_atomic(path, lambda p: p.write_text(json.dumps(out, indent=2) + "\n"))
    if kind == "projection":
        print(projected(out))
    print(f"wrote {path}")
    if args.readme:
        update_readme(args.readme, args.out, Path(args.results) / "timing")


def report(args, stages: list[Stage], rows: pd.DataFrame, per_command: float, per_job: float,
           checked: dict[str, Stage]) -> dict:
    """The projection as a record (what ``--out`` receives and the README's table is made from)."""
    env = environment(resolve_device(args.device))
    out = {"profile": args.profile, "overrides": args.overrides, "stages": args.stages,
           "date": date.today().isoformat(), "device": env["device_name"],
           "cpu_capability": env.get("cpu_capability"), "jobs_side_by_side": args.jobs,
           "launcher_s_per_command": per_command, "launcher_s_per_job": per_job,
           "runs": int(rows.runs.sum()), "rows": [],
           "stage_wall_min": {}, "stage_measured_wall_min": {}}
    serial = parallel = 0.0
    for st in stages:
        mine = rows[rows.stage == st.name]
        durations = [r.job_s for r in mine.itertuples() for _ in range(r.jobs)]
        commands = len({m for m, _ in st.modules})
        serial += sum(durations) + commands * per_command
        wall = lay_out(durations, args.jobs) + commands * per_command
        parallel += wall
        out["stage_wall_min"][st.name] = wall / 60
        measured = measured_minutes(checked[st.name]) if st.name in checked else None
        if measured is not None:  # the hours during which its finished runs were in progress
            out["stage_measured_wall_min"][st.name] = 60 * occupied_hours(measured)
        for task, sel in mine.groupby("task", sort=False):
            entry = {"stage": st.name, "task": task, "runs": int(sel.runs.sum()), "jobs": int(sel.jobs.sum()),
                     "projected_min": sel.run_s.sum() / 60}
            if measured is not None:
                m = measured[measured.task == task]
                entry |= {"measured_min": float(m.minutes.sum()), "measured_runs": len(m),
                          "measured_jobs": int(m.job.sum())}
            out["rows"].append(entry)
    out |= {"run_hours": rows.run_s.sum() / 3600, "serial_hours": serial / 3600,
            "parallel_hours": parallel / 3600}
    if checked:
        out["measured_run_hours"] = sum(r["measured_min"] for r in out["rows"]) / 60
        out["measured_runs"] = sum(r["measured_runs"] for r in out["rows"])
        out["measured_wall_hours"] = sum(out["stage_measured_wall_min"].values()) / 60
    return out


def show(out: dict) -> None:
    check = "measured_runs" in out
    print(f"\n{'stage':24s} {'task':13s} {'runs':>5s} {'jobs':>5s} {'projected min':>13s}"
          + (f" {'measured min':>12s} {'runs':>5s} {'jobs':>5s} {'ratio':>6s}" if check else ""))
    for r in out["rows"]:
        line = f"{r['stage']:24s} {r['task']:13s} {r['runs']:5d} {r['jobs']:5d} {r['projected_min']:13.1f}"
        if check:
            ratio = r["measured_min"] / r["projected_min"] if r["projected_min"] else math.nan
            line += f" {r['measured_min']:12.1f} {r['measured_runs']:5d} {r['measured_jobs']:5d} {ratio:6.2f}"
        print(line)
    print(f"\nruns' own time (what the paper's time table counts): {60 * out['run_hours']:.0f} min "
          f"({out['run_hours']:.2f} h) over {out['runs']} runs")
    if check:
        print(f"finished runs in the store: {60 * out['measured_run_hours']:.0f} min over "
              f"{out['measured_runs']} runs, in progress during {out['measured_wall_hours']:.2f} h")
    print(f"with the launcher, data loading and claims: {out['serial_hours']:.2f} h one job after another, "
          f"{out['parallel_hours']:.2f} h with {out['jobs_side_by_side']} side by side (selection, analysis "
          "and the PDF not included)")


def timed(record: dict) -> str | None:
    """One line for a profile's timing record (``reproduce.Timing``): its hours against the goal, in how
    many sittings, from an empty store or not, on which host and commit, and the minutes per stage."""
    sittings = record["sittings"]
    if record["profile"] not in GOAL_HOURS or not sittings:
        return None
    hours, goal = reproduce.total_hours(record), GOAL_HOURS[record["profile"]]
    hosts = sorted({f"{s['cpu']} ({s['cpu_count']} cores, {s['cpu_capability']})" for s in sittings})
    commits = sorted({(s["git_commit"] or "?")[:7] + ("+" if s["git_dirty"] else "") for s in sittings})
    start = "from an empty store" if sittings[0]["finished_before"] == 0 else (
        f"resuming {sittings[0]['finished_before']} finished runs")
    last = sittings[-1]
    how = "running, or killed" if last["outcome"] == "running" else last["outcome"]
    state = "done" if how == "done" else (
        f"not done: its last sitting {how} at {last['last_seen_at'][:16].replace('T', ' ')} UTC")
    launcher = sittings[0]["launcher"]
    stages = ", ".join(f"{name} {m:.0f}" for name, m in reproduce.stage_minutes(record).items())
    resumed = reproduce.resume_minutes(record)
    resumed = (f", {resumed:.0f} min of them resuming (listing and skipping the runs of stages an earlier "
               "sitting had finished)" if len(sittings) > 1 else "")
    return (f"Timed: `make reproduce PROFILE={record['profile']}"
            f"{f' LAUNCHER={launcher}' if launcher else ''}` {start}, {sittings[0]['started_at'][:10]}: "
            + (f"**{hours:.2f} h**, {hours / goal:.2f}x its goal of {goal:g} h" if how == "done" else
               f"**{hours:.2f} h so far** (goal {goal:g} h)")
            + f" ({state}; {len(sittings)} sitting{'s' if len(sittings) > 1 else ''}, pauses not counted"
            f"{resumed}; {'; '.join(hosts)}; commit "
            f"{', '.join(commits)}). Minutes per stage: {stages}.")


def compared(c: dict) -> str:
    """One line for a comparison of two run stores (``scripts/compare_stores.py --json``): what the
    second store is, the CPUs that made the compared runs, and the counts of each outcome."""
    kinds = ("identical", "close", "parted", "different", "copied", "only_a", "only_b")
    n = {k: sum(int(r.get(k, 0)) for r in c["rows"]) for k in kinds}
    both = n["identical"] + n["close"] + n["parted"] + n["different"]
    # (a comparison made before compare_stores told parted runs from different ones counts them there)
    parted = (f"{n['parted']} parted (first differing within float rounding, more later), "
              if any("parted" in r for r in c["rows"]) else "")
    worst = c["worst"]["relative"]
    worst = f"; the largest relative difference {worst:.2g}" if worst else ""
    which = f" --experiment {c['experiment']}" if c.get("experiment") else ""
    second = f"{c['label']} (`{c['b']}`)" if c.get("label") else f"`{c['b']}`"
    made = ""
    if c.get("hosts"):
        made = " (made on " + " against ".join(
            "; ".join(f"{cpu} {k}" for cpu, k in sorted(c["hosts"][side].items())) or "--"
            for side in ("a", "b")) + ")"
    copied = (f"; {n['copied']} copied from the first into the second, so not compared" if n["copied"]
              else "")
    return (f"Compared (`scripts/compare_stores.py{which}`): of {both} runs made in both `{c['a']}` and "
            f"{second}{made}, {n['identical']} bit-identical, {n['close']} within float rounding, "
            f"{parted}{n['different']} different{worst}{copied}; {n['only_a']} only in the first, "
            f"{n['only_b']} only in the second.")


def markdown(estimates: list[dict], timings: list[dict] = (), comparisons: list[dict] = (),
             projections: list[dict] = ()) -> str:
    """The README's table: one row per committed projection (results/bench/estimate-*.json), then the
    goal line, a line per timed reproduce (results/timing/<profile>.json), per comparison of two stores
    (results/bench/compare-*.json) and per steps-only projection (results/bench/projection-*.json)."""
    lines = ["| profile | overrides | device (date) | runs | runs' own time | finished runs' own time "
             "(in progress) | one job after another | jobs side by side |", "|---" * 8 + "|"]
    for e in estimates:
        measured = (f"{e['measured_run_hours']:.2f} h over {e['measured_runs']} runs "
                    f"({e['measured_wall_hours']:.2f} h)" if "measured_runs" in e else "--")
        part = f" (stages {e['stages']})" if e.get("stages") else ""
        lines.append(f"| {e['profile']}{part} | {' '.join(f'`{o}`' for o in e['overrides']) or '--'} | "
                     f"{e['device']} {e['cpu_capability'] or ''} ({e['date']}) | {e['runs']} | "
                     f"{e['run_hours']:.2f} h | {measured} | {e['serial_hours']:.2f} h | "
                     f"{e['parallel_hours']:.2f} h ({e['jobs_side_by_side']}) |")
    goals = []
    for e in estimates:
        if e["profile"] in GOAL_HOURS and not e.get("stages"):
            goal, named = GOAL_HOURS[e["profile"]], "".join(f" `{o}`" for o in e["overrides"])
            hours, jobs = e["parallel_hours"], e["jobs_side_by_side"]
            goals.append(f"`{e['profile']}`{named}: {hours:.2f} h with {jobs} jobs side by side, "
                         f"{hours / goal:.2f}x its goal of {goal:g} h")
    text = "\n".join(lines) + "\n" + ("\nAgainst the goal: " + "; ".join(goals) + ".\n" if goals else "")
    extra = ([line for line in map(timed, timings) if line] + [compared(c) for c in comparisons]
             + [projected(p) for p in projections])
    return text + "".join(f"\n{line}\n" for line in extra)


def update_readme(readme: Path, folder: Path, timing: Path) -> None:
    estimates = sorted((json.loads(p.read_text()) for p in folder.glob("estimate-*.json")),
                       key=lambda e: (e["profile"], bool(e.get("stages")), e["overrides"]))
    timings = [json.loads(p.read_text()) for p in sorted(timing.glob("*.json"))]
    comparisons = [json.loads(p.read_text()) for p in sorted(folder.glob("compare-*.json"))]
    projections = [json.loads(p.read_text()) for p in sorted(folder.glob("projection-*.json"))]
    text = markdown(estimates, timings, comparisons, projections)
    if not store.replace_generated(readme, "estimate", text):
        raise SystemExit(f"error: {readme} has no generated:estimate block")
    print(f"updated the estimate table in {readme} from {len(estimates)} projections in {folder}")


if __name__ == "__main__":
    main()
