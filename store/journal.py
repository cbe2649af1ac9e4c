"""Prediction logs that are never lost: a batching writer and a local journal for outages.

On the request path the API calls :meth:`PredictionLogWriter.write`, which only appends
the log to an in-memory queue (about a microsecond). A background thread validates the
queued logs and inserts them in batches (``insert_many``, unordered). When MongoDB cannot
be reached within the configured timeout, the batch is appended to a local JSON-lines
journal (``fsync``'d) instead, and the thread replays the journal once MongoDB answers
again. Replays are idempotent: the request id is the primary key, so a log already stored
(for instance by a replay interrupted half-way) is counted, not duplicated.

What can still be lost: logs queued in memory when the process is killed without a chance
to run :meth:`PredictionLogWriter.close` (at most ``flush_interval`` seconds of requests);
a normal exit flushes them (``atexit``).
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
from bson import json_util
from bson.errors import InvalidDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from store.connection import UNREACHABLE, ensure_indexes, error_reason
from store.documents import PredictionLog, mongo_document
from store.settings import StoreSettings
from tabular.errors import InvalidRecord, StoreError, StoreUnavailable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_JSON = json_util.JSONOptions(
    json_mode=json_util.JSONMode.RELAXED, tz_aware=False, datetime_representation=2
)
_DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class ReplayReport:
    """What a journal replay did.

    Attributes:
        read: Logs read from the journal.
        inserted: Logs newly stored in MongoDB.
        already_stored: Logs MongoDB already had (same request id): not stored twice.
        unreadable: Lines that could not be parsed (moved to ``<journal>.bad``).
        refused: Logs MongoDB refused for another reason than a duplicate id (moved to
            ``<journal>.refused`` with the reason, never replayed again).
    """

    read: int = 0
    inserted: int = 0
    already_stored: int = 0
    unreadable: int = 0
    refused: int = 0


@dataclass(frozen=True)
class WriterStats:
    """Counters of a :class:`PredictionLogWriter`.

    Attributes:
        enqueued: Logs handed to :meth:`PredictionLogWriter.write`.
        stored: Logs inserted into MongoDB (directly or by a replay of the journal).
        journaled: Logs written to the journal because MongoDB was unreachable.
        already_stored: Logs MongoDB already had (same request id).
        rejected: Logs refused by the document's validation (see ``last_error``).
        pending: Logs still queued in memory.
        last_error: The last validation or connection problem, if any.
        refused: Logs MongoDB refused (not for a duplicate id); kept in
            ``<journal>.refused`` for a human, never retried.
    """

    enqueued: int
    stored: int
    journaled: int
    already_stored: int
    rejected: int
    pending: int
    last_error: str | None
    refused: int = 0


def utcnow() -> dt.datetime:
    """Return the current UTC time as a naive datetime (MongoDB's convention)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def to_prediction_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a prediction log and return the document to insert.

    Args:
        record: Fields of :class:`~store.documents.PredictionLog` by name;
            ``timestamp`` defaults to now (UTC) and may be an ISO 8601 string.

    Returns:
        The BSON-ready document (``_id`` is the request id).

    Raises:
        InvalidRecord: If a field is unknown, missing or of the wrong type; names the field.
    """
    data = dict(record)
    timestamp = data.get("timestamp")
    if timestamp is None:
        data["timestamp"] = utcnow()
    else:
        data["timestamp"] = parse_timestamp(timestamp, "timestamp")
    if isinstance(data.get("features"), Mapping):
        data["features"] = {key: plain_value(value) for key, value in data["features"].items()}
    document = mongo_document(PredictionLog, data, "prediction log")
    try:
        # mongoengine's DictField accepts any value; BSON does not. Checked here, one log at a
        # time, so that one bad value cannot fail the insert of a whole batch.
        bson.encode(document)
    except (InvalidDocument, OverflowError) as exc:
        raise InvalidRecord(f"prediction log is invalid: {_unencodable(document, exc)}") from None
    return document


def plain_value(value: Any) -> Any:
    """Turn a numpy scalar into the Python value it holds (other values are returned as is).

    A numpy ``int64`` or ``bool_`` passes mongoengine's validation but cannot be encoded to
    BSON; ``float64`` can, but would be read back as a plain float anyway.

    Args:
        value: A feature value.

    Returns:
        The value, with numpy scalars as ``int``, ``float``, ``bool``, ``str`` or ``datetime``.
    """
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


def parse_timestamp(value: Any, field: str) -> dt.datetime:
    """Turn a datetime or an ISO 8601 string into a naive UTC datetime.

    Args:
        value: A ``datetime`` (naive = UTC) or an ISO 8601 string.
        field: The field's name, for the message.

    Returns:
        The naive UTC datetime.

    Raises:
        InvalidRecord: If the value is neither.
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
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


@dataclass(frozen=True)
class InsertResult:
    """What an insert of prediction-log documents did.

    Attributes:
        inserted: Documents newly stored.
        already_stored: Documents MongoDB already had (same request id).
        refused: Documents MongoDB refused for another reason, each with the reason: retrying
            them cannot succeed.
    """

    inserted: int = 0
    already_stored: int = 0
    refused: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)


