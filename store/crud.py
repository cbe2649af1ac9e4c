"""Create, read, update and delete dataset records, prediction logs, feedback and decisions.

Plain functions over the connected store (:func:`store.connect` first); inputs are plain
values (what an HTTP API receives), results the models derived from the documents
(:func:`store.documents.out_model`). A record is held to the rules its dataset's CSV was
held to (:func:`check_values`); errors name the field. Writes are atomic: feedback is one
upsert that keeps the first outcome, updates are one ``$set``. Errors: ``InvalidRecord``,
``RecordNotFound``, ``Conflict`` and ``StoreUnavailable`` (:mod:`tabular.errors`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from store.connection import UNREACHABLE, error_reason
from store.documents import (
    DOCUMENTS,
    DatasetRecord,
    DatasetSchema,
    Feedback,
    PredictionLog,
    PromotionDecision,
    build,
    decode_key,
    encode_key,
    out_model,
)
from store.journal import Journal, parse_timestamp, to_prediction_document, utcnow
from store.settings import StoreSettings
from tabular.config import ChecksConfig
from tabular.errors import Conflict, InvalidRecord, RecordNotFound, StoreError, StoreUnavailable

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
MAX_PAGE_SIZE = 1000
#: The TTL index that keeps prediction logs ``monitoring.log_retention_days`` days.
RETENTION_INDEX = "timestamp_retention"


class Page(BaseModel, Generic[T]):
    """One page of results: its items, the total matching, the page number and size."""

    items: list[T]
    total: int
    page: int
    page_size: int


class ColumnOut(BaseModel):
    """One column of a stored dataset: name, pandas dtype, Python kind and config role."""

    name: str
    dtype: str
    kind: str
    role: str


class DatasetInfo(BaseModel):
    """A stored dataset: its columns and size (see :class:`~store.documents.DatasetSchema`)."""

    dataset: str
    records: int
    columns: list[ColumnOut]
    date_column: str | None = None
    target_column: str
    source: str | None = None
    imported_at: dt.datetime | None = None


# One model per stored concept, derived from its document (fields, types, descriptions).
DatasetRecordOut = out_model(DatasetRecord, "DatasetRecordOut")
PredictionLogOut = out_model(PredictionLog, "PredictionLogOut", journaled=(bool, False))
FeedbackOut = out_model(Feedback, "FeedbackOut")
DecisionOut = out_model(PromotionDecision, "DecisionOut")


@contextmanager
def _reachable(action: str) -> Iterator[None]:
    try:
        yield
    except UNREACHABLE as exc:
        reason = error_reason(exc)
        raise StoreUnavailable(f"cannot {action}: MongoDB is unreachable ({reason})") from exc


def _paging(page: int, page_size: int) -> tuple[int, int]:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidRecord(f"page: expected a whole number from 1, got {page!r}")
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidRecord(f"page_size: expected a whole number, got {page_size!r}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidRecord(f"page_size: expected 1 to {MAX_PAGE_SIZE}, got {page_size}")
    return (page - 1) * page_size, page_size


def _time_filter(since: Any, until: Any, field: str) -> dict[str, Any]:
    bounds = {}
    if since is not None:
        bounds["$gte"] = parse_timestamp(since, "since")
    if until is not None:
        bounds["$lt"] = parse_timestamp(until, "until")
    return {field: bounds} if bounds else {}


def _set(collection, key: str, changes: Mapping[str, Any]) -> dict[str, Any] | None:
    """Apply ``$set`` to one document and return it as it is now (``None``: no such document)."""
    if not changes:
        return collection.find_one({"_id": key})
    return collection.find_one_and_update(
        {"_id": key}, {"$set": dict(changes)}, return_document=ReturnDocument.AFTER
    )


def _delete(document_class, key: str, what: str) -> None:
    with _reachable(f"delete {what}"):
        deleted = document_class._get_collection().delete_one({"_id": key}).deleted_count
    if not deleted:
        raise RecordNotFound(f"no {what}")


def collection_counts() -> dict[str, int]:
    """Count the documents of each collection (raises StoreUnavailable)."""
    with _reachable("count documents"):
        return {
            d._get_collection_name(): d._get_collection().estimated_document_count()
            for d in DOCUMENTS
        }


# -- datasets ------------------------------------------------------------------------------


def get_schema(dataset: str) -> DatasetSchema:
    """Return the stored schema of a dataset.

    Raises:
        RecordNotFound: If the dataset was never imported.
        StoreUnavailable: If MongoDB is unreachable.
    """
    with _reachable(f"read dataset '{dataset}'"):
        schema = DatasetSchema.objects(dataset=dataset).first()
    if schema is None:
        raise RecordNotFound(
            f"dataset '{dataset}' is not in the store; import it first "
            "(mlops db import --config <its config>)"
        )
    return schema


def dataset_info(dataset: str) -> DatasetInfo:
    """Describe a stored dataset: its columns and record count (raises like get_schema)."""
    schema = get_schema(dataset)
    with _reachable(f"count records of '{dataset}'"):
        records = DatasetRecord.objects(dataset=dataset).count()
    columns = [
        ColumnOut(name=c.name, dtype=c.dtype, kind=c.kind, role=c.role) for c in schema.columns
    ]
    return DatasetInfo(dataset=schema.dataset, records=records, columns=columns,
                       date_column=schema.date_column, target_column=schema.target_column,
                       source=schema.source, imported_at=schema.imported_at)  # fmt: skip


def list_datasets() -> list[DatasetInfo]:
    """Describe every stored dataset, by name (raises StoreUnavailable)."""
    with _reachable("list datasets"):
        names = sorted(DatasetSchema.objects.scalar("dataset"))
    return [dataset_info(name) for name in names]


def delete_dataset(dataset: str) -> int:
    """Delete a dataset's records and schema; return the records deleted."""
    with _reachable(f"delete dataset '{dataset}'"):
        deleted = DatasetRecord.objects(dataset=dataset).delete()
        DatasetSchema.objects(dataset=dataset).delete()
    return deleted


