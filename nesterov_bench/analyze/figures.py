"""The paper's figures (PDF) and the README's (PNG), from a ``Study``. Every band is the mean with a 95%
Student-t interval over seeds, the one aggregation of ``stats``; every panel states its n."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats as sps  # noqa: E402

from .. import theory  # noqa: E402
from . import measures, quadratic, speed  # noqa: E402
from .stats import LEVEL  # noqa: E402
from .stats import summarize as summarize_values  # noqa: E402
from .study import AXIS_SYMBOL, OPT_LABEL, OPT_ORDER, SECOND_AXIS, Study  # noqa: E402
from .tables import target_text, unit  # noqa: E402

#: The figures that show only some of the study's tasks (the others show them all): their captions' note on
#: CPU sizing names only these tasks' (``Study.sized``; written as ``sizing/<figure>`` where it differs). The
#: width sweep's networks are its own (mnist_mlp 784-W-W-10, its caption says so), not the main study's.
FIGURE_TASKS = {"quadratic": ("quadratic",), "stability": ("quadratic",), "noise_floor": ("linreg",),
                "width_sweep": ()}
COLORS = dict(zip(OPT_ORDER, sns.color_palette("colorblind", len(OPT_ORDER)), strict=True))
sns.set_theme(style="whitegrid", context="paper", font_scale=0.95)


def save(fig, out: Path, name: str) -> list[Path]:
    """``name.pdf`` and ``name.png``, without timestamps so unchanged results give unchanged files."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    fig.savefig(paths[0], bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    fig.savefig(paths[1], bbox_inches="tight", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return paths


def band(frame: pd.DataFrame, x: str = "step") -> pd.DataFrame:
    """Per step: mean, 95% t half-width and n of the finite values over seeds, and the mean time."""
    if frame.empty:
        return pd.DataFrame(columns=["step", "mean", "sd", "n", "time_s", "hw"])
    f = frame[np.isfinite(frame.value.astype(float))]
    g = f.groupby("step")
    out = pd.DataFrame({"mean": g.value.mean(), "sd": g.value.std(ddof=1), "n": g.value.size(),
                        "time_s": g.time_s.mean()}).reset_index()
    t = sps.t.ppf(0.5 + LEVEL / 2, np.maximum(out.n - 1, 1))
    out["hw"] = np.where(out.n > 1, t * out.sd / np.sqrt(out.n), 0.0)
    return out


def grid(n: int, max_cols: int, width: float, height: float):
    """A figure of ``n`` panels in rows of at most ``max_cols`` (each ``width`` x ``height`` inches)."""
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                        layout="constrained")


def legend_below(fig, axes, n: int) -> None:
    """Hide the panels past the ``n``-th and put the first panel's legend under the figure."""
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(labels)), fontsize=8)


def _log_y(key: str) -> bool:
    return not key.endswith("accuracy")


def _metric_rows(study: Study, runs: pd.DataFrame, key: str) -> pd.DataFrame:
    frames = [measures.evals(study.metrics_of(r), key) for r in runs.run_id]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames) if frames else pd.DataFrame(columns=["step", "value", "time_s"])


