"""Real Prefect flow runs (under the test harness), on the default data and on a toy CSV."""

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import bentoml
import pandas as pd
import pytest
import yaml
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings
from pypdf import PdfReader

from flows.pipeline import training_pipeline
from tabular.config import DEFAULT_CONFIG
from tabular.errors import ValidationFailed
from tests.conftest import (
    drop_test_database,
    fresh_database,
    make_bookings_frame,
    make_toy_frame,
    write_bookings_dataset,
    write_toy_dataset,
)

pytestmark = pytest.mark.slow

# Small search settings: these tests check the wiring, not the model quality.
FAST = {"n_iter": 2, "search_rows": 2000, "max_epochs": 4, "patience": 2}
EXPLAIN = {"tree_rows": 200, "sample_rows": 40, "background_rows": 20}


def _manifest(result):
    return json.loads((result.run_dir / "manifest.json").read_text())


@pytest.fixture(autouse=True)
def run_store(tmp_path_factory):
    """Each run stores its rows in a fresh database (embedded, or MONGODB_URI's server)."""
    from store import StoreSettings, connect
    from store.connection import disconnect, get_database

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MONGODB_DB", fresh_database())
        patch.setenv("MLOPS_STORE_DIR", str(tmp_path_factory.mktemp("store")))
        settings = StoreSettings.from_env()
        yield settings
        connect(settings, check=False)
        drop_test_database(get_database())
        disconnect()


def _pdf_text(path: Path) -> tuple[int, str]:
    """The PDF's page count and its text with every run of white space removed."""
    reader = PdfReader(path)
    text = "".join(page.extract_text() for page in reader.pages)
    return len(reader.pages), re.sub(r"\s+", "", text)


def check_report_pdf(result, manifest) -> str:
    """Four pages, and the run's key numbers from ``manifest.json`` in the text."""
    pages, text = _pdf_text(result.run_dir / manifest["outputs"]["report"])
    assert pages == 4
    rows = manifest["rows"]
    metric = manifest["config"]["training"]["metric"]
    expected = [
        manifest["run_id"],
        manifest["data_hash"][:16],
        f"{rows['loaded']:,}rowsloaded",
        f"{rows['used']:,}",
        f"{rows['positive_share']:.1%}",
        *[f"{part}{n:,}" for part, n in rows["split"].items() if part in ("train", "test")],
        *[f"{manifest['models'][key][f'test_{metric}']:.4f}" for key in ("logistic", "xgboost")],
        f"{manifest['models']['mlp'][f'test_{metric}']:.4f}",
        *manifest["served_models"],
        manifest["bento"],
        f"Itkeeps{len(manifest['selected_features'])}of",
    ]
    missing = [needle for needle in expected if needle.replace(" ", "") not in text]
    assert not missing, missing
    assert manifest["database"]["ok"] and manifest["database"]["rows"] == rows["used"]
    return text


def check_query_output(text: str, manifest, settings) -> None:
    """The PDF holds what ``mlops db query`` prints, run now as a command on the same store."""
    command = manifest["database"]["command"].split()[1:]
    env = {
        **os.environ,
        "MONGODB_DB": settings.database,
        "MLOPS_STORE_DIR": str(settings.store_dir),
    }
    printed = subprocess.run(
        [sys.executable, "-m", "flows", *command], capture_output=True, text=True, env=env,
        check=True,
    ).stdout  # fmt: skip
    assert "group(s), computed by" in printed
    assert re.sub(r"\s+", "", printed) in text


