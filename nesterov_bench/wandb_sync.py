"""Upload the W&B runs mirrored offline under a results tree.

    python -m nesterov_bench.wandb_sync [--results results] [--dry-run]

A run mirrored offline (``wandb.mode=offline``, or ``auto`` without a login or a network) keeps its
W&B copy inside its run directory, ``<run dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``.
``wandb sync FILE`` uploads one and leaves ``run-<id>.wandb.synced`` beside it (wandb-core's
runsync; ``wandb sync`` skips files that have the marker). This finds every such file under the
tree that has no marker, names the ones whose end was never written (a full disk: they would
upload cut short), and hands them to ``wandb sync`` (the one on PATH, else the one installed beside
this Python). ``--dry-run`` lists them and uploads nothing. The same without this module, in any
shell (no globstar needed; ``wandb sync`` itself skips the synced ones)::

    find results/runs -path '*/wandb/offline-run-*/run-*.wandb' -exec wandb sync {} +

Exit status: 0 when nothing is left to sync, 1 when some run did not sync, 2 for a bad command line
or no W&B login.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

BLOCK = 32768  # the .wandb file: a 7-byte ":W&B" header, then LevelDB-style 32 KiB blocks of chunks
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")  # crc, length, type (1 full, 2 first, 3 middle, 4 last; 0 padding)
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


def results_root(run_dir: Path) -> Path:
    """The results tree a run directory lies in (the folder holding ``runs/``), else the run directory."""
    for parent in Path(run_dir).parents:
        if parent.name == "runs":
            return parent.parent
    return Path(run_dir)


def offline_log_problem(path: Path, internal_log: Path | None = None, wait_s: float = 0.0) -> str | None:
    """None when the ``.wandb`` file ends with its run's exit record, else what is wrong (one line).

    W&B's service may still be writing when ``run.finish`` returns, so this waits up to ``wait_s``
    for the end, unless W&B's internal log already shows its writer failed. A file in a format
    this does not know is taken as whole (None)."""
    deadline = time.monotonic() + wait_s
    while True:
        problem = _end_of_log(Path(path))
        if problem is None:
            return None
        failed = _writer_error(internal_log)
        if failed:
            return f"{problem}; W&B's writer failed: {failed}"
        if time.monotonic() >= deadline:
            return problem
        time.sleep(0.2)


def _end_of_log(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror})"
    if len(data) < HEADER.size:
        return f"{path.name} holds {len(data)} bytes, not even its header"
    ident, magic, _ = HEADER.unpack_from(data)
    if (ident, magic) != (b":W&B", 0xBEE1):
        return None  # another format (a later wandb?): nothing to say
    last: collections.deque[bytes] = collections.deque(maxlen=8)
    pos, buf = HEADER.size, b""
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        if pos + CHUNK.size > len(data):
            return f"{path.name} is cut short at byte {pos}"
        _, n, kind = CHUNK.unpack_from(data, pos)
        if kind == 0:
            pos += left
            continue
        if pos + CHUNK.size + n > len(data):
            return f"{path.name} is cut short at byte {pos}"
        buf += data[pos + CHUNK.size:pos + CHUNK.size + n]
        pos += CHUNK.size + n
        if kind in (1, 4):
            last.append(buf)
            buf = b""
    if buf:
        return f"{path.name} ends inside a record"
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except Exception:  # noqa: BLE001 -- cannot read the records: say nothing
        return None
    for raw in reversed(last):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # noqa: BLE001
            return f"{path.name} ends with an unreadable record"
        if record.WhichOneof("record_type") == "exit":
            return None
    return f"{path.name} has no exit record (the run's end was not written)"


def _writer_error(internal_log: Path | None) -> str | None:
    """The reason of the first error W&B's service logged about writing the run's file, if any."""
    if internal_log is None:
        return None
    try:
        lines = Path(internal_log).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if '"ERROR"' not in line:
            continue
        try:
            msg = str(json.loads(line).get("msg", ""))
        except (ValueError, AttributeError):
            continue
        if "writer" in msg or "transactionlog" in msg:
            return msg.rsplit(": ", 1)[-1]
    return None


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
        problem = offline_log_problem(p, p.parent / "logs" / "debug-internal.log")
        print(f"  {p}" + (f"  (incomplete, would sync cut short: {problem})" if problem else ""))
    if not pending:
        return 0
    if args.dry_run:
        print("dry run: nothing uploaded; without --dry-run this runs: wandb sync FILE...")
        return 0

    from .tracking import logged_in, unreachable

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
