import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from reports.training import write_training_report
from tabular import training
from tabular.config import load_config
from tabular.datasets import Split, load_raw, prepare, split_data
from tabular.features import CalibratedModel, ProbabilityMap, base_estimator, plan_encoding
from tabular.training import (
    FoldPredictions,
    candidate_configs,
    choose_threshold,
    decide_calibration,
    evaluate_on_test,
    fold_table,
    judge,
    metrics_table,
    train_models,
    trials_table,
)
from tests.conftest import make_toy_frame, write_toy_dataset

FAST = {"n_iter": 4, "search_rows": 400, "max_epochs": 6, "patience": 2}


#: Rolling origin on the toy orders (6-hourly from 2021-01-01, 1,000 rows to mid-September).
TIME_SPLIT = {
    "method": "time",
    "folds": ["2021-05-01", "2021-06-01", "2021-07-01"],
    "test_start": "2021-08-01",
}


def _toy(folder, **overrides):
    config = load_config(
        write_toy_dataset(folder, make_toy_frame(rows=1000), training=FAST, **overrides)
    )
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=config.seed)
    return config, split, plan_encoding(split.train, config)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy orders with a random split: one fold, its validation rows."""
    return _toy(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def rolling(tmp_path_factory):
    """The toy orders with a time split: three rolling-origin folds."""
    config, split, plan = _toy(tmp_path_factory.mktemp("rolling"), split=TIME_SPLIT)
    result = train_models(split.train, split.folds, config, plan, seed=3, log=lambda _: None)
    return config, split, plan, evaluate_on_test(result, split.test)


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
        result = train_models(split.train, split.folds, config, plan, seed=3, log=lambda _: None)
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
    # The families search side by side: pair each with the one space holding its grid.
    for family in trained.families.values():
        grid = config.training.models[family.family].grid
        (space,) = [space for space in spaces if space["grid"] == grid]
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
        key: (
            f.best_params,
            f.threshold,
            f.folds.validation_scores,
            f.calibration.applied,
            f.metrics["validation"],
        )
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
    poisoned = Split(
        train=split.train, test=poisoned_test, folds=split.folds, description=split.description
    )
    result = train_task(poisoned, config, plan, 3)
    assert _choices(result) == _choices(trained)
    for key, family in result.families.items():
        true_auc = trained.families[key].metrics["test"]["roc_auc"]
        assert true_auc > 0.7
        assert family.metrics["test"]["roc_auc"] == pytest.approx(1 - true_auc)
    with pytest.raises(RuntimeError, match="already been evaluated"):
        evaluate_on_test(result, split.test)


@pytest.mark.parametrize("kind", ["one random fold", "rolling origin"])
def test_same_seed_same_choices_and_test_metrics(kind, toy, trained, rolling):
    config, split, plan = toy if kind == "one random fold" else rolling[:3]
    first = trained if kind == "one random fold" else rolling[3]
    again = evaluate_on_test(
        train_models(split.train, split.folds, config, plan, seed=3, log=lambda _: None),
        split.test,
    )
    assert _choices(again) == _choices(first)
    for key, family in first.families.items():
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


def test_report_writes_tables_figures_and_models(rolling, tmp_path):
    config, split, plan, result = rolling
    outputs = write_training_report(result, tmp_path, config)
    figures = ("fold_scores", "reliability", "learning_curves", "validation_curves", "loss_curve")
    for name in (*figures, "coefficients"):
        assert outputs.figures[name].is_file() and outputs.figures[name].stat().st_size > 10_000
    trials = pd.read_csv(outputs.tables["trials"])
    assert len(trials) == 12
    assert {"fold 2021-05-01", "fold 2021-06-01", "fold 2021-07-01"} <= set(trials.columns)
    folds = pd.read_csv(outputs.tables["folds"])
    assert len(folds) == 3 and folds["mean"].tolist() == [
        round(f.verdict.validation_score, 4) for f in result.families.values()
    ]
    html = outputs.html.read_text()
    for text in (
        "overfitting if train",
        "Learning curves",
        "Fold scores",
        "Calibration: reliability",
    ):
        assert text in html
    assert "The horizon study was not run" in html
    for family in result.families.values():
        assert f"{family.verdict.validation_score:.3f}" in html
        assert family.calibration.evidence.split(":")[0] in html
    assert all(path.stat().st_size > 0 for path in outputs.models.values())


def test_report_explains_why_an_overfitting_choice_was_kept():
    from types import SimpleNamespace

    from reports.training import _overfit_tradeoff
    from tabular.training import Trial

    verdict = judge(0.81, 0.72, baseline=0.5, max_gap=0.05, min_lift=0.02)
    calm = Trial("xgboost", {"max_depth": 3}, [0.75, 0.77], [0.71, 0.72], 1.0)
    chosen = Trial("xgboost", {"max_depth": 5}, [0.8, 0.82], [0.73, 0.71], 1.0)
    text = _overfit_tradeoff(SimpleNamespace(verdict=verdict, trials=[calm, chosen]), "ROC-AUC")
    assert "{'max_depth': 3}" in text and "0.715" in text and "0.720" in text
    ok = judge(0.74, 0.72, baseline=0.5, max_gap=0.05, min_lift=0.02)
    assert _overfit_tradeoff(SimpleNamespace(verdict=ok, trials=[calm]), "ROC-AUC") == ""


def test_rolling_folds_fit_on_the_past_and_score_on_the_next_period(rolling):
    config, split, plan, result = rolling
    dates = split.train[config.date_column]
    starts = [pd.Timestamp(d) for d in TIME_SPLIT["folds"]] + [pd.Timestamp("2021-08-01")]
    assert [fold.name for fold in split.folds] == TIME_SPLIT["folds"]
    for fold, start, end in zip(split.folds, starts, starts[1:], strict=False):
        assert dates.iloc[fold.train].max() < start <= dates.iloc[fold.validation].min()
        assert dates.iloc[fold.validation].max() < end
        assert len(fold.train) == int((dates < start).sum())  # an expanding window
    assert split.test[config.date_column].min() >= starts[-1] > dates.max()
    for family in result.families.values():
        assert len(family.folds.validation_scores) == 3
        # Successive halving: every configuration is scored on the first two folds, the
        # better half of them (by their mean there) on all three.
        complete = [t for t in family.trials if not t.stopped]
        stopped = [t for t in family.trials if t.stopped]
        assert len(complete) == FAST["n_iter"] // 2 == len(stopped)
        for trial in family.trials:
            assert len(trial.fold_validation) == (2 if trial.stopped else 3)
            assert trial.validation_score == pytest.approx(np.mean(trial.fold_validation))
        for behind in stopped:
            assert all(
                np.mean(behind.fold_validation) <= np.mean(t.fold_validation[:2]) for t in complete
            )
        best = max(complete, key=lambda t: t.validation_score)
        assert family.best_params == best.params  # chosen by the mean fold score
    assert result.best_family == max(
        result.families, key=lambda k: np.mean(result.families[k].folds.validation_scores)
    )
    assert list(fold_table(result)["family"]) == [f.label for f in result.families.values()]


def test_threshold_and_validation_metrics_come_from_the_pooled_fold_predictions(rolling):
    config, split, plan, result = rolling
    y = split.train[config.target.name].to_numpy()
    for family in result.families.values():
        folds = family.folds
        positions = np.concatenate(folds.positions)
        assert np.array_equal(folds.pooled_y, y[positions])
        pooled = folds.pooled_proba
        if family.calibration.applied:
            pooled = family.calibration.mapping.transform(pooled)
        assert family.threshold == choose_threshold(folds.pooled_y, pooled)
        assert family.metrics["validation"]["rows"] == len(positions)
        assert family.metrics["train"]["rows"] == len(split.train)  # refitted on all of them
    mlp = result.families["mlp"]
    assert mlp.final_epochs == max(1, round(np.mean(mlp.folds.epochs)))


def test_a_family_with_refit_rows_is_refitted_on_a_fixed_seed_sample(rolling):
    config, split, plan, result = rolling
    models = dict(config.training.models)
    models["mlp"] = models["mlp"].model_copy(update={"refit_rows": 300})
    training_rules = config.training.model_copy(update={"models": models})
    limited = config.model_copy(update={"training": training_rules})
    mlp, xgb = result.families["mlp"], result.families["xgboost"]

    def refit(family, result_family):
        return training.fit_final(
            family, result_family.best_params, plan, split.train, limited, 3, result_family.folds
        )

    first, again = refit("mlp", mlp), refit("mlp", mlp)
    assert first.fit_rows == first.metrics["train"]["rows"] == 300 < len(split.train)
    # A fixed-seed sample: the same rows, the same model.
    rows = split.test[plan.input_columns]
    assert np.array_equal(first.pipeline.predict_proba(rows), again.pipeline.predict_proba(rows))
    # The threshold still comes from the folds, whatever rows the refit used.
    assert first.folds is mlp.folds and first.threshold == mlp.threshold
    # A family without refit_rows is refitted on every development row.
    assert refit("xgboost", xgb).fit_rows == len(split.train)
    # The method names the sampled refit; without one it says nothing of it.
    method = training.selection_method(limited, "ROC-AUC", 0.7, 400, {"mlp": 300})
    assert f"Neural network (MLP): 300 {limited.rows()}" in method
    assert "sample of them" not in training.selection_method(limited, "ROC-AUC", 0.7, 400)


def test_xgboost_fits_the_same_model_on_32_bit_inputs(rolling):
    from tabular.features import build_preprocessor

    config, split, plan, _ = rolling
    y = split.train[config.target.name].to_numpy()
    X = build_preprocessor(plan, scale=False, seed=3).fit_transform(
        split.train[plan.input_columns], y
    )
    assert X.dtype == np.float64 and len(np.unique(X)) > 100  # target-encoded: many decimals
    narrow_X = X.astype(np.float32)  # the 32-bit matrix XGBoost reads
    params = {"max_depth": 5, "n_estimators": 80, "learning_rate": 0.1}
    wide = training.make_estimator("xgboost", params, 3).fit(X, y)
    narrow = training.make_estimator("xgboost", params, 3).fit(narrow_X, y)
    # The same trees (split values included) and the same probabilities from either input.
    assert wide.get_booster().get_dump(with_stats=True) == narrow.get_booster().get_dump(
        with_stats=True
    )
    assert np.array_equal(wide.predict_proba(X), narrow.predict_proba(narrow_X))
    # The trees' preprocessing casts each block: the same 32-bit values and names, stacked.
    blocks = build_preprocessor(plan, scale=False, seed=3, float32=True)
    X32 = blocks.fit_transform(split.train[plan.input_columns], y)
    assert X32.dtype == np.float32 and np.array_equal(X32, narrow_X)
    reference = build_preprocessor(plan, scale=False, seed=3).fit(
        split.train[plan.input_columns], y
    )
    assert list(blocks.get_feature_names_out()) == list(reference.get_feature_names_out())


#: One configuration per family for the leakage test (small, so that it runs in seconds).
LEAK_PARAMS = {
    "logistic": {"C": 1.0, "l1_ratio": 0.0, "class_weight": None},
    "xgboost": {"max_depth": 3, "n_estimators": 60, "learning_rate": 0.1},
    "mlp": {"hidden_layer_sizes": [32], "alpha": 0.001, "learning_rate_init": 0.003},
}


@pytest.mark.parametrize("family", list(LEAK_PARAMS))
def test_the_rows_a_fold_is_scored_on_change_no_fitted_model(rolling, family):
    """Leakage of selection: no fitting choice (weights, trees, the network's epoch) sees the
    labels of the rows a fold is scored on. Flipping every fold's validation labels must leave
    every fitted model and every chosen epoch as they were; only the fold scores move."""
    from dataclasses import replace

    config, split, plan, _ = rolling
    rules = config.training
    scale = family != "xgboost"
    matrices = training.encode_folds(
        split.train, split.folds, config, plan.input_columns, scale, FAST["search_rows"], 3
    )
    flipped = [replace(m, y_val=1 - m.y_val) for m in matrices]
    params = LEAK_PARAMS[family]
    honest = training.FoldSearch(family, {}, matrices, rules, seed=3)
    probed = training.FoldSearch(family, {}, flipped, rules, seed=3)
    trial, folds = honest.run(params)
    probed_trial, probed_folds = probed.run(params)
    for before, after in zip(folds.proba, probed_folds.proba, strict=True):
        assert np.array_equal(before, after)  # the same model on every fold
    assert probed_trial.epochs == trial.epochs  # the network kept the same epoch
    assert probed_trial.fold_train == trial.fold_train
    # The flipped labels were read, by the scores only: ROC-AUC becomes 1 - ROC-AUC.
    assert probed_trial.fold_validation == pytest.approx([1 - v for v in trial.fold_validation])
    if family == "mlp":
        curve = folds.loss_curve
        assert curve.stopping_rows + curve.fitted_rows == matrices[-1].fit_rows
        assert curve.best_epoch == trial.epochs[-1] >= 1


def test_the_network_stops_on_the_latest_training_rows_of_a_time_split():
    y = np.tile([0, 1, 1, 0, 0], 40)  # 200 rows in time order
    fit, stop = training.stopping_rows(y, 0.1, ordered=True, seed=0)
    assert stop.tolist() == list(range(180, 200)) and fit.tolist() == list(range(180))
    # A random split: the stratified random share scikit-learn's own early stopping draws.
    fit, stop = training.stopping_rows(y, 0.1, ordered=False, seed=0)
    assert len(stop) == 20 and sorted({*fit, *stop}) == list(range(200))
    assert stop.tolist() != list(range(180, 200))  # not simply the latest rows
    assert y[stop].mean() == pytest.approx(y.mean())  # stratified


def test_xgboost_read_at_fewer_trees_is_the_smaller_fit():
    # The search fits the largest number of trees once per fold and reads the smaller ones.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    y = (X[:, 0] + rng.normal(size=3000) > 0.5).astype(int)
    params = {"max_depth": 3, "learning_rate": 0.1}
    small = training.make_estimator("xgboost", {**params, "n_estimators": 40}, 5).fit(X, y)
    large = training.make_estimator("xgboost", {**params, "n_estimators": 120}, 5).fit(X, y)
    read = training.predict_positive("xgboost", large, {**params, "n_estimators": 40}, X)
    assert np.array_equal(read, small.predict_proba(X)[:, 1])


def _folds(proba, y):
    names = [f"f{i}" for i in range(len(proba))]
    return FoldPredictions(
        names=names,
        positions=[np.arange(len(p)) for p in proba],
        y=y,
        proba=proba,
        train_scores=[0.8] * len(proba),
        validation_scores=[0.7] * len(proba),
        fit_rows=[100] * len(proba),
    )


def test_calibration_is_applied_when_it_lowers_the_held_out_brier_score():
    rng = np.random.default_rng(0)
    truth = [rng.uniform(0.02, 0.6, size=4000) for _ in range(3)]
    y = [(rng.random(4000) < t).astype(int) for t in truth]
    # A model that ranks well but says "about twice as likely" as it should.
    inflated = decide_calibration(_folds([np.sqrt(t) for t in truth], y), "sigmoid", seed=0)
    assert inflated.applied and inflated.held_out_calibrated < inflated.held_out_raw
    assert "earlier folds" in inflated.check
    one_fold = decide_calibration(_folds([np.sqrt(truth[0])], [y[0]]), "isotonic", seed=0)
    assert one_fold.applied and "five parts" in one_fold.check


def test_a_calibrated_pipeline_serves_the_calibrated_probability(rolling):
    config, split, plan, result = rolling
    family = result.families["logistic"]
    raw, _ = training.raw_and_served(family.pipeline, split.test)
    mapping = ProbabilityMap("sigmoid").fit(raw, split.test[config.target.name].to_numpy())
    served = Pipeline(
        [
            ("preprocess", family.pipeline.named_steps["preprocess"]),
            ("model", CalibratedModel(base_estimator(family.pipeline), mapping)),
        ]
    )
    calibrated = served.predict_proba(split.test)[:, 1]
    assert np.allclose(calibrated, mapping.transform(raw))
    # Platt scaling is strictly increasing: the ranking, hence the ROC-AUC, is kept.
    y = split.test[config.target.name]
    assert roc_auc_score(y, calibrated) == pytest.approx(roc_auc_score(y, raw))
    assert base_estimator(served) is base_estimator(family.pipeline)
    with pytest.raises(TypeError, match="not refitted"):
        served.named_steps["model"].fit(None, y)


def test_encodings_run_one_at_a_time_and_give_memory_back_only_when_large(monkeypatch):
    import threading
    import time

    from tabular import features

    trims = []
    monkeypatch.setattr(features, "_TRIM", trims.append)
    inside, most = [0], [0]

    def encode(rows):
        with features.one_encoding(rows):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            inside[0] -= 1

    threads = [threading.Thread(target=encode, args=(rows,))
               for rows in (10, features.TRIM_ROWS - 1, features.TRIM_ROWS, 10**6)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1  # never two encodings at once
    assert trims == [0, 0]  # only the two encodings of TRIM_ROWS rows or more trimmed


def test_large_runs_give_freed_arrays_back_at_once_and_small_runs_keep_the_default(
    monkeypatch,
):
    from tabular import features

    calls = []
    monkeypatch.setattr(
        features, "_MALLOPT", lambda param, value: calls.append((param, value)) or 1
    )
    assert not features.free_large_arrays_at_once(features.LARGE_ROWS - 1)
    assert calls == []
    assert features.free_large_arrays_at_once(features.LARGE_ROWS)
    # M_MMAP_THRESHOLD: arrays of 4 MB or more are mapped; M_TRIM_THRESHOLD: heaps keep 32 MB.
    assert calls == [(-3, 4 * 2**20), (-1, 32 * 2**20)]
