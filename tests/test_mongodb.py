"""What only a real MongoDB server can show (``@pytest.mark.mongodb``).

Skipped without ``MONGODB_URI`` (tests/conftest.py says why); CI's mongodb job runs them
against a ``mongo:7`` service container, connected as the application's own account, made by
docker/mongo-init.js as in compose. The rest of the store, service and monitoring tests also
run there, on the same server (.ci/mongodb.sh).

* The application's account (readWrite on its database only) is enough for everything the
  application does, and is refused anywhere else.
* The embedded store (mongomock, persisted: the fallback used when no server is configured)
  answers the application's queries as the server does, on the same data.
"""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import pytest

from monitoring.logs import labelled_predictions_frame
from store import (
    StoreSettings,
    connect,
    count_prediction_logs,
    create_prediction_log,
    create_record,
    delete_record,
    disconnect,
    find_prediction_logs,
    find_records,
    get_record,
    prediction_logs_frame,
    record_feedback,
)
from store.connection import get_database
from store.transfer import import_dataset, records_frame, summarize
from tabular.config import load_config
from tabular.errors import RecordNotFound
from tests.conftest import (
    drop_test_database,
    fresh_database,
    make_toy_frame,
    shared_test_database,
    write_toy_dataset,
)
from tests.test_store import prediction

pytestmark = pytest.mark.mongodb

#: MongoDB's error code for an operation the account is not allowed.
UNAUTHORIZED = 13


@pytest.fixture
def server(tmp_path):
    """Settings of a fresh database on MONGODB_URI's server; dropped (or emptied) after."""
    settings = StoreSettings.from_env(
        {**os.environ, "MONGODB_DB": fresh_database(), "MLOPS_STORE_DIR": str(tmp_path / "x")}
    )
    yield settings
    connect(settings, check=False)
    drop_test_database(get_database())
    disconnect()


def test_the_application_account_does_the_application_s_work_and_nothing_else(server, tmp_path):
    from pymongo.errors import OperationFailure

    connect(server)  # pings, and creates every index: createIndex is part of readWrite
    database = get_database()
    if shared_test_database() is not None:
        # CI connects as the application's own account (docker/mongo-init.js): exactly
        # readWrite on its database, never root.
        status = database.command("connectionStatus")["authInfo"]
        assert status["authenticatedUserRoles"] == [{"role": "readWrite", "db": server.database}]
        with pytest.raises(OperationFailure) as refused:
            database.client[f"{server.database}_elsewhere"]["probe"].insert_one({"x": 1})
        assert refused.value.code == UNAUTHORIZED

    # What the application does with it: import, the CRUD of the API, logs and feedback, the
    # aggregation behind `mlops db query`, and a re-import that adds nothing.
    config = load_config(write_toy_dataset(tmp_path / "orders", make_toy_frame(200)))
    assert import_dataset(config, batch_size=64).inserted == 200
    assert import_dataset(config, batch_size=64).already_stored == 200
    first = find_records("orders", page_size=1).items[0]
    created = create_record("orders", first.values)
    assert get_record(created.id).values == first.values and created.row_number == 200
    delete_record(created.id)
    with pytest.raises(RecordNotFound):
        get_record(created.id)
    create_prediction_log(prediction("r-1"))
    record_feedback("r-1", 1)
    assert count_prediction_logs() == 1
    assert labelled_predictions_frame()["actual"].tolist() == [1]
    assert summarize("orders", by="channel").rows


def store_answers(settings: StoreSettings, config) -> dict:
    """Import the same rows and logs into one store, then ask what the application asks."""
    connect(settings)
    import_dataset(config, batch_size=100)
    start = dt.datetime(2024, 5, 1, 12, 0, 0)
    for i in range(60):
        create_prediction_log(
            prediction(
                f"r-{i:03d}",
                timestamp=start + dt.timedelta(minutes=i),
                model_name="late_xgboost" if i % 3 else "late_mlp",
                model_version=f"v{i % 2}",
                probability=round(0.01 + i / 61, 6),
                prediction=int(i % 4 == 0),
            )
        )
    for i in range(0, 60, 5):
        record_feedback(f"r-{i:03d}", i % 2, received_at=start + dt.timedelta(hours=2))
    page = find_records(
        "orders", where={"channel": "web"}, date_from="2021-01-20", date_to="2021-03-01",
        page=2, page_size=7,
    )  # fmt: skip
    logs = find_prediction_logs(model_name="late_xgboost", since=start + dt.timedelta(minutes=9),
                                page=2, page_size=5)  # fmt: skip
    frames = {
        "records": records_frame("orders"),
        "logs": prediction_logs_frame(dataset="flights", until=start + dt.timedelta(minutes=50)),
        "labelled": labelled_predictions_frame(model_version="v0"),
    }
    answers = {
        "summary": summarize("orders", by="channel", measure="price").rows,
        "march": summarize("orders", by="region", month="2021-03", limit=3).rows,
        "page": (page.total, [(r.row_number, r.values) for r in page.items]),
        "logs": (logs.total, [log.request_id for log in logs.items]),
        "counts": [
            count_prediction_logs(model_name="late_mlp"),
            count_prediction_logs(model_version="v1", since=start + dt.timedelta(minutes=30)),
        ],
    }
    disconnect()
    return {"answers": answers, "frames": frames}


def rounded(rows):
    return [[round(v, 9) if isinstance(v, float) else v for v in row] for row in rows]


def test_the_embedded_store_answers_like_mongodb(server, tmp_path):
    config = load_config(write_toy_dataset(tmp_path / "orders", make_toy_frame(600)))
    embedded = StoreSettings.from_env(
        {"MLOPS_STORE_DIR": str(tmp_path / "embedded"), "MONGODB_DB": "mlops"}
    )
    assert embedded.embedded and not server.embedded
    local, remote = (store_answers(s, config) for s in (embedded, server))

    for name in ("summary", "march"):
        # $avg sums in another order on the server: equal to nine decimals.
        assert rounded(local["answers"][name]) == rounded(remote["answers"][name]), name
    for name in ("page", "logs", "counts"):
        assert local["answers"][name] == remote["answers"][name], name
    assert local["answers"]["page"][0] > 7 and local["answers"]["logs"][0] > 5
    for name, table in local["frames"].items():
        assert len(table) > 0, name
        pd.testing.assert_frame_equal(
            table.reset_index(drop=True), remote["frames"][name].reset_index(drop=True), obj=name
        )
