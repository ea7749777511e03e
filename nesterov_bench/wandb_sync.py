"""Upload the W&B runs mirrored offline under a results tree.

    python -m nesterov_bench.wandb_sync [--results results] [--dry-run]

A run mirrored offline (``wandb.mode=offline``, or ``auto`` without a login or a network) keeps its
W&B copy inside its run directory, ``<run dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``.
``wandb sync FILE`` uploads one and leaves ``run-<id>.wandb.synced`` beside it (wandb-core's
runsync; ``wandb sync`` skips files that have the marker). This finds every such file under the
tree that has no marker, names the ones that are incomplete (``tracking.offline_copy_problem``: a
full disk, they would upload cut short), and hands them to ``wandb sync`` (the one on PATH, else the
one installed beside this Python). ``--dry-run`` lists them and uploads nothing. The same without
this module, in any shell (no globstar needed; ``wandb sync`` itself skips the synced ones)::

    find results/runs -path '*/wandb/offline-run-*/run-*.wandb' -exec wandb sync {} +

Exit status: 0 when nothing is left to sync, 1 when some run did not sync, 2 for a bad command line
or no W&B login.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .tracking import logged_in, offline_copy_problem, unreachable

BATCH = 100  # files per wandb sync call


def offline_runs(root: Path) -> list[Path]:
    """Every offline W&B run file under ``root``: ``.../wandb/offline-run-*/run-*.wandb``."""
    return sorted(p for p in Path(root).rglob("run-*.wandb")
                  if p.parent.name.startswith("offline-run-") and p.parent.parent.name == "wandb")


def is_synced(path: Path) -> bool:
    return path.with_name(path.name + ".synced").exists()


def unsynced_offline_runs(run_dir: Path) -> list[Path]:
    """The offline W&B runs in one run directory that were never uploaded."""
    return sorted(p for p in Path(run_dir).glob("wandb/offline-run-*/run-*.wandb") if not is_synced(p))


def wandb_executable() -> str | None:
    """``wandb`` on PATH, else the one installed beside this Python."""
    beside = Path(sys.executable).with_name("wandb")
    return shutil.which("wandb") or (str(beside) if beside.exists() else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nesterov_bench.wandb_sync",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="results tree to search (default: results)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be synced; upload nothing")
    args = parser.parse_args(argv)
    root = Path(args.results)
    if not root.is_dir():
        print(f"error: --results {root}: no such folder", file=sys.stderr)
        return 2
    runs = offline_runs(root)
    pending = [p for p in runs if not is_synced(p)]
    print(f"{len(runs)} offline W&B run(s) under {root}: {len(runs) - len(pending)} synced, "
          f"{len(pending)} to sync")
    for p in pending:
        run_dir = p.parent.parent.parent  # <run dir>/wandb/offline-run-*/run-*.wandb
        problem = offline_copy_problem(p.parent, run_dir if (run_dir / "run.json").is_file() else None)
        print(f"  {p}" + (f"  (incomplete, would sync cut short: {problem})" if problem else ""))
    if not pending:
        return 0
    if args.dry_run:
        print("dry run: nothing uploaded; without --dry-run this runs: wandb sync FILE...")
        return 0

    if not logged_in():
        print("error: not logged in to W&B: run `wandb login` (or set WANDB_API_KEY), then rerun this",
              file=sys.stderr)
        return 2
    problem = unreachable()
    if problem:
        print(f"error: W&B's server cannot be reached ({problem}); nothing uploaded", file=sys.stderr)
        return 1
    exe = wandb_executable()
    if exe is None:
        print("error: no wandb command found (pip install wandb)", file=sys.stderr)
        return 2
    for i in range(0, len(pending), BATCH):
        subprocess.run([exe, "sync", *map(str, pending[i:i + BATCH])], check=False)
    left = [p for p in pending if not is_synced(p)]
    print(f"synced {len(pending) - len(left)} of {len(pending)}")
    if left:
        print(f"error: {len(left)} run(s) not synced (no .synced marker), e.g. {left[0]}; wandb sync's "
              "messages above say why; rerun this to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