def test_default_flights_run_writes_manifest(prefect_harness, tmp_path, run_store):
    # The default dataset and rules with a lighter search (the full run is measured in the README).
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["training"].update(FAST)
    raw["explain"].update(EXPLAIN)
    config = tmp_path / "flights.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = training_pipeline(
        config_path=str(config),
        sample=4000,
        seed=11,
        artifacts_dir=str(tmp_path),
        horizon_study=True,
    )
    manifest = _manifest(result)
    assert manifest["status"] == "succeeded"
    assert manifest["columns"]["count"] >= 15
    # The schedule in local time (the feature) and in UTC (the point-in-time cutoffs).
    assert manifest["columns"]["datetime"] == ["sched_dep", "sched_dep_utc", "sched_arr_utc"]
    assert len(manifest["columns"]["categorical"]) >= 3
    assert manifest["rows"]["dropped"] == {"missing arr_delay": 9430}
    assert manifest["rows"]["used"] == 4000
    assert len(manifest["data_hash"]) == 64
    assert {
        "load", "prepare", "validate", "split", "eda", "train", "horizon", "training-report",
        "explain", "bento", "store", "report",
    } <= set(manifest["steps"]) == set(manifest["steps_cpu"]) | set(manifest["concurrent"])  # fmt: skip
    assert manifest["concurrent"] == ["eda", "store"]  # alongside the training
    assert manifest["cached"] == []  # a first run computes every step
    assert all(seconds >= 0 for seconds in manifest["steps"].values())
    assert manifest["packages"]["prefect"].startswith("3.")
    for output in ("data_docs", "eda", "training", "explain"):
        assert (result.run_dir / manifest["outputs"][output]).is_file(), output
    assert {"logistic", "xgboost", "mlp"} <= set(manifest["models"])
    assert manifest["models"]["best"] in {"logistic", "xgboost", "mlp"}
    # Four rolling-origin folds per family, and the champion refitted at every horizon.
    assert all(len(manifest["models"][k]["fold_scores"]) == 4 for k in ("logistic", "mlp"))
    summary = json.loads((result.run_dir / "training" / "summary.json").read_text())
    assert [row["horizon_hours"] for row in summary["horizons"]] == [0, 1, 2, 3]
    champion = manifest["models"][manifest["models"]["best"]]
    default = next(row for row in summary["horizons"] if row["horizon_hours"] == 2)
    assert default["test_roc_auc"] == champion["test_roc_auc"]  # the main run, reused
    page = (result.run_dir / "training" / "training.html").read_text(encoding="utf-8")
    assert "horizons.png" in page and "Each extra hour of notice costs" in page
    assert (result.run_dir / "training" / "horizons.png").stat().st_size > 10_000
    # Two models saved to the BentoML store, each listing exactly the selected features.
    assert len(manifest["served_models"]) == 2
    reference = result.run_dir / manifest["reference"]["path"]
    for tag in manifest["served_models"]:
        metadata = bentoml.models.get(tag).info.metadata
        assert sorted(metadata["features"]) == sorted(manifest["selected_features"])
        assert metadata["run_id"] == manifest["run_id"]
        assert metadata["data_hash"] == manifest["data_hash"]
        # The monitoring reference, saved before the models, is named in their metadata.
        assert metadata["reference_path"] == str(reference.resolve())
        assert metadata["reference_sha256"] == manifest["reference"]["sha256"]
        # Its own mean |SHAP| per input, as shares: the drift monitor's weights.
        assert set(metadata["importance"]) == set(metadata["features"])
        assert sum(metadata["importance"].values()) == pytest.approx(1, abs=1e-4)
    frame = pd.read_parquet(reference)
    assert list(frame.columns) == [
        *metadata["features"],
        "late",
        "probability_primary",
        "probability_secondary",
    ]
    assert len(frame) == manifest["reference"]["rows"] == manifest["rows"]["split"]["train"]
    assert frame["probability_primary"].between(0, 1).all()
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
    # The last step wrote the 4-page PDF, with the run's numbers and the real query output.
    text = check_report_pdf(result, manifest)
    check_query_output(text, manifest, run_store)


def test_same_seed_same_hash_and_split(prefect_harness, tmp_path):
    config = write_toy_dataset(tmp_path / "data", training=FAST, explain=EXPLAIN)
    first = _manifest(
        training_pipeline(config_path=str(config), seed=5, artifacts_dir=str(tmp_path))
    )
    # Computed again, not read back from the first run's cache: the same seed must give
    # the same results by itself.
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        second = _manifest(
            training_pipeline(config_path=str(config), seed=5, artifacts_dir=str(tmp_path))
        )
    assert second["cached"] == []
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


# --- CSVs unlike flights ------------------------------------------------------------------

#: Small grids (three hyperparameters each) keep the bookings runs to a few seconds.
SMALL_SEARCH = {
    **FAST,
    "models": {
        "logistic": {
            "grid": {"C": [0.1, 1.0], "l1_ratio": [0.0], "class_weight": [None, "balanced"]},
            "curve_param": "C",
        },
        "xgboost": {
            "grid": {"max_depth": [2, 3], "n_estimators": [60], "learning_rate": [0.1, 0.3]},
            "curve_param": "max_depth",
        },
        "mlp": {
            "grid": {
                "hidden_layer_sizes": [[16]],
                "alpha": [0.001, 0.01],
                "learning_rate_init": [0.003],
            },
            "curve_param": "alpha",
        },
    },
}
DATE_PARTS = ("arrival_date_year", "arrival_date_month", "arrival_date_day_of_month")
#: Words of the flights dataset that must never reach a report about another dataset.
FLIGHTS_WORDS = re.compile(r"(?<![a-z0-9])(flight|late|departure)", re.IGNORECASE)


