"""Where the configs live, and the command-line entry points that must answer without loading torch.

``nesterov-train`` and ``nesterov-members`` (installed by ``pip install -e .``) start here: shell
completion (``-sc query=bash``) is answered by Hydra from ``conf/`` alone, in well under a second, and
everything else hands over to the module that trains.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
#: The config groups a user picks on the command line (``budget/`` is chosen by the profile).
USER_GROUPS = ("task", "optimizer", "profile", "experiment", "decay", "tuning")


def group_options(group: str) -> list[str]:
    """The options of a config group: the names of ``conf/<group>/*.yaml``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _completing(argv: list[str]) -> bool:
    return any(a in ("-sc", "--shell-completion") or a.startswith("--shell-completion=") for a in argv)


def _complete() -> None:
    import hydra

    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(lambda cfg: None)()


def train_entry() -> None:
    """``nesterov-train``: one run, or with -m a sweep (``python -m nesterov_bench.train``)."""
    if _completing(sys.argv[1:]):
        return _complete()
    from .train import main

    main()


def members_entry() -> None:
    """``nesterov-members``: several runs of one task and optimizer as one vectorized program."""
    if _completing(sys.argv[1:]):
        return _complete()
    from .members import main

    main()
