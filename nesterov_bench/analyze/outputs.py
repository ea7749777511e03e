"""Which profile the paper is built from, and where an analysis writes.

``paper_profile`` in ``conf/analysis.yaml`` is the one place that names the profile behind the paper
(``paper/generated``, ``paper/main.pdf``) and the README's results block. Any other profile is
analysed into its own report, ``<results>/reports/<profile>/`` (``generated/``, ``report.md``, and
``main.pdf`` where ``reproduce`` finds LaTeX), so running it never touches what is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

ANALYSIS_CFG = Path(__file__).resolve().parents[2] / "conf" / "analysis.yaml"
PAPER_DIR = Path("paper")  # relative to the working directory, like the README


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
