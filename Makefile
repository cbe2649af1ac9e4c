# Two commands for a newcomer: `make run` and `make test`.
# Both create .venv when missing and reinstall only when pyproject.toml changed.

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

CONFIG ?= data/flights.yaml
ARGS   ?=
# `make serve`: the latest Bento built by `make run`, on HOST:PORT.
BENTO  ?= tabular-mlops:latest
HOST   ?= 127.0.0.1
PORT   ?= 3000

.PHONY: install run test lint format serve bench prefect-server clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m flows run --config $(CONFIG) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(ARGS)

# The embedded store is the repository's .store/ (as for `mlops db`), unless MLOPS_STORE_DIR
# or MONGODB_URI says otherwise. MLOPS_API_KEY enables the write endpoints.
serve: $(STAMP)
	@$(BIN)/bentoml get $(BENTO) -o json >/dev/null 2>&1 || \
		{ echo "error: no Bento '$(BENTO)' in $(BENTOML_HOME): run 'make run' first" >&2; exit 2; }
	MLOPS_STORE_DIR="$${MLOPS_STORE_DIR:-$(CURDIR)/.store}" \
		$(BIN)/bentoml serve $(BENTO) --host $(HOST) --port $(PORT)

# Serving benchmark: BentoML against a plain FastAPI service on the served models.
bench: $(STAMP)
	$(BIN)/python benchmarks/serving.py $(ARGS)

prefect-server: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1

clean:
	rm -rf artifacts .prefect .bentoml .pytest_cache .ruff_cache
