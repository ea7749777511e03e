"""nesterov_bench: what Nesterov momentum buys over GD, heavy-ball momentum and Adam, measured."""

from pathlib import Path

__version__ = "0.1.0"
#: The Hydra config tree: conf/config.yaml and its groups.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
#: The repository's committed closed forms (results/theory/<name>.json: the noisy and mini-batch
#: quadratics), which the config resolvers and the analysis read.
THEORY_DIR = CONF_DIR.parent / "results" / "theory"
