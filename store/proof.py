"""The run's proof of the database connection: store the run's rows, then run ``mlops db query``.

The pipeline imports the rows it used (idempotent: rows already stored are not stored
twice) and keeps the query's printed output, word for word, for the PDF report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from tabular.errors import UserError

#: Groups shown by the report's query (the largest ones).
QUERY_LIMIT = 8


@dataclass(frozen=True)
class StoreProof:
    """What the run did with the store.

    The equivalent command, what it printed (``error: ...`` when the store failed), whether
    it succeeded, where the data lives, the rows offered, the records newly stored and the
    wall time of the import and the query.
    """

    command: str
    output: str
    ok: bool
    store: str | None = None
    rows: int = 0
    inserted: int = 0
    seconds: float = 0.0


def query_output(
    info,
    dataset: str,
    *,
    by: str | None = None,
    month: str | None = None,
    measure: str | None = None,
    limit: int | None = None,
    markdown: bool = False,
) -> str:
    """Return exactly what ``mlops db query`` prints (without the final newline).

    ``info`` is the connected store (:class:`store.connection.StoreInfo`), ``markdown``
    asks for a Markdown table; the other arguments and the errors are
    :func:`store.transfer.summarize`'s.
    """
    from store.transfer import summarize

    result = summarize(dataset, by=by, month=month, measure=measure, limit=limit)
    table = result.to_markdown() if markdown else result.to_text()
    return f"{table}\n\n({len(result.rows)} group(s), computed by {info.describe()})"


def store_and_query(config, data: pd.DataFrame, limit: int = QUERY_LIMIT) -> StoreProof:
    """Import the run's rows into the store named by the environment, then query them.

    A store that cannot be reached, or that holds the dataset with other columns, does not
    fail the run: the proof then holds the one-line error the command would print. The
    config's ``monitoring.log_retention_days`` is applied on the way.

    Args:
        config: The dataset config (names the dataset and its column roles).
        data: The prepared rows the run used.
        limit: Groups shown by the query.

    Returns:
        The proof.
    """
    from store.connection import connect, disconnect
    from store.crud import apply_log_retention
    from store.transfer import import_dataset

    command = f"mlops db query --dataset {config.name} --limit {limit}"
    start = time.perf_counter()
    try:
        info = connect()
        try:
            report = import_dataset(config, frame=data)
            apply_log_retention(config.monitoring.log_retention_days)
            output = query_output(info, config.name, limit=limit)
        finally:
            disconnect()
    except UserError as exc:
        return StoreProof(
            command, f"error: {exc}", ok=False, seconds=round(time.perf_counter() - start, 2)
        )
    return StoreProof(
        command,
        output,
        ok=True,
        store=info.describe(),
        rows=report.rows,
        inserted=report.inserted,
        seconds=round(time.perf_counter() - start, 2),
    )