# -- the rules a record is held to -----------------------------------------------------------


def _typed(kind: str, value: Any, field: str) -> Any:
    """One value converted to its column's kind (``None`` stays missing), or the error."""
    if value is None:
        return None
    if kind == "datetime":
        return parse_timestamp(value, field)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "int" and (isinstance(value, int) if number else False):
        return value
    if kind == "int" and number and float(value).is_integer():
        return int(value)
    if kind == "float" and number:
        return None if value != value else float(value)  # NaN means missing
    if (kind == "bool" and isinstance(value, bool)) or (
        kind == "string" and isinstance(value, str)
    ):
        return value
    expected = {"int": "a whole number", "float": "a number", "bool": "true or false"}
    raise InvalidRecord(f"{field}: expected {expected.get(kind, 'text')}, got {value!r}")


def check_values(
    schema: DatasetSchema, values: Mapping[str, Any], *, partial: bool
) -> dict[str, Any]:
    """Check a row's values by the rules its dataset's CSV was held to, and type them.

    Each column's kind, a categorical column's levels, the data gate's ``checks.ranges``
    and ``checks.date_range`` (kept with the schema at the import), a 0/1 target, a date and
    a target in every row. ``partial``: an update (only the given columns); else a new
    record (the others stored as missing).

    Raises:
        InvalidRecord: Naming the first offending column (``values.<column>``) and the rule.
    """
    if not isinstance(values, Mapping):
        raise InvalidRecord(f"values: expected an object of column values, got {values!r}")
    specs = {column.name: column for column in schema.columns}
    for name in values:
        if name not in specs:
            raise InvalidRecord(f"values.{name}: not a column of dataset '{schema.dataset}' "
                                f"(columns: {', '.join(specs)})")  # fmt: skip
    checks = ChecksConfig.model_validate(schema.checks or {})
    required = {schema.date_column: "date", schema.target_column: "target"}
    names = values if partial else specs
    typed = {n: _typed(specs[n].kind, values.get(n), f"values.{n}") for n in names}
    for name, value in typed.items():
        field = f"values.{name}"
        if value is None and name in required:
            raise InvalidRecord(f"{field}: required (the dataset's {required[name]} column)")
        low, high = checks.ranges.get(name, (None, None))
        if value is not None and (
            (low is not None and value < low) or (high is not None and value > high)
        ):
            raise InvalidRecord(
                f"{field}: {value!r} is outside [{low}, {high}] (the dataset's checks.ranges)"
            )
        levels = specs[name].categories
        if value is not None and levels and value not in levels:
            raise InvalidRecord(f"{field}: {value!r} is not one of the column's levels "
                                f"({', '.join(map(str, levels[:20]))})")  # fmt: skip
        if name == schema.target_column and value not in (0, 1):
            raise InvalidRecord(f"{field}: the target must be 0 or 1, got {value!r}")
        if name == schema.date_column and checks.date_range:
            first, last = checks.date_range
            if not first <= value.date() <= last:
                raise InvalidRecord(
                    f"{field}: {value} is outside {first} to {last} (the dataset's checks.date_range)"
                )
    return typed


