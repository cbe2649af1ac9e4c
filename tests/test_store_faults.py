"""Faults that must not lose a prediction log: each one is caused on purpose.

A store error for one document of a batch, and a full disk, are injected into this
process's writer; every log ends stored, journaled or set aside with its reason, and none
is dropped.
"""

from __future__ import annotations

import errno

import pytest
from pymongo.errors import OperationFailure

from store import Journal, PredictionLogWriter, count_prediction_logs, replay_journal
from store.documents import PredictionLog
from tests.test_store import fresh_store, prediction


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
    kept = journal.refused_path.read_text(encoding="utf-8")
    assert '"_id": "poisoned"' in kept and "BSONObj size is invalid" in kept
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
