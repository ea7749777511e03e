"""Mirror a run to Weights & Biases. The run directory stays the source of truth.

W&B is imported only when used, never required to rebuild a table, and never allowed to fail a
run: if it cannot start or log (not installed, no network in online mode, bad credentials), the
problem is reported once and the run goes on with its local files.
"""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MODES = ("auto", "offline", "online", "disabled")


def logged_in() -> bool:
    """True when W&B credentials are at hand (WANDB_API_KEY, or an api.wandb.ai entry in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    return ("online" if logged_in() else "offline") if mode == "auto" else mode


class Mirror:
    """One W&B run mirroring one suite run: config up front, every metric record, final summary."""

    def __init__(self, wandb_cfg: Mapping[str, Any], run_dir: Path, *, name: str, group: str,
                 job_type: str, tags: list[str], config: Mapping[str, Any]):
        self.run = None
        self.mode = resolve_mode(wandb_cfg["mode"])
        if self.mode == "disabled":
            return
        try:
            import wandb

            self.run = wandb.init(
                project=wandb_cfg["project"], entity=wandb_cfg.get("entity"), dir=str(run_dir),
                mode=self.mode, name=name, group=group, job_type=job_type, tags=tags,
                config=dict(config), reinit="create_new",
                settings=wandb.Settings(silent=True, console="off", init_timeout=60,
                                        x_disable_stats=True, save_code=False),
            )
        except Exception as e:  # noqa: BLE001 -- W&B must never cost a run
            self._give_up(e)

    def _give_up(self, e: Exception) -> None:
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        log.warning("W&B %s logging unavailable (%s); the run goes on with its local files only",
                    self.mode, first_line)
        self.run = None

    def log(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if self.run is None:
            return
        try:
            self.run.log({f"{split}/{k}": v for k, v in metrics.items()}, step=step)
        except Exception as e:  # noqa: BLE001
            self._give_up(e)

    def finish(self, status: str, summary: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({"status": status, **summary})
            self.run.finish(exit_code=0 if status in ("completed", "diverged") else 1)
        except Exception as e:  # noqa: BLE001
            self._give_up(e)
