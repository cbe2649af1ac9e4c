"""Where the store lives and how long to wait for it, read from the environment (pydantic-settings).

All optional: ``MONGODB_URI`` (a MongoDB URI, checked as a ``MongoDsn``; unset or empty:
the embedded store, SQLite files in ``MLOPS_STORE_DIR``, default ``.store/`` at the root
of a checkout, else in the current directory); ``MONGODB_DB`` (default: the URI's
database, else ``mlops``); ``MLOPS_JOURNAL_PATH`` (the journal of logs the store could not
take; default ``<MLOPS_STORE_DIR>/journal/prediction_logs.sqlite3``); ``MONGODB_TIMEOUT_MS``
(the longest wait for an unreachable MongoDB, default 2000; a ``serverSelectionTimeoutMS``
in the URI wins); ``MLOPS_STORE_TIMEOUT_S`` (the longest wait of an embedded write for
another process's, default 10); ``MLOPS_STORE_FSYNC`` (``1``: sync each embedded commit to
the disk, 2-5 ms a commit, survives a power cut; default ``0``: a ``kill -9`` never loses a
commit, a machine crash may lose the last ones, as MongoDB's default write concern);
``MLOPS_REQUIRE_MONGODB`` (``1``: a missing ``MONGODB_URI`` is an error, not a fall-back
to the embedded store; the compose stack sets it).
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
    """Return ``.store/`` at the root of a checkout, else in the current directory.

    From a checkout the API and the flows share it whatever their working directory; an
    installed package must not write into ``site-packages``.
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
    """How to reach the store: the variables above, by :meth:`from_env` or field by field."""

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
        journal = self.journal_path or self.store_dir / "journal" / "prediction_logs.sqlite3"
        object.__setattr__(self, "database", database)
        object.__setattr__(self, "journal_path", journal)
        return self

    @property
    def embedded(self) -> bool:
        """Whether these settings select the embedded store."""
        return self.uri is None

    @property
    def location(self) -> str:
        """For messages: the URI without password, or the folder."""
        return redact_uri(self.uri) if self.uri else str(self.store_dir)

    @property
    def host(self) -> str:
        """For logs: the URI's hosts without credentials, or the folder."""
        return uri_hosts(self.uri) if self.uri else str(self.store_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        """Read the settings from ``env`` (default: the process environment).

        Raises:
            StoreError: Naming the variable that is invalid, or ``MONGODB_URI`` when it is
                unset while ``MLOPS_REQUIRE_MONGODB`` asks for a server.
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
    """Hide the password of a connection string: ``user:password@`` becomes ``user:***@``."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


def uri_hosts(uri: str) -> str:
    """The scheme and hosts of a URI: ``mongodb://u:p@db:27017/prod?x=1`` gives ``mongodb://db:27017``."""
    scheme, _, rest = uri.partition("://")
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return f"{scheme}://{hosts}"


def split_uri_database(uri: str) -> tuple[str, str | None]:
    """Return the URI without its database path, and that database (``None`` when absent).

    mongoengine lets the URI's database override the one it is given; removing it lets
    ``MONGODB_DB`` (and the tests' throw-away databases) win. With credentials and no
    ``authSource``, the removed database stays the authentication database, as before.
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
