"""Prediction logs that are never lost: their documents, the insert, the local journal.

:func:`insert_documents` stores a batch and tells what became of each log: stored, already
stored (the request id is the primary key), or refused by the store for itself (a store
error for a whole batch is bisected, so only the refused documents are named); it raises
:class:`~tabular.errors.StoreUnavailable` when the store cannot be written at all (MongoDB
unreachable, an embedded file locked, damaged or on a full disk).

:class:`Journal` keeps, in a local SQLite file, what the store could not take (replayed
later, exactly once), the logs set aside with their reason, and every writer's counters
(``mlops db status``). The writer that uses them, :class:`bentos.logs.PredictionLogWriter`,
is the service's.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.errors import InvalidDocument
from pymongo.errors import BulkWriteError, OperationFailure

from store.connection import UNREACHABLE, error_reason
from store.documents import PredictionLog, build
from store.settings import StoreSettings
from tabular.errors import InvalidRecord, StoreUnavailable

logger = logging.getLogger(__name__)
_CODEC = CodecOptions(tz_aware=False)
_JOURNAL_TABLES = ("journal (id PRIMARY KEY, body BLOB NOT NULL)",
                   "set_aside (id INTEGER PRIMARY KEY, reason TEXT, document TEXT)",
                   "counters (name TEXT PRIMARY KEY, count INTEGER)")  # fmt: skip
_JSON = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=False,
                              datetime_representation=2)  # fmt: skip
#: What a log can become (the ``outcome`` label of the API's ``/metrics`` counter).
OUTCOMES = ("stored", "already_stored", "journaled", "set_aside", "dropped")


@dataclass(frozen=True)
class ReplayReport:
    """What a journal replay did.

    Logs read, newly inserted, already stored (not stored twice), unreadable lines (moved
    to ``<journal>.bad``) and refused ones (set aside with the reason).
    """

    read: int = 0
    inserted: int = 0
    already_stored: int = 0
    unreadable: int = 0
    refused: int = 0


@dataclass(frozen=True)
class WriterStats:
    """Counters of prediction-log writers (one process's, or every process's summed).

    ``enqueued`` logs handed to the writer; then what became of them (:data:`OUTCOMES`);
    ``pending`` still queued in memory; ``last_error`` the last problem met.
    """

    enqueued: int = 0
    stored: int = 0
    already_stored: int = 0
    journaled: int = 0
    set_aside: int = 0
    dropped: int = 0
    pending: int = 0
    last_error: str | None = None


def utcnow() -> dt.datetime:
    """Return the current UTC time as a naive datetime (MongoDB's convention)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def parse_timestamp(value: Any, field: str) -> dt.datetime:
    """Turn a datetime, a date or an ISO 8601 string into a naive UTC datetime.

    Raises:
        InvalidRecord: If the value is none of these (names ``field``).
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRecord(
                f"{field}: expected an ISO 8601 date and time, got {value!r}"
            ) from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise InvalidRecord(f"{field}: expected a date and time, got {type(value).__name__}")
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def plain_value(value: Any) -> Any:
    """Turn a numpy scalar into the Python value it holds (BSON cannot encode numpy ints)."""
    if type(value).__module__ != "numpy" or not hasattr(value, "item"):
        return value
    if getattr(getattr(value, "dtype", None), "kind", "") == "M":  # datetime64: keep a date
        return value.astype("datetime64[us]").item()
    return value.item()


def _unencodable(document: Mapping[str, Any], error: Exception) -> str:
    for key, value in (document.get("features") or {}).items():
        try:
            bson.encode({"v": value})
        except (InvalidDocument, OverflowError):
            return f"features.{key}: {type(value).__name__} {value!r} cannot be stored in MongoDB"
    return str(error)


def to_prediction_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a log's fields by :class:`~store.documents.PredictionLog`'s rules.

    ``timestamp`` defaults to now (UTC) and may be ISO text; returns the BSON-ready document
    (``_id`` = the request id).

    Raises:
        InvalidRecord: If a field is unknown, missing, of the wrong type or cannot be encoded
            in BSON; names the field.
    """
    data = dict(record)
    timestamp = data.get("timestamp")
    data["timestamp"] = utcnow() if timestamp is None else parse_timestamp(timestamp, "timestamp")
    if isinstance(data.get("features"), Mapping):
        data["features"] = {key: plain_value(value) for key, value in data["features"].items()}
    document = build(PredictionLog, data, "prediction log").to_mongo().to_dict()
    try:  # checked one log at a time, so that one bad value cannot fail a whole batch
        bson.encode(document)
    except (InvalidDocument, OverflowError) as exc:
        raise InvalidRecord(f"prediction log is invalid: {_unencodable(document, exc)}") from None
    return document


def prediction_documents(
    request_ids: Sequence[str],
    features: Sequence[Mapping[str, Any]],
    predictions: Sequence[int],
    probabilities: Sequence[float],
    **shared: Any,
) -> list[dict[str, Any]]:
    """Build the documents of a batch of predictions, validating what they share once.

    The features must already be valid (the served model's input contract checked them);
    the fields every log of the batch shares (``shared``: model, version, run, dataset,
    latency; ``timestamp`` defaults to now) pass :class:`~store.documents.PredictionLog`'s
    rules on the first log. Raises ``InvalidRecord`` when one breaks them.
    """
    shared.setdefault("timestamp", utcnow())
    first = to_prediction_document({"request_id": request_ids[0], "features": features[0],
                                    "prediction": predictions[0], "probability": probabilities[0],
                                    **shared})  # fmt: skip
    common = {key: value for key, value in first.items() if key in shared}
    rows = zip(request_ids, features, predictions, probabilities, strict=True)
    return [
        {"_id": i, **common, "features": f, "prediction": p, "probability": q}
        for i, f, p, q in rows
    ]


@dataclass(frozen=True)
class InsertResult:
    """What an insert did: stored, already stored, refused (with the store's reason)."""

    inserted: int = 0
    already_stored: int = 0
    refused: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)

    def __add__(self, other: InsertResult) -> InsertResult:
        return InsertResult(self.inserted + other.inserted,
                            self.already_stored + other.already_stored, self.refused + other.refused)  # fmt: skip