def _record_fields(schema: DatasetSchema, typed: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"values": {}}
    for name, value in typed.items():
        if name == schema.date_column:
            fields["date"] = value
        elif name == schema.target_column:
            fields["target"] = value
        else:
            fields["values"][encode_key(name)] = value
    return fields


def _record_out(document: Mapping[str, Any], schema: DatasetSchema) -> DatasetRecordOut:
    stored = {decode_key(key): value for key, value in (document.get("values") or {}).items()}
    stored.update(
        {schema.date_column: document.get("date"), schema.target_column: document["target"]}
    )
    row = {column.name: stored.get(column.name) for column in schema.columns}
    return DatasetRecordOut(id=document["_id"], dataset=document["dataset"],
                            row_number=document["row_number"], date=document.get("date"),
                            target=document["target"], values=row)  # fmt: skip


# -- dataset records -------------------------------------------------------------------------


def create_record(dataset: str, values: Mapping[str, Any]) -> DatasetRecordOut:
    """Add one row (values by column name) to a stored dataset; return it with its id and row number.

    Raises:
        RecordNotFound: If the dataset was never imported.
        InvalidRecord: If a value breaks the dataset's rules (names it).
        StoreUnavailable: If MongoDB is unreachable.
    """
    schema = get_schema(dataset)
    fields = _record_fields(schema, check_values(schema, values, partial=False))
    # Validated before a row number is taken, so a refused record leaves no gap.
    document = build(DatasetRecord, {"id": f"{dataset}:{uuid.uuid4().hex[:24]}",
                                     "dataset": dataset, "row_number": 0, **fields}, "dataset record")  # fmt: skip
    with _reachable(f"add a record to '{dataset}'"):
        # modify() returns the schema as it was before the increment: this record's number.
        counter = DatasetSchema.objects(dataset=dataset).modify(inc__next_row_number=1)
        if counter is None:
            raise RecordNotFound(f"dataset '{dataset}' was deleted meanwhile")
        document.row_number = int(counter.next_row_number)
        document.save(force_insert=True)
    return _record_out(document.to_mongo(), schema)


def get_record(record_id: str) -> DatasetRecordOut:
    """Read one record by id (raises RecordNotFound, StoreUnavailable)."""
    with _reachable(f"read record '{record_id}'"):
        document = DatasetRecord._get_collection().find_one({"_id": record_id})
    if document is None:
        raise RecordNotFound(f"no dataset record has id '{record_id}'")
    return _record_out(document, get_schema(document["dataset"]))


