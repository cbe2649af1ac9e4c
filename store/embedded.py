"""An embedded MongoDB for development: mongomock's query engine over SQLite files.

When ``MONGODB_URI`` is unset, mongoengine gets :class:`EmbeddedMongoClient`: mongomock
matches filters, applies update operators and runs aggregations, and the documents live
in SQLite (standard library, WAL mode), one file a collection,
``<store_dir>/<database>/<collection>.sqlite3``. Each write operation is one transaction
(``BEGIN IMMEDIATE``: writers of every process are serialised, a read-modify-write cannot
interleave); nothing committed is lost or corrupted by ``kill -9``, and WAL frames carry
checksums, so a torn, zero-filled or garbage tail is ignored (``MLOPS_STORE_FSYNC=1`` also
syncs each commit, for power cuts). Readers never wait for a writer; there is no lock in
this module (a connection a thread). A damaged or foreign file is one ``StoreDamaged``
line naming it and the way to recover; the other collections keep working. Nothing is
cached: queries stream the collection and keep only what matches (a sorted query with a
limit keeps only the best ``skip + limit``). Lookups by ``_id`` use the primary key, other
queries scan; TTL indexes work (expired documents go at the next write, within a minute).
Not supported: renaming collections, transactions across collections.
"""

from __future__ import annotations

import calendar
import datetime as dt
import heapq
import inspect
import itertools
import numbers
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import bson
import mongomock
from bson.codec_options import CodecOptions
from bson.errors import InvalidDocument
from mongomock import aggregate, filtering
from mongomock.collection import Collection as _MockCollection
from mongomock.collection import Cursor as _MockCursor
from mongomock.database import Database as _MockDatabase
from pymongo.errors import BulkWriteError
from pymongo.results import InsertManyResult

from tabular.errors import StoreDamaged, StoreError, StoreUnavailable

SUFFIX = ".sqlite3"
#: Marks a file as an embedded-store collection (SQLite's ``application_id``: "mlop").
APPLICATION_ID = 0x6D6C6F70
#: Documents read per query while scanning: each chunk is its own short read.
CHUNK = 2000
#: Seconds between two deletions of expired documents (MongoDB's TTL monitor: 60 s).
TTL_INTERVAL_S = 60.0
_CODEC = CodecOptions(tz_aware=False)
_DOLLAR = operator.methodcaller("startswith", "$")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS documents (key PRIMARY KEY, body BLOB NOT NULL, expires REAL)",
    "CREATE INDEX IF NOT EXISTS expiring ON documents (expires) WHERE expires IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB)",
)

#: mongomock's private attributes and keywords this module relies on, by what has them:
#: ``pyproject.toml`` pins mongomock, :func:`missing_mongomock_internals` names any an
#: upgrade removed (``tests/test_store_embedded.py`` runs it).
MONGOMOCK_INTERNALS: dict[str, tuple[str, ...]] = {
    "mongomock.MongoClient.__init__": ("_store",),
    "mongomock.collection.Collection.__init__": ("_db_store",),
    "mongomock.MongoClient": ("_database_accesses", "_codec_options"),
    "mongomock.database.Database": ("_collection_accesses", "_ensure_valid_collection_name"),
    "mongomock.collection.Collection": ("_store", "_iter_documents", "_get_dataset",
                                        "_ensure_uniques", "_copy_only_fields"),
    "mongomock.collection.Cursor": ("_compute_results", "_factory", "_results", "_emitted",
                                    "_factory_last_generated_results", "_limit", "_skip"),
    "mongomock.filtering": ("filter_applies", "BsonComparable"),
    "mongomock.aggregate": ("process_pipeline", "_parse_expression"),
}  # fmt: skip


