"""One drift check: read a window of prediction logs, coerce them, compare, write, record.

:func:`run_check` is the plain function behind the ``drift-monitor`` flow and
``mlops monitor``. It never fails on thin or bad data: too few rows is a result with its
status ("not enough data (N < min)"), a log missing a feature or holding a wrong type is
counted in the summary with the field and the reason, and a model without a usable
reference is a status too. It writes ``report.html`` (and ``performance.html`` when there
was enough feedback) and ``summary.json`` to ``<artifacts>/monitoring/<check-id>/`` and adds
the snapshots to the local Evidently workspace.

:func:`judge_window` is the part that decides, on frames: it chooses the reference rows
(``monitoring.reference``) and compares. ``run_check`` calls it on the coerced logs; the
monitor evaluation (``benchmarks/monitor_eval.py``) calls it on replayed and faulty windows,
so what is measured there is what the monitor does.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from monitoring.drift import (
    ColumnDrift,
    Comparison,
    DriftSettings,
    Performance,
    compare,
    prediction_name,
)
from monitoring.reference import (
    ReferenceChoice,
    ReferenceError,
    ReferenceMode,
    covers,
    load_reference,
    probability_column,
    read_importance,
    same_period,
    window_months,
)
from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from bentos.registry import ServedModel
    from tabular.config import DatasetConfig
    from tabular.contract import TypedRows

Status = Literal["ok", "drift", "not_enough_data", "no_reference"]
#: Example request ids kept per problem in the summary.
EXAMPLES = 3


class WindowError(UserError):
    """The window of logs to check is not well defined."""


@dataclass(frozen=True)
class Window:
    """Which prediction logs a check reads.

    Attributes:
        since: Logs served at or after this time (UTC), or ``None``.
        until: Logs served before this time (UTC), or ``None``.
        last: At most the most recent this many logs (after the time bounds), or ``None``.
    """

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    last: int | None = None

    @classmethod
    def parse(
        cls,
        *,
        since: str | dt.datetime | None = None,
        until: str | dt.datetime | None = None,
        since_minutes: float | None = None,
        last: int | None = None,
        default_last: int,
        now: dt.datetime | None = None,
    ) -> Window:
        """Build a window from user options (ISO times, minutes back, a row count).

        Args:
            since: Logs at or after this time (ISO 8601, UTC when no offset is given).
            until: Logs before this time.
            since_minutes: Logs of the last this many minutes (instead of ``since``).
            last: At most the most recent this many logs.
            default_last: ``last`` when no bound at all is given.
            now: The current time (UTC, naive), for ``since_minutes``.

        Returns:
            The window.

        Raises:
            WindowError: If an option is malformed or they contradict each other.
        """
        from store.journal import parse_timestamp

        if since is not None and since_minutes is not None:
            raise WindowError("give either since or since_minutes, not both")
        if last is not None and last < 1:
            raise WindowError(f"last: expected a positive number of logs, got {last}")
        if since_minutes is not None and since_minutes <= 0:
            raise WindowError(f"since_minutes: expected a positive number, got {since_minutes}")
        try:
            start = None if since is None else parse_timestamp(since, "since")
            end = None if until is None else parse_timestamp(until, "until")
        except UserError as exc:
            raise WindowError(str(exc)) from None
        if since_minutes is not None:
            now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
            start = now - dt.timedelta(minutes=since_minutes)
        if start is not None and end is not None and start >= end:
            raise WindowError(
                f"since ({start.isoformat()}) must be before until ({end.isoformat()})"
            )
        if start is None and end is None and last is None:
            last = default_last
        return cls(since=start, until=end, last=last)

    def previous(self, first_log: dt.datetime, last_log: dt.datetime, rows: int) -> Window:
        """Return the window just before this one, of the same length (``recent`` reference).

        Args:
            first_log: When the oldest log of this window was served.
            last_log: When the newest was served.
            rows: Logs in this window.

        Returns:
            The same number of logs before ``first_log`` for a window of the last N logs;
            otherwise the same time span before this window's start.
        """
        if self.since is None and self.until is None:
            return Window(until=first_log, last=rows)
        start = self.since or first_log
        end = self.until or last_log
        return Window(since=start - (end - start), until=start)

    def describe(self) -> str:
        """Say the window in words, e.g. "the last 500 logs since 2026-01-01T00:00:00"."""
        parts = [f"the last {self.last:,} logs" if self.last else "the logs"]
        if self.since:
            parts.append(f"since {self.since.isoformat(timespec='seconds')}")
        if self.until:
            parts.append(f"until {self.until.isoformat(timespec='seconds')}")
        return " ".join(parts)


class WindowOut(BaseModel):
    """The window as checked.

    Attributes:
        description: The window in words.
        since: Its lower time bound, if any.
        until: Its upper time bound, if any.
        last: Its row limit, if any.
        first_log: When the oldest log compared was served.
        last_log: When the newest was served.
    """

    description: str
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    last: int | None = None
    first_log: dt.datetime | None = None
    last_log: dt.datetime | None = None


class RowCounts(BaseModel):
    """What happened to the window's logs.

    Attributes:
        logged: Logs of the monitored model in the window.
        other_versions: Logs of other versions of the model, left out (each version has its
            own reference; the newest version is checked).
        refused: Logs whose features break the model's input contract (see ``problems``).
        compared: Valid logs compared with the reference.
        labelled: Compared logs that have feedback.
    """

    logged: int = 0
    other_versions: int = 0
    refused: int = 0
    compared: int = 0
    labelled: int = 0


class ProblemCount(BaseModel):
    """Logs refused for the same reason.

    Attributes:
        field: The feature at fault.
        message: What is wrong with it.
        rows: Logs with this problem.
        examples: Request ids of a few of them.
    """

    field: str
    message: str
    rows: int
    examples: list[str]


class ReferenceOut(BaseModel):
    """The reference rows a check compared with.

    Attributes:
        mode: The setting that chose them, after any fallback.
        asked: The setting asked for (``monitoring.reference``).
        rows: Reference rows compared.
        description: Which rows, in words.
    """

    mode: ReferenceMode
    asked: ReferenceMode
    rows: int
    description: str


class DriftSummary(BaseModel):
    """The machine-readable result of a drift check (``summary.json``).

    Attributes:
        check_id: The check's id (its folder name).
        status: ``ok``, ``drift`` (dataset-level drift), ``not_enough_data`` or
            ``no_reference``.
        message: The status in one sentence.
        checked_at: When the check ran (UTC).
        dataset: The dataset.
        model: The model tag whose logs were compared (``None`` without logs).
        run_id: The pipeline run that trained it.
        window: The window read.
        rows: Row counts.
        problems: Refused logs, grouped by field and reason.
        reference: Which reference rows were compared, and why those.
        importance_source: Where the columns' weights come from.
        importance_share_threshold: The importance-weighted drift that flags dataset drift.
        drift_share_threshold: The share of columns of Evidently's drifted-share test.
        columns: One entry per column (features, then the prediction): tests, weight,
            verdict, severity.
        ranking: The feature columns, the most important drift first.
        skipped_columns: Columns whose values were not compared, with the reason.
        drifted_columns: The drifted columns, the most important drift first.
        weighted_drift: Share of the model's importance held by drifted columns (decides).
        drifted_share: Share of feature columns that drifted.
        evidently_share: Share of compared columns Evidently's distribution tests flagged.
        dataset_drift: Whether dataset-level drift was flagged (``weighted_drift`` reached
            its threshold).
        prediction_drift: The predicted probability's drift test.
        performance: Classification quality on the labelled logs, if there were enough.
        performance_note: Why there is none, when there is none.
        outputs: Files written and workspace runs.
        seconds: Time of each part: ``read``, ``coerce``, ``report``, ``write``.
    """

    check_id: str
    status: Status
    message: str
    checked_at: dt.datetime
    dataset: str
    model: str | None = None
    run_id: str | None = None
    window: WindowOut
    rows: RowCounts = RowCounts()
    problems: list[ProblemCount] = []
    reference: ReferenceOut | None = None
    importance_source: str | None = None
    importance_share_threshold: float
    drift_share_threshold: float
    columns: list[ColumnDrift] = []
    ranking: list[str] = []
    skipped_columns: dict[str, str] = {}
    drifted_columns: list[str] = []
    weighted_drift: float | None = None
    drifted_share: float | None = None
    evidently_share: float | None = None
    dataset_drift: bool = False
    prediction_drift: ColumnDrift | None = None
    performance: Performance | None = None
    performance_note: str | None = None
    outputs: dict[str, str] = {}
    seconds: dict[str, float] = {}


@dataclass
class CheckResult:
    """A drift check's summary, with what later steps need.

    Attributes:
        summary: The summary written as ``summary.json``.
        folder: The check's folder.
        served: The served model whose logs were compared (``None`` without logs).
        current: The compared rows (features, probability, target), or ``None``.
    """

    summary: DriftSummary
    folder: Path
    served: ServedModel | None = None
    current: pd.DataFrame | None = None


def new_check_id(now: dt.datetime | None = None) -> str:
    """Return a sortable, unique check id such as ``20261122-031500-3fa2c1``.

    Args:
        now: The time to stamp (UTC now by default).

    Returns:
        The id.
    """
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@contextmanager
def _timed(seconds: dict[str, float], part: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[part] = round(seconds.get(part, 0.0) + time.perf_counter() - start, 3)


def read_window(
    dataset: str, model_name: str, window: Window
) -> tuple[pd.DataFrame, str | None, int]:
    """Read the window's logs of one model with their feedback, newest version only.

    Args:
        dataset: The dataset.
        model_name: The model's store name (e.g. ``flights-primary``).
        window: The window.

    Returns:
        The logs of the newest version in the window (oldest first, with ``features`` as
        dicts and ``actual`` from feedback), that version, and how many logs of other
        versions were left out.

    Raises:
        StoreUnavailable: If MongoDB is unreachable.
    """
    from monitoring.logs import labelled_predictions_frame

    logs = labelled_predictions_frame(
        dataset=dataset,
        model_name=model_name,
        since=window.since,
        until=window.until,
        limit=window.last,
        feature_dicts=True,
    )
    if logs.empty:
        return logs, None, 0
    version = logs["model_version"].iloc[-1]
    newest = logs["model_version"] == version
    return logs[newest].reset_index(drop=True), version, int((~newest).sum())


def count_problems(problems, request_ids: list[str]) -> list[ProblemCount]:
    """Group refused fields by field and reason, with a few example request ids.

    Args:
        problems: The :class:`tabular.contract.RowProblem` list of ``to_frame``.
        request_ids: The request id of each row position.

    Returns:
        One entry per (field, reason), most frequent first.
    """
    rows: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    for problem in problems:
        key = (problem.field, problem.message)
        rows[key] += 1
        if len(examples[key]) < EXAMPLES:
            examples[key].append(request_ids[problem.row])
    return [
        ProblemCount(field=field, message=message, rows=count, examples=examples[(field, message)])
        for (field, message), count in rows.most_common()
    ]


def coerce_logs(contract, logs: pd.DataFrame, target: str) -> tuple[pd.DataFrame, TypedRows]:
    """Read logged features back through the input contract, with probability and outcome.

    Args:
        contract: The served model's input contract.
        logs: Logs with ``features`` (dicts), ``probability`` and ``actual`` (nullable).
        target: The target column's name in the result.

    Returns:
        The valid rows (typed features, the predicted probability under
        :func:`~monitoring.drift.prediction_name`, ``target``), and the contract's typed rows
        (for the refused ones and their problems).
    """
    typed = contract.to_frame(logs["features"].tolist())
    valid = logs.loc[typed.frame.index]
    current = typed.frame
    prediction = prediction_name(contract.names)
    current[prediction] = valid["probability"].to_numpy(dtype="float64", na_value=float("nan"))
    current[target] = (
        valid["actual"].astype("Float64").to_numpy(dtype="float64", na_value=float("nan"))
    )
    return current[current[prediction].notna()], typed


def choose_reference(
    mode: ReferenceMode,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    date_column: str | None,
    recent: pd.DataFrame | None,
    min_rows: int,
    period_logs: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, ReferenceChoice]:
    """Choose the rows a window is compared with (``monitoring.reference``).

    ``recent`` with fewer than ``min_rows`` earlier logs, and ``same_period`` without a
    date column, fall back (``recent`` to ``same_period`` when there is a date, else to
    ``whole``); the choice says so.

    Args:
        mode: ``whole``, ``same_period`` or ``recent``.
        reference: The served model's training reference.
        current: The window's rows.
        date_column: The dataset's date column if it is a served input, else ``None``.
        recent: The logs of the window just before (already coerced), for ``recent``.
        min_rows: Fewest rows a reference may have.
        period_logs: The model's earlier logs (coerced), for ``same_period`` when the
            training rows hold none of the window's months.

    Returns:
        The rows and the choice.
    """
    asked = mode
    notes = []
    if mode == "recent":
        count = 0 if recent is None else len(recent)
        if count >= min_rows:
            return recent, ReferenceChoice(
                "recent", asked, count, f"the {count:,} logs of the window just before"
            )
        notes.append(f"only {count:,} logs before the window (< {min_rows})")
        mode = "same_period" if date_column else "whole"
    if mode == "same_period":
        if date_column:
            rows, description = same_period(
                reference, current, date_column, min_rows=min_rows, logs=period_logs
            )
            note = f" ({'; '.join(notes)})" if notes else ""
            return rows, ReferenceChoice("same_period", asked, len(rows), description + note)
        notes.append("no date column to match the period")
    note = f" ({'; '.join(notes)})" if notes else ""
    return reference, ReferenceChoice(
        "whole", asked, len(reference), f"every training reference row{note}"
    )


def judge_window(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    served: ServedModel,
    settings: DriftSettings,
    *,
    target: str,
    importance: dict[str, float] | None,
    recent: pd.DataFrame | None = None,
    period_logs: pd.DataFrame | None = None,
) -> tuple[Comparison, ReferenceChoice]:
    """Choose the reference rows for a window and compare: the monitor's decision, on frames.

    Args:
        current: The window's valid rows (as :func:`coerce_logs` returns them).
        reference: The served model's reference, its probability column renamed to
            :func:`~monitoring.drift.prediction_name`.
        served: The served model (its contract's roles and its decision threshold).
        settings: Reference mode, thresholds, methods, minimum rows.
        target: The target column.
        importance: The model's importance shares (``None``: equal weights).
        recent: The coerced logs of the window just before (``recent`` reference).
        period_logs: The coerced earlier logs, for ``same_period`` when the training
            rows hold none of the window's months.

    Returns:
        The comparison and the reference choice.
    """
    roles = served.contract.roles
    dates = roles.get("datetime") or []
    rows, choice = choose_reference(
        settings.reference,
        reference,
        current,
        date_column=dates[0] if dates else None,
        recent=recent,
        min_rows=settings.min_rows,
        period_logs=period_logs,
    )
    found = compare(
        current,
        rows,
        roles,
        settings,
        target=target,
        threshold=served.threshold,
        importance=importance,
    )
    return found, choice


def run_check(
    config: DatasetConfig,
    window: Window,
    settings: DriftSettings,
    *,
    out_root: str | Path,
    workspace: str | Path | None,
    now: dt.datetime | None = None,
) -> CheckResult:
    """Run one drift check of the primary (champion) model's logs against its reference.

    Args:
        config: The dataset config (its name and target).
        window: Which logs to read.
        settings: Reference mode, thresholds, method overrides, minimum rows.
        out_root: Parent of the check folders (``<artifacts>/monitoring``).
        workspace: The Evidently workspace folder, or ``None`` to skip it.
        now: The check's time (UTC), for its id.

    Returns:
        The summary (also written as ``summary.json``), the folder, the served model and
        the compared rows.

    Raises:
        StoreUnavailable: If MongoDB is unreachable.
        DriftSettingsError: If a method override names an unknown column or method.
    """
    import bentoml

    from bentos.registry import model_name, served_model_from_tag

    now = now or dt.datetime.now(dt.UTC)
    check_id = new_check_id(now)
    folder = Path(out_root) / check_id
    seconds: dict[str, float] = {}
    summary = DriftSummary(
        check_id=check_id,
        status="not_enough_data",
        message="",
        checked_at=now.replace(tzinfo=None),
        dataset=config.name,
        window=WindowOut(
            description=window.describe(), since=window.since, until=window.until, last=window.last
        ),
        importance_share_threshold=settings.importance_share,
        drift_share_threshold=settings.drift_share,
    )
    result = CheckResult(summary=summary, folder=folder)
    name = model_name(config.name, "primary")
    target = config.target.name

    with _timed(seconds, "read"):
        logs, version, others = read_window(config.name, name, window)
    summary.rows.other_versions = others
    summary.rows.logged = len(logs)
    if version is None:
        return _finish(result, seconds, "not_enough_data", _thin(0, settings.min_rows, name))
    summary.model = f"{name}:{version}"
    summary.window.first_log = logs["timestamp"].iloc[0].to_pydatetime()
    summary.window.last_log = logs["timestamp"].iloc[-1].to_pydatetime()
    try:
        served = served_model_from_tag(summary.model)
        metadata = bentoml.models.get(summary.model).info.metadata
    except Exception as exc:  # the model store may have lost it: a status, not a crash
        return _finish(
            result,
            seconds,
            "no_reference",
            f"model {summary.model} is not in the BentoML model store ({type(exc).__name__})",
        )
    result.served = served
    summary.run_id = served.run_id

    with _timed(seconds, "coerce"):
        current, typed = coerce_logs(served.contract, logs, target)
        summary.problems = count_problems(typed.problems, logs["request_id"].tolist())
        summary.rows.refused = len(typed.refused_rows)
    summary.rows.compared = len(current)
    summary.rows.labelled = int(current[target].notna().sum())
    if len(current) < settings.min_rows:
        return _finish(
            result, seconds, "not_enough_data", _thin(len(current), settings.min_rows, name)
        )
    result.current = current

    with _timed(seconds, "read"):
        try:
            reference = load_reference(served.reference_path, served.reference_sha256)
        except ReferenceError as exc:
            return _finish(result, seconds, "no_reference", f"{summary.model}: {exc}")
        prediction = prediction_name(served.contract.names)
        reference = reference.rename(columns={probability_column(served.role): prediction})
        recent = period_logs = None
        if settings.reference == "recent":
            before = window.previous(summary.window.first_log, summary.window.last_log, len(logs))
            recent = read_earlier(config.name, name, version, before, served, target)
        dates = served.contract.roles.get("datetime") or []
        if (
            settings.reference == "same_period"
            and dates
            and not covers(reference, window_months(current, dates[0]), dates[0], settings.min_rows)
        ):
            # A window after the training period: the season's own earlier logs.
            earlier = Window(until=summary.window.first_log, last=config.monitoring.reference_rows)
            period_logs = read_earlier(config.name, name, version, earlier, served, target)
    importance = read_importance(metadata, served.contract.names)
    summary.importance_source = (
        "the served model's mean |SHAP| per input, saved at training"
        if importance is not None
        else "none saved with this model: every column weighs the same"
    )

    with _timed(seconds, "report"):
        found, choice = judge_window(
            current,
            reference,
            served,
            settings,
            target=target,
            importance=importance,
            recent=recent,
            period_logs=period_logs,
        )
    summary.reference = ReferenceOut(**vars(choice))
    summary.columns = found.columns
    summary.ranking = found.ranking
    summary.skipped_columns = found.skipped
    summary.drifted_columns = found.drifted_columns
    summary.weighted_drift = found.weighted_drift
    summary.drifted_share = found.drifted_share
    summary.evidently_share = found.evidently_share
    summary.dataset_drift = found.dataset_drift
    summary.prediction_drift = found.prediction
    summary.performance = found.performance
    summary.performance_note = found.performance_note

    with _timed(seconds, "write"):
        folder.mkdir(parents=True, exist_ok=True)
        for kind, snapshot in found.snapshots.items():
            path = folder / ("report.html" if kind == "drift" else f"{kind}.html")
            snapshot.save_html(str(path))
            summary.outputs[f"{kind}_html"] = str(path)
        if workspace is not None:
            from monitoring.workspace import add_snapshots, signals_snapshot

            snapshots = {**found.snapshots, "signals": signals_snapshot(summary)}
            runs = add_snapshots(workspace, config.name, snapshots, check_id)
            summary.outputs.update({f"workspace_{kind}": run for kind, run in runs.items()})
            summary.outputs["workspace"] = str(workspace)
    status: Status = "drift" if found.dataset_drift else "ok"
    return _finish(result, seconds, status, verdict_message(found, settings))


def read_earlier(
    dataset: str, name: str, version: str, window: Window, served: ServedModel, target: str
) -> pd.DataFrame | None:
    """Read and coerce the logs of the same model version in an earlier window.

    Args:
        dataset: The dataset.
        name: The model's store name.
        version: The model version checked (other versions' logs are left out).
        window: The earlier window.
        served: The served model (its contract).
        target: The target column.

    Returns:
        The valid rows, as :func:`coerce_logs` returns them, or ``None`` without logs.
    """
    from monitoring.logs import labelled_predictions_frame

    earlier = labelled_predictions_frame(
        dataset=dataset,
        model_name=name,
        since=window.since,
        until=window.until,
        limit=window.last,
        feature_dicts=True,
    )
    if not earlier.empty:
        earlier = earlier[earlier["model_version"] == version]
    if earlier.empty:
        return None
    rows, _ = coerce_logs(served.contract, earlier.reset_index(drop=True), target)
    return rows


def verdict_message(found: Comparison, settings: DriftSettings) -> str:
    """Say a check's verdict in one sentence: the deciding signal, then the drifted columns.

    Args:
        found: The comparison.
        settings: Its thresholds.

    Returns:
        E.g. "dataset drift: drifted columns hold 0.42 of the model's importance (>= 0.25);
        2 of 23 columns drifted: dest_recent_arr_delay (distribution, ×4.1), ...".
    """
    by_column = {c.column: c for c in found.columns}
    drifted = [
        f"{c} ({', '.join(by_column[c].reasons)}, weight {by_column[c].importance:.2f})"
        for c in found.drifted_columns
    ]
    sign = ">=" if found.dataset_drift else "<"
    head = "dataset drift" if found.dataset_drift else "no dataset drift"
    return (
        f"{head}: drifted columns hold {found.weighted_drift:.2f} of the model's importance "
        f"({sign} {settings.importance_share:.2f}); {len(drifted)} of {len(found.features)} "
        f"columns drifted: {', '.join(drifted) or 'none'}"
    )


def _thin(rows: int, minimum: int, name: str) -> str:
    return f"not enough data ({rows} < {minimum}): valid logs of {name} in the window"


def _finish(result: CheckResult, seconds: dict[str, float], status: Status, message: str):
    summary = result.summary
    summary.status, summary.message = status, message
    with _timed(seconds, "write"):
        result.folder.mkdir(parents=True, exist_ok=True)
        path = result.folder / "summary.json"
        summary.outputs["summary"] = str(path)
        summary.seconds = seconds
        path.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return result
