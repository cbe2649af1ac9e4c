"""Real Prefect flow runs (under the test harness), on the default data and on a toy CSV."""

import json
from pathlib import Path

import bentoml
import pytest
import yaml

from flows.pipeline import training_pipeline
from tabular.config import DEFAULT_CONFIG
from tabular.errors import ValidationFailed
from tests.conftest import make_toy_frame, write_toy_dataset

pytestmark = pytest.mark.slow

# Small search settings: these tests check the wiring, not the model quality.
FAST = {"n_iter": 2, "search_rows": 2000, "max_epochs": 4, "patience": 2}
EXPLAIN = {"tree_rows": 200, "sample_rows": 40, "background_rows": 20}


def _manifest(result):
    return json.loads((result.run_dir / "manifest.json").read_text())


def test_default_flights_run_writes_manifest(prefect_harness, tmp_path):
    # The default dataset and rules with a lighter search (the full run is measured in the README).
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["training"].update(FAST)
    raw["explain"].update(EXPLAIN)
    config = tmp_path / "flights.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = training_pipeline(
        config_path=str(config), sample=4000, seed=11, artifacts_dir=str(tmp_path)
    )
    manifest = _manifest(result)
    assert manifest["status"] == "succeeded"
    assert manifest["columns"]["count"] >= 15
    assert manifest["columns"]["datetime"] == ["sched_dep"]
    assert len(manifest["columns"]["categorical"]) >= 3
    assert manifest["rows"]["dropped"] == {"missing arr_delay": 9430}
    assert manifest["rows"]["used"] == 4000
    assert len(manifest["data_hash"]) == 64
    assert {"load", "prepare", "validate", "split", "eda", "train", "explain", "bento"} <= set(
        manifest["steps"]
    )
    assert all(seconds >= 0 for seconds in manifest["steps"].values())
    assert manifest["packages"]["prefect"].startswith("3.")
    for output in ("data_docs", "eda", "training", "explain"):
        assert (result.run_dir / manifest["outputs"][output]).is_file(), output
    assert {"logistic", "xgboost", "mlp"} <= set(manifest["models"])
    assert manifest["models"]["best"] in {"logistic", "xgboost", "mlp"}
    # Two models saved to the BentoML store, each listing exactly the selected features.
    assert len(manifest["served_models"]) == 2
    for tag in manifest["served_models"]:
        metadata = bentoml.models.get(tag).info.metadata
        assert sorted(metadata["features"]) == sorted(manifest["selected_features"])
        assert metadata["run_id"] == manifest["run_id"]
        assert metadata["data_hash"] == manifest["data_hash"]
    # The last step built the Bento that serves exactly these two models.
    bento = bentoml.bentos.get(manifest["bento"])
    assert bento.info.args == {
        "dataset": "flights",
        "primary": manifest["served_models"][0],
        "secondary": manifest["served_models"][1],
    }
    assert bento.info.labels["dataset"] == "flights"
    source = Path(bento.path) / "src"
    assert (source / "bentos" / "service.py").is_file() and (
        source / "tabular" / "contract.py"
    ).is_file()


def test_same_seed_same_hash_and_split(prefect_harness, tmp_path):
    config = write_toy_dataset(tmp_path / "data", training=FAST, explain=EXPLAIN)
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
    # Same seed, same selected configurations and the same validation and test scores.
    assert first["models"] == second["models"]
    assert first["selected_features"] == second["selected_features"]


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
