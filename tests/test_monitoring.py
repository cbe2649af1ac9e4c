"""Drift monitoring on controlled data: Evidently's verdicts, the check's statuses, the gate.

The drift tests build reference and current frames whose differences are known; the check
tests save a small served model (with its reference) to the BentoML store and write its
prediction logs to a fresh store (embedded, or ``MONGODB_URI``'s server).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bentos.runtime import incompatible
from flows.cli import main
from monitoring.champion import LabelledWindow, decide, retraining_plan
from monitoring.check import Window, WindowError, run_check
from monitoring.drift import DriftSettings, DriftSettingsError, compare
from monitoring.reference import ReferenceError, load_reference
from monitoring.replay import replay
from store.journal import insert_documents, to_prediction_document
from tabular.config import DEFAULT_CONFIG, load_config
from tabular.contract import FieldSpec, InputContract
from tabular.datasets import load_raw, prepare, split_data
from tabular.errors import ConfigError
from tests.conftest import make_toy_frame, save_served_pair, write_toy_dataset
from tests.test_store import fresh_store

ROLES = {"number": ["x", "y"], "category": ["c", "d"], "datetime": []}
TARGET = "label"


def controlled(rows: int, seed: int, shift: float = 0.0, mix=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    """Two numbers, two categories, a probability and a label, drawn from known laws."""
    rng = np.random.default_rng(seed)
    probability = rng.uniform(0, 1, rows)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, rows),
            "y": rng.normal(10.0, 2.0, rows),
            "c": rng.choice(["a", "b", "c"], rows, p=list(mix)),
            "d": rng.choice(["u", "v"], rows),
            "predicted_probability": probability,
            TARGET: (rng.uniform(0, 1, rows) < probability).astype(float),
        }
    )


def test_identical_distributions_show_no_drift():
    found = compare(
        controlled(2000, seed=1),
        controlled(5000, seed=2),
        ROLES,
        DriftSettings(drift_share=0.3, min_rows=50),
        target=TARGET,
        threshold=0.5,
    )
    assert [c.column for c in found.columns] == ["x", "y", "c", "d", "predicted_probability"]
    assert not any(c.drifted for c in found.columns), [c.model_dump() for c in found.columns]
    assert found.drifted_share == 0 and found.dataset_drift is False
    assert found.prediction is not None and found.prediction.drifted is False


def test_a_shifted_number_and_a_changed_mix_flag_exactly_those_columns():
    found = compare(
        controlled(2000, seed=1, shift=1.0, mix=(0.2, 0.3, 0.5)),
        controlled(5000, seed=2),
        ROLES,
        DriftSettings(drift_share=0.3, min_rows=50),
        target=TARGET,
        threshold=0.5,
    )
    assert {c.column for c in found.columns if c.drifted} == {"x", "c"}
    # Two of four features drift (Evidently counts the prediction too: 2 of 5); with equal
    # weights (no importance given) they hold half of the importance.
    assert found.drifted_share == pytest.approx(2 / 4)
    assert found.evidently_share == pytest.approx(2 / 5) and found.evidently_drift is True
    assert found.weighted_drift == pytest.approx(0.5) and found.dataset_drift is True
    by_column = {c.column: c for c in found.columns}
    # Large samples: Evidently's distances (drift at or above the threshold).
    assert (
        by_column["x"].score_kind == "distance" and by_column["x"].score >= by_column["x"].threshold
    )
    assert by_column["x"].severity == pytest.approx(
        by_column["x"].score / by_column["x"].threshold, abs=1e-4
    )
    assert by_column["c"].kind == "category" and by_column["x"].kind == "number"
    assert by_column["x"].reasons == ["distribution"] and by_column["y"].reasons == []
    # Feedback on every row: quality is measured at the model's threshold.
    assert found.performance is not None and found.performance.rows == 2000
    assert 0.5 < found.performance.current["roc_auc"] <= 1
    assert set(found.snapshots) == {"drift", "performance"}
    # The verdict follows the importance: the same drift in columns the model barely uses
    # holds a small share of it.
    light = compare(
        controlled(2000, seed=1, shift=1.0, mix=(0.2, 0.3, 0.5)),
        controlled(5000, seed=2),
        ROLES,
        DriftSettings(drift_share=0.5, min_rows=50),
        target=TARGET,
        threshold=0.5,
        importance={"x": 0.02, "y": 0.6, "c": 0.01, "d": 0.37},
    )
    assert light.dataset_drift is False and light.weighted_drift == pytest.approx(0.03)
    assert light.drifted_columns == ["x", "c"]  # ranked: x drifted further


def test_method_overrides_statistical_tests_and_bad_settings():
    current = controlled(300, seed=3, shift=0.5)
    current.loc[:, TARGET] = np.nan  # no feedback
    settings = DriftSettings(drift_share=0.5, methods={"x": "ks", "c": "psi"}, min_rows=50)
    found = compare(
        current, controlled(3000, seed=4), ROLES, settings, target=TARGET, threshold=0.5
    )
    x = next(c for c in found.columns if c.column == "x")
    assert x.method == "ks" and x.score_kind == "p_value" and x.drifted and x.score < 0.05
    assert found.performance is None and found.performance_note == "no feedback in the window"
    with pytest.raises(DriftSettingsError, match="unknown column.*'colour'"):
        compare(
            current,
            controlled(3000, seed=4),
            ROLES,
            DriftSettings(drift_share=0.5, methods={"colour": "psi"}),
            target=TARGET,
            threshold=0.5,
        )
    with pytest.raises(DriftSettingsError, match="No stattest found of name nonsense"):
        compare(
            current,
            controlled(3000, seed=4),
            ROLES,
            DriftSettings(drift_share=0.5, methods={"x": "nonsense"}),
            target=TARGET,
            threshold=0.5,
        )


def test_a_column_without_values_in_the_window_is_skipped_and_flagged_not_a_crash():
    current = controlled(300, seed=5)
    current["y"] = np.nan
    found = compare(
        current,
        controlled(3000, seed=6),
        ROLES,
        DriftSettings(drift_share=0.5, min_rows=500),
        target=TARGET,
        threshold=0.5,
    )
    assert found.skipped == {"y": "no value in the window"}
    # No distribution to compare, but a column that lost every value has drifted.
    y = next(c for c in found.columns if c.column == "y")
    assert y.method is None and y.reasons == ["missing values"] and y.missing_current == 1
    assert found.drifted_columns == ["y"]
    assert found.performance_note == "not enough feedback (300 < 500 labelled rows)"


# -- the check on a served model and its logs ---------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Two small models of a toy shop dataset, saved with their reference, as a run does."""
    folder = tmp_path_factory.mktemp("shop")
    config = load_config(write_toy_dataset(folder / "data", make_toy_frame(1500), name="shop"))
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=7)
    params = {"C": 1.0, "l1_ratio": 0.0, "class_weight": None}
    tags, pipelines = save_served_pair(
        config,
        split.train,
        split.validation,
        ["order_date", "channel", "region", "price", "quantity"],
        {"primary": ("logistic", params), "secondary": ("logistic", {**params, "C": 0.1})},
        reference_dir=folder / "run",
    )
    return config, split, tags, pipelines


