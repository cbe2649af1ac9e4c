"""Training stage: three model families, each tuned over three hyperparameters, judged honestly.

Method (see also :data:`SELECTION_METHOD`):

* every configuration is fitted on a fixed-seed sample of the **training** rows and scored
  on the **validation** rows (with a time split, the period that follows training: never
  a random split of time-ordered rows); the best configuration per family maximises the
  primary metric;
* the winner of each family is refitted on all training rows (the neural network stops
  early on the validation rows), its decision threshold is the one that maximises F1 on
  validation, and the best family is the one with the highest validation score;
* the test rows are only read by :func:`evaluate_on_test`, once, after every choice.

Every model is a scikit-learn ``Pipeline`` (the shared preprocessing from
:mod:`tabular.features` + the estimator), so one pickled object turns raw rows into
probabilities.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import ParameterGrid, ParameterSampler
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from tabular.features import EncodingPlan, build_preprocessor

FAMILY_LABELS = {
    "logistic": "Logistic regression",
    "xgboost": "XGBoost",
    "mlp": "Neural network (MLP)",
}

SELECTION_METHOD = (
    "Each configuration is fitted on a fixed-seed sample of {training} and scored on "
    "{validation}{holdout}. The primary metric is {metric}: it measures how well the model "
    "ranks '{positive}' {rows} above '{negative}' ones, without a threshold, and unlike "
    "accuracy it cannot be won by always predicting the majority class "
    "({majority:.0%} of validation rows). The best configuration of each family is refitted "
    "on all training rows; the best family has the highest validation score. The decision "
    "threshold maximises F1 on validation. {test} {are} scored once, at the end."
)


def selection_method(config, metric: str, majority: float) -> str:
    """State the selection method in the dataset's words (its rows, labels and split).

    Args:
        config: The dataset config.
        metric: Primary metric name, as printed.
        majority: Share of the larger class among validation rows.

    Returns:
        :data:`SELECTION_METHOD` filled in.
    """
    split = config.split
    time_split = split.method == "time"
    holdout = (
        " that follows it (a time-aware hold-out: the model never sees rows from after the "
        "period it is judged on)"
        if time_split
        else " (a random hold-out, stratified by the target)"
    )
    test = split.part("test")
    return SELECTION_METHOD.format(
        training=split.part("training"),
        validation=split.part("validation"),
        holdout=holdout,
        metric=metric,
        positive=config.target.labels[1],
        negative=config.target.labels[0],
        rows=config.rows(),
        majority=majority,
        test=test[0].upper() + test[1:],
        are="is" if time_split else "are",
    )


@dataclass
class Trial:
    """One configuration tried during the search.

    Attributes:
        family: Model family key.
        params: Hyperparameters.
        train_score: Primary metric on the rows the configuration was fitted on.
        validation_score: Primary metric on the validation split.
        fit_seconds: Wall time of the fit.
        epochs: Epochs run (neural network only).
    """

    family: str
    params: dict
    train_score: float
    validation_score: float
    fit_seconds: float
    epochs: int | None = None


@dataclass
class Curve:
    """A train/validation score curve over some x values (rows, or a hyperparameter).

    Attributes:
        x_label: What x is.
        x: The x values (numbers or labels).
        train: Train scores.
        validation: Validation scores.
    """

    x_label: str
    x: list
    train: list[float]
    validation: list[float]


@dataclass
class LossCurve:
    """Per-epoch training loss and validation score of the neural network.

    Attributes:
        loss: Training log-loss after each epoch.
        validation: Validation score after each epoch.
        best_epoch: The epoch whose weights were kept (1-based).
    """

    loss: list[float]
    validation: list[float]
    best_epoch: int


@dataclass
class Verdict:
    """Over/underfitting verdict for one family, with the rule and the evidence.

    Attributes:
        label: ``"overfitting"``, ``"underfitting"`` or ``"OK"``.
        train_score: Primary metric on training rows.
        validation_score: Primary metric on validation rows.
        baseline_score: Score of a constant prediction (0.5 for ROC-AUC, the positive
            rate for average precision).
        gap: ``train_score - validation_score``.
        max_gap: The gap above which the rule says overfitting.
        rule: The rule applied, with its limits.
        evidence: The numbers behind the label, in one sentence.
    """

    label: str
    train_score: float
    validation_score: float
    baseline_score: float
    gap: float
    max_gap: float
    rule: str
    evidence: str


@dataclass
class FamilyResult:
    """Everything learnt about one model family.

    Attributes:
        family: Family key.
        label: Human name.
        best_params: Hyperparameters chosen on validation.
        trials: Every configuration tried.
        pipeline: Preprocessing + estimator, refitted on all training rows.
        threshold: Decision threshold chosen on validation (max F1).
        metrics: Standard metrics per split (``train``, ``validation``, later ``test``).
        verdict: Over/underfitting verdict.
        learning_curve: Scores against training rows.
        validation_curve: Scores against one hyperparameter.
        loss_curve: Per-epoch curve (neural network only).
        fit_seconds: Wall time of the final refit.
        feature_names: Encoded feature names, in the estimator's input order.
    """

    family: str
    label: str
    best_params: dict
    trials: list[Trial]
    pipeline: Pipeline
    threshold: float
    metrics: dict[str, dict]
    verdict: Verdict
    learning_curve: Curve
    validation_curve: Curve
    loss_curve: LossCurve | None
    fit_seconds: float
    feature_names: list[str] = field(default_factory=list)


@dataclass
class TrainingResult:
    """The outcome of the training stage.

    Attributes:
        metric: Primary metric name.
        families: Result per family, in training order.
        best_family: Key of the family with the best validation score.
        method: The selection method, in plain English.
        target: Target column name.
        seconds: Wall time of the whole stage.
        test_evaluated: Whether :func:`evaluate_on_test` has run.
    """

    metric: str
    families: dict[str, FamilyResult]
    best_family: str
    method: str
    target: str
    seconds: float = 0.0
    test_evaluated: bool = False

    @property
    def ranking(self) -> list[str]:
        """Family keys from best to worst validation score."""
        return sorted(self.families, key=lambda k: -self.families[k].verdict.validation_score)


def score(metric: str, y_true: np.ndarray, proba: np.ndarray) -> float:
    """Compute the primary metric.

    Args:
        metric: ``roc_auc`` or ``average_precision``.
        y_true: 0/1 labels.
        proba: Predicted probabilities of class 1.

    Returns:
        The score (0.5 for ROC-AUC when only one class is present).
    """
    if len(np.unique(y_true)) < 2:
        return 0.5
    if metric == "roc_auc":
        return float(roc_auc_score(y_true, proba))
    return float(average_precision_score(y_true, proba))


def baseline_score(metric: str, y_true: np.ndarray) -> float:
    """Score of a constant prediction: 0.5 ROC-AUC, or the positive rate as average precision.

    Args:
        metric: ``roc_auc`` or ``average_precision``.
        y_true: 0/1 labels.

    Returns:
        The baseline score.
    """
    return 0.5 if metric == "roc_auc" else float(np.mean(y_true))


def judge(
    train_score: float,
    validation_score: float,
    baseline: float,
    max_gap: float,
    min_lift: float,
    metric: str = "roc_auc",
) -> Verdict:
    """Label a model overfitting, underfitting or OK by a stated rule.

    Rule: **overfitting** when the train score exceeds the validation score by more than
    ``max_gap`` (the model memorised its training rows); otherwise **underfitting** when the
    validation score beats a constant prediction by less than ``min_lift`` (the model
    learnt almost nothing); otherwise **OK**.

    Args:
        train_score: Primary metric on training rows.
        validation_score: Primary metric on validation rows.
        baseline: Score of a constant prediction.
        max_gap: Largest acceptable train–validation gap.
        min_lift: Smallest acceptable lift over the baseline.
        metric: Metric name, for the text.

    Returns:
        The verdict with its rule and evidence.
    """
    gap = train_score - validation_score
    lift = validation_score - baseline
    rule = (
        f"overfitting if train {metric} − validation {metric} > {max_gap:.3f}; else "
        f"underfitting if validation {metric} − constant baseline ({baseline:.3f}) < "
        f"{min_lift:.3f}; else OK"
    )
    if gap > max_gap:
        label = "overfitting"
        evidence = (
            f"train {train_score:.3f} vs validation {validation_score:.3f}: "
            f"a gap of {gap:.3f}, above the {max_gap:.3f} limit"
        )
    elif lift < min_lift:
        label = "underfitting"
        evidence = (
            f"validation {validation_score:.3f} is only {lift:+.3f} above a constant "
            f"prediction ({baseline:.3f}); train {train_score:.3f}"
        )
    else:
        label = "OK"
        evidence = (
            f"train {train_score:.3f} vs validation {validation_score:.3f} (gap {gap:.3f} ≤ "
            f"{max_gap:.3f}), {lift:+.3f} above a constant prediction"
        )
    return Verdict(
        label=label,
        train_score=train_score,
        validation_score=validation_score,
        baseline_score=baseline,
        gap=gap,
        max_gap=max_gap,
        rule=rule,
        evidence=evidence,
    )


def make_estimator(family: str, params: dict, seed: int):
    """Build an unfitted estimator of a family with the given hyperparameters.

    Args:
        family: ``logistic``, ``xgboost`` or ``mlp``.
        params: Hyperparameters from the grid.
        seed: Random seed.

    Returns:
        The estimator.

    Raises:
        ValueError: For an unknown family.
    """
    if family == "logistic":
        if params.get("l1_ratio", 0.0) == 0.0:
            # Pure L2: lbfgs converges about ten times faster than saga on this data.
            return LogisticRegression(solver="lbfgs", max_iter=500, random_state=seed, **params)
        # Only saga handles an L1 part; a loose tolerance keeps the search fast on 2 cores.
        return LogisticRegression(
            solver="saga", max_iter=200, tol=1e-3, random_state=seed, **params
        )
    if family == "xgboost":
        return XGBClassifier(
            tree_method="hist",
            subsample=0.8,
            colsample_bytree=0.8,
            min_child_weight=5,
            n_jobs=os.cpu_count() or 1,
            random_state=seed,
            eval_metric="logloss",
            **params,
        )
    if family == "mlp":
        params = dict(params)
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        return MLPClassifier(batch_size=256, random_state=seed, **params)
    raise ValueError(f"unknown model family '{family}'")


def fit_estimator(
    family: str,
    params: dict,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    seed: int,
    metric: str,
    max_epochs: int,
    patience: int,
):
    """Fit one configuration; the neural network stops early on the validation rows.

    Args:
        family: Model family key.
        params: Hyperparameters.
        X: Encoded training matrix.
        y: Training labels.
        X_val: Encoded validation matrix.
        y_val: Validation labels.
        seed: Random seed.
        metric: Primary metric (the network's early-stopping criterion).
        max_epochs: Epoch cap for the network.
        patience: Epochs without improvement before the network stops.

    Returns:
        The fitted estimator and, for the network, its :class:`LossCurve` (else ``None``).
    """
    model = make_estimator(family, params, seed)
    if family != "mlp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        return model, None
    model.set_params(batch_size=min(256, len(y)))  # small data: one batch, no warning
    classes = np.array([0, 1])
    losses: list[float] = []
    scores: list[float] = []
    best, best_state, best_epoch, stale = -np.inf, None, 0, 0
    for epoch in range(1, max_epochs + 1):
        model.partial_fit(X, y, classes=classes)  # one shuffled pass over the rows
        losses.append(float(model.loss_))
        scores.append(score(metric, y_val, model.predict_proba(X_val)[:, 1]))
        if scores[-1] > best + 1e-4:
            best, best_epoch, stale = scores[-1], epoch, 0
            best_state = copy.deepcopy((model.coefs_, model.intercepts_))
        else:
            stale += 1
            if stale >= patience:
                break
    model.coefs_, model.intercepts_ = best_state
    return model, LossCurve(loss=losses, validation=scores, best_epoch=best_epoch)


def candidate_configs(grid: dict[str, list], search: str, n_iter: int, seed: int) -> list[dict]:
    """List the configurations to try: the whole grid, or a random sample of it.

    Args:
        grid: Values per hyperparameter.
        search: ``grid`` or ``random``.
        n_iter: Configurations to sample for a random search.
        seed: Random seed.

    Returns:
        Configurations as dicts, in a stable order.
    """
    full = list(ParameterGrid(grid))
    if search == "grid" or n_iter >= len(full):
        return full
    return list(ParameterSampler(grid, n_iter=n_iter, random_state=seed))


def choose_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Return the probability threshold that maximises F1.

    Args:
        y_true: 0/1 labels (validation rows).
        proba: Predicted probabilities of class 1.

    Returns:
        The threshold.
    """
    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return float(thresholds[best]) if len(thresholds) else 0.5


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict:
    """Compute the standard metrics at a threshold.

    Args:
        y_true: 0/1 labels.
        proba: Predicted probabilities of class 1.
        threshold: Decision threshold.

    Returns:
        accuracy, precision, recall, f1, roc_auc, average_precision, and the confusion
        matrix as ``tn``, ``fp``, ``fn``, ``tp``; plus ``rows``.
    """
    predicted = (proba >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    return {
        "rows": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "roc_auc": score("roc_auc", y_true, proba),
        "average_precision": score("average_precision", y_true, proba),
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
    }


def train_models(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    config,
    plan: EncodingPlan,
    seed: int,
    log=print,
) -> TrainingResult:
    """Tune, refit, judge and rank every enabled model family.

    The test split is deliberately not a parameter: nothing here can look at it.

    Args:
        train: Training rows (raw columns + target).
        validation: Validation rows.
        config: The dataset config (:class:`tabular.config.DatasetConfig`).
        plan: The encoding plan fitted on the training rows.
        seed: Random seed.
        log: Callable receiving progress lines.

    Returns:
        The training result (test metrics not yet filled in).
    """
    started = time.perf_counter()
    rules = config.training
    families: dict[str, FamilyResult] = {}
    for family, search in rules.models.items():
        if search.enabled:
            rng = np.random.default_rng(seed)
            search_rows = min(search.search_rows or rules.search_rows, len(train))
            search_index = np.sort(rng.choice(len(train), size=search_rows, replace=False))
            families[family] = _train_family(
                family, search, train, validation, config, plan, seed, search_index, log
            )

    if not families:
        raise ValueError("no model family is enabled in the config's 'training.models'")
    best_family = max(families, key=lambda k: families[k].verdict.validation_score)
    y_val = validation[config.target.name].to_numpy()
    majority = max(np.mean(y_val), 1 - np.mean(y_val))
    return TrainingResult(
        metric=rules.metric,
        families=families,
        best_family=best_family,
        method=selection_method(config, _metric_name(rules.metric), majority),
        target=config.target.name,
        seconds=round(time.perf_counter() - started, 3),
    )


def _train_family(
    family: str,
    search,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    config,
    plan: EncodingPlan,
    seed: int,
    search_index: np.ndarray,
    log,
) -> FamilyResult:
    """Search, refit, draw the curves of and judge one family (see :func:`train_models`)."""
    rules = config.training
    target = config.target.name
    columns = plan.input_columns
    y_train = train[target].to_numpy()
    y_val = validation[target].to_numpy()
    search_rows = len(search_index)
    fit_kwargs = {
        "seed": seed,
        "metric": rules.metric,
        "max_epochs": rules.max_epochs,
        "patience": rules.patience,
    }
    scale = family != "xgboost"  # trees are scale-invariant
    # Search: encode once on the search sample, then fit every configuration on it.
    pre = build_preprocessor(plan, scale=scale, seed=seed)
    X_search = pre.fit_transform(train.iloc[search_index][columns], y_train[search_index])
    y_search = y_train[search_index]
    X_val_search = pre.transform(validation[columns])
    cache: dict[str, Trial] = {}

    def run_trial(params: dict, rows: np.ndarray | None = None) -> Trial:
        X, y = (X_search, y_search) if rows is None else (X_search[rows], y_search[rows])
        start = time.perf_counter()
        model, loss = fit_estimator(family, params, X, y, X_val_search, y_val, **fit_kwargs)
        return Trial(
            family=family,
            params=params,
            train_score=score(rules.metric, y, model.predict_proba(X)[:, 1]),
            validation_score=score(rules.metric, y_val, model.predict_proba(X_val_search)[:, 1]),
            fit_seconds=round(time.perf_counter() - start, 3),
            epochs=None if loss is None else len(loss.loss),
        )

    def cached_trial(params: dict) -> Trial:
        key = repr(sorted(params.items()))
        if key not in cache:
            cache[key] = run_trial(params)
        return cache[key]

    configs = candidate_configs(search.grid, rules.search, rules.n_iter, seed)
    trials = [cached_trial(params) for params in configs]
    best = max(trials, key=lambda t: t.validation_score)
    log(
        f"{family}: {len(trials)} configurations, best validation {rules.metric} "
        f"{best.validation_score:.4f} with {best.params}"
    )

    # Validation curve: vary one hyperparameter around the best configuration.
    curve_values = search.grid[search.curve_param]
    curve_trials = [cached_trial({**best.params, search.curve_param: v}) for v in curve_values]
    validation_curve = Curve(
        x_label=search.curve_param,
        x=[str(v) for v in curve_values],
        train=[t.train_score for t in curve_trials],
        validation=[t.validation_score for t in curve_trials],
    )

    # Final refit of the best configuration on all training rows.
    final = fit_final(family, best.params, plan, train, validation, config, seed)
    train_score, val_score = final.train_score, final.validation_score

    # Learning curve: growing slices of the search sample, then all training rows.
    order = np.random.default_rng(seed + 1).permutation(len(y_search))
    sizes = sorted({max(200, search_rows // 8), max(200, search_rows // 3)} - {search_rows})
    points = [run_trial(best.params, np.sort(order[:n])) for n in sizes if n < search_rows]
    points.append(best)
    learning_curve = Curve(
        x_label="training rows",
        x=[*[int(n) for n in sizes if n < search_rows], search_rows, len(y_train)],
        train=[p.train_score for p in points] + [train_score],
        validation=[p.validation_score for p in points] + [val_score],
    )
    if len(y_train) == search_rows:  # the last two points are the same fit size
        for series in (learning_curve.x, learning_curve.train, learning_curve.validation):
            series.pop(-2)

    verdict = judge(
        train_score,
        val_score,
        baseline_score(rules.metric, y_val),
        rules.max_gap,
        rules.min_lift,
        rules.metric,
    )
    log(f"{family}: refit on {len(y_train):,} rows in {final.fit_seconds:.1f}s, {verdict.label}")
    return FamilyResult(
        family=family,
        label=FAMILY_LABELS[family],
        best_params=best.params,
        trials=trials,
        pipeline=final.pipeline,
        threshold=final.threshold,
        metrics=final.metrics,
        verdict=verdict,
        learning_curve=learning_curve,
        validation_curve=validation_curve,
        loss_curve=final.loss_curve,
        fit_seconds=final.fit_seconds,
        feature_names=final.feature_names,
    )


@dataclass
class FittedModel:
    """A configuration refitted on all training rows, with its threshold and scores.

    Attributes:
        pipeline: Preprocessing + estimator.
        threshold: Decision threshold maximising F1 on validation.
        metrics: Standard metrics on ``train`` and ``validation``.
        train_score: Primary metric on training rows (cross-fitted encodings).
        validation_score: Primary metric on validation rows.
        fit_seconds: Wall time of preprocessing + fit.
        loss_curve: Per-epoch curve (neural network only).
        feature_names: Encoded feature names, in the estimator's input order.
    """

    pipeline: Pipeline
    threshold: float
    metrics: dict[str, dict]
    train_score: float
    validation_score: float
    fit_seconds: float
    loss_curve: LossCurve | None
    feature_names: list[str]


def fit_final(
    family: str,
    params: dict,
    plan: EncodingPlan,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    config,
    seed: int,
) -> FittedModel:
    """Refit one configuration on all training rows and choose its threshold on validation.

    Args:
        family: Model family key.
        params: Hyperparameters.
        plan: Encoding plan (possibly restricted to selected features).
        train: Training rows.
        validation: Validation rows.
        config: The dataset config.
        seed: Random seed.

    Returns:
        The fitted model with its threshold and train/validation metrics.
    """
    rules = config.training
    target = config.target.name
    y_train = train[target].to_numpy()
    y_val = validation[target].to_numpy()
    start = time.perf_counter()
    pre = build_preprocessor(plan, scale=family != "xgboost", seed=seed)
    # fit_transform cross-fits the target encoder, so train scores are not inflated.
    X_train = pre.fit_transform(train[plan.input_columns], y_train)
    X_val = pre.transform(validation[plan.input_columns])
    model, loss_curve = fit_estimator(
        family,
        params,
        X_train,
        y_train,
        X_val,
        y_val,
        seed=seed,
        metric=rules.metric,
        max_epochs=rules.max_epochs,
        patience=rules.patience,
    )
    fit_seconds = round(time.perf_counter() - start, 3)
    train_proba = model.predict_proba(X_train)[:, 1]
    val_proba = model.predict_proba(X_val)[:, 1]
    threshold = choose_threshold(y_val, val_proba)
    return FittedModel(
        pipeline=Pipeline([("preprocess", pre), ("model", model)]),
        threshold=threshold,
        metrics={
            "train": classification_metrics(y_train, train_proba, threshold),
            "validation": classification_metrics(y_val, val_proba, threshold),
        },
        train_score=score(rules.metric, y_train, train_proba),
        validation_score=score(rules.metric, y_val, val_proba),
        fit_seconds=fit_seconds,
        loss_curve=loss_curve,
        feature_names=[str(n) for n in pre.get_feature_names_out()],
    )


def evaluate_on_test(result: TrainingResult, test: pd.DataFrame) -> TrainingResult:
    """Score every family's final pipeline on the test split, once, after all choices.

    Args:
        result: The training result; its models and thresholds are not changed.
        test: Test rows (raw columns + target).

    Returns:
        The same result, with ``metrics["test"]`` filled in for every family.

    Raises:
        RuntimeError: If called twice on the same result.
    """
    if result.test_evaluated:
        raise RuntimeError("the test split has already been evaluated for this result")
    y_test = test[result.target].to_numpy()
    for family in result.families.values():
        proba = family.pipeline.predict_proba(test)[:, 1]
        family.metrics["test"] = classification_metrics(y_test, proba, family.threshold)
    result.test_evaluated = True
    return result


def trials_table(result: TrainingResult) -> pd.DataFrame:
    """Return every configuration tried, one row each, best first within each family.

    Args:
        result: The training result.

    Returns:
        Columns: family, params (one column per hyperparameter), scores, fit seconds.
    """
    rows = []
    for family in result.families.values():
        for trial in sorted(family.trials, key=lambda t: -t.validation_score):
            row = {"family": family.label}
            row.update({k: _plain(v) for k, v in trial.params.items()})
            row.update(
                {
                    f"train_{result.metric}": round(trial.train_score, 4),
                    f"validation_{result.metric}": round(trial.validation_score, 4),
                    "fit_seconds": trial.fit_seconds,
                    "epochs": trial.epochs,
                    "chosen": trial.params == family.best_params,
                }
            )
            rows.append(row)
    return pd.DataFrame(rows)


def metrics_table(result: TrainingResult) -> pd.DataFrame:
    """Return the standard metrics of each family's final model on every split scored.

    Args:
        result: The training result.

    Returns:
        One row per (family, split) with threshold, metrics and confusion-matrix cells.
    """
    rows = []
    for family in result.families.values():
        for split_name, metrics in family.metrics.items():
            rows.append(
                {
                    "family": family.label,
                    "split": split_name,
                    "threshold": round(family.threshold, 4),
                    **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
                }
            )
    return pd.DataFrame(rows)


def linear_coefficients(family: FamilyResult, top: int = 20) -> pd.DataFrame:
    """Return the largest coefficients of a fitted logistic regression.

    Args:
        family: The logistic family's result.
        top: How many coefficients to keep (by absolute value).

    Returns:
        Columns ``feature``, ``coefficient`` (on standardised inputs), sorted by |value|.
    """
    coefficients = family.pipeline.named_steps["model"].coef_.ravel()
    table = pd.DataFrame({"feature": family.feature_names, "coefficient": coefficients})
    table = table.reindex(table["coefficient"].abs().sort_values(ascending=False).index)
    return table.head(top).reset_index(drop=True)


def _metric_name(metric: str) -> str:
    return {"roc_auc": "ROC-AUC", "average_precision": "average precision"}[metric]


def _plain(value):
    if isinstance(value, list | tuple):
        return str(tuple(value))
    return value
