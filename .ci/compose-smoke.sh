#!/usr/bin/env bash
# CI's compose job: build the image, start the stack (.ci/stack.sh up: every server healthy,
# the one-shot train exited 0), run docker/smoke.sh against it (the deployment step included),
# then remove the stack with its volumes, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

trap '.ci/stack.sh down' EXIT
.ci/stack.sh up
if ! MLOPS_API_URL=http://127.0.0.1:3000 \
    MLOPS_API_KEY="$(.ci/stack.sh env MLOPS_API_KEY)" \
    PREFECT_API_URL=http://127.0.0.1:4200/api \
    docker/smoke.sh; then
    .ci/stack.sh report
    exit 1
fi
