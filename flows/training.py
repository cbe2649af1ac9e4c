"""Prefect task of the training stage: tune, refit, judge, test once, study the horizon, report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from reports.training import TrainingOutputs, write_training_report
from tabular.datasets import Split
from tabular.features import EncodingPlan
from tabular.horizon import horizon_study
from tabular.training import (
    TrainingResult,
    evaluate_on_test,
    fold_table,
    metrics_table,
    train_models,
    trials_table,
)


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    split: Split,
    config,
    plan: EncodingPlan,
    seed: int,
    out_dir: Path,
    raw: pd.DataFrame | None = None,
    sample: int | None = None,
) -> tuple[TrainingResult, TrainingOutputs]:
    """Train the three families on the folds, score the test rows once, study the horizon.

    Args:
        split: The development rows with their folds, and the test rows.
        config: The dataset config.
        plan: The encoding plan decided on the development rows.
        seed: Random seed.
        out_dir: The run's ``training`` folder.
        raw: The loaded rows, for the horizon study (``None``: no study).
        sample: The run's ``--sample`` (the study draws the same rows).

    Returns:
        The training result and the files written.
    """
    logger = get_run_logger()
    result = train_models(split.train, split.folds, config, plan, seed, log=logger.info)
    # Every choice (configurations, family, thresholds, calibration) is made: now, and only
    # now, the test.
    evaluate_on_test(result, split.test)
    study = None
    if raw is not None:
        scores = {key: f.metrics["test"][result.metric] for key, f in result.families.items()}
        study = horizon_study(raw, config, result, scores, sample, seed, log=logger.info)
    outputs = write_training_report(result, out_dir, config, study)
    create_table_artifact(
        key="training-trials",
        table=trials_table(result)
        .astype(object)
        .where(lambda t: t.notna(), None)
        .to_dict("records"),
        description="Every configuration tried, with its score on every fold",
    )
    create_table_artifact(
        key="training-folds",
        table=fold_table(result).to_dict("records"),
        description="Each family's chosen configuration on every fold",
    )
    create_table_artifact(
        key="training-metrics",
        table=metrics_table(result).to_dict("records"),
        description="Metrics of each family's final model on train, pooled folds and test",
    )
    create_markdown_artifact(key="training-summary", markdown=outputs.markdown)
    return result, outputs
