"""The MongoDB store: documents, import, backup round trip, query, CRUD and the CLI.

Every test that touches a database runs on the embedded store, or on the real MongoDB
named by ``MONGODB_URI`` when it is set (each test gets a fresh database, dropped after; or,
with ``MLOPS_TEST_DATABASE``, the one its account may use, emptied: tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from monitoring.logs import labelled_predictions_frame
from store import (
    connect,
    count_prediction_logs,
    create_prediction_log,
    create_record,
    delete_prediction_log,
    delete_record,
    disconnect,
    find_prediction_logs,
    find_records,
    get_feedback,
    get_prediction_log,
    get_record,
    prediction_logs_frame,
    record_feedback,
    update_prediction_log,
    update_record,
)
from store.connection import get_database
from store.documents import DatasetRecord, DatasetSchema
from store.settings import StoreSettings, redact_uri, split_uri_database, uri_hosts
from store.transfer import (
    backup_collection,
    backup_dataset,
    import_dataset,
    read_backup,
    records_frame,
    summarize,
)
from tabular.config import DEFAULT_CONFIG, load_config
from tabular.datasets import load_raw, prepare
from tabular.errors import Conflict, DatasetError, InvalidRecord, RecordNotFound, StoreError
from tests.conftest import (
    drop_test_database,
    fresh_database,
    make_bookings_frame,
    make_toy_frame,
    write_bookings_dataset,
    write_toy_dataset,
)

#: Rows of the default dataset used by the quick round-trip test (the full 327,346-row round
#: trip takes about a minute on the embedded store: a slow test and the benchmark run it).
ROUND_TRIP_ROWS = 20_000


def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Connect to a fresh database (embedded, or ``MONGODB_URI``'s server); drop it after."""
    monkeypatch.setenv("MONGODB_DB", fresh_database())
    monkeypatch.setenv("MLOPS_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MLOPS_JOURNAL_PATH", str(tmp_path / "journal" / "logs.jsonl"))
    settings = StoreSettings.from_env()
    connect(settings)
    try:
        yield settings
    finally:
        connect(settings, check=False)  # a test may have switched stores
        drop_test_database(get_database())
        disconnect()


