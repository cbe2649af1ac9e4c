"""Monitor benchmark: one drift check of 100,000 logged predictions against a 100,000-row reference.

Usage (from the repository root, after `make run` saved the served models and their
reference on the full data):

    .venv/bin/python benchmarks/monitor.py              # part of `make bench`
    .venv/bin/python benchmarks/monitor.py --rows 20000

Set-up (not timed): the served primary model's reference (``monitoring.reference_rows``,
100,000 rows for a full run), and 100,000 prediction logs written to a fresh embedded store
in a temporary folder: the September to December flights as the service logs them (typed
features, the model's probability), each with its true outcome as feedback.

Timed, in a fresh process (so reading includes loading the store's files, as a scheduled
run does): ``run_check`` end to end, twice: without feedback (the drift report only) and
with feedback on every log (drift and classification quality). Printed: the time of each
part (read: logs, feedback and reference; coerce: the input contract; report: Evidently;
write: HTML, JSON and the workspace snapshot), the total, the load average and the sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import flows  # noqa: E402, F401  (the project's Prefect/BentoML homes, as under make)

TARGET_SECONDS = 15.0

CHILD = r"""
import json, sys, time
from flows.monitor import drift_settings
from monitoring.check import Window, run_check
from tabular.config import load_config
from store import connect
import evidently.presets, evidently.ui.workspace  # imports are not the monitor's work

