import re

import bentoml
import numpy as np
import pytest

from bentos.registry import model_name, save_served_model, served_model
from reports.explain import write_explain_report
from tabular.config import load_config
from tabular.contract import build_contract
from tabular.datasets import Split, load_raw, prepare, split_data
from tabular.explain import explain, explain_and_select, group_by_source, select_features
from tabular.features import base_estimator, plan_encoding
from tabular.training import evaluate_on_test, train_models
from tests.conftest import make_toy_frame, write_toy_dataset

FAST = {"n_iter": 2, "search_rows": 400, "max_epochs": 5, "patience": 2}
EXPLAIN = {
    "tree_rows": 150,
    "sample_rows": 40,
    "background_rows": 20,
    "coverage": 0.8,
    "min_features": 2,
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    frame = make_toy_frame(rows=1000)
    frame.loc[::25, "price"] = np.nan  # 4 % missing: a nullable input of the served models
    config = load_config(write_toy_dataset(folder, frame, training=FAST, explain=EXPLAIN))
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=config.seed)
    plan = plan_encoding(split.train, config)
    result = train_models(split.train, split.folds, config, plan, seed=1, log=lambda _: None)
    evaluate_on_test(result, split.test)
    return config, split, plan, result


def test_tree_shap_adds_up_to_the_margin(toy):
    config, split, plan, result = toy
    family = result.families["xgboost"]
    rows = split.validation.iloc[:100]
    shap_result = explain(family, plan, rows, split.train.iloc[:20], seed=0)
    X = family.pipeline.named_steps["preprocess"].transform(rows[plan.input_columns])
    margin = base_estimator(family.pipeline).predict(X, output_margin=True)
    total = shap_result.values.sum(axis=1).to_numpy() + shap_result.base_value
    assert np.abs(total - margin).max() < 1e-4
    # Grouping by original column keeps the sum per row.
    assert np.allclose(shap_result.values.sum(axis=1), shap_result.encoded_values.sum(axis=1))
    assert list(shap_result.values.columns) == plan.input_columns


def test_grouping_sums_one_hot_levels_into_their_column(toy):
    config, split, plan, result = toy
    names = [
        "onehot__channel_web",
        "onehot__channel_store",
        "num__price",
        "num__missingindicator_price",
    ]
    grouped = group_by_source(np.array([[1.0, 2.0, 3.0, 4.0]]), names, plan)
    assert grouped.to_dict("records") == [{"channel": 3.0, "price": 7.0}]


def test_selection_never_reads_the_test_split(toy):
    config, split, plan, result = toy
    first = explain_and_select(result, split, config, plan, seed=4)
    poisoned = split.test.assign(returned=1 - split.test["returned"], price=-1.0)
    second = explain_and_select(
        result,
        Split(train=split.train, test=poisoned, folds=split.folds, description=""),
        config,
        plan,
        seed=4,
    )
    assert first.selection.columns == second.selection.columns
    for key in first.served:
        assert (
            first.comparisons[key].selected.threshold == second.comparisons[key].selected.threshold
        )
    assert "price" in first.selection.columns  # the toy target depends on price


def test_selection_rule_top_k_and_coverage(toy):
    config, split, plan, result = toy
    shap_result = explain(
        result.families["xgboost"], plan, split.validation, split.train.iloc[:20], seed=0
    )
    by_coverage = select_features(shap_result, config)
    assert by_coverage.coverage >= 0.8
    assert len(by_coverage.columns) >= 2
    top_one = config.model_copy(
        update={"explain": config.explain.model_copy(update={"top_k": 1, "min_features": 1})}
    )
    assert select_features(shap_result, top_one).columns == [shap_result.importance.index[0]]


def test_report_and_saved_model_metadata_list_exactly_the_selected_features(toy, tmp_path):
    config, split, plan, result = toy
    stage = explain_and_select(result, split, config, plan, seed=4)
    outputs = write_explain_report(
        [stage.shap[k] for k in stage.served],
        stage.selection,
        [stage.comparisons[k] for k in stage.served],
        tmp_path,
        config,
    )
    assert (
        outputs.html.is_file() and "all features vs selected features" in outputs.html.read_text()
    )
    assert all(path.is_file() for path in outputs.figures.values())
    # Every comment is written out: no placeholder left unformatted.
    comments = [text for section in outputs.sections for text in section.comments]
    assert comments and not [text for text in comments if re.search(r"\{[a-z_\[']", text)]
    columns = plan.restrict(stage.selection.columns).input_columns
    key = stage.served[0]
    comparison = stage.comparisons[key]
    saved = save_served_model(
        model_name(config.name, "primary"),
        comparison.selected.pipeline,
        family=key,
        label=comparison.label,
        role="primary",
        contract=build_contract(config, split.train, comparison.selected.pipeline, columns),
        threshold=comparison.selected.threshold,
        metrics={"validation": comparison.selected.metrics["validation"]},
        config=config,
        run_id="run-1",
        data_hash="abc",
        params=result.families[key].best_params,
    )
    metadata = bentoml.models.get(saved.tag).info.metadata
    assert sorted(metadata["features"]) == sorted(stage.selection.columns)
    loaded = bentoml.sklearn.load_model(saved.tag)
    assert list(loaded.named_steps["preprocess"].feature_names_in_) == metadata["features"]
    assert metadata["threshold"] == pytest.approx(comparison.selected.threshold)
    # The toy target depends on channel (categorical) and price (numeric, with gaps): the
    # selection keeps both, so every part of the contract below is exercised, always.
    assert {"channel", "price"} <= set(columns)
    served = served_model(config.name, "primary")
    assert served.tag == str(saved.tag) and served.contract.names == metadata["features"]
    assert served.run_id == "run-1" and served.class_labels == ("kept", "returned")
    train = split.train
    kinds = {
        c: "datetime" if c == config.date_column
        else "category" if c in config.categorical
        else "number"
        for c in columns
    }  # fmt: skip
    assert {s.name: s.kind for s in served.contract.fields} == kinds
    assert {s.name: s.nullable for s in served.contract.fields} == {
        c: bool(train[c].isna().any()) for c in columns
    }
    assert [s.name for s in served.contract.fields if s.nullable] == ["price"]
    for column in columns:
        spec = served.contract.spec(column)
        if column in config.categorical:
            assert spec.levels == sorted(train[column].dropna().astype(str).unique())
        if column in config.numeric:
            # Bounds are the gate's (config checks.ranges), not the training min and max.
            low, high = config.checks.ranges.get(column, (None, None))
            assert (spec.minimum, spec.maximum) == (low, high)
    assert served.contract.spec("channel").levels == ["partner", "phone", "store", "web"]
    assert (served.contract.spec("price").minimum, served.contract.spec("price").maximum) == (
        0,
        10000,
    )
    proba = loaded.predict_proba(split.test[metadata["features"]])[:, 1]
    assert proba.shape == (len(split.test),)
