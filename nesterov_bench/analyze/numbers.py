"""Every number the paper's text quotes, as LaTeX macros: ``\\nbdef{key}{value}``, used as ``\\nb{key}``.

paper/main.tex defines ``\\nb`` to stop the build on a key this file does not define, so the text
cannot quote a number that the results do not produce.
"""

from __future__ import annotations

import math

from .. import theory
from . import quadratic
from .claims import Claim
from .noisy import agreement, speedup, vanishing
from .study import OPT_LABEL, TASK_ORDER, Study
from .tables import completed, decay_label, effect_text, interval, lr_text, occupied_hours, tex, unit, value


def collect(study: Study, claims: list[Claim], rates: dict, skipped: int) -> dict[str, str]:
    """key -> plain text (``tables.tex`` makes it LaTeX)."""
    runs = study.loaded.runs
    mine = runs[runs.experiment.str.startswith(study.profile)]
    n_final = study.final.groupby(["task", "optimizer"]).size()
    cfg = study.cfg
    envs = sorted(set(mine.device.dropna()))
    commits = sorted(set(mine.commit.dropna()))
    num: dict[str, str] = {
        "meta/profile": study.profile,
        **({"meta/sizing": study.sizing} if study.sizing else {}),
        "meta/final_seeds": str(int(n_final.mode().iloc[0])),
        "meta/runs": str(len(mine)),
        "meta/skipped": str(skipped),
        "meta/diverged": str(int((mine.status == "diverged").sum())),
        "meta/tune_runs": str(len(study.tune)),
        "meta/final_runs": str(len(study.final)),
        "meta/device": "; ".join(envs) or "unknown",
        "meta/hosts": _hosts(mine),
        "meta/arithmetic": _arithmetic(mine),
        "meta/torch": ", ".join(sorted(set(mine.torch.dropna()))) or "unknown",
        "meta/commit": ", ".join(c[:7] for c in commits) if len(commits) <= 2 else f"{len(commits)} commits",
        "meta/tasks": str(len(study.tasks)),
        "meta/tasklist": ", ".join(study.tasks),
        "meta/missing_tasks": ", ".join(t for t in TASK_ORDER if t not in study.tasks) or "none",
        # a vectorized run records its population's wall time: each member counts its share
        "meta/compute_hours": f"{(mine.wall_time_s / mine.population).sum() / 3600:.2f}",
        "meta/wall_hours": f"{occupied_hours(mine):.2f}",  # wall-clock time with a run in progress
        "meta/reproduce_cmd": f"make reproduce PROFILE={study.profile}",
        "meta/vectorized_runs": str(int((mine.population > 1).sum())),
        "meta/vectorized_tasks": ", ".join(t for t in TASK_ORDER
                                           if (mine[mine.task == t].population > 1).any()) or "none",
        "rule/level": f"{cfg['verdict']['level']:.0%}",
        "rule/bootstrap_min_n": str(cfg["verdict"]["bootstrap_min_n"]),
        "rule/power": f"{cfg['verdict']['power']:.0%}",
        "rule/rope_speedup": f"{cfg['verdict']['rope']['speedup']:g}",
        "rule/rope_early": f"{cfg['verdict']['rope']['early']:g}",
        "rule/rope_share": f"{cfg['verdict']['rope']['share']:g}",
        "rule/rope_size": f"{cfg['verdict']['rope']['size_per_decade']:g}",
        "rule/target_fractions": ", ".join(f"{f:.0%}" for f in cfg["target_fractions"]),
        "rule/tolerance": f"{cfg['tolerance']['relative']:.0%}",
        "rule/tolerance_subopt": f"{10 ** cfg['tolerance']['log10_suboptimality']:g}",
    }
    num.update(budget_numbers(study))
    num.update(protocol_numbers(study))
    for c in claims:
        num.update(claim_numbers(c))
    if study.widths:
        num["width/widths"] = ", ".join(str(w) for w in study.widths)
        params = study.width_parameters
        if params:
            num["width/params"] = f"{min(params.values()):,} to {max(params.values()):,}"
    for task in study.tasks:
        key = study.report_key(task)
        num[f"final/{task}/metric"] = unit(key)
        for opt in study.optimizers:
            sel = study.final[(study.final.task == task) & (study.final.optimizer == opt)]
            if len(sel):
                num[f"final/{task}/{opt}"] = interval(key, completed(sel, key))
                num[f"tuned/{task}/{opt}"] = lr_text(float(sel.lr.iloc[0]))
        tgt = cfg["targets"].get(task)
        if tgt:
            num[f"target/{task}"] = value(tgt["metric"], tgt["value"])
    for (kappa, opt), r in rates.items():
        num[f"theory/{kappa:g}/{opt}/predicted"] = f"{r['predicted']:.4f}"
        num[f"theory/{kappa:g}/{opt}/measured"] = f"{r['measured']:.4f}"
    num["theory/kappas"] = ", ".join(f"{k:g}" for k in study.theory_kappas()) or "none"
    for opt, sel in study.recipe("seed000_linreg").groupby("optimizer"):
        num[f"recipe/seed000/{opt}/val_loss"] = interval("val/loss", completed(sel, "val/loss"))
        num[f"recipe/seed000/{opt}/diverged"] = str(int((sel.status == "diverged").sum()))
    for (lr, ed, wd), sel in study.recipe("seed002_mnist").groupby(["lr", "epoch_decay", "weight_decay"]):
        label = decay_label(ed, wd).split(" ")[0]
        num[f"recipe/seed002/{lr:g}/{label}"] = interval("test/accuracy", completed(sel, "test/accuracy"))
        num[f"recipe/seed002/{lr:g}/{label}/diverged"] = str(int((sel.status == "diverged").sum()))
    noise = study.noise
    for (batch, eff, opt), sel in noise.groupby(["batch", "effective_lr", "optimizer"]):
        num[f"noise/{batch}/{eff:g}/{opt}"] = interval("train/loss", completed(sel, "train/loss"))
    if len(noise):
        num["noise/batches"] = ", ".join(str(b) for b in sorted(set(noise.batch)))
        num["noise/effective_lrs"] = ", ".join(f"{e:g}" for e in sorted(set(noise.effective_lr)))
        num["noise/small_batch"] = str(min(noise.batch))
        num["noise/large_eff"] = f"{max(noise.effective_lr):g}"
    return num


