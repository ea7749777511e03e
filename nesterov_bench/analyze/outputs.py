"""Which profile the paper is built from, and where an analysis writes.

``paper_profile`` in ``conf/analysis.yaml`` is the one place that names the profile behind the paper
(``paper/generated``, ``paper/main.pdf``) and the README's results block. Any other profile is
analysed into its own report, ``<results>/reports/<profile>/`` (``generated/``, ``report.md``, and
``main.pdf`` where ``reproduce`` finds LaTeX), so running it never touches what is committed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

ANALYSIS_CFG = Path(__file__).resolve().parents[2] / "conf" / "analysis.yaml"
PAPER_DIR = Path("paper")  # relative to the working directory, like the README
PAPER_SRC = Path(__file__).resolve().parents[2] / "paper"  # the text a report's PDF typesets
PAPER_SOURCES = ("main.tex", "refs.bib", "sections")  # without generated/ and the build's outputs


def paper_profile(path: Path = ANALYSIS_CFG) -> str:
    """The profile the paper and the README's results block are built from."""
    return str(OmegaConf.load(path)["paper_profile"])


def report_dir(results: str | Path, profile: str) -> Path:
    """Where a profile other than the paper's gets its report."""
    return Path(results) / "reports" / profile


@dataclass
class Destinations:
    profile: str
    out: Path  # tables/, figures/, numbers.tex, skipped.txt
    readme: Path | None  # whose results block is rewritten
    report: Path | None  # a standalone markdown report
    is_paper: bool  # the paper's profile (paper/generated and the README)

    @property
    def tex(self) -> Path:
        """The LaTeX source that typesets ``out`` (``generated/`` beside it)."""
        return self.out.parent / "main.tex"


def destinations(results: str | Path, profile: str | None = None, out: str | Path | None = None,
                 readme: str | Path | None = None, no_readme: bool = False,
                 report: str | Path | None = None) -> Destinations:
    """Where the analysis of ``profile`` (default: the paper's) writes. The paper's profile:
    ``paper/generated`` and the README; another: ``<results>/reports/<profile>/generated`` and
    ``report.md`` there, never the README or ``paper/generated`` unless ``out`` / ``readme`` ask."""
    name = profile or paper_profile()
    if name == paper_profile():
        return Destinations(name, Path(out) if out else PAPER_DIR / "generated",
                            None if no_readme else Path(readme or "README.md"),
                            Path(report) if report else None, True)
    where = report_dir(results, name)
    return Destinations(name, Path(out) if out else where / "generated",
                        Path(readme) if readme and not no_readme else None,
                        Path(report) if report else (None if out else where / "report.md"), False)


def copy_paper_sources(dest: Path, src: Path = PAPER_SRC) -> Path:
    """The paper's text (``PAPER_SOURCES``: main.tex, its bibliography and the sections it inputs) into
    ``dest``, beside which a ``generated/`` of other results typesets as that report's PDF."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PAPER_SOURCES:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, dirs_exist_ok=True)
        else:
            shutil.copyfile(src / name, dest / name)
    return dest


def typeset(dest: Destinations, log_path: Path) -> str:
    """Typeset the analysis (``paper/main.pdf``, or a report's ``main.pdf`` from a copy of the paper's
    text) when LaTeX is installed; one line saying what happened."""
    if not dest.is_paper and dest.out.name == "generated" and (PAPER_SRC / "main.tex").exists():
        copy_paper_sources(dest.tex.parent)
    if not dest.tex.exists():
        return f"no PDF: no {dest.tex} beside {dest.out}"
    latexmk = shutil.which("latexmk")
    if latexmk is None:
        then = "make paper-pdf" if dest.is_paper else f"latexmk -pdf -cd {dest.tex}"
        return f"no PDF: LaTeX is not installed (make latex-deps installs it; then {then})"
    with open(log_path, "w") as log:
        code = subprocess.run([latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-quiet",
                               "-cd", str(dest.tex)], stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"the PDF did not build (latexmk exit {code}); see {log_path}")
    return f"PDF: {dest.tex.with_suffix('.pdf')}"
