"""Evidently 0.7 reports of logged inputs against the reference, read into a typed summary.

:func:`compare` runs ``DataDriftPreset`` over the served features and the predicted
probability (current first, reference second), and ``ClassificationPreset`` on the logged
rows that have feedback when there are enough of them. Each column's distribution test is
Evidently's own; two tests are added because Evidently's value tests compare the values
present and so cannot see them: the share of missing values (a burst of nulls) and the
column's rank correlations with the other numeric inputs (a column shuffled across rows,
whose values alone do not change). Column roles come from the served model's input
contract.

**The verdict.** A column drifts when any of its tests flags it. Each column weighs its
share of the served model's mean |SHAP| (saved at training); the *importance-weighted
drift* is the share of the model's importance held by drifted columns, and dataset drift
is flagged when it reaches ``importance_share``. This signal decides because it asks the
question an operator cares about: are the inputs the model relies on still like the ones
it learned from? A drifted column the model barely uses (a season's wind direction) does
not raise the alarm alone; the same drift in a column the model relies on does. The share
of drifted columns, the prediction's drift and the quality on labelled logs are reported
next to it: the first counts what the model ignores, the prediction's distribution moves
with every real change of the traffic (a stormy month *should* predict more delays), and
feedback arrives late and not always.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from monitoring.reference import ReferenceMode
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


Reason = Literal["distribution", "missing values", "relationships"]


class DriftSettings(BaseModel):
    """What a drift check compares and when it calls drift.

    Attributes:
        reference: Which reference rows a window is compared with: ``whole``,
            ``same_period`` or ``recent`` (see :mod:`monitoring.reference`).
        importance_share: Share of the served model's importance that drifted columns must
            hold to flag dataset drift (the verdict).
        drift_share: Share of compared columns of Evidently's drifted-share test (reported
            next to the verdict; it does not decide).
        missing_share: A column drifts when its share of missing values moves by at least
            this much from the reference's.
        correlation_change: A numeric column drifts when its rank correlations with the
            other numeric inputs move by at least this much on average (over the inputs it
            is correlated with in the reference, see :data:`RELATED`); ``None`` skips the
            test.
        methods: Drift method per column (Evidently's names), overriding its default.
        min_rows: Fewest valid rows to compare, and fewest labelled rows for the
            classification quality.
    """

    reference: ReferenceMode = "same_period"
    importance_share: float = 0.05
    drift_share: float = 0.5
    missing_share: float = 0.1
    correlation_change: float | None = 0.3
    methods: dict[str, str] = {}
    min_rows: int = 100


#: Category levels holding less than this share of the reference, or expected fewer than
#: :data:`EXPECTED_ROWS` times in the window, are compared as one pooled level: a column of
#: hundreds of levels (routes) otherwise "drifts" on sampling noise alone between two
#: samples of a few thousand rows, while a new or renamed level that becomes frequent
#: still shows, as the pooled level's jump.
RARE_LEVEL = 0.01
#: Fewest rows of the window a level is expected to hold to be compared on its own (a
#: window of 400 logs compares the levels above 7.5 % of the reference).
EXPECTED_ROWS = 30
#: The pooled level's name in the report.
POOLED = "(rare or new levels)"
#: Two numeric inputs are related when the absolute rank correlation of their reference
#: values is at least this; the relationship test compares only related pairs.
RELATED = 0.3
#: Rows each side of the relationship test uses at most.
CORRELATION_ROWS = 20_000
#: Severity of a test that cannot be measured further (a p-value of 0): the top of the scale.
MAX_SEVERITY = 100.0


class ColumnDrift(BaseModel):
    """One column's drift tests and its weight.

    Attributes:
        column: The column (``predicted_probability`` for the model's output).
        kind: ``number``, ``category`` or ``prediction``.
        importance: The column's share of the served model's mean |SHAP| (0 for the
            prediction).
        method: The drift method Evidently used (``None``: no value to compare).
        threshold: Its threshold.
        score: The p-value (a statistical test) or the distance.
        score_kind: ``p_value`` (drift when below the threshold) or ``distance`` (drift at
            or above it).
        distribution_drift: Evidently's verdict for the column's values.
        missing_reference: Share of missing values in the reference.
        missing_current: Share of missing values in the window.
        correlation_change: Mean absolute change of the column's rank correlations with
            its related numeric inputs (``None``: not tested).
        reasons: Why the column drifted: ``distribution``, ``missing values``,
            ``relationships`` (empty: it did not).
        drifted: Whether any test flagged the column.
        severity: How far past its threshold the column's strongest test is (1 = at the
            threshold): the distance over the threshold, log(p) over log(threshold), the
            missing-share or correlation change over its limit.
    """

    column: str
    kind: Literal["number", "category", "prediction"]
    importance: float = 0.0
    method: str | None = None
    threshold: float | None = None
    score: float | None = None
    score_kind: Literal["p_value", "distance"] | None = None
    distribution_drift: bool = False
    missing_reference: float = 0.0
    missing_current: float = 0.0
    correlation_change: float | None = None
    reasons: list[Reason] = []
    drifted: bool = False
    severity: float = 0.0


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
        columns: One entry per column, features first (in the contract's order), then the
            prediction.
        ranking: The feature columns, the most important drift first (drifted columns by
            importance times severity, then the others).
        skipped: Columns whose values could not be compared, with the reason (e.g. no
            value in the window); their missing-value test still counts.
        weighted_drift: Share of the model's importance held by drifted columns.
        dataset_drift: Whether ``weighted_drift`` reached ``importance_share``.
        drifted_share: Share of feature columns that drifted.
        evidently_share: Share of compared columns Evidently's distribution tests flagged.
        evidently_drift: Whether that share reached ``drift_share`` (Evidently's test).
        performance: Classification quality, or ``None``.
        performance_note: Why there is no classification quality, when there is none.
        snapshots: The Evidently snapshots by name (``drift``, and ``performance`` if run).
    """

    columns: list[ColumnDrift]
    ranking: list[str]
    skipped: dict[str, str]
    weighted_drift: float
    dataset_drift: bool
    drifted_share: float
    evidently_share: float
    evidently_drift: bool
    performance: Performance | None
    performance_note: str | None
    snapshots: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction(self) -> ColumnDrift | None:
        """The drift test of the predicted probability, if it was compared."""
        return next((c for c in self.columns if c.kind == "prediction"), None)

    @property
    def features(self) -> list[ColumnDrift]:
        """The feature columns' entries."""
        return [c for c in self.columns if c.kind != "prediction"]

    @property
    def drifted_columns(self) -> list[str]:
        """The drifted feature columns, the most important drift first."""
        drifted = {c.column for c in self.features if c.drifted}
        return [c for c in self.ranking if c in drifted]


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
    importance: Mapping[str, float] | None = None,
) -> Comparison:
    """Compare logged rows with the reference: drift of every column, quality if labelled.

    Args:
        current: The window's valid rows: the served features, the predicted probability
            (column :func:`prediction_name`) and ``target`` (the true class, missing where
            no feedback was posted).
        reference: The same columns for the reference rows.
        roles: The contract's column roles (``number``, ``category``, ``datetime``); dates
            are not compared (the calendar always moves on).
        settings: Thresholds, method overrides and the minimum labelled rows.
        target: The target column.
        threshold: The served model's decision threshold.
        importance: Each feature column's share of the served model's mean |SHAP|
            (:func:`monitoring.reference.read_importance`); ``None``: every column weighs
            the same.

    Returns:
        The per-column tests and weights, the ranking, the importance-weighted drift and
        the verdict, the drifted shares, the quality and the Evidently snapshots.

    Raises:
        DriftSettingsError: If a method override names an unknown column or a method
            Evidently does not have or cannot apply to the column.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from monitoring.reference import importance_shares

    features = [*roles.get("number", []), *roles.get("category", [])]
    prediction = prediction_name(features)
    check_methods(settings.methods, features, prediction)
    kinds = {c: "number" for c in roles.get("number", [])}
    kinds.update({c: "category" for c in roles.get("category", [])})
    kinds[prediction] = "prediction"
    weights = importance_shares(
        {c: (importance or {}).get(c, 0.0) for c in features}
        if importance
        else dict.fromkeys(features, 1.0)
    )
    skipped = {}
    for column in [*features, prediction]:
        if current[column].notna().sum() == 0:
            skipped[column] = "no value in the window"
        elif reference[column].notna().sum() == 0:
            skipped[column] = "no value in the reference"
    compared = [c for c in [*features, prediction] if c not in skipped]
    numbers = [c for c in compared if kinds[c] != "category"]
    categories = [c for c in compared if kinds[c] == "category"]
    pooled_current, pooled_reference = pool_rare_levels(current, reference, categories)
    definition = DataDefinition(numerical_columns=numbers, categorical_columns=categories)
    preset = DataDriftPreset(
        columns=compared,
        drift_share=settings.drift_share,
        per_column_method={c: m for c, m in settings.methods.items() if c in compared} or None,
    )
    try:
        with _quiet():
            drift = Report([preset], include_tests=True).run(
                Dataset.from_pandas(pooled_current[compared], data_definition=definition),
                Dataset.from_pandas(pooled_reference[compared], data_definition=definition),
            )
    except ValueError as exc:
        if not settings.methods:
            raise
        raise DriftSettingsError(f"Evidently refused the drift methods: {exc}") from exc
    tests, evidently_share, evidently_drift = read_drift(drift.dict())
    changes = (
        correlation_changes(current, reference, [c for c in numbers if c != prediction])
        if settings.correlation_change is not None
        else {}
    )
    columns = []
    for column in [*features, prediction]:
        entry = ColumnDrift(
            column=column,
            kind=kinds[column],
            importance=weights.get(column, 0.0),
            missing_reference=float(reference[column].isna().mean()),
            missing_current=float(current[column].isna().mean()),
            correlation_change=changes.get(column),
            **tests.get(column, {}),
        )
        columns.append(judge_column(entry, settings))
    ranking = rank(columns)
    weighted = float(sum(c.importance for c in columns if c.drifted and c.kind != "prediction"))
    drifted = [c for c in columns if c.kind != "prediction" and c.drifted]
    performance, note, quality = measure_quality(
        current, reference, settings, target=target, prediction=prediction, threshold=threshold
    )
    snapshots: dict[str, Any] = {"drift": drift}
    if quality is not None:
        snapshots["performance"] = quality
    return Comparison(
        columns=columns,
        ranking=ranking,
        skipped=skipped,
        weighted_drift=round(weighted, 6),
        dataset_drift=weighted >= settings.importance_share - 1e-12,
        drifted_share=len(drifted) / len(features) if features else 0.0,
        evidently_share=evidently_share,
        evidently_drift=evidently_drift,
        performance=performance,
        performance_note=note,
        snapshots=snapshots,
    )


def pool_rare_levels(
    current: pd.DataFrame, reference: pd.DataFrame, categories: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace the rare and the new levels of each category column by one pooled level.

    Args:
        current: The window's rows.
        reference: The reference rows.
        categories: The category columns to pool.

    Returns:
        Copies of both frames, the levels under :data:`RARE_LEVEL` of the reference or
        expected fewer than :data:`EXPECTED_ROWS` times in the window (and the levels the
        reference does not hold) replaced by :data:`POOLED`; missing values kept.
    """
    current, reference = current.copy(), reference.copy()
    least = max(RARE_LEVEL, EXPECTED_ROWS / max(len(current), 1))
    for column in categories:
        shares = reference[column].value_counts(normalize=True)
        kept = set(shares.index[shares >= least])
        for frame in (current, reference):
            values = frame[column]
            frame[column] = values.where(values.isna() | values.isin(kept), POOLED)
    return current, reference


