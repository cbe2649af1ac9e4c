"""Command-line interface: ``mlops`` or ``python -m flows``.

Every user mistake (bad config, unreadable CSV, failed validation) is printed as readable
text without a traceback, and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from flows.cli_args import column_method, positive_float, positive_int, scheduler_address
from tabular.config import DEFAULT_CONFIG
from tabular.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand.

    Returns:
        The parser.
    """
    from flows.db import add_db_commands

    parser = argparse.ArgumentParser(prog="mlops", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the training pipeline (Prefect flow)")
    run.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    run.add_argument("--sample", type=positive_int, default=None, help="use N sampled rows")
    run.add_argument("--seed", type=int, default=None, help="random seed (default: config's)")
    run.add_argument("--artifacts", default=None, help="parent folder of run folders")
    run.add_argument(
        "--horizon-study",
        action="store_true",
        help="also refit the champion at each horizon of training.horizon_study (~1 min)",
    )
    run.add_argument(
        "--dask", type=scheduler_address, default=None, metavar="ADDRESS",
        help="run the search, SHAP and horizon units on this Dask scheduler (tcp://host:8786) "
        "as Prefect tasks; default: the config's execution.dask, else this process",
    )  # fmt: skip
    run.set_defaults(handler=_run)

    monitor = commands.add_parser(
        "monitor", help="check drift of the logged inputs once (Prefect flow drift-monitor)"
    )
    monitor.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    window = monitor.add_argument_group("window (default: the config's last window_rows logs)")
    window.add_argument("--since", help="logs served at or after this time (ISO 8601, UTC)")
    window.add_argument("--until", help="logs served before this time (ISO 8601, UTC)")
    window.add_argument("--since-minutes", type=positive_float, help="logs of the last N minutes")
    window.add_argument("--last", type=positive_int, help="at most the last N logs")
    monitor.add_argument(
        "--reference", choices=["whole", "same_period", "recent"],
        help="reference rows: every training row, those of the window's period, or the logs before",
    )  # fmt: skip
    monitor.add_argument(
        "--importance-share", type=positive_float,
        help="importance-weighted drift that flags dataset drift (0-1)",
    )  # fmt: skip
    monitor.add_argument(
        "--drift-share", type=positive_float, help="share of drifted columns of Evidently's test"
    )
    monitor.add_argument(
        "--method", type=column_method, action="append", default=[], metavar="COLUMN=METHOD",
        help="drift method of a column (Evidently's names: psi, ks, wasserstein, ...); repeatable",
    )  # fmt: skip
    monitor.add_argument("--min-rows", type=positive_int, help="fewest logs to compare")
    monitor.add_argument(
        "--on-drift", choices=["retrain", "report", "off"], help="what dataset drift triggers"
    )
    monitor.add_argument("--margin", type=float, help="what the challenger must win by")
    monitor.add_argument("--service-url", help="the running API to reload after a promotion")
    monitor.add_argument("--artifacts", default=None, help="parent of run and monitoring folders")
    monitor.add_argument("--workspace", default=None, help="the Evidently workspace folder")
    monitor.set_defaults(handler=_monitor)

    replay = commands.add_parser("replay", help="send a period of the dataset to a running API")
    replay.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    replay.add_argument("--from", dest="start", required=True, help="first day (ISO 8601)")
    replay.add_argument("--to", dest="end", required=True, help="last day, included")
    replay.add_argument("--rate", type=positive_float, default=200.0, help="requests per second")
    replay.add_argument("--concurrency", type=positive_int, default=8, help="concurrent requests")
    replay.add_argument("--url", default="http://127.0.0.1:3000", help="the API's base URL")
    replay.add_argument(
        "--with-feedback",
        action="store_true",
        help="post each true outcome too (with the API's key, from MLOPS_API_KEY)",
    )
    replay.add_argument("--sample", type=positive_int, default=None, help="send N sampled rows")
    replay.add_argument("--seed", type=int, default=0, help="seed of the sample")
    replay.set_defaults(handler=_replay)

    # Other stages add their subcommands here, one line each (their modules own the options).
    add_db_commands(commands)
    return parser


class _HideUserErrorTraceback(logging.Filter):
    """Drop the traceback from log records about a :class:`UserError`: the message says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    """Stop Prefect's loggers from printing a traceback for user errors (bad data, config)."""
    loggers = [logging.getLogger()] + [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("prefect")
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, _HideUserErrorTraceback) for f in handler.filters):
                handler.addFilter(_HideUserErrorTraceback())


