"""The reference a drift check compares against: the served models' training rows.

Each pipeline run saves, in its run folder, the training rows of the served features, each
served model's predicted probability and the target, as Parquet (a fixed-seed sample of at
most ``monitoring.reference_rows`` rows). Its path and SHA-256 go into the run's manifest and
into both served models' metadata, so the monitor finds the reference of the model that
answered a logged request and knows the file is the one saved with it. Each served model's
metadata also holds its mean |SHAP| per input column (:func:`importance_metadata`), which
weighs each column's drift by how much the model uses it.

A check does not always compare with the whole frame (``monitoring.reference``):

* ``whole``: every reference row, whatever the window's dates;
* ``same_period``: the rows of the window's calendar period (:func:`same_period`): its
  months for a window spanning a week or more, and, for a shorter window, those months'
  rows drawn in the window's weekday-hour mix. The training rows of those months; for a
  window after the training period (months the training rows do not hold), the model's
  earlier logs of those months; failing both, the nearest training months;
* ``recent``: the logs of the window just before (read by :mod:`monitoring.check`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

#: File name of the reference in a run folder.
REFERENCE_FILE = "reference.parquet"
#: Key of a served model's metadata holding its share of mean |SHAP| per input column.
IMPORTANCE_KEY = "importance"
#: A window spanning less than this is matched by its weekday-hour mix, not only its months.
SHORT_WINDOW_DAYS = 7

ReferenceMode = Literal["whole", "same_period", "recent"]


class ReferenceError(UserError):
    """The reference of a served model is missing, changed or unreadable."""


def probability_column(role: str) -> str:
    """Return the reference column holding a served model's probability of class 1.

    Args:
        role: ``primary`` or ``secondary``.

    Returns:
        The column name, e.g. ``probability_primary``.
    """
    return f"probability_{role}"


@dataclass(frozen=True)
class ReferenceInfo:
    """Where a reference frame was saved and what it holds.

    Attributes:
        path: The Parquet file (absolute).
        sha256: SHA-256 of the file's bytes.
        rows: Rows in the frame.
    """

    path: Path
    sha256: str
    rows: int

    def metadata(self) -> dict[str, Any]:
        """Return the keys a served model's metadata holds about its reference."""
        return {
            "reference_path": str(self.path),
            "reference_sha256": self.sha256,
            "reference_rows": self.rows,
        }


