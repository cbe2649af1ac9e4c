"""The service's prediction logs: the writer that makes them durable, and their documents.

Every answered row's log is built from the contract-checked values of its request
(:func:`log_documents`: no per-row validation) and handed to the
:class:`PredictionLogWriter` in one piece; the request is answered once the writer made
them durable. A background thread inserts what is queued in one bulk insert (group commit:
concurrent requests share it), and every log ends in exactly one of:

* **stored** (a request id already stored counts as ``already_stored``, never twice);
* **journaled**: the store could not be written (MongoDB unreachable, an embedded file
  locked, damaged or on a full disk, any unforeseen store error); the
  :class:`~store.journal.Journal` keeps it and the thread replays it, exactly once, when
  the store answers again;
* **set aside**: the store refused the document itself, or it failed validation; kept with
  the reason, never retried;
* **dropped**: neither the store nor the journal could be written (a full disk under
  both). The future fails, so the API answers 503 rather than acknowledge a log it could
  not keep. This counter must stay 0.

The counts go to the ``/metrics`` counter (:func:`count_outcome`) and, summed over every
process, to the journal (``mlops db status``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from bentos.registry import ServedModel
from store.connection import ensure_indexes
from store.journal import (
    OUTCOMES,
    Journal,
    WriterStats,
    insert_documents,
    prediction_documents,
    to_prediction_document,
    utcnow,
)
from store.settings import StoreSettings
from tabular.errors import StoreUnavailable

logger = logging.getLogger(__name__)
#: The Prometheus counter on ``/metrics`` (``mlops_prediction_logs_total{outcome=...}``).
COUNTER = "mlops_prediction_logs"


@functools.cache
def _counter():
    # prometheus_client is imported here, in the worker: BentoML sets its multiprocess
    # folder after the service module is imported, and the client reads it at import.
    from prometheus_client import Counter

    counter = Counter(
        COUNTER,
        "Prediction logs by what became of them: stored, already_stored (a replay), "
        "journaled (store unavailable, replayed later), set_aside (refused, kept with the "
        "reason), dropped (none of these: must stay 0)",
        ["outcome"],
    )
    for outcome in OUTCOMES:
        counter.labels(outcome=outcome)  # every outcome shows, 0 included
    return counter


def count_outcome(outcome: str, count: int) -> None:
    """Add logs to the ``/metrics`` counter of their outcome (the writer's ``on_outcome``)."""
    _counter().labels(outcome=outcome).inc(count)


def log_documents(
    served: ServedModel,
    names: Sequence[str],
    request_ids: Sequence[str],
    rows: Sequence[Sequence[Any]],
    probabilities: Sequence[float],
    predictions: Sequence[int],
    latency_ms: float,
) -> list[dict[str, Any]]:
    """Build the log documents of one answered request.

    Args:
        served: The model that answered.
        names: The input names, in the rows' order.
        request_ids: One id per row.
        rows: The rows' contract-checked values.
        probabilities: The probabilities of class 1.
        predictions: The predicted classes.
        latency_ms: The request's serving time so far.

    Returns:
        The BSON-ready documents.
    """
    return prediction_documents(
        request_ids,
        [dict(zip(names, row, strict=True)) for row in rows],
        predictions,
        probabilities,
        model_name=served.name,
        model_version=served.version,
        run_id=served.run_id,
        dataset=served.dataset,
        latency_ms=latency_ms,
    )


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
