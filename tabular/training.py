"""Training stage: three model families, each tuned over three hyperparameters, judged honestly.

Method (see also :func:`selection_method`):

* **rolling-origin folds** (:class:`tabular.datasets.Fold`): each fold fits on the rows
  before a validation period and is scored on that period, so a model is always judged on
  rows that come after the ones it learnt from (a random split has one fold, its
  validation rows). Every configuration is fitted on each fold, on a fixed-seed sample of
  the fold's training rows (``search_rows``), and scored on all of its validation rows;
* **no fitting choice sees the rows a fold is scored on**: the network stops early on a
  slice of the fold's *training* sample (its latest rows for a time split, see
  :func:`stopping_rows`), never on the validation rows, so its fold score is as honest as
  the other families' (a test perturbs the validation labels and finds every fitted model
  unchanged);
* **successive halving across folds**: every configuration is scored on the first half of
  the folds, and only the best share of them (``training.halving``) goes on to the others;
  each (configuration, fold) fit is an independent unit of work;
* each family's configuration with the best **mean fold score** (among those scored on
  every fold) is chosen, the spread across folds is reported, and the champion is the
  family with the best mean;
* the chosen configuration's pooled fold predictions decide whether its probabilities are
  calibrated (:func:`decide_calibration`) and where its decision threshold lies; it is then
  refitted on all development rows (or a fixed-seed sample of ``refit_rows`` of them);
* the test rows are only read by :func:`evaluate_on_test`, once, after every choice.

Every model is a scikit-learn ``Pipeline`` (the shared preprocessing from
:mod:`tabular.features` + the estimator, wrapped with its calibration map when calibrated),
so one pickled object turns raw rows into the served probabilities.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.calibration import calibration_curve
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import (
    ParameterGrid,
    ParameterSampler,
    StratifiedKFold,
    train_test_split,
)
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from tabular.datasets import Fold, Split
from tabular.features import (
    CalibratedModel,
    EncodingPlan,
    ProbabilityMap,
    base_estimator,
    build_preprocessor,
    columns_view,
    one_encoding,
    plan_encoding,
)
from tabular.runner import Runner

FAMILY_LABELS = {
    "logistic": "Logistic regression",
    "xgboost": "XGBoost",
    "mlp": "Neural network (MLP)",
}


def selection_method(
    config, metric: str, majority: float, search_rows: int, sampled: dict[str, int] | None = None
) -> str:
    """State the selection method in the dataset's words (its rows, labels and split).

    Args:
        config: The dataset config.
        metric: Primary metric name, as printed.
        majority: Share of the larger class among the validation rows of the folds.
        search_rows: The largest number of a fold's training rows a search fit uses.
        sampled: The families refitted on a sample of the development rows, with its size.

    Returns:
        The method, in plain English.
    """
    split = config.split
    rules = config.training
    rows = config.rows()
    stopping = (
        f"its most recent {rules.stopping_share:.0%}"
        if split.method == "time"
        else f"a stratified random {rules.stopping_share:.0%}"
    )
    halving = (
        f"Configurations are scored on the first {_first_folds(len(split.fold_starts))} folds; "
        f"only the best {rules.halving:.0%} of them (by their mean there) go on to the other "
        "folds (successive halving), and only configurations scored on every fold can be "
        "chosen. "
        if split.method == "time" and len(split.fold_starts) > 1 and rules.halving is not None
        else ""
    )
    if split.method == "time":
        starts = [str(start) for start in split.fold_starts]
        folds = (
            f"{len(starts)} rolling-origin folds over {split.part('training')}: each fold is "
            f"scored on one period (starting {', '.join(starts)}; each runs to the next, the "
            f"last to {split.test_start}) and fitted on every {config.row_noun[0]} before it, "
            "an expanding window, so a model is always judged on "
            f"{rows} that come after the ones it learnt from"
            if len(starts) > 1
            else f"one fold: fitted on the {rows} before {starts[0]} and scored on "
            f"{split.part('validation')} (a time-aware hold-out)"
        )
    else:
        folds = (
            "one fold: fitted on the training rows and scored on the validation rows (a "
            "random hold-out, stratified by the target)"
        )
    test = split.part("test")
    return (
        f"Selection uses {folds}. Every configuration is fitted on each fold, on a "
        f"fixed-seed sample of at most {search_rows:,} of the fold's training {rows} (to keep "
        f"the search within its time budget), and scored on all of the fold's validation "
        f"{rows}. {halving}The network stops early on {stopping} of the fold's training "
        f"sample, never on the {rows} the fold is scored on, so no fitting choice has seen "
        f"the {rows} behind a fold score. The primary metric is {metric}: it measures how "
        "well the model ranks "
        f"'{config.target.labels[1]}' {rows} above '{config.target.labels[0]}' ones, without "
        "a threshold, and unlike accuracy it cannot be won by always predicting the majority "
        f"class ({majority:.0%} of validation {rows}). Each family's configuration with the "
        "best mean fold score is chosen (the spread across folds is reported), and the "
        "champion is the family with the best mean. The chosen configuration's pooled fold "
        "predictions decide whether its probabilities are calibrated and set its decision "
        "threshold (maximum F1); it is then refitted on all of "
        f"{split.part('training')}{_sampled_refits(sampled or {}, rows)}. "
        f"{test[0].upper() + test[1:]} "
        f"{'is' if split.method == 'time' else 'are'} scored once, at the end."
    )


def _sampled_refits(sampled: dict[str, int], rows: str) -> str:
    """The clause naming the families refitted on a sample (``refit_rows``), or nothing."""
    if not sampled:
        return ""
    each = "; ".join(f"{FAMILY_LABELS[k]}: {n:,} {rows}" for k, n in sampled.items())
    return f" (or a fixed-seed sample of them, to bound the time and memory of the refit: {each})"


@dataclass
class Trial:
    """One configuration tried during the search, with its score on the folds it reached.

    Attributes:
        family: Model family key.
        params: Hyperparameters.
        fold_train: Primary metric on the rows each fold's model was fitted on.
        fold_validation: Primary metric on each fold's validation rows, for the folds it
            was scored on (the first ones when successive halving stopped it).
        fit_seconds: Wall time of the fits, summed over the folds (a fit shared by several
            numbers of trees is counted for each; folds fitted side by side overlap).
        epochs: Epochs kept on each fold (neural network only).
        stopped: Successive halving stopped it after the first folds (it cannot be chosen).
    """

    family: str
    params: dict
    fold_train: list[float]
    fold_validation: list[float]
    fit_seconds: float
    epochs: list[int] | None = None
    stopped: bool = False

    @property
    def train_score(self) -> float:
        """Mean primary metric on the folds' training rows."""
        return float(np.mean(self.fold_train))

    @property
    def validation_score(self) -> float:
        """Mean primary metric over the folds' validation rows: the selection score."""
        return float(np.mean(self.fold_validation))

    @property
    def spread(self) -> float:
        """Standard deviation of the fold validation scores."""
        return float(np.std(self.fold_validation))


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
    """Per-epoch training loss and stopping score of the neural network (last fold).

    Attributes:
        loss: Training log-loss after each epoch.
        stopping: Primary metric on the stopping rows after each epoch (a slice of the
            fold's training sample, see :func:`stopping_rows`; empty for a fixed number
            of epochs).
        best_epoch: The epoch whose weights were kept (1-based).
        stopping_rows: Rows the network stopped on (0 for a fixed number of epochs).
        fitted_rows: Rows it was fitted on.
    """

    loss: list[float]
    stopping: list[float]
    best_epoch: int
    stopping_rows: int = 0
    fitted_rows: int = 0


