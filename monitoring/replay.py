"""Traffic replay: send a period of the dataset to a running prediction API.

``mlops replay --from 2013-12-01 --to 2013-12-31 --rate 200 --concurrency 8`` reads the
rows of that period from the dataset, turns each into a request body with the served
model's input fields (from the API's ``/info``), and posts them to ``/predict`` at most
``rate`` a second with at most ``concurrency`` in flight, with a progress bar. With
``--with-feedback`` each answered row's true outcome is posted to ``/feedback`` (with the
API's write key, ``MLOPS_API_KEY``: feedback decides promotions); an outcome the API cannot
take yet (404: the prediction's log is still in the API's journal; 503; a dropped
connection) is posted again for up to 15 s. It stops when every row was sent and prints
what happened.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from tabular.config import DatasetConfig
    from tabular.contract import InputContract

#: Error answers kept as examples in the summary.
EXAMPLES = 3
#: Seconds to wait before each new attempt at posting an outcome the API could not take yet:
#: a 404 (the prediction's log is in the API's journal, not yet in the store: the service
#: replays its journal within seconds), a 503 or a dropped connection. 15 s in all.
FEEDBACK_RETRY_S = (1.0, 2.0, 4.0, 8.0)
#: Answers to /feedback worth trying again (409 and 400 are final).
FEEDBACK_RETRIED = {404, 503}


class ReplayError(UserError):
    """The replay cannot start: the API is unreachable or the period holds no row."""


@dataclass
class ReplaySummary:
    """What a replay did.

    Attributes:
        sent: Prediction requests sent.
        succeeded: Answered with 200.
        errors: Not answered with 200 (refused, failed or unreachable).
        seconds: Wall time from the first request to the last answer.
        feedback_sent: Outcomes posted to ``/feedback``.
        feedback_errors: Outcomes not stored (no 200 within the retries).
        statuses: Count of each error status (``"connection"`` when unreachable; an
            outcome's as ``"feedback 404"``).
        examples: A few error answers, as ``status: text``.
    """

    sent: int = 0
    succeeded: int = 0
    errors: int = 0
    seconds: float = 0.0
    feedback_sent: int = 0
    feedback_errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        """Prediction requests per second over the replay."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """Return the summary as printable lines."""
        lines = [
            f"sent {self.sent:,}, succeeded {self.succeeded:,}, errors {self.errors:,}, "
            f"{self.requests_per_second:,.1f} requests/s over {self.seconds:.1f} s"
        ]
        if self.feedback_sent or self.feedback_errors:
            lines.append(
                f"feedback: {self.feedback_sent:,} outcomes posted, {self.feedback_errors:,} errors"
            )
        if self.statuses:
            counts = ", ".join(f"{status}: {n:,}" for status, n in self.statuses.most_common())
            lines.append(f"errors by status: {counts}")
            lines += [f"  e.g. {example}" for example in self.examples]
        return lines


def api_contract(url: str, timeout: float = 10) -> InputContract:
    """Read the served model's input fields from the API's ``/info``.

    Args:
        url: The API's base URL.
        timeout: Seconds to wait.

    Returns:
        A contract with the served fields and their kinds (enough to write request bodies).

    Raises:
        ReplayError: If the API does not answer.
    """
    import httpx

    from tabular.contract import FieldSpec, InputContract

    try:
        answer = httpx.post(url.rstrip("/") + "/info", json={}, timeout=timeout)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise ReplayError(
            f"cannot read {url}/info ({type(exc).__name__}: {exc}); is the API running "
            "(`make serve`)?"
        ) from None
    info = answer.json()
    kinds = {name: kind for kind, names in info["roles"].items() for name in names}
    fields = [FieldSpec(name=name, kind=kinds[name]) for name in info["features"]]
    return InputContract(dataset=info["dataset"], fields=fields)


def period_rows(
    config: DatasetConfig,
    start: str,
    end: str,
    *,
    sample: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Read the dataset's rows dated from ``start`` to ``end`` (both days included).

    Args:
        config: The dataset config.
        start: First day (ISO 8601).
        end: Last day (ISO 8601), included.
        sample: Keep a fixed-seed sample of this many rows (in date order).
        seed: Seed of the sample.

    Returns:
        The rows, in date order.

    Raises:
        ReplayError: If the dataset has no date column, a date is malformed, or no row is
            dated in the period.
    """
    import pandas as pd

    from tabular.datasets import load_raw, prepare

    if config.date_column is None:
        raise ReplayError(
            f"dataset '{config.name}' has no date column: a period cannot be replayed"
        )
    try:
        first = pd.Timestamp(start)
        after = pd.Timestamp(end).normalize() + pd.Timedelta(days=1)
    except ValueError as exc:
        raise ReplayError(f"--from/--to must be ISO 8601 dates ({exc})") from None
    data, _ = prepare(load_raw(config), config)
    dates = data[config.date_column]
    rows = data[(dates >= first) & (dates < after)]
    if rows.empty:
        raise ReplayError(f"no row of '{config.name}' is dated from {start} to {end}")
    if sample is not None and sample < len(rows):
        rows = rows.sample(sample, random_state=seed)
    return rows.sort_values(config.date_column, kind="stable").reset_index(drop=True)


def replay(
    url: str,
    bodies: Sequence[dict[str, Any]],
    outcomes: Sequence[int] | None = None,
    *,
    rate: float,
    concurrency: int,
    progress: Callable[[int], None] | None = None,
    timeout: float = 30,
    api_key: str | None = None,
) -> ReplaySummary:
    """Post each body to ``/predict`` at a bounded rate and concurrency.

    Request ``i`` is sent no earlier than ``i / rate`` seconds after the first, by one of
    ``concurrency`` workers; so at most ``concurrency`` requests are in flight and the rate
    never exceeds ``rate`` a second. With ``outcomes``, each answered row's outcome is then
    posted to ``/feedback`` by the same worker.

    Args:
        url: The API's base URL.
        bodies: Request bodies (one row each).
        outcomes: The true class of each row, or ``None`` for no feedback.
        rate: Most requests a second.
        concurrency: Most requests in flight.
        progress: Called with 1 after each prediction answer (a progress bar's ``update``).
        timeout: Seconds to wait for one answer.
        api_key: The API's write key, sent with each outcome (``/feedback`` refuses an
            outcome without it).

    Returns:
        What happened.

    Raises:
        ValueError: If ``rate`` or ``concurrency`` is not positive.
    """
    if rate <= 0 or concurrency < 1:
        raise ValueError(f"rate and concurrency must be positive, got {rate} and {concurrency}")
    return asyncio.run(
        _replay(url.rstrip("/"), bodies, outcomes, rate, concurrency, progress, timeout, api_key)
    )


async def _replay(
    url, bodies, outcomes, rate, concurrency, progress, timeout, api_key
) -> ReplaySummary:
    import httpx

    summary = ReplaySummary()
    key_header = {"X-API-Key": api_key} if api_key else {}
    next_index = iter(range(len(bodies)))
    started = time.perf_counter()

    def failed(status: str, text: str) -> None:
        summary.statuses[status] += 1
        if len(summary.examples) < EXAMPLES:
            summary.examples.append(f"{status}: {text[:300]}")

    async def worker(client: httpx.AsyncClient) -> None:
        for i in next_index:  # one shared iterator: each index goes to one worker
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            summary.sent += 1
            try:
                answer = await client.post(url + "/predict", json=bodies[i])
            except httpx.HTTPError as exc:
                summary.errors += 1
                failed("connection", f"{type(exc).__name__}: {exc}")
            else:
                if answer.status_code == 200:
                    summary.succeeded += 1
                    if outcomes is not None:
                        await feedback(client, answer.json()["request_id"], int(outcomes[i]))
                else:
                    summary.errors += 1
                    failed(str(answer.status_code), answer.text)
            if progress is not None:
                progress(1)

    async def feedback(client: httpx.AsyncClient, request_id: str, actual: int) -> None:
        body = {"request_id": request_id, "actual": actual}
        for wait in (*FEEDBACK_RETRY_S, None):
            try:
                answer = await client.post(url + "/feedback", json=body, headers=key_header)
            except httpx.HTTPError as exc:
                status, text = "connection", f"{type(exc).__name__}: {exc}"
            else:
                if answer.status_code == 200:
                    summary.feedback_sent += 1
                    return
                status, text = str(answer.status_code), answer.text
                if answer.status_code not in FEEDBACK_RETRIED:
                    break
            if wait is not None:
                await asyncio.sleep(wait)
        summary.feedback_errors += 1
        failed(f"feedback {status}", text)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    summary.seconds = time.perf_counter() - started
    return summary
