"""Memory benchmark: the API front's RSS does not grow with the prediction logs it writes.

Usage (from the repository root, after `make run` built a Bento):

    .venv/bin/python benchmarks/memory.py                  # 1,000,000 logged predictions
    .venv/bin/python benchmarks/memory.py --logs 200000    # a quicker look

Serves the latest Bento on a free port with a fresh embedded store, sends 1,000-row
``/predict_batch`` requests (real rows of the dataset; every row logged), and prints the
front process's resident memory (``VmRSS``) after 10,000, 100,000 and 1,000,000 logged
predictions, with the store's size on disk and the machine's load. Then, in a new process,
the memory a reader needs for the last 100,000 logs (the drift monitor's window read as a
frame). The figures also go to ``artifacts/benchmarks/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving import PYTHON, Service, batch_rows, free_port, load  # noqa: E402

import flows  # noqa: E402, F401  (the project's Prefect/BentoML homes, as under make)

READER = """
import time
from pathlib import Path
from store import connect, prediction_logs_frame
connect()
started = time.perf_counter()
frame = prediction_logs_frame(limit=100_000)
seconds = time.perf_counter() - started
peak = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
print(len(frame), round(seconds, 2), peak.split()[1])
"""


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def front_pid(server_pid: int) -> int:
    """The front (``PredictionService``) worker among the server's child processes."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    for child in children:
        if b"PredictionService" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise RuntimeError("no PredictionService worker found")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bento", default="tabular-mlops:latest")
    parser.add_argument("--config", default=str(ROOT / "data" / "flights.yaml"))
    parser.add_argument("--logs", type=int, default=1_000_000, help="predictions to log")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "benchmarks" / "memory.json"))
    args = parser.parse_args()

    import bentoml

    from bentos.registry import served_model

    bento = bentoml.bentos.get(args.bento)
    primary = served_model(bento.info.args["dataset"], "primary", "latest")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    body = json.dumps({"rows": batch_rows(primary.contract, args.config, 1000)}).encode()
    env = {**os.environ, "MLOPS_STORE_DIR": str(work / "store"), "MONGODB_DB": "memory"}
    env.pop("MONGODB_URI", None)
    env.pop("MLOPS_LOG_PREDICTIONS", None)
    port = free_port()
    command = [PYTHON, "-m", "bentoml", "serve", str(bento.tag), "--port", str(port)]
    service = Service("bentoml", command, env, port, work / "server.log")
    print(f"machine: {os.cpu_count()} cores, load {load()} (1/5 min); {bento.tag}")
    figures: dict[str, dict] = {}
    try:
        service.wait_ready("/readyz")
        front = front_pid(service.process.pid)
        figures["start"] = {"logs": 0, "rss_mb": rss_mb(front), "load": load()}
        print(f"front RSS after start-up: {figures['start']['rss_mb']:.1f} MB")
        marks = sorted({m for m in (10_000, 100_000, 1_000_000, args.logs) if m <= args.logs})
        sent, started = 0, time.perf_counter()
        with httpx.Client(timeout=60) as client:
            for mark in marks:
                while sent < mark:
                    answer = client.post(
                        service.url + "/predict_batch",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    answer.raise_for_status()
                    sent += 1000
                store = sum(f.stat().st_size for f in (work / "store").rglob("*") if f.is_file())
                figure = figures[f"{mark}"] = {
                    "logs": sent,
                    "rss_mb": rss_mb(front),
                    "store_mb": store / 2**20,
                    "rows_per_s": sent / (time.perf_counter() - started),
                    "load": load(),
                }
                print(
                    f"front RSS after {sent:>9,} logged predictions: {figure['rss_mb']:7.1f} MB"
                    f"  (store on disk {figure['store_mb']:7.1f} MB, "
                    f"{figure['rows_per_s']:,.0f} rows/s so far, load {figure['load']})"
                )
    finally:
        service.stop()
    reader = subprocess.run(
        [PYTHON, "-c", READER], env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows, seconds, peak_kb = reader.stdout.split()  # peak: VmHWM, the reader's own
    figures["reader"] = {
        "rows": int(rows),
        "seconds": float(seconds),
        "peak_rss_mb": int(peak_kb) / 1024,
    }
    print(
        f"a new process reading the last {int(rows):,} logs as a frame: {float(seconds):.1f} s, "
        f"peak RSS {int(peak_kb) / 1024:.0f} MB (load {load()})"
    )
    last = figures[str(max(marks))]
    per_100k = last["store_mb"] / (last["logs"] / 100_000)
    print(f"on disk: {per_100k:.1f} MB per 100,000 logs (the API process holds none of them)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
