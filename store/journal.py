"""Prediction logs that are never lost: a batching writer, a local journal, a set-aside file.

The API hands logs to :class:`PredictionLogWriter`: :meth:`~PredictionLogWriter.submit`
returns a future resolved once the logs are durable, and the request is answered then. A
background thread inserts what is queued in one bulk insert (group commit: concurrent
requests share it). Every log ends in exactly one of:

* **stored** (a request id already stored counts as ``already_stored``, never twice);
* **journaled**: the store could not be written (MongoDB unreachable, an embedded file
  locked, damaged or on a full disk, any unforeseen store error). The log goes to a local
  JSON-lines journal (``fsync``'d), replayed by the thread once the store answers again;
  the request id is the primary key, so a replay stores each log exactly once;
* **set aside**: the store refused the document itself, or it failed validation; kept
  with the reason in ``<journal>.refused`` for a human, never retried. A store error for a
  whole batch is bisected, so only the refused documents are set aside;
* **dropped**: neither the store, the journal nor the set-aside file could be written (a
  full disk under all three). The future fails, so the API answers 503 rather than
  acknowledge a log it could not keep. This counter must stay 0.

The counters are kept per process (:meth:`PredictionLogWriter.stats`, the API's
``/metrics``) and summed over every process in ``<journal>.counters.json``
(``mlops db status``).
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.errors import InvalidDocument
from pymongo.errors import BulkWriteError, OperationFailure

from store.connection import UNREACHABLE, ensure_indexes, error_reason
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

    Attributes:
        enqueued: Logs handed to the writer.
        stored: Logs inserted into the store (directly or by a replay of the journal).
        already_stored: Logs the store already had (same request id).
        journaled: Logs written to the journal because the store could not take them.
        set_aside: Logs refused (by the store or by validation), kept with the reason.
        dropped: Logs neither stored, journaled nor set aside (must stay 0).
        pending: Logs still queued in memory.
        last_error: The last problem met, if any.
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
    """Validate a prediction log by :class:`~store.documents.PredictionLog`'s rules.

    Args:
        record: Its fields by name; ``timestamp`` defaults to now (UTC), may be ISO text.

    Returns:
        The BSON-ready document (``_id`` is the request id).

    Raises:
        InvalidRecord: If a field is unknown, missing, of the wrong type or cannot be
            encoded in BSON; names the field.
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
    the fields every log of the batch shares (model, version, run, dataset, latency,
    timestamp) pass :class:`~store.documents.PredictionLog`'s rules on the first log.

    Args:
        request_ids: One id per prediction.
        features: One dict of typed input values per prediction.
        predictions: The predicted classes.
        probabilities: The probabilities of class 1.
        **shared: The other fields (``timestamp`` defaults to now, UTC).

    Returns:
        The BSON-ready documents, in order.

    Raises:
        InvalidRecord: If a shared field breaks the document's rules.
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
    """Insert prediction-log documents, counting the ones already stored and the refused ones.

    A store error for the whole batch (not a per-document write error) is bisected: the
    halves are inserted again until the documents the store refuses are alone.

    Args:
        documents: BSON-ready documents with their ``_id``.

    Returns:
        The counts, and the refused documents with the store's reason.

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

    The journal itself, the logs set aside with their reason, and every writer's counters.
    Appends are transactions (no torn entries, nothing committed lost by ``kill -9``); the
    file is shared by processes, one writer at a time.

    Args:
        path: The journal file (its folder is created when needed).
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
        """Insert the journaled documents into the store; each batch leaves the journal once stored.

        Exactly once: a batch is deleted from the journal only after the store took it, and
        a batch replayed twice (killed in between) is counted as already stored the second
        time (the request id is the primary key).

        Args:
            batch_size: Documents per insert.

        Returns:
            What was replayed.

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


