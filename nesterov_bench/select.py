"""``python -m nesterov_bench.select``: choose the tuned learning rates (see protocol.py)."""

from .protocol import main

if __name__ == "__main__":
    main()
