"""The local Evidently workspace that ``make monitor-ui`` (``evidently ui``) shows.

One project per dataset; every drift check adds its snapshots (the drift report, and the
classification report when there was enough feedback) as runs, so the UI lists the history
of checks and its dashboard plots the share of drifted columns and the ROC-AUC over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Panels of a new project's dashboard: (title, metric, labels, kind).
PANELS = (
    ("Share of drifted columns", "DriftedColumnsCount", {"value_type": "share"}, "line"),
    ("Drifted columns (last check)", "DriftedColumnsCount", {"value_type": "count"}, "counter"),
    ("ROC-AUC on labelled logs", "RocAuc", {}, "line"),
)


def project_for(workspace, dataset: str):
    """Return the workspace's project of a dataset, creating it (with its dashboard) if needed.

    Args:
        workspace: An ``evidently.ui.workspace.Workspace``.
        dataset: The dataset's name (the project's name).

    Returns:
        The project.
    """
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    found = [p for p in workspace.search_project(dataset) if p.name == dataset]
    if found:
        return found[0]
    project = workspace.create_project(
        dataset, description=f"Drift checks of the served '{dataset}' models (mlops monitor)"
    )
    for title, metric, labels, kind in PANELS:
        values = [PanelMetric(metric=metric, metric_labels=labels, legend=title)]
        make = line_plot_panel if kind == "line" else counter_panel
        project.dashboard.add_panel(make(title=title, values=values, size="half"))
    return project


def add_snapshots(
    path: str | Path, dataset: str, snapshots: Mapping[str, Any], name: str
) -> dict[str, str]:
    """Add a check's snapshots to the dataset's project.

    Args:
        path: The workspace folder (created when missing).
        dataset: The dataset's name.
        snapshots: Evidently snapshots by kind (``drift``, ``performance``).
        name: The check's name (its folder), prefixed to each run's name.

    Returns:
        The run id of each snapshot, by kind.
    """
    from evidently.ui.workspace import Workspace

    Path(path).mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(path))
    project = project_for(workspace, dataset)
    runs = {}
    for kind, snapshot in snapshots.items():
        reference = workspace.add_run(
            project.id, snapshot, include_data=False, name=f"{name} {kind}"
        )
        runs[kind] = str(reference.id)
    return runs
