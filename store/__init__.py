"""MongoDB: dataset records, prediction logs, feedback and promotion decisions (mongoengine).

:mod:`store.settings` (where the store is), :mod:`store.connection` (connect, indexes),
:mod:`store.documents` (one document per stored concept, and the models the API returns,
derived from them), :mod:`store.crud` (create, read, update, delete; the rules a record is
held to), :mod:`store.journal` (prediction-log documents, their insert, the journal of what
the store could not take), :mod:`store.transfer` (CSV import, backup, the query), :mod:`store.proof` (the
run's proof of the connection) and :mod:`store.embedded` (the store used when no server
is set: SQLite files under mongomock's query engine). The ``mlops db`` commands are in
:mod:`flows.db`.

``MONGODB_URI`` set: a real MongoDB. Unset: the embedded store in ``MLOPS_STORE_DIR``. See
``docs/database.md``.

Importing this package is light (no pandas, scikit-learn, Prefect or BentoML): the API
imports it. The CSV import/backup and the query live in :mod:`store.transfer`, which needs
pandas.
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
    ReplayReport,
    WriterStats,
    prediction_documents,
    replay_journal,
    writer_totals,
)
from store.settings import StoreSettings
