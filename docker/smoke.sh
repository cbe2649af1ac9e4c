#!/usr/bin/env bash
# Smoke test of a running API: the compose stack (CI's compose job runs it after
# `docker compose up`), or `make serve` (tests/test_service.py runs it against a real server).
#
#   MLOPS_API_KEY=... docker/smoke.sh
#
# It predicts with the example row the API itself gives (/info), posts that prediction's
# outcome, creates a dataset record (a copy of a stored one), reads it, deletes it and checks
# it is gone, then triggers the drift-monitor deployment once and waits for its run to
# complete. Every step prints one line; the first failure stops the script with its status,
# the answer and exit status 1.
#
# Settings (environment):
#   MLOPS_API_URL    the API (default http://127.0.0.1:3000)
#   MLOPS_API_KEY    the key of the write endpoints, as the server has it (required)
#   PREFECT_API_URL  the Prefect server that serves the deployments (the compose stack's:
#                    http://127.0.0.1:4200/api). Unset: the deployment step is skipped, with a
#                    message (`make serve` alone has no Prefect server and no worker).
#   SMOKE_DEPLOYMENT the deployment to trigger (default drift-monitor/<the served dataset>)
#   SMOKE_TIMEOUT    seconds to wait for the API to be ready and for the run (default 600)
#
# Needs bash, curl and python3 (for JSON). The dataset must be stored (compose's train job
# imports it; with `make serve`, run `mlops db import` first).
set -euo pipefail

API_URL="${MLOPS_API_URL:-http://127.0.0.1:3000}"
API_URL="${API_URL%/}"
API_KEY="${MLOPS_API_KEY:?set MLOPS_API_KEY to the API key the server was started with}"
TIMEOUT="${SMOKE_TIMEOUT:-600}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fail() {
    echo "smoke: FAILED: $*" >&2
    exit 1
}

# request METHOD URL EXPECTED_STATUS [BODY] [key]: the answer's body goes to $WORK/answer.
request() {
    local method="$1" url="$2" expected="$3" body="${4:-}" auth="${5:-}" status
    local args=(--silent --show-error --max-time 60 --request "$method" --output "$WORK/answer"
        --write-out '%{http_code}' --header 'Content-Type: application/json')
    [ -n "$body" ] && args+=(--data "$body")
    [ "$auth" = key ] && args+=(--header "X-API-Key: $API_KEY")
    status="$(curl "${args[@]}" "$url")" || fail "$method $url: no answer (is it running?)"
    [ "$status" = "$expected" ] ||
        fail "$method $url answered $status, expected $expected: $(head -c 600 "$WORK/answer")"
}

# json EXPRESSION: evaluate a Python expression on the last answer (bound to `a`), print it
# (dicts and lists as JSON).
json() {
    python3 -c 'import json, sys
a = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$WORK/answer" "$1"
}

# -- The API's routes, all in one place ----------------------------------------------------------
# Predictions are BentoML routes (POST, JSON bodies); the stored data are REST resources.
# Every write, /feedback included, carries the key.
api_ready() { request GET "$API_URL/readyz" 200; }
api_info() { request POST "$API_URL/info" 200 '{}'; }
api_predict() { request POST "$API_URL/predict" 200 "$1"; }
api_feedback() { request POST "$API_URL/feedback" 200 "{\"request_id\": \"$1\", \"actual\": $2}" key; }
api_records_list() { request GET "$API_URL/records?page_size=1" 200; }
api_record_create() { request POST "$API_URL/records" 201 "{\"values\": $1}" key; }
api_record_get() { request GET "$API_URL/records/$1" "$2"; }
api_record_delete() { request DELETE "$API_URL/records/$1" 204 "" key; }

# -- the API -------------------------------------------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
until curl --silent --fail --max-time 5 --output /dev/null "$API_URL/readyz"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$API_URL/readyz not ready within ${TIMEOUT}s"
    sleep 2
done
api_ready
echo "smoke: $API_URL is ready"

api_info
dataset="$(json 'a["dataset"]')"
example="$(json 'a["example"]')"
echo "smoke: it serves '$dataset' ($(json '", ".join(m["tag"] for m in a["models"])'))"

api_predict "$example"
request_id="$(json 'a["request_id"]')"
predicted="$(json 'a["prediction"]')"
json '0.0 <= a["probability"] <= 1.0 and a["prediction"] in (0, 1)' | grep -qx True ||
    fail "/predict answered $(head -c 300 "$WORK/answer")"
echo "smoke: predicted $(json 'round(a["probability"], 4)') ($(json 'a["label"]')), request $request_id"

api_feedback "$request_id" "$predicted"
echo "smoke: feedback stored for $request_id (actual $(json 'a["actual"]'))"

api_records_list
[ "$(json 'a["total"]')" -gt 0 ] ||
    fail "no '$dataset' record is stored: import the dataset first (mlops db import)"
values="$(json 'a["items"][0]["values"]')"
api_record_create "$values"
record_id="$(json 'a["id"]')"
api_record_get "$record_id" 200
[ "$(json 'a["values"]')" = "$values" ] || fail "record $record_id reads back other values"
api_record_delete "$record_id"
api_record_get "$record_id" 404
echo "smoke: record $record_id created, read back, deleted, and gone (404)"

# -- the drift-monitor deployment (the compose stack's worker serves it) -------------------------
if [ -z "${PREFECT_API_URL:-}" ]; then
    echo "smoke: skipped the drift-monitor deployment: PREFECT_API_URL is not set (the compose" \
        "stack's Prefect server is http://127.0.0.1:4200/api; make serve alone has none)"
    echo "smoke: passed (deployment step skipped)"
    exit 0
fi
PREFECT="${PREFECT_API_URL%/}"
deployment="${SMOKE_DEPLOYMENT:-drift-monitor/$dataset}"
request GET "$PREFECT/deployments/name/$deployment" 200
deployment_id="$(json 'a["id"]')"
request POST "$PREFECT/deployments/$deployment_id/create_flow_run" 201 '{}'
run_id="$(json 'a["id"]')"
echo "smoke: triggered $deployment (flow run $run_id); waiting for it"
deadline=$((SECONDS + TIMEOUT))
while :; do
    request GET "$PREFECT/flow_runs/$run_id" 200
    state="$(json '(a.get("state") or {}).get("type") or "PENDING"')"
    case "$state" in
        COMPLETED) break ;;
        FAILED | CRASHED | CANCELLED | CANCELLING)
            fail "flow run $run_id of $deployment ended $state: $(json '(a.get("state") or {}).get("message")')" ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "flow run $run_id still $state after ${TIMEOUT}s"
    sleep 3
done
echo "smoke: $deployment run $run_id completed"
echo "smoke: passed"
