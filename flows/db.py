"""The mlops db commands: import, backup, read-backup, query, status, replay-journal, drop.

Each command connects from the environment (``MONGODB_URI``, ``MONGODB_DB``,
``MLOPS_STORE_DIR``; see :mod:`store.settings`), or from ``--uri``, ``--db`` and
``--store-dir``. Mistakes raise :class:`tabular.errors.UserError`, which the CLI prints as
one line before exiting with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable

from flows.cli_args import positive_int
from store.settings import StoreSettings
from tabular.config import DEFAULT_CONFIG, load_config


def add_db_commands(commands: argparse._SubParsersAction) -> None:
    """Add the ``db`` command group to the CLI.

    Args:
        commands: The subparsers object of the ``mlops`` parser.
    """
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("store (default: from the environment)")
    where.add_argument("--uri", help="MongoDB URI (overrides MONGODB_URI)")
    where.add_argument("--db", dest="database", help="database name (overrides MONGODB_DB)")
    where.add_argument(
        "--store-dir", help="embedded store folder when no URI is set (overrides MLOPS_STORE_DIR)"
    )
    where.add_argument(
        "--embedded", action="store_true", help="use the embedded store even if MONGODB_URI is set"
    )

    db = commands.add_parser(
        "db",
        help="MongoDB: import, back up and query datasets; replay the prediction-log journal",
        description=__doc__.splitlines()[0],
    )
    actions = db.add_subparsers(dest="db_command", required=True)

    imp = actions.add_parser(
        "import",
        parents=[common],
        help="import the config's dataset in batches (default config: data/flights.yaml)",
    )
    imp.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    imp.add_argument("--csv", help="CSV file with the config's columns (default: its source)")
    imp.add_argument("--batch-size", type=positive_int, default=5000, help="records per insert")
    imp.add_argument(
        "--replace", action="store_true", help="delete the dataset's stored records first"
    )
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(handler=_import)

    backup = actions.add_parser(
        "backup", parents=[common], help="back up a dataset or collection to CSV"
    )
    source = backup.add_mutually_exclusive_group()
    source.add_argument("--dataset", help="dataset name (default: the config's)")
    source.add_argument(
        "--collection", choices=("prediction_logs", "feedback"), help="back up this collection"
    )
    backup.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    backup.add_argument("--out", required=True, help="CSV file to write (plus .schema.json)")
    backup.add_argument("--quiet", action="store_true", help="no progress bar")
    backup.set_defaults(handler=_backup)

    read = actions.add_parser(
        "read-backup", help="read a backup CSV back with pandas and describe the frame"
    )
    read.add_argument("path", help="the backup CSV (its .schema.json must be next to it)")
    read.set_defaults(handler=_read_backup)

    query = actions.add_parser(
        "query", parents=[common], help="rows, positive share and a mean per group (in MongoDB)"
    )
    query.add_argument("--dataset", help="dataset name (default: the config's)")
    query.add_argument("--config", default=str(DEFAULT_CONFIG), help="dataset config (YAML)")
    query.add_argument("--by", help="column to group by (default: first categorical column)")
    query.add_argument("--month", help="only this month, YYYY-MM (e.g. 2013-07)")
    query.add_argument("--measure", help="numeric column to average (default: target source)")
    query.add_argument("--limit", type=positive_int, help="show the largest N groups")
    query.add_argument("--markdown", action="store_true", help="print a Markdown table")
    query.set_defaults(handler=_query)

    status = actions.add_parser(
        "status", parents=[common], help="where the store is and what it holds"
    )
    status.set_defaults(handler=_status)

    replay = actions.add_parser(
        "replay-journal",
        parents=[common],
        help="store the prediction logs journaled while MongoDB was down",
    )
    replay.add_argument("--journal", help="journal file (default: MLOPS_JOURNAL_PATH)")
    replay.set_defaults(handler=_replay)

    drop = actions.add_parser(
        "drop-dataset", parents=[common], help="delete a dataset's records and schema"
    )
    drop.add_argument("dataset", help="dataset name")
    drop.add_argument("--yes", action="store_true", help="confirm the deletion")
    drop.set_defaults(handler=_drop)


def settings_from_args(args: argparse.Namespace) -> StoreSettings:
    """Read the store settings from the environment, then apply the command-line overrides.

    Args:
        args: Parsed arguments with ``uri``, ``database``, ``store_dir`` and ``embedded``.

    Returns:
        The settings.
    """
    env = dict(os.environ)
    if getattr(args, "uri", None):
        env["MONGODB_URI"] = args.uri
    if getattr(args, "embedded", False):
        env.pop("MONGODB_URI", None)
        env.pop("MLOPS_REQUIRE_MONGODB", None)  # asked for explicitly on the command line
    if getattr(args, "database", None):
        env["MONGODB_DB"] = args.database
    if getattr(args, "store_dir", None):
        env["MLOPS_STORE_DIR"] = args.store_dir
    return StoreSettings.from_env(env)


def _connect(args: argparse.Namespace):
    from store.connection import connect

    return connect(settings_from_args(args))


def progress_bar(label: str, quiet: bool = False) -> Callable[[int, int], None] | None:
    """Return a ``progress(done, total)`` callback drawing a tqdm bar on stderr.

    Args:
        label: What is being counted.
        quiet: No bar at all.

    Returns:
        The callback, or ``None`` when ``quiet``.
    """
    if quiet:
        return None
    from tqdm import tqdm

    bar = tqdm(desc=label, unit=" rows", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def _import(args: argparse.Namespace) -> int:
    from store.transfer import import_dataset

    config = load_config(args.config)
    info = _connect(args)
    report = import_dataset(
        config,
        csv=args.csv,
        batch_size=args.batch_size,
        replace=args.replace,
        progress=progress_bar(f"import {config.name}", args.quiet),
    )
    dropped = ""
    if report.cleaning and report.cleaning.dropped:
        parts = [f"{count:,} ({reason})" for reason, count in report.cleaning.dropped.items()]
        dropped = f"; rows dropped while cleaning: {', '.join(parts)}"
    print(
        f"imported dataset '{report.dataset}' from {report.source} into {info.describe()}: "
        f"{report.rows:,} rows, {report.inserted:,} new, {report.already_stored:,} already "
        f"stored, in {report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s){dropped}"
    )
    return 0


def _dataset_name(args: argparse.Namespace) -> str:
    return args.dataset or load_config(args.config).name


def _backup(args: argparse.Namespace) -> int:
    from store.transfer import backup_collection, backup_dataset

    info = _connect(args)
    if args.collection:
        report = backup_collection(args.collection, args.out)
        what = f"collection '{args.collection}'"
    else:
        dataset = _dataset_name(args)
        progress = progress_bar(f"backup {dataset}", args.quiet)
        report = backup_dataset(dataset, args.out, progress=progress)
        what = f"dataset '{dataset}'"
    print(
        f"backed up {what} from {info.describe()} to {report.path} "
        f"(schema: {report.schema_path}): {report.rows:,} rows x {report.columns} columns "
        f"in {report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s)"
    )
    return 0


def _read_backup(args: argparse.Namespace) -> int:
    from store.transfer import read_backup

    frame = read_backup(args.path)
    print(f"{args.path}: {len(frame):,} rows x {frame.shape[1]} columns")
    width = max((len(str(c)) for c in frame.columns), default=0)
    for name, dtype in frame.dtypes.items():
        missing = int(frame[name].isna().sum())
        print(f"  {str(name).ljust(width)}  {str(dtype):<16} {missing:>9,} missing")
    return 0


def _query(args: argparse.Namespace) -> int:
    from store.proof import query_output

    info = _connect(args)
    print(
        query_output(
            info,
            _dataset_name(args),
            by=args.by,
            month=args.month,
            measure=args.measure,
            limit=args.limit,
            markdown=args.markdown,
        )
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from store.crud import collection_counts, list_datasets
    from store.journal import Journal, writer_totals

    settings = settings_from_args(args)
    info = _connect(args)
    print(info.describe())
    for name, count in collection_counts().items():
        print(f"  {name:<20} {count:>10,} documents")
    for dataset in list_datasets():
        when = dataset.imported_at
        imported = f"imported {when:%Y-%m-%d %H:%M} UTC" if when else "import unfinished"
        print(
            f"  dataset '{dataset.dataset}': {dataset.records:,} records, "
            f"{len(dataset.columns)} columns, {imported} from {dataset.source}"
        )
    journal = Journal(settings.journal_path)
    print(
        f"journal {journal.path}: {len(journal.read()):,} prediction log(s) waiting for replay, "
        f"{journal.set_aside_count():,} set aside with the reason"
    )
    for document, reason in journal.set_aside_documents()[-3:]:
        print(f"  set aside {document.get('_id', document.get('request_id'))}: {reason}")
    totals = writer_totals(settings.journal_path)
    print(
        f"prediction-log writers, every process since the journal was created: "
        f"stored {totals.stored:,}, already stored {totals.already_stored:,}, "
        f"journaled {totals.journaled:,}, set aside {totals.set_aside:,}, "
        f"dropped {totals.dropped:,}"
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from store.journal import replay_journal

    settings = settings_from_args(args)
    info = _connect(args)
    path = args.journal or settings.journal_path
    report = replay_journal(path)
    fields = ", ".join(f"{f.name.replace('_', ' ')} {getattr(report, f.name):,}"
                       for f in dataclasses.fields(report))  # fmt: skip
    print(f"replayed {path} into {info.describe()}: {fields}")
    return 0


def _drop(args: argparse.Namespace) -> int:
    from store.crud import delete_dataset
    from tabular.errors import StoreError

    if not args.yes:
        raise StoreError(f"add --yes to delete dataset '{args.dataset}' from the store")
    info = _connect(args)
    deleted = delete_dataset(args.dataset)
    print(f"deleted dataset '{args.dataset}' ({deleted:,} records) from {info.describe()}")
    return 0
