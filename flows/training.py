"""Prefect tasks of the training stage: tune and test once, study the horizon, write the report.

Three cached steps (:mod:`flows.caching`): the training itself (keyed on the split, the
plan and the config sections it reads), the optional horizon study, and the report (keyed
on the results it draws), so that changing a report's code or the study's settings does
not retrain the models.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.caching import StepCache, current_key
from flows.cluster import Cluster, runner_for
from reports.training import TrainingOutputs, write_training_report
from tabular.datasets import Split
from tabular.features import EncodingPlan
from tabular.horizon import HorizonStudy, horizon_study
from tabular.training import (
    TrainingResult,
    evaluate_on_test,
    fold_table,
    metrics_table,
    train_models,
    trials_table,
)


# Where the units run is not part of a key: the same seed gives the same results anywhere.
@task(name="train", cache_policy=StepCache(step="train", ignore=("cluster",)))
def train_task(
    split: Split, config, plan: EncodingPlan, seed: int, cluster: Cluster | None = None
) -> TrainingResult:
    """Train the three families on the folds, then score the test rows once.

    Args:
        split: The development rows with their folds, and the test rows.
        config: The dataset config.
        plan: The encoding plan decided on the development rows.
        seed: Random seed.
        cluster: The Dask cluster the search's fits go to (``None``: this process).

    Returns:
        The training result, test rows scored.
    """
    logger = get_run_logger()
    with runner_for(cluster) as runner:
        result = train_models(
            split.train, split.folds, config, plan, seed, log=logger.info, runner=runner
        )
    # Every choice (configurations, family, thresholds, calibration) is made: now, and only
    # now, the test.
    evaluate_on_test(result, split.test)
    result.lineage = current_key() or ""
    return result


@task(name="horizon-study", cache_policy=StepCache(step="horizon", ignore=("cluster",)))
def horizon_task(
    raw: pd.DataFrame,
    config,
    result: TrainingResult,
    sample: int | None,
    seed: int,
    cluster: Cluster | None = None,
) -> HorizonStudy:
    """Refit the champion at every horizon of ``training.horizon_study`` (``--horizon-study``).

    Args:
        raw: The loaded rows.
        config: The dataset config.
        result: The training result (its champion and chosen configuration).
        sample: The run's ``--sample`` (the study draws the same rows).
        seed: Random seed.
        cluster: The Dask cluster the horizons' refits go to (``None``: this process).

    Returns:
        The study.
    """
    logger = get_run_logger()
    scores = {key: f.metrics["test"][result.metric] for key, f in result.families.items()}
    with runner_for(cluster) as runner:
        study = horizon_study(
            raw, config, result, scores, sample, seed, log=logger.info, runner=runner
        )
    study.lineage = current_key() or ""
    return study


@task(name="training-report", cache_policy=StepCache(step="training-report", ignore=("out_dir",)))
def training_report_task(
    result: TrainingResult, study: HorizonStudy | None, config, out_dir: Path
) -> TrainingOutputs:
    """Write the training report, its tables, figures and models, and publish a summary.

    Args:
        result: The training result, test rows scored.
        study: The horizon study, when it ran.
        config: The dataset config.
        out_dir: The run's ``training`` folder.

    Returns:
        The files written.
    """
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
    return outputs
