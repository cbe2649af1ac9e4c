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
# OpenMP threads (XGBoost) that wait by spinning: on a busy 2-core machine a 2-thread fit ran
# 7x slower than a 1-thread one; waiting passively makes it 1.5-2x faster instead.
export OMP_WAIT_POLICY ?= PASSIVE

CONFIG ?= data/flights.yaml
ARGS   ?=

.PHONY: install run test lint format prefect-server clean

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

prefect-server: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1

clean:
	rm -rf artifacts .prefect .bentoml .pytest_cache .ruff_cache
