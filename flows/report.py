"""Prefect tasks of the pipeline's last steps: store the run's rows and query them, write the PDF."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.caching import StepCache
from reports.note import NoteOutputs, RunResults, write_project_note
from store.proof import StoreProof, store_and_query


@task(name="store", cache_policy=StepCache(step="store"))
def store_task(config, data: pd.DataFrame, store: str = "") -> StoreProof:
    """Import the run's rows into MongoDB and keep the ``mlops db query`` output.

    Cached by the rows' data hash and the store's location: a second run with the same rows
    and the same store neither imports them again nor repeats the query (its proof is the
    first run's, and the report says so).

    Args:
        config: The dataset config.
        data: The prepared rows the run used.
        store: Where the store is (location and database, from the environment): part of
            the step's key, so that another store gets the rows.

    Returns:
        The proof (holds the command's error line when the store failed).
    """
    proof = store_and_query(config, data)
    logger = get_run_logger()
    if proof.ok:
        logger.info("stored %s rows (%s new) in %s", proof.rows, proof.inserted, proof.store)
    else:
        logger.warning("the store step failed: %s", proof.output)
    return proof


@task(name="report", cache_policy=NO_CACHE)
def report_task(run: RunResults, run_dir: Path) -> NoteOutputs:
    """Write the 4-page ``report.pdf`` into the run folder and publish where it is.

    Args:
        run: The run's typed results.
        run_dir: The run folder.

    Returns:
        The files written.
    """
    outputs = write_project_note(run, run_dir)
    create_markdown_artifact(
        key="project-note",
        markdown=f"Project note ({outputs.pages} pages): `{outputs.pdf}`",
        description="The run's PDF report",
    )
    return outputs
