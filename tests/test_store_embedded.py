"""Several processes share one store; the embedded store behaves like mongomock, persisted.

The two-process tests run on whatever store the environment names (embedded, or
``MONGODB_URI``'s server); the tests of the embedded store's own mechanics (a drop, TTL,
sort order) use it directly, whatever the environment.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bson
import mongomock
import pytest

from store import count_prediction_logs
from store.embedded import (
    EmbeddedMongoClient,
    _stream_group,
    _Unstreamable,
    missing_mongomock_internals,
)
from tests.test_store import fresh_store

REPO = Path(__file__).resolve().parents[1]
LOGS = 300

WRITER = """
import sys
from bentos.logs import PredictionLogWriter
from store import connect
from tests.test_store import prediction

connect()
writer = PredictionLogWriter(batch_size=64, flush_interval=0.05)
first, count = int(sys.argv[1]), int(sys.argv[2])
for i in range(first, first + count):
    writer.write(prediction(f"proc-{i:05d}"))
stats = writer.close()
print(stats.stored, stats.already_stored, stats.journaled, stats.set_aside)
"""

READER = """
from store import connect, count_prediction_logs
from store.documents import PredictionLog

connect()
ids = [d["_id"] for d in PredictionLog._get_collection().find({}, {"_id": 1})]
print(count_prediction_logs(), len(ids), len(set(ids)))
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    yield from fresh_store(tmp_path, monkeypatch)


def run_python(code: str, *args: str) -> str:
    """Run code in a new Python process with the test's environment; return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_two_processes_share_the_store(store):
    written = run_python(WRITER, "0", str(LOGS))
    assert written == f"{LOGS} 0 0 0"
    # Another process, started after the writer exited (a restart), reads exactly N.
    assert run_python(READER) == f"{LOGS} {LOGS} {LOGS}"
    # And this process, which held the store open all along, sees them too.
    assert count_prediction_logs() == LOGS


def test_concurrent_writers_never_duplicate(store):
    """Two processes write overlapping request ids at the same time: each id is stored once."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), first, str(LOGS)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first in ("0", str(LOGS // 2))
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append([int(n) for n in out.split()])
    stored = sum(r[0] for r in results)
    already = sum(r[1] for r in results)
    distinct = LOGS + LOGS // 2
    assert stored == distinct and already == 2 * LOGS - distinct
    assert run_python(READER) == f"{distinct} {distinct} {distinct}"


# -- the embedded store's own mechanics ------------------------------------------------------


OPENER = """
import sys, time
from pathlib import Path
from store.embedded import SqliteCollectionStore

folder, rounds, failed = Path(sys.argv[1]), int(sys.argv[2]), []
print("ready", flush=True)
for i in range(rounds):
    while not (folder / f"go-{i}").exists():  # every process opens file i at once
        time.sleep(0.0002)
    collection = SqliteCollectionStore(folder / f"c{i}.sqlite3", "feedback", False, 10.0)
    try:
        with collection.write() as connection:
            connection.execute("SELECT count(*) FROM documents").fetchone()
    except Exception as exc:
        failed.append(f"{i}: {exc}")
    collection.close()
print(len(failed), failed[:3])
"""


def test_processes_creating_one_file_at_once_all_get_it(tmp_path):
    """The switch of a new file to WAL, which SQLite refuses at once while another process
    opens the file, waits like every other lock (it failed about one time in 100 here)."""
    rounds = 150
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(OPENER), str(tmp_path), str(rounds)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    assert all(opener.stdout.readline().strip() == "ready" for opener in openers)
    for i in range(rounds):
        (tmp_path / f"go-{i}").touch()
        time.sleep(0.01)
    for opener in openers:
        out, err = opener.communicate(timeout=120)
        assert opener.returncode == 0, err
        assert out.strip() == "0 []", out


