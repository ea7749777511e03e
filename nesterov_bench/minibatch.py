"""Does acceleration survive mini-batch noise? The mini-batch quadratic in closed form.

The quadratic task as a finite least-squares problem (``conf/analysis.yaml``'s ``minibatch_quadratic``:
its rows are the examples), trained by mini-batch SGD whose batches are drawn with replacement
(``train.sampling=replacement``). For each batch size, each method's fewest steps to ``target`` x the
start's expected suboptimality, at the best point of its joint-protocol tuning space (conf/space/joint/),
from the exact second-moment recursion ``theory.minibatch_losses`` on the problem's own rows. Unlike the
additive noise of ``analyze/noisy.py`` this noise is the problem's: it scales with the iterate and, with
the default consistent system (r = 0 at x*), vanishes at the optimum.

    python -m nesterov_bench.minibatch [--force]

writes ``results/theory/minibatch_quadratic.json`` (the repository's copy, which the
``${batch_setting:}`` resolver and the analysis read) unless it already holds these settings. It needs
torch (the rows are the task's, drawn by torch); ``make reproduce`` runs it before its runs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from omegaconf import OmegaConf

from . import CONF_DIR, THEORY_DIR, store, theory
from .analyze.noisy import METHODS, cached, settings_space
from .tasks import make_task

CACHE = THEORY_DIR / "minibatch_quadratic.json"


def settings() -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "analysis.yaml").minibatch_quadratic)


def problem(cfg: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows, the residuals at the minimiser and x* of the ``quadratic`` task with ``cfg``'s settings
    (the problem the ``minibatch_quadratic`` experiment trains on, float64)."""
    task_cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task" / "quadratic.yaml").task, resolve=True)
    task_cfg.update(dtype="float64", optimum="zero", **{k: cfg[k] for k in ("dim", "rows", "kappa", "mu",
                                                                          "noise_std", "data_seed")})
    data = make_task(task_cfg).load_data({}, torch.device("cpu"))
    a, y, x_star = (t.numpy() for t in (data.train.x, data.train.y, data.optimum.x_star))
    return a, a @ x_star - y, x_star


def compute(cfg: dict) -> dict:
    a, r, x_star = problem(cfg)
    mean0, var0 = -x_star, float(cfg["var0"])  # x_0 ~ N(0, var0 I)
    h = a.T @ a / len(a)
    goal = cfg["target"] * 0.5 * float(np.trace(h) * var0 + mean0 @ h @ mean0)
    rows = []
    with np.errstate(all="ignore"):  # the space's diverging points overflow; they never reach the target
        for batch in cfg["batches"]:
            b = None if batch == "full" else int(batch)
            row = {"batch": batch}
            for m in METHODS:
                space = settings_space(m)
                steps, lr, mu = theory.fastest(theory.minibatch_losses(m, a, r, space, b, mean0, var0), space,
                                               cfg["max_steps"], goal)
                row[m] = {"steps": steps, "lr": lr, "momentum": mu}
            rows.append(row)
    return {"settings": cfg, "goal": goal, "rows": rows}


def ensure(force: bool = False) -> dict:
    """The cache for the declared settings: read when it holds them, else computed and written."""
    cfg = settings()
    if not force and (data := cached("minibatch_quadratic", cfg)) is not None:
        return data
    out = compute(cfg)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(CACHE, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="recompute even when the cache holds these settings")
    args = ap.parse_args(argv)
    out = ensure(args.force)
    for row in out["rows"]:
        print(f"batch {row['batch']}: " + ", ".join(
            f"{m} {row[m]['steps']:g} steps (lr {row[m]['lr']:g}, momentum {row[m]['momentum']:g})"
            for m in METHODS))
    print(CACHE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
