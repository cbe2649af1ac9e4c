"""The local Evidently workspace that ``make monitor-ui`` (``evidently ui``) shows.

One project per dataset; every drift check adds its snapshots as runs: the drift report,
the classification report when there was enough feedback, and a *signals* snapshot holding
the check's own numbers (the importance-weighted drift and its alarm threshold, the share
of drifted columns, the prediction's drift). Evidently's dashboard plots metric values of
stored snapshots, and those numbers are the monitor's, computed from Evidently's
per-column tests (:mod:`monitoring.drift`): the signals snapshot is a one-row dataset of
them, each read back by Evidently's ``MeanValue`` metric, so the dashboard plots exactly
the value the check stored (and wrote in ``summary.json``).

Every panel is a bar chart or a counter: a line chart of Evidently's UI draws no mark, so a
project with a single check showed an empty line panel with one axis tick; one bar is
readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitoring.check import DriftSummary

#: The signals a check stores, by column of the signals snapshot.
SIGNALS = {
    "importance_weighted_drift": "importance-weighted drift (decides)",
    "alarm_threshold": "alarm threshold",
    "drifted_share": "share of drifted columns",
    "prediction_drift": "prediction drift (1 = its threshold)",
}


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: what it plots and how.

    Attributes:
        title: The panel's title.
        kind: ``bar`` (one bar per check and series) or ``counter`` (the last check).
        series: ``(metric, labels, legend)`` of each plotted value.
        description: The subtitle.
    """

    title: str
    kind: str
    series: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    description: str | None = None


def signal(name: str) -> tuple[str, dict[str, str], str]:
    """Return the series of one check signal (the ``MeanValue`` of its column)."""
    return ("MeanValue", {"column": name}, SIGNALS[name])


#: The dashboard of a dataset's project.
PANELS = (
    Panel(
        "Importance-weighted drift",
        "bar",
        [signal("importance_weighted_drift"), signal("alarm_threshold")],
        "Share of the served model's mean |SHAP| held by drifted columns; dataset drift "
        "when it reaches the threshold",
    ),
    Panel(
        "Importance-weighted drift (last check)",
        "counter",
        [signal("importance_weighted_drift")],
    ),
    Panel(
        "Prediction drift",
        "bar",
        [signal("prediction_drift")],
        "The predicted probability's drift test, as a multiple of its threshold (>= 1: drift)",
    ),
    Panel("Share of drifted columns", "bar", [signal("drifted_share")]),
    Panel(
        "ROC-AUC on labelled logs",
        "bar",
        [("RocAuc", {}, "ROC-AUC")],
        "On the window's logs whose outcome was posted (checks with enough feedback)",
    ),
)


def signals_frame(summary: DriftSummary):
    """Return the check's signals as a one-row frame (missing ones left out).

    Args:
        summary: The check's summary.

    Returns:
        One column per signal of :data:`SIGNALS` the check measured.
    """
    import pandas as pd

    values: dict[str, float] = {}
    if summary.weighted_drift is not None:
        values["importance_weighted_drift"] = summary.weighted_drift
        values["alarm_threshold"] = summary.importance_share_threshold
    if summary.drifted_share is not None:
        values["drifted_share"] = summary.drifted_share
    if summary.prediction_drift is not None:
        values["prediction_drift"] = summary.prediction_drift.severity
    return pd.DataFrame([values])


def signals_snapshot(summary: DriftSummary):
    """Build the signals snapshot of a check: each signal read by Evidently's ``MeanValue``.

    Args:
        summary: The check's summary.

    Returns:
        The Evidently snapshot.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    frame = signals_frame(summary)
    columns = list(frame.columns)
    data = Dataset.from_pandas(frame, data_definition=DataDefinition(numerical_columns=columns))
    return Report([MeanValue(column=c) for c in columns]).run(data, None)


def _plot(panel: Panel):
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, counter_panel

    values = [
        PanelMetric(metric=metric, metric_labels=labels, legend=legend)
        for metric, labels, legend in panel.series
    ]
    if panel.kind == "counter":
        return counter_panel(
            title=panel.title, values=values, description=panel.description, size="half"
        )
    return bar_plot_panel(
        title=panel.title, values=values, description=panel.description, size="half"
    )


def project_for(workspace, dataset: str):
    """Return the workspace's project of a dataset, with the current dashboard.

    A project created by an earlier version (other panels) gets its dashboard rebuilt: the
    dashboard is a view, the snapshots are kept.

    Args:
        workspace: An ``evidently.ui.workspace.Workspace``.
        dataset: The dataset's name (the project's name).

    Returns:
        The project.
    """
    from evidently.sdk.models import DashboardModel

    found = [p for p in workspace.search_project(dataset) if p.name == dataset]
    if found:
        project = found[0]
        titles = [p.title for p in project.dashboard.model().panels]
        if titles == [p.title for p in PANELS]:
            return project
        workspace.save_dashboard(project.id, DashboardModel(tabs=[], panels=[]))
    else:
        project = workspace.create_project(
            dataset, description=f"Drift checks of the served '{dataset}' models (mlops monitor)"
        )
    for panel in PANELS:
        project.dashboard.add_panel(_plot(panel))
    return project


def add_snapshots(
    path: str | Path, dataset: str, snapshots: Mapping[str, Any], name: str
) -> dict[str, str]:
    """Add a check's snapshots to the dataset's project.

    Args:
        path: The workspace folder (created when missing).
        dataset: The dataset's name.
        snapshots: Evidently snapshots by kind (``drift``, ``performance``, ``signals``).
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