@pytest.fixture
def store(tmp_path, monkeypatch):
    yield from fresh_store(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def flights():
    config = load_config(DEFAULT_CONFIG)
    data, _ = prepare(load_raw(config), config)
    return config, data


def prediction(request_id: str, **changes) -> dict:
    record = {
        "request_id": request_id,
        "timestamp": dt.datetime(2024, 5, 1, 12, 0, 0),
        "model_name": "late_xgboost",
        "model_version": "v1",
        "features": {"carrier": "UA", "distance": 1400, "sched_dep": "2013-07-01T05:15:00"},
        "prediction": 1,
        "probability": 0.71,
        "latency_ms": 3.2,
        "dataset": "flights",
    }
    record.update(changes)
    return record


# -- settings ----------------------------------------------------------------------------------


def test_settings_from_environment(tmp_path):
    embedded = StoreSettings.from_env({"MLOPS_STORE_DIR": str(tmp_path)})
    assert embedded.embedded and embedded.database == "mlops"
    assert embedded.journal_path == tmp_path / "journal" / "prediction_logs.sqlite3"

    server = StoreSettings.from_env(
        {"MONGODB_URI": "mongodb://u:secret@db:27017/prod?tls=false", "MONGODB_TIMEOUT_MS": "500"}
    )
    assert not server.embedded and server.database == "prod" and server.timeout_ms == 500
    assert "secret" not in server.location and "u:***@db" in server.location
    assert redact_uri("mongodb://db:27017") == "mongodb://db:27017"
    uri, database = split_uri_database("mongodb://u:p@db:27017/prod?tls=false")
    assert (uri, database) == ("mongodb://u:p@db:27017/?tls=false&authSource=prod", "prod")
    assert split_uri_database("mongodb://db") == ("mongodb://db", None)

    with pytest.raises(StoreError, match="MONGODB_URI must be a MongoDB URI"):
        StoreSettings.from_env({"MONGODB_URI": "postgres://x"})
    with pytest.raises(StoreError, match="MONGODB_TIMEOUT_MS"):
        StoreSettings.from_env({"MONGODB_TIMEOUT_MS": "soon"})
    assert uri_hosts("mongodb://u:secret@db:27017,db2/prod?tls=false") == "mongodb://db:27017,db2"
    assert server.host == "mongodb://db:27017"


def test_required_mongodb_without_uri_is_a_named_error(tmp_path, monkeypatch, capsys):
    required = {"MLOPS_REQUIRE_MONGODB": "1", "MLOPS_STORE_DIR": str(tmp_path)}
    with pytest.raises(StoreError, match="MONGODB_URI is not set, but MLOPS_REQUIRE_MONGODB=1"):
        StoreSettings.from_env(required)
    server = StoreSettings.from_env({**required, "MONGODB_URI": "mongodb://db:27017"})
    assert not server.embedded
    # The CLI stops with that one line (exit status 2) instead of using the embedded store.
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("MLOPS_REQUIRE_MONGODB", "1")
    monkeypatch.setenv("MLOPS_STORE_DIR", str(tmp_path / "store"))
    assert main(["db", "status"]) == 2
    error = capsys.readouterr().err
    assert "MONGODB_URI is not set" in error and "Traceback" not in error
    assert not (tmp_path / "store").exists()


def test_connect_names_the_store_in_the_log_once(store, monkeypatch, caplog):
    import store.connection as connection

    monkeypatch.setattr(connection, "_ANNOUNCED", set())
    with caplog.at_level("INFO", logger="store.connection"):
        connect(store)
        connect(store)
    lines = [r.getMessage() for r in caplog.records if r.name == "store.connection"]
    assert lines == [f"store: {connection.StoreInfo(*_info(store)).describe()}"]
    assert store.host in lines[0] and "@" not in lines[0]


def _info(settings: StoreSettings) -> tuple[str, str, str]:
    return ("embedded" if settings.embedded else "mongodb", settings.database, settings.host)


# -- import, backup, round trip --------------------------------------------------------------


def check_round_trip(config, frame: pd.DataFrame, folder: Path, *, via_store: bool) -> None:
    """Import a frame, back it up to CSV, read the CSV: the same frame comes back.

    With ``via_store``, the frame read from the store (before any CSV) is checked too.
    """
    report = import_dataset(config, frame=frame, batch_size=5000)
    assert (report.rows, report.inserted, report.already_stored) == (len(frame), len(frame), 0)

    if via_store:
        from_store = records_frame(config.name)
        pd.testing.assert_frame_equal(from_store, frame, check_exact=True)

    backup = backup_dataset(config.name, folder / "backup" / "flights.csv")
    assert backup.rows == len(frame) and backup.columns == frame.shape[1]
    assert backup.schema_path.is_file()
    restored = read_backup(backup.path)
    assert restored.shape == frame.shape
    assert list(restored.columns) == list(frame.columns)
    assert restored.dtypes.to_dict() == frame.dtypes.to_dict()
    pd.testing.assert_frame_equal(restored, frame, check_exact=True)


def test_default_dataset_round_trip(store, flights, tmp_path):
    """Default dataset -> MongoDB -> CSV -> pandas gives back the same frame.

    Uses the first 20,000 rows of the cleaned default dataset (all its columns and dtypes)
    to stay fast; the slow test below and benchmarks/bench_store.py do all 327,346 rows.
    """
    config, data = flights
    check_round_trip(config, data.head(ROUND_TRIP_ROWS).copy(), tmp_path, via_store=True)


@pytest.mark.slow
def test_full_default_dataset_round_trip(store, flights, tmp_path):
    """The same round trip on the whole cleaned default dataset (about 45 s)."""
    config, data = flights
    assert len(data) == 327_346
    check_round_trip(config, data, tmp_path, via_store=False)


def test_reimport_adds_nothing_and_keeps_identical_rows(store, tmp_path):
    frame = make_toy_frame(rows=300)
    # Two identical rows are two records: a hash of the values alone would merge them.
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)
    config = load_config(write_toy_dataset(tmp_path / "orders", frame))

    first = import_dataset(config, batch_size=100)
    assert (first.inserted, first.already_stored) == (301, 0)
    second = import_dataset(config, batch_size=100)
    assert (second.inserted, second.already_stored) == (0, 301)
    assert DatasetRecord.objects(dataset="orders").count() == 301
    assert len(records_frame("orders")) == 301


