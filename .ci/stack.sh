#!/usr/bin/env bash
# The compose stack for CI's compose and fuzz jobs: `.ci/stack.sh up` builds the image, starts
# the stack and waits until every server is healthy and the one-shot `train` has exited 0;
# `.ci/stack.sh down` removes it with its volumes; `.ci/stack.sh env NAME` prints a setting;
# `.ci/stack.sh write-env` only writes the settings file (tests/test_ci.py runs it).
#
# It runs as its own compose project (tabular-mlops-ci) with its own settings file (fresh
# random secrets, a quick first training), so the volumes and the .env of a stack of yours
# are never touched; it refuses to start while the `tabular-mlops` stack runs (they would
# share its network and ports). To check a stack of yours, run docker/smoke.sh instead.
#
# Settings: CI_ENV_FILE, where the settings are written (default .ci/compose.env, ignored by
# git); CI_TRAIN_ARGS, the first training's options (default "--sample 20000");
# CI_WAIT_SECONDS, how long `up` waits (default 2400).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=tabular-mlops-ci
ENV_FILE="${CI_ENV_FILE:-.ci/compose.env}"
compose() { docker compose --project-name "$PROJECT" --env-file "$ENV_FILE" "$@"; }

# .env.example with every change-me replaced by a fresh random secret (letters and digits,
# as the MongoDB URI needs), and a quick first training.
write_env() {
    python3 - "$ENV_FILE" "${CI_TRAIN_ARGS:---sample 20000}" <<'PY'
import re
import secrets
import sys

path, train_args = sys.argv[1], sys.argv[2]
lines = []
for line in open(".env.example", encoding="utf-8").read().splitlines():
    name, sep, value = line.partition("=")
    if sep and not line.startswith("#"):
        if value.startswith("change-me"):
            value = secrets.token_hex(24)
        elif name == "TRAIN_ARGS":
            value = train_args
    lines.append(f"{name}{sep}{value}" if sep and not line.startswith("#") else line)
assert not any(re.search(r"=change-me", line) for line in lines)
open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
PY
}

setting() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }

report() {
    compose ps --all || true
    compose logs --no-color --tail 80 || true
}

case "${1:-}" in
    up)
        if [ -n "$(docker compose --project-name tabular-mlops ps --quiet 2>/dev/null)" ]; then
            echo "stack: the tabular-mlops stack is running; stop it first (docker compose down)" >&2
            exit 2
        fi
        [ -f "$ENV_FILE" ] || write_env
        compose build
        # Waits for every server's health check; the API starts only after `train` exited 0.
        if ! compose up --detach --wait --wait-timeout "${CI_WAIT_SECONDS:-2400}"; then
            echo "stack: not healthy in time" >&2
            report
            exit 1
        fi
        train="$(compose ps --all --quiet train)"
        code="$(docker inspect --format '{{.State.ExitCode}} {{.State.Status}}' "$train")"
        if [ "$code" != "0 exited" ]; then
            echo "stack: train did not finish cleanly ($code)" >&2
            report
            exit 1
        fi
        compose ps --all
        ;;
    down)
        compose down --volumes --remove-orphans
        ;;
    env)
        setting "$2"
        ;;
    write-env)
        write_env
        ;;
    report)
        report
        ;;
    *)
        echo "usage: .ci/stack.sh up|down|report|write-env|env NAME" >&2
        exit 2
        ;;
esac