def find_records(
    dataset: str,
    *,
    where: Mapping[str, Any] | None = None,
    date_from: Any = None,
    date_to: Any = None,
    page: int = 1,
    page_size: int = 50,
) -> Page[DatasetRecordOut]:
    """List a dataset's records in row order, one page (1 to 1000 records) at a time.

    ``where`` maps columns to the value they must equal (``None`` matches a missing value);
    ``date_from`` (inclusive) and ``date_to`` (exclusive) bound the date column.

    Raises:
        RecordNotFound: If the dataset was never imported.
        InvalidRecord: If a filter names an unknown column or has the wrong type.
        StoreUnavailable: If MongoDB is unreachable.
    """
    skip, limit = _paging(page, page_size)
    schema = get_schema(dataset)
    if where is not None and not isinstance(where, Mapping):
        raise InvalidRecord(f"where: expected an object of column values, got {where!r}")
    specs = {column.name: column for column in schema.columns}
    query: dict[str, Any] = {"dataset": dataset}
    for name, value in (where or {}).items():
        if name not in specs:
            raise InvalidRecord(
                f"values.{name}: not a column of dataset '{dataset}' (columns: {', '.join(specs)})"
            )
        fields = _record_fields(schema, {name: _typed(specs[name].kind, value, f"values.{name}")})
        query.update({f"values.{k}": v for k, v in fields.pop("values").items()} | fields)
    bounds = _time_filter(date_from, date_to, "date")
    if bounds and schema.date_column is None:
        raise InvalidRecord(f"date_from, date_to: dataset '{dataset}' has no date column")
    query = {"$and": [query, bounds]} if bounds and "date" in query else {**query, **bounds}
    records = DatasetRecord._get_collection()
    with _reachable(f"list records of '{dataset}'"):
        total = records.count_documents(query)
        found = records.find(query).sort([("row_number", 1), ("_id", 1)]).skip(skip).limit(limit)
        items = [_record_out(document, schema) for document in found]
    return Page[DatasetRecordOut](items=items, total=total, page=page, page_size=page_size)


def update_record(record_id: str, values: Mapping[str, Any]) -> DatasetRecordOut:
    """Change some values of a record in one ``$set`` (a concurrent change of others stays).

    ``None`` makes a value missing (not allowed for the date and target columns).

    Raises:
        RecordNotFound: If no record has this id.
        InvalidRecord: If a column is unknown or a value breaks the dataset's rules (names it).
        StoreUnavailable: If MongoDB is unreachable.
    """
    collection = DatasetRecord._get_collection()
    with _reachable(f"read record '{record_id}'"):
        found = collection.find_one({"_id": record_id}, {"dataset": 1})
    if found is None:
        raise RecordNotFound(f"no dataset record has id '{record_id}'")
    schema = get_schema(found["dataset"])
    fields = _record_fields(schema, check_values(schema, values, partial=True))
    changes = {f"values.{key}": value for key, value in fields.pop("values").items()} | fields
    with _reachable(f"update record '{record_id}'"):
        document = _set(collection, record_id, changes)
    if document is None:
        raise RecordNotFound(f"no dataset record has id '{record_id}' (deleted meanwhile)")
    return _record_out(document, schema)


def delete_record(record_id: str) -> None:
    """Delete one record (raises RecordNotFound, StoreUnavailable)."""
    _delete(DatasetRecord, record_id, f"dataset record has id '{record_id}'")


# -- prediction logs -------------------------------------------------------------------------


def _log_out(document: Mapping[str, Any], journaled: bool = False) -> PredictionLogOut:
    fields = {key: value for key, value in document.items() if key != "_id"}
    return PredictionLogOut(request_id=document["_id"], journaled=journaled, **fields)