def judge_column(entry: ColumnDrift, settings: DriftSettings) -> ColumnDrift:
    """Decide a column's drift from its tests and measure how far past their limits it is.

    Args:
        entry: The column with its test results (Evidently's, missing shares, correlation
            change) filled in.
        settings: The limits.

    Returns:
        The entry with ``reasons``, ``drifted`` and ``severity`` set.
    """
    reasons: list[Reason] = []
    severities = []
    if entry.score is not None and entry.threshold:
        severities.append(distribution_severity(entry.score, entry.threshold, entry.score_kind))
        if entry.distribution_drift:
            reasons.append("distribution")
    moved = abs(entry.missing_current - entry.missing_reference)
    severities.append(moved / settings.missing_share)
    if moved >= settings.missing_share - 1e-12:
        reasons.append("missing values")
    if entry.correlation_change is not None and settings.correlation_change:
        severities.append(entry.correlation_change / settings.correlation_change)
        if entry.correlation_change >= settings.correlation_change:
            reasons.append("relationships")
    return entry.model_copy(
        update={
            "reasons": reasons,
            "drifted": bool(reasons),
            "severity": round(min(max(severities, default=0.0), MAX_SEVERITY), 4),
        }
    )


def distribution_severity(score: float, threshold: float, kind: str | None) -> float:
    """How far a distribution test is past its threshold (1 = at the threshold).

    Args:
        score: The distance or p-value.
        threshold: The test's threshold.
        kind: ``distance`` or ``p_value``.

    Returns:
        ``score / threshold`` for a distance; ``log(score) / log(threshold)`` for a p-value
        (a p-value of 0 gives :data:`MAX_SEVERITY`).
    """
    if kind == "p_value":
        if score <= 0:
            return MAX_SEVERITY
        if score >= 1:
            return 0.0
        return min(math.log(score) / math.log(threshold), MAX_SEVERITY)
    return min(score / threshold, MAX_SEVERITY)


