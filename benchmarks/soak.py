"""Soak benchmark: 60 s of mixed traffic at 32 clients against the served API.

Usage (from the repository root, after `make run` built a Bento):

    make soak                                            # 60 s, 32 clients
    .venv/bin/python benchmarks/soak.py --seconds 20     # a quick look

Serves the Bento (front process and one process per model) on a free port, over a fresh
embedded store holding 2,000 rows of the dataset, with an API key. Then 32 closed-loop
clients (aiohttp, in this process) each send, in a random mix:

* 45 % one valid row to ``/predict``, 5 % to ``/compare``, 5 % a batch of 100 rows to
  ``/predict_batch`` (real rows of the dataset's last months);
* 20 % an invalid request: malformed JSON, a missing or unknown field, a wrong type, a
  form or multipart body, a body over the size limit, a write without the key;
* 20 % a read of the stored data: ``GET /records`` filtered by a column, ``GET
  /records/{id}``, ``GET /logs``, ``GET /logs/{request_id}``;
* 5 % the outcome of an earlier prediction to ``/feedback`` (with the key).

Printed: requests/s, the answers by kind and status (and any status a kind should not
get), the RSS of every server process at 10 s and at the end with its growth, the server's
log lines against the client errors, and the machine's load average with each figure. The
figures also go to ``artifacts/benchmarks/soak.json``. Targets: no 5xx; RSS growth under
10 % between 10 s and the end. The load generator shares the machine's cores with the
server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from serving import PYTHON, Service, batch_rows, free_port, load  # noqa: E402

import flows  # noqa: E402, F401  (the project's Prefect/BentoML homes, as under make)

KEY = "soak-key"
#: Answers each kind of request may get; anything else is counted as unexpected.
EXPECTED = {
    "predict": {200},
    "compare": {200},
    "batch": {200},
    "invalid": {400, 401, 413, 415},
    "read": {200, 404},
    "feedback": {200},
}
MIX = [("predict", 45), ("compare", 5), ("batch", 5), ("invalid", 20), ("read", 20),
       ("feedback", 5)]  # fmt: skip


def server_processes(pid: int) -> dict[str, object]:
    """The serving processes by role: the arbiter and each service's worker."""
    import psutil

    root = psutil.Process(pid)
    found = {"arbiter": root}
    for child in root.children(recursive=True):
        command = " ".join(child.cmdline())
        if "_bentoml_impl.worker.service" not in command:
            continue
        if "--service-name PrimaryModel" in command:
            found["PrimaryModel"] = child
        elif "--service-name SecondaryModel" in command:
            found["SecondaryModel"] = child
        else:
            found["PredictionService (front)"] = child
    return found


def rss_mb(processes: dict[str, object]) -> dict[str, float]:
    return {name: process.memory_info().rss / 2**20 for name, process in processes.items()}


