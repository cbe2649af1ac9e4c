"""Prediction logs are never lost: the batching writer, the outage journal and its replay.

The outage is a MongoDB URI on a local port where nothing listens; the replay goes to the
test's store (embedded, or ``MONGODB_URI``'s server when set).
"""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from tabular.errors import StoreUnavailable
from tabular.store import (
    Journal,
    PredictionLogWriter,
    connect,
    count_prediction_logs,
    create_prediction_log,
    get_prediction_log,
    replay_journal,
)
from tabular.store.connection import get_database
from tabular.store.documents import PredictionLog
from tabular.store.journal import to_prediction_document
from tabular.store.settings import StoreSettings
from tests.test_store import fresh_store, prediction

#: Server-selection timeout of the dead server, in milliseconds.
DEAD_TIMEOUT_MS = 300
LOGS = 200


@pytest.fixture
def store(tmp_path, monkeypatch):
    yield from fresh_store(tmp_path, monkeypatch)


def dead_settings(settings: StoreSettings) -> StoreSettings:
    """Settings of a MongoDB on a free local port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS={DEAD_TIMEOUT_MS}"
    return StoreSettings(
        uri=uri,
        database=settings.database,
        store_dir=settings.store_dir,
        journal_path=settings.journal_path,
        timeout_ms=DEAD_TIMEOUT_MS,
    )


def stored_request_ids() -> list[str]:
    return [d["_id"] for d in PredictionLog._get_collection().find({}, {"_id": 1})]


def test_outage_journals_every_log_and_replays_each_once(store):
    dead = dead_settings(store)
    connect(dead, check=False)  # a service must start while MongoDB is down
    writer = PredictionLogWriter(dead.journal_path, batch_size=64, flush_interval=0.05)

    started = time.perf_counter()
    for i in range(LOGS):
        writer.write(prediction(f"req-{i:04d}"))
    enqueue_seconds = time.perf_counter() - started
    # Writing never waits for the dead server: all writes together take far less than one
    # server-selection timeout (and far less than one timeout per write).
    assert enqueue_seconds < DEAD_TIMEOUT_MS / 1000

    started = time.perf_counter()
    assert writer.flush(timeout=10)
    # One batch waits for the timeout; the next ones go straight to the journal.
    assert time.perf_counter() - started < 5
    stats = writer.close()
    assert (stats.enqueued, stats.journaled, stats.stored, stats.rejected) == (LOGS, LOGS, 0, 0)
    assert "unreachable" in (stats.last_error or "")

    journaled = Journal(dead.journal_path).read()
    assert sorted(d["_id"] for d in journaled) == [f"req-{i:04d}" for i in range(LOGS)]
    assert journaled[0]["features"] == prediction("x")["features"]
    interrupted = dead.journal_path.with_name("interrupted.jsonl")
    shutil.copy(dead.journal_path, interrupted)

    with pytest.raises(StoreUnavailable):
        replay_journal(dead.journal_path)  # still down: the journal is kept whole
    assert len(Journal(dead.journal_path).read()) == LOGS

    connect(store)  # MongoDB is back
    report = replay_journal(dead.journal_path)
    assert (report.read, report.inserted, report.already_stored) == (LOGS, LOGS, 0)
    ids = stored_request_ids()
    assert len(ids) == len(set(ids)) == LOGS
    assert get_prediction_log("req-0007").features == prediction("x")["features"]

    again = replay_journal(dead.journal_path)
    assert (again.read, again.inserted) == (0, 0)
    # A replay interrupted half-way is replayed again in full: nothing is stored twice.
    duplicate = replay_journal(interrupted)
    assert (duplicate.read, duplicate.inserted, duplicate.already_stored) == (LOGS, 0, LOGS)
    assert count_prediction_logs() == LOGS


def test_connect_to_a_dead_server_fails_fast_with_a_clear_message(store):
    dead = dead_settings(store)
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable, match=r"cannot reach MongoDB at mongodb://127\.0\.0\.1"):
        connect(dead)
    assert time.perf_counter() - started < 5


def test_synchronous_create_journals_during_an_outage(store):
    dead = dead_settings(store)
    connect(dead, check=False)
    journaled = create_prediction_log(prediction("sync-1"), settings=dead)
    assert journaled.journaled is True
    with pytest.raises(StoreUnavailable, match="cannot store prediction log 'sync-2'"):
        create_prediction_log(prediction("sync-2"), journal_on_outage=False)
    connect(store)
    assert replay_journal(dead.journal_path).inserted == 1
    assert get_prediction_log("sync-1").journaled is False


def test_writer_stores_batches_and_counts_rejections(store):
    writer = PredictionLogWriter(store.journal_path, batch_size=50, flush_interval=0.05)
    for i in range(120):
        writer.write(prediction(f"ok-{i}"))
    writer.write(prediction("bad-1", latency_ms="slow"))
    writer.write({"request_id": "bad-2"})
    assert writer.flush(timeout=10)
    stats = writer.close()
    assert (stats.stored, stats.rejected, stats.journaled, stats.pending) == (120, 2, 0, 0)
    assert "model_name: Field is required" in stats.last_error
    assert count_prediction_logs() == 120
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(prediction("late"))


def test_writer_replays_an_old_journal_once_the_store_answers(store):
    # Left by an earlier outage (the journal holds documents, as the writer makes them).
    Journal(store.journal_path).append(
        [to_prediction_document(prediction(f"old-{i}")) for i in range(5)]
    )
    writer = PredictionLogWriter(store.journal_path, flush_interval=0.05)
    writer.write(prediction("new-1"))
    assert writer.flush(timeout=10)
    deadline = time.monotonic() + 10
    while count_prediction_logs() < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = writer.close()
    assert sorted(stored_request_ids()) == ["new-1"] + [f"old-{i}" for i in range(5)]
    assert stats.stored == 6
    assert not Journal(store.journal_path).pending()


def test_a_duplicate_request_id_is_stored_once(store):
    writer = PredictionLogWriter(store.journal_path, batch_size=10, flush_interval=0.05)
    for _ in range(3):
        writer.write(prediction("same"))
    writer.close()
    assert count_prediction_logs() == 1
    assert writer.stats().already_stored == 2
    assert get_database().name == store.database


def test_unreadable_journal_lines_are_kept_aside(store):
    journal = Journal(store.journal_path)
    journal.append([to_prediction_document(prediction("good-1"))])
    with open(journal.path, "a", encoding="utf-8") as handle:
        handle.write('{"_id": "torn", "timest\n')  # a line cut by a crash
    journal.append([to_prediction_document(prediction("good-2"))])

    report = replay_journal(journal.path)
    assert (report.read, report.inserted, report.unreadable) == (2, 2, 1)
    assert sorted(stored_request_ids()) == ["good-1", "good-2"]
    assert '"_id": "torn"' in journal.bad_path.read_text(encoding="utf-8")
    assert not journal.pending()
