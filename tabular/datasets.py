"""Load a dataset from its config, clean it, derive the target, and split it.

Every function here is plain pandas: DataFrame in, DataFrame (or a small dataclass) out.
"""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tabular.config import DatasetConfig
from tabular.errors import DatasetError
from tabular.loaders import get_loader


@dataclass(frozen=True)
class CleaningReport:
    """What :func:`prepare` did to the rows.

    Attributes:
        rows_in: Rows loaded.
        rows_out: Rows kept.
        dropped: Rows dropped per reason (e.g. ``"missing arr_delay"``).
        positive_share: Share of kept rows whose target is 1.
        missing_markers: Per column, how many cells of the file held each text read as a
            missing value (e.g. ``{"agent": {"NULL": 16340}}``); empty for a built-in
            loader.
    """

    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    positive_share: float = 0.0
    missing_markers: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Fold:
    """One fold of the selection: rows to fit on, and the rows that follow to score on.

    Attributes:
        name: Short name (the first day of the validation period, or ``"validation"``).
        train: Positions, in the development rows, of the rows the fold fits on.
        validation: Positions of the rows it is scored on.
        description: One phrase saying which rows are which.
    """

    name: str
    train: np.ndarray
    validation: np.ndarray
    description: str


@dataclass(frozen=True)
class Split:
    """Development rows with their selection folds, and test rows.

    Attributes:
        train: The development rows: every row the final models are fitted on (all rows
            before the test period, for a time split), and the only rows EDA sees.
        test: Rows touched once, for the final scores.
        folds: The folds that choose hyperparameters, families, thresholds and calibration;
            their positions index ``train``.
        description: One sentence describing the split, for reports.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    folds: list[Fold]
    description: str

    @property
    def validation(self) -> pd.DataFrame:
        """The last fold's validation rows (for a time split, the period just before the test)."""
        return self.train.iloc[self.folds[-1].validation]

    def sizes(self) -> dict[str, int]:
        """Return the row count of the development and test parts, and of each fold's parts."""
        sizes = {"train": len(self.train), "test": len(self.test)}
        for fold in self.folds:
            sizes[f"fold {fold.name} train"] = len(fold.train)
            sizes[f"fold {fold.name} validation"] = len(fold.validation)
        return sizes


def load_raw(config: DatasetConfig) -> pd.DataFrame:
    """Load the raw rows named by the config's source.

    Args:
        config: The dataset config.

    Returns:
        The raw frame, with every column the config needs.

    Raises:
        DatasetError: If the file is missing, empty or not a CSV, or lacks a column the
            config names.
    """
    if config.source.loader is not None:
        loader = get_loader(config.source.loader)
        frame = loader.load_rows(config.prediction_horizon)
        origin = f"the {loader.name} loader"
    else:
        path = config.csv_path()
        frame = read_csv(path, config.missing_markers)
        origin = str(path)
    check_columns(frame, config, origin)
    return frame


def recomputes_horizon(config: DatasetConfig) -> bool:
    """Whether the config's source can recompute its point-in-time columns for any horizon.

    Args:
        config: The dataset config.

    Returns:
        True for the built-in loader with point-in-time columns; a CSV holds its columns
        for one horizon only.
    """
    return (
        config.source.loader is not None
        and get_loader(config.source.loader).at_horizon is not None
        and bool(config.point_in_time)
    )


def at_horizon(raw: pd.DataFrame, config: DatasetConfig, hours: float) -> pd.DataFrame:
    """Recompute the point-in-time columns of loaded rows for another prediction horizon.

    Args:
        raw: Rows from :func:`load_raw`.
        config: The dataset config.
        hours: The horizon (0 = schedule only: the columns are removed).

    Returns:
        The rows with the point-in-time columns of that horizon.

    Raises:
        DatasetError: If the source cannot recompute them (see :func:`recomputes_horizon`).
    """
    if not recomputes_horizon(config):
        raise DatasetError(
            f"the point-in-time columns of dataset '{config.name}' cannot be recomputed for "
            f"another horizon (only the built-in loader computes them)"
        )
    return get_loader(config.source.loader).rows_at_horizon(raw, hours)


