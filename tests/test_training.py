import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from tabular.config import load_config
from tabular.datasets import load_raw, prepare, split_data
from tabular.features import plan_encoding
from tabular.training import (
    candidate_configs,
    evaluate_on_test,
    judge,
    metrics_table,
    train_models,
    trials_table,
)
from tabular.training_report import write_training_report
from tests.conftest import make_toy_frame, write_toy_dataset

FAST = {"n_iter": 4, "search_rows": 400, "max_epochs": 6, "patience": 2}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    config = load_config(write_toy_dataset(folder, make_toy_frame(rows=1000), training=FAST))
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=config.seed)
    return config, split, plan_encoding(split.train, config)


@pytest.fixture(scope="module")
def trained(toy):
    config, split, plan = toy
    result = train_models(split.train, split.validation, config, plan, seed=3, log=lambda _: None)
    return evaluate_on_test(result, split.test)


def test_search_varies_three_hyperparameters_per_family(trained):
    assert set(trained.families) == {"logistic", "xgboost", "mlp"}
    for family in trained.families.values():
        assert len(family.trials) == 4
        for name in family.best_params:
            assert len({str(t.params[name]) for t in family.trials}) >= 2, (family.family, name)
        assert len(family.best_params) == 3
    table = trials_table(trained)
    assert table["chosen"].sum() == 3


def test_every_family_has_metrics_verdict_and_curves(trained):
    for family in trained.families.values():
        assert set(family.metrics) == {"train", "validation", "test"}
        assert family.verdict.label in {"overfitting", "underfitting", "OK"}
        assert 0 < family.threshold < 1
        assert len(family.learning_curve.x) == len(family.learning_curve.validation) >= 2
        assert len(family.validation_curve.x) >= 2
    assert trained.families["mlp"].loss_curve.best_epoch >= 1
    assert set(metrics_table(trained)["split"]) == {"train", "validation", "test"}
    # The toy target depends on price and channel: every model must beat chance.
    assert all(f.metrics["test"]["roc_auc"] > 0.7 for f in trained.families.values())


def test_test_split_is_not_used_for_selection(toy):
    config, split, plan = toy
    chosen = train_models(split.train, split.validation, config, plan, seed=3, log=lambda _: None)
    before = {k: (f.best_params, f.threshold) for k, f in chosen.families.items()}
    poisoned = split.test.assign(returned=1 - split.test["returned"])
    evaluate_on_test(chosen, poisoned)
    assert {k: (f.best_params, f.threshold) for k, f in chosen.families.items()} == before
    assert all(f.metrics["test"]["roc_auc"] < 0.3 for f in chosen.families.values())
    with pytest.raises(RuntimeError, match="already been evaluated"):
        evaluate_on_test(chosen, split.test)


def test_same_seed_same_choices_and_test_metrics(toy, trained):
    config, split, plan = toy
    again = evaluate_on_test(
        train_models(split.train, split.validation, config, plan, seed=3, log=lambda _: None),
        split.test,
    )
    assert again.best_family == trained.best_family
    for key, family in trained.families.items():
        assert again.families[key].best_params == family.best_params
        assert again.families[key].metrics["test"] == pytest.approx(family.metrics["test"])


def _noise(rows, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 5)), rng.integers(0, 2, size=rows)


def test_verdict_calls_a_deep_tree_on_noise_overfitting():
    X, y = _noise(2000, 0)
    X_val, y_val = _noise(2000, 1)
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    train = roc_auc_score(y, tree.predict_proba(X)[:, 1])
    val = roc_auc_score(y_val, tree.predict_proba(X_val)[:, 1])
    verdict = judge(train, val, baseline=0.5, max_gap=0.05, min_lift=0.02)
    assert verdict.label == "overfitting"
    assert "gap" in verdict.evidence and f"{train:.3f}" in verdict.evidence


def test_verdict_calls_a_constant_like_model_underfitting():
    X, y = _noise(2000, 0)
    X_val, y_val = _noise(2000, 1)
    dummy = DummyClassifier(strategy="prior").fit(X, y)
    train = roc_auc_score(y, dummy.predict_proba(X)[:, 1])
    val = roc_auc_score(y_val, dummy.predict_proba(X_val)[:, 1])
    assert judge(train, val, baseline=0.5, max_gap=0.05, min_lift=0.02).label == "underfitting"


def test_verdict_ok_for_a_model_that_generalises():
    assert judge(0.74, 0.72, baseline=0.5, max_gap=0.05, min_lift=0.02).label == "OK"


def test_random_search_samples_without_repeats():
    grid = {"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2]}
    configs = candidate_configs(grid, "random", 6, seed=0)
    assert len(configs) == len({tuple(sorted(c.items())) for c in configs}) == 6
    assert len(candidate_configs(grid, "grid", 6, seed=0)) == 18


def test_report_writes_tables_figures_and_models(toy, trained, tmp_path):
    outputs = write_training_report(trained, tmp_path, toy[0])
    for name in ("learning_curves", "validation_curves", "loss_curve", "coefficients"):
        assert outputs.figures[name].is_file() and outputs.figures[name].stat().st_size > 10_000
    trials = pd.read_csv(outputs.tables["trials"])
    assert len(trials) == 12
    html = outputs.html.read_text()
    assert "overfitting if train" in html and "Learning curves" in html
    for family in trained.families.values():
        assert f"{family.verdict.validation_score:.3f}" in html
    assert all(path.stat().st_size > 0 for path in outputs.models.values())


def test_report_explains_why_an_overfitting_choice_was_kept():
    from types import SimpleNamespace

    from tabular.training import Trial
    from tabular.training_report import _overfit_tradeoff

    verdict = judge(0.81, 0.72, baseline=0.5, max_gap=0.05, min_lift=0.02)
    calm = Trial("xgboost", {"max_depth": 3}, 0.76, 0.715, 1.0)
    chosen = Trial("xgboost", {"max_depth": 5}, 0.81, 0.72, 1.0)
    text = _overfit_tradeoff(SimpleNamespace(verdict=verdict, trials=[calm, chosen]), "ROC-AUC")
    assert "{'max_depth': 3}" in text and "0.715" in text and "0.720" in text
    ok = judge(0.74, 0.72, baseline=0.5, max_gap=0.05, min_lift=0.02)
    assert _overfit_tradeoff(SimpleNamespace(verdict=ok, trials=[calm]), "ROC-AUC") == ""