def missing_mongomock_internals() -> list[str]:
    """Name the private mongomock attributes this module needs that the installed one lacks.

    Returns:
        ``"<owner>.<attribute>"`` for each missing one (empty when all are there).
    """
    client = mongomock.MongoClient()
    collection = client["probe"]["probe"]
    owners = {"mongomock.MongoClient": client, "mongomock.database.Database": client["probe"],
              "mongomock.collection.Collection": collection, "mongomock.filtering": filtering,
              "mongomock.collection.Cursor": collection.find(), "mongomock.aggregate": aggregate}  # fmt: skip
    inits = {"mongomock.MongoClient.__init__": mongomock.MongoClient.__init__,
             "mongomock.collection.Collection.__init__": _MockCollection.__init__}  # fmt: skip
    missing = []
    for owner, names in MONGOMOCK_INTERNALS.items():
        if owner in inits:
            parameters = inspect.signature(inits[owner]).parameters
            missing += [f"{owner}({name}=...)" for name in names if name not in parameters]
        else:
            missing += [f"{owner}.{name}" for name in names if not hasattr(owners[owner], name)]
    return missing


def _key(value: Any) -> Any:
    """The SQLite key of an ``_id``: text and numbers as they are, anything else as BSON."""
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    return bson.encode({"": value})