def create_prediction_log(
    record: Mapping[str, Any],
    *,
    journal_on_outage: bool = True,
    settings: StoreSettings | None = None,
) -> PredictionLogOut:
    """Store one prediction log now (the API's predictions go through its writer instead).

    When the store cannot be written, the log is journaled and returned with
    ``journaled=True``, unless ``journal_on_outage`` is false.

    Raises:
        InvalidRecord: If a field is missing, unknown or of the wrong type (names it).
        StoreError: If a log with this request id already exists.
        StoreUnavailable: If the store cannot be written and ``journal_on_outage`` is false.
    """
    document = to_prediction_document(record)
    try:
        with _reachable(f"store prediction log '{document['_id']}'"):
            PredictionLog._get_collection().insert_one(dict(document))
    except DuplicateKeyError:
        raise StoreError(
            f"a prediction log with request_id '{document['_id']}' already exists"
        ) from None
    except StoreUnavailable:
        if not journal_on_outage:
            raise
        Journal((settings or StoreSettings.from_env()).journal_path).append([document])
        return _log_out(document, journaled=True)
    return _log_out(document)


def get_prediction_log(request_id: str) -> PredictionLogOut:
    """Read one prediction log (raises RecordNotFound, StoreUnavailable)."""
    with _reachable(f"read prediction log '{request_id}'"):
        document = PredictionLog._get_collection().find_one({"_id": request_id})
    if document is None:
        raise RecordNotFound(f"no prediction log has request_id '{request_id}'")
    return _log_out(document)


def _log_query(model_name, model_version, dataset, since, until) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for field, value in (
        ("model_name", model_name),
        ("model_version", model_version),
        ("dataset", dataset),
    ):
        if value is not None and not isinstance(value, str):
            raise InvalidRecord(f"{field}: expected text, got {value!r}")
        if value is not None:
            query[field] = value
    return {**query, **_time_filter(since, until, "timestamp")}


def find_prediction_logs(
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    dataset: str | None = None,
    since: Any = None,
    until: Any = None,
    page: int = 1,
    page_size: int = 50,
) -> Page[PredictionLogOut]:
    """List prediction logs, newest first, one page (1 to 1000 logs) at a time.

    Filters: model name and version, dataset, ``since`` (inclusive) and ``until``
    (exclusive) times (datetimes or ISO text, UTC). Raises ``InvalidRecord`` for a filter of
    the wrong type, ``StoreUnavailable`` when MongoDB is unreachable.
    """
    skip, limit = _paging(page, page_size)
    query = _log_query(model_name, model_version, dataset, since, until)
    logs = PredictionLog._get_collection()
    with _reachable("list prediction logs"):
        total = logs.count_documents(query)
        found = logs.find(query).sort([("timestamp", -1), ("_id", 1)]).skip(skip).limit(limit)
        items = [_log_out(document) for document in found]
    return Page[PredictionLogOut](items=items, total=total, page=page, page_size=page_size)


def count_prediction_logs(
    *, model_name: str | None = None, model_version: str | None = None, dataset: str | None = None,
    since: Any = None, until: Any = None,
) -> int:  # fmt: skip
    """Count prediction logs matching the filters of :func:`find_prediction_logs`."""
    query = _log_query(model_name, model_version, dataset, since, until)
    with _reachable("count prediction logs"):
        return PredictionLog._get_collection().count_documents(query)


def update_prediction_log(request_id: str, changes: Mapping[str, Any]) -> PredictionLogOut:
    """Change fields of a prediction log (not its ``request_id``) in one ``$set``.

    Raises:
        RecordNotFound: If no log has this request id.
        InvalidRecord: If a field is unknown or of the wrong type (names it).
        StoreUnavailable: If MongoDB is unreachable.
    """
    if "request_id" in changes and changes["request_id"] != request_id:
        raise InvalidRecord("request_id: cannot be changed (it identifies the log)")
    current = get_prediction_log(request_id).model_dump(exclude={"journaled"})
    merged = to_prediction_document({**current, **changes})  # the whole log stays valid
    with _reachable(f"update prediction log '{request_id}'"):
        document = _set(PredictionLog._get_collection(), request_id,
                        {key: merged.get(key) for key in changes if key != "request_id"})  # fmt: skip
    if document is None:
        raise RecordNotFound(f"no prediction log has request_id '{request_id}' (deleted meanwhile)")
    return _log_out(document)


