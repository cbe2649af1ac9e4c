import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from tabular.config import load_config
from tabular.datasets import load_raw, prepare
from tabular.features import (
    INFREQUENT,
    OTHER,
    CategoryText,
    DateParts,
    as_category_text,
    as_float32,
    build_preprocessor,
    kept_levels,
    plan_encoding,
    rare_level_encoder,
    source_column,
)
from tests.conftest import make_bookings_frame, write_toy_dataset


def _one_hot(rare_share: float = 0.03) -> Pipeline:
    """The pipelines' one-hot block: categories as text, then the rare-level encoder."""
    return Pipeline([("text", CategoryText()), ("encode", rare_level_encoder(rare_share))])


def test_rare_levels_and_unseen_levels_become_other():
    train = pd.DataFrame({"c": ["a"] * 60 + ["b"] * 38 + ["rare"] * 2})
    block = _one_hot().fit(train)
    assert kept_levels(block.named_steps["encode"], 0) == ["a", "b"]
    assert block.get_feature_names_out().tolist() == ["c_a", "c_b", f"c_{INFREQUENT}"]
    out = block.transform(pd.DataFrame({"c": ["a", "rare", "never-seen", None, "b"]}))
    # a, then "Other" for a rare level, an unseen one and an unseen missing value, then b.
    assert out.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 0]]


def test_missing_is_its_own_level_when_frequent():
    train = pd.DataFrame({"c": ["a"] * 50 + [None] * 50})
    block = _one_hot().fit(train)
    assert block.get_feature_names_out().tolist() == ["c_Missing", "c_a"]  # no rare level
    assert block.transform(pd.DataFrame({"c": [None, "never-seen"]})).tolist() == [
        [1, 0],
        [0, 0],  # nothing rare in training: an unseen level has no "Other" to go to
    ]


def _grouped_by_share(train: pd.Series, rows: pd.Series, share: float) -> pd.DataFrame:
    """The former hand-written grouping: levels under ``share`` of the training rows (and
    levels never seen) become "Other", then one column per remaining level."""
    shares = as_category_text(train).value_counts(normalize=True)
    kept = set(shares.index[shares >= share])
    text = as_category_text(rows)
    return pd.get_dummies(text.where(text.isin(kept), OTHER)).astype(float)


def test_the_encoder_gives_the_encoding_of_the_former_grouping():
    """scikit-learn's OneHotEncoder(min_frequency) replaced a hand-written grouper: the same
    levels are kept, and every row gets the same one-hot vector (the "Other" column is last
    instead of in alphabetical order), on the bookings' categories and with unseen levels."""
    frame = make_bookings_frame(rows=3000, seed=4)
    train, rows = frame.iloc[:2000], frame.iloc[2000:].copy()
    rows.loc[rows.index[::7], "meal"] = "never-seen"
    rows.loc[rows.index[::11], "country"] = None
    compared = 0
    for column in ("hotel", "meal", "country", "market_segment", "deposit_type"):
        for share in (0.01, 0.03, 0.1):
            block = _one_hot(share).fit(train[[column]])
            names = [
                str(n).removeprefix(f"{column}_").replace(INFREQUENT, OTHER)
                for n in block.get_feature_names_out()
            ]
            encoded = pd.DataFrame(block.transform(rows[[column]]), columns=names, index=rows.index)
            expected = _grouped_by_share(train[column], rows[column], share)
            # A level the old grouping kept but the rows never hold is an all-zero column.
            expected = expected.reindex(columns=names, fill_value=0.0)
            assert set(names) == set(_grouped_by_share(train[column], train[column], share))
            pd.testing.assert_frame_equal(encoded, expected, check_dtype=False)
            compared += 1
    assert compared == 15


def test_date_parts():
    frame = pd.DataFrame({"d": pd.to_datetime(["2013-01-07 05:30", "2013-12-31 23:59", None])})
    parts = DateParts(parts=("month", "weekday", "hour")).fit(frame).transform(frame)
    assert parts.iloc[0].tolist() == [1.0, 0.0, 5.0]
    assert parts.iloc[1].tolist() == [12.0, 1.0, 23.0]
    assert parts.iloc[2].isna().all()


def test_the_numeric_imputer_fills_the_medians_of_the_median_strategy(tmp_path):
    """The numeric block's column-at-a-time median fills what strategy="median" fills."""
    from sklearn.impute import SimpleImputer

    rng = np.random.default_rng(7)
    values = rng.normal(size=(1_001, 5))
    values[rng.random(values.shape) < 0.2] = np.nan
    values[::2, 1] = np.nan  # an even count of observed values: the two middle ones averaged
    values[:, 2] = np.round(values[:, 2] * 4)  # ties
    frame = pd.DataFrame(values, columns=list("abcde"))
    frame["e"] = 3  # a whole-number column
    data, config = _toy(tmp_path)
    plan = plan_encoding(data, config)
    transformers = build_preprocessor(plan, scale=False).transformers
    block = next(steps for name, steps, _ in transformers if name == "num")
    ours = block.named_steps["impute"].fit(frame)
    theirs = SimpleImputer(strategy="median", add_indicator=True).fit(frame)
    assert np.array_equal(ours.statistics_, theirs.statistics_)
    assert np.array_equal(ours.transform(frame), theirs.transform(frame))
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())


def test_the_trees_cast_reads_a_value_beyond_32_bits_as_an_infinity_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would reach the server's log
        out = as_float32(np.array([[1e308, -1e308, 1.5]]))
    assert out.dtype == np.float32 and out.tolist() == [[np.inf, -np.inf, 1.5]]


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
    # The plan's kept levels are the ones the fitted encoder keeps (the same rule).
    pre = build_preprocessor(plan, scale=False).fit(data[plan.input_columns], data["returned"])
    encoder = pre.named_transformers_["onehot"].named_steps["encode"]
    for i, column in enumerate(plan.one_hot_columns):
        assert kept_levels(encoder, i) == by_column[column].kept_levels
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
    assert sources[f"onehot__channel_{INFREQUENT}"] == "channel"
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
