"""Pull the runs of a W&B project into the run store, for sweeps whose nodes logged only to W&B.

    python scripts/wandb_pull.py ENTITY/PROJECT --results results [--group REGEX] [--force]

Each finished run that this suite's W&B mirror logged becomes a run directory under
``<results>/runs/...`` (run.json + metrics.parquet), exactly where a local run of the same config
would lie, so the analysis reads it like any other run. One line per run (imported / skipped and
why), then a count. Runs already finished in the store are skipped unless ``--force``. ``--group``
keeps the runs whose W&B group matches the regular expression (the mirror's groups are
``<experiment>__<task>__<optimizer>``). Needs W&B credentials (``wandb login`` or WANDB_API_KEY)
and network access to the W&B service. See nesterov_bench/wandb_import.py for the mapping.

Exit status: 0 when every run was imported or skipped, 1 when W&B cannot be reached (not logged
in, no network, unknown project) or a run could not be written, 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

try:
    from nesterov_bench.errors import ConfigError
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from nesterov_bench.errors import ConfigError
from nesterov_bench.wandb_import import import_run, project_path, run_filters


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("project", help="the W&B project, ENTITY/PROJECT")
    p.add_argument("--results", default="results", type=Path,
                   help="results directory to write into (default: results)")
    p.add_argument("--group", default=None, help="only runs whose W&B group matches this regex")
    p.add_argument("--force", action="store_true",
                   help="replace runs already finished in the results directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, api=None) -> int:
    args = parse_args(argv)
    try:
        path, filters = project_path(args.project), run_filters(args.group)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        runs = iter(api.runs(path, filters=filters))
        first = next(runs, None)  # the first request: fails here when W&B cannot be reached
    except Exception as e:  # noqa: BLE001 -- any failure to reach W&B is one line, not a traceback
        print(f"error: cannot read W&B project {path}: {_first_line(e)}", file=sys.stderr)
        return 1
    counts: Counter[str] = Counter()
    failed = 0
    run = first
    while run is not None:
        name = f"{getattr(run, 'id', '?')} ({getattr(run, 'name', '?')})"
        try:
            outcome, run_dir = import_run(run, args.results, force=args.force)
        except Exception as e:  # noqa: BLE001 -- a network or disk error on one run: say so, go on
            failed += 1
            print(f"{name}: error: {_first_line(e)}")
        else:
            counts["imported" if outcome == "imported" else "skipped"] += 1
            print(f"{name}: {outcome}" + (f" -> {run_dir}" if run_dir is not None else ""))
        try:
            run = next(runs, None)
        except Exception as e:  # noqa: BLE001 -- the listing broke off (network)
            print(f"error: listing the runs of {path} broke off: {_first_line(e)}", file=sys.stderr)
            failed += 1
            break
    print(f"{counts['imported']} imported, {counts['skipped']} skipped, {failed} failed "
          f"(from {path} into {args.results})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