class PredictionLogWriter:
    """Store prediction logs in batches off the event loop, without ever losing one.

    Args:
        journal_path: Where logs go when the store cannot take them (default: settings).
        batch_size: Most logs per bulk insert.
        flush_interval: Longest time, in seconds, a log given to :meth:`write` waits in
            memory (logs given to :meth:`submit` wake the thread at once).
        retry_interval: Seconds between attempts to write to the store again after it
            failed (meanwhile logs go straight to the journal: nothing waits on a dead
            server).
        on_outcome: Called from the writer's thread as ``on_outcome(outcome, count)``,
            ``outcome`` one of :data:`OUTCOMES` (the API feeds ``/metrics`` with it).

    Connect the documents first (:func:`store.connect`; with a real MongoDB,
    ``connect(check=False)`` lets the service start while it is down). Create the writer
    in the process that serves requests, and close it at shutdown.
    """

    def __init__(
        self,
        journal_path: str | os.PathLike | None = None,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.2,
        retry_interval: float = 5.0,
        on_outcome: Callable[[str, int], None] | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.journal = Journal(journal_path or StoreSettings.from_env().journal_path)
        self.batch_size, self.flush_interval, self.retry_interval = (
            batch_size,
            flush_interval,
            retry_interval,
        )
        self.on_outcome = on_outcome
        # Each item: (records or documents, whether they are validated documents, future).
        self._queue: deque[tuple[list, bool, Future | None]] = deque()
        self._lock = threading.Lock()  # uncontended: keeps the queue and the counts in step
        self._counts = dict.fromkeys(("enqueued", *OUTCOMES), 0)
        self._saved, self._saved_at = dict(self._counts), 0.0  # what the counters file holds
        self._handled = self._queued = 0
        self._last_error: str | None = None
        self._retry_at = 0.0  # monotonic time before which the store is assumed down
        self._indexes_ready = self._closed = False
        self._wake, self._done = threading.Event(), threading.Condition()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _enqueue(self, items: list, validated: bool, future: Future | None) -> None:
        if self._closed:
            raise RuntimeError("the prediction-log writer is closed")
        with self._lock:
            self._queue.append((items, validated, future))
            self._counts["enqueued"] += len(items)
            self._queued += len(items)
        if future is not None or self._queued >= self.batch_size:
            self._wake.set()

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue one log's fields (validated in the background; an invalid one is set aside).

        The mapping is stored later, so it must not be changed after the call.

        Raises:
            RuntimeError: If the writer is closed.
        """
        self._enqueue(
            [record if "timestamp" in record else {**record, "timestamp": utcnow()}], False, None
        )

    def submit(self, documents: list[dict[str, Any]]) -> Future:
        """Queue validated documents (:func:`prediction_documents`); resolved once durable.

        Returns:
            A future resolved (``None``) once every document is stored, journaled or set
            aside; it fails with :class:`~tabular.errors.StoreUnavailable` if some could be
            none of these (dropped).

        Raises:
            RuntimeError: If the writer is closed.
        """
        future: Future = Future()
        self._enqueue(documents, True, future)
        return future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every log queued so far is dealt with; return whether it was in time."""
        target = self._counts["enqueued"]
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._handled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(1.0 if remaining is None else remaining)
        return True

    def close(self, timeout: float | None = 30.0) -> WriterStats:
        """Flush, stop the background thread and return the final counters."""
        if not self._closed:
            self.flush(timeout)
            self._closed = True
            self._wake.set()
            self._thread.join(timeout)
            atexit.unregister(self.close)
        return self.stats()

    def stats(self) -> WriterStats:
        """Return this writer's counters."""
        return WriterStats(**self._counts, pending=self._queued, last_error=self._last_error)

    # -- background thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._queue:
                items, size = [], 0
                with self._lock:
                    while self._queue and (
                        not items or size + len(self._queue[0][0]) <= self.batch_size
                    ):
                        items.append(self._queue.popleft())
                        size += len(items[-1][0])
                    self._queued -= size
                self._handle(items)
                with self._done:
                    self._handled += size
                    self._done.notify_all()
            self._save_counters(force=self._closed)
            if self._closed:
                return
            self._maybe_replay()

    def _count(self, outcome: str, count: int) -> None:
        if count:
            self._counts[outcome] += count
            if self.on_outcome is not None:
                self.on_outcome(outcome, count)

    def _handle(self, items: list[tuple[list, bool, Future | None]]) -> None:
        documents: list[dict[str, Any]] = []
        invalid: list[tuple[Mapping[str, Any], str]] = []
        for records, validated, _ in items:
            if validated:
                documents += records
                continue
            for record in records:
                try:
                    documents.append(to_prediction_document(record))
                except Exception as exc:  # InvalidRecord, or e.g. a non-mapping by mistake
                    self._last_error = f"prediction log refused: {exc}"
                    invalid.append(
                        (
                            record if isinstance(record, Mapping) else {"record": repr(record)},
                            str(exc),
                        )
                    )
        dropped = self._counts["dropped"]
        try:
            self._deliver(documents)
            self._set_aside(invalid)
        except Exception as exc:  # a bug: never let the thread die, never lose a log silently
            logger.exception("prediction-log writer: unexpected error")
            self._last_error = f"unexpected error: {exc}"
            self._count("dropped", len(documents) + len(invalid))
        error = StoreUnavailable(f"the prediction logs could not be recorded: {self._last_error}")
        for _, _, future in items:
            if future is not None and self._counts["dropped"] > dropped:
                future.set_exception(error)
            elif future is not None:
                future.set_result(None)

    def _deliver(self, documents: list[dict[str, Any]]) -> None:
        if not documents:
            return
        if time.monotonic() < self._retry_at:
            self._to_journal(documents)
            return
        try:
            if not self._indexes_ready:
                ensure_indexes()
                self._indexes_ready = True
            result = insert_documents(documents)
        except Exception as exc:  # StoreUnavailable, or anything the store did not foresee
            self._retry_at = time.monotonic() + self.retry_interval
            self._last_error = str(exc)
            logger.warning(
                "the store cannot take %d log(s), journaling them: %s", len(documents), exc
            )
            self._to_journal(documents)
            return
        self._count("stored", result.inserted)
        self._count("already_stored", result.already_stored)
        if result.refused:  # refused for good: no retry window, the rest of the batch is stored
            self._last_error = f"the store refused a prediction log: {result.refused[0][1]}"
            self._set_aside(result.refused)

    def _to_journal(self, documents: list[dict[str, Any]]) -> None:
        try:
            self._count("journaled", self.journal.append(documents))
        except (OSError, sqlite3.Error) as exc:
            self._last_error = f"the journal {self.journal.path} cannot be written either: {exc}"
            logger.error("%d prediction log(s) dropped: %s", len(documents), self._last_error)
            self._count("dropped", len(documents))

    def _set_aside(self, refusals: list[tuple[Mapping[str, Any], str]]) -> None:
        if not refusals:
            return
        try:
            self._count("set_aside", self.journal.set_aside(refusals))
        except (OSError, sqlite3.Error) as exc:
            self._last_error = f"the journal {self.journal.path} cannot be written: {exc}"
            self._count("dropped", len(refusals))
        logger.error(
            "%d prediction log(s) set aside in %s: %s",
            len(refusals),
            self.journal.path,
            refusals[0][1],
        )

    def _save_counters(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._saved_at < 1.0:
            return
        self._saved_at, counts = time.monotonic(), dict(self._counts)
        delta = {
            name: counts[name] - self._saved[name]
            for name in counts
            if counts[name] != self._saved[name]
        }
        try:
            if delta:
                self.journal.add_counters(delta)
                self._saved = counts
        except (OSError, sqlite3.Error):
            pass  # kept for the next time (the disk may be full)

    def _maybe_replay(self) -> None:
        if time.monotonic() < self._retry_at or not self.journal.pending():
            return
        try:
            report = self.journal.replay()
        except Exception as exc:  # the store still cannot take them: the journal is kept whole
            self._retry_at = time.monotonic() + self.retry_interval
            self._last_error = str(exc)
            return
        self._count("stored", report.inserted)
        self._count("already_stored", report.already_stored)
        self._count("set_aside", report.refused)
        if report.read:
            logger.info("replayed %d journaled prediction log(s)", report.read)
