"""Project a profile's wall time on this machine from a short measured run of each task.

    python scripts/estimate_paper_time.py [--profile full] [--device cuda] [--fraction 0.02] [--json out.json]

For every task of the profile (default ``full``, DeepOBS's sizes, meant for a GPU; ``paper`` is sized for
a 2-core CPU), one run of the profile's tuning configuration (Nesterov at a mid-grid learning
rate, the profile budget's batch size and evaluation schedule) is trained for a small fraction of its
budget. Its seconds per step (training and evaluations, from run.json) times the profile budget's steps,
plus the measured per-run start-up, times the profile plan's number of runs of that task
(``reproduce --dry-run``), gives the projection, run one after another on this device. CIFAR-10 is
timed on generated tensors of its real shape (no download here) and scaled to its real training-set size.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nesterov_bench.config import compose as compose_config  # noqa: E402
from nesterov_bench.reproduce import plan  # noqa: E402

CIFAR_TRAIN = 50_000  # real CIFAR-10 training images (before the validation split)


def measure(profile: str, task: str, epochs: int, common: list[str], out: Path) -> dict:
    extra = ["data.generated=true"] if task == "cifar10_cnn" else []
    cmd = [sys.executable, "-m", "nesterov_bench.train", "experiment=tune", f"profile={profile}",
           f"task={task}", "optimizer=nesterov", "trial=4", f"train.epochs={epochs}", f"results_dir={out}",
           *common, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    total = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"error: timing run of {task} failed: {proc.stderr.strip().splitlines()[-1]}")
    rec = json.loads(next(out.glob(f"runs/{profile}/tune/{task}/nesterov/*/seed=0/run.json")).read_text())
    return {"steps": rec["steps"], "wall_s": rec["wall_time_s"], "startup_s": total - rec["wall_time_s"],
            "device": rec["environment"].get("device_name"), "train_size": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="full", help="the profile to project (default: full)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fraction", type=float, default=0.02, help="share of each task budget to time")
    ap.add_argument("--data-root", default=str(REPO / "data"))
    ap.add_argument("--data-source", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args()
    common = [f"device={args.device}", "wandb.mode=disabled", f"data.root={args.data_root}",
              f"data.source={args.data_source}"]
    stages = {st.name: st.runs for st in plan(args.profile, "results", None)}
    tasks = str(compose_config([f"profile={args.profile}"]).sweep.tasks).split(",")
    per_task = {"tune": stages["tune"] / len(tasks), "final": stages["final"] / len(tasks)}
    extra_runs = {"linreg": ("seed000_linreg", 1000), "mnist_logreg": ("seed002_mnist", None),
                  "quadratic": ("quadratic_theory", 1000)}
    rows, total_s = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            cfg = compose_config([f"profile={args.profile}", f"task={task}", "experiment=tune", "trial=4"])
            paper_epochs = int(cfg.train.epochs)
            epochs = max(1, round(paper_epochs * args.fraction))
            m = measure(args.profile, task, epochs, common, Path(tmp) / task)
            s_per_step = m["wall_s"] / m["steps"]
            steps_per_epoch = m["steps"] / epochs
            if task == "cifar10_cnn":  # generated: 4 x val_size training images; real: 50k minus val_size
                n_val = int(cfg.task.val_size)
                steps_per_epoch *= (CIFAR_TRAIN - n_val) / (4 * n_val - n_val)
            run_s = paper_epochs * steps_per_epoch * s_per_step + m["startup_s"]
            runs = per_task["tune"] + per_task["final"]
            task_s = runs * run_s
            if task in extra_runs:
                stage, rec_epochs = extra_runs[task]
                rec_run_s = (rec_epochs or paper_epochs) * steps_per_epoch * s_per_step + m["startup_s"]
                task_s += stages[stage] * rec_run_s
                runs += stages[stage]
            total_s += task_s
            rows.append({"task": task, "timed_epochs": epochs, "ms_per_step": 1000 * s_per_step,
                         "startup_s": m["startup_s"], "paper_epochs": paper_epochs, "runs": runs,
                         "hours": task_s / 3600, "device": m["device"]})
            print(f"{task:13s} {1000 * s_per_step:7.2f} ms/step  start-up {m['startup_s']:5.1f} s  "
                  f"{paper_epochs:5d} epochs x {int(runs):4d} runs -> {task_s / 3600:6.2f} h", flush=True)
    print(f"{args.profile} profile, {sum(stages.values())} runs one after another on {rows[0]['device']}: "
          f"about {total_s / 3600:.1f} h ({math.ceil(total_s / 60)} min)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "total_hours": total_s / 3600}, indent=2))


if __name__ == "__main__":
    main()
