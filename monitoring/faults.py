"""Faults that break models in production, injected into a window of rows to test the monitor.

Each fault spoils one column of the rows a client sends, as an upstream bug would, before
the rows reach the API (so the input contract still refuses what the API would refuse):

* ``units``: a numeric column in other units (every value times 1.6: miles sent as km);
* ``stuck``: a numeric column stuck at one value (a sensor repeating its window median);
* ``renamed``: a category renamed (its most frequent level spelt another way);
* ``missing``: 30 % of one column's values missing (a burst of nulls);
* ``shuffled``: one column shuffled across rows (a join that misaligned it): every value
  is still plausible, only its relation to the rest of the row is lost;
* ``clean``: no fault, the control.

The monitor evaluation (``benchmarks/monitor_eval.py``) injects each into windows of test
months and counts what the monitor flags and which column it ranks first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

Fault = Literal["units", "stuck", "renamed", "missing", "shuffled", "clean"]
FAULTS: tuple[Fault, ...] = ("units", "stuck", "renamed", "missing", "shuffled")
#: The unit factor of the ``units`` fault and the missing share of the ``missing`` fault.
UNIT_FACTOR = 1.6
MISSING_SHARE = 0.3
#: Which column kind each fault applies to.
KINDS = {
    "units": "number",
    "stuck": "number",
    "renamed": "category",
    "missing": "nullable",
    "shuffled": "number",
}


def describe(fault: Fault, column: str | None) -> str:
    """Say a fault in words, e.g. "distance times 1.6 (other units)"."""
    return {
        "units": f"{column} times {UNIT_FACTOR:g} (other units)",
        "stuck": f"{column} stuck at one value",
        "renamed": f"{column}: a category renamed",
        "missing": f"{column}: {MISSING_SHARE:.0%} missing",
        "shuffled": f"{column} shuffled across rows",
        "clean": "no fault (control)",
    }[fault]


def inject(rows: pd.DataFrame, fault: Fault, column: str | None, *, seed: int) -> pd.DataFrame:
    """Return a copy of ``rows`` with one fault injected into ``column``.

    Args:
        rows: The window's raw rows (as a client would send them).
        fault: The fault.
        column: The column it spoils (``None`` for ``clean``).
        seed: Seed of the random parts (which rows go missing, the shuffle).

    Returns:
        The spoiled copy.

    Raises:
        ValueError: For an unknown fault, or a column of the wrong kind.
    """
    import numpy as np
    import pandas as pd

    spoiled = rows.copy()
    if fault == "clean":
        return spoiled
    values = spoiled[column]
    rng = np.random.default_rng(seed)
    if fault in ("units", "stuck") and not pd.api.types.is_numeric_dtype(values):
        raise ValueError(f"fault '{fault}' needs a numeric column, '{column}' is not")
    if fault == "units":
        spoiled[column] = values * UNIT_FACTOR
    elif fault == "stuck":
        spoiled[column] = values.median()
    elif fault == "renamed":
        level = values.dropna().astype(str).value_counts().index[0]
        spoiled[column] = values.where(values.astype(str) != level, f"{level} (renamed)")
    elif fault == "missing":
        gone = rng.random(len(spoiled)) < MISSING_SHARE
        spoiled[column] = values.astype(object).where(~gone, None)
        if pd.api.types.is_numeric_dtype(values):
            spoiled[column] = pd.to_numeric(spoiled[column])
    elif fault == "shuffled":
        spoiled[column] = values.to_numpy()[rng.permutation(len(spoiled))]
    else:
        raise ValueError(f"unknown fault '{fault}'; known: {', '.join(FAULTS)}, clean")
    return spoiled