def write_logs(config, rows: pd.DataFrame, tag: str, pipeline, *, start: dt.datetime, edits=None):
    """Store one prediction log per row, as the service writes them; ``edits`` spoils some."""
    from bentos.registry import served_model_from_tag

    contract = served_model_from_tag(tag).contract
    name, version = tag.split(":")
    probabilities = pipeline.predict_proba(rows[contract.names])[:, 1]
    documents = []
    for i, (record, probability) in enumerate(
        zip(rows.to_dict("records"), probabilities, strict=True)
    ):
        features = contract.coerce(contract.json_row(record))
        if edits and i in edits:
            features = edits[i](features)
        documents.append(
            to_prediction_document(
                {
                    "request_id": f"{version}-{start:%H%M%S}-{i:05d}",
                    "timestamp": start + dt.timedelta(seconds=i),
                    "model_name": name,
                    "model_version": version,
                    "features": features,
                    "prediction": int(probability >= 0.5),
                    "probability": float(probability),
                    "latency_ms": 1.0,
                    "dataset": config.name,
                    "run_id": "run-test",
                }
            )
        )
    assert insert_documents(documents).inserted == len(rows)
    return [d["_id"] for d in documents]


def test_thin_window_is_a_status_with_its_count(shop, tmp_path, monkeypatch):
    config, split, tags, pipelines = shop
    for _ in fresh_store(tmp_path, monkeypatch):
        write_logs(config, split.test.head(5), tags["primary"], pipelines["primary"],
                   start=dt.datetime(2026, 1, 1))  # fmt: skip
        result = run_check(
            config,
            Window(last=100),
            DriftSettings(drift_share=0.5, min_rows=50),
            out_root=tmp_path / "monitoring",
            workspace=tmp_path / "workspace",
        )
        summary = result.summary
        assert summary.status == "not_enough_data"
        assert summary.message.startswith("not enough data (5 < 50)")
        assert summary.rows.logged == 5 and summary.model == tags["primary"]
        written = json.loads((result.folder / "summary.json").read_text())
        assert (
            written["status"] == "not_enough_data" and not (result.folder / "report.html").exists()
        )
        # No log at all: the same status, with 0.
        empty = run_check(
            config,
            Window(since=dt.datetime(2030, 1, 1)),
            DriftSettings(drift_share=0.5, min_rows=50),
            out_root=tmp_path / "monitoring",
            workspace=None,
        )
        assert empty.summary.message.startswith("not enough data (0 < 50)")