@contextmanager
def _named(path: Path, timeout_s: float) -> Iterator[None]:
    """Turn SQLite's errors into one sentence naming the file and what to do."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        reason = str(exc)
        if "locked" in reason or "busy" in reason:
            message = f"stayed locked by another process's write for {timeout_s:g} s; try again"
            raise StoreUnavailable(
                f"embedded store file {path} {message} (MLOPS_STORE_TIMEOUT_S)"
            ) from exc
        what = "the disk is full" if "full" in reason else "cannot be used"
        raise StoreUnavailable(f"embedded store file {path}: {what} ({reason})") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreDamaged(
            f"embedded store file {path} is damaged or not a store file ({exc}); the other "
            f"collections are unaffected. Move it away, then re-import the dataset (mlops db "
            f"import), restore a backup, or save what it holds with `sqlite3 {path} .recover "
            f"| sqlite3 recovered{SUFFIX}`"
        ) from exc


class SqliteCollectionStore:
    """One collection in one SQLite file, with mongomock's ``CollectionStore`` interface.

    ``fsync``: sync every commit (``synchronous=FULL``); ``timeout_s``: the longest wait for
    another process's write.
    """

    def __init__(self, path: Path, name: str, fsync: bool, timeout_s: float):
        self.path, self.name, self.fsync, self.timeout_s = path, name, fsync, timeout_s
        self._local = threading.local()  # per thread: connection, write depth, indexes
        self._expired_at = 0.0

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            return local.connection
        if not create and not self.path.exists():
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _named(self.path, self.timeout_s):
            connection = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None,
                                         check_same_thread=False)  # fmt: skip
            try:
                if connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                    self._create(connection, self.timeout_s)
                connection.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            except BaseException:
                connection.close()
                raise
        local.connection, local.pid, local.depth, local.indexes = connection, os.getpid(), 0, None
        return connection

    @staticmethod
    def _create(connection: sqlite3.Connection, timeout_s: float) -> None:
        """Give a new file the store's tables, or refuse a file of another application."""
        connection.execute("BEGIN IMMEDIATE")  # another process may be creating it too
        try:
            ours = connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            if not ours and connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise sqlite3.DatabaseError("it holds the tables of another application")
            for statement in () if ours else (*_SCHEMA, f"PRAGMA application_id={APPLICATION_ID}"):
                connection.execute(statement)
            connection.execute("COMMIT")
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        # The switch to WAL needs the file to itself, and SQLite answers "locked" at once,
        # without waiting, while another process opens or creates it: wait here instead.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)  # as _named reads them
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        """Close this thread's connection (other threads close theirs when they end)."""
        if getattr(self._local, "pid", None) == os.getpid():
            self._local.connection.close()
        self._local = threading.local()

    def _rows(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple]:
        connection = self._connection(create=False)
        if connection is None:
            return []
        with _named(self.path, self.timeout_s):
            return connection.execute(sql, tuple(parameters)).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """Run the enclosed writes as one transaction (nested calls join the outer one)."""
        connection, local = self._connection(create=True), self._local
        if local.depth:
            local.depth += 1
            try:
                yield connection
            finally:
                local.depth -= 1
            return
        with _named(self.path, self.timeout_s):
            connection.execute("BEGIN IMMEDIATE")
        local.depth, local.indexes = 1, None
        try:
            with _named(self.path, self.timeout_s):
                if time.monotonic() - self._expired_at >= TTL_INTERVAL_S:  # a TTL monitor
                    self._expired_at = time.monotonic()
                    connection.execute("DELETE FROM documents WHERE expires <= ?", (time.time(),))
                yield connection
        except BulkWriteError:  # an unordered insert keeps what it inserted
            self._end(connection, "COMMIT")
            raise
        except BaseException:
            self._end(connection, "ROLLBACK")
            raise
        self._end(connection, "COMMIT")

    def _end(self, connection: sqlite3.Connection, how: str) -> None:
        self._local.depth, self._local.indexes = 0, None
        try:
            with _named(self.path, self.timeout_s):
                if connection.in_transaction:
                    connection.execute(how)
        finally:
            if connection.in_transaction:  # a failed COMMIT (disk full) leaves nothing half-done
                connection.execute("ROLLBACK")

    # -- indexes, kept in the meta table (only unique and TTL indexes change anything) -----

    @property
    def indexes(self) -> dict[str, dict]:
        """The collection's secondary indexes, by name (read once per write transaction)."""
        if getattr(self._local, "indexes", None) is not None:
            return self._local.indexes
        rows = self._rows("SELECT value FROM meta WHERE name = 'indexes'")
        indexes = bson.decode(rows[0][0], _CODEC) if rows else {}
        for spec in indexes.values():
            spec["key"] = [tuple(item) for item in spec["key"]]  # BSON made the tuples lists
        if getattr(self._local, "depth", 0):
            self._local.indexes = indexes
        return indexes

    @indexes.setter
    def indexes(self, value: dict[str, dict]) -> None:
        with self.write() as connection:
            before = self._ttl(self.indexes)
            connection.execute(
                "INSERT OR REPLACE INTO meta VALUES ('indexes', ?)", (bson.encode(value),)
            )
            self._local.indexes = None
            ttl, last = self._ttl(value), 0
            while ttl != before and (rows := connection.execute(
                "SELECT rowid, body FROM documents WHERE rowid > ? ORDER BY rowid LIMIT ?", (last, CHUNK)
            ).fetchall()):  # fmt: skip
                # A new TTL: each document's expiry, computed once and kept in a column.
                expiries = [
                    (self._expiry(bson.decode(body, _CODEC), ttl), rowid) for rowid, body in rows
                ]
                connection.executemany("UPDATE documents SET expires = ? WHERE rowid = ?", expiries)
                last = rows[-1][0]

    def create_index(self, index_name: str, index_dict: dict) -> None:
        """Record an index."""
        self.indexes = {**self.indexes, index_name: index_dict}

    def drop_index(self, index_name: str) -> None:
        """Forget an index (``KeyError`` when there is none of that name)."""
        indexes = self.indexes
        del indexes[index_name]
        self.indexes = indexes

    @staticmethod
    def _ttl(indexes: Mapping[str, dict]) -> tuple[str, float] | None:
        for spec in indexes.values():
            if spec.get("expireAfterSeconds") is not None and len(spec["key"]) == 1:
                return spec["key"][0][0], float(spec["expireAfterSeconds"])
        return None

    @staticmethod
    def _expiry(document: Mapping[str, Any], ttl: tuple[str, float]) -> float | None:
        moment = document.get(ttl[0])
        if isinstance(moment, dt.datetime):
            return calendar.timegm(moment.utctimetuple()) + ttl[1]
        return None

    @property
    def unique(self) -> bool:
        """Whether the collection has a unique index besides ``_id``."""
        return any(spec.get("unique") for spec in self.indexes.values())

    # -- documents -----------------------------------------------------------------------

    def rows(self, documents: Iterable[Mapping[str, Any]]) -> list[tuple[Any, bytes, Any]]:
        """Encode documents (with their ``_id``) into rows to insert."""
        ttl, encode = self._ttl(self.indexes), bson.encode
        if ttl is None:  # the common case, without a function call a document
            return [(_key(d["_id"]), encode(d), None) for d in documents]
        return [(_key(d["_id"]), encode(d), self._expiry(d, ttl)) for d in documents]

    def insert_rows(self, rows: list[tuple[Any, bytes, Any]], ordered: bool) -> list[int]:
        """Insert encoded rows; return the positions of those whose ``_id`` is taken."""
        insert = "INSERT INTO documents (key, body, expires) VALUES (?, ?, ?)"
        with self.write() as connection, _named(self.path, self.timeout_s):
            connection.execute("SAVEPOINT batch")
            try:
                connection.executemany(insert, rows)
                connection.execute("RELEASE batch")
                return []
            except sqlite3.IntegrityError:
                connection.execute("ROLLBACK TO batch")
                connection.execute("RELEASE batch")
            taken = []
            for position, row in enumerate(rows):  # the slow path, only when an _id is taken
                try:
                    connection.execute(insert, row)
                except sqlite3.IntegrityError:
                    taken.append(position)
                    if ordered:
                        break
            return taken

    def get(self, ids: Iterable[Any]) -> Iterator[dict]:
        """Yield the documents with these ``_id`` values (each once), in the order given."""
        for key in dict.fromkeys(map(_key, ids)):
            for (body,) in self._rows("SELECT body FROM documents WHERE key = ?", (key,)):
                yield bson.decode(body, _CODEC)

    @property
    def documents(self) -> Iterator[dict]:
        """Every document in insertion order, read in chunks (each its own short read)."""
        last = 0
        while rows := self._rows(
            "SELECT rowid, body FROM documents WHERE rowid > ? ORDER BY rowid LIMIT ?", (last, CHUNK)
        ):  # fmt: skip
            for _, body in rows:
                yield bson.decode(body, _CODEC)
            last = rows[-1][0]

    def __contains__(self, key: Any) -> bool:
        return bool(self._rows("SELECT 1 FROM documents WHERE key = ?", (_key(key),)))

    def __setitem__(self, key: Any, document: dict) -> None:
        with self.write() as connection, _named(self.path, self.timeout_s):
            connection.execute(
                "INSERT INTO documents (key, body, expires) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET body = excluded.body, expires = excluded.expires",
                self.rows([document])[0],
            )

    def __delitem__(self, key: Any) -> None:
        with self.write() as connection, _named(self.path, self.timeout_s):
            if not connection.execute("DELETE FROM documents WHERE key = ?", (_key(key),)).rowcount:
                raise KeyError(key)

    def __len__(self) -> int:
        rows = self._rows("SELECT count(*) FROM documents")
        return rows[0][0] if rows else 0

    @property
    def is_created(self) -> bool:
        """Whether the collection exists (documents, indexes, or created explicitly)."""
        return bool(self._rows("SELECT 1 FROM documents UNION ALL SELECT 1 FROM meta LIMIT 1"))

    def create(self) -> None:
        """Create the collection, empty."""
        with self.write() as connection:
            connection.execute("INSERT OR REPLACE INTO meta VALUES ('created', 1)")

    def drop(self) -> None:
        """Delete every document and index (the file stays: other processes may hold it)."""
        if self.path.exists():
            with self.write() as connection:
                connection.execute("DELETE FROM documents")
                connection.execute("DELETE FROM meta")


