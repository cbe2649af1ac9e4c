import numpy as np
import pandas as pd

from tabular.config import load_config
from tabular.datasets import load_raw, prepare
from tabular.features import (
    DateParts,
    RareCategoryGrouper,
    build_preprocessor,
    plan_encoding,
    source_column,
)
from tests.conftest import write_toy_dataset


def test_rare_levels_and_unseen_levels_become_other():
    train = pd.DataFrame({"c": ["a"] * 60 + ["b"] * 38 + ["rare"] * 2})
    grouper = RareCategoryGrouper(min_share=0.03).fit(train)
    assert grouper.kept_levels_ == {"c": ["a", "b"]}
    out = grouper.transform(pd.DataFrame({"c": ["a", "rare", "never-seen", None, "b"]}))
    assert out["c"].tolist() == ["a", "Other", "Other", "Other", "b"]


def test_missing_is_its_own_level_when_frequent():
    train = pd.DataFrame({"c": ["a"] * 50 + [None] * 50})
    grouper = RareCategoryGrouper(min_share=0.03).fit(train)
    assert grouper.transform(pd.DataFrame({"c": [None]}))["c"].tolist() == ["Missing"]


def test_date_parts():
    frame = pd.DataFrame({"d": pd.to_datetime(["2013-01-07 05:30", "2013-12-31 23:59", None])})
    parts = DateParts(parts=("month", "weekday", "hour")).fit(frame).transform(frame)
    assert parts.iloc[0].tolist() == [1.0, 0.0, 5.0]
    assert parts.iloc[1].tolist() == [12.0, 1.0, 23.0]
    assert parts.iloc[2].isna().all()


def _toy(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    data, _ = prepare(load_raw(config), config)
    return data, config


def test_plan_one_hot_for_low_and_target_for_high_cardinality(tmp_path):
    data, config = _toy(tmp_path)
    plan = plan_encoding(data, config)
    by_column = {p.column: p for p in plan.categorical}
    assert by_column["channel"].encoder == "one-hot"
    assert "partner" not in by_column["channel"].kept_levels  # about 2 % of rows
    assert by_column["region"].encoder == "target"  # 50 levels > one_hot_max_levels=10
    assert "50 levels" in by_column["region"].reason


def test_preprocessor_output_maps_back_to_original_columns(tmp_path):
    data, config = _toy(tmp_path)
    plan = plan_encoding(data, config)
    pre = build_preprocessor(plan, scale=True, seed=0)
    matrix = pre.fit_transform(data[plan.input_columns], data["returned"])
    names = pre.get_feature_names_out()
    assert matrix.shape == (len(data), len(names))
    assert np.isfinite(matrix).all()
    sources = {name: source_column(name, plan) for name in names}
    assert sources["onehot__channel_web"] == "channel"
    assert sources["onehot__channel_Other"] == "channel"
    assert sources["target__region"] == "region"
    assert sources["date__order_date_hour"] == "order_date"
    assert set(sources.values()) == set(plan.input_columns)


def test_a_date_part_that_never_changes_in_training_is_no_feature(tmp_path):
    data, config = _toy(tmp_path)
    assert plan_encoding(data, config).date_parts == ("month", "weekday", "hour")
    dates_only = data.assign(order_date=data["order_date"].dt.normalize())
    plan = plan_encoding(dates_only, config)
    assert plan.date_parts == ("month", "weekday") and plan.date_column == "order_date"
    one_day = data.assign(order_date=pd.Timestamp("2021-03-01"))
    plan = plan_encoding(one_day, config)
    assert plan.date_column is None and "order_date" not in plan.input_columns