def claim_numbers(c: Claim) -> dict[str, str]:
    """A claim's verdict, pooled effect and tally against each baseline (``claim/<key>/...`` is the
    primary baseline's; ``claim/<key>/<baseline>/...`` every baseline's)."""
    num = {}
    for b, comp in c.comparisons.items():
        n = comp.tally()
        need = comp.seeds_for_power()
        vals = {"verdict": comp.verdict, "effect": effect_text(c, comp.pooled),
                "estimate": effect_text(c, comp.pooled, interval_too=False), "tasks": str(len(comp.effects)),
                **{k: str(v) for k, v in n.items()}}
        if need is not None:
            vals["seeds_median"], vals["seeds_max"] = f"{need[0]:.0f}", f"{need[1]:.0f}"
        for k, v in vals.items():
            num[f"claim/{c.key}/{b}/{k}"] = v
            if b == c.primary:
                num[f"claim/{c.key}/{k}"] = v
    num[f"claim/{c.key}/baseline"] = OPT_LABEL[c.primary]
    return num


def stability_numbers(study: Study, grids: dict) -> dict[str, str]:
    """How often the measured divergence edge of the stability maps (``quadratic.stability_grids``)
    brackets the exact boundary: the last stable and the first diverged lr L of a momentum's row lie
    either side of ``theory.stability_limit``."""
    if not grids:
        return {}
    rows = agree = 0
    for (opt, _), grid in grids.items():
        for mu, (below, above) in quadratic.measured_limits(grid).items():
            rows += 1
            agree += below < theory.stability_limit(opt, mu) < above
    kappas = sorted({kappa for _, kappa in grids})
    return {"stability/rows": str(rows), "stability/agree": str(agree),
            "stability/kappas": ", ".join(f"{k:g}" for k in kappas),
            "stability/runs": str(len(study.stability))}


def latex(num: dict[str, str]) -> str:
    lines = ["% generated by python -m nesterov_bench.analyze from the run store; do not edit"]
    lines += [f"\\nbdef{{{k}}}{{{tex(v)}}}" for k, v in sorted(num.items())]
    return "\n".join(lines) + "\n"


