"""Command-line interface: ``mlops`` or ``python -m flows``.

Every user mistake (bad config, unreadable CSV, failed validation) is printed as readable
text without a traceback, and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tabular.cli_args import positive_int
from tabular.config import DEFAULT_CONFIG
from tabular.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand.

    Returns:
        The parser.
    """
    from tabular.store.cli import add_db_commands

    parser = argparse.ArgumentParser(prog="mlops", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the training pipeline (Prefect flow)")
    run.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    run.add_argument("--sample", type=positive_int, default=None, help="use N sampled rows")
    run.add_argument("--seed", type=int, default=None, help="random seed (default: config's)")
    run.add_argument("--artifacts", default=None, help="parent folder of run folders")
    run.set_defaults(handler=_run)

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


def _run(args: argparse.Namespace) -> int:
    from flows.pipeline import training_pipeline

    quiet_user_error_tracebacks()

    result = training_pipeline(
        config_path=args.config, sample=args.sample, seed=args.seed, artifacts_dir=args.artifacts
    )
    print(f"run {result.run_id} finished: {result.run_dir}")
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