def build_reference(
    train: pd.DataFrame,
    columns: Sequence[str],
    target: str,
    pipelines: Mapping[str, Any],
    *,
    max_rows: int,
    seed: int,
) -> pd.DataFrame:
    """Build the reference frame from the training rows and the served pipelines.

    Args:
        train: The training rows the served models were fitted on.
        columns: The served input columns, in the contract's order.
        target: The 0/1 target column.
        pipelines: Fitted pipelines by role (``primary``, ``secondary``).
        max_rows: Keep at most this many rows (a fixed-seed sample, in the original order).
        seed: Seed of the sample.

    Returns:
        The served columns, the target and one ``probability_<role>`` column per pipeline.

    Raises:
        ValueError: If a probability column's name is already a served column or the target.
    """
    rows = train if len(train) <= max_rows else train.sample(max_rows, random_state=seed)
    rows = rows.sort_index()
    frame = rows[list(columns)].reset_index(drop=True)
    frame[target] = rows[target].to_numpy()
    for role, pipeline in pipelines.items():
        name = probability_column(role)
        if name in frame.columns:
            raise ValueError(f"reference column '{name}' clashes with a served column or target")
        frame[name] = pipeline.predict_proba(rows[list(columns)])[:, 1]
    return frame


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 of a file's bytes.

    Args:
        path: The file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_reference(frame: pd.DataFrame, path: str | Path) -> ReferenceInfo:
    """Write the reference frame as Parquet and hash the file.

    Args:
        frame: The frame from :func:`build_reference`.
        path: Where to write it (its folder is created).

    Returns:
        The absolute path, the file's SHA-256 and the row count.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return ReferenceInfo(path=path, sha256=file_sha256(path), rows=len(frame))


def load_reference(path: str | Path | None, sha256: str | None) -> pd.DataFrame:
    """Read a served model's reference, checking it is the file saved with the model.

    Args:
        path: The Parquet file named in the model's metadata.
        sha256: The hash recorded with it.

    Returns:
        The reference frame.

    Raises:
        ReferenceError: If the model has no reference (saved before references existed),
            the file is gone, or its bytes changed since the run saved it.
    """
    import pandas as pd

    if not path:
        raise ReferenceError(
            "this model was saved without a reference frame; retrain it with `make run`"
        )
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(
            f"reference {path} does not exist (was the run folder moved or deleted?); "
            "retrain with `make run`"
        )
    if sha256 and file_sha256(path) != sha256:
        raise ReferenceError(
            f"reference {path} changed since its run saved it (SHA-256 differs); retrain with "
            "`make run`"
        )
    return pd.read_parquet(path)


def importance_shares(importance: Mapping[str, float]) -> dict[str, float]:
    """Turn mean |SHAP| per column into shares of the total (they add up to 1).

    Args:
        importance: Mean |SHAP| per input column (any non-negative scale).

    Returns:
        Each column's share, largest first; equal shares when every value is 0.

    Raises:
        ValueError: If a value is negative or not a number.
    """
    values = {str(k): float(v) for k, v in importance.items()}
    if any(not math.isfinite(v) or v < 0 for v in values.values()):
        raise ValueError(f"importance must be non-negative numbers, got {values}")
    total = sum(values.values())
    if total == 0:
        return {k: 1 / len(values) for k in values} if values else {}
    shares = {k: v / total for k, v in values.items()}
    return dict(sorted(shares.items(), key=lambda item: -item[1]))


def importance_metadata(importance: Mapping[str, float]) -> dict[str, Any]:
    """Return the metadata keys that save a served model's importance with it.

    Args:
        importance: Mean |SHAP| per input column of that model.

    Returns:
        ``{"importance": {column: share}}`` (rounded to 6 digits, largest first).
    """
    shares = importance_shares(importance)
    return {IMPORTANCE_KEY: {k: round(v, 6) for k, v in shares.items()}}


def read_importance(metadata: Mapping[str, Any], columns: Sequence[str]) -> dict[str, float] | None:
    """Read a served model's importance shares from its metadata.

    Args:
        metadata: The model's BentoML metadata.
        columns: Its input columns (a column missing from the saved importance gets 0).

    Returns:
        The share of each input column (adding up to 1), or ``None`` for a model saved
        without its importance.
    """
    saved = metadata.get(IMPORTANCE_KEY)
    if not saved:
        return None
    return importance_shares({c: float(saved.get(c, 0.0)) for c in columns})


@dataclass(frozen=True)
class ReferenceChoice:
    """The reference rows a check compared with, and why those.

    Attributes:
        mode: The setting that chose them (``whole``, ``same_period``, ``recent``), after
            any fallback.
        asked: The setting asked for.
        rows: Reference rows compared.
        description: Which rows, in words (e.g. "training rows of March").
    """

    mode: ReferenceMode
    asked: ReferenceMode
    rows: int
    description: str


def nearest_months(
    months: Sequence[int], available: Sequence[int], min_rows: int, counts
) -> list[int]:
    """Return the calendar months closest to ``months`` (cyclically) that hold enough rows.

    Args:
        months: The window's months (1-12).
        available: Months present in the reference.
        min_rows: Fewest reference rows wanted.
        counts: Reference rows per month (a mapping month -> rows).

    Returns:
        The window's own months when they hold ``min_rows`` rows; otherwise the months
        within one month of them, then two, and so on (at most six: the whole year).
    """
    present = set(available)
    for distance in range(7):
        wanted = {(m - 1 + d) % 12 + 1 for m in months for d in range(-distance, distance + 1)}
        chosen = sorted(wanted & present)
        if sum(counts.get(m, 0) for m in chosen) >= min_rows:
            return chosen
    return sorted(present)


def window_months(current: pd.DataFrame, date_column: str) -> list[int]:
    """Return the calendar months (1-12) of a window's dates."""
    import pandas as pd

    return sorted(set(pd.to_datetime(current[date_column]).dropna().dt.month))


def covers(reference: pd.DataFrame, months: Sequence[int], date_column: str, min_rows: int) -> bool:
    """Whether the reference holds at least ``min_rows`` rows of these calendar months."""
    import pandas as pd

    return int(pd.to_datetime(reference[date_column]).dt.month.isin(months).sum()) >= min_rows


