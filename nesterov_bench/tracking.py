"""Mirror a run to Weights & Biases. The run directory stays the source of truth.

W&B is imported only when used, never required to rebuild a table, and never allowed to fail a
run: if it cannot start or log (not installed, no network in online mode, bad credentials), the
problem is reported once and the run goes on with its local files.

A W&B run holds, for browsing, the run's config, every metric record as ``<split>/<metric>`` at
``step`` (with ``epoch`` and ``time_s``) and a summary (``status`` and the final metrics); and, as
files of the run, the finished run's own ``run.json`` and ``metrics.parquet``, byte for byte
(``run.save(..., policy="now")``: in offline mode they wait in the offline run's ``files/`` and
travel with ``wandb sync``). ``python -m nesterov_bench.wandb_import`` downloads those two files
back into a run store; nothing is rebuilt from the history.

Which mode a run gets (``choose_mode``): ``wandb.mode=auto`` follows ``WANDB_MODE`` when it is set,
else goes online when W&B credentials are at hand and offline otherwise; before going online (auto
or explicit) the process checks once that W&B's server answers a TCP connection within
``REACH_TIMEOUT_S`` and runs offline if it does not, so a machine without network loses neither time
nor the W&B record. Each process says once, on stderr, where its offline runs lie and how to upload
them (``python -m nesterov_bench.wandb_sync``).

W&B's own failures are one line each: its log file handler's write errors (a full disk) are
reported once per W&B run instead of a traceback per log call, and an offline run that did not get
whole copies of the run's files, or whose writer W&B logged as failed, is reported when the run
finishes (``offline_copy_problem``; nothing of W&B's binary ``.wandb`` format is read).
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import shutil
import socket
import sys
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
MODES = ("auto", "offline", "online", "disabled")
RUN_FILES = ("run.json", "metrics.parquet")  # what a finished run hands W&B as files of the run
DEFAULT_BASE_URL = "https://api.wandb.ai"
FULL_DISK_BYTES = 64 * 1024  # less free space than this where an offline run lies: its copy is cut short
REACH_TIMEOUT_S = 2.0  # the one reachability check per process, before a run goes online
# WANDB_MODE's values (W&B's own spellings included) as the mirror's modes
WANDB_MODE_VALUES = {"offline": "offline", "dryrun": "offline", "online": "online", "run": "online",
                     "disabled": "disabled"}
_reach: dict[tuple[str, int], str | None] = {}  # (host, port) -> None if it answered, else why not
_said: set[str] = set()  # what this process has already said once
_said_lock = threading.Lock()


def results_root(run_dir: Path) -> Path:
    """The results tree a run directory lies in (the folder holding ``runs/``), else the run directory."""
    for parent in Path(run_dir).parents:
        if parent.name == "runs":
            return parent.parent
    return Path(run_dir)


def offline_copy_problem(offline_run: Path, run_dir: Path | None = None) -> str | None:
    """None when an offline W&B run (``.../wandb/offline-run-*``) looks whole, else what is wrong, in
    one line: W&B's service logged that writing the run failed, or (given the finished run's
    ``run_dir``) its ``files/`` lacks a whole copy of the run's files."""
    for name in RUN_FILES if run_dir is not None else ():
        copy = Path(offline_run) / "files" / name
        if not copy.is_file() or copy.read_bytes() != (Path(run_dir) / name).read_bytes():
            return f"its copy of {name} is {'cut short' if copy.is_file() else 'missing'}"
    failed = _writer_error(Path(offline_run) / "logs" / "debug-internal.log")
    if failed:
        return f"W&B's writer failed: {failed}"
    try:  # W&B may not have logged its failure yet (or could not: the same disk)
        full = shutil.disk_usage(offline_run).free < FULL_DISK_BYTES
    except OSError:
        full = False
    return "no space left on its disk" if full else None


def _writer_error(internal_log: Path) -> str | None:
    """The reason of the first error W&B's service logged about writing the run, if any."""
    try:
        lines = internal_log.read_text(errors="replace").splitlines()
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


def say_once(key: str, message: str, level: int = logging.WARNING) -> None:
    """Log ``message`` the first time this process meets ``key``, never again."""
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    log.log(level, message)