def invalid_requests(row: dict, limit: int) -> list[tuple[str, str, bytes, dict]]:
    """(method, path, body, headers) of requests a client gets wrong."""
    as_json = {"Content-Type": "application/json"}
    first = next(iter(row))
    missing = {k: v for k, v in row.items() if k != first}
    numeric = next((k for k, v in row.items() if isinstance(v, float)), first)
    return [
        ("POST", "/predict", b'{"' + first.encode() + b'": ', as_json),
        ("POST", "/predict", json.dumps(missing).encode(), as_json),
        ("POST", "/predict", json.dumps({**row, numeric: "far"}).encode(), as_json),
        ("POST", "/predict", json.dumps({**row, "colour": "red"}).encode(), as_json),
        ("POST", "/predict_batch", json.dumps({"rows": [row], "x": 1}).encode(), as_json),
        ("POST", "/predict", json.dumps(row).encode(), {"Content-Type": "multipart/form-data"}),
        ("POST", "/predict", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("POST", "/predict_batch", b'{"rows": [], "pad": "' + b"x" * limit + b'"}', as_json),
        ("POST", "/feedback", b'{"request_id": "x", "actual": 1}', as_json),  # no key
        ("GET", "/records?no_such_column=1", b"", {}),
    ]


async def soak(url: str, args, rows: list[dict], record_ids: list[str], log_ids: list[str],
               column: tuple[str, str], processes: dict, limit: int) -> dict:  # fmt: skip
    import aiohttp

    rng = random.Random(args.seed)
    kinds, weights = zip(*args.mix, strict=True)
    invalid = invalid_requests(rows[0], limit)
    batches = [json.dumps({"rows": rows[i : i + 100]}).encode() for i in range(0, 1000, 100)]
    singles = [json.dumps(row).encode() for row in rows]
    as_json = {"Content-Type": "application/json"}
    statuses: Counter = Counter()
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    answered: list[tuple[str, int]] = []  # request ids with the outcome to send back
    rss: dict[str, dict[str, float]] = {}
    loads: dict[str, str] = {}

    def request(kind: str) -> tuple[str, str, bytes, dict]:
        if kind == "predict":
            return "POST", "/predict", rng.choice(singles), as_json
        if kind == "compare":
            return "POST", "/compare", rng.choice(singles), as_json
        if kind == "batch":
            return "POST", "/predict_batch", rng.choice(batches), as_json
        if kind == "invalid":
            return rng.choice(invalid)
        if kind == "feedback" and answered:
            request_id, actual = answered[rng.randrange(len(answered))]
            body = json.dumps({"request_id": request_id, "actual": actual}).encode()
            return "POST", "/feedback", body, {**as_json, "X-API-Key": KEY}
        choice = rng.randrange(4)
        if choice == 0:
            name, value = column
            return "GET", f"/records?{name}={value}&page_size=20&page={rng.randint(1, 3)}", b"", {}
        if choice == 1:
            return "GET", f"/records/{rng.choice(record_ids)}", b"", {}
        if choice == 2 or not log_ids:
            return "GET", "/logs?page_size=20", b"", {}
        return "GET", f"/logs/{rng.choice(log_ids)}", b"", {}

    async def client(session, deadline):
        while time.perf_counter() < deadline:
            kind = rng.choices(kinds, weights)[0]
            if kind == "feedback" and not answered:
                kind = "predict"
            method, path, body, headers = request(kind)
            started = time.perf_counter()
            try:
                async with session.request(method, url + path, data=body or None,
                                           headers=headers) as response:  # fmt: skip
                    payload = await response.read()
                    status = response.status
            except aiohttp.ClientError as exc:
                statuses[(kind, type(exc).__name__)] += 1
                continue
            latencies[kind].append(time.perf_counter() - started)
            statuses[(kind, status)] += 1
            if kind == "predict" and status == 200 and rng.random() < 0.2:
                request_id = json.loads(payload)["request_id"]
                answered.append((request_id, rng.randint(0, 1)))
                log_ids.append(request_id)

    async def sampler(started):
        # Every 10 s: the curve tells warming up (flat after a while) from a leak (linear).
        for mark in range(10, int(args.seconds), 10):
            await asyncio.sleep(max(0.0, started + mark - time.perf_counter()))
            rss[f"{mark}s"], loads[f"{mark}s"] = rss_mb(processes), load()
            print(f"  {mark} s: RSS {fmt(rss[f'{mark}s'])}  (load {loads[f'{mark}s']})", flush=True)

    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + args.seconds
        sampling = asyncio.create_task(sampler(started))
        await asyncio.gather(*(client(session, deadline) for _ in range(args.clients)))
        elapsed = time.perf_counter() - started
        await sampling
    rss["end"], loads["end"] = rss_mb(processes), load()
    return {
        "seconds": elapsed,
        "statuses": statuses,
        "latencies": latencies,
        "rss": rss,
        "loads": loads,
    }


def fmt(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {mb:.0f} MB" for name, mb in figures.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bento", default="tabular-mlops:latest", help="Bento to serve")
    parser.add_argument("--config", default=str(ROOT / "data" / "flights.yaml"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mix",
        type=lambda text: [(k, int(w)) for k, _, w in (p.partition("=") for p in text.split(","))],
        default=MIX,
        help="kind=weight,... (kinds: " + ", ".join(k for k, _ in MIX) + "); default the mix above",
    )
    parser.add_argument(
        "--no-log",
        action="store_true",
        help="serve without logging predictions (to tell the "
        "API's memory from the stored logs' in an embedded store)",
    )
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "benchmarks" / "soak.json"))
    args = parser.parse_args()

    import bentoml

    from bentos.guard import DEFAULT_MAX_BODY_BYTES
    from bentos.registry import served_model
    from store import StoreSettings, connect, find_records
    from store.transfer import import_dataset
    from tabular.config import load_config
    from tabular.datasets import load_raw, prepare

    try:
        bento = bentoml.bentos.get(args.bento)
    except bentoml.exceptions.NotFound:
        print(f"error: no Bento '{args.bento}': run `make run` first", file=sys.stderr)
        return 2
    dataset = bento.info.args["dataset"]
    primary = served_model(dataset, "primary", bento.info.args["primary"].partition(":")[2])
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {load()} "
        f"(1/5 min); Bento {bento.tag}; {args.clients} clients for {args.seconds:g} s"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    env = {**os.environ, "MLOPS_STORE_DIR": str(work / "store"), "MONGODB_DB": "soak",
           "MLOPS_JOURNAL_PATH": str(work / "journal.jsonl"), "MLOPS_API_KEY": KEY}  # fmt: skip
    env.pop("MONGODB_URI", None)
    if args.no_log:
        env["MLOPS_LOG_PREDICTIONS"] = "0"
    config = load_config(args.config)
    data, _ = prepare(load_raw(config), config)
    connect(StoreSettings.from_env(env))
    import_dataset(config, frame=data.sample(2000, random_state=args.seed))
    record_ids = [r.id for r in find_records(dataset, page_size=200).items]
    column = next(c for c in config.categorical if c in data.columns)
    value = str(data[column].mode().iloc[0])
    rows = batch_rows(primary.contract, args.config, 1000)

    port = free_port()
    command = [PYTHON, "-m", "bentoml", "serve", str(bento.tag), "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    service = Service("soak", command, env, port, work / "server.log")
    try:
        service.wait_ready("/readyz")
        processes = server_processes(service.process.pid)
        print(f"serving on {service.url}; processes: {', '.join(processes)}")
        print(f"  start: RSS {fmt(rss_mb(processes))}  (load {load()})", flush=True)
        log_lines_before = service.log.read_bytes().count(b"\n")
        result = asyncio.run(
            soak(
                service.url,
                args,
                rows,
                record_ids,
                [],
                (column, value),
                processes,
                DEFAULT_MAX_BODY_BYTES,
            )  # fmt: skip
        )
        time.sleep(1.0)
        lines = service.log.read_bytes().decode("utf-8", "replace").splitlines()
        lines = lines[log_lines_before:]
        # What the store holds now.
        stored = {}
        for resource in ("logs", "records"):
            with urllib.request.urlopen(f"{service.url}/{resource}?page_size=1") as answer:
                stored[resource] = json.load(answer)["total"]
    finally:
        service.stop()

    statuses: Counter = result["statuses"]
    total = sum(statuses.values())
    by_status: Counter = Counter()
    for (_, status), n in statuses.items():
        by_status[status] += n
    expected = {**EXPECTED, "feedback": {404}} if args.no_log else EXPECTED  # no log to find
    unexpected = {f"{kind} {status}": n for (kind, status), n in statuses.items()
                  if status not in expected[kind]}  # fmt: skip
    server_errors = sum(n for s, n in by_status.items() if isinstance(s, int) and s >= 500)
    client_errors = sum(n for s, n in by_status.items() if isinstance(s, int) and 400 <= s < 500)
    print(
        f"\n{total:,} requests in {result['seconds']:.1f} s ({total / result['seconds']:,.0f}/s, "
        f"load {result['loads']['end']})"
    )
    print("answers by status: " + ", ".join(f"{s}: {n:,}" for s, n in sorted(
        by_status.items(), key=lambda item: str(item[0]))))  # fmt: skip
    for kind, _ in args.mix:
        counts = {s: n for (k, s), n in statuses.items() if k == kind}
        times = sorted(result["latencies"][kind])
        p50 = times[len(times) // 2] * 1000 if times else float("nan")
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))] * 1000 if times else float("nan")
        print(f"  {kind:<9} {dict(sorted(counts.items(), key=str))}  p50 {p50:.1f} ms  "
              f"p99 {p99:.1f} ms")  # fmt: skip
    print(f"unexpected answers: {unexpected or 'none'}; 5xx: {server_errors}")
    growth = {}
    print("RSS per server process (10 s -> end):")
    for name, start in result["rss"]["10s"].items():
        end = result["rss"]["end"][name]
        growth[name] = (end - start) / start * 100.0
        print(f"  {name:<27} {start:7.1f} MB -> {end:7.1f} MB  ({growth[name]:+.1f} %)")
    print(
        f"stored at the end: {stored['logs']:,} prediction logs, {stored['records']:,} records "
        f"({'a MongoDB server' if os.environ.get('MONGODB_URI') else 'the embedded store, on disk'})"
    )
    tracebacks = sum("Traceback" in line for line in lines)
    client_lines = sum(" -> 4" in line for line in lines)
    other_lines = [line for line in lines if " -> 4" not in line]
    print(
        f"server log: {len(lines):,} lines, {client_lines:,} client-error lines for "
        f"{client_errors:,} 4xx answers, {tracebacks} tracebacks"
    )
    for line in other_lines[:10]:
        print(f"  other: {line[:300]}")
    ok = server_errors == 0 and not unexpected and max(growth.values()) < 10.0
    print(
        f"targets (no 5xx, no unexpected answer, RSS growth < 10 %): {'met' if ok else 'NOT met'}"
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "bento": str(bento.tag), "clients": args.clients, "seconds": result["seconds"],
        "requests": total, "by_status": {str(s): n for s, n in by_status.items()},
        "by_kind": {f"{k} {s}": n for (k, s), n in statuses.items()},
        "unexpected": unexpected, "rss_mb": result["rss"], "rss_growth_percent": growth,
        "log_lines": len(lines), "other_lines": other_lines[:100], "stored": stored, "logging": not args.no_log, "client_error_lines": client_lines, "tracebacks": tracebacks,
        "loads": result["loads"], "cores": os.cpu_count(),
    }, indent=2) + "\n")  # fmt: skip
    print(f"figures written to {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
