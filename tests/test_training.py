import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from tabular import training
from tabular.config import load_config
from tabular.datasets import Split, load_raw, prepare, split_data
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
def searched(toy):
    """Train once, recording the search space each family's sampler is given."""
    config, split, plan = toy
    spaces = []

    def spy(grid, search, n_iter, seed):
        spaces.append({"grid": grid, "search": search, "n_iter": n_iter})
        return candidate_configs(grid, search, n_iter, seed)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "candidate_configs", spy)
        result = train_models(
            split.train, split.validation, config, plan, seed=3, log=lambda _: None
        )
    return evaluate_on_test(result, split.test), spaces


@pytest.fixture(scope="module")
def trained(searched):
    return searched[0]


def test_search_varies_three_hyperparameters_per_family(toy, searched):
    # Asserted on the search space handed to the sampler, not on the random draws from it.
    config = toy[0]
    trained, spaces = searched
    assert set(trained.families) == {"logistic", "xgboost", "mlp"}
    assert len(spaces) == 3
    for family, space in zip(trained.families.values(), spaces, strict=True):
        grid = space["grid"]
        assert grid == config.training.models[family.family].grid
        assert len(grid) == 3, (family.family, grid)
        for name, values in grid.items():
            assert len({str(v) for v in values}) >= 2, (family.family, name, values)
        assert (space["search"], space["n_iter"]) == ("random", FAST["n_iter"])
        assert len(family.trials) == FAST["n_iter"]
        for trial in family.trials:  # every configuration tried comes from that space
            assert set(trial.params) == set(grid)
            assert all(trial.params[name] in grid[name] for name in grid), trial.params
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


def _choices(result):
    return result.best_family, {
        key: (f.best_params, f.threshold, f.metrics["validation"])
        for key, f in result.families.items()
    }


@pytest.mark.slow
def test_choices_stay_the_same_when_the_test_labels_are_poisoned(
    prefect_harness, toy, trained, tmp_path
):
    # The training task receives the whole split, test rows included, and is where the test
    # rows are scored: run it on a split whose test labels are flipped. Every choice must
    # equal the one made with the true test rows (the ``trained`` fixture, same seed),
    # while the test scores show that the poisoned rows were read and scored.
    from flows.training import train_task

    config, split, plan = toy
    poisoned_test = split.test.assign(returned=1 - split.test["returned"])
    poisoned = Split(split.train, split.validation, poisoned_test, split.description)
    result, _ = train_task(poisoned, config, plan, 3, tmp_path)
    assert _choices(result) == _choices(trained)
    for key, family in result.families.items():
        true_auc = trained.families[key].metrics["test"]["roc_auc"]
        assert true_auc > 0.7
        assert family.metrics["test"]["roc_auc"] == pytest.approx(1 - true_auc)
    with pytest.raises(RuntimeError, match="already been evaluated"):
        evaluate_on_test(result, split.test)


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