def curves(study: Study, out: Path) -> list[Path]:
    """Training loss and the validation metric vs step, and the validation metric vs seconds."""
    tasks = study.tasks
    fig, axes = plt.subplots(len(tasks), 3, figsize=(11, 2.4 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        runs = study.final[study.final.task == task]
        has_train_loss = any(len(measures.evals(study.metrics_of(r), "train/loss")) for r in runs.run_id[:1])
        train_key = "train/loss" if has_train_loss else "train/batch_loss"
        val_key = study.select_key(task)
        for j, (key, x) in enumerate([(train_key, "step"), (val_key, "step"), (val_key, "time_s")]):
            ax = axes[i, j]
            for opt in study.optimizers:
                sel = runs[runs.optimizer == opt]
                rows = _metric_rows(study, sel, key)
                if _log_y(key):  # log-scale panels: mean and interval of log10 values (geometric mean)
                    rows = rows.assign(value=np.log10(rows.value.astype(float).where(rows.value > 0)))
                b = band(rows)
                if b.empty:
                    continue
                scale = 100 if key.endswith("accuracy") else 1
                lo, mid, hi = (b["mean"] - b.hw) * scale, b["mean"] * scale, (b["mean"] + b.hw) * scale
                if _log_y(key):
                    lo, mid, hi = 10**lo, 10**mid, 10**hi
                ax.plot(b[x], mid, color=COLORS[opt], label=f"{OPT_LABEL[opt]} (n={len(sel)})", lw=1.2)
                ax.fill_between(b[x], lo, hi, color=COLORS[opt], alpha=0.2, lw=0)
            if _log_y(key):
                ax.set_yscale("log")
            elif key.endswith("accuracy"):
                lo = _metric_rows(study, runs, key)
                late = lo[lo.step >= 0.1 * lo.step.max()].value
                if len(late):
                    ax.set_ylim(max(0, 100 * late.quantile(0.05) - 2), min(100, 100 * late.max() + 1))
            ax.set_xlabel("step" if x == "step" else "wall time (s)")
            ax.set_ylabel(unit(key))
            ax.set_title(f"{task}", fontsize=9)
            if j == 2:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Final runs at the tuned learning rates, mean and 95% interval over seeds (log axes: "
                 f"of log10 values) (profile {study.profile})", y=1.0)
    fig.tight_layout()
    return save(fig, out, "curves")


def sensitivity(study: Study, out: Path) -> list[Path]:
    """Final validation metric against the learning rate, tuning stage: at each rate the best point over
    the space's other axis (momentum, beta1), each point the mean over its seeds; x = every point at the
    rate had a seed diverge; ring = the final runs' point."""
    tasks = study.tasks
    points = study.tune_points
    fig, axes = grid(len(tasks), 4, 3.6, 3.2)
    for ax, task in zip(axes.flat, tasks, strict=False):
        key = study.select_key(task)
        scale = 100 if key.endswith("accuracy") else 1
        here = points[points.task == task]
        for opt in study.optimizers:
            sel = here[here.optimizer == opt]
            best = sel.sort_values("score").groupby("lr").tail(1).sort_values("lr")  # best point per rate
            ok = best[np.isfinite(best.value)]
            ax.plot(ok.lr, ok.value * scale, "o-", color=COLORS[opt], ms=3, lw=1, label=OPT_LABEL[opt])
            chosen = study.chosen(task, opt)
            if chosen is not None:
                axis = SECOND_AXIS.get(opt, "momentum")
                hit = sel[np.isclose(sel.lr, chosen["lr"]) & np.isclose(sel[axis].fillna(0.0),
                                                                        chosen.get(axis, 0.0))]
                ax.plot(hit.lr, hit.value * scale, "o", mfc="none", mec=COLORS[opt], ms=9, mew=1.5)
            div = best[~np.isfinite(best.value)]
            if len(div):  # (an empty unclipped line would still claim the figure's corner for the layout)
                ax.plot(div.lr, np.zeros(len(div)), "x", color=COLORS[opt], ms=6, mew=1.5,
                        transform=ax.get_xaxis_transform(), clip_on=False)
        ax.set_xscale("log")
        if len(here):  # every rate tried, diverged ones included, inside the axes (their x marks too)
            ax.set_xlim(here.lr.min() / 2, here.lr.max() * 2)
        vals = here.value[np.isfinite(here.value)]
        if _log_y(key):
            ax.set_yscale("log")
            if len(vals):  # finite but far off (e.g. GD just below its divergence threshold): clipped
                ax.set_ylim(top=30 * vals.median())
        elif len(vals):
            ax.set_ylim(max(0, vals.max() * scale - 30), min(100, vals.max() * scale + 2))
        ax.set_xlabel("learning rate")
        ax.set_ylabel(unit(key))
        seeds = sorted(set(here.seeds))
        ax.set_title(f"{task} ({'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''} per point)",
                     fontsize=9)
    legend_below(fig, axes, len(tasks))
    several = len(points) and points.groupby(["task", "optimizer", "lr"]).size().max() > 1  # a second axis
    fig.suptitle("Learning-rate sensitivity: "
                 + ("best over momentum or β1 at each rate; " if several else "")
                 + "x = diverged, ring = chosen point")
    return save(fig, out, "sensitivity")


def _map_color(key: str, value: np.ndarray, best: float) -> tuple[np.ndarray, float, float, str]:
    """A map's colours for one task: accuracy in % (the best 20 points), else log10 of the loss or
    suboptimality (within 1 or 6 decades of the best); brighter is better."""
    if key.endswith("accuracy"):
        return 100 * value, 100 * best - 20, 100 * best, "viridis"
    span = 6 if key.endswith("suboptimality") else 1
    logv = np.log10(np.where(value > 0, value, np.nan))
    return logv, math.log10(best), math.log10(best) + span, "viridis_r"


def maps(study: Study, out: Path) -> list[Path]:
    """Hyperparameter maps of the tuning stage (issue 15's stability maps, for every task): per task (rows)
    and optimizer (columns), the final validation metric over learning rate x momentum (Adam: beta1; GD:
    the rate alone), each cell the mean over its seeds; grey = a seed diverged or ended non-finite; red
    outline = the final runs' point."""
    points = study.tune_points
    tasks, opts = study.tasks, study.optimizers
    if points.empty:
        return []
    fig, axes = plt.subplots(len(tasks), len(opts), figsize=(2.9 * len(opts), 1.9 * len(tasks)),
                             squeeze=False, layout="constrained")
    for i, task in enumerate(tasks):
        key = study.select_key(task)
        here = points[points.task == task]
        finite = here.value[np.isfinite(here.value)]
        best = (finite.max() if key.endswith("accuracy") else finite.min()) if len(finite) else math.nan
        mesh = None
        for j, opt in enumerate(opts):
            ax = axes[i, j]
            sel = here[here.optimizer == opt]
            axis = SECOND_AXIS.get(opt)
            if sel.empty or not math.isfinite(best):
                ax.set_visible(False)
                continue
            ys = sorted(sel[axis].unique()) if axis else [0.0]
            xs = sorted(sel.lr.unique())
            ratio = xs[1] / xs[0] if len(xs) > 1 else 10.0
            edges = [x / ratio ** 0.5 for x in xs] + [xs[-1] * ratio ** 0.5]
            table = sel.assign(y=sel[axis] if axis else 0.0)
            value = table.pivot_table(index="y", columns="lr", values="value", dropna=False).reindex(
                index=ys, columns=xs).to_numpy(float)
            bad = table.pivot_table(index="y", columns="lr", values="unstable").reindex(index=ys, columns=xs)
            shown, lo, hi, cmap = _map_color(key, value, best)
            mesh = ax.pcolormesh(edges, np.arange(len(ys) + 1), shown, cmap=cmap, vmin=min(lo, hi),
                                 vmax=max(lo, hi), shading="flat")
            ax.pcolormesh(edges, np.arange(len(ys) + 1), np.where(bad.to_numpy(float) > 0, 1.0, np.nan),
                          cmap="Greys", vmin=0, vmax=2, shading="flat")
            chosen = study.chosen(task, opt)
            if chosen is not None:
                k = int(np.argmin(np.abs(np.log(np.array(xs) / chosen["lr"]))))
                m = int(np.argmin(np.abs(np.array(ys) - (chosen.get(axis, 0.0) if axis else 0.0))))
                ax.add_patch(matplotlib.patches.Rectangle((edges[k], m), edges[k + 1] - edges[k], 1,
                                                          fill=False, ec="red", lw=1.5))
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_yticks(np.arange(len(ys)) + 0.5, [f"{y:g}" for y in ys] if axis else [""])
            ax.tick_params(labelsize=7)
            ax.set_title(f"{task}, {OPT_LABEL[opt]}", fontsize=8)
            if i == len(tasks) - 1:
                ax.set_xlabel("learning rate", fontsize=8)
            if axis:
                ax.set_ylabel(AXIS_SYMBOL[axis], fontsize=8)
        if mesh is not None:
            label = unit(key) if key.endswith("accuracy") else f"log10 {unit(key)}"
            fig.colorbar(mesh, ax=list(axes[i]), label=label, fraction=0.03, pad=0.01)
    fig.suptitle("Tuning stage: final validation metric over each optimizer's space (mean over seeds; "
                 "grey = a seed diverged; red = chosen)", fontsize=10)
    return save(fig, out, "maps")


def ttt(study: Study, out: Path) -> list[Path]:
    """Steps and seconds to the target, mean and 95% interval over the seeds that reached it."""
    p = study.per_run
    tasks = [t for t in study.tasks if t in study.cfg["targets"]]
    fig, axes = plt.subplots(2, len(tasks), figsize=(2.3 * len(tasks), 4.6), squeeze=False)
    for j, task in enumerate(tasks):
        for i, (col, label) in enumerate([("ttt_steps", "steps to target"), ("ttt_s", "seconds to target")]):
            ax = axes[i, j]
            for k, opt in enumerate(study.optimizers):
                sel = p[(p.task == task) & (p.optimizer == opt)]
                vals = sel.loc[sel.reached, col].to_numpy()
                if len(vals):
                    hw = (sps.t.ppf(0.5 + LEVEL / 2, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals))
                          if len(vals) > 1 else 0)
                    ax.bar(k, vals.mean(), yerr=hw, color=COLORS[opt], capsize=2)
                    ax.text(k, vals.mean(), f"{len(vals)}/{len(sel)}", ha="center", va="bottom", fontsize=6)
                else:
                    ax.text(k, 0, f"never\n0/{len(sel)}", ha="center", va="bottom", fontsize=6, rotation=90)
            ax.set_xticks(range(len(study.optimizers)), [OPT_LABEL[o] for o in study.optimizers],
                          rotation=45, fontsize=7)
            ax.set_ylabel(label)
            if i == 0:
                ax.set_title(f"{task}\n{target_text(study, task)}", fontsize=8)
    fig.suptitle("Time to target (label: seeds that reached it / seeds run)", y=1.0)
    fig.tight_layout()
    return save(fig, out, "ttt")


def profile_curves(study: Study) -> dict[str, dict[str, np.ndarray]]:
    """Dolan-More performance profiles of the median time to target over seeds, per measure.
    rho_s(tau) = share of tasks on which optimizer s is within a factor tau of the best."""
    p = study.per_run
    result = {}
    for col in ("ttt_steps", "ttt_s"):
        t = p.assign(v=p[col].fillna(np.inf)).groupby(["task", "optimizer"]).v.median().unstack()
        t = t[np.isfinite(t.min(axis=1))]
        ratios = t.div(t.min(axis=1), axis=0)
        result[col] = {opt: np.sort(ratios[opt].to_numpy()) for opt in ratios.columns}
    return result


def profile(study: Study, out: Path) -> list[Path]:
    curves_ = profile_curves(study)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (col, label) in zip(axes, [("ttt_steps", "steps"), ("ttt_s", "seconds")], strict=True):
        taus_all = np.concatenate([r[np.isfinite(r)] for r in curves_[col].values()] or [np.ones(1)])
        tau_max = max(2.0, float(taus_all.max()) * 1.5) if len(taus_all) else 2.0
        n_tasks = max((len(r) for r in curves_[col].values()), default=0)
        for opt in study.optimizers:
            r = curves_[col].get(opt)
            if r is None or not len(r):
                continue
            taus = np.concatenate([[1.0], r[np.isfinite(r)], [tau_max]])
            rho = np.concatenate([[np.mean(r <= 1.0)], [np.mean(r <= x) for x in r[np.isfinite(r)]],
                                  [np.mean(np.isfinite(r))]])
            ax.step(taus, rho, where="post", color=COLORS[opt], label=OPT_LABEL[opt])
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"tau: within this factor of the fastest ({label} to target)")
        ax.set_ylabel(f"share of tasks (n={n_tasks})")
    axes[0].legend(fontsize=7)
    fig.suptitle("Performance profile of time to target (Dolan-More; median over seeds; never = infinite)")
    fig.tight_layout()
    return save(fig, out, "profile")


