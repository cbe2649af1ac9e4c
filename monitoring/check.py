"""One drift check: read a window of prediction logs, coerce them, compare, write, record.

:func:`run_check` is the plain function behind the ``drift-monitor`` flow and
``mlops monitor``. It never fails on thin or bad data: too few rows is a result with its
status ("not enough data (N < min)"), a log missing a feature or holding a wrong type is
counted in the summary with the field and the reason, and a model without a usable
reference is a status too. It writes ``report.html`` (and ``performance.html`` when there
was enough feedback) and ``summary.json`` to ``<artifacts>/monitoring/<check-id>/`` and adds
the snapshots to the local Evidently workspace.
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
    DriftSettings,
    Performance,
    compare,
    prediction_name,
)
from monitoring.reference import ReferenceError, load_reference, probability_column
from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from bentos.registry import ServedModel
    from tabular.config import DatasetConfig

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
        drift_share_threshold: The share of drifted columns that flags dataset drift.
        columns: One drift test per compared column (features, then the prediction).
        skipped_columns: Columns not compared, with the reason.
        drifted_columns: The columns that drifted.
        drifted_share: Share of compared columns that drifted.
        dataset_drift: Whether dataset-level drift was flagged.
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
    drift_share_threshold: float
    columns: list[ColumnDrift] = []
    skipped_columns: dict[str, str] = {}
    drifted_columns: list[str] = []
    drifted_share: float | None = None
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
        settings: Drift threshold, method overrides, minimum rows.
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
        drift_share_threshold=settings.drift_share,
    )
    result = CheckResult(summary=summary, folder=folder)
    name = model_name(config.name, "primary")

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
        typed = served.contract.to_frame(logs["features"].tolist())
        summary.problems = count_problems(typed.problems, logs["request_id"].tolist())
        summary.rows.refused = len(typed.refused_rows)
        valid = logs.loc[typed.frame.index]
        current = typed.frame
        prediction = prediction_name(served.contract.names)
        current[prediction] = valid["probability"].to_numpy(dtype="float64", na_value=float("nan"))
        current[config.target.name] = (
            valid["actual"].astype("Float64").to_numpy(dtype="float64", na_value=float("nan"))
        )
        current = current[current[prediction].notna()]
    summary.rows.compared = len(current)
    summary.rows.labelled = int(current[config.target.name].notna().sum())
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
        reference = reference.rename(columns={probability_column(served.role): prediction})

    with _timed(seconds, "report"):
        found = compare(
            current,
            reference,
            served.contract.roles,
            settings,
            target=config.target.name,
            threshold=served.threshold,
        )
    summary.columns = found.columns
    summary.skipped_columns = found.skipped
    summary.drifted_columns = [c.column for c in found.columns if c.drifted]
    summary.drifted_share = found.drifted_share
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
            from monitoring.workspace import add_snapshots

            runs = add_snapshots(workspace, config.name, found.snapshots, check_id)
            summary.outputs.update({f"workspace_{kind}": run for kind, run in runs.items()})
            summary.outputs["workspace"] = str(workspace)
    drifted = ", ".join(summary.drifted_columns) or "none"
    if found.dataset_drift:
        status: Status = "drift"
        message = (
            f"dataset drift: {len(summary.drifted_columns)} of {len(found.columns)} columns "
            f"drifted (share {found.drifted_share:.2f} >= {settings.drift_share:.2f}): {drifted}"
        )
    else:
        status = "ok"
        message = (
            f"no dataset drift: {len(summary.drifted_columns)} of {len(found.columns)} columns "
            f"drifted (share {found.drifted_share:.2f} < {settings.drift_share:.2f}): {drifted}"
        )
    return _finish(result, seconds, status, message)


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
