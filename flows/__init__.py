"""Prefect flows (the training pipeline, the drift monitor), their deployments and the CLI.

:mod:`flows.pipeline` chains the stages (:mod:`flows.eda`, :mod:`flows.training`,
:mod:`flows.explain`, :mod:`flows.bento`, :mod:`flows.report`); :mod:`flows.monitor` is the
drift check; :mod:`flows.deploy` serves both as deployments; :mod:`flows.cli` is the whole
``mlops`` command (``run``, ``monitor``, ``replay``, and ``db`` from :mod:`flows.db`).
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_BASE = _ROOT if (_ROOT / "pyproject.toml").is_file() else Path.cwd()

# The Makefile's project-local state and settings, for the CLI run without make
# (`.venv/bin/mlops monitor`): the same Prefect and BentoML homes as `make run` and
# `make serve`, and no telemetry call (there is no network at run time). Set variables win.
for _name, _value in {
    "PREFECT_HOME": _BASE / ".prefect",
    "BENTOML_HOME": _BASE / ".bentoml",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}.items():
    os.environ.setdefault(_name, str(_value))
