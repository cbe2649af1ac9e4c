"""Save the served models to the BentoML model store, with the metadata the service needs.

The service reads its input schema (features, dtypes, allowed categories), its decision
threshold and its provenance (run id, data hash, metrics) from this metadata: nothing
about the dataset is hard-coded in the service.
"""

from __future__ import annotations

import json

import pandas as pd

ROLES = ("primary", "secondary")


def model_name(dataset: str, role: str) -> str:
    """Return the model-store name of a served model, e.g. ``flights-primary``.

    Args:
        dataset: Dataset name from the config.
        role: ``primary`` or ``secondary``.

    Returns:
        The name.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got '{role}'")
    return f"{dataset}-{role}"


def input_schema(train: pd.DataFrame, columns: list[str], config) -> dict:
    """Describe the inputs of a served model from its training rows.

    Args:
        train: Training rows.
        columns: The model's input columns.
        config: The dataset config.

    Returns:
        ``features`` (ordered), ``dtypes`` (``datetime``, ``category`` or ``number`` per
        column), ``categories`` (training levels per categorical column, sorted),
        ``ranges`` (training min and max per numeric column) and ``nullable`` columns.
    """
    dtypes, categories, ranges = {}, {}, {}
    for column in columns:
        if column == config.date_column:
            dtypes[column] = "datetime"
        elif column in config.categorical:
            dtypes[column] = "category"
            categories[column] = sorted(str(v) for v in train[column].dropna().unique())
        else:
            dtypes[column] = "number"
            values = pd.to_numeric(train[column], errors="coerce")
            ranges[column] = [float(values.min()), float(values.max())]
    nullable = [c for c in columns if train[c].isna().any()]
    return {
        "features": list(columns),
        "dtypes": dtypes,
        "categories": categories,
        "ranges": ranges,
        "nullable": nullable,
    }


def save_served_model(
    name: str,
    pipeline,
    *,
    family: str,
    label: str,
    role: str,
    schema: dict,
    threshold: float,
    metrics: dict,
    config,
    run_id: str,
    data_hash: str,
    params: dict,
):
    """Save a fitted pipeline to the BentoML model store with its serving metadata.

    Args:
        name: Model-store name (see :func:`model_name`).
        pipeline: Fitted scikit-learn pipeline (raw rows in, probabilities out).
        family: Model family key.
        label: Human name of the model.
        role: ``primary`` or ``secondary``.
        schema: Output of :func:`input_schema`.
        threshold: Decision threshold chosen on validation.
        metrics: Metrics per split (plain floats and ints).
        config: The dataset config.
        run_id: Pipeline run id.
        data_hash: Hash of the training data.
        params: Hyperparameters.

    Returns:
        The saved ``bentoml.Model``.
    """
    import bentoml

    metadata = {
        "family": family,
        "label": label,
        "role": role,
        "dataset": config.name,
        "question": config.question,
        "target": config.target.name,
        "class_labels": list(config.target.labels),
        "threshold": float(threshold),
        "metrics": metrics,
        "run_id": run_id,
        "data_hash": data_hash,
        # BentoML metadata refuses None (e.g. class_weight=None): keep params as JSON text.
        "params_json": json.dumps(params, default=list),
        **schema,
    }
    return bentoml.sklearn.save_model(
        name,
        pipeline,
        signatures={"predict_proba": {"batchable": True, "batch_dim": 0}},
        labels={"role": role, "family": family, "dataset": config.name, "run": run_id},
        metadata=metadata,
    )
