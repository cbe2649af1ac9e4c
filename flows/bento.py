"""Prefect task of the last pipeline step: build the Bento of the prediction service."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from bentos.build import build_bento
from flows.caching import StepCache


@task(name="build-bento", cache_policy=StepCache(step="bento"))
def build_bento_task(dataset: str, served_models: list[str]) -> str:
    """Build the Bento serving the two models just saved, and publish its tag.

    Args:
        dataset: The dataset name.
        served_models: Tags of the primary and secondary models, in that order.

    Returns:
        The Bento tag.
    """
    primary, secondary = served_models
    tag = build_bento(dataset, primary, secondary)
    get_run_logger().info("built Bento %s (serves %s and %s)", tag, primary, secondary)
    create_markdown_artifact(
        key="bento",
        markdown=f"Bento `{tag}` serves `{primary}` and `{secondary}`: `make serve` starts it.",
        description="The built Bento of the prediction service",
    )
    return tag
