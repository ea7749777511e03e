"""nesterov_bench: what Nesterov momentum buys over GD, heavy-ball momentum and Adam, measured."""

from pathlib import Path

__version__ = "0.1.0"
#: The Hydra config tree: conf/config.yaml and its groups.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
