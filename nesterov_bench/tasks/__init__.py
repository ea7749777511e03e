"""Tasks by name. Importing this package registers every task in ``TASKS``."""

from . import synthetic, vision  # noqa: F401  (registration)
from .base import TASKS, Data, Selection, Split, Task, make_task

__all__ = ["TASKS", "Data", "Selection", "Split", "Task", "make_task"]