def rank(columns: list[ColumnDrift]) -> list[str]:
    """Order the feature columns: the drifted ones first, by importance times severity.

    Args:
        columns: The columns' entries.

    Returns:
        The feature column names, the one to look at first first.
    """
    features = [c for c in columns if c.kind != "prediction"]
    ordered = sorted(
        features, key=lambda c: (not c.drifted, -c.importance * c.severity, -c.severity)
    )
    return [c.column for c in ordered]


def correlation_changes(
    current: pd.DataFrame, reference: pd.DataFrame, numbers: list[str]
) -> dict[str, float]:
    """Measure how much each numeric column's rank correlations with the others moved.

    For each column, the mean absolute change of its Spearman correlation with each numeric
    column it is related to in the reference (absolute correlation at least
    :data:`RELATED`). A column shuffled across rows keeps its values (every distribution
    test passes) but loses every such relationship; a column it was related to loses only
    that one.

    Args:
        current: The window's rows.
        reference: The reference rows.
        numbers: The numeric feature columns to compare.

    Returns:
        The mean change per column that has at least one related column.
    """
    import numpy as np

    if len(numbers) < 2:
        return {}
    # A fixed-seed sample of each side: rank correlations of 20,000 rows are within about
    # 0.01 of the whole frame's, at a fifth of the cost on 100,000 rows.
    before = _sample(reference[numbers], CORRELATION_ROWS).corr(method="spearman")
    after = _sample(current[numbers], CORRELATION_ROWS).corr(method="spearman")
    changes = {}
    for column in numbers:
        related = [
            other
            for other in numbers
            if other != column
            and np.isfinite(before.loc[column, other])
            and abs(before.loc[column, other]) >= RELATED
        ]
        if not related:
            continue
        moved = [
            abs(
                before.loc[column, o]
                - (after.loc[column, o] if np.isfinite(after.loc[column, o]) else 0.0)
            )
            for o in related
        ]
        changes[column] = round(float(np.mean(moved)), 4)
    return changes


