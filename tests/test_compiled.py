"""The compiled numpy replay of fitted pipelines gives the pipelines' own probabilities."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures

from bentos.compiled import NotCompilable, compile_pipeline, max_difference
from bentos.runtime import Predictor, check_rows
from tabular.config import load_config
from tabular.contract import build_contract
from tabular.datasets import load_raw, prepare, split_data
from tabular.features import plan_encoding
from tabular.training import fit_on_split
from tests.conftest import make_toy_frame, write_toy_dataset

PARAMS = {
    "mlp": {"hidden_layer_sizes": [16, 8], "alpha": 0.001, "learning_rate_init": 0.003},
    "xgboost": {"max_depth": 4, "n_estimators": 60, "learning_rate": 0.1},
    "logistic": {"C": 1.0, "l1_ratio": 0.0, "class_weight": None},
}


def toy_with_gaps(rows: int, seed: int) -> pd.DataFrame:
    """Toy orders with missing prices, quantities and regions, so imputers and indicators work."""
    frame = make_toy_frame(rows=rows, seed=seed)
    rng = np.random.default_rng(seed)
    frame.loc[rng.random(rows) < 0.08, "price"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "quantity"] = np.nan
    frame.loc[rng.random(rows) < 0.04, "region"] = None
    return frame


def gappy_config(folder, rows: int, seed: int, **overrides):
    """The toy dataset with gaps, its null ceilings raised to let them through the gate."""
    return load_config(
        write_toy_dataset(
            folder,
            toy_with_gaps(rows, seed=seed),
            training={"max_epochs": 4, "patience": 2},
            checks={"max_null_share": 0.2, "ranges": {"price": [0, 10000], "quantity": [1, 100]}},
            **overrides,
        )
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    config = gappy_config(tmp_path_factory.mktemp("compiled"), 4000, seed=3)
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=1)
    plan = plan_encoding(split.train, config)
    models = {
        family: fit_on_split(family, params, plan, split, config, seed=1)
        for family, params in PARAMS.items()
    }
    return config, split, plan, models


def as_rows(frame: pd.DataFrame, contract) -> list[list]:
    """Rows of Python values in the contract's order, as the service hands them over."""
    return [
        contract.values(contract.check_row(contract.json_row(record)))
        for record in frame[contract.names].to_dict("records")
    ]


@pytest.mark.parametrize("family", list(PARAMS))
def test_compiled_pipeline_equals_the_pipeline_on_thousands_of_rows(fitted, family):
    config, split, plan, models = fitted
    pipeline = models[family].pipeline
    contract = build_contract(config, split.train, pipeline, plan.input_columns)
    # Held-out rows, with unseen levels and missing values mixed in.
    rows_frame = pd.concat([split.validation, split.test], ignore_index=True)
    rows_frame.loc[::17, "channel"] = "fax"  # never seen in training
    rows_frame.loc[::13, "region"] = "r999"
    rows = as_rows(rows_frame, contract)
    assert len(rows) >= 1500
    compiled = compile_pipeline(pipeline, plan.input_columns)
    frame = contract.values_frame(rows)
    assert compiled.transform(rows).shape == (len(rows), compiled.width)
    assert (
        np.abs(compiled.transform(rows) - pipeline.named_steps["preprocess"].transform(frame)).max()
        <= 1e-12
    )
    assert max_difference(compiled, pipeline, frame, rows) <= 1e-9
    # One row at a time too (the single-request path).
    for row in rows[:50]:
        one = compiled.predict_proba([row])[0]
        assert abs(one - pipeline.predict_proba(contract.values_frame([row]))[0, 1]) <= 1e-9


def test_contract_check_rows_cover_every_level_bound_and_null(fitted):
    config, split, plan, models = fitted
    pipeline = models["mlp"].pipeline
    contract = build_contract(config, split.train, pipeline, plan.input_columns)
    rows = check_rows(contract)
    channel = contract.names.index("channel")
    assert {row[channel] for row in rows} >= {"web", "store", "phone", "partner", "__never_seen__"}
    price = contract.names.index("price")
    assert {0.0, 10000.0, None} <= {row[price] for row in rows}
    compiled = compile_pipeline(pipeline, plan.input_columns)
    assert max_difference(compiled, pipeline, contract.values_frame(rows), rows) <= 1e-9


