"""End to end: the real API receives replayed rows, the monitor flow checks them, drift retrains.

The champion is trained on July flights only, so that its reference is one month of weather:
replaying other July rows is traffic from the reference's own distribution, and December is
not (against a model trained on January to August, every single month drifts in its weather
columns: README, "Monitoring"). Its primary model is deliberately weak (a starved network,
ROC-AUC about 0.51 on December), so that the retrained challenger must beat it; the second
gate test first installs a strong champion, then retrains a deliberately poor challenger.

The real BentoML server serves the champion on the embedded store (or ``MONGODB_URI``'s
server); ``mlops replay`` sends sampled rows to it; the ``drift-monitor`` flow runs under the
Prefect test harness and, on drift, runs the real ``training-pipeline`` flow (small
settings, sampled rows) for the challenger.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from bentos.build import build_bento
from flows.cli import main
from flows.monitor import drift_monitor
from tabular.config import DEFAULT_CONFIG, load_config
from tabular.datasets import load_raw, prepare
from tests.conftest import (
    Server,
    drop_test_database,
    fresh_database,
    save_served_pair,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

KEY = "monitor-key-0123"
COLUMNS = [
    "sched_dep",
    "carrier",
    "origin",
    "dest",
    "route",
    "distance",
    "sched_arr_hour",
    "origin_day_departures",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "pressure",
    "visib",
    "plane_age",
]
WEATHER = {"temp", "dewp", "humid", "wind_speed", "pressure", "visib"}
#: The July champion: a starved network (near chance on December) and a small XGBoost.
WEAK = {
    "primary": ("mlp", {"hidden_layer_sizes": [2], "alpha": 10.0, "learning_rate_init": 0.0001}),
    "secondary": ("xgboost", {"max_depth": 3, "n_estimators": 40, "learning_rate": 0.1}),
}
#: A champion worth keeping (about 0.69 ROC-AUC on December).
STRONG = {
    "primary": ("xgboost", {"max_depth": 3, "n_estimators": 60, "learning_rate": 0.1}),
    "secondary": ("mlp", {"hidden_layer_sizes": [16], "alpha": 0.001, "learning_rate_init": 0.003}),
}
#: Small searches: these tests check the loop, not the models' quality.
RETRAIN = {
    "training": {
        "n_iter": 1,
        "search_rows": 2000,
        "max_epochs": 4,
        "patience": 2,
        "models": {
            "logistic": {"enabled": False},
            "xgboost": {
                "grid": {"max_depth": [3], "n_estimators": [60], "learning_rate": [0.1]},
                "curve_param": "max_depth",
            },
            "mlp": {
                "grid": {
                    "hidden_layer_sizes": [[16]],
                    "alpha": [0.001],
                    "learning_rate_init": [0.003],
                },
                "curve_param": "alpha",
            },
        },
    },
    "explain": {"tree_rows": 200, "sample_rows": 40, "background_rows": 20},
    "monitoring": {"drift_share": 0.5, "min_rows": 100, "margin": 0.0},
}
#: A challenger that cannot be good: a handful of rows, stumps and a starved network.
WORSE = {
    "training": {
        "models": {
            "xgboost": {
                "grid": {"max_depth": [1], "n_estimators": [2], "learning_rate": [0.01]},
                "curve_param": "max_depth",
            },
            "mlp": {
                "grid": {
                    "hidden_layer_sizes": [[2]],
                    "alpha": [10.0],
                    "learning_rate_init": [0.0001],
                },
                "curve_param": "alpha",
            },
        },
    },
}


@dataclass
class Setup:
    config_path: Path
    worse_config_path: Path
    config: object
    data: object
    champion: dict[str, str]
    server: Server
    root: Path


def merge(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture(scope="module")
def setup(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("monitor")
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    fast = merge(raw, RETRAIN)
    fast["monitoring"]["retrain"] = {"sample": 6000}
    config_path = root / "flights.yaml"
    config_path.write_text(yaml.safe_dump(fast))
    worse = merge(fast, WORSE)
    worse["monitoring"]["retrain"] = {"sample": 1500}
    worse_config_path = root / "flights-worse.yaml"
    worse_config_path.write_text(yaml.safe_dump(worse))

    config = load_config(config_path)
    data, _ = prepare(load_raw(config), config)
    july = data[data["sched_dep"].dt.month == 7].sample(4000, random_state=5)
    champion, _ = save_served_pair(
        config,
        july.iloc[:3200].sort_values("sched_dep"),
        july.iloc[3200:].sort_values("sched_dep"),
        COLUMNS,
        WEAK,
        reference_dir=root / "champion-run",
        run_id="july-champion",
    )
    bento = build_bento(config.name, champion["primary"], champion["secondary"])

    env = {
        "MONGODB_DB": fresh_database("mlops_monitor"),
        "MLOPS_STORE_DIR": str(root / "store"),
    }
    if os.environ.get("MONGODB_URI"):
        env["MONGODB_URI"] = os.environ["MONGODB_URI"]
    saved = {name: os.environ.get(name) for name in [*env, "MLOPS_API_KEY"]}
    os.environ.update({**env, "MLOPS_API_KEY": KEY})  # the in-process monitor reads them
    server = start_server(bento, root / "server", MLOPS_API_KEY=KEY, **env)
    try:
        yield Setup(config_path, worse_config_path, config, data, champion, server, root)
    finally:
        stop_server(server)
        from store import StoreSettings, connect
        from store.connection import get_database

        connect(StoreSettings.from_env(), check=False)
        drop_test_database(get_database())
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()


def replay_period(setup: Setup, start: str, end: str, rows: int, *feedback: str) -> tuple[str, str]:
    """Replay sampled rows of a period with ``mlops replay``; wait until all are logged."""
    from store import connect, count_prediction_logs

    since = now()
    code = main(
        ["replay", "--config", str(setup.config_path), "--from", start, "--to", end,
         "--sample", str(rows), "--rate", "400", "--concurrency", "8",
         "--url", setup.server.url, *feedback]
    )  # fmt: skip
    assert code == 0
    connect()
    deadline = time.monotonic() + 30
    while count_prediction_logs(dataset="flights", since=since) < rows:
        assert time.monotonic() < deadline, "the replayed predictions were not all logged"
        time.sleep(0.2)
    return since, now()


@pytest.fixture(scope="module")
def december(setup):
    """600 December flights replayed with their outcomes: the window of drift."""
    return replay_period(setup, "2013-12-01", "2013-12-31", 600, "--with-feedback")


def served_tags(setup: Setup) -> list[str]:
    info = httpx.post(setup.server.url + "/info", json={}, timeout=10).json()
    return [model["tag"] for model in info["models"]]


def test_a_training_month_shows_no_drift_and_december_drifts_in_weather(setup, december, capsys):
    since, until = replay_period(setup, "2013-07-01", "2013-07-31", 400)
    assert "sent 400, succeeded 400, errors 0" in capsys.readouterr().out
    july = drift_monitor(
        config_path=str(setup.config_path),
        since=since,
        until=until,
        on_drift="report",
        artifacts_dir=str(setup.root / "artifacts"),
    )
    assert july.summary.status == "ok" and not july.summary.dataset_drift, july.summary.message
    assert july.summary.rows.compared == 400 and july.summary.model == setup.champion["primary"]
    assert not WEATHER & set(july.summary.drifted_columns), july.summary.drifted_columns

    result = drift_monitor(
        config_path=str(setup.config_path),
        since=december[0],
        until=december[1],
        on_drift="report",
        artifacts_dir=str(setup.root / "artifacts"),
    )
    summary = result.summary
    assert summary.status == "drift" and summary.dataset_drift, summary.message
    assert {"temp", "dewp"} <= set(summary.drifted_columns) and len(
        WEATHER & set(summary.drifted_columns)
    ) >= 4, summary.drifted_columns
    assert result.action == "report" and "would retrain" in result.note
    assert summary.rows.labelled == summary.rows.compared >= 580
    assert summary.performance is not None and 0 < summary.performance.current["roc_auc"] < 1
    folder = setup.root / "artifacts" / "monitoring" / summary.check_id
    assert (folder / "report.html").stat().st_size > 100_000
    assert (folder / "performance.html").is_file()
    written = json.loads((folder / "summary.json").read_text())
    assert written["status"] == "drift" and written["drifted_columns"] == summary.drifted_columns
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(setup.root / "artifacts" / "monitoring" / "workspace"))
    (project,) = workspace.search_project("flights")
    runs = {str(run) for run in workspace.list_runs(project.id)}
    assert {summary.outputs["workspace_drift"], summary.outputs["workspace_performance"]} <= runs


def test_drift_retrains_and_a_better_challenger_is_served_without_losing_requests(setup, december):
    from store import find_decisions

    before = served_tags(setup)
    assert before == [setup.champion["primary"], setup.champion["secondary"]]
    example = httpx.post(setup.server.url + "/info", json={}, timeout=10).json()["example"]
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic():  # a client that keeps predicting while the service reloads
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                answer = client.post(setup.server.url + "/predict", json=example)
                answers.append((answer.status_code, answer.json().get("model_tag", answer.text)))

    client = threading.Thread(target=traffic)
    client.start()
    try:
        result = drift_monitor(
            config_path=str(setup.config_path),
            since=december[0],
            until=december[1],
            on_drift="retrain",
            service_url=setup.server.url,
            artifacts_dir=str(setup.root / "artifacts"),
        )
        time.sleep(0.5)
    finally:
        stop.set()
        client.join()
    decision = result.decision
    assert result.action == "decided" and decision is not None
    assert decision.window["source"] == "feedback" and decision.window["rows"] >= 580
    assert decision.window["date_from"].startswith("2013-12")
    assert decision.champion == before and decision.metric == "roc_auc"
    assert decision.challenger_score > decision.champion_score, decision.reason
    assert decision.promoted and decision.bento and decision.service_reload.startswith("200")
    assert find_decisions("flights").items[0] == decision
    # The challenger ran on the rows before December: folds August to November, the last
    # one validating on November, and its final fit on all of them (November included).
    run = json.loads(
        (setup.root / "artifacts" / "runs" / decision.challenger_run / "manifest.json").read_text()
    )
    assert run["status"] == "succeeded" and run["until"] == "2013-12-01" and run["bento"] is None
    assert run["config"]["split"]["folds"] == ["2013-08-01", "2013-09-01", "2013-10-01",
                                               "2013-11-01"]  # fmt: skip
    assert run["config"]["split"]["test_start"] == "2013-12-01"
    fit = run["rows"]["final_fit"]
    assert fit["rows"] == run["rows"]["used"] and fit["to"].startswith("2013-11-30")
    assert set(run["steps"]) == {"load", "validate", "train"}  # no horizon study, no store
    assert sorted(run["selected_features"]) == sorted(COLUMNS)
    # The running service now answers with the challenger; no request failed on the way.
    assert served_tags(setup) == decision.challenger
    statuses = {status for status, _ in answers}
    tags = [tag for _, tag in answers]
    assert statuses == {200} and len(answers) > 20
    assert tags[0] == before[0] and tags[-1] == decision.challenger[0]
    switch = tags.index(decision.challenger[0])
    assert set(tags[switch:]) == {decision.challenger[0]}


def install_strong_champion(setup: Setup) -> list[str]:
    """Train a good pair on January-September, build its Bento and have the service reload it."""
    data = setup.data
    rows = data[data["sched_dep"] < "2013-11-01"].sample(6000, random_state=11)
    tags, _ = save_served_pair(
        setup.config,
        rows[rows["sched_dep"] < "2013-10-01"].sort_values("sched_dep"),
        rows[rows["sched_dep"] >= "2013-10-01"].sort_values("sched_dep"),
        COLUMNS,
        STRONG,
        reference_dir=setup.root / "strong-run",
        run_id="strong-champion",
    )
    build_bento(setup.config.name, tags["primary"], tags["secondary"])
    answer = httpx.post(
        setup.server.url + "/reload", json=tags, headers={"X-API-Key": KEY}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["current"] == [tags["primary"], tags["secondary"]]
    return [tags["primary"], tags["secondary"]]


def test_a_worse_challenger_keeps_the_champion(setup, december):
    import bentoml

    from store import find_decisions

    champion = install_strong_champion(setup)
    assert served_tags(setup) == champion
    latest_bento = max(bentoml.bentos.list(), key=lambda b: b.info.creation_time).tag
    result = drift_monitor(
        config_path=str(setup.worse_config_path),
        since=december[0],
        until=december[1],
        on_drift="retrain",
        service_url=setup.server.url,
        artifacts_dir=str(setup.root / "artifacts"),
    )
    decision = result.decision
    assert decision is not None and decision.promoted is False, result.note
    assert decision.champion == champion
    assert decision.challenger_score < decision.champion_score
    assert decision.reason.startswith("keep the champion")
    assert decision.bento is None and decision.service_reload is None
    assert find_decisions("flights").items[0] == decision
    assert served_tags(setup) == champion
    assert max(bentoml.bentos.list(), key=lambda b: b.info.creation_time).tag == latest_bento


def test_reload_refuses_a_wrong_key_an_unknown_tag_and_other_inputs(setup):
    url, tags = setup.server.url + "/reload", served_tags(setup)
    body = {"primary": tags[0], "secondary": tags[1]}
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    assert httpx.post(url, json=body, headers={"X-API-Key": "nope"}, timeout=30).status_code == 403
    unknown = httpx.post(
        url, json={**body, "secondary": "flights-secondary:nosuchversion"},
        headers={"X-API-Key": KEY}, timeout=30,
    )  # fmt: skip
    assert unknown.status_code == 404 and "secondary" in unknown.text
    data = setup.data[setup.data["sched_dep"].dt.month == 7].sample(1500, random_state=2)
    other, _ = save_served_pair(
        setup.config,
        data.iloc[:1200].sort_values("sched_dep"),
        data.iloc[1200:].sort_values("sched_dep"),
        COLUMNS[:-1],  # one input fewer than the served request schema
        WEAK,
        reference_dir=setup.root / "other-run",
    )
    refused = httpx.post(url, json=other, headers={"X-API-Key": KEY}, timeout=60)
    assert refused.status_code == 409 and "restart the service" in refused.text
    assert served_tags(setup) == tags