def start_prefect_api() -> threading.Thread | None:
    """Launch Prefect's temporary server now, so that it comes up while the pipeline imports.

    Without ``PREFECT_API_URL``, Prefect starts a temporary server for the process on its
    first client: about 13 s here until it answers, and the flow run waited for it after
    the pipeline's modules had imported (6 s). Here Prefect's client and server modules are
    imported first (5.5 s; a thread importing them while the main thread imports others
    would only share one interpreter lock with it), then a thread asks for a client, which
    launches the server and waits for it, while the caller imports. The server is one per
    process, so the flow run finds it running; if it failed to start, the flow run's own
    attempt reports why.

    Returns:
        The thread to join before the flow run, or None when a server is configured.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    import prefect.server.api.server  # noqa: F401 - see above
    from prefect.client.orchestration import get_client

    def start() -> None:
        try:
            get_client(sync_client=True)
        except Exception:  # noqa: BLE001 - the flow run starts it again and reports the error
            pass

    thread = threading.Thread(target=start, name="prefect-api", daemon=True)
    thread.start()
    return thread


def _run(args: argparse.Namespace) -> int:
    api = start_prefect_api()
    from flows.pipeline import training_pipeline

    quiet_user_error_tracebacks()
    if api is not None:
        api.join()

    result = training_pipeline(
        config_path=args.config,
        sample=args.sample,
        seed=args.seed,
        artifacts_dir=args.artifacts,
        horizon_study=args.horizon_study,
        dask=args.dask,
    )
    print(f"run {result.run_id} finished: {result.run_dir}")
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from monitoring.check import Window

    # A malformed window is reported before a flow run (and a Prefect server) starts.
    Window.parse(
        since=args.since,
        until=args.until,
        since_minutes=args.since_minutes,
        last=args.last,
        default_last=1,
    )
    from flows.monitor import drift_monitor

    quiet_user_error_tracebacks()
    result = drift_monitor(
        config_path=args.config,
        since=args.since,
        until=args.until,
        since_minutes=args.since_minutes,
        last=args.last,
        reference=args.reference,
        importance_share=args.importance_share,
        drift_share=args.drift_share,
        methods=dict(args.method) or None,
        min_rows=args.min_rows,
        on_drift=args.on_drift,
        margin=args.margin,
        service_url=args.service_url,
        artifacts_dir=args.artifacts,
        workspace=args.workspace,
    )
    summary = result.summary
    print(f"{summary.status}: {summary.message}")
    if summary.reference is not None:
        print(
            f"  reference ({summary.reference.mode}): {summary.reference.rows:,} "
            f"{summary.reference.description}"
        )
    for problem in summary.problems:
        print(f"  refused {problem.rows:,} log(s): {problem.field}: {problem.message}")
    for name, path in summary.outputs.items():
        print(f"  {name}: {path}")
    if result.action != "none":
        print(result.note)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from monitoring.replay import api_contract, period_rows, replay
    from tabular.config import load_config

    config = load_config(args.config)
    api_key = os.environ.get("MLOPS_API_KEY", "").strip() or None
    if args.with_feedback and api_key is None:
        raise UserError(
            "--with-feedback needs the API's write key: set MLOPS_API_KEY to the key the API "
            "was started with (/feedback refuses outcomes without it)"
        )
    # The period first: a malformed date is named even when the API is not running.
    rows = period_rows(config, args.start, args.end, sample=args.sample, seed=args.seed)
    contract = api_contract(args.url)
    bodies = [contract.json_row(row) for row in rows.to_dict("records")]
    outcomes = rows[config.target.name].tolist() if args.with_feedback else None
    print(
        f"replaying {len(bodies):,} {config.rows()} dated {args.start} to {args.end} to {args.url}"
    )
    with tqdm(total=len(bodies), unit="req", disable=None) as bar:
        summary = replay(
            args.url,
            bodies,
            outcomes,
            rate=args.rate,
            concurrency=args.concurrency,
            progress=bar.update,
            api_key=api_key,
        )
    print("\n".join(summary.lines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for a user error.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        logging.shutdown()
