"""Prefect wrapper of the EDA stage: calls :func:`reports.eda.run_eda` and publishes its summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact

from flows.caching import StepCache
from reports.eda import EdaReport, run_eda
from tabular.config import DatasetConfig
from tabular.features import EncodingPlan


@task(name="eda", cache_policy=StepCache(step="eda", ignore=("out_dir",)))
def eda_task(
    train: pd.DataFrame,
    config: DatasetConfig,
    plan: EncodingPlan,
    out_dir: Path,
    dropped: dict[str, int] | None = None,
    markers: dict[str, dict[str, int]] | None = None,
) -> EdaReport:
    """Analyse the training split, write ``eda.html`` and its charts, publish a summary.

    Args:
        train: The training split only (never validation or test rows).
        config: The dataset config.
        plan: The encoding plan made on ``train``; training uses the same plan.
        out_dir: Folder for the charts and ``eda.html``.
        dropped: Rows dropped while preparing the data, per reason.
        markers: Per column, the cells of the file that held each missing-value marker.

    Returns:
        The EDA report.
    """
    report = run_eda(train, config, plan, out_dir, dropped=dropped, markers=markers)
    create_markdown_artifact(
        key="eda-summary",
        markdown=report.markdown,
        description="Exploratory analysis of the training split",
    )
    return report