def delete_prediction_log(request_id: str) -> None:
    """Delete one prediction log (raises RecordNotFound, StoreUnavailable)."""
    _delete(PredictionLog, request_id, f"prediction log has request_id '{request_id}'")


# -- feedback --------------------------------------------------------------------------------


def record_feedback(request_id: str, actual: int, *, received_at: Any = None) -> FeedbackOut:
    """Record the true outcome (0/1) of a request, atomically: the first outcome wins.

    One upsert that sets the outcome only when it inserts: the same outcome posted again
    returns the stored one, a different one is refused, even when both arrive at once.

    Raises:
        InvalidRecord: If a field is missing or of the wrong type (names it).
        Conflict: If the request already has the other outcome.
        StoreUnavailable: If MongoDB is unreachable.
    """
    when = utcnow() if received_at is None else parse_timestamp(received_at, "received_at")
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)  # MongoDB keeps ms
    fields = {"request_id": request_id, "actual": actual, "received_at": when}
    actual = build(Feedback, fields, "feedback").to_mongo()["actual"]
    with _reachable(f"record feedback for '{request_id}'"):
        before = Feedback.objects(request_id=request_id).modify(
            upsert=True, new=False, set_on_insert__actual=actual, set_on_insert__received_at=when
        )
    if before is None:
        return FeedbackOut(request_id=request_id, actual=actual, received_at=when)
    if before.actual != actual:
        raise Conflict(
            f"request '{request_id}' already has outcome {before.actual}; {actual} contradicts it"
        )
    return FeedbackOut(request_id=request_id, actual=before.actual, received_at=before.received_at)


def get_feedback(request_id: str) -> FeedbackOut:
    """Read the feedback of a request (raises RecordNotFound, StoreUnavailable)."""
    with _reachable(f"read feedback for '{request_id}'"):
        document = Feedback._get_collection().find_one({"_id": request_id})
    if document is None:
        raise RecordNotFound(f"no feedback was recorded for request_id '{request_id}'")
    return FeedbackOut(request_id=document["_id"], actual=document["actual"],
                       received_at=document["received_at"])  # fmt: skip