def insert_documents(documents: Sequence[Mapping[str, Any]]) -> InsertResult:
    """Insert prediction-log documents, counting the ones already stored and the refused ones.

    Args:
        documents: BSON-ready documents with their ``_id``.

    Returns:
        The counts, and the refused documents with MongoDB's reason.

    Raises:
        StoreUnavailable: If MongoDB cannot be reached (nothing is known to be stored).
    """
    if not documents:
        return InsertResult()
    collection = PredictionLog._get_collection()
    try:
        result = collection.insert_many([dict(d) for d in documents], ordered=False)
        return InsertResult(inserted=len(result.inserted_ids))
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        duplicates = sum(1 for error in errors if error.get("code") == _DUPLICATE_KEY)
        refused = [
            (documents[error["index"]], str(error.get("errmsg") or "refused"))
            for error in errors
            if error.get("code") != _DUPLICATE_KEY
        ]
        inserted = exc.details.get("nInserted", len(documents) - duplicates - len(refused))
        return InsertResult(int(inserted), duplicates, refused)
    except DuplicateKeyError:
        return InsertResult(already_stored=len(documents))
    except (InvalidDocument, OverflowError):
        # A value BSON cannot encode (to_prediction_document checks it, a hand-made document
        # may not): insert one at a time so that only the bad ones are refused.
        return _insert_one_by_one(collection, documents)
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"MongoDB is unreachable ({error_reason(exc)})") from exc


def _insert_one_by_one(collection, documents: Sequence[Mapping[str, Any]]) -> InsertResult:
    inserted = already = 0
    refused: list[tuple[Mapping[str, Any], str]] = []
    for document in documents:
        try:
            collection.insert_one(dict(document))
            inserted += 1
        except DuplicateKeyError:
            already += 1
        except (InvalidDocument, OverflowError) as exc:
            refused.append((document, _unencodable(document, exc)))
        except OperationFailure as exc:
            if exc.code == _DUPLICATE_KEY:
                already += 1
            else:
                refused.append((document, str(exc)))
    return InsertResult(inserted, already, refused)


