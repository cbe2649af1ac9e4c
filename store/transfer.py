"""Move whole datasets in and out of the store: CSV import, CSV backup, a summary query.

:func:`import_dataset` checks every row, then converts and inserts one batch at a time, so
its memory does not grow with the rows (re-importing the same rows adds nothing: a record's
id is a hash of its values);
:func:`backup_dataset` writes a dataset to CSV with a schema file that :func:`read_backup`
reads back into the same frame; :func:`summarize` is the query that proves the connection.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import operator
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from store.crud import _reachable, get_schema, prediction_logs_frame
from store.documents import (
    ColumnSpec,
    DatasetRecord,
    DatasetSchema,
    Feedback,
    PredictionLog,
    build,
    encode_key,
)
from store.journal import utcnow
from tabular.config import DatasetConfig
from tabular.datasets import CleaningReport, check_columns, load_raw, prepare, read_csv
from tabular.errors import DatasetError, InvalidRecord, StoreError

#: Called as ``progress(done, total)`` after each batch.
Progress = Callable[[int, int], None]
BACKUP_FORMAT = 1
#: Collections :func:`backup_collection` can write, besides datasets.
COLLECTIONS = ("prediction_logs", "feedback")


@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows, records newly stored, already stored, the cleaning, the time."""

    dataset: str
    source: str
    rows: int
    inserted: int
    already_stored: int
    cleaning: CleaningReport | None = None
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Rows handled per second."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class BackupReport:
    """What a backup wrote: the CSV, its schema file, rows, columns and the time spent."""

    path: Path
    schema_path: Path
    rows: int
    columns: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Rows written per second."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class QueryResult:
    """A small result table: its title, column headers and rows."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """Return the table as a frame."""
        return pd.DataFrame(self.rows, columns=self.columns)

    def to_text(self) -> str:
        """Return the title and an aligned plain-text table (numbers right-aligned)."""
        cells = [self.columns] + [[_cell(value) for value in row] for row in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        right = [
            all(isinstance(row[i], int | float) or row[i] is None for row in self.rows)
            for i in range(len(self.columns))
        ]

        def line(row: list[str]) -> str:
            return "  ".join(
                text.rjust(w) if r else text.ljust(w)
                for text, w, r in zip(row, widths, right, strict=True)
            ).rstrip()

        rule = "  ".join("-" * width for width in widths)
        return "\n".join([self.title, "", line(cells[0]), rule, *map(line, cells[1:])])

    def to_markdown(self) -> str:
        """Return the title and a Markdown table (for the report)."""
        body = ["| " + " | ".join(map(_cell, row)) + " |" for row in self.rows]
        header = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        return "\n".join([f"**{self.title}**", "", *header, *body])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# -- frame <-> documents ---------------------------------------------------------------------


def _kind(dtype: Any) -> str:
    """How values of a pandas dtype are stored: bool, int, float, datetime or string."""
    if isinstance(dtype, pd.CategoricalDtype):
        return _kind(dtype.categories.dtype)
    types = pd.api.types
    for kind, test in (("bool", types.is_bool_dtype), ("int", types.is_integer_dtype),
                       ("float", types.is_float_dtype), ("datetime", types.is_datetime64_any_dtype)):  # fmt: skip
        if test(dtype):
            return kind
    return "string"


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _frame_schema(frame: pd.DataFrame, config: DatasetConfig) -> list[dict[str, Any]]:
    """Each column's name, dtype, stored kind, role in the config and categories."""
    roles = {config.target.name: "target"}
    if config.date_column is not None:
        roles[config.date_column] = "date"
    for role, names in (("categorical", config.categorical), ("numeric", config.numeric_features),
                        ("id", config.id_columns), ("leakage", config.leakage)):  # fmt: skip
        for name in names:
            roles.setdefault(name, role)
    return [
        {
            "name": str(name),
            "dtype": str(dtype),
            "kind": _kind(dtype),
            "role": roles.get(str(name), "other"),
            "categories": [_python(v) for v in dtype.categories]
            if isinstance(dtype, pd.CategoricalDtype)
            else [],
        }
        for name, dtype in frame.dtypes.items()
    ]