def test_updates_deletes_indexes_and_generated_ids_reach_another_process(tmp_path):
    folder = tmp_path / "store"
    things = EmbeddedMongoClient(store_dir=folder)["db"]["things"]
    things.create_index("key", unique=True)
    things.insert_many([{"key": i, "tag": "a"} for i in range(10)])
    things.update_many({"key": {"$gte": 5}}, {"$set": {"tag": "b"}})
    things.delete_one({"key": 0})
    upserted = things.update_one({"key": 99}, {"$set": {"tag": "new"}}, upsert=True).upserted_id
    things.find_one_and_update({"key": 1}, {"$inc": {"hits": 1}})

    code = f"""
    from store.embedded import EmbeddedMongoClient
    from pymongo.errors import DuplicateKeyError
    things = EmbeddedMongoClient(store_dir={str(folder)!r})["db"]["things"]
    print(things.count_documents({{}}), things.count_documents({{"tag": "b"}}))
    print(things.find_one({{"key": 99}})["_id"], things.find_one({{"key": 1}})["hits"])
    try:
        things.insert_one({{"key": 3}})
    except DuplicateKeyError:
        print("unique index enforced")
    things.insert_one({{"key": 100}})
    """
    lines = run_python(code).splitlines()
    assert lines == ["10 5", f"{upserted} 1", "unique index enforced"]
    # The other process's insert is visible here without reconnecting.
    assert things.find_one({"key": 100}) is not None
    assert things.count_documents({}) == 11


def test_a_drop_is_seen_by_other_processes(tmp_path):
    folder = tmp_path / "store"
    client = EmbeddedMongoClient(store_dir=folder)
    things = client["db"]["things"]
    things.insert_many([{"_id": i, "n": i} for i in range(100)])
    for _ in range(3):
        things.update_many({}, {"$inc": {"n": 1}})
    count = 'print(c["db"]["things"].count_documents({}), c["db"]["things"].find_one({"_id": 7}))'
    code = f"""
    from store.embedded import EmbeddedMongoClient
    c = EmbeddedMongoClient(store_dir={str(folder)!r})
    {count}
    """
    assert run_python(code) == "100 {'_id': 7, 'n': 10}"
    assert things.find_one({"_id": 7}) == {"_id": 7, "n": 10}

    client.drop_database("db")
    assert client.list_database_names() == []
    assert run_python(code) == "0 None"
    things.insert_one({"_id": 1})
    assert run_python(code) == "1 None"


def test_a_ttl_index_deletes_expired_documents(tmp_path, monkeypatch):
    import store.embedded as embedded

    monkeypatch.setattr(embedded, "TTL_INTERVAL_S", 0.0)
    things = EmbeddedMongoClient(store_dir=tmp_path / "store")["db"]["things"]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    things.insert_many(
        [{"_id": i, "at": now - dt.timedelta(hours=i)} for i in range(5)] + [{"_id": "no date"}]
    )
    things.create_index("at", expireAfterSeconds=int(2.5 * 3600))  # existing documents too
    things.insert_one({"_id": "old", "at": now - dt.timedelta(days=1)})
    things.insert_one({"_id": "new", "at": now})  # any write deletes what expired
    assert sorted(map(str, things.distinct("_id"))) == ["0", "1", "2", "new", "no date"]
    things.drop_index("at_1")
    things.insert_one({"_id": "older", "at": now - dt.timedelta(days=2)})
    things.insert_one({"_id": "trigger"})
    assert things.find_one({"_id": "older"}) is not None


def test_queries_answer_like_mongomock(tmp_path):
    documents = [
        {"_id": i, "v": value, "d": {"x": i % 3}}
        for i, value in enumerate(
            [3, "b", None, 2.5, True, dt.datetime(2020, 1, 1), "a", 1, False, -1, bson.ObjectId()]
        )
    ]
    documents.append({"_id": 99, "d": {"x": 1}})  # missing "v"
    embedded = EmbeddedMongoClient(store_dir=tmp_path / "store")["db"]["c"]
    plain = mongomock.MongoClient()["db"]["c"]
    embedded.insert_many([dict(d) for d in documents])
    plain.insert_many([dict(d) for d in documents])

    def ids(collection, **kwargs):
        return [d["_id"] for d in collection.find({}, **kwargs)]

    for sort in ([("v", 1)], [("v", -1)], [("d.x", 1), ("_id", -1)], [("d.x", -1), ("v", 1)]):
        assert ids(embedded, sort=sort) == ids(plain, sort=sort), sort
    assert ids(embedded, sort=[("v", 1)], skip=3, limit=4) == ids(plain, sort=[("v", 1)])[3:7]
    # A sorted query with a limit keeps only the best documents while scanning.
    mixed = [("d.x", -1), ("_id", 1)]
    assert ids(embedded, sort=mixed, limit=5) == ids(plain, sort=mixed)[:5]
    assert list(embedded.find({"_id": 4})) == list(plain.find({"_id": 4}))
    # mongomock orders NaN inconsistently; the embedded store puts it first, as MongoDB does.
    embedded.insert_one({"_id": "nan", "v": float("nan")})
    assert ids(embedded, sort=[("v", 1)])[2] == "nan"
    assert embedded.find_one({"_id": 404}) is None
    pipeline = [{"$match": {"d.x": 1}}, {"$group": {"_id": "$d.x", "n": {"$sum": 1}}}]
    assert list(embedded.aggregate(pipeline)) == list(plain.aggregate(pipeline))