def quadratic_fig(study: Study, out: Path, rates: dict) -> list[Path]:
    """Suboptimality vs iteration for several kappa at the textbook settings, theory dashed; and the
    tuned final runs on the quadratic task with the rates their own (lr, momentum) predict."""
    kappas = study.theory_kappas()
    final_q = study.final[study.final.task == "quadratic"]
    panels = len(kappas) + (1 if len(final_q) else 0)
    if not panels:
        return []
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.0), squeeze=False)
    for ax, kappa in zip(axes[0], kappas, strict=False):
        for opt in [o for o in OPT_ORDER if (kappa, o) in rates]:
            runs = study.theory[(study.theory.kappa == kappa) & (study.theory.optimizer == opt)]
            k, f = quadratic.median_curve(study, runs.run_id)
            r = rates[kappa, opt]
            ax.plot(k, f, color=COLORS[opt], lw=1.3,
                    label=f"{OPT_LABEL[opt]}: {r['measured']:.3f} (n={r['n']})")
            ax.plot(k, f[0] * r["predicted"] ** (2 * k), "--", color=COLORS[opt], lw=1)
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-30))
        ax.set_title(f"kappa = {kappa:g}, textbook settings", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("f(x) - f*")
        ax.legend(fontsize=6, title="measured rate; dashed: theory", title_fontsize=6)
    if len(final_q):
        ax = axes[0, -1]
        tcfg = quadratic.task_config(final_q.path.iloc[0])
        for opt in study.optimizers:
            runs = final_q[final_q.optimizer == opt]
            if not len(runs):
                continue
            k, f = quadratic.median_curve(study, runs.run_id)
            ax.plot(k, f, color=COLORS[opt], lw=1.3, label=f"{OPT_LABEL[opt]} lr {runs.lr.iloc[0]:g}")
            pred = quadratic.predicted_rate(tcfg, opt, float(runs.lr.iloc[0]), float(runs.momentum.iloc[0]))
            if math.isfinite(pred):
                ax.plot(k, f[0] * pred ** (2 * k), "--", color=COLORS[opt], lw=1)
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-30))
        ax.set_title(f"tuned final runs, kappa = {tcfg['kappa']:g}, momentum 0.9", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("f(x) - f*")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save(fig, out, "quadratic")


def noise_floor(study: Study, out: Path) -> list[Path]:
    """Final training loss against the effective learning rate, per batch size, mean and 95% interval."""
    runs = study.noise
    if not len(runs):
        return []
    batches = sorted(set(runs.batch), reverse=True)
    fig, axes = plt.subplots(1, len(batches), figsize=(3.6 * len(batches), 3.0), squeeze=False, sharey=True)
    for ax, batch in zip(axes[0], batches, strict=True):
        for k, opt in enumerate(o for o in OPT_ORDER if o in set(runs.optimizer)):
            sel = runs[(runs.batch == batch) & (runs.optimizer == opt) & (runs.status == "completed")]
            if sel.empty:  # every run of it diverged (or none has finished yet)
                continue
            g = sel.groupby("effective_lr")["final:train/loss"]
            stats_ = [summarize_values(v) for _, v in g]
            effs = np.array(sorted(g.groups)) * (1 + 0.06 * (k - 1))  # side by side, not on top
            ax.errorbar(effs, [s.mean for s in stats_], yerr=[s.half_width for s in stats_], fmt="o-",
                        color=COLORS[opt], ms=4, capsize=2, label=f"{OPT_LABEL[opt]} (n={stats_[0].n})")
        ax.set_xscale("log")
        ax.set_xlabel("effective learning rate lr / (1 - momentum)")
        ax.set_ylabel("final train loss (MSE)")
        ax.set_title(f"linreg, batch {batch}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out, "noise_floor")


def stability(grids: dict, out: Path) -> list[Path]:
    """Stability maps on the quadratic (``quadratic.stability_grids``): per optimizer (rows) and kappa
    (columns), the median over seeds of log10(final / initial suboptimality) over lr L x momentum; diverged
    cells grey; black ticks at the exact boundary (theory.stability_limit)."""
    if not grids:
        return []
    kappas = sorted({kappa for _, kappa in grids})
    opts = [o for o in ("momentum", "nesterov") if any(opt == o for opt, _ in grids)]
    fig, axes = plt.subplots(len(opts), len(kappas), figsize=(3.2 * len(kappas), 2.6 * len(opts)),
                             squeeze=False)
    for i, opt in enumerate(opts):
        for j, kappa in enumerate(kappas):
            ax = axes[i, j]
            grid = grids[opt, kappa]
            xs, mus = sorted(grid.x.unique()), sorted(grid.momentum.unique())
            ratio = xs[1] / xs[0] if len(xs) > 1 else 2.0
            edges = [x / ratio ** 0.5 for x in xs] + [xs[-1] * ratio ** 0.5]
            values = grid.pivot(index="momentum", columns="x", values="log_ratio").reindex(index=mus,
                                                                                          columns=xs)
            bad = grid.pivot(index="momentum", columns="x", values="diverged").reindex(index=mus, columns=xs)
            mesh = ax.pcolormesh(edges, np.arange(len(mus) + 1), values.to_numpy(float), cmap="viridis_r",
                                 vmin=-30, vmax=0, shading="flat")
            ax.pcolormesh(edges, np.arange(len(mus) + 1), np.where(bad.to_numpy(bool), 1.0, np.nan),
                          cmap="Greys", vmin=0, vmax=2, shading="flat")
            for k, mu in enumerate(mus):
                limit = theory.stability_limit(opt, mu)
                ax.plot([limit, limit], [k + 0.1, k + 0.9], color="black", lw=1.6)
            ax.set_xscale("log")
            ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8) if edges[0] <= t <= edges[-1]]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_yticks(np.arange(len(mus)) + 0.5, [f"{m:g}" for m in mus])
            ax.set_title(f"{OPT_LABEL[opt]}, kappa = {kappa:g}", fontsize=9)
            ax.set_xlabel("lr x L")
            ax.set_ylabel("momentum")
            fig.colorbar(mesh, ax=ax, label="log10 final/initial", fraction=0.05)
    fig.tight_layout()
    return save(fig, out, "stability")


