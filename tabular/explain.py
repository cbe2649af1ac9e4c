"""SHAP importance at the level of the original columns, feature selection, and retraining.

* XGBoost is explained exactly with ``shap.TreeExplainer`` (values in log-odds, adding up
  with the base value to the model's margin); the neural network and the linear model with
  a permutation explainer on a small background sample (values in probability).
* SHAP values add up, so the values of the encoded columns that come from one original
  column (its one-hot levels, its missing-value flag, its calendar parts) are summed into
  one value per original column: a user reads ``carrier``, not ``onehot__carrier_UA``.
* The rows explained are the last fold's validation rows (the period just before the test
  one); only development rows are used to choose and refit: the test rows are read once, for
  the final comparison table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd

from tabular.datasets import Split
from tabular.features import EncodingPlan, base_estimator, source_column
from tabular.runner import Runner, run_calls
from tabular.training import (
    FamilyResult,
    FittedModel,
    classification_metrics,
    fit_on_split,
    one_blas_thread,
)


@dataclass
class ShapResult:
    """SHAP values of one model, per original column.

    Attributes:
        family: Family key.
        label: Human name of the model.
        values: One row per explained row, one column per original input column.
        data: The explained rows' raw input values.
        base_value: Expected model output over the background.
        output: ``log-odds`` (tree explainer) or ``probability`` (permutation explainer).
        explainer: Name of the SHAP explainer used.
        encoded_values: SHAP values per encoded column (before summing).
        encoded_names: Encoded column names.
        seconds: Wall time of the explanation.
    """

    family: str
    label: str
    values: pd.DataFrame
    data: pd.DataFrame
    base_value: float
    output: str
    explainer: str
    encoded_values: np.ndarray
    encoded_names: list[str]
    seconds: float

    @property
    def importance(self) -> pd.Series:
        """Mean |SHAP| per original column, largest first."""
        return self.values.abs().mean().sort_values(ascending=False)


@dataclass
class Selection:
    """The columns kept by the selection rule.

    Attributes:
        columns: Kept input columns, most important first.
        dropped: Input columns left out.
        rule: The rule, in plain English.
        coverage: Share of total mean |SHAP| covered by the kept columns.
        source: Which model's importance decided.
    """

    columns: list[str]
    dropped: list[str]
    rule: str
    coverage: float
    source: str


@dataclass
class Comparison:
    """A model refitted on the selected columns, next to its full-feature version.

    Attributes:
        family: Family key.
        label: Human name.
        full: The full-feature model (pipeline, threshold, metrics).
        selected: The selected-feature model (same hyperparameters).
        table: Metrics side by side on validation (the pooled fold predictions) and test,
            plus cost figures.
    """

    family: str
    label: str
    full: FamilyResult
    selected: FittedModel
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def group_by_source(values: np.ndarray, names: list[str], plan: EncodingPlan) -> pd.DataFrame:
    """Sum SHAP values of encoded columns into their original columns.

    Args:
        values: SHAP values, one column per encoded feature.
        names: Encoded feature names (``ColumnTransformer.get_feature_names_out()``).
        plan: The plan the preprocessor was built from.

    Returns:
        One column per original input column, in the plan's input order.
    """
    sources = [source_column(name, plan) for name in names]
    frame = pd.DataFrame(values, columns=names)
    grouped = frame.T.groupby(sources, sort=False).sum().T
    return grouped[[c for c in plan.input_columns if c in grouped.columns]]


def explain(
    family: FamilyResult,
    plan: EncodingPlan,
    rows: pd.DataFrame,
    background: pd.DataFrame,
    seed: int,
) -> ShapResult:
    """Compute SHAP values of a family's final pipeline on some (validation) rows.

    Args:
        family: The trained family (its pipeline's preprocessing is reused).
        plan: The encoding plan the pipeline was built from.
        rows: Raw rows to explain.
        background: Raw rows standing for "typical" inputs (permutation explainer only).
        seed: Random seed of the permutation explainer.

    Returns:
        The SHAP values per original column.
    """
    return explain_pipeline(
        family.pipeline, family.family, family.label, plan, rows, background, seed
    )


def explain_pipeline(
    pipeline,
    family: str,
    label: str,
    plan: EncodingPlan,
    rows: pd.DataFrame,
    background: pd.DataFrame,
    seed: int,
) -> ShapResult:
    """Compute SHAP values of a fitted pipeline (e.g. a served model) on some rows.

    Args:
        pipeline: The fitted pipeline (``preprocess`` then ``model`` steps).
        family: Its model family key (``xgboost`` is explained exactly).
        label: Human name of the model.
        plan: The encoding plan the pipeline was built from.
        rows: Raw rows to explain.
        background: Raw rows standing for "typical" inputs (permutation explainer only).
        seed: Random seed of the permutation explainer.

    Returns:
        The SHAP values per original column.
    """
    import shap

    start = time.perf_counter()
    preprocess = pipeline.named_steps["preprocess"]
    model = pipeline.named_steps["model"]  # the served probability, calibrated or not
    X = np.asarray(preprocess.transform(rows[plan.input_columns]), dtype=float)
    names = [str(n) for n in preprocess.get_feature_names_out()]
    if family == "xgboost":
        # Trees are explained in their own log-odds, before any calibration map.
        explainer = shap.TreeExplainer(base_estimator(pipeline))
        explanation = explainer(X)
        output, kind = "log-odds", "TreeExplainer"
    else:
        X_background = np.asarray(preprocess.transform(background[plan.input_columns]), dtype=float)

        def positive_proba(matrix: np.ndarray) -> np.ndarray:
            return model.predict_proba(matrix)[:, 1]

        masker = shap.maskers.Independent(X_background, max_samples=len(X_background))
        explainer = shap.PermutationExplainer(positive_proba, masker, seed=seed)
        # 2·features + 1 evaluations per row is the minimum for one full permutation.
        explanation = explainer(X, max_evals=2 * X.shape[1] + 1, silent=True)
        output, kind = "probability", "PermutationExplainer"
    encoded = np.asarray(explanation.values, dtype=float)
    base = float(np.ravel(explanation.base_values)[0])
    return ShapResult(
        family=family,
        label=label,
        values=group_by_source(encoded, names, plan),
        data=rows[plan.input_columns].reset_index(drop=True),
        base_value=base,
        output=output,
        explainer=kind,
        encoded_values=encoded,
        encoded_names=names,
        seconds=round(time.perf_counter() - start, 3),
    )


def select_features(shap_result: ShapResult, config) -> Selection:
    """Choose the input columns to keep from a model's SHAP importance.

    Rule (from ``config.explain``): the ``top_k`` most important columns when set;
    otherwise the smallest set of most important columns whose mean |SHAP| covers
    ``coverage`` of the total; never fewer than ``min_features``.

    Args:
        shap_result: SHAP values of the deciding model (computed on validation rows).
        config: The dataset config.

    Returns:
        The selection.
    """
    rules = config.explain
    importance = shap_result.importance
    shares = importance / importance.sum()
    if rules.top_k is not None:
        keep = min(rules.top_k, len(importance))
        rule = f"the {rules.top_k} columns with the largest mean |SHAP|"
    else:
        keep = int(np.searchsorted(shares.cumsum().to_numpy(), rules.coverage - 1e-12) + 1)
        rule = (
            f"the fewest columns, by mean |SHAP| of {shap_result.label}, that cover "
            f"{rules.coverage:.0%} of the total"
        )
    keep = min(max(keep, rules.min_features), len(importance))
    columns = list(importance.index[:keep])
    return Selection(
        columns=columns,
        dropped=list(importance.index[keep:]),
        rule=rule + f" (at least {rules.min_features})",
        coverage=float(shares.iloc[:keep].sum()),
        source=shap_result.family,
    )


def retrain_selected(
    family: FamilyResult,
    plan: EncodingPlan,
    selection: Selection,
    split: Split,
    config,
    seed: int,
) -> FittedModel:
    """Refit a family's best configuration on the selected columns only, as training does.

    The configuration is fitted on every fold (its threshold and calibration come from
    those predictions), then on all development rows (or a sample of ``refit_rows``).

    Args:
        family: The trained family (its best hyperparameters are reused).
        plan: The full encoding plan.
        selection: The kept columns.
        split: The development rows with their folds (the test rows are not read).
        config: The dataset config.
        seed: Random seed.

    Returns:
        The refitted model.
    """
    restricted = plan.restrict(selection.columns)
    return fit_on_split(family.family, family.best_params, restricted, split, config, seed)


def compare(
    full: FamilyResult,
    selected: FittedModel,
    test: pd.DataFrame,
    target: str,
) -> Comparison:
    """Put the full-feature and selected-feature models side by side.

    Args:
        full: The full-feature family.
        selected: The same family refitted on the selected columns.
        test: Test rows (read once, for this final table).
        target: Target column name.

    Returns:
        The comparison with its table: accuracy, precision, recall, F1, ROC-AUC, average
        precision and the confusion matrix on validation (the pooled fold predictions, at
        each model's threshold) and test, then fit seconds, prediction milliseconds per
        1,000 rows, model size and input column count.
    """
    rows = []
    for name, model in (("all features", full), ("selected features", selected)):
        proba = model.pipeline.predict_proba(test)[:, 1]
        test_metrics = classification_metrics(test[target].to_numpy(), proba, model.threshold)
        rows.append({"model": name, "split": "validation", **model.metrics["validation"]})
        rows.append({"model": name, "split": "test", **test_metrics})
        cost = {
            "fit_seconds": model.fit_seconds,
            "predict_ms_per_1000": predict_ms_per_1000(model.pipeline, test),
            "model_kb": model_size_kb(model.pipeline),
            "input_columns": len(model.pipeline.named_steps["preprocess"].feature_names_in_),
        }
        for row in rows[-2:]:
            row.update(cost)
    table = pd.DataFrame(rows)
    return Comparison(
        family=full.family, label=full.label, full=full, selected=selected, table=table
    )


def predict_ms_per_1000(model, rows: pd.DataFrame, repeats: int = 3) -> float:
    """Measure prediction time per 1,000 rows (best of a few batches of 1,000).

    Args:
        model: A fitted pipeline.
        rows: Rows to predict (the first 1,000 are used).
        repeats: Batches timed; the fastest counts.

    Returns:
        Milliseconds per 1,000 rows.
    """
    batch = rows.iloc[:1000]
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_proba(batch)
        best = min(best, time.perf_counter() - start)
    return round(best * 1000 * 1000 / len(batch), 2)


def model_size_kb(model) -> float:
    """Return the size of a pickled model in kilobytes.

    Args:
        model: Any picklable object.

    Returns:
        Size in KB.
    """
    import io

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return round(len(buffer.getvalue()) / 1024, 1)


def sample_rows_for_shap(validation: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Return a fixed-seed sample of validation rows (all rows when there are fewer).

    Args:
        validation: Validation rows.
        n: Rows wanted.
        seed: Random seed.

    Returns:
        The sample.
    """
    if len(validation) <= n:
        return validation
    return validation.sample(n=n, random_state=seed)


@dataclass
class ExplainStage:
    """Outcome of the SHAP and retraining stage.

    Attributes:
        served: Family keys of the two served models, best first.
        shap: SHAP values per served family.
        selection: The selected columns (decided by the best model's SHAP values).
        comparisons: Full vs selected-feature models, per served family.
        seconds: Wall time of the SHAP computations.
    """

    served: list[str]
    shap: dict[str, ShapResult]
    selection: Selection
    comparisons: dict[str, Comparison]
    seconds: float


def explain_and_select(
    result,
    split: Split,
    config,
    plan: EncodingPlan,
    seed: int,
    runner: Runner | None = None,
) -> ExplainStage:
    """Explain the two served models, select columns, refit both on them, and compare.

    The champion (best mean fold score) decides the selection, and both served models (the
    champion and the runner-up) are refitted on the same columns, so the service has one
    input schema.

    Args:
        result: The :class:`tabular.training.TrainingResult`.
        split: The split: development rows and folds (explained, refitted), test rows (only
            for the final comparison table).
        config: The dataset config.
        plan: The full encoding plan.
        seed: Random seed.
        runner: Where the SHAP runs and the refits run (``None``: in this process, two at a
            time on threads); the same seed gives the same selection with any runner.

    Returns:
        The stage's outcome.
    """
    rules = config.explain
    served = result.ranking[:2]
    background = sample_rows_for_shap(split.train, rules.background_rows, seed)

    def shap_call(key: str) -> tuple:
        n = rules.tree_rows if key == "xgboost" else rules.sample_rows
        return explain_sample, (result.families[key], plan, split.validation, n, background, seed)

    def refit_call(key: str, selection: Selection) -> tuple:
        return retrain_selected, (result.families[key], plan, selection, split, config, seed)

    # Small matrix products: see tabular.training.one_blas_thread. The champion's SHAP values
    # decide the selection; then the other SHAP values and the two refits are independent
    # units, run two at a time on threads (as the training's families are), or on the
    # runner's cluster. The comparison, which times predictions, runs alone afterwards.
    with one_blas_thread():
        (champion,) = run_calls([shap_call(served[0])], runner)
        shap_results = {served[0]: champion}
        selection = select_features(champion, config)
        calls = [refit_call(key, selection) for key in served]
        done = run_calls(calls + [shap_call(key) for key in served[1:]], runner)
        refitted = dict(zip(served, done[: len(served)], strict=True))
        shap_results.update(zip(served[1:], done[len(served) :], strict=True))
        comparisons = {
            key: compare(result.families[key], refitted[key], split.test, config.target.name)
            for key in served
        }
    return ExplainStage(
        served=served,
        shap=shap_results,
        selection=selection,
        comparisons=comparisons,
        seconds=round(sum(r.seconds for r in shap_results.values()), 3),
    )


def explain_sample(
    family: FamilyResult,
    plan: EncodingPlan,
    rows: pd.DataFrame,
    n: int,
    background: pd.DataFrame,
    seed: int,
) -> ShapResult:
    """Explain a family's model on a fixed-seed sample of some rows: one SHAP run.

    Args:
        family: The family's training result.
        plan: The full encoding plan.
        rows: The rows to sample from (the last fold's validation rows).
        n: Rows to explain.
        background: Background rows of the permutation explainer.
        seed: Random seed.

    Returns:
        Its SHAP values.
    """
    return explain(family, plan, sample_rows_for_shap(rows, n, seed), background, seed)


def served_importance(
    pipeline,
    family: str,
    plan: EncodingPlan,
    rows: pd.DataFrame,
    background: pd.DataFrame,
    config,
    seed: int,
) -> dict[str, float]:
    """Mean |SHAP| per input column of a served model, for the drift monitor's weights.

    The served model is explained itself (not its full-feature parent): its importance is
    spread over its own inputs. As in :func:`explain_and_select`, XGBoost is explained on
    ``explain.tree_rows`` rows, the other families on ``explain.sample_rows``.

    Args:
        pipeline: The served pipeline.
        family: Its family key.
        plan: The encoding plan restricted to its inputs.
        rows: Development rows to explain (a fixed-seed sample is drawn).
        background: Background rows of the permutation explainer.
        config: The dataset config.
        seed: Random seed.

    Returns:
        Mean |SHAP| per input column, in the plan's order.
    """
    rules = config.explain
    n = rules.tree_rows if family == "xgboost" else rules.sample_rows
    with one_blas_thread():
        result = explain_pipeline(
            pipeline, family, family, plan, sample_rows_for_shap(rows, n, seed), background, seed
        )
    mean = result.values.abs().mean()
    return {column: float(mean.get(column, 0.0)) for column in plan.input_columns}
