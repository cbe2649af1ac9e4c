"""Connect mongoengine to a real MongoDB or to the embedded store, from settings.

``MONGODB_URI`` set: a real MongoDB, with short timeouts so that a dead server fails fast.
Unset: the embedded store (:mod:`store.embedded`, SQLite files in ``MLOPS_STORE_DIR``).
The same documents and queries run on both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import mongoengine
from mongoengine.connection import ConnectionFailure as _MongoengineConnectionFailure
from pymongo import errors as pymongo_errors

from store.documents import DOCUMENTS
from store.settings import StoreSettings, split_uri_database
from tabular.errors import StoreError, StoreUnavailable

logger = logging.getLogger(__name__)
_ANNOUNCED: set[tuple[str, str, str]] = set()  # stores this process named in its log
ALIAS = mongoengine.DEFAULT_CONNECTION_NAME
#: Errors meaning "the server cannot be reached", as opposed to a refused operation.
UNREACHABLE = (pymongo_errors.ConnectionFailure, _MongoengineConnectionFailure)


@dataclass(frozen=True)
class StoreInfo:
    """Which store a connection uses: its kind, database and location (hosts or folder)."""

    kind: Literal["mongodb", "embedded"]
    database: str
    location: str

    def describe(self) -> str:
        """Return one line saying where the data lives."""
        where = "embedded store at" if self.kind == "embedded" else "MongoDB at"
        return f"{where} {self.location}, database '{self.database}'"


def connect(settings: StoreSettings | None = None, *, check: bool = True) -> StoreInfo:
    """Connect the documents to the store named by the settings (replacing any connection).

    Args:
        settings: Where the store is (default: read from the environment).
        check: For a real MongoDB, ping it and create the indexes now, failing within the
            timeout when it is unreachable. ``False`` lets a service start while MongoDB is
            down (prediction logs then go to the journal).

    Returns:
        Which store is connected.

    Raises:
        StoreUnavailable: If ``check`` and MongoDB does not answer within the timeout.
        StoreError: If the embedded store's folder cannot be created.
    """
    settings = settings or StoreSettings.from_env()
    disconnect()
    if settings.embedded:
        from store.embedded import EmbeddedMongoClient

        try:
            settings.store_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot use {settings.store_dir} as the embedded store folder ({exc.strerror}); "
                "set MLOPS_STORE_DIR to a writable folder, or MONGODB_URI to use a server"
            ) from exc
        mongoengine.connect(db=settings.database, alias=ALIAS, host="mongodb://localhost",
                            mongo_client_class=EmbeddedMongoClient, store_dir=str(settings.store_dir),
                            fsync=settings.fsync, timeout_s=settings.store_timeout_s,
                            uuidRepresentation="standard")  # fmt: skip
        ensure_indexes()
        return _announce(StoreInfo("embedded", settings.database, str(settings.store_dir)))
    uri, _ = split_uri_database(settings.uri)
    options = {pair.partition("=")[0].lower() for pair in uri.partition("?")[2].split("&")}
    # A timeout written in the URI wins over the default from MONGODB_TIMEOUT_MS.
    timeouts = {name: settings.timeout_ms for name in ("serverSelectionTimeoutMS", "connectTimeoutMS")
                if name.lower() not in options}  # fmt: skip
    mongoengine.connect(db=settings.database, alias=ALIAS, host=uri, uuidRepresentation="standard",
                        tz_aware=False, **timeouts)  # fmt: skip
    if check:
        try:
            ping()
            ensure_indexes()
        except StoreUnavailable as exc:
            raise StoreUnavailable(
                f"cannot reach MongoDB at {settings.location} ({error_reason(exc.__cause__ or exc)}). "
                "Start it (e.g. `docker run -d -p 27017:27017 mongo:7`), fix MONGODB_URI, or "
                "unset MONGODB_URI to use the embedded store"
            ) from exc
    return _announce(StoreInfo("mongodb", settings.database, settings.host))


def _announce(info: StoreInfo) -> StoreInfo:
    """Log once per process which store is used: the embedded folder, or the server's hosts."""
    if (info.kind, info.location, info.database) not in _ANNOUNCED:
        _ANNOUNCED.add((info.kind, info.location, info.database))
        logger.info("store: %s", info.describe())
    return info


def disconnect() -> None:
    """Close the documents' connection, if any (safe to call twice)."""
    mongoengine.disconnect(ALIAS)


def get_database():
    """Return the connected pymongo (or embedded) database (StoreUnavailable if none)."""
    try:
        return mongoengine.get_db(ALIAS)
    except _MongoengineConnectionFailure as exc:
        raise StoreUnavailable("no database connection: call store.connect() first") from exc


def is_embedded() -> bool:
    """Whether the current connection is the embedded store."""
    from store.embedded import EmbeddedMongoClient

    return isinstance(get_database().client, EmbeddedMongoClient)


def ping() -> None:
    """Check that the store answers (StoreUnavailable when not within the timeout)."""
    try:
        get_database().command("ping")
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"MongoDB is unreachable ({error_reason(exc)})") from exc


def ensure_indexes() -> None:
    """Create the indexes every document declares (idempotent; StoreUnavailable if unreachable).

    On the embedded store only unique indexes are created: it answers other queries by
    scanning, so other indexes would change nothing there.
    """
    try:
        embedded = is_embedded()
        for document in DOCUMENTS:
            specs = document._meta.get("index_specs") or []
            if not embedded or any(spec.get("unique") for spec in specs):
                document.ensure_indexes()
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"MongoDB is unreachable ({error_reason(exc)})") from exc


def error_reason(error: BaseException) -> str:
    """Reduce a pymongo or mongoengine error to its first line, for one-line messages.

    Without the topology description pymongo appends after ``", Timeout:"``; the type's
    name when the error has no message.
    """
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__).split(", Timeout:")[0]
