"""The challenger: the champion's inputs, retrained on every labelled row before the window.

:func:`train_challenger` is what the monitor's retraining runs (the ``challenger-training``
flow wraps it in Prefect tasks): the training stage of the pipeline, on the rows dated
before the judged window, with the selection on rolling folds whose last one ends where
the window starts (:func:`monitoring.champion.retraining_plan`), then each served family's
final refit on all those rows, its own mean |SHAP| and the reference, saved to the BentoML
model store with the same metadata as a pipeline run's models. It does only what a
challenger needs: no EDA, no horizon study, no report, no import into the store (the rows
are the dataset's, already stored by the run that imported them), no test part (the
window is the test, judged by :mod:`monitoring.champion`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tabular.errors import DatasetError

if TYPE_CHECKING:
    import pandas as pd

    from tabular.config import DatasetConfig
    from tabular.datasets import Split
    from tabular.training import TrainingResult


@dataclass(frozen=True)
class FinalFit:
    """The rows the challenger's final models were fitted on.

    Attributes:
        rows: How many.
        date_from: The earliest date among them (``None`` without a date column).
        date_to: The latest.
        last_fold: The last fold's validation period, as the split names it (the period
            just before the window, for a time split).
    """

    rows: int
    date_from: dt.datetime | None
    date_to: dt.datetime | None
    last_fold: str


@dataclass
class Challenger:
    """A trained challenger.

    Attributes:
        tags: Model-store tags, primary first.
        families: Family keys, primary first.
        inputs: The input columns (the champion's).
        split: The split's description.
        final_fit: The rows of the final fit.
        importance: Mean |SHAP| per input, by role.
        reference_sha256: The SHA-256 of its saved reference.
        reference_rows: Rows in the reference.
    """

    tags: list[str]
    families: list[str]
    inputs: list[str]
    split: str
    final_fit: FinalFit
    importance: dict[str, dict[str, float]]
    reference_sha256: str
    reference_rows: int


def usable_folds(data: pd.DataFrame, config: DatasetConfig) -> DatasetConfig:
    """Drop the fold starts that no row precedes (a fold must have rows to fit on).

    Args:
        data: The rows before the window.
        config: The run's config (a time split with ``folds``).

    Returns:
        The config with the usable fold starts.

    Raises:
        DatasetError: If no fold has rows both to fit on and to score on.
    """
    import pandas as pd

    split = config.split
    if split.method != "time" or config.date_column is None:
        return config
    dates = data[config.date_column]
    bounds = [pd.Timestamp(s) for s in split.fold_starts] + [pd.Timestamp(split.test_start)]
    kept = [
        start.date().isoformat()
        for start, end in zip(bounds, bounds[1:], strict=False)
        if (dates < start).any() and ((dates >= start) & (dates < end)).any()
    ]
    if not kept:
        raise DatasetError(
            f"no retraining fold has rows to fit on and to score on before {split.test_start}: "
            f"the data holds {len(data):,} rows dated {dates.min()} to {dates.max()}"
        )
    return config.with_overrides({"split": {"folds": kept, "validation_start": None}})


def describe_split(split: Split, config: DatasetConfig) -> str:
    """Say how the challenger's rows were split: folds, the final fit, and no test part.

    Args:
        split: The challenger's split.
        config: The run's config.

    Returns:
        One sentence (the split's own description for a random split).
    """
    rule = config.split
    if rule.method != "time":
        return split.description
    starts = ", ".join(str(start) for start in rule.fold_starts)
    return (
        f"chronological on '{config.date_column}': {len(split.folds)} rolling-origin folds "
        f"validating from {starts} (each to the next, the last to {rule.test_start}), each "
        f"fitted on every row before it; the final models fitted on every row before "
        f"{rule.test_start}, where the judged window starts (no test part: the window is "
        "the test)"
    )


def final_fit(split: Split, config: DatasetConfig) -> FinalFit:
    """Describe the development rows, on which every final model is refitted.

    Args:
        split: The challenger's split.
        config: The run's config.

    Returns:
        Their count and date range, and the last fold.
    """
    date = config.date_column
    dates = split.train[date] if date else None
    return FinalFit(
        rows=len(split.train),
        date_from=None if dates is None else dates.min().to_pydatetime(),
        date_to=None if dates is None else dates.max().to_pydatetime(),
        last_fold=split.folds[-1].description,
    )


def save_challenger(
    result: TrainingResult,
    split: Split,
    config: DatasetConfig,
    plan,
    *,
    seed: int,
    run_id: str,
    run_dir: Path,
    data_hash: str,
) -> Challenger:
    """Save the two best families' final models, their importance and their reference.

    Args:
        result: The training result (final models fitted on every development row).
        split: The split (its last fold's validation rows are the ones explained).
        config: The run's config.
        plan: The encoding plan.
        seed: Random seed.
        run_id: The run's id (model metadata).
        run_dir: The run folder (the reference goes there).
        data_hash: Hash of the rows used.

    Returns:
        The challenger.
    """
    from bentos.registry import ROLES, model_name, save_served_model
    from monitoring.reference import (
        REFERENCE_FILE,
        build_reference,
        importance_metadata,
        save_reference,
    )
    from tabular.contract import build_contract
    from tabular.explain import sample_rows_for_shap, served_importance

    served = result.ranking[:2]
    if len(served) < 2:
        raise DatasetError(
            f"the challenger needs two model families (primary and secondary); only {served} "
            "is enabled in 'training.models'"
        )
    columns = plan.input_columns
    pipelines = {
        role: result.families[key].pipeline for role, key in zip(ROLES, served, strict=True)
    }
    background = sample_rows_for_shap(split.train, config.explain.background_rows, seed)
    importance = {
        role: served_importance(
            pipelines[role], key, plan, split.validation, background, config, seed
        )
        for role, key in zip(ROLES, served, strict=True)
    }
    reference = save_reference(
        build_reference(
            split.train,
            columns,
            config.target.name,
            pipelines,
            max_rows=config.monitoring.reference_rows,
            seed=seed,
        ),
        run_dir / REFERENCE_FILE,
    )
    tags = []
    for role, key in zip(ROLES, served, strict=True):
        family = result.families[key]
        saved = save_served_model(
            model_name(config.name, role),
            family.pipeline,
            family=key,
            label=family.label,
            role=role,
            contract=build_contract(config, split.train, family.pipeline, columns),
            threshold=family.threshold,
            metrics=family.metrics,
            config=config,
            run_id=run_id,
            data_hash=data_hash,
            params=family.best_params,
            reference={**reference.metadata(), **importance_metadata(importance[role])},
        )
        tags.append(str(saved.tag))
    return Challenger(
        tags=tags,
        families=list(served),
        inputs=list(columns),
        split=describe_split(split, config),
        final_fit=final_fit(split, config),
        importance=importance,
        reference_sha256=reference.sha256,
        reference_rows=reference.rows,
    )


@dataclass
class FittedChallenger:
    """A challenger fitted but not yet saved.

    Attributes:
        result: The training result (every family's final model).
        split: Its split (no test part).
        plan: Its encoding plan.
        config: The config it was trained with (the usable folds).
    """

    result: TrainingResult
    split: Split
    plan: object
    config: DatasetConfig


def fit_challenger(
    data: pd.DataFrame, config: DatasetConfig, *, seed: int, log: Callable[[str], None] = print
) -> FittedChallenger:
    """Choose and fit the challenger's models on the rows before the window.

    Args:
        data: The prepared rows dated before the window (and validated).
        config: The run's config (:func:`monitoring.champion.retraining_plan`'s overrides
            applied: the champion's inputs, the rolling folds ending at the window).
        seed: Random seed.
        log: Receives progress lines.

    Returns:
        The fitted families, the split, the plan and the config.
    """
    from tabular.datasets import split_data
    from tabular.features import plan_encoding
    from tabular.training import train_models

    config = usable_folds(data, config)
    split = split_data(data, config, seed, held_out=False)
    plan = plan_encoding(split.train, config)
    result = train_models(split.train, split.folds, config, plan, seed, log=log)
    return FittedChallenger(result=result, split=split, plan=plan, config=config)


def train_challenger(
    data: pd.DataFrame,
    config: DatasetConfig,
    *,
    seed: int,
    run_id: str,
    run_dir: Path,
    data_hash: str,
    log: Callable[[str], None] = print,
) -> Challenger:
    """Fit a challenger on the rows before the window and save it (:func:`fit_challenger`).

    Args:
        data: The prepared rows dated before the window (and validated).
        config: The run's config (the retraining plan's overrides applied).
        seed: Random seed.
        run_id: The run's id.
        run_dir: The run folder.
        data_hash: Hash of ``data``.
        log: Receives progress lines.

    Returns:
        The challenger, saved to the model store.
    """
    fitted = fit_challenger(data, config, seed=seed, log=log)
    return save_challenger(
        fitted.result,
        fitted.split,
        fitted.config,
        fitted.plan,
        seed=seed,
        run_id=run_id,
        run_dir=run_dir,
        data_hash=data_hash,
    )
