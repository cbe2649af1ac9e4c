"""Prefect task of the training stage: tune, refit, judge, test once, and publish the report."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tabular.datasets import Split
from tabular.features import EncodingPlan
from tabular.training import (
    TrainingResult,
    evaluate_on_test,
    metrics_table,
    train_models,
    trials_table,
)
from tabular.training_report import TrainingOutputs, write_training_report


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    split: Split, config, plan: EncodingPlan, seed: int, out_dir: Path
) -> tuple[TrainingResult, TrainingOutputs]:
    """Train the three families on train/validation, then score the test rows once.

    Args:
        split: The train/validation/test split.
        config: The dataset config.
        plan: The encoding plan decided on the training rows.
        seed: Random seed.
        out_dir: The run's ``training`` folder.

    Returns:
        The training result and the files written.
    """
    logger = get_run_logger()
    result = train_models(split.train, split.validation, config, plan, seed, log=logger.info)
    # Every choice (configurations, family, thresholds) is made: now, and only now, the test.
    evaluate_on_test(result, split.test)
    outputs = write_training_report(result, out_dir, config)
    create_table_artifact(
        key="training-trials",
        table=trials_table(result)
        .astype(object)
        .where(lambda t: t.notna(), None)
        .to_dict("records"),
        description="Every configuration tried, with train and validation scores",
    )
    create_table_artifact(
        key="training-metrics",
        table=metrics_table(result).to_dict("records"),
        description="Metrics of each family's best model on train, validation and test",
    )
    create_markdown_artifact(key="training-summary", markdown=outputs.markdown)
    return result, outputs