def same_period(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    date_column: str,
    *,
    min_rows: int,
    logs: pd.DataFrame | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, str]:
    """Keep the rows of the window's calendar period.

    The months first, from the first source that holds at least ``min_rows`` rows of them:
    the training reference; else ``logs``, the model's earlier logs (a window after the
    training period: the season's own traffic, as the service answered it); else the
    nearest months the reference holds (said so: the comparison then also measures the
    season). A window that spans less than :data:`SHORT_WINDOW_DAYS` is then matched by
    its weekday-hour mix: each (weekday, hour) cell of the window gets the same share of
    the kept rows (a fixed-seed sample of each cell, as many rows as the scarcest cell
    allows).

    Args:
        reference: The training reference (holds ``date_column``).
        current: The window's rows (holds ``date_column``).
        date_column: The dataset's date column.
        min_rows: Fewest rows to keep; a narrower choice with fewer rows is widened (the
            next source, nearer months first, then no weekday-hour matching).
        logs: The model's logs served before the window, coerced like the window (for a
            window in months the training rows do not hold), or ``None``.
        seed: Seed of the weekday-hour sample.

    Returns:
        The kept rows and a phrase saying which they are.
    """
    import calendar

    import pandas as pd

    dates = pd.to_datetime(current[date_column]).dropna()
    ref_dates = pd.to_datetime(reference[date_column])
    if dates.empty or ref_dates.notna().sum() == 0:
        return reference, "every reference row (no date to match)"
    months = window_months(current, date_column)
    names = ", ".join(calendar.month_abbr[m] for m in months)
    if covers(reference, months, date_column, min_rows):
        rows = reference[ref_dates.dt.month.isin(months)]
        description = f"training rows of {names} (the window's months)"
    elif logs is not None and covers(logs, months, date_column, min_rows):
        rows = logs[pd.to_datetime(logs[date_column]).dt.month.isin(months)]
        description = f"earlier logs of {names} (the training rows hold none of those months)"
    else:
        counts = ref_dates.dt.month.value_counts().to_dict()
        nearest = nearest_months(months, list(counts), min_rows, counts)
        rows = reference[ref_dates.dt.month.isin(nearest)]
        found = ", ".join(calendar.month_abbr[m] for m in nearest)
        description = (
            f"training rows of {found} (the nearest months to {names}; neither the training "
            "rows nor earlier logs hold the window's months, so the season differs too)"
        )
    if dates.max() - dates.min() >= pd.Timedelta(days=SHORT_WINDOW_DAYS):
        return rows, description
    matched = match_mix(rows, dates, date_column, min_rows=min_rows, seed=seed)
    if matched is None:
        return rows, description + "; too few to match the window's weekday-hour mix"
    return matched, description + ", drawn in the window's weekday-hour mix"


def match_mix(
    rows: pd.DataFrame, dates: pd.Series, date_column: str, *, min_rows: int, seed: int
) -> pd.DataFrame | None:
    """Draw reference rows in the same (weekday, hour) proportions as the window's dates.

    Args:
        rows: Reference rows (holding ``date_column``).
        dates: The window's dates.
        date_column: The date column of ``rows``.
        min_rows: Fewest rows to return.
        seed: Seed of the sample.

    Returns:
        The sample (as many rows as the scarcest cell allows, without repetition), or
        ``None`` when a cell of the window has no reference row or fewer than ``min_rows``
        rows would be drawn.
    """
    import pandas as pd

    def cells(values: pd.Series) -> pd.Series:
        values = pd.to_datetime(values)
        return values.dt.weekday * 24 + values.dt.hour

    wanted = cells(dates).value_counts(normalize=True)
    have = cells(rows[date_column])
    available = have.value_counts()
    if not set(wanted.index) <= set(available.index):
        return None
    total = min(float(available[c] / share) for c, share in wanted.items())
    total = min(total, len(rows))
    if total < min_rows:
        return None
    parts = [
        rows[have == cell].sample(int(round(share * total)), random_state=seed)
        for cell, share in wanted.items()
        if int(round(share * total)) > 0
    ]
    return pd.concat(parts).sort_index()