class SqliteDatabaseStore:
    """The collections of one database folder (mongomock's ``DatabaseStore`` interface)."""

    def __init__(self, folder: Path, fsync: bool, timeout_s: float):
        self.folder, self.fsync, self.timeout_s = folder, fsync, timeout_s
        self._stores: dict[str, SqliteCollectionStore] = {}

    def __getitem__(self, name: str) -> SqliteCollectionStore:
        if name not in self._stores:
            path = self.folder / f"{quote(name, safe='')}{SUFFIX}"
            self._stores[name] = SqliteCollectionStore(path, name, self.fsync, self.timeout_s)
        return self._stores[name]

    def __contains__(self, name: str) -> bool:
        return self[name].is_created

    @property
    def _collections(self) -> dict[str, SqliteCollectionStore]:
        names = sorted(unquote(p.name[: -len(SUFFIX)]) for p in self.folder.glob(f"*{SUFFIX}"))
        return {name: self[name] for name in names}

    def list_created_collection_names(self) -> list[str]:
        """Return the collections that exist."""
        return [name for name, store in self._collections.items() if store.is_created]

    def create_collection(self, name: str) -> SqliteCollectionStore:
        """Create an empty collection."""
        self[name].create()
        return self[name]

    def rename(self, name: str, new_name: str) -> None:
        """Not supported: raises ``NotImplementedError``."""
        raise NotImplementedError("the embedded store cannot rename collections")

    @property
    def is_created(self) -> bool:
        """Whether any collection of the database exists."""
        return bool(self.list_created_collection_names())


