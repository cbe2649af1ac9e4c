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

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def run_calls(calls: Sequence[Call], runner: Runner | None = None, threads: int = 2) -> list:
    """Run units of work on the runner, or in this process on up to ``threads`` threads.

    Args:
        calls: The units of work.
        runner: Where they run (``None``: here; a lone call runs in this thread).
        threads: Most threads used here (capped at the machine's cores).

    Returns:
        Each call's result, in the order of ``calls``.
    """
    if runner is not None:
        return runner.run(calls)
    if len(calls) == 1:
        fn, args = calls[0]
        return [fn(*args)]
    with ThreadPoolExecutor(max(1, min(threads, os.cpu_count() or 1))) as pool:
        futures = [pool.submit(fn, *args) for fn, args in calls]
        return [future.result() for future in futures]