def test_bad_logs_are_counted_and_the_rest_compared(shop, tmp_path, monkeypatch):
    config, split, tags, pipelines = shop
    rows = pd.concat([split.validation, split.test]).head(260)
    spoiled = {i: (lambda f: {k: v for k, v in f.items() if k != "price"}) for i in range(7)}
    spoiled.update({i: (lambda f: {**f, "price": "cheap"}) for i in range(7, 12)})
    spoiled[12] = lambda f: {**f, "colour": "red"}
    for _ in fresh_store(tmp_path, monkeypatch):
        ids = write_logs(config, rows, tags["primary"], pipelines["primary"],
                         start=dt.datetime(2026, 1, 1), edits=spoiled)  # fmt: skip
        result = run_check(
            config,
            Window(last=1000),
            DriftSettings(drift_share=0.5, min_rows=50),
            out_root=tmp_path / "monitoring",
            workspace=tmp_path / "workspace",
        )
    summary = result.summary
    assert summary.status in ("ok", "drift"), summary.message
    assert summary.rows.logged == 260 and summary.rows.refused == 13
    assert summary.rows.compared == 247 and summary.rows.labelled == 0
    problems = {(p.field, p.message): p for p in summary.problems}
    assert problems[("price", "required field is missing")].rows == 7
    assert problems[("price", "Input should be a valid number")].rows == 5
    assert problems[("colour", "not an input of this model")].examples == [ids[12]]
    assert {c.column for c in summary.columns} == {"channel", "region", "price", "quantity",
                                                   "predicted_probability"}  # fmt: skip
    assert summary.prediction_drift is not None
    assert summary.performance is None and summary.performance_note == "no feedback in the window"
    assert set(summary.seconds) == {"read", "coerce", "report", "write"}
    assert (result.folder / "report.html").stat().st_size > 10_000
    assert json.loads((result.folder / "summary.json").read_text())["rows"]["refused"] == 13
    # The Evidently workspace holds the dataset's project with this check's snapshot.
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(tmp_path / "workspace"))
    (project,) = workspace.search_project("shop")
    assert sorted(str(run) for run in workspace.list_runs(project.id)) == sorted(
        [summary.outputs["workspace_drift"], summary.outputs["workspace_signals"]]
    )