class SqliteServerStore:
    """The databases of one store folder (mongomock's ``ServerStore`` interface)."""

    def __init__(self, root: Path, fsync: bool, timeout_s: float):
        self.root, self.fsync, self.timeout_s = root, fsync, timeout_s
        self._databases: dict[str, SqliteDatabaseStore] = {}

    def __getitem__(self, name: str) -> SqliteDatabaseStore:
        if name not in self._databases:
            folder = self.root / quote(name, safe="")
            self._databases[name] = SqliteDatabaseStore(folder, self.fsync, self.timeout_s)
        return self._databases[name]

    def __contains__(self, name: str) -> bool:
        return self[name].is_created

    def list_created_database_names(self) -> list[str]:
        """Return the databases holding a collection."""
        names = sorted(unquote(p.name) for p in self.root.iterdir() if p.is_dir())
        return [name for name in names if name in self]


# -- the query side: mongomock's collection, cursor, database and client over the stores ------


class _Unsortable(Exception):
    """A sort key holds values only mongomock's own comparison can order."""


class _Descending:
    """A sort value that orders in reverse (for text and ids, which cannot be negated)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value


def _sort_value(key: str, document: dict, descending: bool) -> tuple:
    # MongoDB's order of types: null < numbers < strings < ObjectId < booleans < dates.
    value: Any = document
    for part in key.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif value is not None:
            raise _Unsortable
    sign = -1 if descending else 1
    if value is None:
        return (sign,)
    if isinstance(value, bool):
        return (8 * sign, value != descending)
    if isinstance(value, int | float):  # NaN sorts before every number
        return (
            (2 * sign, -sign * float("inf"), -sign)
            if value != value
            else (2 * sign, sign * value, sign)
        )
    if isinstance(value, dt.datetime):
        return (9 * sign, sign * (value - dt.datetime(1970, 1, 1)).total_seconds())
    if isinstance(value, str | bson.ObjectId):  # code points = MongoDB's UTF-8 byte order
        return (
            (3 if isinstance(value, str) else 7) * sign,
            _Descending(value) if descending else value,
        )
    raise _Unsortable


def _order(sort: Any) -> Any:
    keys = list(sort.items() if isinstance(sort, Mapping) else sort)
    if any(key.startswith("$") for key, _ in keys):
        raise _Unsortable
    return lambda document: tuple(_sort_value(key, document, way < 0) for key, way in keys)


class EmbeddedCursor(_MockCursor):
    """mongomock's cursor, keeping only ``skip + limit`` results and walking them by index."""

    def _compute_results(self, with_limit_and_skip=False):
        keep = (self._skip or 0) + abs(self._limit) if self._limit else None
        if self._results is None or self._factory_last_generated_results != (self._factory, keep):
            self._results = list(self._factory(keep=keep))
            self._factory_last_generated_results = (self._factory, keep)
        results = self._results[self._skip or 0 :] if with_limit_and_skip else self._results
        return results[: abs(self._limit)] if with_limit_and_skip and self._limit else results

    def __next__(self):
        results, index = self._compute_results(), (self._skip or 0) + self._emitted
        if (self._limit and self._emitted >= abs(self._limit)) or index >= len(results):
            raise StopIteration
        self._emitted += 1
        return results[index]

    next = __next__

    def clone(self):
        """Return a fresh cursor over the same query."""
        cursor = super().clone()
        cursor.__class__ = EmbeddedCursor
        return cursor