def test_import_with_wrong_columns_writes_nothing(store, tmp_path, capsys):
    config_path = write_toy_dataset(tmp_path / "orders")
    bad = tmp_path / "bad.csv"
    make_toy_frame(rows=50).drop(columns=["price"]).rename(columns={"channel": "chan"}).to_csv(
        bad, index=False
    )
    config = load_config(config_path)
    with pytest.raises(DatasetError, match=r"lacks column\(s\) 'channel' \(categorical\)"):
        import_dataset(config, csv=bad)
    assert DatasetRecord.objects.count() == 0
    assert DatasetSchema.objects.count() == 0

    status = main(["db", "import", "--config", str(config_path), "--csv", str(bad), "--quiet"])
    assert status == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "'price' (numeric)" in error
    assert "Traceback" not in error
    assert DatasetRecord.objects.count() == 0


def test_import_refuses_missing_dates_before_writing(store, tmp_path):
    frame = make_toy_frame(rows=40)
    frame.loc[[3, 7], "order_date"] = "not a date"
    config = load_config(write_toy_dataset(tmp_path / "orders", frame))
    with pytest.raises(InvalidRecord, match=r"date: column 'order_date' is missing .* 2 row"):
        import_dataset(config)
    assert DatasetRecord.objects.count() == 0


def test_import_refuses_changed_columns_unless_replaced(store, tmp_path):
    config = load_config(write_toy_dataset(tmp_path / "orders"))
    import_dataset(config)
    changed = make_toy_frame()
    changed["price"] = changed["price"].round().astype("int64")  # float64 -> int64
    other = load_config(write_toy_dataset(tmp_path / "orders2", changed))
    with pytest.raises(StoreError, match=r"already stored with other columns .*price"):
        import_dataset(other)
    report = import_dataset(other, replace=True)
    assert report.inserted == 600
    assert records_frame("orders")["price"].dtype == np.dtype("int64")
    assert DatasetRecord.objects(dataset="orders").count() == 600


def test_round_trip_keeps_every_dtype_of_a_user_dataset(store, tmp_path):
    """Any dataset, not only flights: nullable ints, booleans, categories, odd names, tz."""
    config = load_config(write_toy_dataset(tmp_path / "orders"))
    frame, _ = prepare(make_toy_frame(rows=120), config)
    frame["coupon.code"] = pd.Series(["A", None, "$x", ""] * 30, dtype=object)
    frame["$weird"] = np.arange(120, dtype="int32")
    frame["gift"] = np.tile([True, False], 60)
    frame["rating"] = pd.array([1, None, 3] * 40, dtype="Int64")
    frame["size"] = pd.Categorical(["S", "M", "L"] * 40, categories=["S", "M", "L"])
    frame["shipped"] = pd.date_range("2021-01-01 10:00", periods=120, freq="h", tz="Europe/Paris")
    frame["weight"] = np.linspace(0.1, 12.3, 120).astype("float32")
    frame["note"] = pd.array(["ok", None] * 60, dtype="string")
    frame.loc[5, "price"] = np.nan

    import_dataset(config, frame=frame)
    restored = records_frame("orders")
    pd.testing.assert_frame_equal(restored, frame, check_exact=True)

    backup = backup_dataset("orders", tmp_path / "orders.csv")
    from_csv = read_backup(backup.path)
    # A CSV cannot tell an empty string from a missing value: "" comes back missing.
    expected = frame.copy()
    expected.loc[expected["coupon.code"] == "", "coupon.code"] = np.nan
    pd.testing.assert_frame_equal(from_csv, expected, check_exact=True)


def test_a_prepared_frame_with_a_date_built_from_parts_imports(store, tmp_path):
    # The pipeline stores the rows it prepared: their date was built from date_from already.
    frame = make_bookings_frame(rows=300, seed=4)
    config = load_config(
        write_bookings_dataset(
            tmp_path / "bookings",
            frame,
            date_column="arrival_date",
            date_from={
                "year": "arrival_date_year",
                "month": "arrival_date_month",
                "day": "arrival_date_day_of_month",
            },
        )
    )
    prepared, _ = prepare(load_raw(config), config)
    assert import_dataset(config, frame=prepared).inserted == 300
    pd.testing.assert_frame_equal(records_frame("bookings"), prepared, check_exact=True)
    # A raw file holding a column of that name is still refused.
    with pytest.raises(DatasetError, match="already has a column 'arrival_date'"):
        import_dataset(config, csv=_csv(tmp_path, prepared))


