"""Faults that must not lose a prediction log, each caused on purpose.

A store error for one document of a batch and a full disk are injected into this process's
writer; real processes are killed with ``kill -9`` mid-batch; files get zero-filled and
garbage tails, are truncated or replaced by a foreign file; another process holds a long
write while this one reads. Every acknowledged log ends stored exactly once (or journaled,
or set aside with its reason), none is dropped, a damaged file is one readable line.

The tests that break the embedded store's files use it whatever ``MONGODB_URI`` says; the
others run on the store the environment names.
"""

from __future__ import annotations

import errno
import gc
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo.errors import OperationFailure

from bentos.logs import PredictionLogWriter
from flows.cli import main
from store import (
    Journal,
    StoreSettings,
    connect,
    count_prediction_logs,
    create_prediction_log,
    create_record,
    disconnect,
    find_prediction_logs,
    get_prediction_log,
    prediction_logs_frame,
    replay_journal,
)
from store.documents import PredictionLog
from store.journal import to_prediction_document
from store.transfer import import_dataset, summarize
from tabular.config import load_config
from tests.conftest import write_toy_dataset
from tests.test_store import fresh_store, prediction

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    yield from fresh_store(tmp_path, monkeypatch)


def stored_ids() -> list[str]:
    return sorted(d["_id"] for d in PredictionLog._get_collection().find({}, {"_id": 1}))


class _FailingCollection:
    """The connected collection, with ``insert_many`` failing as ``fail(documents)`` says."""

    def __init__(self, collection, fail):
        self._collection, self._fail = collection, fail

    def __getattr__(self, name):
        return getattr(self._collection, name)

    def insert_many(self, documents, *args, **kwargs):
        documents = list(documents)
        error = self._fail(documents)
        if error is not None:
            raise error
        return self._collection.insert_many(documents, *args, **kwargs)


def _inject(monkeypatch, fail) -> None:
    wrapper = _FailingCollection(PredictionLog._get_collection(), fail)
    monkeypatch.setattr(PredictionLog, "_get_collection", classmethod(lambda cls: wrapper))


def test_a_store_error_for_one_document_sets_it_aside_and_stores_the_rest(store, monkeypatch):
    """The store refuses a whole batch because of one document (not a per-document write error)."""

    def refuse_poison(documents):
        if any("poison" in d["features"] for d in documents):
            return OperationFailure("BSONObj size is invalid", code=10334)
        return None

    _inject(monkeypatch, refuse_poison)
    writer = PredictionLogWriter(store.journal_path, batch_size=20, flush_interval=0.05)
    for i in range(19):
        writer.write(prediction(f"log-{i:02d}"))
    writer.write(prediction("poisoned", features={"poison": 1}))
    assert writer.flush(timeout=20)
    stats = writer.close()
    assert stored_ids() == [f"log-{i:02d}" for i in range(19)]
    journal = Journal(store.journal_path)
    assert not journal.pending()
    [(document, reason)] = journal.set_aside_documents()
    assert document["_id"] == "poisoned" and "BSONObj size is invalid" in reason
    assert (stats.stored, stats.journaled, stats.set_aside, stats.dropped) == (19, 0, 1, 0)


def test_a_full_disk_ends_journaled_and_is_replayed_once(store, monkeypatch):
    full = {"on": True}

    def disk_full(documents):
        return OSError(errno.ENOSPC, "No space left on device") if full["on"] else None

    _inject(monkeypatch, disk_full)
    writer = PredictionLogWriter(
        store.journal_path, batch_size=10, flush_interval=0.05, retry_interval=0.2
    )
    for i in range(20):
        writer.write(prediction(f"full-{i:02d}"))
    assert writer.flush(timeout=20)
    assert count_prediction_logs() == 0
    journal = Journal(store.journal_path)
    assert sorted(d["_id"] for d in journal.read()) == [f"full-{i:02d}" for i in range(20)]
    stats = writer.close()
    assert (stats.stored, stats.journaled, stats.dropped) == (0, 20, 0)
    assert "No space left on device" in stats.last_error

    full["on"] = False  # space freed: the journal is replayed, each log stored once
    report = replay_journal(store.journal_path)
    assert (report.read, report.inserted) == (20, 20)
    assert stored_ids() == [f"full-{i:02d}" for i in range(20)]
    assert replay_journal(store.journal_path).read == 0