class _Unstreamable(Exception):
    """A ``$group`` meets a key or value that :func:`_stream_group` leaves to mongomock."""


#: The ``$group`` accumulators :func:`_stream_group` computes as it scans.
_STREAMED = ("$sum", "$avg", "$min", "$max")


def _streamable(group: Mapping[str, Any]) -> bool:
    return all(
        isinstance(spec, Mapping) and len(spec) == 1 and next(iter(spec)) in _STREAMED
        for field, spec in group.items()
        if field != "_id"
    )


def _start(fields: list[tuple[str, str, Any]]) -> list[Any]:
    """A group's running totals: ``[sum, count]`` for ``$sum`` and ``$avg``, else the extreme."""
    return [[0, 0] if op in ("$sum", "$avg") else None for _, op, _ in fields]


def _stream_group(documents: Iterable[dict], group: Mapping[str, Any]) -> list[dict]:
    """A ``$group`` stage computed while scanning: one running total a group and accumulator.

    The same result as mongomock's ``$group`` (which sorts and holds every document): groups
    in the order of their keys, each field as mongomock computes it (``$sum`` and ``$avg``
    of the numbers in scan order, ``$min``/``$max`` of the values that are not null), a
    missing key or value as mongomock treats it.

    Raises:
        _Unstreamable: For a key that is not text, a number, a date or null, or a value
            mongomock sums differently (``Decimal128``): the caller falls back to mongomock.
    """
    key_expression = group["_id"]
    fields = [(name, *next(iter(spec.items()))) for name, spec in group.items() if name != "_id"]
    totals: dict[Any, list[Any]] = {}
    parse = aggregate._parse_expression
    for document in documents:
        if key_expression:
            try:
                key = parse(key_expression, document, ignore_missing_keys=True)
            except KeyError:
                key = None
            if (
                isinstance(key, bool)  # True == 1 to Python, not to MongoDB
                or not isinstance(key, str | int | float | dt.datetime | None)  # lists, documents
                or key != key  # NaN: mongomock gives each its own group
            ):
                raise _Unstreamable
        else:
            key = None
        state = totals.get(key)
        if state is None:
            state = totals[key] = _start(fields)
        for i, (_, op, expression) in enumerate(fields):
            try:
                value = parse(expression, document)
            except KeyError:
                continue
            if op in ("$sum", "$avg"):
                if isinstance(value, numbers.Number):
                    state[i][0] += value
                    state[i][1] += 1
                elif isinstance(value, bson.Decimal128):
                    raise _Unstreamable
            elif value is not None and (
                # As Python's min and max compare (mongomock's): the first extreme value wins.
                state[i] is None or (value < state[i] if op == "$min" else value > state[i])
            ):
                state[i] = value
    if not totals and key_expression:
        return []
    if not totals:  # no document and no key: mongomock's one empty group
        totals[None] = _start(fields)
    out = []
    for key in sorted(totals, key=filtering.BsonComparable):
        document = {}
        for (name, op, _), state in zip(fields, totals[key], strict=True):
            if op == "$sum":
                document[name] = state[0]
            elif op == "$avg":
                document[name] = state[0] / float(state[1]) if state[1] else None
            else:
                document[name] = state
        document["_id"] = key
        out.append(document)
    return out


