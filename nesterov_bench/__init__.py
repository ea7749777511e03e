"""nesterov_bench: what Nesterov momentum buys over GD, heavy-ball momentum and Adam, measured."""

__version__ = "0.1.0"