# -- real processes, killed with kill -9; damaged and foreign files -------------------------------

#: A process that writes batches of 100 logs through the writer and prints each batch's number
#: once the writer says it is durable (what the API waits for before answering).
ACKNOWLEDGING_WRITER = """
import sys
from bentos.logs import PredictionLogWriter
from store import connect, prediction_documents
from tests.test_store import prediction

connect()
writer = PredictionLogWriter(flush_interval=0.01)
shared = {k: v for k, v in prediction("x").items() if k not in ("request_id", "features")}
features = prediction("x")["features"]
for batch in range(100_000):
    ids = [f"kill-{batch:05d}-{i:03d}" for i in range(100)]
    shared.pop("prediction", None), shared.pop("probability", None)
    documents = prediction_documents(ids, [features] * 100, [1] * 100, [0.5] * 100, **shared)
    writer.submit(documents).result()
    print(batch, flush=True)
"""


def _run_and_kill(env: dict[str, str], acknowledged_batches: int) -> int:
    """Start the writer, kill -9 it once it acknowledged some batches; return the last one."""
    process = subprocess.Popen(
        [sys.executable, "-c", ACKNOWLEDGING_WRITER],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        last = -1
        while last < acknowledged_batches:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            last = int(line)
        time.sleep(random.uniform(0.0, 0.02))  # somewhere inside a later batch
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        rest = process.stdout.read().split()
        return int(rest[-1]) if rest else last
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def _stored_batches() -> dict[int, int]:
    batches: dict[int, int] = {}
    for request_id in stored_ids():
        if request_id.startswith("kill-"):
            batch = int(request_id.split("-")[1])
            batches[batch] = batches.get(batch, 0) + 1
    return batches


def test_kill_9_mid_batch_loses_no_acknowledged_log(store):
    env = {"MONGODB_DB": store.database, "MLOPS_STORE_DIR": str(store.store_dir),
           "MLOPS_JOURNAL_PATH": str(store.journal_path)}  # fmt: skip
    last = _run_and_kill(env, acknowledged_batches=20)
    batches = _stored_batches()
    # Every acknowledged batch is stored whole; ids are unique (the primary key).
    assert all(batches.get(b) == 100 for b in range(last + 1)), batches
    assert len(stored_ids()) == len(set(stored_ids()))
    if store.embedded:  # one transaction a batch: the interrupted one is all there or absent
        assert set(batches.values()) == {100} and max(batches) <= last + 1
    assert not Journal(store.journal_path).pending()
    # The store still reads and writes.
    writer = PredictionLogWriter(store.journal_path)
    writer.write(prediction("after-the-kill"))
    assert writer.close().stored == 1


def _copy_with_tail(source: Path, target: Path, file_suffix: str, tail: bytes) -> Path:
    shutil.copytree(source, target)
    files = list(target.rglob(f"prediction_logs.sqlite3{file_suffix}"))
    assert files, f"no prediction_logs.sqlite3{file_suffix} under {target}"
    with open(files[0], "ab") as handle:
        handle.write(tail)
    return target


def test_a_zero_filled_or_garbage_tail_loses_nothing_committed(tmp_path, monkeypatch):
    """A machine crash can leave zeros or garbage at the end of a file: nothing committed is lost."""
    monkeypatch.delenv("MONGODB_URI", raising=False)
    env = {"MONGODB_DB": "tails", "MLOPS_STORE_DIR": str(tmp_path / "store"),
           "MLOPS_JOURNAL_PATH": str(tmp_path / "journal.jsonl")}  # fmt: skip
    env["MONGODB_URI"] = ""  # the embedded store, whatever the environment says
    last = _run_and_kill(env, acknowledged_batches=10)  # the write-ahead log holds frames
    cases = [
        ("", bytes(8192), "zeros after the main file"),
        ("", os.urandom(8192 + 77), "garbage after the main file"),
        ("-wal", bytes(8192), "zeros after the write-ahead log"),
        ("-wal", os.urandom(8192 + 77), "garbage after the write-ahead log"),
    ]
    for number, (suffix, tail, label) in enumerate(cases):
        folder = _copy_with_tail(tmp_path / "store", tmp_path / f"copy-{number}", suffix, tail)
        settings = StoreSettings.from_env({"MLOPS_STORE_DIR": str(folder), "MONGODB_DB": "tails"})
        connect(settings)
        try:
            batches = _stored_batches()
            assert all(batches.get(b) == 100 for b in range(last + 1)), label
            assert set(batches.values()) == {100}, label
            writer = PredictionLogWriter(settings.journal_path)
            writer.write(prediction(f"after-{number}"))
            assert writer.close().stored == 1, label
            path = next(folder.rglob("prediction_logs.sqlite3"))
            with sqlite3.connect(path) as check:
                assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",), label
        finally:
            disconnect()


def test_a_damaged_or_foreign_file_is_one_line_and_spares_the_other_collections(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("MLOPS_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MLOPS_JOURNAL_PATH", str(tmp_path / "journal.jsonl"))
    settings = StoreSettings.from_env()
    config = load_config(write_toy_dataset(tmp_path / "orders"))
    connect(settings)
    import_dataset(config)
    writer = PredictionLogWriter(settings.journal_path)
    for i in range(50):
        writer.write(prediction(f"before-{i}"))
    assert writer.close().stored == 50
    disconnect()
    gc.collect()  # the writer thread's connection too: the last one folds the WAL into the file
    path = settings.store_dir / settings.database / "prediction_logs.sqlite3"
    assert not path.with_name(path.name + "-wal").exists()
    size = path.stat().st_size
    for damage in ("garbage pages", "a foreign file"):
        if damage == "garbage pages":  # SQLite's header kept, every page overwritten
            with open(path, "r+b") as handle:
                handle.seek(100)
                handle.write(random.Random(3).randbytes(size - 100))
        else:
            path.write_text("name,value\nthis is a CSV someone saved here\n")
        assert main(["db", "status"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "Traceback" not in error, error
        assert f"embedded store file {path} is damaged or not a store file" in error
        assert "other collections are unaffected" in error and "re-import" in error
        connect(settings)
        try:
            # The other collections work: the dataset is read, a record is added.
            assert summarize("orders", by="channel").rows
            assert create_record("orders", {"order_date": "2023-02-01", "returned": 0}).id
            # New logs end in the journal, none is dropped.
            writer = PredictionLogWriter(settings.journal_path, retry_interval=60)
            for i in range(5):
                writer.write(prediction(f"{damage[0]}-{i}"))
            stats = writer.close()
            assert (stats.stored, stats.journaled, stats.dropped) == (0, 5, 0), stats
            assert str(path) in stats.last_error
        finally:
            disconnect()


HOLDER = """
import sys, time
from store.embedded import EmbeddedMongoClient
logs = EmbeddedMongoClient(store_dir=sys.argv[1])[sys.argv[2]]["prediction_logs"]
store = logs._store
with store.write():
    logs.insert_many([{"_id": f"held-{i}", "n": i} for i in range(1000)])
    print("holding", flush=True)
    time.sleep(30)
"""


def test_a_read_answers_within_100_ms_while_another_process_holds_a_long_write(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("MLOPS_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MONGODB_DB", "held")
    settings = StoreSettings.from_env()
    connect(settings)
    try:
        create_prediction_log(prediction("already-there"))
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(settings.store_dir), settings.database],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout.readline().strip() == "holding", process.stderr.read()
            for read in (
                lambda: get_prediction_log("already-there"),
                lambda: count_prediction_logs(),
                lambda: find_prediction_logs(page_size=10),
                lambda: prediction_logs_frame(limit=10),
            ):
                started = time.perf_counter()
                read()
                assert time.perf_counter() - started < 0.1
            assert count_prediction_logs() == 1  # the other process's write is not committed
        finally:
            os.kill(process.pid, signal.SIGKILL)  # killed inside its transaction: rolled back
            process.wait(10)
        assert count_prediction_logs() == 1
        create_prediction_log(prediction("after-the-holder"))
        assert count_prediction_logs() == 2
    finally:
        disconnect()


def test_an_embedded_file_on_a_full_disk_ends_journaled_then_stored_once(tmp_path, monkeypatch):
    """SQLite's own "database or disk is full", made by capping the file's size."""
    import store.embedded as embedded

    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("MLOPS_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MLOPS_JOURNAL_PATH", str(tmp_path / "journal.jsonl"))
    settings = StoreSettings.from_env()
    connect(settings)
    try:
        create_prediction_log(prediction("first"))
        full = {"on": True}
        opened = embedded.SqliteCollectionStore._connection

        def capped(self, create):
            connection = opened(self, create)
            if connection is not None and self.name == "prediction_logs" and full["on"]:
                pages = connection.execute("PRAGMA page_count").fetchone()[0]
                connection.execute(f"PRAGMA max_page_count = {pages}")
            return connection

        monkeypatch.setattr(embedded.SqliteCollectionStore, "_connection", capped)
        writer = PredictionLogWriter(settings.journal_path, retry_interval=0.1)
        writer.submit(
            [to_prediction_document(prediction(f"full-{i:03d}")) for i in range(300)]
        ).result(timeout=30)
        assert writer.flush(timeout=30)
        stats = writer.stats()
        assert (stats.stored, stats.journaled, stats.dropped) == (0, 300, 0), stats
        assert "disk is full" in stats.last_error
        full["on"] = False  # space freed: a new connection has no cap
        embedded.SqliteCollectionStore.close(PredictionLog._get_collection()._store)
        deadline = time.monotonic() + 30
        while count_prediction_logs() < 301 and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = writer.close()
        assert count_prediction_logs() == 301 and stats.stored == 300
        assert not Journal(settings.journal_path).pending()
    finally:
        disconnect()


RACER = """
import sys
from store import connect, record_feedback
from tabular.errors import Conflict

connect()
outcome, won = int(sys.argv[1]), []
print("ready", flush=True)
sys.stdin.readline()  # both racers start together
for i in range(60):
    try:
        won.append(record_feedback(f"race-{i}", outcome).actual == outcome)
    except Conflict:
        won.append(False)
print("".join("1" if w else "0" for w in won))
"""


def test_two_processes_posting_contradicting_outcomes_at_once_one_wins_each_time(store):
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(outcome)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for outcome in (0, 1)
    ]
    assert all(racer.stdout.readline().strip() == "ready" for racer in racers)
    for racer in racers:
        racer.stdin.write("go\n")
        racer.stdin.flush()
    results = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in results]
    zero, one = (out.strip() for out, _ in results)
    # For every request exactly one outcome was accepted, and it is the one stored.
    assert all(a != b for a, b in zip(zero, one, strict=True)), (zero, one)
    from store import get_feedback

    assert [get_feedback(f"race-{i}").actual for i in range(60)] == [int(b) for b in one]


UPDATER = """
import sys
from store import connect, update_record

connect()
record_id, column = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
for i in range(1, 41):
    update_record(record_id, {column: float(i) if column == "price" else i})
"""


def test_concurrent_updates_of_other_columns_are_all_kept(store, tmp_path):
    """Each update is one ``$set``: two processes changing two columns lose neither."""
    config = load_config(write_toy_dataset(tmp_path / "orders"))
    import_dataset(config)
    record = create_record("orders", {"order_date": "2023-02-01", "returned": 0, "quantity": 1})
    updaters = [
        subprocess.Popen(
            [sys.executable, "-c", UPDATER, record.id, column],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for column in ("price", "quantity")
    ]
    assert all(updater.stdout.readline().strip() == "ready" for updater in updaters)
    for updater in updaters:
        updater.stdin.write("go\n")
        updater.stdin.flush()
    for updater in updaters:
        assert updater.wait(120) == 0, updater.stderr.read()
    from store import get_record

    values = get_record(record.id).values
    assert (values["price"], values["quantity"]) == (40.0, 40)
