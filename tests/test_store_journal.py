"""Prediction logs are never lost: the batching writer, the outage journal and its replay.

The outage is a MongoDB URI on a local port where nothing listens; the replay goes to the
test's store (embedded, or ``MONGODB_URI``'s server when set).
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import time
from pathlib import Path

import pytest

from bentos.logs import PredictionLogWriter
from store import (
    Journal,
    connect,
    count_prediction_logs,
    create_prediction_log,
    get_prediction_log,
    replay_journal,
)
from store.connection import get_database
from store.documents import PredictionLog
from store.journal import insert_documents, to_prediction_document
from store.settings import StoreSettings
from tabular.errors import StoreUnavailable
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
    assert (stats.enqueued, stats.journaled, stats.stored, stats.set_aside) == (LOGS, LOGS, 0, 0)
    assert "unreachable" in (stats.last_error or "")

    journaled = Journal(dead.journal_path).read()
    assert sorted(d["_id"] for d in journaled) == [f"req-{i:04d}" for i in range(LOGS)]
    assert journaled[0]["features"] == prediction("x")["features"]
    interrupted = dead.journal_path.with_name("interrupted.sqlite3")
    for suffix in ("", "-wal"):  # a copy of the journal: its file and its write-ahead log
        if Path(f"{dead.journal_path}{suffix}").exists():
            shutil.copy(f"{dead.journal_path}{suffix}", f"{interrupted}{suffix}")

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
    assert (stats.stored, stats.set_aside, stats.journaled, stats.pending) == (120, 2, 0, 0)
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


def test_a_journal_with_a_garbage_tail_replays_every_committed_log(store):
    journal = Journal(store.journal_path)
    journal.append([to_prediction_document(prediction(f"good-{i}")) for i in range(3)])
    journal.append([to_prediction_document(prediction("good-0"))])  # journaled twice: kept once
    for suffix in ("", "-wal"):  # what a machine crash can leave at the end of the files
        with open(str(journal.path) + suffix, "ab") as handle:
            handle.write(b"\x00" * 4096 + b"garbage")
    report = replay_journal(journal.path)
    assert (report.read, report.inserted, report.already_stored) == (3, 3, 0)
    assert sorted(stored_request_ids()) == ["good-0", "good-1", "good-2"]
    assert not journal.pending()


# -- refusals that are not duplicates, and values BSON cannot encode ----------------------------

#: MongoDB's code for a document refused by the collection's validator.
VALIDATION_FAILED = 121


class _RefusingCollection:
    """The embedded store's collection behind a validator refusing logs with ``features.poison``.

    mongomock has no collection validators; on a real MongoDB the test installs a real one.
    """

    def __init__(self, collection):
        self._collection = collection

    def __getattr__(self, name):
        return getattr(self._collection, name)

    def insert_many(self, documents, ordered=True):
        from pymongo.errors import BulkWriteError

        documents = list(documents)
        errors = [
            {"index": i, "code": VALIDATION_FAILED, "errmsg": "Document failed validation"}
            for i, d in enumerate(documents)
            if "poison" in d.get("features", {})
        ]
        good = [d for d in documents if "poison" not in d.get("features", {})]
        inserted = self._collection.insert_many(good, ordered=False) if good else None
        if errors:
            count = len(inserted.inserted_ids) if inserted else 0
            raise BulkWriteError({"writeErrors": errors, "nInserted": count})
        return inserted


@pytest.fixture
def refusing_store(store, monkeypatch):
    from store.connection import is_embedded

    if is_embedded():
        wrapper = _RefusingCollection(PredictionLog._get_collection())
        monkeypatch.setattr(PredictionLog, "_get_collection", classmethod(lambda cls: wrapper))
    else:
        # connect() made the collection (with its indexes). The application's own account
        # (readWrite, as CI's mongodb job connects) may not collMod it, so it is dropped and
        # made again with the validator, then given its indexes again.
        database = get_database()
        name = PredictionLog._get_collection_name()
        database.drop_collection(name)
        database.create_collection(name, validator={"features.poison": {"$exists": False}})
        PredictionLog.ensure_indexes()
    yield store


def test_a_refused_log_is_set_aside_and_later_batches_still_reach_mongodb(refusing_store):
    writer = PredictionLogWriter(
        refusing_store.journal_path, batch_size=50, flush_interval=0.05, retry_interval=60
    )
    for i in range(5):
        writer.write(prediction(f"first-{i}"))
    writer.write(prediction("bad", features={"poison": 1}))
    assert writer.flush(timeout=10)
    stats = writer.stats()
    assert (stats.stored, stats.set_aside, stats.journaled) == (5, 1, 0)
    assert "refused" in stats.last_error

    # No retry window opened by a refusal: the next batch goes to MongoDB, not the journal.
    for i in range(5):
        writer.write(prediction(f"second-{i}"))
    assert writer.flush(timeout=10)
    stats = writer.close()
    assert (stats.stored, stats.set_aside, stats.journaled) == (10, 1, 0)
    assert count_prediction_logs() == 10
    journal = Journal(refusing_store.journal_path)
    assert not journal.pending()  # nothing left to replay forever
    [(document, reason)] = journal.set_aside_documents()
    assert document["_id"] == "bad" and reason == "Document failed validation"


def test_a_replay_sets_refused_logs_aside_once(refusing_store):
    journal = Journal(refusing_store.journal_path)
    journal.append(
        [to_prediction_document(prediction(f"old-{i}")) for i in range(3)]
        + [to_prediction_document(prediction("old-bad", features={"poison": 1}))]
    )
    report = replay_journal(journal.path)
    assert (report.read, report.inserted, report.refused) == (4, 3, 1)
    assert not journal.pending()
    again = replay_journal(journal.path)
    assert (again.read, again.inserted, again.refused) == (0, 0, 0)
    assert [d["_id"] for d, _ in journal.set_aside_documents()] == ["old-bad"]


def test_numpy_scalars_are_stored_as_plain_values_and_one_bad_value_spoils_no_batch(store):
    import numpy as np

    writer = PredictionLogWriter(store.journal_path, batch_size=50, flush_interval=0.05)
    features = {
        "engines": np.int64(2),
        "temp": np.float32(71.5),
        "holiday": np.bool_(False),
        "sched_dep": np.datetime64("2013-07-01T05:15:00"),
        "carrier": np.str_("UA"),
    }
    writer.write(prediction("numpy-1", features=features))
    writer.write(prediction("unencodable", features={"carrier": object()}))
    for i in range(3):
        writer.write(prediction(f"plain-{i}"))
    assert writer.flush(timeout=10)
    stats = writer.close()
    assert (stats.stored, stats.set_aside) == (4, 1)
    assert "features.carrier" in stats.last_error
    stored = get_prediction_log("numpy-1").features
    assert stored == {
        "engines": 2,
        "temp": 71.5,
        "holiday": False,
        "sched_dep": dt.datetime(2013, 7, 1, 5, 15),
        "carrier": "UA",
    }
    assert [type(stored[k]) for k in ("engines", "temp", "holiday")] == [int, float, bool]


def test_hand_made_documents_with_numpy_values_are_refused_one_by_one(store):
    import numpy as np

    good = [to_prediction_document(prediction(f"ok-{i}")) for i in range(3)]
    bad = {**good[0], "_id": "np", "features": {"engines": np.int64(2)}}
    result = insert_documents([good[0], bad, *good[1:]])
    # The embedded store may have stored ok-0 before meeting the bad value (then counted as
    # already stored when retried alone); a server encodes the batch first. Nothing is lost.
    assert result.inserted + result.already_stored == 3
    assert [(doc["_id"], "features.engines" in reason) for doc, reason in result.refused] == [
        ("np", True)
    ]
    assert sorted(stored_request_ids()) == ["ok-0", "ok-1", "ok-2"]
