"""Evidently 0.7 reports of logged inputs against the reference, read into a typed summary.

:func:`compare` runs ``DataDriftPreset`` over the served features and the predicted
probability (current first, reference second), and ``ClassificationPreset`` on the logged
rows that have feedback when there are enough of them. The drift decisions are Evidently's
own (each column's test and the drifted-share test); this module only reads them into
:class:`ColumnDrift` rows. Column roles come from the served model's input contract.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

#: Name of the predicted-probability column in the reports (a served column of that name
#: gets underscores appended to it instead).
PREDICTION = "predicted_probability"
#: Evidently's classification metrics kept in the summary, by the summary's name.
PERFORMANCE_METRICS = {
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "F1Score": "f1",
    "RocAuc": "roc_auc",
    "LogLoss": "log_loss",
}


class DriftSettingsError(UserError):
    """The drift settings name a column or a method the check cannot use."""


class DriftSettings(BaseModel):
    """What a drift check compares and when it calls drift.

    Attributes:
        drift_share: Share of compared columns that must drift to flag dataset drift.
        methods: Drift method per column (Evidently's names), overriding its default.
        min_rows: Fewest valid rows to compare, and fewest labelled rows for the
            classification quality.
    """

    drift_share: float
    methods: dict[str, str] = {}
    min_rows: int = 100


class ColumnDrift(BaseModel):
    """One column's drift test.

    Attributes:
        column: The column (``predicted_probability`` for the model's output).
        kind: ``number``, ``category`` or ``prediction``.
        method: The drift method Evidently used.
        threshold: Its threshold.
        score: The p-value (a statistical test) or the distance.
        score_kind: ``p_value`` (drift when below the threshold) or ``distance`` (drift at
            or above it).
        drifted: Evidently's verdict for the column.
    """

    column: str
    kind: Literal["number", "category", "prediction"]
    method: str
    threshold: float
    score: float
    score_kind: Literal["p_value", "distance"]
    drifted: bool


class Performance(BaseModel):
    """Classification quality on the logged rows that have feedback.

    Attributes:
        rows: Labelled rows.
        positives: Rows whose true class is 1.
        threshold: The served model's decision threshold used for the class metrics.
        current: Accuracy, precision, recall, F1, ROC-AUC and log loss on those rows.
    """

    rows: int
    positives: int
    threshold: float
    current: dict[str, float]


@dataclass
class Comparison:
    """What :func:`compare` found.

    Attributes:
        columns: One drift test per compared column, features first, then the prediction.
        skipped: Columns left out, with the reason (e.g. no value in the window).
        drifted_share: Share of compared columns that drifted.
        dataset_drift: Whether that share reached ``drift_share`` (Evidently's test).
        performance: Classification quality, or ``None``.
        performance_note: Why there is no classification quality, when there is none.
        snapshots: The Evidently snapshots by name (``drift``, and ``performance`` if run).
    """

    columns: list[ColumnDrift]
    skipped: dict[str, str]
    drifted_share: float
    dataset_drift: bool
    performance: Performance | None
    performance_note: str | None
    snapshots: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction(self) -> ColumnDrift | None:
        """The drift test of the predicted probability, if it was compared."""
        return next((c for c in self.columns if c.kind == "prediction"), None)


def prediction_name(columns: list[str]) -> str:
    """Return the report's name of the predicted probability, unused by the served columns.

    Args:
        columns: The served input columns.

    Returns:
        ``predicted_probability``, with underscores appended if a column has that name.
    """
    name = PREDICTION
    while name in columns:
        name += "_"
    return name


def check_methods(methods: Mapping[str, str], columns: list[str], prediction: str) -> None:
    """Check that every method override names a compared column.

    Args:
        methods: Method by column.
        columns: The served feature columns compared.
        prediction: The predicted-probability column's name.

    Raises:
        DriftSettingsError: Naming the unknown columns and the known ones.
    """
    unknown = sorted(set(methods) - set(columns) - {prediction})
    if unknown:
        raise DriftSettingsError(
            f"drift method given for unknown column(s) {', '.join(map(repr, unknown))}; "
            f"compared columns: {', '.join([*columns, prediction])}"
        )


def compare(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    roles: Mapping[str, list[str]],
    settings: DriftSettings,
    *,
    target: str,
    threshold: float,
) -> Comparison:
    """Compare logged rows with the reference: drift of every column, quality if labelled.

    Args:
        current: The window's valid rows: the served features, the predicted probability
            (column :func:`prediction_name`) and ``target`` (the true class, missing where
            no feedback was posted).
        reference: The same columns for the training rows.
        roles: The contract's column roles (``number``, ``category``, ``datetime``); dates
            are not compared (the calendar always moves on).
        settings: Threshold, method overrides and the minimum labelled rows.
        target: The target column.
        threshold: The served model's decision threshold.

    Returns:
        The per-column tests, the drifted share, the dataset-level flag, the quality and the
        Evidently snapshots.

    Raises:
        DriftSettingsError: If a method override names an unknown column or a method
            Evidently does not have or cannot apply to the column.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    features = [*roles.get("number", []), *roles.get("category", [])]
    prediction = prediction_name(features)
    check_methods(settings.methods, features, prediction)
    kinds = {c: "number" for c in roles.get("number", [])}
    kinds.update({c: "category" for c in roles.get("category", [])})
    kinds[prediction] = "prediction"
    skipped = {}
    for column in [*features, prediction]:
        if current[column].notna().sum() == 0:
            skipped[column] = "no value in the window"
        elif reference[column].notna().sum() == 0:
            skipped[column] = "no value in the reference"
    compared = [c for c in [*features, prediction] if c not in skipped]
    numbers = [c for c in compared if kinds[c] != "category"]
    categories = [c for c in compared if kinds[c] == "category"]
    definition = DataDefinition(numerical_columns=numbers, categorical_columns=categories)
    preset = DataDriftPreset(
        columns=compared,
        drift_share=settings.drift_share,
        per_column_method={c: m for c, m in settings.methods.items() if c in compared} or None,
    )
    try:
        with _quiet():
            drift = Report([preset], include_tests=True).run(
                Dataset.from_pandas(current[compared], data_definition=definition),
                Dataset.from_pandas(reference[compared], data_definition=definition),
            )
    except ValueError as exc:
        if not settings.methods:
            raise
        raise DriftSettingsError(f"Evidently refused the drift methods: {exc}") from exc
    columns, share, dataset_drift = read_drift(drift.dict(), kinds)
    snapshots: dict[str, Any] = {"drift": drift}

    labelled = current[current[target].notna()]
    performance, note = None, None
    if labelled.empty:
        note = "no feedback in the window"
    elif len(labelled) < settings.min_rows:
        note = f"not enough feedback ({len(labelled)} < {settings.min_rows} labelled rows)"
    elif labelled[target].nunique() < 2 or reference[target].nunique() < 2:
        note = "the labelled rows hold one class only: quality is undefined"
    else:
        task = BinaryClassification(target=target, prediction_probas=prediction)
        scored = DataDefinition(
            numerical_columns=[prediction], categorical_columns=[target], classification=[task]
        )
        with _quiet():
            quality = Report([ClassificationPreset(probas_threshold=threshold)]).run(
                Dataset.from_pandas(
                    labelled[[target, prediction]].astype({target: "int64"}),
                    data_definition=scored,
                ),
                Dataset.from_pandas(
                    reference[[target, prediction]].astype({target: "int64"}),
                    data_definition=scored,
                ),
            )
        snapshots["performance"] = quality
        performance = Performance(
            rows=len(labelled),
            positives=int(labelled[target].astype("int64").sum()),
            threshold=threshold,
            current=read_performance(quality.dict()),
        )
    return Comparison(
        columns=columns,
        skipped=skipped,
        drifted_share=share,
        dataset_drift=dataset_drift,
        performance=performance,
        performance_note=note,
        snapshots=snapshots,
    )


def read_drift(
    snapshot: Mapping[str, Any], kinds: Mapping[str, str]
) -> tuple[list[ColumnDrift], float, bool]:
    """Read the per-column tests, the drifted share and the dataset flag from a drift snapshot.

    Args:
        snapshot: ``Snapshot.dict()`` of a report with ``DataDriftPreset`` and its tests.
        kinds: The kind of each compared column.

    Returns:
        The column tests (in the report's order), the drifted share and the dataset-level
        flag (the failed drifted-share test).
    """
    failed = {
        test["metric_config"]["metric_id"]
        for test in snapshot["tests"]
        if str(test["status"]).upper().endswith("FAIL")
    }
    columns, share, dataset_drift = [], 0.0, False
    for metric in snapshot["metrics"]:
        config = metric["config"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            share = float(metric["value"]["share"])
            dataset_drift = metric["id"] in failed
        elif kind == "ValueDrift":
            score, limit = float(metric["value"]), float(config["threshold"])
            drifted = metric["id"] in failed
            columns.append(
                ColumnDrift(
                    column=config["column"],
                    kind=kinds[config["column"]],
                    method=str(config["method"]),
                    threshold=limit,
                    score=score,
                    # A test drifts below its threshold, a distance at or above it: the
                    # verdict and the side of the threshold tell which one Evidently used.
                    score_kind="p_value" if (score < limit) == drifted else "distance",
                    drifted=drifted,
                )
            )
    return columns, share, dataset_drift


def read_performance(snapshot: Mapping[str, Any]) -> dict[str, float]:
    """Read the classification metrics of a ``ClassificationPreset`` snapshot.

    Args:
        snapshot: ``Snapshot.dict()`` of the report.

    Returns:
        The metrics named in :data:`PERFORMANCE_METRICS` that the report computed.
    """
    found = {}
    for metric in snapshot["metrics"]:
        name = metric["config"]["type"].rsplit(":", 1)[-1]
        if name in PERFORMANCE_METRICS and isinstance(metric["value"], int | float):
            found[PERFORMANCE_METRICS[name]] = float(metric["value"])
    return found


class _quiet(warnings.catch_warnings):
    """Silence numpy's warnings on empty or constant slices inside Evidently's statistics."""

    def __enter__(self):
        result = super().__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        return result