def _display(scale: str, x):
    """An effect on its display axis: speed-ups as factors (log axis), shares as they are."""
    x = np.asarray(x, dtype=float)
    return 2 ** x if scale == "log2" else 2 ** -x if scale == "slope" else x


def forest(claims: list, out: Path) -> list[Path]:
    """Per claim (i)-(iv), against its primary baseline: every task's effect with its 95% interval,
    the pooled random-effects estimate (diamond) and the region of practical equivalence (grey)."""
    shown = [c for c in claims if c.scale != "slope" and c.main.effects]
    if not shown:
        return []
    rows = max(len(c.main.effects) for c in shown) + 1
    fig, axes = plt.subplots(1, len(shown), figsize=(3.0 * len(shown), 0.42 * rows + 1.3), squeeze=False)
    for ax, c in zip(axes[0], shown, strict=True):
        items = list(c.main.effects.items())
        for i, (_, e) in enumerate(items):
            y = len(items) - i
            est = _display(c.scale, e.estimate)
            if e.has_interval:
                lo, hi = sorted(_display(c.scale, [e.low, e.high]))
                ax.plot([lo, hi], [y, y], color="0.2", lw=1.2)
            ax.plot(est, y, "s", color=COLORS["nesterov"], ms=4)
        p = c.main.pooled
        if p is not None and p.has_interval:
            lo, hi = sorted(_display(c.scale, [p.low, p.high]))
            mid = _display(c.scale, p.estimate)
            ax.fill([lo, mid, hi, mid], [0, 0.25, 0, -0.25], color="black")
        band_ = sorted(_display(c.scale, [-c.rope, c.rope]))
        ax.axvspan(*band_, color="0.85", zorder=0)
        ax.axvline(float(_display(c.scale, 0.0)), color="0.4", lw=0.8, ls="--")
        ax.set_yticks([len(items) - i for i in range(len(items))] + [0],
                      [t for t, _ in items] + ["pooled"], fontsize=7)
        if c.scale == "log2":
            ax.set_xscale("log", base=2)
            ax.set_xlabel(f"speed-up over {OPT_LABEL[c.primary]}" if c.key != "faster_early"
                          else "loose / tight speed-up", fontsize=8)
        else:
            ax.set_xlabel(f"share difference vs {OPT_LABEL[c.primary]}", fontsize=8)
        ax.set_title(f"{c.label} {c.main.verdict}", fontsize=9)
        ax.set_ylim(-0.8, len(items) + 0.8)
    fig.suptitle("Effects per task (95% interval), pooled estimate (diamond), equivalence region (grey)",
                 fontsize=9, y=1.0)
    fig.tight_layout()
    return save(fig, out, "forest")


