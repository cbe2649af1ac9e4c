"""Where the store lives and how long to wait for it, read from the environment.

Environment variables (all optional):

``MONGODB_URI``
    A MongoDB connection string (``mongodb://host:27017``). Unset or empty: use the
    embedded store (mongomock persisted to ``MLOPS_STORE_DIR``).
``MONGODB_DB``
    Database name. Default: the database in ``MONGODB_URI`` if it names one, else ``mlops``.
``MLOPS_STORE_DIR``
    Folder of the embedded store. Default: ``.store/`` at the repository root when running
    from a checkout, else ``.store/`` in the current directory.
``MLOPS_JOURNAL_PATH``
    The prediction-log journal (JSON lines) used while MongoDB is unreachable. Default:
    ``<MLOPS_STORE_DIR>/journal/prediction_logs.jsonl``.
``MONGODB_TIMEOUT_MS``
    How long a call waits for an unreachable MongoDB before giving up (server selection
    and connect timeout). Default 2000. A ``serverSelectionTimeoutMS`` in the URI wins.
``MLOPS_STORE_FSYNC``
    ``0`` to skip ``fsync`` after each embedded-store write (faster, but a machine crash may
    lose the last writes; a process crash never does). Default ``1``.
``MLOPS_REQUIRE_MONGODB``
    ``1`` (or ``true``, ``yes``): a MongoDB server is required, so a missing ``MONGODB_URI``
    is an error instead of a silent fall-back to the embedded store (the compose stack sets
    it). Default ``0``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tabular.errors import StoreError

DEFAULT_DATABASE = "mlops"
DEFAULT_TIMEOUT_MS = 2000
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_store_dir() -> Path:
    """Return the default folder of the embedded store.

    Returns:
        ``.store/`` at the repository root when the package runs from a checkout (so the
        API and the flows share one store whatever their working directory), else
        ``.store/`` in the current directory (an installed package must not write into
        ``site-packages``).
    """
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / ".store"
    return Path.cwd() / ".store"


@dataclass(frozen=True)
class StoreSettings:
    """How to reach the store.

    Attributes:
        uri: MongoDB connection string, or ``None`` for the embedded store.
        database: Database name.
        store_dir: Folder of the embedded store.
        journal_path: JSON-lines journal of prediction logs written during an outage.
        timeout_ms: Longest wait for an unreachable MongoDB, in milliseconds.
        fsync: Whether the embedded store calls ``fsync`` after each write.
    """

    uri: str | None
    database: str
    store_dir: Path
    journal_path: Path
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    fsync: bool = True

    @property
    def embedded(self) -> bool:
        """Whether these settings select the embedded store."""
        return self.uri is None

    @property
    def location(self) -> str:
        """Where the data lives, for messages: the URI without password, or the folder."""
        return redact_uri(self.uri) if self.uri else str(self.store_dir)

    @property
    def host(self) -> str:
        """Where the data lives, for logs: the URI's hosts without credentials, or the folder."""
        return uri_hosts(self.uri) if self.uri else str(self.store_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        """Read the settings from environment variables.

        Args:
            env: The variables to read (default: ``os.environ``).

        Returns:
            The settings.

        Raises:
            StoreError: If ``MONGODB_URI`` is not a MongoDB URI, or is unset while
                ``MLOPS_REQUIRE_MONGODB`` asks for a server, or ``MONGODB_TIMEOUT_MS`` is
                not a positive whole number.
        """
        env = os.environ if env is None else env
        uri = env.get("MONGODB_URI", "").strip() or None
        required = env.get("MLOPS_REQUIRE_MONGODB", "").strip().lower() in ("1", "true", "yes")
        if required and uri is None:
            raise StoreError(
                "MONGODB_URI is not set, but MLOPS_REQUIRE_MONGODB=1 requires a MongoDB server: "
                "set MONGODB_URI (e.g. mongodb://mongo:27017), or unset MLOPS_REQUIRE_MONGODB "
                "to use the embedded store"
            )
        if uri is not None and not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise StoreError(
                f"MONGODB_URI must start with mongodb:// or mongodb+srv://, got '{redact_uri(uri)}'"
            )
        database = env.get("MONGODB_DB", "").strip()
        if not database and uri is not None:
            database = split_uri_database(uri)[1] or ""
        store_dir = Path(env.get("MLOPS_STORE_DIR", "").strip() or default_store_dir())
        journal = env.get("MLOPS_JOURNAL_PATH", "").strip()
        journal_path = Path(journal) if journal else store_dir / "journal" / "prediction_logs.jsonl"
        raw_timeout = env.get("MONGODB_TIMEOUT_MS", "").strip() or str(DEFAULT_TIMEOUT_MS)
        if not raw_timeout.isdigit() or int(raw_timeout) < 1:
            raise StoreError(
                f"MONGODB_TIMEOUT_MS must be a positive whole number of milliseconds, "
                f"got '{raw_timeout}'"
            )
        fsync = env.get("MLOPS_STORE_FSYNC", "1").strip().lower() not in ("0", "false", "no")
        return cls(
            uri=uri,
            database=database or DEFAULT_DATABASE,
            store_dir=store_dir,
            journal_path=journal_path,
            timeout_ms=int(raw_timeout),
            fsync=fsync,
        )


def redact_uri(uri: str) -> str:
    """Hide the password of a connection string, for messages and logs.

    Args:
        uri: A MongoDB URI.

    Returns:
        The URI with ``user:password@`` shown as ``user:***@``.
    """
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


def uri_hosts(uri: str) -> str:
    """Keep only the scheme and hosts of a connection string (no credentials, path, options).

    Args:
        uri: A MongoDB URI.

    Returns:
        E.g. ``mongodb://db:27017`` for ``mongodb://user:secret@db:27017/prod?tls=true``.
    """
    scheme, _, rest = uri.partition("://")
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return f"{scheme}://{hosts}"


def split_uri_database(uri: str) -> tuple[str, str | None]:
    """Remove the database path from a MongoDB URI.

    mongoengine lets the URI's database override the one it is given; removing it lets
    ``MONGODB_DB`` (and the tests' throw-away databases) win. When the URI has credentials
    and no ``authSource``, the removed database stays the authentication database, as the
    driver would have used it.

    Args:
        uri: A MongoDB URI.

    Returns:
        The URI without database path, and that database (``None`` when absent).
    """
    scheme, sep, rest = uri.partition("://")
    hosts, slash, tail = rest.partition("/")
    if not slash:
        return uri, None
    database, question, options = tail.partition("?")
    if not database:
        return uri, None
    if "@" in hosts and "authsource=" not in options.lower():
        options = f"{options}&authSource={database}" if options else f"authSource={database}"
    rebuilt = f"{scheme}{sep}{hosts}/"
    if options:
        rebuilt += f"?{options}"
    return rebuilt, database
