import numpy as np
import pandas as pd
import pytest

from tabular.config import DEFAULT_CONFIG, load_config
from tabular.datasets import (
    build_date,
    data_hash,
    load_raw,
    prepare,
    read_csv,
    sample_rows,
    split_data,
)
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


def test_time_split_is_chronological_with_rolling_origin_folds(flights):
    config, raw = flights
    data, _ = prepare(raw, config)
    split = split_data(data, config, seed=1)
    assert split.train["sched_dep"].max() < pd.Timestamp("2013-10-01")
    assert split.test["sched_dep"].min() >= pd.Timestamp("2013-10-01")
    assert len(split.train) + len(split.test) == len(data)
    dates = split.train["sched_dep"]
    # June, July, August and September, each fitted on every month before it.
    for fold, month in zip(split.folds, [6, 7, 8, 9], strict=True):
        assert dates.iloc[fold.validation].dt.month.unique().tolist() == [month]
        assert dates.iloc[fold.train].dt.month.max() == month - 1
        assert len(fold.train) == int((dates.dt.month < month).sum())
    assert split.validation["sched_dep"].dt.month.unique().tolist() == [9]
    assert split.sizes()["fold 2013-06-01 validation"] == len(split.folds[0].validation)


def test_a_time_split_of_sorted_rows_is_views_equal_to_the_copies(flights):
    config, raw = flights
    data, _ = prepare(raw, config)
    split = split_data(data, config, seed=1)
    dates, start = data["sched_dep"], pd.Timestamp(config.split.test_start)
    # The same rows and index as selecting by date and copying (the unsorted rows' path).
    pd.testing.assert_frame_equal(split.train, data[dates < start].reset_index(drop=True))
    pd.testing.assert_frame_equal(split.test, data[dates >= start].reset_index(drop=True))
    # No memory of their own: the parts' columns are the prepared rows' arrays.
    for part in (split.train, split.test):
        assert np.shares_memory(part["distance"].to_numpy(), data["distance"].to_numpy())
    # Replacing or adding a part's column leaves the prepared rows as they were.
    before = data["distance"].copy()
    split.train["distance"] = 0.0
    split.test["extra"] = 1
    pd.testing.assert_series_equal(data["distance"], before)
    assert "extra" not in data.columns
    # Unsorted rows: the same parts, by selection.
    shuffled = data.sample(frac=1.0, random_state=0)
    again = split_data(shuffled, config, seed=1)
    pd.testing.assert_frame_equal(
        again.test, shuffled[shuffled["sched_dep"] >= start].sort_index().reset_index(drop=True)
    )


def test_random_split_is_stratified_and_reproducible(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    data, _ = prepare(load_raw(config), config)
    first, second = split_data(data, config, seed=3), split_data(data, config, seed=3)
    sizes = {
        "train": 480,
        "test": 120,
        "fold validation train": 360,
        "fold validation validation": 120,
    }
    assert first.sizes() == second.sizes() == sizes
    assert first.test.equals(second.test) and first.train.equals(second.train)
    # One fold: the development rows are its training rows and its validation rows.
    (fold,) = first.folds
    assert sorted([*fold.train, *fold.validation]) == list(range(480))
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


def test_date_built_from_year_month_name_and_day(tmp_path):
    from tabular.config import DateFromConfig

    parts = pd.DataFrame(
        {
            "y": [2016, 2016, 2017, 2017, 2017, 2017],
            "m": ["July", "aug", " DECEMBER ", "2", "Julember", "3"],
            "d": [1, 15, 31, 28, 1, 32],
        }
    )
    built = build_date(parts, DateFromConfig(year="y", month="m", day="d"))
    expected = ["2016-07-01", "2016-08-15", "2017-12-31", "2017-02-28", None, None]
    assert built.tolist() == [pd.NaT if e is None else pd.Timestamp(e) for e in expected]
    numeric = parts.assign(m=[7, 8, 12, 2, 1, 3])
    assert build_date(numeric, DateFromConfig(year="y", month="m", day="d")).iloc[0] == (
        pd.Timestamp("2016-07-01")
    )


def test_date_from_part_missing_from_the_csv_is_named(tmp_path):
    frame = make_toy_frame().assign(y=2021, m="May", d=3)
    config = load_config(
        write_toy_dataset(
            tmp_path,
            frame.drop(columns=["d"]),
            date_column=None,
            date_from={"year": "y", "month": "m", "day": "d"},
        )
    )
    with pytest.raises(DatasetError, match=r"lacks column\(s\) 'd' \(date_from.day\)"):
        load_raw(config)


def test_missing_markers_are_read_as_missing_and_counted(tmp_path):
    path = tmp_path / "markers.csv"
    path.write_text("a,b,c\n1,x,NULL\nNULL,,y\nNA,z,N/A\n4,?,w\n", encoding="utf-8")
    frame = read_csv(path, ("", "NA", "NULL", "?"))
    assert frame["a"].dtype.kind == "f" and frame["a"].isna().sum() == 2
    assert frame["b"].isna().sum() == 2
    assert frame["c"].tolist()[2] == "N/A"  # not declared: a value like any other
    assert frame.attrs["missing_markers"] == {
        "a": {"NULL": 1, "NA": 1},
        "b": {"": 1, "?": 1},
        "c": {"NULL": 1},
    }


def test_markers_are_counted_the_same_a_slice_of_rows_at_a_time(tmp_path, monkeypatch):
    import tabular.datasets as datasets

    rng = np.random.default_rng(3)
    cells = rng.choice(["1", "2", "NA", "NULL", "", "?"], size=(203, 3))
    path = tmp_path / "markers.csv"
    path.write_text("a,b,c\n" + "".join(",".join(row) + "\n" for row in cells), encoding="utf-8")
    markers = ("", "NA", "NULL", "?")
    whole = read_csv(path, markers).attrs["missing_markers"]
    monkeypatch.setattr(datasets, "MARKER_CHUNK_ROWS", 7)  # 29 slices, one of 0 rows left
    sliced = read_csv(path, markers).attrs["missing_markers"]
    expected = {
        column: {m: int((cells[:, i] == m).sum()) for m in markers if (cells[:, i] == m).any()}
        for i, column in enumerate("abc")
    }
    assert whole == sliced == expected


def test_prepare_passes_the_marker_counts_on(tmp_path):
    frame = make_toy_frame()
    frame["price"] = frame["price"].astype(object)
    frame.loc[[0, 5, 9], "price"] = "NULL"
    config = load_config(write_toy_dataset(tmp_path, frame))
    data, report = prepare(load_raw(config), config)
    assert data["price"].isna().sum() == 3
    assert report.missing_markers == {"price": {"NULL": 3}}


def test_rows_keep_their_file_order_without_a_date(tmp_path):
    config = load_config(write_toy_dataset(tmp_path, date_column=None))
    data, _ = prepare(load_raw(config), config)
    assert data["order_id"].tolist() == list(range(len(data)))
    sample = sample_rows(data, 50, seed=1, date_column=None)
    assert sample["order_id"].is_monotonic_increasing and len(sample) == 50