def insert_documents(documents: Sequence[Mapping[str, Any]]) -> InsertResult:
    """Insert prediction-log documents; count the stored, already stored and refused ones.

    A store error for the whole batch (not a per-document write error) is bisected: the
    halves are inserted again until the documents the store refuses are alone.

    Raises:
        StoreUnavailable: If the store cannot be written (unreachable, an embedded file
            locked, damaged or full, a disk error): nothing more is known to be stored.
    """
    if not documents:
        return InsertResult()
    try:
        result = PredictionLog._get_collection().insert_many(list(documents), ordered=False)
        return InsertResult(inserted=len(result.inserted_ids))
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        duplicates = sum(1 for error in errors if error.get("code") == 11000)
        refused = [(documents[e["index"]], str(e.get("errmsg") or "refused")) for e in errors
                   if e.get("code") != 11000]  # fmt: skip
        inserted = exc.details.get("nInserted", len(documents) - duplicates - len(refused))
        return InsertResult(int(inserted), duplicates, refused)
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"MongoDB is unreachable ({error_reason(exc)})") from exc
    except OSError as exc:  # e.g. a full disk under the store
        raise StoreUnavailable(f"the store cannot be written ({exc})") from exc
    except (OperationFailure, InvalidDocument, OverflowError) as exc:
        if len(documents) > 1:
            middle = len(documents) // 2
            return insert_documents(documents[:middle]) + insert_documents(documents[middle:])
        if getattr(exc, "code", None) == 11000:
            return InsertResult(already_stored=1)
        reason = str(exc) if isinstance(exc, OperationFailure) else _unencodable(documents[0], exc)
        return InsertResult(refused=[(documents[0], reason)])


