"""Errors a user can act on: each carries one readable sentence, shown without a traceback."""


class UserError(Exception):
    """A problem with the user's input (file, config, column, value) rather than a bug.

    The command-line interface prints ``str(error)`` on one line and exits with status 2.
    """


class ConfigError(UserError):
    """The dataset config file is missing, malformed or inconsistent."""


class DatasetError(UserError):
    """The data file cannot be read or does not match its config."""


class ValidationFailed(UserError):
    """The data failed the Great Expectations gate.

    Attributes:
        summary: The readable multi-line summary of failed expectations.
        docs_path: Path of the HTML Data Docs index, or ``None`` when not built.
    """

    def __init__(self, summary: str, docs_path: str | None = None):
        self.summary = summary
        self.docs_path = docs_path
        message = summary if docs_path is None else f"{summary}\nData Docs: {docs_path}"
        super().__init__(message)


class StoreError(UserError):
    """A database operation failed for a reason the user can fix (input, state, settings)."""


class StoreUnavailable(StoreError):
    """The store cannot be used now: MongoDB unreachable, or an embedded file locked or full."""


class RecordNotFound(StoreError):
    """No document has the requested id."""


class InvalidRecord(StoreError):
    """A document was refused by its schema; the message names each offending field."""


class StoreDamaged(StoreUnavailable):
    """A file of the embedded store is damaged or foreign; the message says how to recover."""


class Conflict(StoreError):
    """The write contradicts what is stored (e.g. a second, different outcome for a request)."""
