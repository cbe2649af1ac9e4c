#!/bin/sh
# The compose stack's one-shot `train` service: give the API a Bento to serve, and MongoDB the
# dataset. The API starts only after this exits 0 (depends_on: service_completed_successfully).
#
# * No Bento of the configured dataset in BENTOML_HOME (a fresh volume): run the training
#   pipeline (`mlops run`, reported to the stack's Prefect server), which saves the two served
#   models and builds the Bento into the shared volume. A Bento already there (a restart, or
#   the champion promoted by the drift monitor since) is kept: no retraining on every `up`.
# * Import the dataset into MongoDB (`mlops db import`): rows already stored are skipped, so
#   a second start only re-reads them (about 15 s for the flights).
#
# Settings (from .env through docker-compose.yml): MLOPS_CONFIG, the dataset config (default
# data/flights.yaml); TRAIN_ARGS, extra `mlops run` options such as "--sample 20000".
set -eu

config="${MLOPS_CONFIG:-data/flights.yaml}"
bento="${MLOPS_BENTO:-tabular-mlops:latest}"

if python - "$config" "$bento" <<'PY'
import sys

import bentoml

from tabular.config import load_config

dataset = load_config(sys.argv[1]).name
try:
    bento = bentoml.get(sys.argv[2])
except bentoml.exceptions.NotFound:
    sys.exit(1)
sys.exit(0 if bento.info.labels.get("dataset") == dataset else 1)
PY
then
    echo "train: $bento already serves the dataset of $config; no training" \
        "(to retrain: docker compose run --rm train mlops run --config $config)"
else
    echo "train: no Bento of the dataset of $config in $BENTOML_HOME: running the pipeline"
    # TRAIN_ARGS is split on spaces on purpose: "--sample 20000 --seed 7".
    # shellcheck disable=SC2086
    mlops run --config "$config" ${TRAIN_ARGS:-}
fi

echo "train: importing the dataset of $config into MongoDB"
mlops db import --config "$config" --quiet
