"""Check that the same config and seed give bit-identical metrics on a GPU, with deterministic algorithms
on (the default) and, for contrast, off.

    python scripts/gpu_determinism.py [--tasks mnist_cnn,mnist_mlp] [--json out.json]

Each task trains twice per setting (device=cuda, a 2-epoch budget on an 8k-image subset) into separate
results trees; the metrics files are compared value for value. Needs CUDA and the MNIST archives.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def train(task: str, deterministic: bool, out: Path, data: list[str]) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "nesterov_bench.train", f"task={task}", "optimizer=nesterov", "seed=0",
           "device=cuda", f"deterministic={str(deterministic).lower()}", "train.epochs=2",
           "task.train_size=8000", "task.val_size=2000", "task.test_size=2000", "train.evals_per_epoch=4",
           f"results_dir={out}", "wandb.mode=disabled", *data]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"error: {task} failed: {proc.stderr.strip().splitlines()[-1]}")
    return pd.read_parquet(next(out.glob("runs/**/metrics.parquet")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="mnist_cnn,mnist_mlp")
    ap.add_argument("--data-root", default=str(REPO / "data"))
    ap.add_argument("--data-source", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = [f"data.root={args.data_root}", f"data.source={args.data_source}"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for det in (True, False):
                a, b = (train(task, det, Path(tmp) / f"{task}-{det}-{i}", data) for i in (0, 1))
                diff = (a.value - b.value).abs()
                row = {"task": task, "deterministic": det, "values": len(a),
                       "identical": bool((a.value.to_numpy() == b.value.to_numpy()).all()),
                       "max_abs_diff": float(diff.max())}
                rows.append(row)
                verdict = "bit-identical" if row["identical"] else "differ"
                print(f"{task:10s} deterministic={det!s:5s}: {row['values']} values, {verdict} "
                      f"(max |diff| {row['max_abs_diff']:.3g})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