def test_a_step_it_does_not_know_is_refused(fitted):
    config, split, plan, models = fitted
    extra = ColumnTransformer([("poly", PolynomialFeatures(), ["price", "quantity"])])
    pipeline = Pipeline([("preprocess", extra), ("model", models["logistic"].pipeline[-1])])
    pipeline.named_steps["preprocess"].fit(split.train[["price", "quantity"]].fillna(0))
    with pytest.raises(NotCompilable, match="PolynomialFeatures"):
        compile_pipeline(pipeline, ["price", "quantity"])
    with pytest.raises(NotCompilable, match="input columns differ"):
        compile_pipeline(models["mlp"].pipeline, list(reversed(plan.input_columns)))


def test_the_reference_path_serves_when_there_is_no_replay(fitted):
    config, split, plan, models = fitted
    pipeline = models["xgboost"].pipeline
    contract = build_contract(config, split.train, pipeline, plan.input_columns)
    rows = as_rows(split.test.iloc[:40], contract)
    plain = Predictor(pipeline=pipeline, contract=contract)
    fast = Predictor(
        pipeline=pipeline, contract=contract, compiled=compile_pipeline(pipeline, contract.names)
    )
    assert np.abs(plain.predict_proba(rows) - fast.predict_proba(rows)).max() <= 1e-9
    assert plain.predict_proba([]).shape == (0,)


def test_dates_with_an_offset_are_read_at_their_wall_clock_time(fitted):
    config, split, plan, models = fitted
    pipeline = models["mlp"].pipeline
    contract = build_contract(config, split.train, pipeline, plan.input_columns)
    base = dict(contract.example)
    base["order_date"] = "2021-03-04T05:06:00+05:00"
    values = contract.values(contract.check_row(base))
    assert values[contract.names.index("order_date")] == dt.datetime(2021, 3, 4, 5, 6)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_a_calibrated_model_is_replayed_with_its_map(fitted, method):
    """The served probability of a calibrated model is the calibrated one, compiled or not."""
    from tabular.features import CalibratedModel, ProbabilityMap

    config, split, plan, models = fitted
    pipeline = models["mlp"].pipeline
    inner = pipeline.named_steps["model"]
    inner = inner.model if isinstance(inner, CalibratedModel) else inner
    raw = Pipeline([("preprocess", pipeline.named_steps["preprocess"]), ("model", inner)])
    validation = split.validation
    mapping = ProbabilityMap(method).fit(
        raw.predict_proba(validation)[:, 1], validation[config.target.name].to_numpy()
    )
    calibrated = Pipeline(
        [("preprocess", raw.named_steps["preprocess"]), ("model", CalibratedModel(inner, mapping))]
    )
    contract = build_contract(config, split.train, calibrated, plan.input_columns)
    rows = as_rows(split.test, contract)
    compiled = compile_pipeline(calibrated, plan.input_columns)
    frame = contract.values_frame(rows)
    assert max_difference(compiled, calibrated, frame, rows) <= 1e-9
    # The map really moves the probabilities (else this test could not fail).
    assert np.abs(compiled.predict_proba(rows) - raw.predict_proba(frame)[:, 1]).max() > 1e-3


@pytest.mark.parametrize("levels", [["a", "b"], ["a", "b", "rare"]])
def test_unseen_levels_go_where_the_encoder_sends_them(levels):
    """One-hot blocks with and without an "Other" column: an unseen level goes to "Other"
    when training had rare levels, and to no column when it had none, compiled or not."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression

    from tabular.features import CategoryText, rare_level_encoder

    rng = np.random.default_rng(0)
    counts = {"a": 300, "b": 290, "rare": 10}
    train = pd.DataFrame({"c": [level for level in levels for _ in range(counts[level])]})
    train["x"] = rng.normal(size=len(train))
    y = ((train["c"] == "a") ^ (train["x"] > 0.5)).astype(int)
    block = Pipeline([("text", CategoryText()), ("encode", rare_level_encoder(0.03))])
    pipeline = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [("onehot", block, ["c"]), ("num", SimpleImputer(strategy="median"), ["x"])]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(train, y)
    rows = [["a", 0.1], ["b", None], ["rare", 2.0], ["never-seen", -1.0], [None, 0.0]]
    compiled = compile_pipeline(pipeline, ["c", "x"])
    frame = pd.DataFrame(rows, columns=["c", "x"]).astype({"x": float})
    encoded = compiled.transform(rows)
    assert np.abs(encoded - pipeline.named_steps["preprocess"].transform(frame)).max() == 0
    assert max_difference(compiled, pipeline, frame, rows) <= 1e-12
    other = encoded[3, : encoded.shape[1] - 1]  # the unseen level's one-hot block
    assert other.tolist() == ([0, 0, 1] if "rare" in levels else [0, 0])
