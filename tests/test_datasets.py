import pandas as pd
import pytest

from tabular.config import DEFAULT_CONFIG, load_config
from tabular.datasets import data_hash, load_raw, prepare, sample_rows, split_data
from tabular.errors import DatasetError
from tests.conftest import make_toy_frame, write_toy_dataset


@pytest.fixture(scope="module")
def flights():
    config = load_config(DEFAULT_CONFIG)
    raw = load_raw(config)
    return config, raw


def test_flights_loader_joins_weather_planes_and_airlines(flights):
    config, raw = flights
    assert len(raw) == 336_776
    assert raw.shape[1] >= 15
    assert pd.api.types.is_datetime64_any_dtype(raw["sched_dep"])
    assert {"temp", "visib", "plane_age", "seats", "airline", "route"} <= set(raw.columns)
    # The join must not duplicate flights (one weather row per origin and hour).
    assert raw["sched_dep"].is_monotonic_increasing
    jfk_jan1 = raw[(raw["origin"] == "JFK") & (raw["sched_dep"].dt.strftime("%m-%d") == "01-01")]
    assert jfk_jan1["temp"].notna().mean() > 0.9


def test_prepare_drops_flights_without_arrival_and_derives_target(flights):
    config, raw = flights
    data, report = prepare(raw, config)
    assert report.dropped == {"missing arr_delay": 9_430}
    assert report.rows_out == 336_776 - 9_430 == len(data)
    assert set(data["late"].unique()) == {0, 1}
    assert (data["late"] == (data["arr_delay"] >= 15)).all()
    assert 0.2 < report.positive_share < 0.3


def test_time_split_is_chronological(flights):
    config, raw = flights
    data, _ = prepare(raw, config)
    split = split_data(data, config, seed=1)
    assert split.train["sched_dep"].max() < pd.Timestamp("2013-09-01")
    assert split.validation["sched_dep"].dt.month.unique().tolist() == [9]
    assert split.test["sched_dep"].min() >= pd.Timestamp("2013-10-01")
    assert sum(split.sizes().values()) == len(data)


def test_random_split_is_stratified_and_reproducible(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    data, _ = prepare(load_raw(config), config)
    first, second = split_data(data, config, seed=3), split_data(data, config, seed=3)
    assert first.sizes() == second.sizes() == {"train": 360, "validation": 120, "test": 120}
    assert first.test.equals(second.test)
    share = data["returned"].mean()
    assert abs(first.test["returned"].mean() - share) < 0.02


def test_sample_and_hash_are_reproducible(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    data, _ = prepare(load_raw(config), config)
    a = sample_rows(data, 100, seed=5, date_column="order_date")
    b = sample_rows(data, 100, seed=5, date_column="order_date")
    c = sample_rows(data, 100, seed=6, date_column="order_date")
    assert data_hash(a) == data_hash(b) != data_hash(c)
    assert a["order_date"].is_monotonic_increasing


def test_threshold_target_on_text_column_is_refused(tmp_path):
    frame = make_toy_frame()
    frame["returned"] = frame["returned"].map({0: "no", 1: "yes"})
    config = load_config(
        write_toy_dataset(
            tmp_path, frame, target={"name": "r", "column": "returned", "threshold": 1}
        )
    )
    with pytest.raises(DatasetError, match="target column 'returned' must be numeric"):
        prepare(load_raw(config), config)


def test_positive_values_target(tmp_path):
    frame = make_toy_frame()
    frame["returned"] = frame["returned"].map({0: "no", 1: "yes"})
    config = load_config(
        write_toy_dataset(
            tmp_path, frame, target={"name": "r", "column": "returned", "positive_values": ["yes"]}
        )
    )
    data, _ = prepare(load_raw(config), config)
    assert data["r"].sum() == (frame["returned"] == "yes").sum()