def _csv(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "with_date.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_dataset_without_a_date_column_round_trips_and_takes_records(store, tmp_path):
    frame = make_toy_frame(rows=200).drop(columns=["order_date"])
    config = load_config(write_toy_dataset(tmp_path / "orders", frame, date_column=None))
    report = import_dataset(config)
    assert report.inserted == 200
    prepared, _ = prepare(frame, config)
    pd.testing.assert_frame_equal(records_frame("orders"), prepared, check_exact=True)
    backup = backup_dataset("orders", tmp_path / "orders.csv")
    pd.testing.assert_frame_equal(read_backup(backup.path), prepared, check_exact=True)

    created = create_record("orders", {"channel": "web", "price": 3.5, "returned": 1})
    assert created.date is None and get_record(created.id) == created
    assert find_records("orders", where={"channel": "web"}).total == (
        int((frame["channel"] == "web").sum()) + 1
    )
    with pytest.raises(InvalidRecord, match="dataset 'orders' has no date column"):
        find_records("orders", date_from="2021-01-01")
    with pytest.raises(InvalidRecord, match="month: dataset 'orders' has no date column"):
        summarize("orders", month="2021-01")
    assert summarize("orders", by="channel").rows


def test_read_backup_needs_its_schema(tmp_path):
    csv = tmp_path / "x.csv"
    pd.DataFrame({"a": [1, 2]}).to_csv(csv, index=False)
    with pytest.raises(DatasetError, match=r"has no schema file .*x\.schema\.json"):
        read_backup(csv)
    with pytest.raises(DatasetError, match="does not exist"):
        read_backup(tmp_path / "missing.csv")


# -- query -----------------------------------------------------------------------------------


def test_summarize_matches_pandas(store, tmp_path):
    config = load_config(write_toy_dataset(tmp_path / "orders"))
    import_dataset(config)
    frame, _ = prepare(make_toy_frame(), config)

    result = summarize("orders", by="channel", measure="price")
    expected = frame.groupby("channel").agg(
        rows=("returned", "size"), share=("returned", "mean"), mean=("price", "mean")
    )
    table = result.to_frame().set_index("channel")
    assert table.columns.tolist() == ["rows", "share returned=1", "mean price"]
    assert table["rows"].to_dict() == expected["rows"].to_dict()
    assert table["rows"].is_monotonic_decreasing
    for channel, row in expected.iterrows():
        assert table.loc[channel, "share returned=1"] == pytest.approx(row["share"], abs=1e-4)
        assert table.loc[channel, "mean price"] == pytest.approx(row["mean"], abs=0.01)

    march = summarize("orders", by="region", month="2021-03", limit=3)
    in_march = frame[frame["order_date"].dt.strftime("%Y-%m") == "2021-03"]
    assert len(march.rows) == 3
    assert march.rows[0][1] == in_march["region"].value_counts().max()
    assert "rows per region in 2021-03" in march.to_text()
    assert march.to_markdown().splitlines()[2].startswith("| region | rows |")

    with pytest.raises(InvalidRecord, match="by: 'nope' is not a column"):
        summarize("orders", by="nope")
    with pytest.raises(InvalidRecord, match="measure: 'channel' is not a numeric column"):
        summarize("orders", measure="channel")
    with pytest.raises(InvalidRecord, match="month: expected YYYY-MM"):
        summarize("orders", month="March")
    with pytest.raises(RecordNotFound, match="dataset 'nothing' is not in the store"):
        summarize("nothing")


# -- CRUD: dataset records -------------------------------------------------------------------


def test_dataset_record_crud(store, tmp_path):
    config = load_config(write_toy_dataset(tmp_path / "orders"))
    import_dataset(config)
    row = {
        "order_date": "2023-02-01T08:30:00",
        "channel": "web",
        "region": "r7",
        "price": 42.5,
        "quantity": 2,
        "order_id": 10_000,
        "returned": 1,
    }
    created = create_record("orders", row)
    assert created.row_number == 600 and created.target == 1
    assert created.date == dt.datetime(2023, 2, 1, 8, 30)
    assert created.values["price"] == 42.5 and created.values["channel"] == "web"
    assert get_record(created.id) == created
    second = create_record("orders", {**row, "order_id": 10_001})
    assert second.row_number == 601

    page = find_records("orders", where={"channel": "web", "region": "r7"}, page_size=5)
    frame, _ = prepare(make_toy_frame(), config)
    expected = int(((frame["channel"] == "web") & (frame["region"] == "r7")).sum()) + 2
    assert page.total == expected
    assert len(page.items) == min(5, expected)
    assert [item.row_number for item in page.items] == sorted(i.row_number for i in page.items)
    later = find_records("orders", date_from="2023-01-01", page_size=10)
    assert {item.id for item in later.items} == {created.id, second.id}
    page2 = find_records("orders", page=2, page_size=250)
    assert page2.total == 602 and len(page2.items) == 250
    assert page2.items[0].row_number == 250

    updated = update_record(created.id, {"price": 10, "returned": 0})
    assert updated.values["price"] == 10.0 and updated.target == 0
    assert get_record(created.id).values["price"] == 10.0

    delete_record(created.id)
    with pytest.raises(RecordNotFound, match=f"no dataset record has id '{created.id}'"):
        get_record(created.id)
    with pytest.raises(RecordNotFound):
        delete_record(created.id)


def test_dataset_record_refuses_bad_values(store, tmp_path):
    config = load_config(write_toy_dataset(tmp_path / "orders"))
    import_dataset(config)
    row = {"order_date": "2023-02-01", "channel": "web", "returned": 0}
    with pytest.raises(InvalidRecord, match=r"values\.returned: required \(the dataset's target"):
        create_record("orders", {"order_date": "2023-02-01", "channel": "web"})
    with pytest.raises(InvalidRecord, match=r"values\.order_date: required"):
        create_record("orders", {"returned": 1})
    with pytest.raises(InvalidRecord, match=r"values\.price: expected a number, got 'cheap'"):
        create_record("orders", {**row, "price": "cheap"})
    with pytest.raises(InvalidRecord, match=r"values\.quantity: expected a whole number"):
        create_record("orders", {**row, "quantity": 1.5})
    with pytest.raises(InvalidRecord, match=r"values\.colour: not a column of dataset 'orders'"):
        create_record("orders", {**row, "colour": "red"})
    with pytest.raises(InvalidRecord, match=r"values\.order_date: expected an ISO 8601"):
        create_record("orders", {**row, "order_date": "yesterday"})
    with pytest.raises(InvalidRecord, match=r"values\.returned: the target must be 0 or 1"):
        create_record("orders", {**row, "returned": 3})
    # The data gate's checks.ranges of the config, kept with the imported dataset.
    with pytest.raises(InvalidRecord, match=r"values\.price: -1\.0 is outside \[0\.0, 10000\.0\]"):
        create_record("orders", {**row, "price": -1})
    with pytest.raises(InvalidRecord, match=r"values\.quantity: 500 is outside \[1\.0, 100\.0\]"):
        create_record("orders", {**row, "quantity": 500})
    with pytest.raises(InvalidRecord, match="page_size: expected 1 to 1000"):
        find_records("orders", page_size=5000)
    with pytest.raises(RecordNotFound, match="dataset 'shoes' is not in the store"):
        create_record("shoes", row)
    assert DatasetRecord.objects(dataset="orders").count() == 600
    created = create_record("orders", row)
    assert created.row_number == 600  # refusals took no row number
    with pytest.raises(InvalidRecord, match=r"values\.quantity: 0 is outside"):
        update_record(created.id, {"quantity": 0})
    with pytest.raises(InvalidRecord, match=r"values\.order_date: required"):
        update_record(created.id, {"order_date": None})
    assert get_record(created.id) == created


# -- CRUD: prediction logs and feedback -------------------------------------------------------


def test_prediction_log_crud(store):
    stored = create_prediction_log(prediction("r1"))
    assert stored.journaled is False and stored.request_id == "r1"
    assert get_prediction_log("r1") == stored
    assert get_prediction_log("r1").features == prediction("r1")["features"]
    for i in range(2, 8):
        create_prediction_log(
            prediction(f"r{i}", timestamp=dt.datetime(2024, 5, i, 12), model_version=f"v{i % 2}")
        )
    with pytest.raises(StoreError, match="request_id 'r1' already exists"):
        create_prediction_log(prediction("r1"))

    newest = find_prediction_logs(page_size=3)
    assert newest.total == 7 and [log.request_id for log in newest.items] == ["r7", "r6", "r5"]
    assert find_prediction_logs(page=3, page_size=3).items[0].request_id == "r1"
    assert count_prediction_logs(model_version="v0") == 3
    assert count_prediction_logs(since="2024-05-04", until=dt.datetime(2024, 5, 6)) == 2

    changed = update_prediction_log("r2", {"model_version": "v9", "latency_ms": 1})
    assert changed.model_version == "v9" and changed.latency_ms == 1.0
    with pytest.raises(InvalidRecord, match="request_id: cannot be changed"):
        update_prediction_log("r2", {"request_id": "other"})
    with pytest.raises(InvalidRecord, match="probability: Float value is too large"):
        update_prediction_log("r2", {"probability": 1.5})

    delete_prediction_log("r2")
    with pytest.raises(RecordNotFound, match="no prediction log has request_id 'r2'"):
        get_prediction_log("r2")
    assert count_prediction_logs() == 6


def test_prediction_log_refuses_missing_and_wrong_fields(store):
    missing = prediction("bad")
    del missing["model_name"]
    with pytest.raises(InvalidRecord, match="model_name: Field is required"):
        create_prediction_log(missing)
    with pytest.raises(InvalidRecord, match="latency_ms: expected a number, got str 'fast'"):
        create_prediction_log(prediction("bad", latency_ms="fast"))
    with pytest.raises(InvalidRecord, match="prediction: expected a whole number, got float 0.7"):
        create_prediction_log(prediction("bad", prediction=0.7))
    with pytest.raises(InvalidRecord, match=r"timestamp: expected an ISO 8601"):
        create_prediction_log(prediction("bad", timestamp="noon"))
    with pytest.raises(InvalidRecord, match=r"unknown field\(s\) 'colour'"):
        create_prediction_log(prediction("bad", colour="red"))
    assert count_prediction_logs() == 0


def test_feedback_and_monitoring_frames(store):
    for i in range(4):
        features = {"carrier": "UA", "distance": 100 * i}
        if i == 3:
            features["extra"] = True
        create_prediction_log(
            prediction(f"q{i}", timestamp=dt.datetime(2024, 1, 1, i), features=features)
        )
    record_feedback("q1", 1)
    first = record_feedback("q2", 0, received_at="2024-01-02T00:00:00Z")
    assert record_feedback("q2", 0) == first  # the same outcome again: the first one stays
    with pytest.raises(Conflict, match="request 'q2' already has outcome 0; 1 contradicts it"):
        record_feedback("q2", 1)
    assert get_feedback("q2").actual == 0
    with pytest.raises(InvalidRecord, match="actual: Value must be one of"):
        record_feedback("q3", 2)
    with pytest.raises(RecordNotFound, match="no feedback was recorded for request_id 'q0'"):
        get_feedback("q0")

    logs = prediction_logs_frame()
    assert logs["request_id"].tolist() == ["q0", "q1", "q2", "q3"]
    assert logs["distance"].tolist() == [0, 100, 200, 300]
    assert logs["extra"].isna().sum() == 3
    assert logs["timestamp"].dtype == "datetime64[ns]"
    assert prediction_logs_frame(limit=2)["request_id"].tolist() == ["q2", "q3"]

    labelled = labelled_predictions_frame()
    assert labelled["actual"].tolist()[1:3] == [1, 0]
    assert labelled["actual"].isna().tolist() == [True, False, False, True]


def test_log_retention_is_a_ttl_index_and_deletes_old_logs(store, monkeypatch):
    from store import apply_log_retention
    from store.crud import RETENTION_INDEX
    from store.documents import PredictionLog

    logs = PredictionLog._get_collection()
    apply_log_retention(2)
    assert logs.index_information()[RETENTION_INDEX]["expireAfterSeconds"] == 2 * 86400
    apply_log_retention(2)  # idempotent
    apply_log_retention(None)
    assert RETENTION_INDEX not in logs.index_information()
    if store.embedded:  # a real MongoDB's TTL monitor deletes within about a minute
        import store.embedded as embedded

        monkeypatch.setattr(embedded, "TTL_INTERVAL_S", 0.0)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        create_prediction_log(prediction("old", timestamp=now - dt.timedelta(days=3)))
        create_prediction_log(prediction("recent", timestamp=now - dt.timedelta(days=1)))
        apply_log_retention(2)
        create_prediction_log(prediction("new", timestamp=now))  # the next write deletes
        assert sorted(log.request_id for log in find_prediction_logs().items) == ["new", "recent"]


def test_collection_backups_read_back(store, tmp_path):
    for i in range(3):
        create_prediction_log(prediction(f"b{i}", features={"carrier": "AA", "distance": i}))
    record_feedback("b1", 0)
    logs = backup_collection("prediction_logs", tmp_path / "logs.csv")
    assert logs.rows == 3
    pd.testing.assert_frame_equal(read_backup(logs.path), prediction_logs_frame(), check_exact=True)
    feedback = read_backup(backup_collection("feedback", tmp_path / "feedback.csv").path)
    assert feedback["request_id"].tolist() == ["b1"] and feedback["actual"].dtype == "int64"
    with pytest.raises(StoreError, match="cannot back up collection 'users'"):
        backup_collection("users", tmp_path / "users.csv")


# -- CLI -------------------------------------------------------------------------------------


def test_cli_import_backup_query_status(store, tmp_path, capsys):
    config = str(write_toy_dataset(tmp_path / "orders"))
    assert main(["db", "import", "--config", config, "--batch-size", "250"]) == 0
    out, err = capsys.readouterr()
    assert "600 rows, 600 new, 0 already stored" in out
    assert "import orders" in err and "600/600" in err  # the tqdm progress bar
    assert main(["db", "import", "--config", config, "--quiet"]) == 0
    assert "0 new, 600 already stored" in capsys.readouterr().out

    csv = tmp_path / "out" / "orders.csv"
    assert main(["db", "backup", "--config", config, "--out", str(csv), "--quiet"]) == 0
    assert "600 rows x 7 columns" in capsys.readouterr().out
    assert main(["db", "read-backup", str(csv)]) == 0
    described = capsys.readouterr().out
    assert "600 rows x 7 columns" in described and "datetime64[ns]" in described

    assert main(["db", "query", "--config", config, "--by", "channel", "--month", "2021-02"]) == 0
    table = capsys.readouterr().out
    assert "rows per channel in 2021-02" in table and "share returned=1" in table
    assert main(["db", "query", "--dataset", "orders", "--markdown", "--limit", "2"]) == 0
    assert "| channel | rows | share returned=1 |" in capsys.readouterr().out

    from bentos.logs import PredictionLogWriter

    writer = PredictionLogWriter(store.journal_path)
    for i in range(3):
        writer.write(prediction(f"status-{i}"))
    writer.write(prediction("status-bad", latency_ms="slow"))
    writer.close()
    assert main(["db", "status"]) == 0
    status = capsys.readouterr().out
    assert "dataset_records" in status and "dataset 'orders': 600 records" in status
    assert "0 prediction log(s) waiting for replay, 1 set aside" in status
    assert "set aside status-bad: prediction log is invalid: latency_ms" in status
    assert "stored 3, already stored 0, journaled 0, set aside 1, dropped 0" in status

    assert main(["db", "query", "--dataset", "orders", "--by", "colour"]) == 2
    assert "error: by: 'colour' is not a column" in capsys.readouterr().err
    assert main(["db", "drop-dataset", "orders"]) == 2
    assert "add --yes" in capsys.readouterr().err
    assert main(["db", "drop-dataset", "orders", "--yes"]) == 0
    assert "(600 records)" in capsys.readouterr().out
    assert DatasetRecord.objects.count() == 0
