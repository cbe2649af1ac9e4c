"""The served models in the BentoML model store: saving them with their metadata, reading it back.

A served model's metadata carries everything the service needs besides the pipeline: its
input contract (:class:`tabular.contract.InputContract`, as JSON), decision threshold,
class labels and provenance (run id, data hash, metrics). Nothing about the dataset is
hard-coded in the service: it reads this metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tabular.contract import InputContract

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


def save_served_model(
    name: str,
    pipeline,
    *,
    family: str,
    label: str,
    role: str,
    contract: InputContract,
    threshold: float,
    metrics: dict,
    config,
    run_id: str,
    data_hash: str,
    params: dict,
    reference: dict[str, Any] | None = None,
):
    """Save a fitted pipeline to the BentoML model store with its serving metadata.

    Args:
        name: Model-store name (see :func:`model_name`).
        pipeline: Fitted scikit-learn pipeline (raw rows in, probabilities out).
        family: Model family key.
        label: Human name of the model.
        role: ``primary`` or ``secondary``.
        contract: The model's input contract (:func:`tabular.contract.build_contract`).
        threshold: Decision threshold chosen on validation.
        metrics: Metrics per split (plain floats and ints).
        config: The dataset config.
        run_id: Pipeline run id.
        data_hash: Hash of the training data.
        params: Hyperparameters.
        reference: Where the run saved the monitoring reference
            (:meth:`monitoring.reference.ReferenceInfo.metadata`), if it did.

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
        "features": contract.names,
        # BentoML metadata refuses None (e.g. class_weight=None, an open range): JSON text.
        "params_json": json.dumps(params, default=list),
        "contract_json": contract.to_json(),
        **(reference or {}),
    }
    return bentoml.sklearn.save_model(
        name,
        pipeline,
        signatures={"predict_proba": {"batchable": True, "batch_dim": 0}},
        labels={"role": role, "family": family, "dataset": config.name, "run": run_id},
        metadata=metadata,
    )


@dataclass(frozen=True)
class ServedModel:
    """A served model's description, read from the model store (the pipeline is not loaded).

    Attributes:
        role: ``primary`` or ``secondary``.
        tag: The model-store tag, ``<name>:<version>``.
        name: The model-store name.
        version: The tag's version.
        dataset: The dataset the model was trained on.
        question: The business question it answers.
        family: Model family key (``mlp``, ``xgboost``, ``logistic``).
        label: Human name of the model.
        class_labels: Names of class 0 and class 1.
        threshold: Probability at or above which class 1 is predicted.
        run_id: The pipeline run that trained it.
        data_hash: Hash of the data it was trained on.
        metrics: Metrics per split (``validation``, ``test``).
        contract: Its input contract.
        reference_path: The monitoring reference saved by its run (``None`` for a model
            saved before references existed).
        reference_sha256: The SHA-256 of that file.
    """

    role: str
    tag: str
    name: str
    version: str
    dataset: str
    question: str
    family: str
    label: str
    class_labels: tuple[str, str]
    threshold: float
    run_id: str
    data_hash: str
    metrics: dict[str, Any]
    contract: InputContract
    reference_path: str | None = None
    reference_sha256: str | None = None

    @property
    def features(self) -> list[str]:
        """The input columns, in pipeline order."""
        return self.contract.names


def served_model(dataset: str, role: str, version: str = "latest") -> ServedModel:
    """Read a served model's description from the BentoML model store.

    Args:
        dataset: Dataset name.
        role: ``primary`` or ``secondary``.
        version: Model version (default: the latest saved).

    Returns:
        The description.

    Raises:
        bentoml.exceptions.NotFound: If no such model was saved (run the pipeline first).
        KeyError: If the model was saved without an input contract.
    """
    return served_model_from_tag(f"{model_name(dataset, role)}:{version}")


def served_model_from_tag(tag: str) -> ServedModel:
    """Read the description of the served model with this exact tag (``name:version``).

    Args:
        tag: A model-store tag, e.g. the ``model_name:model_version`` of a prediction log.

    Returns:
        The description.

    Raises:
        bentoml.exceptions.NotFound: If the model store has no such model.
        KeyError: If the model was saved without an input contract.
    """
    import bentoml

    model = bentoml.models.get(tag)
    metadata = model.info.metadata
    return ServedModel(
        role=metadata["role"],
        tag=str(model.tag),
        name=model.tag.name,
        version=model.tag.version or "",
        dataset=metadata["dataset"],
        question=metadata["question"],
        family=metadata["family"],
        label=metadata["label"],
        class_labels=tuple(metadata["class_labels"]),
        threshold=float(metadata["threshold"]),
        run_id=metadata["run_id"],
        data_hash=metadata["data_hash"],
        metrics=dict(metadata["metrics"]),
        contract=InputContract.from_metadata(metadata),
        reference_path=metadata.get("reference_path"),
        reference_sha256=metadata.get("reference_sha256"),
    )