def _writing(name: str):
    base = getattr(_MockCollection, name)

    def method(self, *args, **kwargs):
        with self._store.write():
            return base(self, *args, **kwargs)

    method.__name__, method.__doc__ = name, f"Run mongomock's ``{name}`` as one SQLite transaction."
    return method


class EmbeddedCollection(_MockCollection):
    """A mongomock collection whose documents live in a :class:`SqliteCollectionStore`."""

    def find(self, *args, **kwargs):
        """Run mongomock's ``find`` with a cursor that keeps only what it returns."""
        cursor = super().find(*args, **kwargs)
        cursor.__class__ = EmbeddedCursor
        return cursor

    def _iter_documents(self, filter):
        # A filter on _id alone ({"_id": x} or {"_id": {"$in": [...]}}) reads by primary key.
        value = filter.get("_id") if len(filter) == 1 else None
        if isinstance(value, Mapping) and set(value) == {"$in"}:
            documents = self._store.get(value["$in"])
        elif isinstance(value, str | int | float | bson.ObjectId) and not isinstance(value, bool):
            documents = self._store.get([value])
        else:
            documents = self._store.documents
        return (
            (d for d in documents if filtering.filter_applies(filter, d)) if filter else documents
        )

    def _get_dataset(self, spec, sort, fields, as_class, keep=None):
        documents = self._iter_documents(spec)
        if sort:
            try:
                order = _order(sort)
                documents = (
                    heapq.nsmallest(keep, documents, key=order)
                    if keep
                    else sorted(documents, key=order)
                )
            except _Unsortable:
                yield from itertools.islice(
                    super()._get_dataset(spec, sort, fields, as_class), keep
                )
                return
        for document in itertools.islice(documents, keep):
            yield self._copy_only_fields(document, fields, as_class)

    def _copy_only_fields(self, doc, fields, container):
        # Each query decodes its own documents: nothing else holds them, no copy is needed.
        if not fields and container is dict:
            return doc
        return super()._copy_only_fields(doc, fields, container)

    def _ensure_uniques(self, new_data):
        # mongomock calls this after changing a document in place: the moment to store it.
        self._store[new_data["_id"]] = new_data
        if self._store.unique:
            super()._ensure_uniques(new_data)

    @staticmethod
    def _check(document: dict) -> None:
        # As MongoDB: no "$" at the top level; BSON refuses keys that are not text.
        if any(map(_DOLLAR, document)):
            raise InvalidDocument("Top-level field names cannot start with the '$' sign")
        if "_id" not in document:
            document["_id"] = bson.ObjectId()

    def insert_many(self, documents, ordered=True, bypass_document_validation=False, session=None):
        """Insert documents with one SQLite statement, in one transaction.

        Raises:
            BulkWriteError: Listing the documents whose ``_id`` was taken (the others are
                stored; with ``ordered``, those after the first refusal are not tried).
        """
        documents = list(documents) if isinstance(documents, Iterable) else documents
        if not isinstance(documents, list) or not documents:
            raise TypeError("documents must be a non-empty list")
        with self._store.write():
            if self._store.unique or session:
                return super().insert_many(documents, ordered, bypass_document_validation, session)
            for document in documents:
                self._check(document)
            taken = self._store.insert_rows(self._store.rows(documents), ordered)
            if taken:
                errors = [{"index": i, "code": 11000, "errmsg": "E11000 Duplicate Key Error",
                           "op": documents[i]} for i in taken]  # fmt: skip
                tried = taken[-1] + 1 if ordered else len(documents)
                raise BulkWriteError({"writeErrors": errors, "nInserted": tried - len(taken)})
        return InsertManyResult([document["_id"] for document in documents], acknowledged=True)

    def count_documents(self, filter, **kwargs):
        """Count matching documents without keeping them (an empty filter asks SQLite)."""
        count = max((sum(1 for _ in self._iter_documents(filter)) if filter else len(self._store))
                    - kwargs.get("skip", 0), 0)  # fmt: skip
        return min(count, kwargs["limit"]) if kwargs.get("limit") else count

    def estimated_document_count(self, **kwargs):
        """Count every document (SQLite's count)."""
        return len(self._store)

    def aggregate(self, pipeline, session=None, **kwargs):
        """Run an aggregation; a leading ``$match`` and ``$group`` are applied while scanning.

        A ``$group`` whose accumulators are ``$sum``, ``$avg``, ``$min`` or ``$max`` keeps one
        running total a group (:func:`_stream_group`): the collection is never held in
        memory. Other pipelines hold the matching documents, as mongomock does.
        """
        pipeline = list(pipeline)
        match = pipeline[0].get("$match") if pipeline and len(pipeline[0]) == 1 else None
        rest = pipeline[1:] if match is not None else pipeline
        group = rest[0].get("$group") if rest and len(rest[0]) == 1 else None
        if group is not None and _streamable(group):
            try:
                groups = _stream_group(self._iter_documents(match or {}), group)
            except _Unstreamable:
                pass  # a group key or value only mongomock's own $group handles
            else:
                return aggregate.process_pipeline(groups, self.database, rest[1:], session)
        if match is None:
            return super().aggregate(pipeline, session=session, **kwargs)
        return aggregate.process_pipeline(
            list(self.find(match)), self.database, pipeline[1:], session
        )

    def with_options(self, *args, **kwargs):
        """Return this collection (the embedded store has no read or write concerns)."""
        return self