def _arithmetic(runs) -> str:
    """float32, and which runs computed otherwise: in float64 (a task's ``dtype``), or with their forward
    passes in bf16 (``train.precision``)."""
    other = []
    for label, sel in (("in float64", runs.task_cfg.map(lambda c: c.get("dtype")) == "float64"),
                       ("with bf16 forward passes (autocast)", runs.precision == "bf16")):
        if sel.any():
            tasks = ", ".join(t for t in TASK_ORDER if (runs[sel].task == t).any())
            other.append(f"{int(sel.sum()):,} runs {label} ({tasks})")
    return "float32" + (f", but {'; '.join(other)}" if other else "")


def _hosts(runs) -> str:
    """One host, or how many and which with their share of the runs (the paper must say when the runs
    come from more than one)."""
    counts = runs.host.dropna().value_counts()
    if len(counts) <= 1:
        return "one host" if len(counts) else "an unrecorded host"
    return f"{len(counts)} hosts: " + "; ".join(f"{h}, {n} runs" for h, n in counts.items())


def budget_numbers(study: Study, share: float = 0.9, enough: int = 3) -> dict[str, str]:
    """Whether the budgets are long enough (issue 17's sizing rule, declared before the paper profile's
    results were read): in how many tasks the final runs of at least ``enough`` optimizers reach the
    task's declared target (``targets`` in conf/analysis.yaml, Table ttt) on at least ``share`` of their
    seeds, and which tasks fall short (with their count of such optimizers)."""
    p = study.per_run
    if p.empty:
        return {}
    arriving = p.groupby(["task", "optimizer"]).reached.mean().ge(share).groupby("task").sum()
    short = [f"{t} ({int(arriving[t])} of {p[p.task == t].optimizer.nunique()})"
             for t in study.tasks if t in arriving and arriving[t] < enough]
    return {"budget/reach_ok": f"{len(arriving) - len(short)} of {len(arriving)}",
            "budget/reach_short": ", ".join(short) or "none",
            "budget/reach_rule": f"at least {enough} optimizers on at least {share:.0%} of seeds"}


def protocol_numbers(study: Study) -> dict[str, str]:
    """How the tuning stage was run, read from its points (``Study.tune_points``): trials per task and
    optimizer (their median), tuning seeds per trial, and ``protocol/joint`` (defined only when a
    momentum or Adam's beta1 was tuned, not fixed: the ``joint`` protocol; the paper's text depends on it)."""
    points = study.tune_points
    if points.empty:
        return {}
    per_space = points.groupby(["task", "optimizer"])
    num = {"protocol/trials": f"{per_space.size().median():.0f}",
           "protocol/tune_seeds": f"{points.seeds.median():.0f}"}
    if per_space[["momentum", "beta1"]].nunique().max().max() > 1:
        num["protocol/joint"] = "joint"
    return num


def noisy_numbers(data: dict, seen: dict | None = None, prefix: str = "noisyq", level: str = "sigma"
                  ) -> dict[str, str]:
    """The noisy (or, ``prefix`` minibatchq and ``level`` batch, the mini-batch) quadratic's headline: the
    speed-up over GD and heavy ball at the first level (no noise; the full batch), and the level where
    it vanishes, in closed form and (``seen``, where every level was run) measured."""
    first = data["rows"][0]
    vanish = vanishing(data, level)
    num = {f"{prefix}/speedup_gd_0": f"{speedup(first, 'gd'):.2f}",
           f"{prefix}/speedup_hb_0": f"{speedup(first, 'momentum'):.2f}",
           f"{prefix}/vanish": _level_text(vanish),
           f"{prefix}/vanish_bar": f"{data['settings']['vanish']:g}"}
    reached = [r for r in data["rows"] if math.isfinite(speedup(r, "gd"))]
    if reached:  # the noisiest level at which both reach the target
        num[f"{prefix}/last_level"] = _level_text(reached[-1][level])
        num[f"{prefix}/speedup_gd_last"] = f"{speedup(reached[-1], 'gd'):.2f}"
    if seen and len(seen["rows"]) == len(data["rows"]):
        num[f"{prefix}/measured_vanish"] = _level_text(vanishing(seen, level))
        num[f"{prefix}/measured_seeds"] = str(seen["rows"][0]["gd"]["seeds"])
        inside, total = agreement(data, seen, level)
        num[f"{prefix}/agree"] = f"{inside} of {total}"
    return num


def _level_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else "none of the levels"
    return str(value)