def speedup_curve(study: Study, out: Path) -> list[Path]:
    """Nesterov's speed-up over each other optimizer against the target level (fraction of the budget
    at which the reference reaches it): geometric mean and 95% t-interval over seeds, per task."""
    h = study.hits
    tasks = [t for t in study.tasks if t in study.target_levels]
    if h.empty or not tasks:
        return []
    fig, axes = grid(len(tasks), 3, 3.3, 2.7)
    nest = h[h.optimizer == "nesterov"][["task", "seed", "level", "steps"]]
    for ax, task in zip(axes.flat, tasks, strict=False):
        for opt in [o for o in study.optimizers if o != "nesterov"]:
            other = h[(h.task == task) & (h.optimizer == opt)]
            both = other.merge(nest, on=["task", "seed", "level"], suffixes=("", "_n"))
            if both.empty:
                continue
            both = both.assign(r=np.log2(both.steps / both.steps_n))
            g = both.groupby("fraction").r
            mean, n = g.mean(), g.size()
            hw = sps.t.ppf(0.5 + LEVEL / 2, np.maximum(n - 1, 1)) * g.std(ddof=1).fillna(0) / np.sqrt(n)
            ax.plot(mean.index, 2 ** mean, "o-", color=COLORS[opt], ms=3, lw=1.2,
                    label=f"vs {OPT_LABEL[opt]}")
            ax.fill_between(mean.index, 2 ** (mean - hw), 2 ** (mean + hw), color=COLORS[opt], alpha=0.15)
        ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
        ax.set_yscale("log", base=2)
        ax.set_xlabel("target level (fraction of budget)", fontsize=8)
        ax.set_ylabel("Nesterov's speed-up", fontsize=8)
        ax.set_title(f"{task} (reference: {OPT_LABEL[study.target_levels[task][0]]})", fontsize=8)
    legend_below(fig, axes, len(tasks))
    fig.suptitle("Speed-up as a function of the target (restricted steps; geometric mean, 95% interval)",
                 fontsize=9)
    return save(fig, out, "speedup_curve")


