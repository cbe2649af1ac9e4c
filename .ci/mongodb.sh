#!/usr/bin/env bash
# CI's mongodb job: the store, service and monitoring tests (and those marked `mongodb`)
# against a real MongoDB, connected as the application's own account as in compose.
#
# MONGO_CONTAINER names the running mongo:7 container (CI's service container), started with
# MONGO_INITDB_ROOT_USERNAME/PASSWORD, which this script reads as MONGO_ROOT_USER and
# MONGO_ROOT_PASSWORD. The account is made by docker/mongo-init.js, the same script compose
# runs on a first start: readWrite on MONGO_APP_DB only. Its database is then shared by the
# tests and emptied around each one (MLOPS_TEST_DATABASE, tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MONGO_CONTAINER:?the id or name of the running mongo container}"
: "${MONGO_ROOT_USER:?}" "${MONGO_ROOT_PASSWORD:?}"
MONGO_PORT="${MONGO_PORT:-27017}"
export MONGO_APP_USER="${MONGO_APP_USER:-mlops}"
export MONGO_APP_DB="${MONGO_APP_DB:-mlops_ci}"
MONGO_APP_PASSWORD="${MONGO_APP_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
export MONGO_APP_PASSWORD

docker cp docker/mongo-init.js "$MONGO_CONTAINER:/tmp/mongo-init.js"
docker exec -e MONGO_APP_USER -e MONGO_APP_PASSWORD -e MONGO_APP_DB "$MONGO_CONTAINER" \
    mongosh --quiet --username "$MONGO_ROOT_USER" --password "$MONGO_ROOT_PASSWORD" \
    --authenticationDatabase admin /tmp/mongo-init.js

export MONGODB_URI="mongodb://$MONGO_APP_USER:$MONGO_APP_PASSWORD@127.0.0.1:$MONGO_PORT/$MONGO_APP_DB"
export MLOPS_TEST_DATABASE="$MONGO_APP_DB"
# Every test module that reaches the store (tests/test_ci.py checks this list is complete).
.venv/bin/python -m pytest -p no:cacheprovider -rs \
    tests/test_mongodb.py \
    tests/test_store.py \
    tests/test_store_journal.py \
    tests/test_store_embedded.py \
    tests/test_store_faults.py \
    tests/test_store_memory.py \
    tests/test_service.py \
    tests/test_monitoring.py \
    tests/test_monitor_e2e.py \
    tests/test_pipeline.py
