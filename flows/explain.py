"""Prefect task of the SHAP stage: explain, select, retrain, compare, and save the served models."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from bentos.registry import ROLES, model_name, save_served_model
from flows.caching import StepCache
from flows.cluster import Cluster, runner_for
from monitoring.reference import (
    ReferenceInfo,
    build_reference,
    importance_metadata,
    save_reference,
)
from reports.explain import ExplainOutputs, write_explain_report
from tabular.contract import build_contract
from tabular.datasets import Split
from tabular.explain import (
    ExplainStage,
    explain_and_select,
    sample_rows_for_shap,
    served_importance,
)
from tabular.features import EncodingPlan
from tabular.training import TrainingResult


@task(
    name="explain",
    cache_policy=StepCache(
        step="explain", ignore=("out_dir", "run_id", "reference_path", "cluster")
    ),
)
def explain_task(
    result: TrainingResult,
    split: Split,
    config,
    plan: EncodingPlan,
    seed: int,
    out_dir: Path,
    run_id: str,
    data_hash: str,
    reference_path: Path,
    cluster: Cluster | None = None,
) -> tuple[ExplainStage, ExplainOutputs, list[str], ReferenceInfo]:
    """Run the SHAP stage, write its report, save the monitoring reference and the two models.

    Args:
        result: The training result.
        split: The train/validation/test split.
        config: The dataset config.
        plan: The full encoding plan.
        seed: Random seed.
        out_dir: The run's ``explain`` folder.
        run_id: The pipeline run id (model metadata).
        data_hash: Hash of the prepared data (model metadata).
        reference_path: Where to save the monitoring reference (Parquet), before the models,
            so that their metadata names it.
        cluster: The Dask cluster the SHAP runs and refits go to (``None``: this process).

    Returns:
        The stage outcome, the files written, the saved model tags and the reference.
    """
    logger = get_run_logger()
    with runner_for(cluster) as runner:
        stage = explain_and_select(result, split, config, plan, seed, runner=runner)
    outputs = write_explain_report(
        [stage.shap[key] for key in stage.served],
        stage.selection,
        [stage.comparisons[key] for key in stage.served],
        out_dir,
        config,
    )
    # The pipelines take their columns in the plan's order; the contract lists them the same way.
    columns = plan.restrict(stage.selection.columns).input_columns
    pipelines = {
        role: stage.comparisons[key].selected.pipeline
        for role, key in zip(ROLES, stage.served, strict=True)
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
        reference_path,
    )
    logger.info("saved the monitoring reference (%d rows) to %s", reference.rows, reference.path)
    # Each served model's own mean |SHAP| per input: the drift monitor weighs each column's
    # drift by it (monitoring.drift), on the rows the selection was explained on.
    background = sample_rows_for_shap(split.train, config.explain.background_rows, seed)
    importance = {
        role: served_importance(
            pipelines[role], key, plan.restrict(columns), split.validation, background, config, seed
        )
        for role, key in zip(ROLES, stage.served, strict=True)
    }
    tags = []
    for role, key in zip(ROLES, stage.served, strict=True):
        comparison = stage.comparisons[key]
        table = comparison.table[comparison.table["model"] == "selected features"]
        metrics = {
            row["split"]: {k: v for k, v in row.items() if k not in ("model", "split")}
            for row in table.to_dict("records")
        }
        saved = save_served_model(
            model_name(config.name, role),
            comparison.selected.pipeline,
            family=key,
            label=comparison.label,
            role=role,
            contract=build_contract(config, split.train, comparison.selected.pipeline, columns),
            threshold=comparison.selected.threshold,
            metrics=metrics,
            config=config,
            run_id=run_id,
            data_hash=data_hash,
            params=result.families[key].best_params,
            reference={**reference.metadata(), **importance_metadata(importance[role])},
        )
        tags.append(str(saved.tag))
        logger.info("saved %s (%s) to the BentoML model store", saved.tag, comparison.label)
    for key in stage.served:
        create_table_artifact(
            key=f"explain-comparison-{key}",
            table=stage.comparisons[key].table.to_dict("records"),
            description=f"{stage.comparisons[key].label}: all vs selected features",
        )
    create_markdown_artifact(
        key="explain-summary",
        markdown=outputs.markdown + "\n\nSaved models: " + ", ".join(f"`{t}`" for t in tags),
    )
    return stage, outputs, tags, reference
