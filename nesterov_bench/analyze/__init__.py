"""From run directories to the paper: load -> per-run measures -> aggregates and claims -> files.

    python -m nesterov_bench.analyze [--results results] [--out paper/generated] [--profile quick]

Modules: ``load`` (run store -> tidy tables), ``stats`` (the one aggregation: mean, 95% Student-t
interval over seeds, median, n; paired differences), ``measures`` (per-run scores, time to target),
``study`` (which runs belong to which part of a profile's study), ``claims`` (the articles' claims and
the verdict rule), ``tables``, ``figures``, ``numbers`` (LaTeX macros for every number in the text).
"""
