"""Run every EDA section on the training split and write ``eda.html`` plus a Markdown summary."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.eda import sections as sec
from reports.eda.fmt import count
from reports.eda.stats import fit_preprocessor
from reports.page import Section
from reports.page import render_html as render_page
from tabular.features import EncodingPlan

#: Rows used for density curves and the normal-fit distance; everything else uses all rows.
SAMPLE_SIZE = 20_000


@dataclass(frozen=True)
class EdaReport:
    """The outcome of :func:`run_eda`.

    Attributes:
        sections: The nine sections, in report order.
        html_path: The written ``eda.html``.
        markdown: A short summary (one line per section) for a Prefect artifact.
        rows: Training rows analysed.
        seconds: Wall time of the analysis.
    """

    sections: list[Section]
    html_path: Path
    markdown: str
    rows: int
    seconds: float

    @property
    def figures(self) -> list[Path]:
        """Every PNG referenced by the report."""
        return [path for section in self.sections for path in section.figures]

    def section(self, key: str) -> Section:
        """Return the section with this key.

        Args:
            key: E.g. ``"balance"``.

        Returns:
            The section.

        Raises:
            KeyError: If no section has that key.
        """
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"no EDA section '{key}'; have {[s.key for s in self.sections]}")


def run_eda(
    train: pd.DataFrame,
    config,
    plan: EncodingPlan,
    out_dir: Path,
    dropped: dict[str, int] | None = None,
    sample_size: int = SAMPLE_SIZE,
    seed: int | None = None,
    markers: dict[str, dict[str, int]] | None = None,
) -> EdaReport:
    """Analyse the training split and write the charts and ``eda.html`` into ``out_dir``.

    Only the rows passed in are read: give it the training split, never the full data, so
    that nothing about the validation or test periods leaks into choices made here.

    Args:
        train: The training split (prepared: target derived, dates parsed).
        config: The dataset config (:class:`tabular.config.DatasetConfig`).
        plan: The encoding plan made on ``train`` by
            :func:`tabular.features.plan_encoding`: the report shows this plan, the one
            training uses.
        out_dir: Folder for the PNGs and ``eda.html`` (created if needed).
        dropped: Rows dropped while preparing the data, per reason, for the
            missing-values comment.
        sample_size: Rows used for density curves (KDE) and the normal-fit distance.
        seed: Sampling seed (default: the config's seed).
        markers: Per column, the cells of the file that held each missing-value marker
            (:attr:`tabular.datasets.CleaningReport.missing_markers`).

    Returns:
        The report.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = config.seed if seed is None else seed
    # One fitted preprocessor serves the missing-value and encoding sections, so both
    # report what the training pipeline does with these very rows.
    preprocessor = fit_preprocessor(train, plan, config.target.name, seed)
    sections = [
        sec.balance_section(train, config, out_dir),
        sec.distributions_section(train, config, out_dir, sample_size, seed),
        sec.categories_section(train, config, out_dir),
        sec.grouping_section(train, plan, out_dir),
        sec.missing_section(
            train, config, plan, preprocessor, out_dir, dropped or {}, markers or {}
        ),
        sec.encoding_section(train, config, plan, preprocessor, out_dir),
        sec.outliers_section(train, config, out_dir),
        sec.correlations_section(train, config, out_dir),
        sec.time_section(train, config, plan, out_dir),
    ]
    if config.date_column is None:
        scope = training_scope(len(train), None, None)
    else:
        dates = pd.to_datetime(train[config.date_column], errors="coerce")
        scope = training_scope(len(train), config.date_column, dates)
    html_path = out_dir / "eda.html"
    html_path.write_text(render_html(sections, config, scope, out_dir), encoding="utf-8")
    return EdaReport(
        sections=sections,
        html_path=html_path,
        markdown=render_markdown(sections, config, scope, html_path),
        rows=len(train),
        seconds=round(time.perf_counter() - start, 2),
    )


def training_scope(rows: int, date_column: str | None, dates: pd.Series | None) -> str:
    """Describe the rows analysed: how many and which dates.

    Args:
        rows: Training rows.
        date_column: Name of the date column (``None`` when the data has none).
        dates: The parsed dates (``None`` when the data has none).

    Returns:
        One sentence.
    """
    if dates is not None and dates.notna().any():
        span = f", '{date_column}' from {dates.min():%d %b %Y} to {dates.max():%d %b %Y}"
    else:
        span = ""
    return (
        f"Computed on the training split only: {count(rows)} rows{span}, the rows the final "
        "models are fitted on (their selection folds included). The test rows are not read, "
        "so nothing here is tuned on the data that scores the final models."
    )


# --- rendering ------------------------------------------------------------------------------


def render_html(sections: list[Section], config, scope: str, base: Path) -> str:
    """Render the self-contained report page (CSS inline, PNGs by relative path).

    Args:
        sections: The sections.
        config: The dataset config.
        scope: The sentence saying which rows were analysed.
        base: The folder the page is written to.

    Returns:
        The HTML text.
    """
    return render_page(
        f"EDA: {config.name}",
        f"Exploratory data analysis: {config.name}",
        sections,
        base,
        intro=[f"**Question:** {config.question}", scope],
        toc=True,
    )


def render_markdown(sections: list[Section], config, scope: str, html_path: Path) -> str:
    """Render the one-line-per-section summary published as a Prefect artifact.

    Args:
        sections: The sections.
        config: The dataset config.
        scope: The sentence saying which rows were analysed.
        html_path: Where the full report is.

    Returns:
        Markdown text.
    """
    rows = "\n".join(f"| {s.title} | {s.summary.replace('|', '/')} |" for s in sections)
    figures = sum(len(s.figures) for s in sections)
    return (
        f"## Exploratory analysis of `{config.name}`\n\n{scope}\n\n"
        f"| section | finding |\n|---|---|\n{rows}\n\n"
        f"Full report with {figures} charts and a comment after each: `{html_path}`\n"
    )