config = load_config(sys.argv[1])
connect()
start = time.perf_counter()
result = run_check(
    config,
    Window(last=int(sys.argv[2])),
    # The whole reference: the largest comparison (same_period would keep September's rows).
    drift_settings(config, reference="whole"),
    out_root=sys.argv[3],
    workspace=sys.argv[4],
)
total = time.perf_counter() - start
summary = result.summary
print(json.dumps({
    "total": total, "seconds": summary.seconds, "status": summary.status,
    "message": summary.message, "rows": summary.rows.model_dump(),
    "report_mb": sum(Path(p).stat().st_size for k, p in summary.outputs.items()
                     if k.endswith("_html")) / 1e6,
    "performance": summary.performance.current if summary.performance else None,
}))
""".replace("import json, sys, time", "import json, sys, time\nfrom pathlib import Path")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def write_logs(config, served, rows: int, folder: Path) -> tuple[float, float]:
    """Write ``rows`` prediction logs and their feedback to a fresh embedded store."""
    import bentoml
    import numpy as np

    from store import connect
    from store.documents import Feedback
    from store.journal import insert_documents, to_prediction_document
    from tabular.datasets import load_raw, prepare

    data, _ = prepare(load_raw(config), config)
    recent = data[data[config.date_column] >= "2013-09-01"]
    if len(recent) < rows:
        recent = data
    contract = served.contract
    # Only requests the service would accept get logged: rows the contract refuses (a null
    # where training had none) are left out, as the API's 400 would.
    typed = contract.to_frame(recent[contract.names].to_dict("records"))
    valid = recent.iloc[typed.frame.index]
    frame = valid.sample(rows, random_state=1, replace=len(valid) < rows)
    pipeline = bentoml.sklearn.load_model(served.tag)
    probabilities = pipeline.predict_proba(frame[contract.names])[:, 1]
    connect()
    start = time.perf_counter()
    name, version = served.tag.split(":")
    base = dt.datetime(2026, 1, 1)
    documents = []
    for i, (record, probability) in enumerate(
        zip(frame[contract.names].to_dict("records"), probabilities, strict=True)
    ):
        documents.append(
            to_prediction_document(
                {
                    "request_id": f"bench-{i:07d}",
                    "timestamp": base + dt.timedelta(milliseconds=10 * i),
                    "model_name": name,
                    "model_version": version,
                    "features": contract.coerce(contract.json_row(record)),
                    "prediction": int(probability >= served.threshold),
                    "probability": float(probability),
                    "latency_ms": 1.0,
                    "dataset": config.name,
                    "run_id": served.run_id,
                }
            )
        )
        if len(documents) == 5000:
            insert_documents(documents)
            documents = []
    insert_documents(documents)
    logs_seconds = time.perf_counter() - start
    start = time.perf_counter()
    actual = frame[config.target.name].to_numpy(dtype=np.int64)
    collection = Feedback._get_collection()
    when = base + dt.timedelta(days=1)
    for begin in range(0, rows, 5000):
        collection.insert_many(
            [
                {"_id": f"bench-{i:07d}", "actual": int(actual[i]), "received_at": when}
                for i in range(begin, min(begin + 5000, rows))
            ]
        )
    return logs_seconds, time.perf_counter() - start


def timed_check(config_path: str, rows: int, folder: Path, env: dict[str, str]) -> dict:
    """Run one check in a fresh process and return its figures."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            config_path,
            str(rows),
            str(folder / "monitoring"),
            str(folder / "workspace"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if completed.returncode != 0:
        raise SystemExit(f"the check failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "data" / "flights.yaml"))
    parser.add_argument("--rows", type=int, default=100_000, help="prediction logs to check")
    args = parser.parse_args()

    from bentos.registry import served_model, served_model_from_tag
    from monitoring.champion import current_champion
    from monitoring.reference import load_reference
    from tabular.config import load_config

    config = load_config(args.config)
    try:
        # The served champion (the latest Bento's), not the latest saved model: a challenger
        # the monitor kept is saved too.
        latest = served_model(config.name, "primary")
        served = served_model_from_tag(current_champion(config.name, latest.tag).primary)
    except Exception as exc:  # NotFound: nothing trained yet
        raise SystemExit(
            f"no served model of '{config.name}' ({exc}): run `make run` first"
        ) from None
    reference = load_reference(served.reference_path, served.reference_sha256)
    print(
        f"model {served.tag}: {len(served.contract.names)} inputs, reference {len(reference):,} rows"
    )
    if len(reference) < 100_000:
        print(f"note: the reference has {len(reference):,} rows (a sampled run); `make run` on the "
              "full data saves 100,000")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        folder = Path(tmp)
        env = {
            **os.environ,
            "MLOPS_STORE_DIR": str(folder / "store"),
            "MONGODB_DB": "bench",
            "MLOPS_STORE_FSYNC": "0",
        }
        env.pop("MONGODB_URI", None)  # the embedded store: what runs here
        os.environ.update({k: v for k, v in env.items() if k.startswith(("MLOPS_", "MONGODB_"))})
        os.environ.pop("MONGODB_URI", None)
        logs_s, feedback_s = write_logs(config, served, args.rows, folder)
        print(
            f"set-up: {args.rows:,} logs written in {logs_s:.1f} s, feedback in {feedback_s:.1f} s"
        )
        from store import connect
        from store.documents import Feedback

        results = {}
        results["with feedback"] = timed_check(args.config, args.rows, folder, env)
        connect()
        Feedback._get_collection().delete_many({})
        results["drift only"] = timed_check(args.config, args.rows, folder, env)

    print(f"\nOne check of {args.rows:,} logs against {len(reference):,} reference rows "
          f"({len(served.contract.names)} inputs), load average {load()} (1/5 min):")  # fmt: skip
    print(f"{'':>15} {'read':>7} {'coerce':>7} {'report':>7} {'write':>7} {'total':>7}  HTML")
    for name in ("drift only", "with feedback"):
        r = results[name]
        s = r["seconds"]
        print(f"{name:>15} {s['read']:>6.2f}s {s['coerce']:>6.2f}s {s['report']:>6.2f}s "
              f"{s['write']:>6.2f}s {r['total']:>6.2f}s  {r['report_mb']:.1f} MB")  # fmt: skip
    for name, r in results.items():
        print(f"{name}: {r['status']}: {r['message']}")
    worst = max(r["total"] for r in results.values())
    verdict = "within" if worst <= TARGET_SECONDS else "ABOVE"
    print(f"slowest check {worst:.1f} s: {verdict} the {TARGET_SECONDS:.0f} s target")
    out = ROOT / "artifacts" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "monitor.json").write_text(json.dumps({"load": load(), **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