def _flights_words(run_dir: Path) -> dict[str, list[str]]:
    """Every flights word in every HTML file the run wrote (our reports and the Data Docs).

    Scripts and style sheets are code, not text: GX's Data Docs style sheet holds
    ``transform: translate(...)``. Everything else (text, attributes, titles) is searched
    for words *starting* with a flights word, case-insensitive, so "flights", "Late" and
    "later" count while "translate" or "correlated" do not.
    """
    found = {}
    pages = sorted(run_dir.rglob("*.html"))
    assert pages, f"no HTML under {run_dir}"
    for page in pages:
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", page.read_text(encoding="utf-8"))
        text = re.sub(r"(?i)\sstyle=(\"[^\"]*\"|'[^']*')", " ", html.unescape(text))
        words = sorted({match.group(0) for match in FLIGHTS_WORDS.finditer(text)})
        if words:
            found[str(page.relative_to(run_dir))] = words
    return found


def _eda_text(run_dir: Path) -> str:
    return html.unescape((run_dir / "eda" / "eda.html").read_text(encoding="utf-8"))


def test_csv_without_a_date_column_runs_end_to_end(prefect_harness, tmp_path):
    frame = make_bookings_frame(rows=2500, seed=1).drop(columns=list(DATE_PARTS))
    config = write_bookings_dataset(
        tmp_path / "data", frame, training=SMALL_SEARCH, explain=EXPLAIN
    )
    # Asked for the horizon study, a CSV's run says why it does not apply.
    result = training_pipeline(
        config_path=str(config), artifacts_dir=str(tmp_path), horizon_study=True
    )
    manifest = _manifest(result)
    assert manifest["status"] == "succeeded"
    check_report_pdf(result, manifest)
    assert manifest["config"]["date_column"] is None
    assert manifest["columns"]["datetime"] == []
    assert manifest["split"].startswith("random split stratified by 'canceled'")
    # No calendar features anywhere: the models' inputs are the configured columns only.
    coefficients = pd.read_csv(result.run_dir / "training" / "coefficients.csv")
    assert not coefficients["feature"].str.startswith("date__").any()
    eda = _eda_text(result.run_dir)
    assert "names no date (neither date_column nor date_from)" in eda
    training = (result.run_dir / "training" / "training.html").read_text(encoding="utf-8")
    assert "The horizon study does not apply" in training
    assert "09_target" not in eda  # no time chart
    # The text markers were read as missing, and the EDA says how the file wrote them.
    nulls = int((frame["agent"] == "NULL").sum())
    assert nulls > 0 and f"agent as 'NULL' ({nulls:,} cells)" in eda
    assert "children as 'NA'" in eda and "meal as 'Undefined'" in eda
    assert _flights_words(result.run_dir) == {}


def test_csv_with_a_date_built_from_parts_runs_end_to_end(prefect_harness, tmp_path):
    frame = make_bookings_frame(rows=2500, seed=2)
    config = write_bookings_dataset(
        tmp_path / "data",
        frame,
        training=SMALL_SEARCH,
        explain=EXPLAIN,
        date_from=dict(zip(("year", "month", "day"), DATE_PARTS, strict=True)),
        date_column="arrival_date",
        split={"method": "time", "validation_start": "2017-03-01", "test_start": "2017-07-01"},
        checks={"null_share": {"agent": 0.2}, "date_range": ["2016-01-01", "2017-12-31"]},
    )
    result = training_pipeline(config_path=str(config), artifacts_dir=str(tmp_path))
    manifest = _manifest(result)
    assert manifest["status"] == "succeeded"
    check_report_pdf(result, manifest)
    assert manifest["columns"]["datetime"] == ["arrival_date"]
    assert manifest["split"].startswith("chronological split on 'arrival_date'")
    expected = pd.to_datetime(
        frame[list(DATE_PARTS)].astype(str).agg("-".join, axis=1), format="%Y-%B-%d"
    )
    sizes = manifest["rows"]["split"]
    assert sizes["test"] == int((expected >= "2017-07-01").sum())
    assert sizes["train"] == int((expected < "2017-07-01").sum())
    assert sizes["fold 2017-03-01 train"] == int((expected < "2017-03-01").sum())
    # The built date behaves like any date column: calendar parts are model features...
    coefficients = pd.read_csv(result.run_dir / "training" / "coefficients.csv")
    features = set(coefficients["feature"])
    assert {"date__arrival_date_month", "date__arrival_date_weekday"} <= features
    assert "date__arrival_date_hour" not in features  # dates without a time of day
    # ...and the EDA charts the target over time.
    eda = _eda_text(result.run_dir)
    assert "09_target_over_time.png" in eda and "Target over time ('arrival_date')" in eda
    assert _flights_words(result.run_dir) == {}