def feedback_for(request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Return the feedback document of each of these request ids that has one (by primary key)."""
    found: dict[str, dict[str, Any]] = {}
    collection = Feedback._get_collection()
    with _reachable("read feedback"):
        for start in range(0, len(request_ids), 1000):
            for document in collection.find({"_id": {"$in": request_ids[start : start + 1000]}}):
                found[document["_id"]] = document
    return found


# -- champion/challenger decisions ----------------------------------------------------------


def _decision_out(document: Mapping[str, Any]) -> DecisionOut:
    fields = {key: value for key, value in document.items() if key != "_id"}
    return DecisionOut(decision_id=document["_id"], **fields)


def record_decision(decision: Mapping[str, Any]) -> DecisionOut:
    """Store a champion/challenger decision (its fields by name; id and time default to new ones).

    Raises:
        InvalidRecord: If a field is missing, unknown or of the wrong type (names it).
        StoreUnavailable: If MongoDB is unreachable.
    """
    data = {"decision_id": uuid.uuid4().hex, **decision}
    when = (
        utcnow()
        if data.get("decided_at") is None
        else parse_timestamp(data["decided_at"], "decided_at")
    )
    data["decided_at"] = when.replace(microsecond=when.microsecond // 1000 * 1000)  # as read back
    document = build(PromotionDecision, data, "promotion decision")
    with _reachable("record a promotion decision"):
        document.save(force_insert=True, validate=False)
    return _decision_out(document.to_mongo().to_dict())


def find_decisions(dataset: str, *, page: int = 1, page_size: int = 50) -> Page[DecisionOut]:
    """List a dataset's champion/challenger decisions, newest first, one page at a time."""
    skip, limit = _paging(page, page_size)
    decisions = PromotionDecision._get_collection()
    with _reachable("list promotion decisions"):
        total = decisions.count_documents({"dataset": dataset})
        newest = decisions.find({"dataset": dataset}).sort("decided_at", -1).skip(skip).limit(limit)
        items = [_decision_out(document) for document in newest]
    return Page[DecisionOut](items=items, total=total, page=page, page_size=page_size)


# -- frames for monitoring, retention --------------------------------------------------------

#: Columns of :func:`prediction_logs_frame` besides the features.
LOG_COLUMNS = ("request_id", "timestamp", "model_name", "model_version", "run_id",
               "prediction", "probability", "latency_ms")  # fmt: skip


def prediction_logs_frame(
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    dataset: str | None = None,
    since: Any = None,
    until: Any = None,
    limit: int | None = None,
    feature_dicts: bool = False,
) -> pd.DataFrame:
    """Load prediction logs as a frame for the drift monitor, oldest first.

    The filters of :func:`find_prediction_logs`, and ``limit``: the most recent logs only.
    One row per log: the :data:`LOG_COLUMNS`, then one column per input feature (named
    ``feature.<name>`` if it clashes with a log column; NaN when a request did not send
    it), or with ``feature_dicts`` one ``features`` column of the stored dicts (a check
    can then tell a feature not sent from one sent as ``null``).
    """
    import pandas as pd

    query = _log_query(model_name, model_version, dataset, since, until)
    logs = PredictionLog._get_collection().find(query).sort([("timestamp", -1), ("_id", 1)])
    with _reachable("read prediction logs"):
        documents = list(logs.limit(int(limit)) if limit is not None else logs)
    documents.reverse()

    def column(name: str) -> list[Any]:
        return [d.get(name) for d in documents]

    meta = pd.DataFrame({
        "request_id": [d["_id"] for d in documents],
        "timestamp": pd.to_datetime(column("timestamp")),
        "model_name": column("model_name"),
        "model_version": column("model_version"),
        "run_id": column("run_id"),
        "prediction": pd.array(column("prediction"), dtype="int64"),
        "probability": pd.array(column("probability"), dtype="float64"),
        "latency_ms": pd.array(column("latency_ms"), dtype="float64"),
    })  # fmt: skip
    if feature_dicts:
        meta["features"] = pd.Series(column("features"), dtype=object)
        return meta
    features = pd.DataFrame.from_records(column("features"))
    features.columns = [f"feature.{n}" if n in LOG_COLUMNS else str(n) for n in features.columns]
    return pd.concat([meta, features.set_axis(meta.index)], axis=1)


def apply_log_retention(days: float | None) -> None:
    """Keep prediction logs ``days`` days after they were served, or for ever (``None``).

    A TTL index on ``timestamp`` (``expireAfterSeconds``): MongoDB's TTL monitor deletes
    expired logs about every minute, the embedded store at its next write within a minute.
    Raises ``StoreUnavailable`` when MongoDB is unreachable.
    """
    collection = PredictionLog._get_collection()
    seconds = None if days is None else int(days * 86400)
    with _reachable("set the prediction-log retention"):
        current = collection.index_information().get(RETENTION_INDEX)
        if current is not None and current.get("expireAfterSeconds") == seconds:
            return
        if current is not None:
            collection.drop_index(RETENTION_INDEX)
        if seconds is not None:
            collection.create_index(
                [("timestamp", ASCENDING)], name=RETENTION_INDEX, expireAfterSeconds=seconds
            )
