"""Closed-loop HTTP load generator: N clients, each sending its next request when the last one answers.

Run as its own process (so that it does not share an interpreter with the server) by
``benchmarks/serving.py``; prints one JSON line with requests/s, latency percentiles and
errors (any status other than 200, including 503, plus connection errors).

    python benchmarks/loadgen.py --url http://127.0.0.1:3000/predict --body body.json \\
        --concurrency 32 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import aiohttp


async def _client(session, url, payload, deadline, latencies, statuses):
    headers = {"Content-Type": "application/json"}
    while True:
        started = time.perf_counter()
        if started >= deadline:
            return
        try:
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                statuses[response.status] += 1
        except aiohttp.ClientError as exc:
            statuses[type(exc).__name__] += 1
            continue
        latencies.append(time.perf_counter() - started)


async def run(url: str, payload: bytes, concurrency: int, seconds: float, warmup: float) -> dict:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if warmup > 0:
            await asyncio.gather(
                *(
                    _client(session, url, payload, time.perf_counter() + warmup, [], Counter())
                    for _ in range(concurrency)
                )
            )
        latencies: list[float] = []
        statuses: Counter = Counter()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(
                _client(session, url, payload, deadline, latencies, statuses)
                for _ in range(concurrency)
            )
        )
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000.0

    ok = statuses.get(200, 0)
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests": sum(statuses.values()),
        "ok": ok,
        "rps": ok / elapsed,
        "p50_ms": pct(0.50) if latencies else None,
        "p90_ms": pct(0.90) if latencies else None,
        "p99_ms": pct(0.99) if latencies else None,
        "max_ms": latencies[-1] * 1000.0 if latencies else None,
        "errors": sum(v for k, v in statuses.items() if k != 200),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file holding the JSON request body")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    with open(args.body, "rb") as handle:
        payload = handle.read()
    result = asyncio.run(run(args.url, payload, args.concurrency, args.seconds, args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
