"""Serving benchmark: the BentoML service against a plain FastAPI service, on this machine.

Usage (from the repository root, after `make run` built a Bento):

    make bench                                  # the figures of the README
    .venv/bin/python benchmarks/serving.py --seconds 5 --concurrency 1 8   # a quick look
    .venv/bin/python benchmarks/serving.py --no-log                        # logging off everywhere

Starts, one after the other, on free local ports:

* ``bentoml``: the latest Bento (``PredictionService``: a front process and one process per
  model, composed with ``bentoml.depends``, adaptive batching in the model processes);
* ``one-process``: the same API with both models in the front's process (``OneProcessService``);
* ``plain``: a FastAPI app under uvicorn with two workers, one ``predict_proba`` per request
  (``benchmarks/plain_service.py``).

Each is driven by the same closed-loop load (``benchmarks/loadgen.py``, aiohttp, its own
process) with single-row requests at each concurrency, then the batch endpoint with
1,000-row requests. Every service logs each prediction to its own embedded store unless
``--no-log``; the batch endpoint is measured once more with logging off, to show what the
logging costs. Printed: requests/s, p50, p99, errors (any non-200) per service and
concurrency, the ratios to the plain service, the in-process ``predict_proba`` rates (the
ceiling) and the batch endpoint's rows/s; the figures also go to
``artifacts/benchmarks/serving.json``. The load generator shares the machine's cores with
the services, and the load average is printed with each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

import flows  # noqa: E402, F401  (the project's Prefect/BentoML homes, as under make)
from bentos.registry import served_model  # noqa: E402

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


class Service:
    """A server process started in its own process group, stopped with it."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path):
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )

    def wait_ready(self, path: str, timeout: float = 120) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def drive(url: str, body: Path, concurrency: int, seconds: float) -> dict:
    completed = subprocess.run(
        [
            PYTHON,
            str(ROOT / "benchmarks" / "loadgen.py"),
            "--url",
            url,
            "--body",
            str(body),
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["load"] = load()
    return result


def batch_rows(contract, dataset_config, rows: int) -> list[dict]:
    """Real rows of the dataset that pass the contract (held-out months first)."""
    from tabular.config import load_config
    from tabular.datasets import load_raw, prepare

    config = load_config(dataset_config)
    data, _ = prepare(load_raw(config), config)
    data = data.sort_values(config.date_column).tail(rows * 20)
    sample = data[contract.names].sample(rows * 3, random_state=0).to_dict("records")
    records = [contract.json_row(record) for record in sample]
    typed = contract.to_frame(records)
    good = [records[i] for i in typed.frame.index]
    if len(good) < rows:
        raise RuntimeError(f"only {len(good)} of the sampled rows pass the contract")
    return good[:rows]


def in_process(primary, rows: list[dict]) -> dict:
    """The pipeline's own predict_proba (pandas + scikit-learn) against the compiled replay."""
    from bentos.runtime import load_predictor

    predictor = load_predictor(primary)
    contract = primary.contract
    values = [contract.values(contract.check_row(r)) for r in rows]
    frame = contract.values_frame(values)
    figures = {}
    for label, call in (
        ("sklearn", lambda n: predictor.pipeline.predict_proba(frame.iloc[:n])),
        ("compiled", lambda n: predictor.compiled.predict_proba(values[:n])),
    ):
        if label == "compiled" and predictor.compiled is None:
            continue
        for n in (1, 32, len(values)):
            call(n)
            repeats = max(3, int(2000 / n))
            started = time.perf_counter()
            for _ in range(repeats):
                call(n)
            seconds = (time.perf_counter() - started) / repeats
            figures[f"{label}_{n}"] = {"ms": seconds * 1000, "rows_per_s": n / seconds}
    difference = float(np.abs(predictor.reference(values) - predictor.predict_proba(values)).max())
    figures["max_difference"] = difference
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bento", default="tabular-mlops:latest", help="Bento to serve")
    parser.add_argument("--config", default=str(ROOT / "data" / "flights.yaml"))
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--no-log", action="store_true", help="turn prediction logging off")
    parser.add_argument(
        "--services", nargs="+", default=["bentoml", "one-process", "plain"],
        choices=["bentoml", "one-process", "plain"],
    )  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "benchmarks" / "serving.json"))
    args = parser.parse_args()

    import bentoml

    try:
        bento = bentoml.bentos.get(args.bento)
    except bentoml.exceptions.NotFound:
        print(f"error: no Bento '{args.bento}': run `make run` first", file=sys.stderr)
        return 2
    bento_args = bento.info.args
    dataset = bento_args["dataset"]
    primary = served_model(dataset, "primary", bento_args["primary"].partition(":")[2])
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {load()} "
        f"(1/5 min); Bento {bento.tag} serving {primary.tag} ({primary.label}); "
        f"logging {'off' if args.no_log else 'on (embedded store)'}; {args.seconds:g} s per run"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    single = work / "single.json"
    single.write_text(json.dumps(primary.contract.example))
    rows = batch_rows(primary.contract, args.config, args.batch_rows)
    batch = work / "batch.json"
    batch.write_text(json.dumps({"rows": rows}))

    ceiling = in_process(primary, rows)
    print(f"\nin-process primary model, {len(rows)} real rows (load {load()}):")
    for key, figure in ceiling.items():
        if key != "max_difference":
            print(f"  {key:<16} {figure['ms']:9.3f} ms/call {figure['rows_per_s']:12,.0f} rows/s")
    print(f"  compiled vs pipeline: max |difference| {ceiling['max_difference']:.2g}")

    results: dict[str, dict] = {"in_process": ceiling, "services": {}}
    env = {**os.environ}
    if args.no_log:
        env["MLOPS_LOG_PREDICTIONS"] = "0"
    env.pop("MLOPS_API_KEY", None)
    env.pop("MONGODB_URI", None)

    def measure(name: str, label: str, concurrencies: list[int], **extra_env: str) -> dict:
        port = free_port()
        service_env = {
            **env,
            "MLOPS_STORE_DIR": str(work / f"store-{label}"),
            "MLOPS_JOURNAL_PATH": str(work / f"journal-{label}.jsonl"),
            **extra_env,
        }
        if name == "bentoml":
            command = [PYTHON, "-m", "bentoml", "serve", str(bento.tag)]
            ready, predict, batch_route = "/readyz", "/predict", "/predict_batch"
        elif name == "one-process":
            command = [PYTHON, "-m", "bentoml", "serve", "bentos.service:OneProcessService"]
            for key, value in bento_args.items():
                command += ["--arg", f"{key}={value}"]
            ready, predict, batch_route = "/readyz", "/predict", "/predict_batch"
        else:
            service_env["PLAIN_MODEL_TAG"] = primary.tag
            command = [PYTHON, "-m", "uvicorn", "--app-dir", str(ROOT / "benchmarks"),
                       "plain_service:app", "--workers", "2", "--no-access-log"]  # fmt: skip
            ready, predict, batch_route = "/docs", "/predict", None
        command += ["--host", "127.0.0.1", "--port", str(port)]
        service = Service(label, command, service_env, port, work / f"{label}.log")
        figures: dict[str, dict] = {}
        try:
            service.wait_ready(ready)
            for concurrency in concurrencies:
                f = figures[f"c{concurrency}"] = drive(
                    service.url + predict, single, concurrency, args.seconds
                )
                print(
                    f"{label:<12} {concurrency:>3} clients: {f['rps']:8.1f} req/s  p50 "
                    f"{f['p50_ms']:7.1f} ms  p99 {f['p99_ms']:7.1f} ms  errors {f['errors']}"
                    f"  (load {f['load']})"
                )
            for concurrency in (1, 2) if batch_route else ():
                f = drive(service.url + batch_route, batch, concurrency, args.seconds)
                f["rows_per_s"] = f["rps"] * len(rows)
                figures[f"batch_c{concurrency}"] = f
                print(
                    f"{label:<12} batch of {len(rows)} rows, {concurrency} client(s): "
                    f"{f['rows_per_s']:10,.0f} rows/s  p50 {f['p50_ms']:7.1f} ms  "
                    f"errors {f['errors']}  (load {f['load']})"
                )
        finally:
            service.stop()
        return figures

    for name in args.services:
        results["services"][name] = measure(name, name, args.concurrency)
    if "bentoml" in args.services and not args.no_log:
        # What the logging costs the batch endpoint: the same Bento without it.
        results["bentoml_no_log"] = measure(
            "bentoml", "bentoml-nolog", [], MLOPS_LOG_PREDICTIONS="0"
        )

    services = results["services"]
    if "plain" in services:
        print("\nratios to the plain FastAPI service (same load, same logging):")
        for name in [s for s in services if s != "plain"]:
            for key, plain in services["plain"].items():
                mine = services[name].get(key)
                if not mine or not plain.get("rps") or not mine.get("p99_ms"):
                    continue
                print(
                    f"  {name:<12} {key:>4}: throughput x{mine['rps'] / plain['rps']:.2f}, "
                    f"p50 /{plain['p50_ms'] / mine['p50_ms']:.2f}, "
                    f"p99 /{plain['p99_ms'] / mine['p99_ms']:.2f}"
                )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["meta"] = {
        "bento": str(bento.tag),
        "model": primary.tag,
        "seconds": args.seconds,
        "logging": not args.no_log,
        "cores": os.cpu_count(),
        "finished_load": load(),
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
