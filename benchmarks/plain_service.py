"""The baseline of the serving benchmark: a plain FastAPI app around the same pipeline.

What a user following the course briefs would write: load the pipeline, declare the request
body as a pydantic model, build a one-row DataFrame and call ``predict_proba`` once per
request. Served by ``uvicorn --workers 2`` (see ``benchmarks/serving.py``); it logs each
prediction with the same ``PredictionLogWriter`` as the BentoML service unless
``MLOPS_LOG_PREDICTIONS=0``.

Environment: ``PLAIN_MODEL_TAG`` (the model-store tag to serve), ``BENTOML_HOME``, and the
store variables of :mod:`store.settings`.
"""

from __future__ import annotations

import os
import time
import uuid

import bentoml
import pandas as pd
from fastapi import FastAPI

from bentos.logs import PredictionLogWriter
from bentos.registry import served_model
from store import StoreSettings, connect

TAG = os.environ["PLAIN_MODEL_TAG"]
NAME, _, VERSION = TAG.partition(":")
SERVED = served_model(NAME.rsplit("-", 1)[0], NAME.rsplit("-", 1)[1], VERSION)
PIPELINE = bentoml.sklearn.load_model(TAG)
Features = SERVED.contract.request_model()

app = FastAPI(title="plain FastAPI baseline")
_settings = StoreSettings.from_env()
connect(_settings, check=False)
WRITER = (
    PredictionLogWriter(_settings.journal_path)
    if os.environ.get("MLOPS_LOG_PREDICTIONS", "1") not in ("0", "false", "no")
    else None
)


@app.post("/predict")
def predict(features: Features) -> dict:  # type: ignore[valid-type]
    """Predict one row with the pipeline (one ``predict_proba`` call per request)."""
    started = time.perf_counter()
    row = features.model_dump(by_alias=True)
    probability = float(PIPELINE.predict_proba(pd.DataFrame([row]))[0, 1])
    prediction = int(probability >= SERVED.threshold)
    request_id = uuid.uuid4().hex
    if WRITER is not None:
        WRITER.write(
            {
                "request_id": request_id,
                "model_name": SERVED.name,
                "model_version": SERVED.version,
                "run_id": SERVED.run_id,
                "dataset": SERVED.dataset,
                "features": row,
                "prediction": prediction,
                "probability": probability,
                "latency_ms": (time.perf_counter() - started) * 1000.0,
            }
        )
    return {
        "request_id": request_id,
        "probability": probability,
        "prediction": prediction,
        "label": SERVED.class_labels[prediction],
    }