for _name in ("insert_one", "update_one", "update_many", "replace_one", "find_one_and_delete",
              "find_one_and_replace", "find_one_and_update", "delete_one", "delete_many",
              "bulk_write", "create_index", "create_indexes", "drop_index", "drop_indexes"):  # fmt: skip
    setattr(EmbeddedCollection, _name, _writing(_name))


class EmbeddedDatabase(_MockDatabase):
    """A mongomock database whose collections are :class:`EmbeddedCollection`."""

    def get_collection(self, name, *args, **kwargs):
        """Return a collection of this database (created on first write)."""
        if name not in self._collection_accesses:
            self._ensure_valid_collection_name(name)
            self._collection_accesses[name] = EmbeddedCollection(
                self, name, _db_store=self._store, codec_options=self.codec_options
            )
        return self._collection_accesses[name]

    def with_options(self, *args, **kwargs):
        """Return this database (the embedded store has no read or write concerns)."""
        return self


class EmbeddedMongoClient(mongomock.MongoClient):
    """A mongomock client whose data lives in SQLite files under ``store_dir``.

    ``host``, ``port`` and other ``MongoClient`` options are accepted and ignored, as
    mongomock does; ``fsync`` and ``timeout_s`` are :class:`SqliteCollectionStore`'s.
    """

    def __init__(
        self, host=None, port=None, *, store_dir=None, fsync=False, timeout_s=10.0, **kwargs
    ):
        if store_dir is None:
            raise StoreError("the embedded store needs a folder (set MLOPS_STORE_DIR)")
        root = Path(store_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        kwargs.pop("_store", None)
        super().__init__(host, port, _store=SqliteServerStore(root, fsync, timeout_s), **kwargs)

    @property
    def store_dir(self) -> Path:
        """The folder holding the data."""
        return self._store.root

    def get_database(self, name=None, *args, **kwargs):
        """Return a database of the store."""
        if name is None:
            return self.get_default_database()
        if name not in self._database_accesses:
            self._database_accesses[name] = EmbeddedDatabase(
                self, name, _store=self._store[name], codec_options=self._codec_options
            )
        return self._database_accesses[name]

    def close(self):
        """Close this thread's SQLite connections (the data is all on disk)."""
        for database in self._store._databases.values():
            for store in database._stores.values():
                store.close()