def _shown(key: str, score):
    """An oriented score back on its metric's display scale."""
    score = np.asarray(score, dtype=float)
    if key.endswith("accuracy"):
        return 100 * score
    return 10.0 ** -score if key.endswith("suboptimality") else -score


def tunability(study: Study, out: Path) -> list[Path]:
    """Sivaprasad et al. (2020): the expected best final validation score within k trials drawn at
    random from each optimizer's tuning space (a diverged trial scores the task's worst finite score),
    mean over tuning seeds, against k."""
    tasks = [t for t in study.tasks if len(study.tune[study.tune.task == t])]
    if not tasks:
        return []
    fig, axes = grid(len(tasks), 3, 3.3, 2.7)
    for ax, task in zip(axes.flat, tasks, strict=False):
        key = study.select_key(task)
        tune = study.tune[study.tune.task == task]
        scores = np.array([measures.score(key, v) if st == "completed" else -math.inf
                           for v, st in zip(tune[f"final:{key}"], tune.status, strict=True)])
        worst = scores[np.isfinite(scores)].min() if np.isfinite(scores).any() else 0.0
        tune = tune.assign(score=np.where(np.isfinite(scores), scores, worst))
        for opt in study.optimizers:
            per_seed = [g.score.to_numpy() for _, g in tune[tune.optimizer == opt].groupby("seed")]
            if not per_seed:
                continue
            ks = np.arange(1, min(len(s) for s in per_seed) + 1)
            best = [np.mean([speed.expected_best_of(s, k) for s in per_seed]) for k in ks]
            ax.plot(ks, _shown(key, best), "-", color=COLORS[opt], lw=1.3, label=OPT_LABEL[opt])
        if key.endswith("suboptimality") or not key.endswith("accuracy"):
            ax.set_yscale("log")
        ax.set_xlabel("trials k", fontsize=8)
        ax.set_ylabel(f"expected best {unit(key)}", fontsize=8)
        ax.set_title(task, fontsize=9)
    legend_below(fig, axes, len(tasks))
    fig.suptitle("Tunability: expected best validation score within k random trials of the tuning space",
                 fontsize=9)
    return save(fig, out, "tunability")