class Journal:
    """Logs the store could not take, in a local SQLite file (WAL).

    The journal itself, the logs set aside with their reason, and every writer's counters;
    appends are transactions (no torn entry, nothing committed lost by ``kill -9``), and
    processes share the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._local = threading.local()  # this thread's connection, opened once

    @contextmanager
    def _database(self, create: bool = True) -> Iterator[sqlite3.Connection | None]:
        connection = getattr(self._local, "connection", None)
        if connection is None and (create or self.path.exists()):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # rare, and the last resort: synced
            for table in _JOURNAL_TABLES:
                connection.execute(f"CREATE TABLE IF NOT EXISTS {table}")
            self._local.connection = connection
        yield connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all of it or nothing."""
        with self._database() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def append(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Append documents durably (a request id already there is kept once); return how many.

        Raises:
            sqlite3.Error: If the file cannot be written (e.g. a full disk).
        """
        rows = [(d["_id"], bson.encode(d)) for d in documents]
        if not rows:
            return 0
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO journal (id, body) VALUES (?, ?)", rows)
        return len(rows)

    def set_aside(self, refusals: Iterable[tuple[Mapping[str, Any], str]]) -> int:
        """Keep ``(document, reason)`` pairs, never replayed; return how many.

        A human reads the reasons (``mlops db status``, :meth:`set_aside_documents`), fixes
        the cause and may store them. Documents that BSON cannot encode are kept as text.

        Raises:
            sqlite3.Error: If the file cannot be written.
        """
        rows = [
            (reason, json_util.dumps(doc, json_options=_JSON, default=repr))
            for doc, reason in refusals
        ]
        if not rows:
            return 0
        with self._write() as db:
            db.executemany("INSERT INTO set_aside (reason, document) VALUES (?, ?)", rows)
        return len(rows)

    def _all(self, sql: str) -> list[tuple]:
        with self._database(create=False) as db:
            return [] if db is None else db.execute(sql).fetchall()

    def pending(self) -> bool:
        """Whether the journal holds logs to replay."""
        return bool(self._all("SELECT 1 FROM journal LIMIT 1"))

    def read(self) -> list[dict[str, Any]]:
        """Return the journaled documents, oldest first."""
        return [
            bson.decode(body, _CODEC)
            for (body,) in self._all("SELECT body FROM journal ORDER BY rowid")
        ]

    def set_aside_documents(self) -> list[tuple[dict[str, Any], str]]:
        """Return the logs set aside, each with its reason, oldest first."""
        rows = self._all("SELECT document, reason FROM set_aside ORDER BY id")
        return [
            (json_util.loads(document, json_options=_JSON), reason) for document, reason in rows
        ]

    def set_aside_count(self) -> int:
        """Return how many logs are set aside."""
        return self._all("SELECT count(*) FROM set_aside")[0][0] if self.path.exists() else 0

    def replay(self, batch_size: int = 1000) -> ReplayReport:
        """Insert the journaled documents into the store; each batch leaves once it is stored.

        Exactly once: a batch leaves the journal only after the store took it, and a batch
        replayed twice (killed in between) is counted as already stored the second time.

        Raises:
            StoreUnavailable: If the store cannot be written (what is left stays journaled).
        """
        read = inserted = already = refused = 0
        while rows := self._all(
            f"SELECT id, body FROM journal ORDER BY rowid LIMIT {int(batch_size)}"
        ):
            result = insert_documents([bson.decode(body, _CODEC) for _, body in rows])
            refused += self.set_aside(result.refused)
            with self._write() as db:
                db.executemany("DELETE FROM journal WHERE id = ?", [(key,) for key, _ in rows])
            read, inserted, already = (
                read + len(rows),
                inserted + result.inserted,
                already + result.already_stored,
            )
        if refused:
            logger.error("journal %s: the store refused %d log(s), set aside", self.path, refused)
        return ReplayReport(read, inserted, already, 0, refused)

    def add_counters(self, delta: Mapping[str, int]) -> None:
        """Add a writer's new counts to the totals of every process (raises sqlite3.Error)."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET count = count + excluded.count",
                list(delta.items()),
            )

    def counters(self) -> dict[str, int]:
        """Return the counts every writer of this journal added (empty when none did)."""
        return dict(self._all("SELECT name, count FROM counters"))


def replay_journal(path: str | os.PathLike | None = None, batch_size: int = 1000) -> ReplayReport:
    """Replay the prediction-log journal (default: the settings') into the connected store.

    Raises:
        StoreUnavailable: If the store cannot be written (the journal is kept).
    """
    return Journal(path or StoreSettings.from_env().journal_path).replay(batch_size=batch_size)


def writer_totals(journal_path: str | os.PathLike) -> WriterStats:
    """Return the counters every writer of a journal added up (for ``mlops db status``)."""
    totals = Journal(journal_path).counters()
    names = {f.name for f in fields(WriterStats)} - {"pending", "last_error"}
    return WriterStats(**{name: int(totals.get(name, 0)) for name in names})
