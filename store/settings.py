"""Where the store lives and how long to wait for it, read from the environment (pydantic-settings).

Environment variables (all optional):

``MONGODB_URI``
    A MongoDB connection string (``mongodb://host:27017``), checked as a ``MongoDsn``. Unset
    or empty: the embedded store (SQLite files in ``MLOPS_STORE_DIR``).
``MONGODB_DB``
    Database name. Default: the database in ``MONGODB_URI`` if it names one, else ``mlops``.
``MLOPS_STORE_DIR``
    Folder of the embedded store. Default: ``.store/`` at the repository root when running
    from a checkout, else ``.store/`` in the current directory.
``MLOPS_JOURNAL_PATH``
    The prediction-log journal (JSON lines) used while the store cannot take logs. Default:
    ``<MLOPS_STORE_DIR>/journal/prediction_logs.jsonl``.
``MONGODB_TIMEOUT_MS``
    How long a call waits for an unreachable MongoDB before giving up (server selection
    and connect timeout). Default 2000. A ``serverSelectionTimeoutMS`` in the URI wins.
``MLOPS_STORE_TIMEOUT_S``
    How long a write to the embedded store waits for another process's write. Default 10.
``MLOPS_STORE_FSYNC``
    ``1`` to sync every embedded-store commit to the disk (survives a power cut; 2-5 ms a
    commit). Default ``0``: a process crash (``kill -9``) never loses a commit, a machine
    crash may lose the last ones, as with MongoDB's default write concern.
``MLOPS_REQUIRE_MONGODB``
    ``1`` (or ``true``, ``yes``): a MongoDB server is required, so a missing ``MONGODB_URI``
    is an error instead of a silent fall-back to the embedded store (the compose stack sets
    it). Default ``0``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    MongoDsn,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from tabular.errors import StoreError

DEFAULT_DATABASE = "mlops"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_DSN = TypeAdapter(MongoDsn)


def default_store_dir() -> Path:
    """Return the default folder of the embedded store.

    Returns:
        ``.store/`` at the repository root when the package runs from a checkout (so the
        API and the flows share one store whatever their working directory), else
        ``.store/`` in the current directory (an installed package must not write into
        ``site-packages``).
    """
    if (_REPO_ROOT / "pyproject.toml").is_file() and (_REPO_ROOT / ".git").exists():
        return _REPO_ROOT / ".store"
    return Path.cwd() / ".store"


def _mongodb_uri(value: str) -> str:
    # Checked as a MongoDsn, but kept as written: MongoDsn adds a default port, which a
    # mongodb+srv:// URI must not have.
    _DSN.validate_python(value)
    return value


class StoreSettings(BaseSettings):
    """How to reach the store (read by :meth:`from_env`, or given field by field).

    Attributes:
        uri: MongoDB connection string, or ``None`` for the embedded store.
        database: Database name (empty: from the URI, else ``mlops``).
        store_dir: Folder of the embedded store.
        journal_path: JSON-lines journal of prediction logs the store could not take.
        timeout_ms: Longest wait for an unreachable MongoDB, in milliseconds.
        store_timeout_s: Longest wait of an embedded-store write for another process's.
        fsync: Whether each embedded-store commit is synced to the disk.
        require_mongodb: Refuse to fall back to the embedded store.
    """

    model_config = SettingsConfigDict(
        frozen=True, populate_by_name=True, env_ignore_empty=True, extra="ignore"
    )

    uri: Annotated[str, AfterValidator(_mongodb_uri)] | None = Field(
        None, alias="MONGODB_URI", repr=False
    )
    database: str = Field("", alias="MONGODB_DB")
    store_dir: Path = Field(default_factory=default_store_dir, alias="MLOPS_STORE_DIR")
    journal_path: Path | None = Field(None, alias="MLOPS_JOURNAL_PATH")
    timeout_ms: PositiveInt = Field(2000, alias="MONGODB_TIMEOUT_MS")
    store_timeout_s: float = Field(10.0, gt=0, alias="MLOPS_STORE_TIMEOUT_S")
    fsync: bool = Field(False, alias="MLOPS_STORE_FSYNC")
    require_mongodb: bool = Field(False, alias="MLOPS_REQUIRE_MONGODB")

    @model_validator(mode="after")
    def _defaults(self) -> StoreSettings:
        if self.require_mongodb and self.uri is None:
            raise ValueError(
                "MONGODB_URI is not set, but MLOPS_REQUIRE_MONGODB=1 requires a MongoDB server: "
                "set MONGODB_URI (e.g. mongodb://mongo:27017), or unset MLOPS_REQUIRE_MONGODB "
                "to use the embedded store"
            )
        database = (
            self.database or (self.uri and split_uri_database(self.uri)[1]) or DEFAULT_DATABASE
        )
        journal = self.journal_path or self.store_dir / "journal" / "prediction_logs.jsonl"
        object.__setattr__(self, "database", database)
        object.__setattr__(self, "journal_path", journal)
        return self

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
            env: The variables to read (default: the process environment).

        Returns:
            The settings.

        Raises:
            StoreError: Naming the variable, if one is invalid (a URI that is not a MongoDB
                URI, a timeout that is not a positive number) or if ``MONGODB_URI`` is unset
                while ``MLOPS_REQUIRE_MONGODB`` asks for a server.
        """
        try:
            if env is None:
                return cls()
            return cls.model_validate({k: v for k, v in env.items() if str(v).strip()})
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = str(error["loc"][0]) if error["loc"] else ""
            given = (os.environ if env is None else env).get(name)
            if name == "MONGODB_URI":
                raise StoreError(
                    "MONGODB_URI must be a MongoDB URI (mongodb:// or mongodb+srv://)"
                    + (f", got '{redact_uri(str(given))}'" if given else "")
                ) from None
            message = error["msg"].removeprefix("Value error, ")
            raise StoreError(f"{name}: {message}" if name else message) from None


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
