"""The challenger learns from the newest rows: fitted on every row before the judged window.

The real ``challenger-training`` flow runs on a small dated dataset (daily orders from
January to the end of May); the judged window is May. The fitted models are read back from
the BentoML model store: the scaler of the logistic pipeline counts the rows its final fit
saw, which must be every row dated before May (April, the period just before the window,
included) and none of May.
"""

from __future__ import annotations

import datetime as dt
import json

import bentoml
import pandas as pd
import pytest

from flows.monitor import challenger_training
from monitoring.champion import LabelledWindow, retraining_plan
from monitoring.reference import read_importance
from tabular.config import load_config
from tabular.datasets import load_raw, prepare
from tests.conftest import make_toy_frame, write_toy_dataset

SMALL = {
    "n_iter": 1,
    "search_rows": 2000,
    "max_epochs": 4,
    "patience": 2,
    "models": {
        "logistic": {
            "grid": {"C": [1.0], "l1_ratio": [0.0], "class_weight": [None]},
            "curve_param": "C",
        },
        "xgboost": {
            "grid": {"max_depth": [2], "n_estimators": [30], "learning_rate": [0.3]},
            "curve_param": "max_depth",
        },
        "mlp": {
            "enabled": False,
            "grid": {"hidden_layer_sizes": [[4]], "alpha": [0.01], "learning_rate_init": [0.01]},
            "curve_param": "alpha",
        },
    },
}


def scaler_rows(tag: str) -> int:
    """Rows the saved pipeline's numeric scaler was fitted on (its final fit)."""
    pipeline = bentoml.sklearn.load_model(tag)
    transformer = pipeline.named_steps["preprocess"]
    counts = {
        int(step.n_samples_seen_)
        for _, part, _ in transformer.transformers_
        if hasattr(part, "named_steps")
        for step in part.named_steps.values()
        if hasattr(step, "n_samples_seen_")
    }
    assert len(counts) == 1, counts
    return counts.pop()


def test_the_challengers_final_fit_holds_the_period_before_the_window_and_none_of_it(
    prefect_harness, tmp_path
):
    config_path = write_toy_dataset(
        tmp_path / "data",
        make_toy_frame(rows=600),  # every 6 hours from 2021-01-01 to 2021-05-30
        training=SMALL,
        explain={"tree_rows": 100, "sample_rows": 40, "background_rows": 20},
        monitoring={"retrain": {"folds": 3, "fold_months": 1}},
    )
    config = load_config(config_path)
    data, _ = prepare(load_raw(config), config)
    dates = data["order_date"]
    window = LabelledWindow(
        source="feedback", rows=100, positives=30, date_from=dt.datetime(2021, 5, 1, 6)
    )
    overrides, until = retraining_plan(config, window, ["order_date", "channel", "price"])
    assert until == "2021-05-01"
    assert overrides["split"] == {
        "method": "time",
        "validation_start": None,
        "folds": ["2021-02-01", "2021-03-01", "2021-04-01"],
        "test_start": "2021-05-01",
    }
    run = challenger_training(
        config_path=str(config_path),
        overrides=overrides,
        until=until,
        artifacts_dir=str(tmp_path / "artifacts"),
    )
    before = int((dates < pd.Timestamp("2021-05-01")).sum())
    april = int(
        ((dates >= pd.Timestamp("2021-04-01")) & (dates < pd.Timestamp("2021-05-01"))).sum()
    )
    assert april > 100 and before < len(data)
    logistic = next(
        tag
        for tag, family in zip(run.challenger.tags, run.challenger.families, strict=True)
        if family == "logistic"
    )
    # The final fit saw every row before May (April included) and not one row of May.
    assert scaler_rows(logistic) == before
    fit = run.challenger.final_fit
    assert fit.rows == before and fit.date_to < dt.datetime(2021, 5, 1)
    assert fit.date_to >= dt.datetime(2021, 4, 30) and fit.date_from == dt.datetime(2021, 1, 1)
    assert fit.last_fold == "fit before 2021-04-01, scored from 2021-04-01 to before 2021-05-01"
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["until"] == "2021-05-01"
    assert manifest["rows"]["used"] == before and manifest["rows"]["final_fit"]["rows"] == before
    assert set(manifest["steps"]) == {"load", "validate", "train"}  # no EDA, study, store, report
    assert manifest["split"].startswith("chronological on 'order_date': 3 rolling-origin folds")
    assert manifest["split"].endswith("(no test part: the window is the test)")
    assert manifest["selected_features"] == ["order_date", "channel", "price"]
    # Each saved model carries its own importance for the monitor's weights.
    for tag in run.challenger.tags:
        shares = read_importance(
            bentoml.models.get(tag).info.metadata, manifest["selected_features"]
        )
        assert shares is not None and sum(shares.values()) == pytest.approx(1)
        assert max(shares, key=shares.get) == "price"  # the toy target depends on price most


def test_a_window_without_earlier_rows_cannot_retrain(tmp_path):
    from monitoring.retrain import usable_folds
    from tabular.errors import DatasetError

    config = load_config(write_toy_dataset(tmp_path / "data"))
    window = LabelledWindow(
        source="feedback", rows=100, positives=30, date_from=dt.datetime(2021, 1, 2)
    )
    overrides, _ = retraining_plan(config, window, ["order_date", "price"])
    data, _ = prepare(load_raw(config), config)
    early = data[data["order_date"] < pd.Timestamp("2021-01-02")]
    with pytest.raises(DatasetError, match="no retraining fold has rows to fit on"):
        usable_folds(early, config.with_overrides(overrides))
