"""Mirror a run to Weights & Biases. The run directory stays the source of truth.

W&B is imported only when used, never required to rebuild a table, and never allowed to fail a
run: if it cannot start or log (not installed, no network in online mode, bad credentials), the
problem is reported once and the run goes on with its local files.

The mirror carries everything the run directory holds, so ``nesterov_bench.wandb_import`` can
rebuild the directory from W&B alone (for sweeps whose nodes logged only there):

* ``config``: run.json's config;
* history: every metric record as ``<split>/<metric>`` at ``step``, with ``epoch`` and ``time_s``;
* summary at the end: ``status``, the final metrics, ``run_record`` (run.json less its config)
  and ``history_layout`` (the number of metric rows and the order of the keys within a step,
  which W&B does not keep: a history row comes back with its keys in any order).

W&B writes a NaN or infinity in the summary as null, so the record sends them as the strings
"NaN", "Infinity", "-Infinity" (the history keeps them as they are).
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MODES = ("auto", "offline", "online", "disabled")
MAX_LAYOUTS = 64  # distinct within-step key orders kept (a run of the suite has about three)


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


def non_finite_as_strings(obj: Any) -> Any:
    """NaN and infinities as "NaN", "Infinity", "-Infinity": W&B's summary would make them null."""
    if isinstance(obj, dict):
        return {k: non_finite_as_strings(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [non_finite_as_strings(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    return obj


class Mirror:
    """One W&B run mirroring one suite run: config up front, every metric record, final summary."""

    def __init__(self, wandb_cfg: Mapping[str, Any], run_dir: Path, *, name: str, group: str,
                 job_type: str, tags: list[str], config: Mapping[str, Any]):
        self.run = None
        self.mode = resolve_mode(wandb_cfg["mode"])
        # What wandb_import needs to rebuild metrics.parquet from the history: rows logged, and
        # the distinct orders of the keys logged within one step (W&B merges a step's log calls).
        self.rows = 0
        self.key_orders: list[list[str]] = []
        self._step: int | None = None
        self._step_keys: list[str] = []
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
            return
        if step != self._step:
            self._end_step()
            self._step = step
        self._step_keys.extend(keys)
        self.rows += len(keys)

    def _end_step(self) -> None:
        if (self._step_keys and self._step_keys not in self.key_orders
                and len(self.key_orders) < MAX_LAYOUTS):
            self.key_orders.append(self._step_keys)
        self._step_keys = []

    def finish(self, status: str, summary: Mapping[str, Any],
               record: Mapping[str, Any] | None = None) -> None:
        """Write the summary and close the W&B run.

        ``record`` is the run's run.json record: with it, the summary also gets ``run_record``
        (the record less ``config``, which W&B holds as the run's config) and ``history_layout``.
        If the summary cannot be written the W&B run is closed as failed, so that no importer
        takes a run without its record for a finished one.
        """
        if self.run is None:
            return
        run, ok = self.run, status in ("completed", "diverged")
        try:
            run.summary.update({"status": status, **summary})
            if record is not None:
                self._end_step()
                # Exactly what run.json holds (write_json's default=str), as plain JSON values.
                plain = json.loads(json.dumps({k: v for k, v in record.items() if k != "config"},
                                              default=str))
                run.summary.update({
                    "run_record": non_finite_as_strings(plain),
                    "history_layout": {"rows": self.rows, "key_orders": self.key_orders},
                })
        except Exception as e:  # noqa: BLE001
            self._give_up(e)
            ok = False
        try:
            run.finish(exit_code=0 if ok else 1)
        except Exception as e:  # noqa: BLE001
            self._give_up(e)
        self.run = None