def test_a_group_computed_while_scanning_answers_like_mongomock(tmp_path):
    """``$group`` with ``$sum``/``$avg``/``$min``/``$max`` streams; the answers stay mongomock's."""
    rng = random.Random(0)
    values = [None, 0, 1, 2.5, -3, True, "x", float("nan"), 10**12, 0.1]
    documents = []
    for i in range(400):
        document = {"_id": i, "g": rng.choice(["a", "b", None, 1, 1.0, 2, "c"]),
                    "when": dt.datetime(2021, 1, 1 + i % 28), "v": {"n": rng.choice(values)},
                    "k": rng.choice([True, False, 0, 1, 2])}  # fmt: skip
        if i % 7 == 0:
            del document["g"]  # a missing key groups with null
        if i % 11 == 0:
            del document["v"]["n"]  # a missing value is skipped
        documents.append(document)
    embedded = EmbeddedMongoClient(store_dir=tmp_path / "store")["db"]["c"]
    plain = mongomock.MongoClient()["db"]["c"]
    embedded.insert_many([dict(d) for d in documents])
    plain.insert_many([dict(d) for d in documents])
    group = {"rows": {"$sum": 1}, "total": {"$sum": "$v.n"}, "mean": {"$avg": "$v.n"},
             "low": {"$min": "$when"}, "high": {"$max": "$when"}}  # fmt: skip
    pipelines = [
        [{"$group": {"_id": "$g", **group}}],
        [{"$match": {"_id": {"$gte": 100}}}, {"$group": {"_id": "$g", **group}},
         {"$sort": {"rows": -1, "_id": 1}}, {"$limit": 3}],
        [{"$group": {"_id": None, "rows": {"$sum": 1}, "mean": {"$avg": "$v.n"}}}],
        [{"$match": {"_id": -1}}, {"$group": {"_id": "$g", "rows": {"$sum": 1}}}],  # no match
        [{"$match": {"_id": -1}}, {"$group": {"_id": None, "rows": {"$sum": 1}}}],
        # Keys only mongomock's own $group handles: documents, booleans.
        [{"$group": {"_id": {"g": "$g"}, "rows": {"$sum": 1}}}],
        [{"$group": {"_id": "$k", "rows": {"$sum": 1}}}],
    ]  # fmt: skip

    def same(left, right):
        # NaN != NaN: compare what the answers print.
        return repr(list(left)) == repr(list(right))

    for pipeline in pipelines:
        assert same(embedded.aggregate(pipeline), plain.aggregate(pipeline)), pipeline
    # The first pipelines do not fall back to mongomock's $group: they are streamed.
    streamed = _stream_group(iter([dict(d) for d in documents]), {"_id": "$g", **group})
    assert same(streamed, plain.aggregate(pipelines[0]))
    with pytest.raises(_Unstreamable):
        _stream_group(iter(documents), {"_id": "$k", "rows": {"$sum": 1}})


def test_mongomock_internals_the_embedded_store_needs_are_there():
    # store/embedded.py reaches into mongomock's private attributes; mongomock is
    # pinned for that reason. If an upgrade drops one, this names it.
    missing = missing_mongomock_internals()
    assert not missing, (
        f"mongomock {mongomock.__version__} lacks {', '.join(missing)}, which "
        "store/embedded.py relies on: keep the pinned version or adapt the store"
    )


def test_the_internals_check_names_what_an_upgrade_removed(monkeypatch):
    monkeypatch.delattr(mongomock.collection.Cursor, "_compute_results")
    monkeypatch.delattr(mongomock.filtering, "filter_applies")
    assert missing_mongomock_internals() == [
        "mongomock.collection.Cursor._compute_results",
        "mongomock.filtering.filter_applies",
    ]
