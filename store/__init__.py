"""MongoDB: dataset records, prediction logs, feedback and promotion decisions (mongoengine).

``settings`` (where the store is), ``connection``, ``documents`` (one document per stored
concept, and the models derived from them), ``crud`` (with the rules a record is held to),
``journal`` (log documents, their insert, the journal of what the store could not take),
``transfer`` (CSV import, backup, the query), ``proof`` (the run's proof of the
connection), ``embedded`` (SQLite files under mongomock's query engine, when
``MONGODB_URI`` is unset). Light to import: no pandas, Prefect or BentoML.
"""

# ruff: noqa: F401 - the names imported here are the package's public API

from store.connection import StoreInfo, connect, disconnect, ensure_indexes, ping
from store.crud import (
    DatasetInfo,
    DatasetRecordOut,
    DecisionOut,
    FeedbackOut,
    Page,
    PredictionLogOut,
    apply_log_retention,
    check_values,
    collection_counts,
    count_prediction_logs,
    create_prediction_log,
    create_record,
    dataset_info,
    delete_dataset,
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
    ReplayReport,
    WriterStats,
    prediction_documents,
    replay_journal,
    writer_totals,
)
from store.settings import StoreSettings