def base_url() -> str:
    return (os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def address(url: str) -> tuple[str, int]:
    """(host, port) of a URL; the port defaults to the scheme's (443 for https, else 80)."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def logged_in() -> bool:
    """True when W&B credentials are at hand: WANDB_API_KEY, or a netrc entry for W&B's host
    (``wandb login`` writes one in ~/.netrc, or where $NETRC says)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(address(base_url())[0]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def unreachable(url: str | None = None) -> str | None:
    """None when W&B's server (or the proxy in front of it) takes a TCP connection within
    ``REACH_TIMEOUT_S``, else why not (one line). Checked once per address and process."""
    url = url or base_url()
    host, port = address(url)
    scheme = urlsplit(url).scheme or "https"
    proxy = urllib.request.getproxies().get(scheme) or urllib.request.getproxies().get("all")
    via = ""
    if proxy and not urllib.request.proxy_bypass(host):
        (host, port), via = address(proxy), "through the proxy "
    if (host, port) not in _reach:
        _reach[host, port] = _connect(host, port, REACH_TIMEOUT_S)
    problem = _reach[host, port]
    return problem and f"{via}{host}:{port}: {problem}"


def _connect(host: str, port: int, timeout: float) -> str | None:
    """Open and close one TCP connection; the name lookup counts against ``timeout`` too."""
    outcome = [f"no answer within {timeout:g} s"]

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome[0] = None
        except OSError as e:
            outcome[0] = e.strerror or str(e) or type(e).__name__

    thread = threading.Thread(target=attempt, name="wandb-reachable", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0]


def choose_mode(mode: str) -> tuple[str, str]:
    """The mode a run's mirror uses for ``wandb.mode=mode``, and why (for the one line that says so).

    ``auto``: ``WANDB_MODE`` when set (offline/dryrun, online/run, disabled), else online when
    logged in, else offline. A run bound online with credentials goes offline when W&B's server
    cannot be reached (checked once per process): its W&B record is kept for ``wandb sync``.
    Without credentials, online mode is tried as asked and fails in one line.
    """
    why = f"wandb.mode={mode}"
    if mode == "auto":
        env = os.environ.get("WANDB_MODE", "").strip().lower()
        if env in WANDB_MODE_VALUES:
            mode, why = WANDB_MODE_VALUES[env], f"WANDB_MODE={env}"
        else:
            if env:
                say_once(f"WANDB_MODE={env}", f"W&B: WANDB_MODE={env} is not one of "
                         f"{', '.join(WANDB_MODE_VALUES)}; ignored (wandb.mode=auto decides)")
            if not logged_in():
                return "offline", "not logged in to W&B"
            mode, why = "online", "logged in"
    if mode == "online" and logged_in():
        problem = unreachable()
        if problem:
            return "offline", f"{why}, but W&B's server is unreachable ({problem})"
    return mode, why


def resolve_mode(mode: str) -> str:
    return choose_mode(mode)[0]


def announce_offline(why: str, run_dir: Path) -> None:
    """Once per process: that runs are mirrored offline, why, where they lie, how to upload them."""
    if "offline" in _said:
        return
    fallback = "unreachable" in why
    say_once("offline", (f"W&B runs offline: {why}." if fallback else f"W&B runs offline ({why}).")
             + " Each run's W&B copy stays in <run dir>/wandb/offline-run-*; upload them "
             + ("once online " if fallback else "after `wandb login` " if not logged_in() else "")
             + "with: "
             f"python -m nesterov_bench.wandb_sync --results {results_root(run_dir)}",
             logging.WARNING if fallback else logging.INFO)


def contain_wandb_log_errors() -> None:
    """A write error of W&B's own log file (``debug.log``) is one line per W&B run, not a traceback
    on stderr per log call (what Python's logging prints when a handler fails: ~60 lines each).

    W&B adds one file handler per run to the "wandb" logger; each handler added from now on (and
    each already there) reports its first failure in one line and drops the others."""
    logger = logging.getLogger("wandb")
    for handler in logger.handlers:
        _contain(handler)
    if getattr(logger, "_nesterov_bench_contained", False):
        return
    add = logger.addHandler

    def add_handler(handler: logging.Handler) -> None:
        _contain(handler)
        add(handler)

    logger.addHandler = add_handler  # type: ignore[method-assign]
    logger._nesterov_bench_contained = True  # type: ignore[attr-defined]


def _contain(handler: logging.Handler) -> None:
    if getattr(handler, "_nesterov_bench_contained", False):
        return
    handler._nesterov_bench_contained = True  # type: ignore[attr-defined]
    failed = []

    def handle_error(record: logging.LogRecord) -> None:
        if failed:
            return
        failed.append(record)
        where = getattr(handler, "baseFilename", type(handler).__name__)
        log.warning("W&B could not write its log %s (%s); its further log errors are not shown, "
                    "and the run goes on", where, one_line(sys.exc_info()[1]))

    handler.handleError = handle_error  # type: ignore[method-assign]


def one_line(e: BaseException | None) -> str:
    if e is None:
        return "unknown error"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return (str(e).splitlines() or [type(e).__name__])[0]


class Mirror:
    """One W&B run mirroring one suite run: config up front, every metric record, final summary."""

    def __init__(self, wandb_cfg: Mapping[str, Any], run_dir: Path, *, name: str, group: str,
                 job_type: str, tags: list[str], config: Mapping[str, Any]):
        self.run = None
        self.mode, why = choose_mode(wandb_cfg["mode"])
        self.run_dir = run_dir
        self.failed = False  # W&B failed and said so: no further line about this run
        self.offline_dir: Path | None = None  # the offline run's folder (offline-run-*)
        if self.mode == "disabled":
            return
        try:
            import wandb

            contain_wandb_log_errors()
            self.run = wandb.init(
                project=wandb_cfg["project"], entity=wandb_cfg.get("entity"), dir=str(run_dir),
                mode=self.mode, name=name, group=group, job_type=job_type, tags=tags,
                config=dict(config), reinit="create_new",
                settings=wandb.Settings(silent=True, console="off", init_timeout=60,
                                        x_disable_stats=True, save_code=False),
            )
        except Exception as e:  # noqa: BLE001 -- W&B must never cost a run
            self._give_up(e)
            return
        if self.mode == "offline":
            try:
                self.offline_dir = Path(self.run.settings.sync_file).parent
            except Exception:  # noqa: BLE001 -- only the end-of-run check needs them
                pass
            announce_offline(why, run_dir)

    def _give_up(self, e: Exception) -> None:
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        log.warning("W&B %s logging unavailable (%s); the run goes on with its local files only",
                    self.mode, first_line)
        self.run, self.failed = None, True

    def log(self, step: int, epoch: float, split: str, metrics: Mapping[str, float],
            time_s: float) -> None:
        """One metric record, as ``record`` gets it: ``<split>/<metric>`` keys, ``epoch``, ``time_s``.

        Records at the same step merge into one W&B history row, so ``epoch`` and ``time_s`` keep
        the step's last value (the loop gives all records of a step the same epoch).
        """
        if self.run is None:
            return
        keys = {f"{split}/{k}": v for k, v in metrics.items()}
        try:
            self.run.log({**keys, "epoch": epoch, "time_s": time_s}, step=step)
        except Exception as e:  # noqa: BLE001
            self._give_up(e)

    def finish(self, status: str, summary: Mapping[str, Any],
               record: Mapping[str, Any] | None = None) -> None:
        """Write the summary (status, final metrics) and close the W&B run.

        ``record`` is the run's run.json record, given once the run is saved: the run's
        ``run.json`` and ``metrics.parquet`` then go to W&B as files of the run (copies in the W&B
        run's ``files/``, so that its copy stays whole whatever becomes of the run directory). A
        W&B run whose summary or files could not be written is closed as failed.
        """
        if self.run is None:
            return
        run, ok, problem = self.run, status in ("completed", "diverged"), None
        try:
            run.summary.update({"status": status, **summary})
        except Exception as e:  # noqa: BLE001
            self._give_up(e)
            ok = False
        if record is not None and ok:
            try:
                files_dir = Path(run.dir)
                for name in RUN_FILES:  # W&B's save would symlink the originals: copy them first
                    shutil.copyfile(self.run_dir / name, files_dir / name)
                    run.save(str(files_dir / name), base_path=str(files_dir), policy="now")
            except Exception as e:  # noqa: BLE001 -- e.g. the disk filled as the run ended
                problem, ok = one_line(e), False
        try:
            run.finish(exit_code=0 if ok else 1)
        except Exception as e:  # noqa: BLE001
            self._give_up(e)
        self.run = None
        if problem is None and self.offline_dir is not None and not self.failed:
            problem = offline_copy_problem(self.offline_dir, self.run_dir if record is not None else None)
        if problem:
            log.warning("W&B's %scopy of %s is incomplete (%s): %s", "offline " if self.offline_dir else "",
                        self.run_dir, problem, "it would sync to W&B cut short" if self.offline_dir
                        else "W&B holds the run without its files")