@dataclass
class Verdict:
    """Over/underfitting verdict for one family, with the rule and the evidence.

    Attributes:
        label: ``"overfitting"``, ``"underfitting"`` or ``"OK"``.
        train_score: Primary metric on training rows (mean over folds).
        validation_score: Primary metric on validation rows (mean over folds).
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
class FoldPredictions:
    """One configuration's predictions on every fold's validation rows.

    Attributes:
        names: Fold names.
        positions: Each fold's validation rows (positions in the development rows).
        y: Each fold's validation labels.
        proba: Each fold's predicted probabilities of class 1 (uncalibrated).
        train_scores: Primary metric on the rows each fold fitted on.
        validation_scores: Primary metric on each fold's validation rows.
        fit_rows: Rows each fold's model was fitted on.
        epochs: Epochs kept on each fold (neural network only).
        loss_curve: The last fold's per-epoch curve (neural network only).
    """

    names: list[str]
    positions: list[np.ndarray]
    y: list[np.ndarray]
    proba: list[np.ndarray]
    train_scores: list[float]
    validation_scores: list[float]
    fit_rows: list[int]
    epochs: list[int] | None = None
    loss_curve: LossCurve | None = None

    @property
    def pooled_y(self) -> np.ndarray:
        """Every fold's validation labels, in fold order."""
        return np.concatenate(self.y)

    @property
    def pooled_proba(self) -> np.ndarray:
        """Every fold's predicted probabilities, in fold order."""
        return np.concatenate(self.proba)


@dataclass
class TestCalibration:
    """Calibration of one family's final model, measured on the test rows.

    Attributes:
        brier_raw: Brier score of the model's own probabilities.
        brier_calibrated: Brier score after the calibration map fitted on the folds.
        raw_curve: Reliability curve of the raw probabilities (mean predicted, observed
            share of class 1, per bin of equal size).
        calibrated_curve: The same after calibration.
    """

    brier_raw: float
    brier_calibrated: float
    raw_curve: tuple[list[float], list[float]]
    calibrated_curve: tuple[list[float], list[float]]


@dataclass
class Calibration:
    """Whether a family's probabilities are calibrated, and the evidence.

    Attributes:
        method: ``sigmoid`` or ``isotonic``.
        applied: Whether the served model uses the calibrated probability.
        held_out_raw: Brier score of the raw fold predictions, on the held-out part of
            the check (see :func:`decide_calibration`).
        held_out_calibrated: Brier score there after a map fitted on the other part.
        check: How the held-out part was chosen, in one phrase.
        mapping: The map fitted on all pooled fold predictions.
        test: Calibration on the test rows (filled in by :func:`evaluate_on_test`).
    """

    method: str
    applied: bool
    held_out_raw: float
    held_out_calibrated: float
    check: str
    mapping: ProbabilityMap
    test: TestCalibration | None = None

    @property
    def evidence(self) -> str:
        """The decision in one sentence, with its numbers."""
        change = self.held_out_calibrated - self.held_out_raw
        verb = "calibrated" if self.applied else "not calibrated"
        return (
            f"{verb}: {self.check}, {self.method} calibration moves the Brier score from "
            f"{self.held_out_raw:.4f} to {self.held_out_calibrated:.4f} ({change:+.4f})"
        )


@dataclass
class FittedModel:
    """A configuration refitted on the development rows, with its threshold and scores.

    Attributes:
        pipeline: Preprocessing + estimator (+ calibration map when applied).
        threshold: Decision threshold maximising F1 on the pooled fold predictions.
        metrics: Standard metrics on ``train`` (the development rows it was fitted on) and
            ``validation`` (the pooled fold predictions), at the threshold.
        folds: The fold predictions behind the threshold and calibration.
        calibration: The calibration decision.
        train_score: Primary metric on the development rows.
        validation_score: Mean fold score.
        fit_seconds: Wall time of preprocessing + final fit.
        feature_names: Encoded feature names, in the estimator's input order.
        epochs: Epochs of the final fit (neural network only).
        on_cluster: The final fit ran on a Dask cluster (``xgboost.dask``).
        fit_rows: Development rows it was refitted on (all, or a sample of
            ``refit_rows``).
    """

    pipeline: Pipeline
    threshold: float
    metrics: dict[str, dict]
    folds: FoldPredictions
    calibration: Calibration
    train_score: float
    validation_score: float
    fit_seconds: float
    feature_names: list[str]
    epochs: int | None = None
    on_cluster: bool = False
    fit_rows: int = 0