def width_fig(study: Study, claims: list, out: Path) -> list[Path]:
    """Claim (v) over the width sweep: Nesterov's speed-up over GD and heavy ball against the parameter
    count (95% interval over seeds), with the weighted meta-regression's line."""
    size = next(c for c in claims if c.key == "larger_gains_small")
    params = study.width_parameters
    if not params:
        return []
    shown = [b for b in ("gd", "momentum") if (comp := size.comparisons.get(b)) is not None
             and comp.pooled is not None and comp.pooled.method.endswith("over widths")]
    if not shown:
        return []
    fig, ax = plt.subplots(figsize=(4.6, 3.4), layout="constrained")
    for b in shown:
        comp = size.comparisons[b]
        pts = [(params[w], comp.effects[study.width_unit(w)]) for w in study.widths
               if study.width_unit(w) in comp.effects and w in params]
        x = np.array([p for p, _ in pts], dtype=float)
        est = np.array([e.estimate for _, e in pts])
        lo, hi = np.array([e.low for _, e in pts]), np.array([e.high for _, e in pts])
        nudge = 0.93 if b == "gd" else 1.07  # side by side, not on top of each other
        ax.errorbar(x * nudge, 2 ** est, yerr=[2 ** est - 2 ** lo, 2 ** hi - 2 ** est], fmt="o",
                    color=COLORS[b], capsize=3,
                    label=f"vs {OPT_LABEL[b]}: {2 ** -comp.pooled.estimate:.2f}x per decade")
        icpt, slope = comp.pooled.intercept, -comp.pooled.estimate  # the claim's own line
        lo_x, hi_x = math.log10(x.min()), math.log10(x.max())
        lx = [lo_x + (hi_x - lo_x) * i / 49 for i in range(50)]
        ax.plot([10 ** v for v in lx], [2 ** (icpt + slope * v) for v in lx], "-", color=COLORS[b], lw=1)
    ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("parameters (mnist_mlp 784-W-W-10)", fontsize=8)
    ax.set_ylabel("Nesterov's speed-up", fontsize=8)
    fig.legend(loc="outside lower center", ncols=2, fontsize=7)
    ax.set_title("Speed-up against model size (width sweep)", fontsize=9)
    return save(fig, out, "width_sweep")
