"""Where the study's independent units of work run: in this process (default) or on a cluster.

The search's (configuration, fold) fits, the SHAP runs and the horizon study's refits are
independent of each other: each reads only its inputs and returns its result. The study
hands them to a :class:`Runner` when it is given one, and runs them in this process
otherwise, exactly as it always has. A runner only decides *where* a unit runs: every unit
is seeded, so the same seed gives the same models, scores and choices wherever it ran.

The study knows no orchestration engine: ``flows.cluster`` implements a runner that submits
each unit as a Prefect task run on a Dask cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

#: One unit of work: a function importable by name (a worker process unpickles it) and its
#: positional arguments.
Call = tuple[Callable[..., Any], tuple]


class Runner(Protocol):
    """Runs independent units of work somewhere and returns their results in order.

    Attributes:
        scheduler: The address of the cluster's scheduler (``tcp://host:8786``): XGBoost's
            final refit goes through ``xgboost.dask`` there when the rows exceed
            ``xgboost_rows``.
        xgboost_rows: Development rows above which XGBoost's final refit runs on the
            cluster (``None``: never).
    """

    scheduler: str | None
    xgboost_rows: int | None

    def run(self, calls: Sequence[Call]) -> list:
        """Run every call, side by side where the runner can, and return their results.

        Args:
            calls: The units of work.

        Returns:
            Each call's result, in the order of ``calls``.
        """
        ...
