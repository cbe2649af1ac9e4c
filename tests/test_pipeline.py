"""Real Prefect flow runs (under the test harness), on the default data and on a toy CSV."""

import json

import pytest

from flows.pipeline import training_pipeline
from tabular.errors import ValidationFailed
from tests.conftest import make_toy_frame, write_toy_dataset

pytestmark = pytest.mark.slow


def _manifest(result):
    return json.loads((result.run_dir / "manifest.json").read_text())


def test_default_flights_run_writes_manifest(prefect_harness, tmp_path):
    result = training_pipeline(sample=4000, seed=11, artifacts_dir=str(tmp_path))
    manifest = _manifest(result)
    assert manifest["status"] == "succeeded"
    assert manifest["columns"]["count"] >= 15
    assert manifest["columns"]["datetime"] == ["sched_dep"]
    assert len(manifest["columns"]["categorical"]) >= 3
    assert manifest["rows"]["dropped"] == {"missing arr_delay": 9430}
    assert manifest["rows"]["used"] == 4000
    assert len(manifest["data_hash"]) == 64
    assert {"load", "prepare", "validate", "split"} <= set(manifest["steps"])
    assert all(seconds >= 0 for seconds in manifest["steps"].values())
    assert manifest["packages"]["prefect"].startswith("3.")
    assert (result.run_dir / manifest["outputs"]["data_docs"]).is_file()


def test_same_seed_same_hash_and_split(prefect_harness, tmp_path):
    config = write_toy_dataset(tmp_path / "data")
    first = _manifest(
        training_pipeline(config_path=str(config), seed=5, artifacts_dir=str(tmp_path))
    )
    second = _manifest(
        training_pipeline(config_path=str(config), seed=5, artifacts_dir=str(tmp_path))
    )
    other = _manifest(
        training_pipeline(config_path=str(config), sample=500, seed=6, artifacts_dir=str(tmp_path))
    )
    assert first["run_id"] != second["run_id"]
    assert first["data_hash"] == second["data_hash"] != other["data_hash"]
    assert first["rows"]["split"] == second["rows"]["split"]


def test_validation_failure_stops_before_training(prefect_harness, tmp_path):
    frame = make_toy_frame()
    frame.loc[0, "price"] = -100.0
    config = write_toy_dataset(tmp_path / "data", frame)
    with pytest.raises(ValidationFailed, match="column 'price'"):
        training_pipeline(config_path=str(config), artifacts_dir=str(tmp_path / "runs"))
    (run_dir,) = (tmp_path / "runs" / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed: ValidationFailed"
    assert "split" not in manifest["steps"]
    assert (run_dir / "validation" / "data_docs" / "index.html").is_file()
