"""Pull the runs of a W&B project back into a run store, for sweeps whose nodes logged only to W&B.

    python -m nesterov_bench.wandb_import ENTITY/PROJECT --results results \\
        [--group REGEX] [--job-type STAGE] [--tag TAG ...] [--force]

Each finished W&B run carries its run's own ``run.json`` and ``metrics.parquet`` as files of the
run (``tracking.Mirror`` saves them when the run ends). This downloads the two files, exactly as
the node wrote them, into ``<results>/runs/...`` at the path run.json's config gives
(``store.run_path``), so the analysis reads them like any other run: both go to a temporary folder
first, must make a finished run there (``store.is_finished``), and are then renamed into place
under the run's lock, run.json last. A run already finished in the store is kept unless
``--force``; one finished there with other settings is named, not replaced. A W&B run without the
two files (logged by an older version) is skipped with the reason. One line per run, then a count.

Needs W&B credentials (``wandb login`` or WANDB_API_KEY) and network access. Exit status: 0 when
every run was pulled or skipped, 1 when W&B cannot be read or a run could not be written, 2 for a
bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from . import store
from .tracking import RUN_FILES


def filters(group: str | None = None, job_type: str | None = None,
            tags: list[str] | None = None) -> dict:
    """The ``Api.runs`` filter: finished runs, whose group matches the regex ``group``, of job type
    ``job_type`` (the stage), with any of ``tags``."""
    f: dict[str, Any] = {"state": "finished"}
    if group is not None:
        re.compile(group)  # re.error for a bad one
        f["group"] = {"$regex": group}
    if job_type is not None:
        f["jobType"] = job_type
    if tags:
        f["tags"] = {"$in": list(tags)}
    return f


def _remote(run: Any, name: str) -> Any:
    """The W&B file ``name`` of ``run``, or None when the run has none (``wandb.restore``'s test:
    no match, or W&B's placeholder with md5 "0")."""
    try:
        f = run.file(name)
    except IndexError:
        return None
    return None if f is None or getattr(f, "md5", None) == "0" else f


def _download(f: Any, folder: Path) -> None:
    handle = f.download(root=str(folder), replace=True)
    if hasattr(handle, "close"):
        handle.close()  # W&B hands back the file opened for reading


def pull_run(run: Any, results_dir: Path, force: bool = False) -> tuple[str, Path | None]:
    """Download one W&B run's files into the run store. Returns (outcome, run directory):
    ``"pulled"`` or ``"skipped: <reason>"``; the directory is None when the run cannot be placed."""
    if getattr(run, "state", "finished") != "finished":
        return f"skipped: W&B state is {run.state!r}, not 'finished'", None
    remote = {name: _remote(run, name) for name in RUN_FILES}
    if missing := [name for name, f in remote.items() if f is None]:
        return (f"skipped: no {' or '.join(missing)} among its W&B files (logged by a version "
                "before runs sent them)"), None
    results_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wandb_pull-", dir=results_dir))
    try:
        _download(remote["run.json"], tmp)
        record = store.read_run(tmp) or {}
        try:
            run_dir = store.run_path({**record["config"], "results_dir": str(results_dir)})
            parts = run_dir.relative_to(results_dir).parts
        except (KeyError, TypeError, ValueError) as e:
            return f"skipped: its run.json does not place it in the store ({type(e).__name__}: {e})", None
        if ".." in parts:
            return f"skipped: its run.json places it outside the store ({'/'.join(parts)})", None
        if not force and (skip := _finished_here(run_dir, record)):
            return skip, run_dir  # before downloading the metrics: a rerun of a pull costs little
        _download(remote["metrics.parquet"], tmp)
        if not store.is_finished(tmp):
            return "skipped: its run.json and metrics.parquet do not make a finished run", run_dir
        try:
            with store.locked(run_dir):
                if not force and (skip := _finished_here(run_dir, record)):  # finished meanwhile
                    return skip, run_dir
                (run_dir / "run.json").unlink(missing_ok=True)  # from here on: unfinished
                store.clear_unfinished(run_dir)
                for name in ("metrics.parquet", "run.json"):  # run.json last: marks it finished
                    os.replace(tmp / name, run_dir / name)
        except store.RunBusy as e:
            return f"skipped: busy ({e})", run_dir
        return "pulled", run_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _finished_here(run_dir: Path, record: dict) -> str | None:
    """The skip outcome when ``run_dir`` already holds a finished run, else None."""
    if not store.is_finished(run_dir):
        return None
    existing = (store.read_run(run_dir) or {}).get("config", {})
    changed = store.differences(store.identity(existing), store.identity(record["config"]))
    if changed:
        return (f"skipped: already finished, with other settings ({', '.join(changed)}); "
                "--force replaces it")
    return "skipped: already finished"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def main(argv: list[str] | None = None, api: Any = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nesterov_bench.wandb_import",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("project", help="the W&B project, ENTITY/PROJECT")
    p.add_argument("--results", default="results", type=Path,
                   help="results directory to write into (default: results)")
    p.add_argument("--group", help="only runs whose W&B group (<experiment>__<task>__<optimizer>) "
                                   "matches this regex")
    p.add_argument("--job-type", help="only runs of this W&B job type (the stage: tune, final, ...)")
    p.add_argument("--tag", action="append", help="only runs with this tag (repeat: any of them)")
    p.add_argument("--force", action="store_true",
                   help="replace runs already finished in the results directory")
    args = p.parse_args(argv)
    path = args.project.strip().strip("/")
    if len(path.split("/")) != 2 or not all(path.split("/")) or re.search(r"\s", path):
        print(f"error: a W&B project is ENTITY/PROJECT (e.g. my-team/nesterov_bench), got "
              f"{args.project!r}", file=sys.stderr)
        return 2
    try:
        f = filters(args.group, args.job_type, args.tag)
    except re.error as e:
        print(f"error: --group is not a regular expression ({e}): {args.group!r}", file=sys.stderr)
        return 2
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        runs = iter(api.runs(path, filters=f))
        run = next(runs, None)  # the first request: fails here when W&B cannot be reached
    except Exception as e:  # noqa: BLE001 -- any failure to reach W&B is one line, not a traceback
        print(f"error: cannot read W&B project {path}: {_first_line(e)}", file=sys.stderr)
        return 1
    counts: Counter[str] = Counter()
    while run is not None:
        name = f"{getattr(run, 'id', '?')} ({getattr(run, 'name', '?')})"
        try:
            outcome, run_dir = pull_run(run, args.results, force=args.force)
        except Exception as e:  # noqa: BLE001 -- a network or disk error on one run: say so, go on
            counts["failed"] += 1
            print(f"{name}: error: {_first_line(e)}")
        else:
            counts[outcome.split(":")[0]] += 1
            print(f"{name}: {outcome}" + (f" -> {run_dir}" if run_dir is not None else ""))
        try:
            run = next(runs, None)
        except Exception as e:  # noqa: BLE001 -- the listing broke off (network)
            print(f"error: listing the runs of {path} broke off: {_first_line(e)}", file=sys.stderr)
            counts["failed"] += 1
            break
    print(f"{counts['pulled']} pulled, {counts['skipped']} skipped, {counts['failed']} failed "
          f"(from {path} into {args.results}; filters {json.dumps(f)})")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
