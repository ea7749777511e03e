"""python -m nesterov_bench.analyze: rebuild every table, figure and number of the paper from the runs.

    python -m nesterov_bench.analyze [--results results] [--profile P] [--out DIR]
                                     [--readme README.md | --no-readme] [--report FILE]

Only the profile's own runs are read (experiments ``P`` and ``P-*``). The paper's profile
(``paper_profile`` in conf/analysis.yaml, the default) goes to ``paper/generated`` and the README's
results block (between its ``generated:results`` markers); any other profile goes to its own report,
``<results>/reports/<P>/`` (``generated/`` and ``report.md``), and leaves the paper and the README alone
unless ``--out`` / ``--readme`` say otherwise. Outputs are built in a temporary folder and swapped in
whole, so a failed analysis never leaves a half-updated ``paper/generated``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..store import replace_generated, write_atomic
from . import claims as claims_mod
from . import figures, noisy, numbers, quadratic, tables
from .load import load
from .outputs import destinations, paper_profile
from .study import Study, choose_profile

START, END = "<!-- generated:results:start -->", "<!-- generated:results:end -->"
README_FIGURES = ("forest", "sensitivity", "quadratic")
VERDICT_PROFILES = ("paper", "full")  # the profiles whose verdicts the README may quote as findings


def build(results: Path, out: Path, profile: str | None) -> tuple[Study, dict]:
    """Analyse ``profile``'s runs (default: the paper's) into ``out``."""
    name = profile or paper_profile()
    loaded = load(results, name)
    study = Study(choose_profile(loaded.runs, name, results), loaded)
    claims = claims_mod.evaluate(study)
    rates = quadratic.theory_rates(study)
    grids = quadratic.stability_grids(study)
    tbls = [tables.final_table(study), tables.tuned_table(study), tables.ttt_table(study),
            tables.claims_table(claims), tables.claims_detail_table(claims), tables.sensitivity_table(study)]
    if rates:
        tbls.append(tables.theory_table(study, rates))
    tbls += [tables.time_table(study)]
    tbls += [t for t in (tables.speed_levels_table(study), tables.width_table(study, claims),
                         tables.recipes_table(study),
                         tables.noise_table(study), tables.schedule_table(study)) if t]
    noisy_q = noisy.results(study.cfg["noisy_quadratic"], results)
    noisy_seen = noisy.measured(study, noisy_q)
    tbls.append(tables.noisy_table(noisy_q, noisy_seen))
    batch_q = noisy.minibatch_results(study.cfg["minibatch_quadratic"], results)
    batch_seen = noisy.measured(study, batch_q, "minibatch_quadratic", "batch")
    tbls.append(tables.minibatch_table(batch_q, batch_seen))
    for t in tbls:  # a CPU profile's smaller models and data, said in every caption that shows them
        t.caption = f"{t.caption} {study.sized(t.tasks)}".strip()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "tables").mkdir(parents=True)
        for t in tbls:
            (tmp / "tables" / f"{t.name}.tex").write_text(t.latex())
            (tmp / "tables" / f"{t.name}.md").write_text(t.markdown())
        figs = tmp / "figures"
        made = [*figures.curves(study, figs), *figures.sensitivity(study, figs), *figures.maps(study, figs),
                *figures.ttt(study, figs), *figures.profile(study, figs),
                *figures.quadratic_fig(study, figs, rates),
                *figures.noise_floor(study, figs), *figures.stability(grids, figs),
                *figures.forest(claims, figs), *figures.speedup_curve(study, figs),
                *figures.tunability(study, figs), *figures.width_fig(study, claims, figs)]
        num = {**numbers.collect(study, claims, rates, len(loaded.skipped)),
               **numbers.stability_numbers(study, grids), **numbers.noisy_numbers(noisy_q, noisy_seen),
               **numbers.noisy_numbers(batch_q, batch_seen, "minibatchq", "batch"),
               **{f"sizing/{name}": note for name, tasks in figures.FIGURE_TASKS.items()
                  if (note := study.sized(tasks)) != study.sizing}}
        (tmp / "numbers.tex").write_text(numbers.latex(num))
        (tmp / "skipped.txt").write_text("".join(f"{p}\t{why}\n" for p, why in loaded.skipped))
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return study, {"tables": tbls, "figures": [p for p in made if p.suffix == ".pdf"], "numbers": num,
                   "claims": claims}


def _swap(new: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def readme_block(study: Study, out: Path, readme: Path, built: dict, source: str | None = None) -> str:
    """The results block: the claims and the final table, and the README's figures. ``source`` says
    where the numbers come from (default: the README's, "`make paper` from the committed ...")."""
    rel = os.path.relpath(out, readme.parent)
    by_name = {t.name: t for t in built["tables"]}
    source = source or f"`make paper` from the committed `{study.profile}` results"
    parts = [START, "",
             f"*Generated by {source} ({built['numbers']['meta/runs']} runs); do not edit by hand.*", "",
             "**The articles' claims, tested** against the articles' baseline (GD; heavy ball for (ii)): "
             "the pooled speed-up or difference over tasks with its 95% interval, tasks for/against/"
             "equivalent/inconclusive, the seeds a task needs for 80% power (median, most), and the "
             "verdict (supported / refuted / inconclusive; the rule: `nesterov_bench/analyze/verdicts.py`)."
             + ("" if study.profile in VERDICT_PROFILES else
                f" Profile `{study.profile}` is a pipeline check (short budgets, few seeds); verdicts are "
                "to be quoted from the `paper` profile."), "", by_name["claims"].markdown(),
             f"**Final test metrics** ({built['numbers']['meta/final_seeds']} seeds at the tuned setting: "
             "mean ± 95% interval; suboptimality: geometric mean ×/÷ its 95% factor; bold: best, only "
             "where its paired interval against the runner-up excludes the equivalence region)"
             + (f". {study.sizing}" if study.sizing else ""), "",
             by_name["final"].markdown(),
             f"**Where the time goes** in profile `{study.profile}` (runs in progress during "
             f"{built['numbers']['meta/wall_hours']} hours of wall-clock time, jobs side by side counted "
             "once, pauses between sessions not at all): minutes of training per reproduce stage and task, "
             "from each run's own wall time (a vectorized population's shared among its members; process "
             "start-up, selection and analysis not included)", "", by_name["time"].markdown()]
    for name in README_FIGURES:
        if (out / "figures" / f"{name}.png").exists():
            parts += [f"![{name}]({rel}/figures/{name}.png)", ""]
    return "\n".join([*parts, END])


def update_readme(readme: Path, block: str) -> bool:
    return replace_generated(readme, "results", block.removeprefix(START + "\n").removesuffix(END))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nesterov_bench.analyze", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", help="results root holding runs/ (default: results)")
    ap.add_argument("--profile", default=None,
                    help=f"which profile's runs (default: paper_profile in conf/analysis.yaml, "
                         f"{paper_profile()})")
    ap.add_argument("--out", default=None,
                    help="where tables/, figures/, numbers.tex go (default: paper/generated for the "
                         "paper's profile, else <results>/reports/<profile>/generated)")
    ap.add_argument("--readme", default=None,
                    help="README whose results block to rewrite (default: README.md, for the paper's "
                         "profile only)")
    ap.add_argument("--no-readme", action="store_true", help="leave the README alone")
    ap.add_argument("--report", default=None,
                    help="write the results block to this markdown file too (default for a profile "
                         "other than the paper's: <results>/reports/<profile>/report.md)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = Path(args.results)
    try:
        dest = destinations(results, args.profile, args.out, args.readme, args.no_readme, args.report)
        profile, out, readme, report = dest.profile, dest.out, dest.readme, dest.report
        if not (results / "runs").is_dir():
            raise ConfigError(f"no run store at {results / 'runs'}; run `make reproduce PROFILE={profile}` "
                              "or pass --results")
        study, built = build(results, out, profile)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    skipped = study.loaded.skipped
    if skipped:
        print(f"left out {len(skipped)} run directories (listed in {out}/skipped.txt):",
              file=sys.stderr)
        for path, why in skipped[:5]:
            print(f"  {path}: {why}", file=sys.stderr)
    if readme is not None and readme.exists():
        if update_readme(readme, readme_block(study, out, readme, built)):
            print(f"updated the results block of {readme}")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        block = readme_block(study, out, report, built, f"the analysis from the `{study.profile}` results "
                             f"in {results}")
        body = block.removeprefix(START).removesuffix(END).strip()
        write_atomic(report, lambda p: p.write_text(f"# Report: profile {study.profile}\n\n{body}\n"))
        print(f"wrote the report {report}")
    for c in built["claims"]:
        print(f"claim {c.label:5s} {c.key:22s} {c.verdict:13s} {tables.effect_text(c, c.main.pooled)} "
              f"(vs {c.primary}; tasks +/-/=/? {tables.tally_text(c.main)})")
    print(f"analysed profile {study.profile}: {built['numbers']['meta/runs']} runs -> {out} "
          f"({len(built['tables'])} tables, {len(built['figures'])} figures) "
          f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
