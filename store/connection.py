"""Connect mongoengine to a real MongoDB or to the embedded store, from settings.

``MONGODB_URI`` set: a real MongoDB, with short timeouts so that a dead server fails fast.
Unset: the embedded store (:mod:`store.embedded`), a development convenience that
persists to ``MLOPS_STORE_DIR``. The same documents and queries run on both.
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

#: Stores this process has already named in its log (``connect`` may run many times).
_ANNOUNCED: set[tuple[str, str, str]] = set()

ALIAS = mongoengine.DEFAULT_CONNECTION_NAME

#: Errors meaning "the server cannot be reached", as opposed to a refused operation.
UNREACHABLE = (pymongo_errors.ConnectionFailure, _MongoengineConnectionFailure)


@dataclass(frozen=True)
class StoreInfo:
    """Which store a connection uses.

    Attributes:
        kind: ``"mongodb"`` for a server, ``"embedded"`` for the local folder store.
        database: The database name.
        location: The URI's hosts (no credentials), or the store folder.
    """

    kind: Literal["mongodb", "embedded"]
    database: str
    location: str

    def describe(self) -> str:
        """Return one line saying where the data lives."""
        if self.kind == "embedded":
            return f"embedded store at {self.location}, database '{self.database}'"
        return f"MongoDB at {self.location}, database '{self.database}'"


def connect(settings: StoreSettings | None = None, *, check: bool = True) -> StoreInfo:
    """Connect the documents to the store named by the settings (replacing any connection).

    Args:
        settings: Where the store is (default: read from the environment).
        check: For a real MongoDB, ping it and create the indexes now, failing within the
            timeout when it is unreachable. Pass ``False`` in a service that must start
            while MongoDB is down (prediction logs then go to the journal).

    Returns:
        Which store is connected.

    Raises:
        StoreUnavailable: If ``check`` is true and MongoDB does not answer within
            ``settings.timeout_ms``.
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
        mongoengine.connect(
            db=settings.database,
            alias=ALIAS,
            host="mongodb://localhost",
            mongo_client_class=EmbeddedMongoClient,
            store_dir=str(settings.store_dir),
            fsync=settings.fsync,
            timeout_s=settings.store_timeout_s,
            uuidRepresentation="standard",
        )
        ensure_indexes()
        return _announce(StoreInfo("embedded", settings.database, str(settings.store_dir)))

    uri, _ = split_uri_database(settings.uri)
    options = {key.lower() for key in _uri_options(uri)}
    timeouts = {}
    # A timeout written in the URI wins over the default from MONGODB_TIMEOUT_MS.
    if "serverselectiontimeoutms" not in options:
        timeouts["serverSelectionTimeoutMS"] = settings.timeout_ms
    if "connecttimeoutms" not in options:
        timeouts["connectTimeoutMS"] = settings.timeout_ms
    mongoengine.connect(
        db=settings.database,
        alias=ALIAS,
        host=uri,
        uuidRepresentation="standard",
        tz_aware=False,
        **timeouts,
    )
    info = StoreInfo("mongodb", settings.database, settings.host)
    if check:
        try:
            ping()
            ensure_indexes()
        except StoreUnavailable as exc:
            reason = error_reason(exc.__cause__ or exc)
            raise StoreUnavailable(
                f"cannot reach MongoDB at {settings.location} ({reason}). Start it (e.g. "
                "`docker run -d -p 27017:27017 mongo:7`), fix MONGODB_URI, or unset MONGODB_URI to "
                "use the embedded store"
            ) from exc
    return _announce(info)


def _announce(info: StoreInfo) -> StoreInfo:
    """Log once per process which store is used: the embedded folder, or the server's hosts."""
    key = (info.kind, info.location, info.database)
    if key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        logger.info("store: %s", info.describe())
    return info


def disconnect() -> None:
    """Close the documents' connection, if any (safe to call twice)."""
    mongoengine.disconnect(ALIAS)


def get_database():
    """Return the connected pymongo (or embedded) database.

    Returns:
        The database object of the current connection.

    Raises:
        StoreUnavailable: If :func:`connect` was not called.
    """
    try:
        return mongoengine.get_db(ALIAS)
    except _MongoengineConnectionFailure as exc:
        raise StoreUnavailable("no database connection: call store.connect() first") from exc


def is_embedded() -> bool:
    """Whether the current connection is the embedded store."""
    from store.embedded import EmbeddedMongoClient

    return isinstance(get_database().client, EmbeddedMongoClient)


def ping() -> None:
    """Check that the store answers.

    Raises:
        StoreUnavailable: If it does not answer within the timeout.
    """
    try:
        get_database().command("ping")
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"MongoDB is unreachable ({error_reason(exc)})") from exc


def ensure_indexes() -> None:
    """Create the indexes every document declares (idempotent).

    On the embedded store only unique indexes are created: mongomock answers every query by
    scanning, so other indexes change nothing there, and creating them would load every
    collection (the whole dataset, in the API process) just to check they exist.

    Raises:
        StoreUnavailable: If the store cannot be reached.
    """
    try:
        embedded = is_embedded()
        for document in DOCUMENTS:
            specs = document._meta.get("index_specs") or []
            if embedded and not any(spec.get("unique") for spec in specs):
                continue
            document.ensure_indexes()
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"MongoDB is unreachable ({error_reason(exc)})") from exc


def _uri_options(uri: str) -> list[str]:
    query = uri.partition("?")[2]
    return [pair.partition("=")[0] for pair in query.split("&") if pair]


def error_reason(error: BaseException) -> str:
    """Reduce a pymongo or mongoengine error to its first line, for one-line messages.

    Args:
        error: The exception.

    Returns:
        Its message's first line without the topology description pymongo appends after
        ``", Timeout:"``; the exception's type name when it has no message.
    """
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__).split(", Timeout:")[0]
