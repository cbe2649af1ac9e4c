# Two commands for a newcomer: `make run` and `make test`.
# Both create .venv when missing and install exactly the locked packages (uv.lock, exported to
# requirements/ by `make lock`); they reinstall only when the lock or pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Project-local state, shared by `make run`, `make prefect-server` and the tests' own temp homes.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export MPLBACKEND ?= Agg
# OpenMP threads (XGBoost) that wait by spinning: on a busy 2-core machine a 2-thread fit ran
# 7x slower than a 1-thread one; waiting passively makes it 1.5-2x faster instead.
export OMP_WAIT_POLICY ?= PASSIVE

CONFIG ?= data/flights.yaml
ARGS   ?=
# `make serve`: the latest Bento built by `make run`, on HOST:PORT.
BENTO  ?= tabular-mlops:latest
HOST   ?= 127.0.0.1
PORT   ?= 3000
# `make prefect-server` / `make deploy`: the Prefect server's port; `make monitor-ui`: Evidently's.
PREFECT_PORT ?= 4200
UI_PORT      ?= 8000
WORKSPACE    ?= artifacts/monitoring/workspace

.PHONY: install lock run test lint format serve bench bench-scale soak fuzz prefect-server deploy monitor monitor-ui notebook clean

install: $(STAMP)

# First uv itself, from the lock (pip checks its hashes; an old pip handles this one file).
$(VENV)/.uv: requirements/bootstrap.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements/bootstrap.txt
	@touch $@

# Then the environment becomes exactly requirements/dev.txt (every version locked, every
# hash checked, anything else removed), and the project itself is added, editable. The
# packages are compiled to bytecode as they are installed (as pip does; uv does not unless
# asked): where PYTHONDONTWRITEBYTECODE is set, as on the machines this project is built on,
# Python never writes it, and every process compiled every module it imported again
# (importing the pipeline took 7.7 to 9.0 s, 3.3 s compiled).
$(STAMP): $(VENV)/.uv requirements/dev.txt pyproject.toml
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# Re-resolve uv.lock from pyproject.toml (keeping every version that still fits) and export
# requirements/*.txt from it. `make lock ARGS=--upgrade` takes the newest versions allowed;
# `make lock ARGS="--upgrade-package prefect"` only those of one package.
lock: $(VENV)/.uv
	$(BIN)/uv lock --python $(BIN)/python $(ARGS)
	$(BIN)/python requirements/export.py

run: $(STAMP)
	$(BIN)/python -m flows run --config $(CONFIG) $(ARGS)

# ruff; the CI workflow (actionlint, with shellcheck on its run steps); the shell scripts;
# the Dependabot config against its published schema.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint
	$(BIN)/shellcheck docker/*.sh .ci/run .ci/*.sh
	$(BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The suite on TEST_WORKERS processes (pytest-xdist), a test file per worker at a time so that
# a module's fixtures are built once; TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# The OpenAPI fuzzer for 5 minutes (make test gives it 20 s). Against another API:
# `make fuzz MLOPS_API_URL=http://host:3000 MLOPS_API_KEY=...`.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	MLOPS_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m pytest tests/test_fuzz.py -s $(ARGS)

# The embedded store is the repository's .store/ (as for `mlops db`), unless MLOPS_STORE_DIR
# or MONGODB_URI says otherwise. MLOPS_API_KEY enables the write endpoints.
serve: $(STAMP)
	@$(BIN)/bentoml get $(BENTO) -o json >/dev/null 2>&1 || \
		{ echo "error: no Bento '$(BENTO)' in $(BENTOML_HOME): run 'make run' first" >&2; exit 2; }
	MLOPS_STORE_DIR="$${MLOPS_STORE_DIR:-$(CURDIR)/.store}" \
		$(BIN)/bentoml serve $(BENTO) --host $(HOST) --port $(PORT)

# Benchmarks: serving (BentoML against a plain FastAPI service, ~6 min), the monitor's speed
# (100,000 logs against a 100,000-row reference, ~1 min with its set-up), the API front's
# memory over 1,000,000 logged predictions (~3 min), then the monitor evaluation (false
# alarms, faults caught, champion against challenger on Oct-Dec, ~25 min).
bench: $(STAMP)
	$(BIN)/python benchmarks/serving.py $(ARGS)
	$(BIN)/python benchmarks/monitor.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/monitor_eval.py

# The pipeline end to end on 100,000, 1,000,000 and 3,000,000 rows resampled from the default
# data (generated under artifacts/scale/, deleted after): time per step, peak RSS, load. On
# an idle 2-core machine 1,000,000 rows took 5 min and 3,000,000 rows 13 min (+0.5 and 3 min
# to write the CSVs). Other sizes: `make bench-scale ARGS="--rows 1000000 5000000"`.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py $(ARGS)

# 60 s of mixed traffic at 32 clients: errors by status, each server process's RSS (~2 min).
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $(ARGS)

# The Prefect UI on http://127.0.0.1:$(PREFECT_PORT), over the project's .prefect state.
# Re-run notebooks/walkthrough.ipynb in place, headless (WALKTHROUGH_SAMPLE rows, default 20000).
notebook: $(STAMP)
	cd notebooks && $(CURDIR)/$(BIN)/jupyter-execute --inplace walkthrough.ipynb

prefect-server: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

# Serves the training-pipeline and drift-monitor deployments against `make prefect-server`
# (the monitor on the config's schedule, hourly by default); runs until Ctrl-C.
deploy: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
		$(BIN)/python -m flows.deploy --config $(CONFIG) --service-url http://$(HOST):$(PORT)

# One drift check now (same as the deployment's run): `make monitor ARGS="--last 5000"`.
monitor: $(STAMP)
	$(BIN)/python -m flows monitor --config $(CONFIG) $(ARGS)

# The Evidently UI over the monitor's workspace (one project per dataset, a run per check).
monitor-ui: $(STAMP)
	@mkdir -p $(WORKSPACE)
	$(BIN)/evidently ui --workspace $(WORKSPACE) --host 127.0.0.1 --port $(UI_PORT)

clean:
	rm -rf artifacts .prefect .bentoml .pytest_cache .ruff_cache