#: Key of ``DataFrame.attrs`` where :func:`read_csv` records the missing-value markers met.
MARKERS_ATTR = "missing_markers"
#: Rows of a CSV read at a time, as text, to count its missing-value markers.
MARKER_CHUNK_ROWS = 100_000


def read_csv(path, missing_markers: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Read a CSV file, turning pandas' low-level errors into one readable sentence.

    Exactly the ``missing_markers`` texts are read as missing values (pandas' own list
    when ``None``). How many cells held each marker, per column, is recorded in
    ``frame.attrs["missing_markers"]`` so that reports can say how the file wrote its gaps.

    Args:
        path: Path of the CSV file.
        missing_markers: Texts meaning "missing" (the empty string is an empty cell).

    Returns:
        The parsed frame.

    Raises:
        DatasetError: If the file is missing, empty, binary or not comma-separated text.
    """
    if not path.is_file():
        raise DatasetError(f"data file {path} does not exist")
    if path.stat().st_size == 0:
        raise DatasetError(f"data file {path} is empty")
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if b"\x00" in head:
        raise DatasetError(f"data file {path} is not a CSV text file (it contains binary data)")
    markers = {}
    if missing_markers is not None:
        markers = {"na_values": list(missing_markers), "keep_default_na": False}
    try:
        frame = pd.read_csv(path, low_memory=False, **markers)
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"data file {path} has no rows or header") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DatasetError(f"data file {path} is not a readable CSV: {reason}") from exc
    if frame.shape[1] < 2:
        raise DatasetError(
            f"data file {path} is not a comma-separated CSV: found a single column "
            f"'{frame.columns[0]}'"
        )
    if frame.empty:
        raise DatasetError(f"data file {path} has a header but no rows")
    frame.attrs[MARKERS_ATTR] = count_markers(path, frame, missing_markers)
    return frame


def count_markers(
    path, frame: pd.DataFrame, missing_markers: tuple[str, ...] | None
) -> dict[str, dict[str, int]]:
    """Count, per column, the cells of a CSV that held each missing-value marker.

    Only the columns that came out with missing values are read again, as raw text.

    Args:
        path: The CSV file.
        frame: The frame parsed from it.
        missing_markers: The markers read as missing (``None``: pandas' defaults).

    Returns:
        ``{column: {marker: cells}}`` for the columns with at least one missing value.
    """
    gaps = [column for column in frame.columns if frame[column].isna().any()]
    if not gaps:
        return {}
    missing = {column: frame[column].isna().to_numpy() for column in gaps}
    found: dict[str, pd.Series] = {column: pd.Series(dtype="int64") for column in gaps}
    # A slice of rows at a time: the whole file as text would hold a Python string a cell.
    chunks = pd.read_csv(path, usecols=gaps, dtype=str, keep_default_na=False,
                         na_filter=False, chunksize=MARKER_CHUNK_ROWS)  # fmt: skip
    start = 0
    for text in chunks:
        end = start + len(text)
        for column in gaps:
            raw = text[column][missing[column][start:end]]
            found[column] = found[column].add(raw.value_counts(), fill_value=0)
        start = end
    counts = {}
    for column in gaps:
        cells = found[column].sort_values(ascending=False, kind="stable")
        if missing_markers is not None:
            cells = cells[cells.index.isin(missing_markers)]
        counts[str(column)] = {str(marker): int(n) for marker, n in cells.items()}
    return counts


def check_columns(
    frame: pd.DataFrame, config: DatasetConfig, origin: str, prepared: bool = False
) -> None:
    """Check that every column the config names is present.

    Args:
        frame: The loaded data.
        config: The dataset config.
        origin: Where the data came from, for the message.
        prepared: The frame comes from :func:`prepare`, so it already holds the date built
            from ``date_from`` under ``date_column``.

    Raises:
        DatasetError: Naming each missing column and the config key that names it.
    """
    if config.date_from is not None:
        date_roles = {f"date_from.{part}": [column] for part, column in config.date_from}
    else:
        date_roles = {"date_column": [config.date_column] if config.date_column else []}
    roles = {
        **date_roles,
        "target.column": [config.target.column],
        "categorical": config.categorical,
        "numeric": config.numeric_features,
        "id_columns": config.id_columns,
        "drop_rows_missing": config.drop_rows_missing,
    }
    missing = [
        f"'{column}' ({role})"
        for role, columns in roles.items()
        for column in columns
        if column not in frame.columns
    ]
    where = config.path or config.name
    if missing:
        raise DatasetError(
            f"{origin} lacks column(s) {', '.join(dict.fromkeys(missing))} named in config "
            f"{where}; present columns: {', '.join(map(str, frame.columns[:30]))}"
        )
    if config.date_from is not None and config.date_column in frame.columns and not prepared:
        raise DatasetError(
            f"{origin} already has a column '{config.date_column}', the name config {where} "
            "gives the date built from date_from; set date_column to another name"
        )


def derive_target(values: pd.Series, config: DatasetConfig) -> pd.Series:
    """Turn the target's source column into 0/1 by the config's rule.

    Args:
        values: The source column (no missing values).
        config: The dataset config.

    Returns:
        An ``int8`` series of 0/1.

    Raises:
        DatasetError: If a threshold is set on a non-numeric column, or a column used as
            is holds values other than 0/1.
    """
    rule = config.target
    if rule.threshold is not None:
        numeric = pd.to_numeric(values, errors="coerce")
        bad = values[numeric.isna()]
        if len(bad):
            raise DatasetError(
                f"target column '{rule.column}' must be numeric for threshold {rule.threshold}, "
                f"but {len(bad)} value(s) are not, e.g. {bad.iloc[:3].tolist()}"
            )
        return (numeric >= rule.threshold).astype("int8")
    if rule.positive_values is not None:
        return values.isin(rule.positive_values).astype("int8")
    unique = set(pd.unique(values))
    if not unique <= {0, 1}:  # True == 1 and False == 0 in a set
        shown = sorted(map(str, unique))[:5]
        raise DatasetError(
            f"target column '{rule.column}' must hold 0/1 (or set 'threshold' or "
            f"'positive_values' in the config), found {shown}"
        )
    return values.astype("int8")


def prepare(frame: pd.DataFrame, config: DatasetConfig) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop unusable rows, parse the date column and add the 0/1 target.

    Rows missing a ``drop_rows_missing`` column or the target source are dropped and
    counted; a date that cannot be parsed is left as ``NaT`` for the validation gate to
    report, rather than being silently dropped.

    Args:
        frame: The raw frame from :func:`load_raw`.
        config: The dataset config.

    Returns:
        The cleaned frame sorted by date, and the report of what was dropped.

    Raises:
        DatasetError: If no row is left or the target cannot be derived.
    """
    rows_in = len(frame)
    dropped: dict[str, int] = {}
    keep = pd.Series(True, index=frame.index)
    for column in dict.fromkeys([*config.drop_rows_missing, config.target.column]):
        missing = frame[column].isna() & keep
        if missing.any():
            dropped[f"missing {column}"] = int(missing.sum())
        keep &= ~frame[column].isna()
    data = frame.loc[keep].copy()
    if data.empty:
        raise DatasetError(f"no rows left after dropping rows with missing values ({dropped})")

    if config.date_from is not None:
        data[config.date_column] = build_date(data, config.date_from)
    elif config.date_column is not None:
        data[config.date_column] = parse_dates(data[config.date_column])
    data[config.target.name] = derive_target(data[config.target.column], config)
    for column in config.categorical:
        # Categories are text everywhere (training, serving, MongoDB): one dtype, no surprises.
        data[column] = data[column].astype("string").astype(object).where(data[column].notna())
    if config.date_column is not None:
        data = data.sort_values(config.date_column, kind="stable")
    data = data.reset_index(drop=True)
    report = CleaningReport(
        rows_in=rows_in,
        rows_out=len(data),
        dropped=dropped,
        positive_share=float(data[config.target.name].mean()),
        missing_markers=dict(frame.attrs.get(MARKERS_ATTR, {})),
    )
    return data, report


#: Month names and abbreviations (any case) to month numbers, from the ``calendar`` module.
MONTH_NUMBERS = {
    name.lower(): number
    for names in (calendar.month_name, calendar.month_abbr)
    for number, name in enumerate(names)
    if name
}


def build_date(data: pd.DataFrame, parts) -> pd.Series:
    """Build a date from year, month and day columns; a part that cannot be read gives ``NaT``.

    Args:
        data: The rows.
        parts: The config's ``date_from`` (:class:`tabular.config.DateFromConfig`).

    Returns:
        A ``datetime64[ns]`` series (``NaT`` left for the validation gate to report).
    """
    month = data[parts.month]
    if not pd.api.types.is_numeric_dtype(month):
        text = month.astype("string").str.strip().str.lower()
        month = text.map(MONTH_NUMBERS).fillna(pd.to_numeric(text, errors="coerce"))
    pieces = pd.DataFrame(
        {
            "year": pd.to_numeric(data[parts.year], errors="coerce"),
            "month": pd.to_numeric(month, errors="coerce"),
            "day": pd.to_numeric(data[parts.day], errors="coerce"),
        }
    )
    return pd.to_datetime(pieces, errors="coerce")


def parse_dates(values: pd.Series) -> pd.Series:
    """Parse a column to naive datetimes; unparseable values become ``NaT``.

    Args:
        values: Strings or datetimes.

    Returns:
        A ``datetime64[ns]`` series without time zone.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed


def rows_before(data: pd.DataFrame, config: DatasetConfig, until: str | None) -> pd.DataFrame:
    """Keep the rows dated before ``until`` (all rows when ``until`` is ``None``).

    Args:
        data: The cleaned frame.
        config: The dataset config (names the date column).
        until: An ISO 8601 date or time, exclusive.

    Returns:
        The earlier rows, with a fresh index.

    Raises:
        DatasetError: If the dataset has no date column, ``until`` is not a date, or no row
            is left.
    """
    if until is None:
        return data
    if config.date_column is None:
        raise DatasetError(f"until='{until}' needs a date, and dataset '{config.name}' has none")
    try:
        bound = pd.Timestamp(until)
    except ValueError as exc:
        raise DatasetError(f"until: '{until}' is not an ISO 8601 date ({exc})") from None
    kept = data[data[config.date_column] < bound.tz_localize(None)]
    if kept.empty:
        raise DatasetError(f"no row of '{config.name}' is dated before {until}")
    return kept.reset_index(drop=True)


def sample_rows(
    data: pd.DataFrame, n: int | None, seed: int, date_column: str | None
) -> pd.DataFrame:
    """Draw a reproducible random sample of rows, kept in date order (or file order).

    Args:
        data: The cleaned frame.
        n: Rows to keep; ``None`` or a number at least ``len(data)`` keeps all.
        seed: Random seed.
        date_column: Column to sort the sample by; ``None`` keeps the rows' original order.

    Returns:
        The sample, with a fresh index.
    """
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise DatasetError(f"--sample must be a positive number of rows, got {n}")
    sample = data.sample(n=n, random_state=seed)
    if date_column is None:
        return sample.sort_index().reset_index(drop=True)
    return sample.sort_values(date_column, kind="stable").reset_index(drop=True)


def split_data(
    data: pd.DataFrame, config: DatasetConfig, seed: int, *, held_out: bool = True
) -> Split:
    """Split rows into development rows with their folds, and test rows, as the config says.

    Args:
        data: The cleaned frame.
        config: The dataset config.
        seed: Random seed for the random split.
        held_out: Whether the split must hold test rows. The drift monitor's retraining
            passes ``False``: its data ends where the window it is judged on starts (the
            config's ``test_start``), so every row is a development row.

    Returns:
        The development rows, their folds and the test rows.

    Raises:
        DatasetError: If a part comes out empty (e.g. the dates do not reach the test start).
    """
    rule = config.split
    if rule.method == "time":
        dates = data[config.date_column]
        test_start = pd.Timestamp(rule.test_start)
        if dates.is_monotonic_increasing:
            # Rows sorted by date (as prepare() leaves them): the parts are two slices,
            # views of the rows rather than copies (at 1,000,000 rows a copy held 0.48 GB
            # more for as long as the store step reads the prepared rows).
            cut = int(dates.searchsorted(test_start, side="left"))
            development, test = _rows(data, 0, cut), _rows(data, cut, len(data))
        else:
            development = data[dates < test_start].reset_index(drop=True)
            test = data[dates >= test_start].sort_index().reset_index(drop=True)
        when = development[config.date_column]
        bounds = [pd.Timestamp(start) for start in rule.fold_starts] + [test_start]
        folds = [
            Fold(
                name=str(start.date()),
                train=np.flatnonzero(when < start),
                validation=np.flatnonzero((when >= start) & (when < end)),
                description=f"fit before {start.date()}, scored from {start.date()} to before "
                f"{end.date()}",
            )
            for start, end in zip(bounds, bounds[1:], strict=False)
        ]
        starts = ", ".join(str(start) for start in rule.fold_starts)
        description = (
            f"chronological split on '{config.date_column}': test from {rule.test_start} on; "
            + (
                f"{len(folds)} rolling-origin folds over the earlier rows, validating from "
                f"{starts} (each to the next, the last to {rule.test_start}) and fitted on "
                "every row before"
                if len(folds) > 1
                else f"validation from {starts} to before {rule.test_start}, fitted on every "
                "row before"
            )
        )
    else:
        from sklearn.model_selection import train_test_split

        target = data[config.target.name]
        rest, test = train_test_split(
            data, test_size=rule.test_size, random_state=seed, stratify=_stratify(target)
        )
        share = rule.validation_size / (1 - rule.test_size)
        train, validation = train_test_split(
            rest,
            test_size=share,
            random_state=seed,
            stratify=_stratify(rest[config.target.name]),
        )
        development = rest.sort_index()
        is_validation = development.index.isin(validation.index)
        development = development.reset_index(drop=True)
        folds = [
            Fold(
                name="validation",
                train=np.flatnonzero(~is_validation),
                validation=np.flatnonzero(is_validation),
                description="fit on the training rows, scored on the validation rows",
            )
        ]
        description = (
            f"random split stratified by '{config.target.name}': "
            f"{1 - rule.test_size - rule.validation_size:.0%} train, "
            f"{rule.validation_size:.0%} validation, {rule.test_size:.0%} test"
        )
        test = test.sort_index().reset_index(drop=True)
    split = Split(
        train=development,
        test=test,
        folds=folds,
        description=description,
    )
    empty = [
        name for name, size in split.sizes().items() if not size and (held_out or name != "test")
    ]
    if empty:
        raise DatasetError(f"the {', '.join(empty)} part of the split is empty: {description}")
    return split


def _rows(data: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    """Rows ``start`` to ``stop`` numbered from 0: a view of ``data``'s columns, not a copy.

    ``reset_index`` would copy every column; a new index on the slice copies none. The part
    is a frame of its own over the same arrays: adding or replacing one of its columns
    leaves ``data`` as it is (only writing into the arrays, which no stage does, would not).
    """
    part = pd.DataFrame(data.iloc[start:stop], copy=False)
    part.index = pd.RangeIndex(stop - start)
    return part


def _stratify(target: pd.Series) -> pd.Series | None:
    # Stratifying needs at least two rows of each class; tiny samples fall back to plain random.
    return target if target.value_counts().min() >= 2 else None


def data_hash(data: pd.DataFrame) -> str:
    """Return a SHA-256 of a frame's values, columns and dtypes (order-sensitive).

    Args:
        data: Any frame.

    Returns:
        A hex digest that changes when any value, column name or dtype changes.
    """
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in data.dtypes.items()]).encode())
    row_hashes = pd.util.hash_pandas_object(data, index=False).to_numpy()
    digest.update(np.ascontiguousarray(row_hashes).tobytes())
    return digest.hexdigest()