def _column_values(series: pd.Series, kind: str) -> list[Any]:
    """A column as Python values of its kind, ``None`` when missing; dates naive UTC, in ms."""
    missing = series.isna().to_numpy()
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype)
    if kind == "datetime":
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return (
            series.to_numpy(dtype="datetime64[ns]").astype("datetime64[ms]").astype(object).tolist()
        )
    if kind in ("int", "bool", "float") and not missing.any():
        return series.to_numpy().tolist()  # tolist turns numpy scalars into Python ones
    convert = {"float": float, "int": int, "bool": bool}.get(kind)
    if convert is None:
        convert = lambda v: v if isinstance(v, str) else str(v)  # noqa: E731
    values = series.astype(object).tolist()
    return [None if m else convert(v) for v, m in zip(values, missing, strict=True)]


def record_ids(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's hash and its occurrence among identical rows: what its record id is made of.

    pandas' own hash of the row's values (``hash_pandas_object``) and, for the second and
    later copies of identical rows, their number: the same data gives the same ids. Two
    numbers a row (16 bytes), the only per-row state an import keeps.

    Args:
        frame: The rows to import.

    Returns:
        The hashes (``uint64``) and the occurrences (``int64``, 0 for a first copy).
    """
    hashes = pd.util.hash_pandas_object(frame, index=False)
    occurrences = hashes.groupby(hashes, sort=False).cumcount().to_numpy()
    return hashes.to_numpy(), occurrences


def _frame_documents(frame: pd.DataFrame, dataset: str, columns: list[dict[str, Any]],
                     date_column: str | None, target_column: str, *,
                     ids: tuple[np.ndarray, np.ndarray] | None = None,
                     start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One dataset-record document per row of ``frame[start:stop]`` (``row_number`` = position).

    Each record's id is ``<dataset>:<hash>``, numbered among identical rows
    (:func:`record_ids`, computed on the whole frame: pass ``ids`` when converting it a
    slice at a time). The rows' dates and targets must have passed :func:`_check_rows`.
    """
    stop = len(frame) if stop is None else min(stop, len(frame))
    hashes, occurrences = ids if ids is not None else record_ids(frame)
    part = frame.iloc[start:stop]
    values = {spec["name"]: _column_values(part[spec["name"]], spec["kind"]) for spec in columns}
    dates = values.pop(date_column) if date_column is not None else [None] * len(part)
    targets = values.pop(target_column)
    keys = [encode_key(name) for name in values]
    documents = []
    rows = zip(hashes[start:stop].tolist(), occurrences[start:stop].tolist(), dates, targets,
               *values.values(), strict=True)  # fmt: skip
    for row_number, (digest, occurrence, date, target, *row) in enumerate(rows, start=start):
        suffix = f"-{occurrence}" if occurrence else ""
        document = {"_id": f"{dataset}:{digest:016x}{suffix}", "dataset": dataset,
                    "row_number": row_number}  # fmt: skip
        if date_column is not None:  # like mongoengine, a dataset without dates has no field
            document["date"] = date
        document["target"] = int(target)
        document["values"] = dict(zip(keys, row, strict=True))
        documents.append(document)
    return documents


def _check_rows(frame: pd.DataFrame, columns: list[dict[str, Any]], date_column: str | None,
                target_column: str, batch_size: int) -> None:  # fmt: skip
    """Check every row's date and target as they will be stored, a slice at a time.

    Raises:
        InvalidRecord: Naming the column, how many rows break the rule and the first five.
    """
    kinds = {spec["name"]: spec["kind"] for spec in columns}
    bad_dates: list[int] = []  # the first five bad rows, then their count
    bad_targets: list[int] = []
    dates_count = targets_count = 0
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start : start + batch_size]
        if date_column is not None:
            dates = _column_values(part[date_column], kinds[date_column])
            found = [start + i for i, value in enumerate(dates) if value is None]
            bad_dates, dates_count = (bad_dates + found)[:5], dates_count + len(found)
        targets = _column_values(part[target_column], kinds[target_column])
        found = [start + i for i, value in enumerate(targets) if value not in (0, 1)]
        bad_targets, targets_count = (bad_targets + found)[:5], targets_count + len(found)
    if dates_count:
        raise InvalidRecord(
            f"date: column '{date_column}' is missing or unparseable in {dates_count} "
            f"row(s), e.g. rows {bad_dates} (0-based, after cleaning); fix or drop them"
        )
    if targets_count:
        raise InvalidRecord(
            f"target: column '{target_column}' must be 0 or 1, not in {targets_count} "
            f"row(s), e.g. rows {bad_targets}"
        )


