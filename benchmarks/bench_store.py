"""Benchmark the MongoDB store: full-dataset import/backup rates and prediction-log write cost.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_store.py                 # embedded store, full dataset
    .venv/bin/python benchmarks/bench_store.py --rows 50000 --writes 2000
    MONGODB_URI=mongodb://localhost:27017 .venv/bin/python benchmarks/bench_store.py

It works in a throw-away database (and, for the embedded store, a temporary folder) and
prints:

* the import rate (rows/s) of the cleaned default dataset, then the backup rate to CSV and
  the time to read the CSV back, checking the round trip gives the same frame;
* the cost of one prediction log on the API's request path (``PredictionLogWriter.write``,
  which only queues) against a direct synchronous store (``create_prediction_log``), and the
  enqueue cost while MongoDB is down (logs go to the journal);
* the read calls of the CRUD functions (mongoengine QuerySets) on the logs just written,
  next to the same query written on the raw pymongo collection.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from bentos.logs import PredictionLogWriter  # noqa: E402
from store import (  # noqa: E402
    StoreSettings,
    connect,
    count_prediction_logs,
    create_prediction_log,
    disconnect,
    find_prediction_logs,
    get_prediction_log,
    prediction_logs_frame,
)
from store.connection import get_database  # noqa: E402
from store.transfer import backup_dataset, import_dataset, read_backup  # noqa: E402
from tabular.config import DEFAULT_CONFIG, load_config  # noqa: E402
from tabular.datasets import load_raw, prepare  # noqa: E402


def log_record(i: int, run: str) -> dict:
    return {
        "request_id": f"{run}-{i:07d}",
        "model_name": "late_xgboost",
        "model_version": "bench",
        "features": {
            "sched_dep": "2013-07-01T05:15:00",
            "carrier": "UA",
            "origin": "EWR",
            "dest": "IAH",
            "distance": 1400,
            "temp": 71.2,
            "wind_speed": 9.2,
            "seats": 149,
        },
        "prediction": i % 2,
        "probability": 0.42,
        "latency_ms": 3.1,
    }


def per_call_us(samples_ns: list[int]) -> str:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[int(len(ordered) * 0.99)] / 1000
    return f"mean {statistics.fmean(ordered) / 1000:7.2f} us  p50 {p50:7.2f} us  p99 {p99:7.2f} us"


def bench_dataset(rows: int | None, folder: Path) -> None:
    config = load_config(DEFAULT_CONFIG)
    start = time.perf_counter()
    frame, cleaning = prepare(load_raw(config), config)
    if rows is not None:
        frame = frame.head(rows).copy()
    print(
        f"load + clean default dataset: {time.perf_counter() - start:6.1f} s, {len(frame):,} rows"
    )

    report = import_dataset(config, frame=frame)
    print(
        f"import:  {report.rows:,} rows in {report.seconds:6.1f} s = "
        f"{report.rows_per_second:10,.0f} rows/s ({report.inserted:,} new)"
    )
    again = import_dataset(config, frame=frame)
    print(
        f"re-import (nothing new): {again.seconds:6.1f} s = {again.rows_per_second:10,.0f} rows/s "
        f"({again.already_stored:,} already stored, {again.inserted} new)"
    )
    backup = backup_dataset(config.name, folder / "flights.csv")
    print(
        f"backup:  {backup.rows:,} rows x {backup.columns} columns in {backup.seconds:6.1f} s = "
        f"{backup.rows_per_second:10,.0f} rows/s, CSV {backup.path.stat().st_size / 2**20:,.0f} MB"
    )
    start = time.perf_counter()
    restored = read_backup(backup.path)
    seconds = time.perf_counter() - start
    pd.testing.assert_frame_equal(restored, frame, check_exact=True)
    print(
        f"read back with pandas: {seconds:6.1f} s; same frame: {restored.shape[0]:,} rows x "
        f"{restored.shape[1]} columns, identical values and dtypes"
    )


def bench_writes(writes: int, settings: StoreSettings) -> None:
    run = uuid.uuid4().hex[:8]
    writer = PredictionLogWriter(settings.journal_path, batch_size=256, flush_interval=0.05)
    records = [log_record(i, run) for i in range(writes)]
    samples = []
    for record in records:
        started = time.perf_counter_ns()
        writer.write(record)
        samples.append(time.perf_counter_ns() - started)
    started = time.perf_counter()
    writer.flush(timeout=600)
    drain = time.perf_counter() - started
    stats = writer.close()
    print(f"request path, PredictionLogWriter.write x {writes:,}: {per_call_us(samples)}")
    print(
        f"  background batches stored {stats.stored:,} logs; the queue drained "
        f"{drain:.2f} s after the last write"
    )

    direct = [log_record(i, run + "d") for i in range(writes)]
    samples = []
    for record in direct:
        started = time.perf_counter_ns()
        create_prediction_log(record)
        samples.append(time.perf_counter_ns() - started)
    print(f"direct synchronous create_prediction_log x {writes:,}: {per_call_us(samples)}")
    assert count_prediction_logs(model_version="bench") == 2 * writes


def best_ms(call, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def bench_reads() -> None:
    from pymongo import ASCENDING, DESCENDING

    from store.documents import PredictionLog

    collection = PredictionLog._get_collection()
    query = {"model_version": "bench"}
    order = [("timestamp", DESCENDING), ("_id", ASCENDING)]
    logs = PredictionLog.objects(model_version="bench").order_by("-timestamp", "request_id")
    some_id = collection.find_one(query)["_id"]
    # (the public function, the QuerySet it runs, the same query on the raw collection)
    calls = {
        "count_prediction_logs": (
            lambda: count_prediction_logs(model_version="bench"),
            lambda: PredictionLog.objects(model_version="bench").count(),
            lambda: collection.count_documents(query),
        ),
        "find_prediction_logs, page 20 of 50": (
            lambda: find_prediction_logs(model_version="bench", page=20, page_size=50),
            lambda: list(logs.skip(950).limit(50).as_pymongo()),
            lambda: list(collection.find(query).sort(order).skip(950).limit(50)),
        ),
        "prediction_logs_frame (all)": (
            lambda: prediction_logs_frame(model_version="bench"),
            lambda: list(logs.as_pymongo()),
            lambda: list(collection.find(query).sort(order)),
        ),
        "get_prediction_log": (
            lambda: get_prediction_log(some_id),
            lambda: PredictionLog.objects(request_id=some_id).as_pymongo().first(),
            lambda: collection.find_one({"_id": some_id}),
        ),
    }
    total = count_prediction_logs(model_version="bench")
    print(f"reads on {total:,} logs: the function / its QuerySet / the raw pymongo query")
    for name, (function, queryset, raw) in calls.items():
        print(
            f"  {name}: {best_ms(function):8.2f} / {best_ms(queryset):8.2f} / "
            f"{best_ms(raw):8.2f} ms"
        )


def bench_outage(writes: int, folder: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = StoreSettings(
        uri=f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300",
        database="bench",
        store_dir=folder,
        journal_path=folder / "outage" / "journal.jsonl",
        timeout_ms=300,
    )
    connect(dead, check=False)
    writer = PredictionLogWriter(dead.journal_path, batch_size=256, flush_interval=0.05)
    run = uuid.uuid4().hex[:8]
    samples = []
    for i in range(writes):
        record = log_record(i, run)
        started = time.perf_counter_ns()
        writer.write(record)
        samples.append(time.perf_counter_ns() - started)
    started = time.perf_counter()
    writer.flush(timeout=600)
    drain = time.perf_counter() - started
    stats = writer.close()
    print(f"during an outage, PredictionLogWriter.write x {writes:,}: {per_call_us(samples)}")
    print(f"  {stats.journaled:,} logs journaled; drained {drain:.2f} s after the last write")
    disconnect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="import only the first N rows")
    parser.add_argument("--writes", type=int, default=10_000, help="prediction logs to write")
    parser.add_argument("--skip-dataset", action="store_true", help="only the write benchmark")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-store-") as temporary:
        folder = Path(temporary)
        env = dict(os.environ)
        env["MONGODB_DB"] = f"bench_{uuid.uuid4().hex[:8]}"
        env["MLOPS_STORE_DIR"] = str(folder / "store")
        env["MLOPS_JOURNAL_PATH"] = str(folder / "journal.jsonl")
        settings = StoreSettings.from_env(env)
        info = connect(settings)
        print(f"store: {info.describe()}")
        try:
            if not args.skip_dataset:
                bench_dataset(args.rows, folder)
            bench_writes(args.writes, settings)
            bench_reads()
        finally:
            connect(settings, check=False)
            get_database().client.drop_database(settings.database)
            disconnect()
        bench_outage(args.writes, folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