def test_a_window_of_months_the_reference_lacks_is_compared_with_their_earlier_logs(
    shop, tmp_path, monkeypatch
):
    config, split, tags, pipelines = shop
    rows = pd.concat([split.validation, split.test])
    # Two windows of March orders; the reference holds about 100 rows of each month, fewer
    # than min_rows, so it does not cover March on its own.
    march = pd.Timestamp("2021-03-01") + pd.to_timedelta(np.arange(200) * 3, unit="h")
    settings = DriftSettings(reference="same_period", min_rows=150)
    checks = []
    for _ in fresh_store(tmp_path, monkeypatch):
        for hour in (1, 2):
            start = dt.datetime(2026, 2, 1, hour)
            window = rows.sample(200, random_state=hour).assign(order_date=march)
            write_logs(config, window, tags["primary"], pipelines["primary"], start=start)
            checks.append(
                run_check(
                    config,
                    Window(since=start, until=start + dt.timedelta(minutes=30)),
                    settings,
                    out_root=tmp_path / "m",
                    workspace=None,
                ).summary
            )
    first, second = (check.reference for check in checks)
    assert first.mode == "same_period" and first.description.startswith(
        "training rows of Feb, Mar, Apr (the nearest months to Mar;"
    )
    assert second.rows == 200 and second.description == (
        "earlier logs of Mar (the training rows hold none of those months)"
    )
    assert json.loads((Path(checks[1].outputs["summary"])).read_text())["reference"] == (
        second.model_dump()
    )


def test_a_model_without_its_reference_is_a_status(shop, tmp_path, monkeypatch):
    config, split, tags, pipelines = shop
    from bentos.registry import served_model_from_tag

    served = served_model_from_tag(tags["primary"])
    with pytest.raises(ReferenceError, match="changed since its run saved it"):
        load_reference(served.reference_path, "0" * 64)
    with pytest.raises(ReferenceError, match="saved without a reference frame"):
        load_reference(None, None)
    moved = tmp_path / "moved"
    import shutil

    original = served.reference_path
    shutil.move(original, moved)
    try:
        for _ in fresh_store(tmp_path, monkeypatch):
            write_logs(config, split.test.head(120), tags["primary"], pipelines["primary"],
                       start=dt.datetime(2026, 1, 2))  # fmt: skip
            result = run_check(
                config,
                Window(last=500),
                DriftSettings(drift_share=0.5, min_rows=50),
                out_root=tmp_path / "monitoring",
                workspace=None,
            )
    finally:
        shutil.move(moved, original)
    assert result.summary.status == "no_reference"
    assert "does not exist" in result.summary.message and tags["primary"] in result.summary.message


# -- windows, settings, the gate --------------------------------------------------------------


def test_windows_are_parsed_or_refused_in_one_sentence():
    now = dt.datetime(2026, 1, 1, 12)
    assert Window.parse(default_last=500) == Window(last=500)
    assert Window.parse(since_minutes=60, default_last=500, now=now) == Window(
        since=dt.datetime(2026, 1, 1, 11)
    )
    assert Window.parse(since="2026-01-01T10:00:00+01:00", last=10, default_last=5).since == (
        dt.datetime(2026, 1, 1, 9)
    )
    with pytest.raises(WindowError, match="either since or since_minutes"):
        Window.parse(since="2026-01-01", since_minutes=5, default_last=1)
    with pytest.raises(WindowError, match="since: expected an ISO 8601"):
        Window.parse(since="yesterday", default_last=1)
    with pytest.raises(WindowError, match="must be before until"):
        Window.parse(since="2026-01-02", until="2026-01-01", default_last=1)