@dataclass
class FamilyResult:
    """Everything learnt about one model family.

    Attributes:
        family: Family key.
        label: Human name.
        best_params: Hyperparameters chosen by mean fold score.
        trials: Every configuration tried.
        pipeline: Preprocessing + estimator (+ calibration), refitted on the development rows.
        threshold: Decision threshold chosen on the pooled fold predictions (max F1).
        metrics: Standard metrics per split (``train``, ``validation``, later ``test``).
        verdict: Over/underfitting verdict (from the fold scores).
        learning_curve: Scores against training rows (last fold).
        validation_curve: Scores against one hyperparameter (mean over folds).
        loss_curve: Per-epoch curve (neural network only, last fold).
        fit_seconds: Wall time of the final refit.
        feature_names: Encoded feature names, in the estimator's input order.
        folds: The chosen configuration's fold predictions.
        calibration: The calibration decision and, after the test, its effect there.
        final_epochs: Epochs of the final refit (neural network only).
        final_rows: Development rows of the final refit (all, or a sample of ``refit_rows``).
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
    folds: FoldPredictions | None = None
    calibration: Calibration | None = None
    final_epochs: int | None = None
    final_rows: int = 0


@dataclass
class TrainingResult:
    """The outcome of the training stage.

    Attributes:
        metric: Primary metric name.
        families: Result per family, in training order.
        best_family: Key of the family with the best mean fold score (the champion).
        method: The selection method, in plain English.
        target: Target column name.
        folds: Name and description of each fold.
        seconds: Wall time of the whole stage.
        test_evaluated: Whether :func:`evaluate_on_test` has run.
        lineage: The cache key of the pipeline step that computed it (empty outside a
            pipeline run): the steps that read this result are keyed by it.
    """

    metric: str
    families: dict[str, FamilyResult]
    best_family: str
    method: str
    target: str
    folds: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    test_evaluated: bool = False
    lineage: str = ""

    @property
    def ranking(self) -> list[str]:
        """Family keys from best to worst mean fold score."""
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
    metric: str = "ROC-AUC",
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
        metric: Metric name as printed (``ROC-AUC``), for the text.

    Returns:
        The verdict with its rule and evidence.
    """
    gap = train_score - validation_score
    lift = validation_score - baseline
    rule = (
        f"overfitting if train rows {metric} − mean fold {metric} > {max_gap:.3f}; else "
        f"underfitting if mean fold {metric} − constant baseline ({baseline:.3f}) < "
        f"{min_lift:.3f}; else OK (train rows: each fold's model scored on the rows it was "
        "fitted on; mean fold: the same models on the rows each fold is scored on; both "
        "averaged over the folds)"
    )
    if gap > max_gap:
        label = "overfitting"
        evidence = (
            f"train rows {train_score:.3f} vs mean fold {validation_score:.3f}: "
            f"a gap of {gap:.3f}, above the {max_gap:.3f} limit"
        )
    elif lift < min_lift:
        label = "underfitting"
        evidence = (
            f"mean fold {validation_score:.3f} is only {lift:+.3f} above a constant "
            f"prediction ({baseline:.3f}); train rows {train_score:.3f}"
        )
    else:
        label = "OK"
        evidence = (
            f"train rows {train_score:.3f} vs mean fold {validation_score:.3f} (gap "
            f"{gap:.3f} ≤ {max_gap:.3f}), {lift:+.3f} above a constant prediction"
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


def stopping_rows(
    y: np.ndarray, share: float, ordered: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training rows into the rows the network fits on and the rows it stops on.

    scikit-learn's own ``MLPClassifier(early_stopping=True, validation_fraction=...)`` holds
    out a *random* (stratified) share of the rows it is given and judges it by accuracy.
    For rows in time order a random share is not the honest stand-in for the rows a fold is
    scored on, which come *after* every training row: so for a time split the held-out rows
    are the latest ``share`` of the training rows (the rows arrive in date order), and for a
    random split the same stratified random share scikit-learn would draw. The network is
    judged on them by the primary metric (its selection criterion), not by accuracy.

    Args:
        y: The fold's training labels (0/1), in row order.
        share: Share of the rows held out to stop on.
        ordered: The rows are in time order (a time split).
        seed: Seed of the random share (random split only).

    Returns:
        ``(fit, stop)``: positions of the rows to fit on and of the rows to stop on.
    """
    n = len(y)
    if n < 4:  # nothing to spare: fit on every row, stop on them too
        positions = np.arange(n)
        return positions, positions
    held = min(max(int(round(n * share)), 2), n - 2)
    positions = np.arange(n)
    if ordered:
        return positions[: n - held], positions[n - held :]
    counts = np.bincount(np.asarray(y, dtype=int), minlength=2)
    fit, stop = train_test_split(
        positions,
        test_size=held,
        random_state=seed,
        stratify=y if counts.min() >= 2 else None,
    )
    return np.sort(fit), np.sort(stop)


def fit_estimator(
    family: str,
    params: dict,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    metric: str,
    max_epochs: int,
    patience: int,
    epochs: int | None = None,
    stopping_share: float = 0.1,
    ordered: bool = True,
):
    """Fit one configuration on training rows only; the network stops early on some of them.

    Nothing here receives the rows a fold is scored on: the network holds out a slice of
    the training rows it is given (:func:`stopping_rows`), fits on the rest one epoch at a
    time, and keeps the weights of the epoch with the best primary metric on that slice.

    Args:
        family: Model family key.
        params: Hyperparameters.
        X: Encoded training matrix.
        y: Training labels.
        seed: Random seed.
        metric: Primary metric (the network's early-stopping criterion).
        max_epochs: Epoch cap for the network.
        patience: Epochs without improvement before the network stops.
        epochs: Train the network for exactly this many epochs on every row, without
            stopping rows (the final refit, which runs the folds' mean number of epochs).
        stopping_share: Share of the rows the network stops on.
        ordered: The rows are in time order (the stopping rows are then the latest ones).

    Returns:
        The fitted estimator and, for the network, its :class:`LossCurve` (else ``None``).
    """
    model = make_estimator(family, params, seed)
    if family != "mlp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        return model, None
    classes = np.array([0, 1])
    losses: list[float] = []
    if epochs is not None:
        model.set_params(batch_size=min(256, len(y)))  # small data: one batch, no warning
        for _ in range(epochs):
            model.partial_fit(X, y, classes=classes)  # one shuffled pass over the rows
            losses.append(float(model.loss_))
        return model, LossCurve(loss=losses, stopping=[], best_epoch=epochs, fitted_rows=len(y))
    fit, stop = stopping_rows(y, stopping_share, ordered, seed)
    X_fit, y_fit, X_stop, y_stop = X[fit], y[fit], X[stop], y[stop]
    model.set_params(batch_size=min(256, len(y_fit)))
    scores: list[float] = []
    best, best_state, best_epoch, stale = -np.inf, None, 0, 0
    for epoch in range(1, max_epochs + 1):
        model.partial_fit(X_fit, y_fit, classes=classes)
        losses.append(float(model.loss_))
        scores.append(score(metric, y_stop, model.predict_proba(X_stop)[:, 1]))
        if scores[-1] > best + 1e-4:
            best, best_epoch, stale = scores[-1], epoch, 0
            best_state = copy.deepcopy((model.coefs_, model.intercepts_))
        else:
            stale += 1
            if stale >= patience:
                break
    model.coefs_, model.intercepts_ = best_state
    return model, LossCurve(
        loss=losses,
        stopping=scores,
        best_epoch=best_epoch,
        stopping_rows=len(stop),
        fitted_rows=len(fit),
    )


def predict_positive(family: str, model, params: dict, X: np.ndarray) -> np.ndarray:
    """Return a fitted estimator's probabilities of class 1 for a configuration.

    An XGBoost model fitted with more trees than ``params["n_estimators"]`` predicts with
    its first ``n_estimators`` trees: boosting adds trees one after the other with the same
    random stream, so these are exactly the trees a fit with that number would build (a
    test checks it). The search fits the largest number once per fold and reads the smaller
    ones from it.

    Args:
        family: Model family key.
        model: The fitted estimator.
        params: The configuration being scored.
        X: Encoded matrix.

    Returns:
        Probabilities of class 1.
    """
    if family == "xgboost":
        return model.predict_proba(X, iteration_range=(0, int(params["n_estimators"])))[:, 1]
    return model.predict_proba(X)[:, 1]


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
    development: pd.DataFrame,
    folds: list[Fold],
    config,
    plan: EncodingPlan,
    seed: int,
    log=print,
    runner: Runner | None = None,
) -> TrainingResult:
    """Tune, refit, judge and rank every enabled model family on rolling-origin folds.

    The test rows are deliberately not a parameter: nothing here can look at them.

    Args:
        development: Development rows (raw columns + target): every fold's rows, and the
            rows the final models are fitted on.
        folds: The selection folds (positions in ``development``).
        config: The dataset config (:class:`tabular.config.DatasetConfig`).
        plan: The encoding plan decided on the development rows (the final models').
        seed: Random seed.
        log: Callable receiving progress lines.
        runner: Where the search's (configuration, fold) fits run (``None``: in this
            process, on threads); the same seed gives the same choices with any runner.

    Returns:
        The training result (test metrics not yet filled in).

    Raises:
        ValueError: If no model family is enabled.
    """
    started = time.perf_counter()
    rules = config.training
    enabled = {family: search for family, search in rules.models.items() if search.enabled}
    if not enabled:
        raise ValueError("no model family is enabled in the config's 'training.models'")
    keys = {
        family: (family != "xgboost", search.search_rows or rules.search_rows)
        for family, search in enabled.items()
    }  # trees are scale-invariant: XGBoost's inputs are not standardised
    shared = _SharedFolds(
        lambda scale, rows: encode_folds(
            development, folds, config, plan.input_columns, scale, rows, seed
        ),
        keys,
    )
    search_rows = max(min(rows, len(fold.train)) for _, rows in keys.values() for fold in folds)
    # The families are independent units of work: two at a time, on threads. Much of a
    # family's time runs on one core (a saga solver, the network's refit, the search's
    # Python between fits) while XGBoost's C++ and the solvers release the GIL: on 2 cores
    # the families side by side leave less of the second core idle. Each family's models
    # are the same as when trained alone.
    with one_blas_thread(), ThreadPoolExecutor(min(len(enabled), os.cpu_count() or 1)) as pool:
        futures = {
            family: pool.submit(
                _train_family,
                family,
                search,
                shared,
                development,
                config,
                plan,
                seed,
                log,
                runner,
            )
            for family, search in enabled.items()
        }
        families: dict[str, FamilyResult] = {
            family: future.result() for family, future in futures.items()
        }
    best_family = max(families, key=lambda k: families[k].verdict.validation_score)
    y_val = development[config.target.name].to_numpy()[
        np.concatenate([f.validation for f in folds])
    ]
    majority = max(np.mean(y_val), 1 - np.mean(y_val))
    return TrainingResult(
        metric=rules.metric,
        families=families,
        best_family=best_family,
        method=selection_method(
            config,
            _metric_name(rules.metric),
            majority,
            search_rows,
            {k: f.final_rows for k, f in families.items() if f.final_rows < len(development)},
        ),
        target=config.target.name,
        folds=[(fold.name, fold.description) for fold in folds],
        seconds=round(time.perf_counter() - started, 3),
    )


def one_blas_thread():
    """Limit BLAS (numpy's matrix products) to one thread for the block it guards.

    The network and the linear model multiply small matrices (a batch of 256 rows by a few
    dozen columns): a second BLAS thread only adds hand-offs, and on a busy 2-core machine
    its spinning made an epoch 10 to 20 times slower (3-4 s instead of 0.15-0.5 s, measured
    with 30,000 rows). XGBoost's OpenMP threads are not BLAS threads and keep both cores.

    Returns:
        A context manager (``threadpoolctl.threadpool_limits``).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class FoldMatrices:
    """One fold's encoded rows: a sample of its training rows and all its validation rows.

    Attributes:
        name: Fold name.
        positions: The validation rows' positions in the development rows.
        X: Encoded training sample.
        y: Its labels.
        X_val: Encoded validation rows.
        y_val: Their labels.
        fit_rows: Rows in the training sample.
        ordered: The training rows are in time order (a time split): the network stops
            on the latest of them.
    """

    name: str
    positions: np.ndarray
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    fit_rows: int
    ordered: bool = True


def encode_folds(
    development: pd.DataFrame,
    folds: list[Fold],
    config,
    columns: list[str],
    scale: bool,
    rows: int,
    seed: int,
) -> list[FoldMatrices]:
    """Encode each fold: the plan and the preprocessing are decided on its training rows only.

    Args:
        development: Development rows.
        folds: The folds.
        config: The dataset config.
        columns: Input columns to use (all of the plan's, or the selected ones).
        scale: Standardise numeric outputs (the tree model's are not, and are encoded as
            32-bit floats: see :func:`tabular.features.build_preprocessor`).
        rows: Fit on a fixed-seed sample of at most this many of a fold's training rows.
        seed: Random seed (the sample and the target encoder's folds).

    Returns:
        One :class:`FoldMatrices` per fold.
    """
    target = config.target.name
    # What the plans and encodings read, without copying the rows' other columns.
    development = columns_view(development, list(dict.fromkeys([*config.feature_columns, target])))
    matrices = []
    for fold in folds:
        n = min(rows, len(fold.train))
        with one_encoding(n + len(fold.validation)):  # alone in this process: see one_encoding
            fitted = development.iloc[fold.train]
            plan = fold_plan(fitted, config, columns)
            sample = np.sort(np.random.default_rng(seed).choice(len(fitted), size=n, replace=False))
            fitted = fitted.iloc[sample]
            validation = development.iloc[fold.validation]
            pre = build_preprocessor(plan, scale=scale, seed=seed, float32=not scale)
            X = pre.fit_transform(
                columns_view(fitted, plan.input_columns), fitted[target].to_numpy()
            )
            matrices.append(
                FoldMatrices(
                    name=fold.name,
                    positions=fold.validation,
                    X=X,
                    y=fitted[target].to_numpy(),
                    X_val=pre.transform(columns_view(validation, plan.input_columns)),
                    y_val=validation[target].to_numpy(),
                    fit_rows=n,
                    ordered=config.split.method == "time",
                )
            )
            del fitted, validation, X
    return matrices


def fold_plan(rows: pd.DataFrame, config, columns: list[str]) -> EncodingPlan:
    """Decide the encoding on one fold's training rows, limited to some input columns.

    Args:
        rows: The fold's training rows.
        config: The dataset config.
        columns: The input columns wanted.

    Returns:
        The plan (a column the fold's rows cannot encode, such as a date whose parts never
        change there, is left out).
    """
    plan = plan_encoding(rows, config)
    return plan.restrict([c for c in columns if c in plan.input_columns])


def _first_folds(folds: int) -> int:
    """How many folds every configuration is scored on before successive halving (half, rounded up)."""
    return max(1, math.ceil(folds / 2))


def fit_unit(family: str, fit_params: dict, m: FoldMatrices, rules, seed: int) -> tuple:
    """Fit one configuration on one fold's training sample: the search's unit of work.

    A plain function of its arguments (a cluster's worker receives them pickled), seeded:
    the same arguments give the same model wherever it runs.

    Args:
        family: Model family key.
        fit_params: The hyperparameters to fit with.
        m: The fold's encoded rows.
        rules: The config's ``training`` section.
        seed: Random seed.

    Returns:
        ``(model, loss curve or None, seconds)``.
    """
    start = time.perf_counter()
    model, loss = fit_estimator(
        family,
        fit_params,
        m.X,
        m.y,
        seed=seed,
        metric=rules.metric,
        max_epochs=rules.max_epochs,
        patience=rules.patience,
        stopping_share=rules.stopping_share,
        ordered=m.ordered,
    )
    return model, loss, time.perf_counter() - start


class FoldSearch:
    """Fit and score configurations of one family on the folds, fitting each model once.

    The unit of work is one configuration fitted on one fold (:func:`fit_unit`): units are
    independent of each other (each reads only its fold's matrices), so they run side by
    side, on threads here or, given a runner, on a cluster.

    Args:
        family: Model family key.
        grid: The family's grid (an XGBoost grid over ``n_estimators`` is fitted at its
            largest value and read at the others, see :func:`predict_positive`).
        matrices: The encoded folds.
        rules: The config's ``training`` section.
        seed: Random seed.
        runner: Where the units run (``None``: in this process, on threads).
    """

    def __init__(
        self,
        family: str,
        grid: dict,
        matrices: list[FoldMatrices],
        rules,
        seed: int,
        runner: Runner | None = None,
    ):
        self.family = family
        self.matrices = matrices
        self.rules = rules
        self.seed = seed
        self.runner = runner
        self.most_trees = (
            max(grid["n_estimators"]) if family == "xgboost" and "n_estimators" in grid else None
        )
        self._models: dict[tuple[int, str], tuple] = {}
        self._done: dict[str, tuple[Trial, FoldPredictions]] = {}

    def _key(self, index: int, params: dict) -> tuple[int, str, dict]:
        fit_params = dict(params)
        if self.most_trees is not None and int(params["n_estimators"]) <= self.most_trees:
            fit_params["n_estimators"] = self.most_trees
        return index, repr(sorted(fit_params.items())), fit_params

    def fit_unit(self, index: int, fit_params: dict) -> tuple:
        """Fit one configuration on one fold's training sample: one unit of work.

        Args:
            index: The fold's position.
            fit_params: The hyperparameters to fit with.

        Returns:
            ``(model, loss curve or None, seconds)``.
        """
        return fit_unit(self.family, fit_params, self.matrices[index], self.rules, self.seed)

    def fit_units(self, units: list[tuple[dict, list[int]]]) -> None:
        """Fit every (configuration, fold) unit not fitted yet, side by side where it pays.

        Args:
            units: Configurations, each with the positions of the folds to fit it on.
        """
        missing: dict[tuple[int, str], dict] = {}
        for params, indices in units:
            for index in indices:
                _, key, fit_params = self._key(index, params)
                if (index, key) not in self._models:
                    missing[index, key] = fit_params
        if not missing:
            return
        if self.runner is not None:
            calls = [
                (fit_unit, (self.family, fit_params, self.matrices[index], self.rules, self.seed))
                for (index, _), fit_params in missing.items()
            ]
            self._models.update(zip(missing, self.runner.run(calls), strict=True))
            return
        # XGBoost uses every core by itself; the other families fit one unit per core
        # (their solvers release the GIL: 1.4-2x faster on 2 cores, same models).
        jobs = 1 if self.family == "xgboost" else min(len(missing), os.cpu_count() or 1)
        fitted = Parallel(n_jobs=max(jobs, 1), backend="threading")(
            delayed(self.fit_unit)(index, fit_params) for (index, _), fit_params in missing.items()
        )
        self._models.update(zip(missing, fitted, strict=True))

    def _train_rows(self, m: FoldMatrices) -> np.ndarray:
        """Positions of a fold's sample the model was fitted on (the network's exclude its stopping rows)."""
        if self.family != "mlp":
            return np.arange(len(m.y))
        return stopping_rows(m.y, self.rules.stopping_share, m.ordered, self.seed)[0]

    def run(self, params: dict, folds: int | None = None) -> tuple[Trial, FoldPredictions]:
        """Fit (or reuse) and score one configuration on the first ``folds`` folds.

        Args:
            params: The configuration.
            folds: Score on this many folds, in order (``None``: every fold).

        Returns:
            Its trial (scores per fold) and its fold predictions.
        """
        indices = list(range(len(self.matrices) if folds is None else folds))
        key = repr((sorted(params.items()), len(indices)))
        if key in self._done:
            return self._done[key]
        self.fit_units([(params, indices)])
        metric = self.rules.metric
        train, validation, proba, epochs, seconds = [], [], [], [], 0.0
        loss = None
        for index in indices:
            m = self.matrices[index]
            model, loss, fit_seconds = self._models[index, self._key(index, params)[1]]
            seconds += fit_seconds
            rows = self._train_rows(m)
            proba.append(predict_positive(self.family, model, params, m.X_val))
            fitted = predict_positive(self.family, model, params, m.X[rows])
            train.append(score(metric, m.y[rows], fitted))
            validation.append(score(metric, m.y_val, proba[-1]))
            if loss is not None:
                epochs.append(loss.best_epoch)
        trial = Trial(
            family=self.family,
            params=params,
            fold_train=train,
            fold_validation=validation,
            fit_seconds=round(seconds, 3),
            epochs=epochs or None,
            stopped=len(indices) < len(self.matrices),
        )
        chosen = [self.matrices[index] for index in indices]
        predictions = FoldPredictions(
            names=[m.name for m in chosen],
            positions=[m.positions for m in chosen],
            y=[m.y_val for m in chosen],
            proba=proba,
            train_scores=train,
            validation_scores=validation,
            fit_rows=[len(self._train_rows(m)) for m in chosen],
            epochs=epochs or None,
            loss_curve=loss,
        )
        self._done[key] = (trial, predictions)
        return self._done[key]

    def search(self, configs: list[dict], halving: float | None) -> list[Trial]:
        """Score configurations on the folds by successive halving.

        Every configuration is scored on the first half of the folds (rounded up); the best
        ``halving`` share of them by their mean there (at least one) goes on to every fold.
        The others stop: a configuration far behind on the first folds is not fitted on
        the rest. With one fold, or ``halving`` unset, every configuration gets every fold.

        Args:
            configs: The configurations, in a stable order.
            halving: Share of configurations kept after the first folds (``None``: all).

        Returns:
            One trial per configuration, in the given order (stopped ones marked).
        """
        total = len(self.matrices)
        if halving is None or total < 2 or len(configs) < 2:
            self.fit_units([(params, list(range(total))) for params in configs])
            return [self.run(params)[0] for params in configs]
        first = _first_folds(total)
        self.fit_units([(params, list(range(first))) for params in configs])
        early = [self.run(params, first)[0] for params in configs]
        keep = max(1, math.ceil(len(configs) * halving))
        # Stable: on a tie the earlier configuration goes on.
        order = sorted(range(len(configs)), key=lambda i: -early[i].validation_score)
        survivors = sorted(order[:keep])
        self.fit_units([(configs[i], list(range(total))) for i in survivors])
        return [
            self.run(configs[i])[0] if i in survivors else early[i] for i in range(len(configs))
        ]

    def learning_curve(self, params: dict) -> Curve:
        """Score a configuration fitted on growing parts of the last fold's training sample.

        Args:
            params: The configuration.

        Returns:
            Train and validation scores against training rows (the last point is the
            search's own fit).
        """
        m = self.matrices[-1]
        metric = self.rules.metric
        order = np.random.default_rng(self.seed + 1).permutation(m.fit_rows)
        sizes = sorted({max(200, m.fit_rows // 8), max(200, m.fit_rows // 3)})
        curve = Curve(x_label="training rows", x=[], train=[], validation=[])
        for n in [n for n in sizes if n < m.fit_rows]:
            rows = np.sort(order[:n])  # still in time order: the network stops on the latest
            model, _ = fit_estimator(
                self.family,
                params,
                m.X[rows],
                m.y[rows],
                seed=self.seed,
                metric=metric,
                max_epochs=self.rules.max_epochs,
                patience=self.rules.patience,
                stopping_share=self.rules.stopping_share,
                ordered=m.ordered,
            )
            curve.x.append(int(n))
            curve.train.append(score(metric, m.y[rows], model.predict_proba(m.X[rows])[:, 1]))
            curve.validation.append(score(metric, m.y_val, model.predict_proba(m.X_val)[:, 1]))
        trial, _ = self.run(params)
        curve.x.append(int(m.fit_rows))
        curve.train.append(trial.fold_train[-1])
        curve.validation.append(trial.fold_validation[-1])
        return curve


def predict_folds(
    family: str,
    params: dict,
    plan: EncodingPlan,
    development: pd.DataFrame,
    folds: list[Fold],
    config,
    seed: int,
    rows: int | None = None,
) -> FoldPredictions:
    """Fit one configuration on every fold as the search does, and return its predictions.

    Args:
        family: Model family key.
        params: Hyperparameters.
        plan: The encoding plan (its input columns are used).
        development: Development rows.
        folds: The folds.
        config: The dataset config.
        seed: Random seed.
        rows: Fit each fold on a sample of at most this many rows (default: the search's).

    Returns:
        The fold predictions (with the default ``rows``, same samples and encodings as the
        search's).
    """
    rules = config.training
    rows = rows or rules.models[family].search_rows or rules.search_rows
    matrices = encode_folds(
        development, folds, config, plan.input_columns, family != "xgboost", rows, seed
    )
    return FoldSearch(family, {}, matrices, rules, seed).run(params)[1]


class _SharedFolds:
    """The families' fold matrices: encoded when a family's search starts, dropped after.

    Families with the same encoding (scaling and search rows) share one set. A set is built
    by the first family to ask for it and let go of when the last one is done with it: on
    large data, a family waiting for a thread holds no matrices yet, and one refitting
    holds none any more.

    Args:
        build: Encodes the folds for ``(scale, rows)``.
        keys: Each family's ``(scale, rows)``.
    """

    def __init__(self, build, keys: dict[str, tuple[bool, int]]):
        self._build, self._keys = build, keys
        self._users = Counter(keys.values())
        self._built: dict[tuple[bool, int], list[FoldMatrices]] = {}
        self._locks = {key: threading.Lock() for key in self._users}
        self._lock = threading.Lock()

    def take(self, family: str) -> list[FoldMatrices]:
        """The family's fold matrices (encoded now if no family has asked for them yet)."""
        key = self._keys[family]
        with self._locks[key]:
            if key not in self._built:
                self._built[key] = self._build(*key)
            return self._built[key]

    def release(self, family: str) -> None:
        """The family is done with its matrices; the last user's release drops them."""
        key = self._keys[family]
        with self._lock:
            self._users[key] -= 1
            if not self._users[key]:
                self._built.pop(key, None)


def _train_family(
    family: str,
    search,
    shared: _SharedFolds,
    development: pd.DataFrame,
    config,
    plan: EncodingPlan,
    seed: int,
    log,
    runner: Runner | None = None,
) -> FamilyResult:
    """Search, refit, draw the curves of and judge one family (see :func:`train_models`).

    The family's fold matrices are encoded when it starts and let go of before its refit:
    on large data they would otherwise share the memory with the other families' and the
    refit's own.
    """
    rules = config.training
    matrices = shared.take(family)
    searcher = FoldSearch(family, search.grid, matrices, rules, seed, runner)
    configs = candidate_configs(search.grid, rules.search, rules.n_iter, seed)
    trials = searcher.search(configs, rules.halving)
    best = max((t for t in trials if not t.stopped), key=lambda t: t.validation_score)
    stopped = sum(t.stopped for t in trials)
    log(
        f"{family}: {len(trials)} configurations on {len(matrices)} folds"
        + (f" ({stopped} stopped after {_first_folds(len(matrices))})" if stopped else "")
        + f", best mean {rules.metric} {best.validation_score:.4f} (spread {best.spread:.4f}) "
        f"with {best.params}"
    )

    # Validation curve: vary one hyperparameter around the best configuration, on every fold.
    curve_values = search.grid[search.curve_param]
    curve_configs = [{**best.params, search.curve_param: v} for v in curve_values]
    # Its missing fits are independent units: submitted together (the same models).
    searcher.fit_units([(params, list(range(len(matrices)))) for params in curve_configs])
    curve_trials = [searcher.run(params)[0] for params in curve_configs]
    validation_curve = Curve(
        x_label=search.curve_param,
        x=[str(v) for v in curve_values],
        train=[t.train_score for t in curve_trials],
        validation=[t.validation_score for t in curve_trials],
    )
    learning_curve = searcher.learning_curve(best.params)
    predictions = searcher.run(best.params)[1]
    del matrices, searcher  # the fold matrices and fitted fold models: not needed any more
    shared.release(family)

    final = fit_final(family, best.params, plan, development, config, seed, predictions, runner)
    verdict = judge(
        best.train_score,
        best.validation_score,
        baseline_score(rules.metric, predictions.pooled_y),
        rules.max_gap,
        rules.min_lift,
        _metric_name(rules.metric),
    )
    log(
        f"{family}: refit on {final.fit_rows:,}"
        + (f" of {len(development):,}" if final.fit_rows < len(development) else "")
        + f" rows in {final.fit_seconds:.1f}s"
        + (" (xgboost.dask, on the cluster)" if final.on_cluster else "")
        + f", {verdict.label}, {final.calibration.evidence}"
    )
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
        loss_curve=predictions.loss_curve,
        fit_seconds=final.fit_seconds,
        feature_names=final.feature_names,
        folds=predictions,
        calibration=final.calibration,
        final_epochs=final.epochs,
        final_rows=final.fit_rows,
    )


def decide_calibration(folds: FoldPredictions, method: str, seed: int) -> Calibration:
    """Decide whether calibrating a model's probabilities helps, on its fold predictions only.

    With several folds the check runs forward in time: a map fitted on the earlier folds'
    predictions is scored on each following fold, as the final map (fitted on all folds) will
    be on the rows after them. With one fold, the map is cross-fitted in five parts of its
    validation rows. The probabilities are calibrated when the map lowers the held-out
    Brier score.

    Args:
        folds: The configuration's fold predictions.
        method: ``sigmoid`` or ``isotonic``.
        seed: Seed of the five parts (one fold only).

    Returns:
        The decision, its evidence and the map fitted on all fold predictions.
    """
    held_y, held_raw, held_calibrated = [], [], []
    if len(folds.proba) >= 2:
        for k in range(1, len(folds.proba)):
            mapping = ProbabilityMap(method).fit(
                np.concatenate(folds.proba[:k]), np.concatenate(folds.y[:k])
            )
            held_y.append(folds.y[k])
            held_raw.append(folds.proba[k])
            held_calibrated.append(mapping.transform(folds.proba[k]))
        check = (
            "fitted on the earlier folds and scored on each following one "
            f"({', '.join(folds.names[1:])})"
        )
    else:
        y, proba = folds.pooled_y, folds.pooled_proba
        parts = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
        for fit, held in parts.split(proba.reshape(-1, 1), y):
            mapping = ProbabilityMap(method).fit(proba[fit], y[fit])
            held_y.append(y[held])
            held_raw.append(proba[held])
            held_calibrated.append(mapping.transform(proba[held]))
        check = "cross-fitted in five parts of the validation rows"
    y = np.concatenate(held_y)
    raw = float(brier_score_loss(y, np.concatenate(held_raw)))
    calibrated = float(brier_score_loss(y, np.concatenate(held_calibrated)))
    return Calibration(
        method=method,
        applied=calibrated < raw,
        held_out_raw=raw,
        held_out_calibrated=calibrated,
        check=check,
        mapping=ProbabilityMap(method).fit(folds.pooled_proba, folds.pooled_y),
    )


def fit_on_split(
    family: str, params: dict, plan: EncodingPlan, split: Split, config, seed: int
) -> FittedModel:
    """Fit one configuration as training does: on every fold, then on the development rows.

    Its threshold and calibration come from the fold predictions; the test rows are not read.

    Args:
        family: Model family key.
        params: Hyperparameters.
        plan: Encoding plan (possibly restricted to selected features).
        split: The development rows with their folds.
        config: The dataset config.
        seed: Random seed.

    Returns:
        The fitted model.
    """
    folds = predict_folds(family, params, plan, split.train, split.folds, config, seed)
    return fit_final(family, params, plan, split.train, config, seed, folds)


def fit_final(
    family: str,
    params: dict,
    plan: EncodingPlan,
    development: pd.DataFrame,
    config,
    seed: int,
    folds: FoldPredictions,
    runner: Runner | None = None,
) -> FittedModel:
    """Refit one configuration on the development rows; calibrate and threshold it on the folds.

    On all of them, or on a fixed-seed sample of the family's ``refit_rows`` when there are
    more.

    The neural network cannot stop early here (every row is a training row): it runs the
    mean number of epochs its fold fits kept. XGBoost is refitted through ``xgboost.dask``
    on the runner's cluster when the rows exceed ``runner.xgboost_rows``
    (:func:`fit_xgboost_on_cluster`).

    Args:
        family: Model family key.
        params: Hyperparameters.
        plan: Encoding plan (possibly restricted to selected features).
        development: Development rows.
        config: The dataset config.
        seed: Random seed.
        folds: The configuration's fold predictions (see :func:`predict_folds`).
        runner: Where the search ran (``None``: in this process); only XGBoost's refit uses
            its cluster.

    Returns:
        The fitted model with its calibration, threshold and train/validation metrics.
    """
    rules = config.training
    start = time.perf_counter()
    search = rules.models.get(family)
    limit = search.refit_rows if search is not None else None
    trees = family == "xgboost"
    pre = build_preprocessor(plan, scale=not trees, seed=seed, float32=trees)
    sampled = limit is not None and len(development) > limit
    with one_encoding(limit if sampled else len(development)):  # see one_encoding
        development = columns_view(development, [*plan.input_columns, config.target.name])
        if sampled:  # copies the sample of these columns only
            keep = np.random.default_rng(seed).choice(len(development), size=limit, replace=False)
            development = development.iloc[np.sort(keep)]
        y = development[config.target.name].to_numpy()
        # fit_transform cross-fits the target encoder, so train scores are not inflated.
        X = pre.fit_transform(columns_view(development, plan.input_columns), y)
    epochs = max(1, int(round(np.mean(folds.epochs)))) if family == "mlp" else None
    on_cluster = (
        family == "xgboost"
        and runner is not None
        and runner.scheduler is not None
        and runner.xgboost_rows is not None
        and len(y) > runner.xgboost_rows
    )
    if on_cluster:
        model = fit_xgboost_on_cluster(runner.scheduler, params, X, y, seed)
    else:
        model, _ = fit_estimator(
            family,
            params,
            X,
            y,
            seed=seed,
            metric=rules.metric,
            max_epochs=rules.max_epochs,
            patience=rules.patience,
            epochs=epochs,
        )
    fit_seconds = round(time.perf_counter() - start, 3)
    calibration = decide_calibration(folds, rules.calibration, seed)
    served = CalibratedModel(model, calibration.mapping) if calibration.applied else model
    train_proba = served.predict_proba(X)[:, 1]
    pooled = folds.pooled_proba
    if calibration.applied:
        pooled = calibration.mapping.transform(pooled)
    threshold = choose_threshold(folds.pooled_y, pooled)
    return FittedModel(
        pipeline=Pipeline([("preprocess", pre), ("model", served)]),
        threshold=threshold,
        metrics={
            "train": classification_metrics(y, train_proba, threshold),
            "validation": classification_metrics(folds.pooled_y, pooled, threshold),
        },
        folds=folds,
        calibration=calibration,
        train_score=score(rules.metric, y, train_proba),
        validation_score=float(np.mean(folds.validation_scores)),
        fit_seconds=fit_seconds,
        feature_names=[str(n) for n in pre.get_feature_names_out()],
        epochs=epochs,
        on_cluster=on_cluster,
        fit_rows=len(y),
    )


def fit_xgboost_on_cluster(
    scheduler: str, params: dict, X: np.ndarray, y: np.ndarray, seed: int
) -> XGBClassifier:
    """Fit XGBoost on a Dask cluster (``xgboost.dask``), and return it as a plain classifier.

    The rows are cut into one block per worker; each worker builds its histograms on its
    block and the trees are agreed between them, so the fit's work (not the encoding, which
    ran here) is spread over the cluster. The result is an ordinary ``XGBClassifier`` (the
    booster loaded into the same estimator a local fit builds), so the served pipeline
    needs no cluster. Its trees can differ slightly from a local fit's: the histogram bins
    are sketched per block and merged.

    Args:
        scheduler: The Dask scheduler's address.
        params: Hyperparameters.
        X: Encoded development rows.
        y: Their labels.
        seed: Random seed.

    Returns:
        The fitted classifier.
    """
    import dask.array as da
    from distributed import Client
    from xgboost import dask as dxgb

    local = make_estimator("xgboost", params, seed)
    settings = {k: v for k, v in local.get_params().items() if k != "n_jobs"}
    # xgboost.dask looks the client up (distributed.get_client): this one, for this block only.
    with Client(scheduler, set_as_default=False) as client, client.as_current():
        workers = max(1, len(client.scheduler_info()["workers"]))
        block = math.ceil(len(y) / workers)
        model = dxgb.DaskXGBClassifier(**settings)
        model.client = client
        model.fit(da.from_array(X, chunks=(block, X.shape[1])), da.from_array(y, chunks=block))
        raw = model.get_booster().save_raw("json")
    local.load_model(bytearray(raw))
    return local


def raw_and_served(pipeline: Pipeline, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return a pipeline's uncalibrated and served probabilities of class 1.

    Args:
        pipeline: A final pipeline (with or without a calibration map).
        rows: Raw rows.

    Returns:
        ``(raw, served)``; equal when the pipeline is not calibrated.
    """
    served = pipeline.predict_proba(rows)[:, 1]
    if not isinstance(pipeline.named_steps["model"], CalibratedModel):
        return served, served
    X = pipeline.named_steps["preprocess"].transform(rows)
    return base_estimator(pipeline).predict_proba(X)[:, 1], served


def measure_calibration(y: np.ndarray, raw: np.ndarray, mapping: ProbabilityMap) -> TestCalibration:
    """Measure a model's calibration on test rows, with and without the fold-fitted map.

    Args:
        y: Test labels.
        raw: The model's uncalibrated probabilities.
        mapping: The map fitted on its fold predictions.

    Returns:
        Brier scores and reliability curves (ten bins of equal size).
    """
    calibrated = mapping.transform(raw)

    def curve(proba):
        observed, predicted = calibration_curve(y, proba, n_bins=10, strategy="quantile")
        return predicted.tolist(), observed.tolist()

    return TestCalibration(
        brier_raw=float(brier_score_loss(y, raw)),
        brier_calibrated=float(brier_score_loss(y, calibrated)),
        raw_curve=curve(raw),
        calibrated_curve=curve(calibrated),
    )


def evaluate_on_test(result: TrainingResult, test: pd.DataFrame) -> TrainingResult:
    """Score every family's final pipeline on the test split, once, after all choices.

    Args:
        result: The training result; its models and thresholds are not changed.
        test: Test rows (raw columns + target).

    Returns:
        The same result, with ``metrics["test"]`` and the test calibration filled in for
        every family.

    Raises:
        RuntimeError: If called twice on the same result.
    """
    if result.test_evaluated:
        raise RuntimeError("the test split has already been evaluated for this result")
    y_test = test[result.target].to_numpy()
    for family in result.families.values():
        raw, served = raw_and_served(family.pipeline, test)
        family.metrics["test"] = classification_metrics(y_test, served, family.threshold)
        family.calibration.test = measure_calibration(y_test, raw, family.calibration.mapping)
    result.test_evaluated = True
    return result


def trials_table(result: TrainingResult) -> pd.DataFrame:
    """Return every configuration tried, one row each, best first within each family.

    Args:
        result: The training result.

    Returns:
        Columns: family, one column per hyperparameter, the validation score of each fold
        (empty for the folds a stopped configuration did not reach), their mean and spread,
        the folds scored, the mean train score, fit seconds, epochs, chosen. Complete
        configurations come first, best first; then the stopped ones, best first.
    """
    rows = []
    for family in result.families.values():
        for trial in sorted(family.trials, key=lambda t: (t.stopped, -t.validation_score)):
            row = {"family": family.label}
            row.update({k: _plain(v) for k, v in trial.params.items()})
            scores = trial.fold_validation + [None] * (
                len(result.folds) - len(trial.fold_validation)
            )
            row.update(
                {
                    f"fold {name}": None if value is None else round(value, 4)
                    for (name, _), value in zip(result.folds, scores, strict=True)
                }
            )
            row.update(
                {
                    f"validation_{result.metric}": round(trial.validation_score, 4),
                    "validation_spread": round(trial.spread, 4),
                    "folds": f"{len(trial.fold_validation)} of {len(result.folds)}"
                    + (" (stopped)" if trial.stopped else ""),
                    f"train_{result.metric}": round(trial.train_score, 4),
                    "fit_seconds": trial.fit_seconds,
                    "epochs": None if trial.epochs is None else float(np.mean(trial.epochs)),
                    "chosen": trial.params == family.best_params,
                }
            )
            rows.append(row)
    return pd.DataFrame(rows)


def fold_table(result: TrainingResult) -> pd.DataFrame:
    """Return each family's chosen configuration's score on every fold.

    Args:
        result: The training result.

    Returns:
        One row per family: the fold scores, their mean, spread, lowest and highest.
    """
    rows = []
    for family in result.families.values():
        scores = family.folds.validation_scores
        row = {"family": family.label}
        row.update(
            {f"fold {n}": round(v, 4) for n, v in zip(family.folds.names, scores, strict=True)}
        )
        row.update(
            {
                "mean": round(float(np.mean(scores)), 4),
                "spread": round(float(np.std(scores)), 4),
                "lowest": round(float(np.min(scores)), 4),
                "highest": round(float(np.max(scores)), 4),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


#: Two families whose test scores differ by less than this are not told apart by the test
#: rows of one period (it is also the margin a challenger must win by, ``monitoring.margin``).
SELECTION_TOLERANCE = 0.005


@dataclass(frozen=True)
class SelectionOutcome:
    """What the fold scores predicted about the test rows, checked once they are scored.

    Attributes:
        rule: The selection rule, in one sentence.
        champion: The chosen family's key (best mean fold score).
        best_on_test: The family with the best test score.
        shortfall: Best test score minus the champion's (0 when the champion is best).
        fold_ranking: Family keys from the best to the worst mean fold score.
        test_ranking: Family keys from the best to the worst test score.
        tolerance: The shortfall under which the choice counts as the best on test.
        sentence: The outcome in one sentence, with its numbers (the reports print it).
    """

    rule: str
    champion: str
    best_on_test: str
    shortfall: float
    fold_ranking: list[str]
    test_ranking: list[str]
    tolerance: float
    sentence: str

    @property
    def holds(self) -> bool:
        """The champion is the best family on test, or within the tolerance of it."""
        return self.shortfall <= self.tolerance


def selection_outcome(result: TrainingResult) -> SelectionOutcome:
    """Compare the champion chosen on the folds with the families' test scores.

    Args:
        result: The training result, test rows scored.

    Returns:
        The outcome.

    Raises:
        RuntimeError: If the test rows have not been scored.
    """
    if not result.test_evaluated:
        raise RuntimeError("score the test rows (evaluate_on_test) before checking the selection")
    metric, name = result.metric, _metric_name(result.metric)
    families = result.families
    test = {key: f.metrics["test"][metric] for key, f in families.items()}
    fold = {key: f.verdict.validation_score for key, f in families.items()}
    fold_ranking = sorted(families, key=lambda k: -fold[k])
    test_ranking = sorted(families, key=lambda k: -test[k])
    champion, best = result.best_family, test_ranking[0]
    shortfall = max(0.0, test[best] - test[champion])
    rule = (
        f"the champion is the family whose chosen configuration has the best mean fold {name}; "
        "the test rows play no part in the choice"
    )
    label = families[champion].label
    predicted = ", ".join(f"{families[k].label} {fold[k]:.4f}" for k in fold_ranking)
    observed = ", ".join(f"{families[k].label} {test[k]:.4f}" for k in test_ranking)
    if champion == best:
        verdict = f"{label} is also the best on test"
    elif shortfall <= SELECTION_TOLERANCE:
        verdict = (
            f"{label} is {shortfall:.4f} below the best on test ({families[best].label}), "
            f"within {SELECTION_TOLERANCE}"
        )
    else:
        verdict = (
            f"{label} is {shortfall:.4f} below the best on test ({families[best].label}), "
            f"more than {SELECTION_TOLERANCE}: the folds misjudged this period"
        )
    same = "the same order" if fold_ranking == test_ranking else "a different order"
    sentence = (
        f"The fold scores ranked {predicted} (mean fold {name}); the test rows rank {observed} "
        f"({same}): {verdict}."
    )
    return SelectionOutcome(
        rule=rule,
        champion=champion,
        best_on_test=best,
        shortfall=shortfall,
        fold_ranking=fold_ranking,
        test_ranking=test_ranking,
        tolerance=SELECTION_TOLERANCE,
        sentence=sentence,
    )


def fold_test_table(result: TrainingResult) -> pd.DataFrame:
    """Return, per family, the mean fold score that chose it, its test score and their difference.

    Args:
        result: The training result, test rows scored.

    Returns:
        One row per family, in fold-ranking order: mean fold score, test score, test minus
        mean fold, rank on the folds and on test, champion.
    """
    metric = result.metric
    families = result.families
    test_order = sorted(families, key=lambda k: -families[k].metrics["test"][metric])
    rows = []
    for rank, key in enumerate(result.ranking, start=1):
        family = families[key]
        fold, test = family.verdict.validation_score, family.metrics["test"][metric]
        rows.append(
            {
                "family": family.label,
                f"mean_fold_{metric}": round(fold, 4),
                f"test_{metric}": round(test, 4),
                "test_minus_fold": round(test - fold, 4),
                "fold_rank": rank,
                "test_rank": test_order.index(key) + 1,
                "champion": key == result.best_family,
            }
        )
    return pd.DataFrame(rows)


def calibration_table(result: TrainingResult) -> pd.DataFrame:
    """Return each family's calibration decision and its effect on the folds and the test rows.

    Args:
        result: The training result (test rows scored).

    Returns:
        One row per family: method, applied, held-out Brier scores on the folds, test Brier
        scores without and with the map.
    """
    rows = []
    for family in result.families.values():
        c = family.calibration
        rows.append(
            {
                "family": family.label,
                "method": c.method,
                "calibrated": c.applied,
                "folds_brier_raw": round(c.held_out_raw, 5),
                "folds_brier_calibrated": round(c.held_out_calibrated, 5),
                "test_brier_raw": None if c.test is None else round(c.test.brier_raw, 5),
                "test_brier_calibrated": (
                    None if c.test is None else round(c.test.brier_calibrated, 5)
                ),
            }
        )
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
    coefficients = base_estimator(family.pipeline).coef_.ravel()
    table = pd.DataFrame({"feature": family.feature_names, "coefficient": coefficients})
    table = table.reindex(table["coefficient"].abs().sort_values(ascending=False).index)
    return table.head(top).reset_index(drop=True)


def _metric_name(metric: str) -> str:
    return {"roc_auc": "ROC-AUC", "average_precision": "average precision"}[metric]


def _plain(value):
    if isinstance(value, list | tuple):
        return str(tuple(value))
    return value
