"""The study's units of work as Prefect task runs on a Dask cluster (``mlops run --dask``).

:class:`DaskRunner` is a :class:`tabular.runner.Runner`: it submits each unit (a search fit,
a SHAP run, a horizon refit) as a run of the Prefect task :func:`unit_task` on
``prefect_dask.DaskTaskRunner``, connected to a running scheduler, and returns the results
in order. The task runs appear in the Prefect UI under the step that submitted them; Dask's
dashboard shows the workers. Without an address nothing here is used and Dask is never
imported: the pipeline runs as it always has.

Every worker needs the project installed (the application image, or ``pip install
'.[dask]'``) and to reach the pipeline's Prefect server: each task carries the pipeline's
Prefect settings, its ``PREFECT_API_URL`` included (docs/deploy.md).
"""

from __future__ import annotations

import contextvars
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from tabular.errors import UserError
from tabular.runner import Call
from tabular.training import one_blas_thread

#: Seconds to wait for the scheduler before telling the user it is unreachable.
CONNECT_SECONDS = 20


@dataclass(frozen=True)
class Cluster:
    """Where a run's units of work go: a Dask scheduler, and when XGBoost refits there.

    Attributes:
        address: The scheduler's address (``tcp://host:8786``).
        xgboost_rows: Development rows above which XGBoost's final refit runs on the cluster
            (``execution.xgboost_dask_rows``).
    """

    address: str
    xgboost_rows: int | None = None


def resolve_cluster(option: str | None, config) -> Cluster | None:
    """Choose the cluster of a run: ``--dask`` first, then the config's ``execution.dask``.

    Args:
        option: The ``--dask`` address (``None``: not given).
        config: The dataset config.

    Returns:
        The cluster, or ``None`` to run every unit in this process.
    """
    address = option or config.execution.dask
    if not address:
        return None
    return Cluster(address=address, xgboost_rows=config.execution.xgboost_dask_rows)


@task(name="unit", cache_policy=NO_CACHE, persist_result=False, task_run_name="{label}")
def unit_task(call: bytes, label: str):
    """Run one unit of work on a Dask worker, with one BLAS thread as in the pipeline's process.

    Args:
        call: The unit, ``(function, arguments)``, pickled.
        label: The task run's name (the unit's function).

    Returns:
        The function's result.
    """
    fn, args = pickle.loads(call)
    with one_blas_thread():  # the same arithmetic as the in-process run
        return fn(*args)


class DaskRunner:
    """Runs units of work as Prefect task runs on ``DaskTaskRunner`` (a context manager).

    Args:
        cluster: The scheduler to connect to.
    """

    def __init__(self, cluster: Cluster):
        self.scheduler = cluster.address
        self.xgboost_rows = cluster.xgboost_rows
        self._runner = None
        self._context: contextvars.Context | None = None

    def __enter__(self) -> DaskRunner:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise UserError(
                "--dask (or execution.dask) needs Dask: install the project's 'dask' extra "
                "(pip install -e '.[dask]'; make install and the image include it)"
            ) from None
        runner = DaskTaskRunner(
            address=self.scheduler, client_kwargs={"timeout": f"{CONNECT_SECONDS}s"}
        )
        runner.__enter__()
        try:
            _ = runner.client  # connects now, so that an unreachable scheduler is said here
        except (OSError, TimeoutError) as exc:
            runner.__exit__(None, None, None)
            raise UserError(
                f"cannot reach the Dask scheduler at {self.scheduler} within "
                f"{CONNECT_SECONDS} s ({exc}): start it (docker compose --profile dask up) "
                "or run without --dask / execution.dask"
            ) from None
        self._runner = runner
        # The Prefect context of the step that opened the runner (its settings, its task
        # run): units submitted from the study's own threads carry it too, so that the
        # workers report to the same server, under that step.
        self._context = contextvars.copy_context()
        return self

    def __exit__(self, *exc) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.__exit__(*exc)

    def run(self, calls: Sequence[Call]) -> list:
        """Submit every call as a task run, wait for all, and return their results in order.

        Args:
            calls: The units of work.

        Returns:
            Their results.

        Raises:
            RuntimeError: Outside the ``with`` block.
        """
        if self._runner is None:
            raise RuntimeError("use DaskRunner inside a with block")
        futures = self._context.copy().run(self._submit, calls)
        return [future.result() for future in futures]

    def _submit(self, calls: Sequence[Call]) -> list:
        # Pickled here: neither Prefect nor Dask walks into the arguments (frames, matrices,
        # fitted pipelines) looking for futures, nor rebuilds their tuples on the way.
        return [
            self._runner.submit(
                unit_task,
                parameters={
                    "call": pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL),
                    "label": fn.__name__,
                },
            )
            for fn, args in calls
        ]


@contextmanager
def runner_for(cluster: Cluster | None) -> Iterator[DaskRunner | None]:
    """Connect to a run's cluster for the block it guards.

    Args:
        cluster: The cluster (``None``: every unit runs in this process).

    Yields:
        The runner, or ``None``.
    """
    if cluster is None:
        yield None
        return
    with DaskRunner(cluster) as runner:
        yield runner