def test_cli_reports_a_bad_window_in_one_line(capsys, monkeypatch):
    assert main(["monitor", "--since", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: since: expected an ISO 8601") and err.count("\n") == 1
    assert main(["replay", "--from", "2013-12-01", "--to", "2013-12-02", "--url",
                 "http://127.0.0.1:9"]) == 2  # fmt: skip
    assert "cannot read http://127.0.0.1:9/info" in capsys.readouterr().err
    # A malformed date is named first, whether or not the API runs.
    assert main(["replay", "--from", "2013-13-01", "--to", "2013-12-02", "--url",
                 "http://127.0.0.1:9"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: --from/--to must be ISO 8601 dates") and err.count("\n") == 1
    # Outcomes need the API's key (/feedback refuses them without it): said before any call.
    monkeypatch.delenv("MLOPS_API_KEY", raising=False)
    assert main(["replay", "--from", "2013-12-01", "--to", "2013-12-02", "--url",
                 "http://127.0.0.1:9", "--with-feedback"]) == 2  # fmt: skip
    assert "needs the API's write key: set MLOPS_API_KEY" in capsys.readouterr().err


def test_the_gate_promotes_only_beyond_the_margin():
    assert decide(0.70, 0.71, 0.005, "roc_auc").promoted is True
    kept = decide(0.70, 0.704, 0.005, "roc_auc")
    assert kept.promoted is False and "0.7040 does not beat the champion's 0.7000" in kept.reason
    assert decide(0.70, 0.69, 0.0, "roc_auc").promoted is False


def test_retraining_uses_rows_before_the_window_and_the_champions_inputs(toy_config):
    config = load_config(toy_config).with_overrides(
        {"monitoring": {"retrain": {"folds": 2, "fold_months": 2}}}
    )
    window = LabelledWindow(
        source="feedback", rows=100, positives=30, date_from=dt.datetime(2021, 5, 17, 6)
    )
    overrides, until = retraining_plan(config, window, ["order_date", "channel", "price"])
    # Rolling folds that end where the window starts; no test part: the window is the test.
    assert until == "2021-05-17"
    assert overrides["split"] == {
        "method": "time",
        "validation_start": None,
        "folds": ["2021-01-17", "2021-03-17"],
        "test_start": "2021-05-17",
    }
    restricted = config.with_overrides(overrides)
    assert restricted.feature_columns == ["order_date", "channel", "price"]
    assert restricted.id_columns == ["order_id", "region", "quantity"]
    assert restricted.explain.top_k == 3
    with pytest.raises(ConfigError, match="'colour' are not features"):
        config.restricted_to(["colour"])


def test_a_challenger_takes_exactly_the_champions_point_in_time_inputs():
    config = load_config(DEFAULT_CONFIG)
    assert config.prediction_horizon > 0 and len(config.point_in_time) > 1
    inputs = ["sched_dep", "carrier", "distance", "origin_recent_dep_delay"]
    restricted = config.with_overrides(config.restricted_to(inputs))
    assert restricted.feature_columns == inputs
    assert restricted.point_in_time == ["origin_recent_dep_delay"]
    assert set(config.point_in_time) - {"origin_recent_dep_delay"} <= set(restricted.id_columns)


def test_reload_needs_the_same_request_schema():
    def contract(*fields):
        return InputContract(dataset="d", fields=[FieldSpec(**f) for f in fields])

    served = contract(
        {"name": "a", "kind": "number", "nullable": True}, {"name": "b", "kind": "category"}
    )
    assert incompatible(served, served) is None
    stricter = contract({"name": "a", "kind": "number"}, {"name": "b", "kind": "category"})
    assert "never saw a null" in incompatible(served, stricter)
    assert incompatible(stricter, served) is None  # the new model also imputes: fine
    other = contract({"name": "a", "kind": "number", "nullable": True})
    assert "restart the service" in incompatible(served, other)


# -- replay: bounded rate and concurrency ----------------------------------------------------------


class _JsonHandler(BaseHTTPRequestHandler):
    """A fake API's handler: answers JSON, logs nothing."""

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class _Counting(_JsonHandler):
    lock = threading.Lock()
    inflight = peak = 0
    bodies: list = []
    keys: list = []

    def do_POST(self):  # noqa: N802 - the handler's API
        cls = type(self)
        with cls.lock:
            cls.inflight += 1
            cls.peak = max(cls.peak, cls.inflight)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        threading.Event().wait(0.02)
        with cls.lock:
            cls.inflight -= 1
            cls.bodies.append((self.path, body))
            if self.path == "/feedback":
                cls.keys.append(self.headers.get("X-API-Key"))
        status = 200 if self.path == "/feedback" or body.get("ok", True) else 400
        self.answer(status, {"request_id": f"r{len(cls.bodies)}"})


def test_replay_bounds_rate_and_concurrency_and_posts_feedback():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        bodies = [{"i": i, "ok": i != 3} for i in range(40)]
        started = dt.datetime.now()
        summary = replay(
            f"http://127.0.0.1:{server.server_port}",
            bodies,
            [i % 2 for i in range(40)],
            rate=100,
            concurrency=3,
            api_key="k3y",
        )
        elapsed = (dt.datetime.now() - started).total_seconds()
    finally:
        server.shutdown()
    assert (summary.sent, summary.succeeded, summary.errors) == (40, 39, 1)
    assert summary.statuses == {"400": 1} and summary.feedback_sent == 39
    # Request 39 may not leave before 39/100 s, and never more than 3 were in flight.
    assert elapsed >= 0.39 and _Counting.peak <= 3
    feedback = [body for path, body in _Counting.bodies if path == "/feedback"]
    assert sorted(b["actual"] for b in feedback) == sorted(i % 2 for i in range(40) if i != 3)
    assert _Counting.keys == ["k3y"] * 39  # /feedback needs the API's key


# -- the Evidently UI dashboard -----------------------------------------------------------------


def start_evidently_ui(workspace, folder):
    """Start ``evidently ui`` on a free port over a workspace; return the process and URL."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import free_port

    port = free_port()
    log = folder / f"evidently-{port}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "evidently"), "ui", "--workspace", str(workspace),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"evidently ui exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/api/projects/", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"evidently ui not ready in 90 s:\n{log.read_text()[-3000:]}")


def panel_series(
    url: str, dataset: str, title: str, until: str | None = None
) -> tuple[dict, dict[str, list]]:
    """Read a dashboard panel and its series as the UI's dashboard page does (its HTTP API).

    ``until``: only the snapshots up to this time (the dashboard's time range).
    """
    import httpx

    (project,) = [p for p in httpx.get(url + "/api/projects/").json() if p["name"] == dataset]
    dashboard = httpx.get(f"{url}/api/v2/dashboards/{project['id']}").json()
    (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
    filters = [
        {k: value[k] for k in ("tags", "metadata", "metric", "metric_labels")}
        for value in panel["values"]
    ]
    answer = httpx.post(
        f"{url}/api/v2/snapshots/{project['id']}/data_series_batch",
        params={"timestamp_end": until} if until else None,
        json={"series_filter": filters},
    )
    assert answer.status_code in (200, 201), answer.text
    series = {
        panel["values"][s["filter_index"]]["legend"]: s["values"] for s in answer.json()["series"]
    }
    snapshots = httpx.get(f"{url}/api/projects/{project['id']}/snapshots").json()
    return {
        "panel": panel,
        "types": [p["plot_params"]["plot_type"] for p in dashboard["panels"]],
        "snapshots": snapshots,
    }, series


def test_the_dashboard_plots_the_weighted_drift_each_check_of_a_replay_stored(
    shop, tmp_path, monkeypatch
):
    import os
    import signal

    config, split, tags, pipelines = shop
    rows = pd.concat([split.validation, split.test]).head(240)
    workspace = tmp_path / "workspace"
    summaries = []
    settings = DriftSettings(reference="whole", min_rows=50)
    for _ in fresh_store(tmp_path, monkeypatch):
        # A replay sequence: clean, then prices in other units, then worse.
        for hour, factor in enumerate([1.0, 1.6, 3.0], start=1):
            start = dt.datetime(2026, 1, 1, hour)
            write_logs(config, rows.assign(price=rows["price"] * factor), tags["primary"],
                       pipelines["primary"], start=start)  # fmt: skip
            window = Window(since=start, until=start + dt.timedelta(minutes=30))
            result = run_check(
                config, window, settings, out_root=tmp_path / "m", workspace=workspace
            )
            summaries.append(result.summary)
    stored = [s.weighted_drift for s in summaries]
    assert stored[0] < stored[1] <= stored[2] and summaries[2].dataset_drift
    process, url = start_evidently_ui(workspace, tmp_path)
    try:
        found, series = panel_series(url, "shop", "Importance-weighted drift")
        # One bar per check and per series, the stored values in the checks' order.
        assert found["panel"]["plot_params"]["plot_type"] == "bar"
        assert series["importance-weighted drift (decides)"] == pytest.approx(stored)
        assert series["alarm threshold"] == [settings.importance_share] * 3
        _, prediction = panel_series(url, "shop", "Prediction drift")
        assert prediction["prediction drift (1 = its threshold)"] == pytest.approx(
            [s.prediction_drift.severity for s in summaries]
        )
        # A line chart draws no mark for a lone check: every panel is a bar or a counter,
        # and the dashboard's range up to the first check holds its one value.
        assert set(found["types"]) == {"bar", "counter"}
        first = next(
            snapshot["timestamp"]
            for snapshot in found["snapshots"]
            if snapshot["name"] == f"{summaries[0].check_id} signals"
        )
        _, lone = panel_series(url, "shop", "Importance-weighted drift", until=first)
        assert lone["importance-weighted drift (decides)"] == pytest.approx(stored[:1])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


class _LateLogs(_JsonHandler):
    """Answers /feedback with 404 until a request id was asked about twice (a journaled log)."""

    lock = threading.Lock()
    asked: dict = {}

    def do_POST(self):  # noqa: N802 - the handler's API
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/predict":
            status, answer = 200, {"request_id": f"r{body['i']}"}
        else:
            with cls.lock:
                cls.asked[body["request_id"]] = cls.asked.get(body["request_id"], 0) + 1
                times = cls.asked[body["request_id"]]
            late, final = body["request_id"] == "r1", body["request_id"] == "r2"
            status = 409 if final else 404 if late and times < 3 else 200
            answer = {"error": "not yet"} if status != 200 else {"ok": True}
        self.answer(status, answer)


def test_replay_posts_an_outcome_again_while_its_log_is_not_stored_and_never_after_a_409(
    monkeypatch,
):
    import monitoring.replay as replay_module

    monkeypatch.setattr(replay_module, "FEEDBACK_RETRY_S", (0.01, 0.01, 0.01, 0.01))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LateLogs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        summary = replay(
            f"http://127.0.0.1:{server.server_port}",
            [{"i": i} for i in range(4)],
            [1, 0, 1, 0],
            rate=100,
            concurrency=2,
            api_key="k",
        )
    finally:
        server.shutdown()
    # r1's log reached the store on the third try; r2's outcome contradicts a stored one.
    assert _LateLogs.asked == {"r0": 1, "r1": 3, "r2": 1, "r3": 1}
    assert (summary.feedback_sent, summary.feedback_errors) == (3, 1)
    assert summary.statuses == {"feedback 409": 1}
