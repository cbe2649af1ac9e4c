"""MongoDB storage: dataset records, prediction logs and feedback, through mongoengine.

``MONGODB_URI`` set: a real MongoDB. Unset: an embedded store (mongomock persisted to a
folder) for development. See ``docs/database.md``.

Importing this package is light (no pandas, scikit-learn, Prefect or BentoML): the API
imports it. The CSV import/backup and the query live in :mod:`tabular.store.transfer`,
which needs pandas.
"""

from tabular.store.connection import StoreInfo, connect, disconnect, ensure_indexes, ping
from tabular.store.crud import (
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
    find_decisions,
    find_prediction_logs,
    find_records,
    get_feedback,
    get_prediction_log,
    get_record,
    labelled_predictions_frame,
    list_datasets,
    prediction_logs_frame,
    record_decision,
    record_feedback,
    update_prediction_log,
    update_record,
)
from tabular.store.journal import (
    Journal,
    PredictionLogWriter,
    ReplayReport,
    WriterStats,
    replay_journal,
)
from tabular.store.settings import StoreSettings

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
    "labelled_predictions_frame",
    "list_datasets",
    "ping",
    "prediction_logs_frame",
    "record_decision",
    "record_feedback",
    "replay_journal",
    "update_prediction_log",
    "update_record",
]
