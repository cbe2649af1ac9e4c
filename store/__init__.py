"""MongoDB: dataset records, prediction logs, feedback and promotion decisions (mongoengine).

:mod:`store.settings` (where the store is), :mod:`store.connection` (connect, indexes),
:mod:`store.documents` (one document per stored concept), :mod:`store.crud` (create, read,
update, delete), :mod:`store.journal` (the prediction-log writer and its journal),
:mod:`store.transfer` (CSV import, backup, the query), :mod:`store.proof` (the run's proof
of the connection) and :mod:`store.embedded` (the store used when no server is set). The
``mlops db`` commands are in :mod:`flows.db`.

``MONGODB_URI`` set: a real MongoDB. Unset: an embedded store (mongomock persisted to a
folder) for development. See ``docs/database.md``.

Importing this package is light (no pandas, scikit-learn, Prefect or BentoML): the API
imports it. The CSV import/backup and the query live in :mod:`store.transfer`,
which needs pandas.
"""

from store.connection import StoreInfo, connect, disconnect, ensure_indexes, ping
from store.crud import (
    DatasetInfo,
    DatasetRecordOut,
    DecisionOut,
    FeedbackOut,
    Page,
    PredictionLogOut,
    collection_counts,
    count_prediction_logs,
    create_prediction_log,
    create_record,
    dataset_info,
    delete_dataset,
    delete_feedback,
    delete_prediction_log,
    delete_record,
    feedback_for,
    find_decisions,
    find_prediction_logs,
    find_records,
    get_feedback,
    get_prediction_log,
    get_record,
    list_datasets,
    prediction_logs_frame,
    record_decision,
    record_feedback,
    update_prediction_log,
    update_record,
)
from store.journal import (
    Journal,
    PredictionLogWriter,
    ReplayReport,
    WriterStats,
    replay_journal,
)
from store.settings import StoreSettings

__all__ = [
    "DatasetInfo",
    "DatasetRecordOut",
    "DecisionOut",
    "FeedbackOut",
    "Journal",
    "Page",
    "PredictionLogOut",
    "PredictionLogWriter",
    "ReplayReport",
    "StoreInfo",
    "StoreSettings",
    "WriterStats",
    "collection_counts",
    "connect",
    "count_prediction_logs",
    "create_prediction_log",
    "create_record",
    "dataset_info",
    "delete_dataset",
    "delete_feedback",
    "delete_prediction_log",
    "delete_record",
    "disconnect",
    "ensure_indexes",
    "find_decisions",
    "find_prediction_logs",
    "find_records",
    "get_feedback",
    "get_prediction_log",
    "get_record",
    "feedback_for",
    "list_datasets",
    "ping",
    "prediction_logs_frame",
    "record_decision",
    "record_feedback",
    "replay_journal",
    "update_prediction_log",
    "update_record",
]
