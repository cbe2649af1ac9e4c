"""The service's prediction logs: one document per answered row, and the ``/metrics`` counter.

Every answer's log is built from the contract-checked values of its rows (no per-row
validation: :func:`store.journal.prediction_documents` checks what the rows share once)
and handed to the :class:`store.PredictionLogWriter` in one piece per request; the
request is answered once the writer made them durable (stored, journaled or set aside).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from bentos.registry import ServedModel
from store.journal import OUTCOMES, prediction_documents

#: The Prometheus counter on ``/metrics`` (``mlops_prediction_logs_total{outcome=...}``).
COUNTER = "mlops_prediction_logs"


@functools.cache
def _counter():
    # prometheus_client is imported here, in the worker: BentoML sets its multiprocess
    # folder after the service module is imported, and the client reads it at import.
    from prometheus_client import Counter

    counter = Counter(
        COUNTER,
        "Prediction logs by what became of them: stored, already_stored (a replay), "
        "journaled (store unavailable, replayed later), set_aside (refused, kept with the "
        "reason), dropped (none of these: must stay 0)",
        ["outcome"],
    )
    for outcome in OUTCOMES:
        counter.labels(outcome=outcome)  # every outcome shows, 0 included
    return counter


def count_outcome(outcome: str, count: int) -> None:
    """Add logs to the ``/metrics`` counter of their outcome (the writer's ``on_outcome``).

    Args:
        outcome: One of :data:`store.journal.OUTCOMES`.
        count: How many logs.
    """
    _counter().labels(outcome=outcome).inc(count)


def log_documents(
    served: ServedModel,
    names: Sequence[str],
    request_ids: Sequence[str],
    rows: Sequence[Sequence[Any]],
    probabilities: Sequence[float],
    predictions: Sequence[int],
    latency_ms: float,
) -> list[dict[str, Any]]:
    """Build the log documents of one answered request.

    Args:
        served: The model that answered.
        names: The input names, in the rows' order.
        request_ids: One id per row.
        rows: The rows' contract-checked values.
        probabilities: The probabilities of class 1.
        predictions: The predicted classes.
        latency_ms: The request's serving time so far.

    Returns:
        The BSON-ready documents.
    """
    return prediction_documents(
        request_ids,
        [dict(zip(names, row, strict=True)) for row in rows],
        predictions,
        probabilities,
        model_name=served.name,
        model_version=served.version,
        run_id=served.run_id,
        dataset=served.dataset,
        latency_ms=latency_ms,
    )