class Journal:
    """A local append-only file of prediction-log documents waiting for MongoDB.

    One JSON document per line (MongoDB extended JSON, so datetimes survive), appended
    under an exclusive file lock and ``fsync``'d, so several processes can share it.

    Args:
        path: The journal file (its folder is created when needed).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.bad_path = self.path.with_name(self.path.name + ".bad")
        self.refused_path = self.path.with_name(self.path.name + ".refused")

    @contextmanager
    def _locked(self):
        if fcntl is None:  # pragma: no cover - Windows
            raise StoreError("the prediction-log journal needs POSIX file locks")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Append documents durably.

        Args:
            documents: BSON-ready prediction-log documents.

        Returns:
            How many were appended.
        """
        lines = [json_util.dumps(doc, json_options=_JSON) + "\n" for doc in documents]
        if not lines:
            return 0
        payload = "".join(lines).encode("utf-8")
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(lines)

    def set_aside(self, refusals: Iterable[tuple[Mapping[str, Any], str]]) -> int:
        """Keep documents MongoDB refused, with the reason, in ``<journal>.refused``.

        They are never replayed (the same document would be refused again); a human reads
        the file, fixes the cause, and may store them by hand.

        Args:
            refusals: ``(document, reason)`` pairs.

        Returns:
            How many were kept.
        """
        lines = [
            json_util.dumps({"reason": reason, "document": doc}, json_options=_JSON) + "\n"
            for doc, reason in refusals
        ]
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.refused_path, "a", encoding="utf-8") as handle:
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
        return len(lines)

    def pending(self) -> bool:
        """Whether the journal holds anything (a cheap check, no parsing)."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def read(self) -> list[dict[str, Any]]:
        """Return the documents in the journal (unreadable lines are skipped).

        Returns:
            The parsed documents, oldest first.
        """
        with self._locked():
            documents, _ = self._parse()
        return documents

    def _parse(self) -> tuple[list[dict[str, Any]], list[str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []
        documents, bad = [], []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                documents.append(json_util.loads(line, json_options=_JSON))
            except (ValueError, TypeError, json.JSONDecodeError):
                bad.append(line)
        return documents, bad

    def replay(self, batch_size: int = 500) -> ReplayReport:
        """Insert every journaled document into MongoDB, then empty the journal.

        The journal stays locked during the replay, so a concurrent append waits. If MongoDB
        goes away half-way, the journal is kept whole: the next replay counts the documents
        already stored as such (their request id is the primary key).

        Args:
            batch_size: Documents per ``insert_many``.

        Returns:
            What was replayed.

        Raises:
            StoreUnavailable: If MongoDB cannot be reached (the journal is kept).
        """
        with self._locked():
            documents, bad = self._parse()
            if bad:
                # Kept aside for a human rather than silently dropped.
                with open(self.bad_path, "a", encoding="utf-8") as handle:
                    handle.write("\n".join(bad) + "\n")
                logger.warning("journal %s: %d unreadable line(s) moved to %s", self.path,
                               len(bad), self.bad_path)  # fmt: skip
            inserted = already = refused = 0
            for start in range(0, len(documents), batch_size):
                result = insert_documents(documents[start : start + batch_size])
                inserted += result.inserted
                already += result.already_stored
                # Refused for good: set aside, so that the journal does not replay them forever.
                refused += self.set_aside(result.refused)
            if documents or bad:
                fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if refused:
            logger.error("journal %s: MongoDB refused %d log(s); set aside in %s", self.path,
                         refused, self.refused_path)  # fmt: skip
        return ReplayReport(
            read=len(documents),
            inserted=inserted,
            already_stored=already,
            unreadable=len(bad),
            refused=refused,
        )


def replay_journal(path: str | os.PathLike | None = None, batch_size: int = 500) -> ReplayReport:
    """Replay the prediction-log journal into the connected store.

    Args:
        path: The journal (default: ``MLOPS_JOURNAL_PATH`` or the store folder's journal).
        batch_size: Documents per insert.

    Returns:
        What was replayed.

    Raises:
        StoreUnavailable: If MongoDB cannot be reached (the journal is kept).
    """
    if path is None:
        path = StoreSettings.from_env().journal_path
    return Journal(path).replay(batch_size=batch_size)


class PredictionLogWriter:
    """Store prediction logs off the request path, in batches, without ever losing one.

    Args:
        journal_path: Where logs go while MongoDB is unreachable (default: from settings).
        batch_size: Logs per ``insert_many``; a full batch wakes the thread at once.
        flush_interval: Longest time, in seconds, a log waits in memory before its batch
            is written.
        retry_interval: Seconds between attempts to reach MongoDB again after a failure
            (meanwhile batches go straight to the journal, so nothing waits on a dead
            server).

    The documents must be connected (:func:`store.connect`) before logs are written;
    with a real MongoDB, ``connect(check=False)`` lets the service start while it is down.
    Create the writer in the process that serves requests (a forked worker does not inherit
    the background thread), and close it at shutdown.
    """

    def __init__(
        self,
        journal_path: str | os.PathLike | None = None,
        *,
        batch_size: int = 256,
        flush_interval: float = 0.2,
        retry_interval: float = 5.0,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if journal_path is None:
            journal_path = StoreSettings.from_env().journal_path
        self.journal = Journal(journal_path)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self._queue: deque[Mapping[str, Any]] = deque()
        self._lock = threading.Lock()  # uncontended: ~0.1 us, keeps queue and count in step
        self._enqueued = 0
        self._handled = 0  # logs taken off the queue and fully dealt with
        self._stored = self._journaled = self._already = self._rejected = self._refused = 0
        self._last_error: str | None = None
        self._retry_at = 0.0  # monotonic time before which MongoDB is assumed down
        self._indexes_ready = False
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue one prediction log; returns at once (validation happens in the background).

        Args:
            record: Fields of :class:`~store.documents.PredictionLog` by name
                (``request_id``, ``model_name``, ``model_version``, ``features``,
                ``prediction``, ``probability``, ``latency_ms``, optional ``timestamp``
                and ``dataset``). An invalid log is counted in ``stats().rejected``. The
                mapping is stored later, so it must not be changed after the call.

        Raises:
            RuntimeError: If the writer is closed.
        """
        if self._closed:
            raise RuntimeError("the prediction-log writer is closed")
        if "timestamp" not in record:
            record = {**record, "timestamp": utcnow()}
        with self._lock:
            self._queue.append(record)
            self._enqueued += 1
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every log queued so far is stored or journaled.

        Args:
            timeout: Longest wait in seconds (``None``: no limit).

        Returns:
            Whether everything was handled in time.
        """
        target = self._enqueued
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._handled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, timeout: float | None = 30.0) -> WriterStats:
        """Flush, stop the background thread and return the final counters.

        Args:
            timeout: Longest wait for the flush, in seconds.

        Returns:
            The counters.
        """
        if not self._closed:
            self.flush(timeout)
            self._closed = True
            self._wake.set()
            self._thread.join(timeout)
            atexit.unregister(self.close)
        return self.stats()

    def stats(self) -> WriterStats:
        """Return the writer's counters."""
        return WriterStats(
            enqueued=self._enqueued,
            stored=self._stored,
            journaled=self._journaled,
            already_stored=self._already,
            rejected=self._rejected,
            pending=len(self._queue),
            last_error=self._last_error,
            refused=self._refused,
        )

    # -- background thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._queue:
                batch = []
                while self._queue and len(batch) < self.batch_size:
                    batch.append(self._queue.popleft())
                try:
                    self._handle(batch)
                except Exception:  # never let the thread die: that would lose every later log
                    logger.exception("prediction-log writer: unexpected error")
                    self._last_error = "unexpected error (see the log)"
                with self._done:
                    self._handled += len(batch)
                    self._done.notify_all()
            if self._closed:
                return
            self._maybe_replay()

    def _handle(self, batch: list[Mapping[str, Any]]) -> None:
        documents = []
        for record in batch:
            try:
                documents.append(to_prediction_document(record))
            except InvalidRecord as exc:
                self._rejected += 1
                self._last_error = str(exc)
                logger.error("prediction log refused: %s", exc)
            except Exception as exc:  # e.g. a non-mapping passed by mistake
                self._rejected += 1
                self._last_error = f"prediction log refused: {exc}"
                logger.error("prediction log refused: %s", exc)
        if not documents:
            return
        if time.monotonic() < self._retry_at:
            self._to_journal(documents)
            return
        try:
            self._ensure_indexes()
            result = insert_documents(documents)
        except StoreUnavailable as exc:
            self._retry_at = time.monotonic() + self.retry_interval
            self._last_error = str(exc)
            logger.warning("MongoDB unreachable, journaling %d log(s): %s", len(documents), exc)
            self._to_journal(documents)
            return
        self._stored += result.inserted
        self._already += result.already_stored
        if result.refused:
            # Refused for good (not a duplicate, not an outage): no retry window, no journal
            # replay; the rest of the batch is stored and later batches go to MongoDB.
            self._refused += self.journal.set_aside(result.refused)
            self._last_error = f"MongoDB refused a prediction log: {result.refused[0][1]}"
            logger.error("%s; %d log(s) set aside in %s", self._last_error,
                         len(result.refused), self.journal.refused_path)  # fmt: skip

    def _to_journal(self, documents: list[dict[str, Any]]) -> None:
        self._journaled += self.journal.append(documents)

    def _ensure_indexes(self) -> None:
        if not self._indexes_ready:
            ensure_indexes()
            self._indexes_ready = True

    def _maybe_replay(self) -> None:
        if time.monotonic() < self._retry_at or not self.journal.pending():
            return
        try:
            self._ensure_indexes()
            report = self.journal.replay()
        except StoreError as exc:
            self._retry_at = time.monotonic() + self.retry_interval
            self._last_error = str(exc)
            return
        except Exception:
            self._retry_at = time.monotonic() + self.retry_interval
            logger.exception("prediction-log writer: journal replay failed")
            return
        self._stored += report.inserted
        self._already += report.already_stored
        self._refused += report.refused
        if report.read:
            logger.info("replayed %d journaled prediction log(s)", report.read)