# -- import ----------------------------------------------------------------------------------


def _load(config: DatasetConfig, csv: str | os.PathLike | None) -> tuple[pd.DataFrame, CleaningReport, str]:  # fmt: skip
    """The cleaned rows to import, the cleaning report and where they came from."""
    if csv is None:
        raw = load_raw(config)
        source = str(config.csv_path()) if config.source.csv else config.source.loader or ""
    else:
        raw, source = read_csv(Path(csv)), str(csv)
        check_columns(raw, config, source)
    frame, cleaning = prepare(raw, config)
    return frame, cleaning, source


def import_dataset(
    config: DatasetConfig,
    *,
    csv: str | os.PathLike | None = None,
    frame: pd.DataFrame | None = None,
    batch_size: int = 5000,
    replace: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a dataset into the store in batches; importing the same rows again adds nothing.

    Everything is loaded and checked before the first write, so a bad file writes nothing;
    then each batch of records is built, inserted and dropped in turn: besides the frame,
    the import keeps 16 bytes a row and one batch of records (``batch_size``). The rows come
    from the config's source, a ``csv`` with its columns, or a ``frame`` already prepared.
    ``replace`` deletes the stored records first (needed when the columns changed). The
    config's ``checks`` are kept with the schema: records added later through the API are
    held to them. ``progress(done, total)`` is called after each batch.

    Raises:
        DatasetError: If the data cannot be read or lacks a column of the config.
        InvalidRecord: If rows break the record's rules (names the column and rows).
        StoreError: If the dataset is stored with other columns and ``replace`` is false.
        StoreUnavailable: If MongoDB is unreachable.
    """
    if batch_size < 1:
        raise StoreError(f"batch size must be at least 1, got {batch_size}")
    start, cleaning, dataset = time.perf_counter(), None, config.name
    if frame is None:
        frame, cleaning, source = _load(config, csv)
    elif csv is not None:
        raise StoreError("give either a CSV file or a frame to import, not both")
    else:
        check_columns(frame, config, "the frame", prepared=True)
        source = "a data frame"
    if config.target.name not in frame.columns:
        raise DatasetError(
            f"the data to import has no target column '{config.target.name}': "
            "pass it through tabular.datasets.prepare first"
        )
    columns = _frame_schema(frame, config)
    date_column, target_column = config.date_column, config.target.name
    _check_rows(frame, columns, date_column, target_column, batch_size)
    # Only each row's hash and occurrence are kept for the whole frame (16 bytes a row):
    # documents are built, inserted and dropped one batch at a time, so the import's memory
    # does not grow with the rows (at 1,000,000 rows all documents at once took gigabytes).
    ids = record_ids(frame)
    for first in range(0, len(frame), batch_size):
        # One document a batch through DatasetRecord's rules (all 300,000 would take 50 s),
        # before the first write: the dates and targets were checked as a whole above.
        document = _frame_documents(frame, dataset, columns, date_column, target_column,
                                    ids=ids, start=first, stop=first + 1)[0]  # fmt: skip
        fields = {key: value for key, value in document.items() if key != "_id"}
        build(DatasetRecord, {"id": document["_id"], **fields}, "dataset record")
    collection = DatasetRecord._get_collection()
    with _reachable(f"import dataset '{dataset}'"):
        existing = DatasetSchema.objects(dataset=dataset).first()
        if existing is not None and not replace:
            _check_same_columns(existing, columns, dataset)
        if replace:
            collection.delete_many({"dataset": dataset})
        next_row = 0 if existing is None or replace else existing.next_row_number
        schema = build(DatasetSchema, {
            "dataset": dataset, "columns": [ColumnSpec(**spec) for spec in columns],
            "date_column": date_column, "target_column": target_column,
            "target_source": config.target.column, "source": source, "rows": len(frame),
            "next_row_number": max(len(frame), next_row),
            "checks": config.checks.model_dump(mode="json"),
        }, "dataset schema")  # fmt: skip
        schema.save()  # first: records are never stored without the means to restore them
        inserted = already = 0
        for first in range(0, len(frame), batch_size):
            batch = _frame_documents(frame, dataset, columns, date_column, target_column,
                                     ids=ids, start=first, stop=first + batch_size)  # fmt: skip
            new, old = _insert_batch(collection, batch)
            inserted, already = inserted + new, already + old
            if progress is not None:
                progress(first + len(batch), len(frame))
        schema.imported_at = utcnow()
        schema.save()
    return ImportReport(dataset, source, len(frame), inserted, already, cleaning,
                        time.perf_counter() - start)  # fmt: skip


def _check_same_columns(existing: DatasetSchema, columns: list[dict[str, Any]], dataset: str):
    stored = [(c.name, c.dtype) for c in existing.columns]
    new = [(c["name"], c["dtype"]) for c in columns]
    if stored == new:
        return
    removed = [f"{n} ({t})" for n, t in stored if (n, t) not in new]
    added = [f"{n} ({t})" for n, t in new if (n, t) not in stored]
    parts = [f"stored only: {', '.join(removed)}" if removed else "",
             f"new only: {', '.join(added)}" if added else "",
             "same columns in another order" if not removed and not added else ""]  # fmt: skip
    raise StoreError(
        f"dataset '{dataset}' is already stored with other columns "
        f"({'; '.join(p for p in parts if p)}); re-import with --replace to overwrite it"
    )


def _insert_batch(collection, documents: list[dict[str, Any]]) -> tuple[int, int]:
    """Insert records; return how many were new and how many were already stored."""
    try:
        return len(collection.insert_many(documents, ordered=False).inserted_ids), 0
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        others = [error for error in errors if error.get("code") != 11000]
        if others:
            raise StoreError(
                f"MongoDB refused {len(others)} record(s): {others[0].get('errmsg')}"
            ) from exc
        return int(exc.details.get("nInserted", len(documents) - len(errors))), len(errors)


# -- read back and back up -------------------------------------------------------------------


def _restore_column(values: list[Any], spec: Any) -> pd.Series:
    """A column of its original dtype from stored Python values (``spec``: a ColumnSpec or dict).

    A whole-number or boolean column that gained missing values (e.g. via the API) comes
    back as the nullable ``Int64``/``boolean`` dtype.
    """
    get = spec.get if isinstance(spec, dict) else lambda key, default=None: getattr(spec, key)
    dtype_name, kind = get("dtype"), get("kind")
    target = pd.api.types.pandas_dtype(dtype_name) if dtype_name != "category" else None
    if dtype_name == "category" or isinstance(target, pd.CategoricalDtype):
        return pd.Series(values, dtype=object).astype(pd.CategoricalDtype(get("categories", [])))
    if kind == "datetime":
        series = pd.Series(pd.to_datetime(pd.Series(values, dtype=object)), dtype="datetime64[ns]")
        if isinstance(target, pd.DatetimeTZDtype):
            return series.dt.tz_localize("UTC").dt.tz_convert(target.tz).astype(target)
        return series.astype(target)
    if kind == "float":
        return pd.Series(values, dtype="float64").astype(target)
    if kind in ("int", "bool"):
        if isinstance(target, np.dtype) and any(value is None for value in values):
            return pd.Series(values, dtype="Int64" if kind == "int" else "boolean")
        return pd.Series(values, dtype=target)
    series = pd.Series(values, dtype=object)
    if target == np.dtype(object):
        return series.where(series.notna(), np.nan)  # pandas' missing text: NaN, as read_csv
    return series.astype(target)


def records_frame(
    dataset: str, *, progress: Progress | None = None, batch_size: int = 5000
) -> pd.DataFrame:
    """Read a stored dataset back into the frame it was imported from (rows, dtypes).

    Raises ``RecordNotFound`` for a dataset never imported, ``StoreUnavailable`` when
    MongoDB is unreachable.
    """
    schema = get_schema(dataset)
    collection = DatasetRecord._get_collection()
    special = (schema.date_column, schema.target_column)
    names = [c.name for c in schema.columns if c.name not in special]
    keys = [encode_key(name) for name in names]
    # itemgetter pulls every value of a record in one C call; a record missing a key (only
    # hand-made documents) takes the slower path.
    pick = operator.itemgetter(*keys) if len(keys) > 1 else (lambda values: (values[keys[0]],))
    dates, targets, rows = [], [], []
    with _reachable(f"read dataset '{dataset}'"):
        # The count is only for the progress (on the embedded store it reads every record).
        total = collection.count_documents({"dataset": dataset}) if progress else None
        cursor = collection.find({"dataset": dataset}).sort(
            [("row_number", ASCENDING), ("_id", ASCENDING)]
        )
        for done, document in enumerate(cursor.batch_size(batch_size), start=1):
            dates.append(document.get("date"))
            targets.append(document["target"])
            values = document.get("values") or {}
            try:
                rows.append(pick(values))
            except KeyError:
                rows.append(tuple(values.get(key) for key in keys))
            if progress is not None and (done % batch_size == 0 or done == total):
                progress(done, total)
    columns = dict(zip(names, (list(column) for column in zip(*rows, strict=True)), strict=True))
    data = {}
    for spec in schema.columns:
        stored = {schema.date_column: dates, schema.target_column: targets}.get(spec.name)
        values = stored if stored is not None else columns.get(spec.name, [None] * len(rows))
        data[spec.name] = _restore_column(values, spec)
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


def _schema_path(path: str | os.PathLike) -> Path:
    """The schema file that goes with a backup CSV (``x.csv`` -> ``x.schema.json``)."""
    return Path(path).with_name(f"{Path(path).stem}.schema.json")


def write_backup(frame: pd.DataFrame, path: str | os.PathLike) -> BackupReport:
    """Write a frame to CSV plus a schema file that lets :func:`read_backup` restore it."""
    start, path = time.perf_counter(), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = []
    for name, dtype in frame.dtypes.items():
        entry = {"name": str(name), "dtype": str(dtype), "kind": _kind(dtype)}
        if isinstance(dtype, pd.CategoricalDtype):
            entry["categories"] = [_python(value) for value in dtype.categories]
        columns.append(entry)
    temporary = path.with_name(path.name + ".tmp")
    frame.to_csv(temporary, index=False)
    os.replace(temporary, path)
    schema = {"format": BACKUP_FORMAT, "rows": len(frame), "columns": columns}
    _schema_path(path).write_text(
        json.dumps(schema, indent=2, default=str) + "\n", encoding="utf-8"
    )
    return BackupReport(
        path, _schema_path(path), len(frame), frame.shape[1], time.perf_counter() - start
    )


def read_backup(path: str | os.PathLike) -> pd.DataFrame:
    """Read a backup CSV (its schema file next to it) with pandas into the frame backed up.

    Raises:
        DatasetError: If the CSV or its schema file is missing, or they disagree.
    """
    path, schema_path = Path(path), _schema_path(path)
    if not path.is_file():
        raise DatasetError(f"backup file {path} does not exist")
    if not schema_path.is_file():
        raise DatasetError(
            f"backup {path} has no schema file {schema_path}: without it the column types "
            "cannot be restored (read it with pandas.read_csv to get untyped columns)"
        )
    try:
        columns = json.loads(schema_path.read_text(encoding="utf-8"))["columns"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"schema file {schema_path} is not a backup schema: {exc}") from exc
    read_as = {"int": "Int64", "float": "float64", "bool": "boolean"}
    dtypes = {c["name"]: read_as.get(c["kind"], object) for c in columns}
    try:
        frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""],
                            float_precision="round_trip")  # fmt: skip
    except (ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"backup {path} does not match {schema_path}: {exc}") from exc
    expected = [c["name"] for c in columns]
    if list(frame.columns) != expected:
        raise DatasetError(
            f"backup {path} has columns {list(frame.columns)[:10]}..., but {schema_path} "
            f"lists {expected[:10]}..."
        )
    data = {}
    for spec in columns:
        column = frame[spec["name"]]
        if spec["kind"] == "datetime":
            # Zone-aware columns are written with their offsets (which change with daylight
            # saving): parsed as UTC, _restore_column converts back to the zone.
            aware = "," in spec["dtype"]
            column = pd.to_datetime(column, format="ISO8601", utc=aware)
            column = column.dt.tz_localize(None) if aware else column
        values = column.astype(object).where(column.notna(), None).tolist()
        data[spec["name"]] = _restore_column(values, spec)
    return pd.DataFrame(data, index=pd.RangeIndex(len(frame)))


def backup_dataset(
    dataset: str, path: str | os.PathLike, *, progress: Progress | None = None
) -> BackupReport:
    """Back up a stored dataset to CSV and its schema file (raises like :func:`records_frame`)."""
    start = time.perf_counter()
    report = write_backup(records_frame(dataset, progress=progress), path)
    return dataclasses.replace(report, seconds=time.perf_counter() - start)


def backup_collection(name: str, path: str | os.PathLike) -> BackupReport:
    """Back up ``prediction_logs`` (one column per feature) or ``feedback`` to CSV.

    Raises ``StoreError`` for another collection, ``StoreUnavailable`` when MongoDB is
    unreachable.
    """
    start = time.perf_counter()
    if name == PredictionLog._get_collection_name():
        frame = prediction_logs_frame()
    elif name == Feedback._get_collection_name():
        with _reachable("read feedback"):
            documents = list(Feedback._get_collection().find({}).sort("_id", ASCENDING))
        when = pd.to_datetime([d["received_at"] for d in documents])
        frame = pd.DataFrame({
            "request_id": pd.Series([d["_id"] for d in documents], dtype=object),
            "actual": pd.Series([d["actual"] for d in documents], dtype="int64"),
            "received_at": pd.Series(when, dtype="datetime64[ns]"),
        })  # fmt: skip
    else:
        raise StoreError(
            f"cannot back up collection '{name}': choose one of {', '.join(COLLECTIONS)} "
            "or a dataset (--dataset)"
        )
    return dataclasses.replace(write_backup(frame, path), seconds=time.perf_counter() - start)


# -- the query that proves the connection ------------------------------------------------


def summarize(
    dataset: str,
    *,
    by: str | None = None,
    month: str | None = None,
    measure: str | None = None,
    limit: int | None = None,
) -> QueryResult:
    """Count records per group, with the share of positives and a mean, inside MongoDB.

    ``by``: the column to group by (default: the first categorical one); ``month``: only
    ``YYYY-MM``; ``measure``: a numeric column to average (default: the target's source when
    numeric); ``limit``: the largest groups only. One row per group, largest first.

    Raises:
        RecordNotFound: If the dataset was never imported.
        InvalidRecord: If a column is unknown or not numeric, or the month is malformed.
        StoreUnavailable: If MongoDB is unreachable.
    """
    schema = get_schema(dataset)
    special = (schema.date_column, schema.target_column)
    values = {c.name: c for c in schema.columns if c.name not in special}
    if by is None:
        by = next((c.name for c in values.values() if c.role == "categorical"), next(iter(values)))
    if by not in values:
        raise InvalidRecord(
            f"by: '{by}' is not a column of dataset '{dataset}' (columns: {', '.join(values)})"
        )
    numeric = [n for n, c in values.items() if c.kind in ("int", "float")]
    if measure is None and schema.target_source in numeric:
        measure = schema.target_source
    if measure is not None and measure not in numeric:
        raise InvalidRecord(
            f"measure: '{measure}' is not a numeric column of dataset '{dataset}' "
            f"(numeric columns: {', '.join(numeric)})"
        )
    match: dict[str, Any] = {"dataset": dataset}
    if month is not None:
        if schema.date_column is None:
            raise InvalidRecord(f"month: dataset '{dataset}' has no date column to filter on")
        try:
            first = dt.datetime.strptime(month, "%Y-%m")
        except ValueError:
            raise InvalidRecord(f"month: expected YYYY-MM (e.g. 2013-07), got '{month}'") from None
        following = dt.datetime(first.year + first.month // 12, first.month % 12 + 1, 1)
        match["date"] = {"$gte": first, "$lt": following}
    group: dict[str, Any] = {"_id": f"$values.{encode_key(by)}", "rows": {"$sum": 1},
                             "positive": {"$avg": "$target"}}  # fmt: skip
    if measure is not None:
        group["mean"] = {"$avg": f"$values.{encode_key(measure)}"}
    pipeline = [{"$match": match}, {"$group": group}, {"$sort": {"rows": -1, "_id": 1}}]
    if limit is not None:
        pipeline.append({"$limit": int(limit)})
    with _reachable(f"query dataset '{dataset}'"):
        groups = list(DatasetRecord._get_collection().aggregate(pipeline))
    rows = []
    for found in groups:
        share = found["positive"]
        row = ["(missing)" if found["_id"] is None else found["_id"], int(found["rows"]),
               None if share is None else round(float(share), 4)]  # fmt: skip
        if measure:
            row.append(None if found.get("mean") is None else round(float(found["mean"]), 2))
        rows.append(row)
    columns = [by, "rows", f"share {schema.target_column}=1"] + (
        [f"mean {measure}"] if measure else []
    )
    period = f" in {month}" if month else ""
    return QueryResult(f"Dataset '{dataset}': rows per {by}{period}", columns, rows)
