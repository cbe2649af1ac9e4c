"""The reference a drift check compares against: the served models' training rows.

Each pipeline run saves, in its run folder, the training rows of the served features, each
served model's predicted probability and the target, as Parquet (a fixed-seed sample of at
most ``monitoring.reference_rows`` rows). Its path and SHA-256 go into the run's manifest and
into both served models' metadata, so the monitor finds the reference of the model that
answered a logged request and knows the file is the one saved with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

#: File name of the reference in a run folder.
REFERENCE_FILE = "reference.parquet"


class ReferenceError(UserError):
    """The reference of a served model is missing, changed or unreadable."""


def probability_column(role: str) -> str:
    """Return the reference column holding a served model's probability of class 1.

    Args:
        role: ``primary`` or ``secondary``.

    Returns:
        The column name, e.g. ``probability_primary``.
    """
    return f"probability_{role}"


@dataclass(frozen=True)
class ReferenceInfo:
    """Where a reference frame was saved and what it holds.

    Attributes:
        path: The Parquet file (absolute).
        sha256: SHA-256 of the file's bytes.
        rows: Rows in the frame.
    """

    path: Path
    sha256: str
    rows: int

    def metadata(self) -> dict[str, Any]:
        """Return the keys a served model's metadata holds about its reference."""
        return {
            "reference_path": str(self.path),
            "reference_sha256": self.sha256,
            "reference_rows": self.rows,
        }


def build_reference(
    train: pd.DataFrame,
    columns: Sequence[str],
    target: str,
    pipelines: Mapping[str, Any],
    *,
    max_rows: int,
    seed: int,
) -> pd.DataFrame:
    """Build the reference frame from the training rows and the served pipelines.

    Args:
        train: The training rows the served models were fitted on.
        columns: The served input columns, in the contract's order.
        target: The 0/1 target column.
        pipelines: Fitted pipelines by role (``primary``, ``secondary``).
        max_rows: Keep at most this many rows (a fixed-seed sample, in the original order).
        seed: Seed of the sample.

    Returns:
        The served columns, the target and one ``probability_<role>`` column per pipeline.

    Raises:
        ValueError: If a probability column's name is already a served column or the target.
    """
    rows = train if len(train) <= max_rows else train.sample(max_rows, random_state=seed)
    rows = rows.sort_index()
    frame = rows[list(columns)].reset_index(drop=True)
    frame[target] = rows[target].to_numpy()
    for role, pipeline in pipelines.items():
        name = probability_column(role)
        if name in frame.columns:
            raise ValueError(f"reference column '{name}' clashes with a served column or target")
        frame[name] = pipeline.predict_proba(rows[list(columns)])[:, 1]
    return frame


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 of a file's bytes.

    Args:
        path: The file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_reference(frame: pd.DataFrame, path: str | Path) -> ReferenceInfo:
    """Write the reference frame as Parquet and hash the file.

    Args:
        frame: The frame from :func:`build_reference`.
        path: Where to write it (its folder is created).

    Returns:
        The absolute path, the file's SHA-256 and the row count.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return ReferenceInfo(path=path, sha256=file_sha256(path), rows=len(frame))


def load_reference(path: str | Path | None, sha256: str | None) -> pd.DataFrame:
    """Read a served model's reference, checking it is the file saved with the model.

    Args:
        path: The Parquet file named in the model's metadata.
        sha256: The hash recorded with it.

    Returns:
        The reference frame.

    Raises:
        ReferenceError: If the model has no reference (saved before references existed),
            the file is gone, or its bytes changed since the run saved it.
    """
    import pandas as pd

    if not path:
        raise ReferenceError(
            "this model was saved without a reference frame; retrain it with `make run`"
        )
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(
            f"reference {path} does not exist (was the run folder moved or deleted?); "
            "retrain with `make run`"
        )
    if sha256 and file_sha256(path) != sha256:
        raise ReferenceError(
            f"reference {path} changed since its run saved it (SHA-256 differs); retrain with "
            "`make run`"
        )
    return pd.read_parquet(path)
