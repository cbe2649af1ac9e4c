"""Shared test set-up: isolated Prefect/BentoML homes, a Prefect test harness, toy datasets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

# Set before anything imports prefect or bentoml: their homes must not leak across runs.
_HOME = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def prefect_harness():
    """A Prefect test server shared by the whole session (about 9 s to start once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def make_toy_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Build a small dataset of another shape than flights: daily shop orders.

    The target ``returned`` depends on ``price`` and ``channel`` so models can learn it.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2021-01-01", periods=rows, freq="6h")
    channel = rng.choice(["web", "store", "phone", "partner"], size=rows, p=[0.5, 0.3, 0.18, 0.02])
    region = rng.choice([f"r{i}" for i in range(50)], size=rows)
    price = rng.gamma(2.0, 30.0, size=rows).round(2)
    quantity = rng.integers(1, 6, size=rows)
    score = 0.02 * price + (channel == "web") * 1.0 - 2.5 + rng.normal(0, 1, size=rows)
    return pd.DataFrame(
        {
            "order_date": dates.strftime("%Y-%m-%d %H:%M"),
            "channel": channel,
            "region": region,
            "price": price,
            "quantity": quantity,
            "order_id": np.arange(rows),
            "returned": (score > 0).astype(int),
        }
    )


def toy_config_dict(**overrides) -> dict:
    """The toy orders dataset config as a plain dict, with top-level keys overridden."""
    config = {
        "name": "orders",
        "question": "Will this order be returned?",
        "source": {"csv": "orders.csv"},
        "target": {"name": "returned", "column": "returned", "labels": ["kept", "returned"]},
        "date_column": "order_date",
        "categorical": ["channel", "region"],
        "numeric": ["price", "quantity"],
        "id_columns": ["order_id"],
        "checks": {"ranges": {"price": [0, 10000], "quantity": [1, 100]}},
        "split": {"method": "random", "validation_size": 0.2, "test_size": 0.2},
        "features": {"one_hot_max_levels": 10},
        "seed": 7,
    }
    config.update(overrides)
    return config


def write_toy_dataset(folder: Path, frame: pd.DataFrame | None = None, **overrides) -> Path:
    """Write a toy CSV and its dataset config into ``folder``; return the config path."""
    frame = make_toy_frame() if frame is None else frame
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "orders.csv", index=False)
    path = folder / "orders.yaml"
    path.write_text(yaml.safe_dump(toy_config_dict(**overrides), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def toy_config(tmp_path: Path) -> Path:
    """Path of a toy dataset config (CSV of 600 orders) in a temp folder."""
    return write_toy_dataset(tmp_path / "orders")
