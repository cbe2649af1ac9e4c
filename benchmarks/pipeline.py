"""How long `make run` takes: a first run on fresh state, then a re-run that reads the cache.

Runs ``python -m flows run`` twice as subprocesses, with the Makefile's environment and
fresh Prefect, BentoML and store folders under ``--home`` (the first run computes every
step, the second finds them all cached), and prints for each: the wall time of the whole
command, each step's wall and CPU seconds from its ``manifest.json``, the steps read back
from the cache, and the machine's load average before and after. CPU seconds move less
than wall seconds when other jobs share the machine: compare runs by them there.

    .venv/bin/python benchmarks/pipeline.py                   # the default data (~5 min)
    .venv/bin/python benchmarks/pipeline.py --sample 20000    # a quick check
    .venv/bin/python benchmarks/pipeline.py --horizon-study   # with the horizon study
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pipeline_env(home: Path) -> dict[str, str]:
    """The Makefile's environment, with fresh Prefect, BentoML and store folders under ``home``.

    No Prefect server, MongoDB or artifacts folder of the caller's is named: the run is alone.
    """
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "BENTOML_HOME": str(home / "bentoml"),
        "MLOPS_STORE_DIR": str(home / "store"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "MPLBACKEND": "Agg",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    for name in ("PREFECT_API_URL", "MONGODB_URI", "MLOPS_ARTIFACTS"):
        env.pop(name, None)
    return env


def run_once(home: Path, config: str, extra: list[str]) -> dict:
    """Run the pipeline once in a subprocess and return its timings and manifest."""
    env = pipeline_env(home)
    artifacts = home / "artifacts"
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows", "run", "--config", config, "--artifacts", str(artifacts)]
        + extra,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    run_dir = max((artifacts / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {
        "wall": wall,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "manifest": manifest,
    }


def report(name: str, run: dict) -> None:
    """Print one run's figures."""
    manifest = run["manifest"]
    steps, cpu = manifest["steps"], manifest.get("steps_cpu", {})
    print(f"\n{name}: {run['wall']:.1f} s for the whole command")
    print(
        "  load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
            *run["load_before"], *run["load_after"]
        )
    )
    print(f"  {'step':<16} {'wall s':>8} {'cpu s':>8}  cached")
    for step, seconds in steps.items():
        cached = "yes" if step in manifest.get("cached", []) else ""
        print(f"  {step:<16} {seconds:>8.1f} {cpu.get(step, float('nan')):>8.1f}  {cached}")
    print(f"  {'all steps':<16} {sum(steps.values()):>8.1f} {sum(cpu.values()):>8.1f}")
    best = manifest["models"]["best"]
    metric = manifest["config"]["training"]["metric"]
    print(
        f"  champion {best}: {manifest['models'][best]['best_params']}, mean fold "
        f"{manifest['models'][best][f'mean_fold_{metric}']:.4f}, test "
        f"{manifest['models'][best][f'test_{metric}']:.4f}"
    )


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="data/flights.yaml")
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--horizon-study", action="store_true")
    parser.add_argument("--home", default=None, help="folder for the runs' state (default: temp)")
    args = parser.parse_args()
    extra = (["--sample", str(args.sample)] if args.sample else []) + (
        ["--horizon-study"] if args.horizon_study else []
    )
    home = Path(args.home or tempfile.mkdtemp(prefix="bench-pipeline-"))
    print(f"state in {home}; {os.cpu_count()} cores")
    try:
        first = run_once(home, args.config, extra)
        report("first run (fresh state)", first)
        second = run_once(home, args.config, extra)
        report("second run (same data, config and code)", second)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
