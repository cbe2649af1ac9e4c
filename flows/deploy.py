"""``make deploy``: serve the training pipeline and the drift monitor as Prefect deployments.

Against the Prefect server named by ``PREFECT_API_URL`` (``make prefect-server``), this
registers two deployments and runs them in this process when they are triggered:

* ``training-pipeline/<dataset>``: the training pipeline, run on demand from the UI;
* ``drift-monitor/<dataset>``: the drift check, on the config's ``monitoring.schedule``
  (hourly by default), also runnable on demand with other parameters (window, ``on_drift``).

The process keeps running (Ctrl-C stops it); the UI shows both deployments, their runs,
logs and artifacts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tabular.config import DEFAULT_CONFIG, load_config
from tabular.errors import UserError


def check_server(url: str | None) -> str:
    """Check that a Prefect server answers at ``PREFECT_API_URL``.

    Args:
        url: The API URL (e.g. ``http://127.0.0.1:4200/api``).

    Returns:
        The URL.

    Raises:
        UserError: If it is unset or does not answer.
    """
    import httpx

    if not url:
        raise UserError(
            "PREFECT_API_URL is not set: start the server with `make prefect-server` and "
            "deploy with `make deploy` (it sets the URL)"
        )
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise UserError(
            f"no Prefect server answers at {url} ({type(exc).__name__}); start it with "
            "`make prefect-server` (same PREFECT_PORT)"
        ) from None
    return url


def deployments(config_path: str | Path, service_url: str | None):
    """Build the two deployments of one dataset.

    Args:
        config_path: The dataset config.
        service_url: The running API the monitor reloads after a promotion (``None``: none).

    Returns:
        The training-pipeline and drift-monitor deployments.
    """
    from flows.monitor import drift_monitor
    from flows.pipeline import training_pipeline

    path = str(Path(config_path).resolve())
    config = load_config(path)
    pipeline = training_pipeline.to_deployment(
        name=config.name,
        parameters={"config_path": path},
        description=f"Train and build the Bento of '{config.name}' ({config.question})",
        tags=["training", config.name],
    )
    monitor = drift_monitor.to_deployment(
        name=config.name,
        cron=config.monitoring.schedule,
        parameters={"config_path": path, "service_url": service_url},
        description=(
            f"Drift of the served '{config.name}' inputs against the training reference "
            f"(schedule {config.monitoring.schedule}; on_drift={config.monitoring.on_drift})"
        ),
        tags=["monitoring", config.name],
    )
    return pipeline, monitor


def main(argv: Sequence[str] | None = None) -> int:
    """Register and serve the deployments until interrupted.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when stopped, 2 for a user error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m flows.deploy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    parser.add_argument("--service-url", default=None, help="the API to reload after a promotion")
    args = parser.parse_args(argv)
    try:
        url = check_server(os.environ.get("PREFECT_API_URL"))
        pipeline, monitor = deployments(args.config, args.service_url)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from prefect import serve

    print(f"serving deployments {pipeline.name!r} and {monitor.name!r} against {url}")
    serve(pipeline, monitor)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
