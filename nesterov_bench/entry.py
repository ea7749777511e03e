"""The installed commands ``nesterov-train`` and ``nesterov-members``.

Shell completion (``-sc query=bash``) is answered by Hydra from ``conf/`` alone: the command's module
(and torch with it) is loaded only when there is something to train, so completion answers in a
fraction of a second instead of the ~2 s that importing torch takes.
"""

from __future__ import annotations

import importlib
import sys

import hydra

from . import CONF_DIR


def _run(module: str) -> None:
    argv = sys.argv[1:]
    if any(a in ("-sc", "--shell-completion") or a.startswith("--shell-completion=") for a in argv):
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(lambda cfg: None)()
    else:
        importlib.import_module(f"nesterov_bench.{module}").main()


def train_entry() -> None:
    """``nesterov-train``: one run, or with -m a sweep (``python -m nesterov_bench.train``)."""
    _run("train")


def members_entry() -> None:
    """``nesterov-members``: several runs of one task and optimizer as one vectorized program."""
    _run("members")