def _sample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=0)


def measure_quality(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    settings: DriftSettings,
    *,
    target: str,
    prediction: str,
    threshold: float,
) -> tuple[Performance | None, str | None, Any]:
    """Run Evidently's classification report on the window's labelled rows, if enough.

    Args:
        current: The window's rows (``target`` missing where no feedback came).
        reference: The reference rows (with ``target``).
        settings: The minimum labelled rows.
        target: The target column.
        prediction: The predicted-probability column.
        threshold: The served model's decision threshold.

    Returns:
        The quality (or ``None``), why there is none, and the Evidently snapshot (or
        ``None``).
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    labelled = current[current[target].notna()]
    if labelled.empty:
        return None, "no feedback in the window", None
    if len(labelled) < settings.min_rows:
        return (
            None,
            f"not enough feedback ({len(labelled)} < {settings.min_rows} labelled rows)",
            None,
        )
    if labelled[target].nunique() < 2 or reference[target].dropna().nunique() < 2:
        return None, "the labelled rows hold one class only: quality is undefined", None
    reference = reference[reference[target].notna()]
    task = BinaryClassification(target=target, prediction_probas=prediction)
    scored = DataDefinition(
        numerical_columns=[prediction], categorical_columns=[target], classification=[task]
    )
    with _quiet():
        quality = Report([ClassificationPreset(probas_threshold=threshold)]).run(
            Dataset.from_pandas(
                labelled[[target, prediction]].astype({target: "int64"}), data_definition=scored
            ),
            Dataset.from_pandas(
                reference[[target, prediction]].astype({target: "int64"}), data_definition=scored
            ),
        )
    performance = Performance(
        rows=len(labelled),
        positives=int(labelled[target].astype("int64").sum()),
        threshold=threshold,
        current=read_performance(quality.dict()),
    )
    return performance, None, quality


def read_drift(snapshot: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], float, bool]:
    """Read the per-column tests, the drifted share and its test from a drift snapshot.

    Args:
        snapshot: ``Snapshot.dict()`` of a report with ``DataDriftPreset`` and its tests.

    Returns:
        Per column: ``method``, ``threshold``, ``score``, ``score_kind`` and
        ``distribution_drift`` (Evidently's verdict); the share of compared columns
        Evidently flagged; and whether its drifted-share test failed.
    """
    failed = {
        test["metric_config"]["metric_id"]
        for test in snapshot["tests"]
        if str(test["status"]).upper().endswith("FAIL")
    }
    tests: dict[str, dict[str, Any]] = {}
    share, flagged = 0.0, False
    for metric in snapshot["metrics"]:
        config = metric["config"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            share = float(metric["value"]["share"])
            flagged = metric["id"] in failed
        elif kind == "ValueDrift":
            score, limit = float(metric["value"]), float(config["threshold"])
            drifted = metric["id"] in failed
            tests[config["column"]] = {
                "method": str(config["method"]),
                "threshold": limit,
                "score": score,
                # A test drifts below its threshold, a distance at or above it: the verdict
                # and the side of the threshold tell which one Evidently used.
                "score_kind": "p_value" if (score < limit) == drifted else "distance",
                "distribution_drift": drifted,
            }
    return tests, share, flagged


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
