"""The real BentoML server (``bentoml serve`` of a built Bento, in a subprocess on a free port).

Two flights models are trained quickly on a sample, saved with their contracts (and their
monitoring reference, as a run saves them), and built into a Bento as the pipeline's last
step does. Each server runs with its own embedded store folder (or ``MONGODB_URI``'s
server) and journal, and is stopped in teardown.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import SERVICE_KEY, free_port, start_server, stop_server

pytestmark = pytest.mark.slow

KEY = SERVICE_KEY


@pytest.fixture(scope="module")
def store_env(service_store) -> dict[str, str]:
    """The session's flights store (shared with the fuzz test, which runs after these)."""
    return service_store


@pytest.fixture(scope="module")
def server(service_server):
    return service_server


def held_out_rows(served, count: int) -> pd.DataFrame:
    """Held-out rows whose missing values fall only where the contract allows them."""
    frame = served.split.test
    keep = pd.Series(True, index=frame.index)
    for spec in served.contract.fields:
        if not spec.nullable:
            keep &= frame[spec.name].notna()
    assert keep.sum() >= count
    return frame[keep].head(count)


# -- predictions ---------------------------------------------------------------------------------


def test_known_rows_get_the_in_process_probability_from_both_models(served, server):
    rows = held_out_rows(served, 25)
    for role in ("primary", "secondary"):
        expected = served.pipelines[role].predict_proba(rows[served.contract.names])[:, 1]
        for (_, row), probability in zip(rows.iterrows(), expected, strict=True):
            body = {"model": role, "features": served.contract.json_row(row)}
            answer = server.post("/predict_with", body)
            assert answer.status_code == 200, answer.text
            result = answer.json()
            assert result["model"] == role and result["model_tag"] == served.tags[role]
            assert abs(result["probability"] - probability) <= 1e-9
            assert result["prediction"] == int(probability >= result["threshold"])
            assert result["label"] == served.config.target.labels[result["prediction"]]
    first = served.contract.json_row(rows.iloc[0])
    single = server.post("/predict", first).json()
    assert single["model"] == "primary"
    expected = served.pipelines["primary"].predict_proba(rows.iloc[:1][served.contract.names])
    assert abs(single["probability"] - expected[0, 1]) <= 1e-9


def test_batch_and_compare_endpoints(served, server):
    rows = held_out_rows(served, 40)
    bodies = [served.contract.json_row(row) for _, row in rows.iterrows()]
    answer = server.post("/predict_batch", {"rows": bodies})
    assert answer.status_code == 200, answer.text
    batch = answer.json()
    expected = served.pipelines["primary"].predict_proba(rows[served.contract.names])[:, 1]
    got = [p["probability"] for p in batch["predictions"]]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 1e-9
    assert batch["model_tag"] == served.tags["primary"]
    assert len({p["request_id"] for p in batch["predictions"]}) == len(bodies)

    compared = server.post("/compare", bodies[0]).json()
    for role in ("primary", "secondary"):
        reference = served.pipelines[role].predict_proba(rows.iloc[:1][served.contract.names])
        assert abs(compared[role]["probability"] - reference[0, 1]) <= 1e-9
    assert compared["agree"] == (
        compared["primary"]["prediction"] == compared["secondary"]["prediction"]
    )
    assert compared["primary"]["request_id"] != compared["secondary"]["request_id"]


def test_an_unseen_category_is_accepted_and_reported(served, server):
    body = {**served.contract.example, "carrier": "ZZ", "route": "JFK-XXX"}
    answer = server.post("/predict", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["unseen"] == ["carrier", "route"]


def _detail(response: httpx.Response) -> str:
    return json.dumps(response.json())


def _error(response: httpx.Response):
    """The answer's body read as the one error schema (fails on any other shape)."""
    from bentos.guard import ApiError

    assert response.headers["content-type"] == "application/json", response.headers
    return ApiError.model_validate_json(response.content)


def test_bad_inputs_get_a_4xx_naming_the_field_and_the_reason(served, server):
    good = dict(served.contract.example)
    without_distance = {k: v for k, v in good.items() if k != "distance"}
    cases = [
        ("/predict", without_distance, None, "distance", "Field required"),
        ("/predict", {**good, "distance": "far"}, None, "distance", "valid number"),
        ("/predict", {**good, "distance": -5.0}, None, "distance", "greater than or equal to 1"),
        ("/predict", {**good, "sched_arr_hour": 27}, None, "sched_arr_hour", "less than or equal"),
        ("/predict", {**good, "sched_dep": "2013-07-01T27:00:00"}, None, "sched_dep", "ISO 8601"),
        ("/predict", {**good, "sched_dep": "2013-02-30T10:00:00"}, None, "sched_dep", "datetime"),
        ("/predict", {**good, "colour": "red"}, None, "colour", "Extra inputs"),
        ("/predict", [good], None, "", "object"),
        ("/predict_batch", {"rows": [good] * 1001}, None, "rows", "at most 1000"),
        ("/predict_batch", {"rows": []}, None, "rows", "at least 1"),
        # Unknown fields are refused in the wrappers too, not only in a row.
        ("/predict_batch", {"rows": [good], "note": "x"}, None, "note", "Extra inputs"),
        ("/predict_with", {"model": "primary", "features": good, "x": 1}, None, "x", "Extra"),
        ("/info", {"verbose": True}, None, "verbose", "Extra inputs"),
        ("/predict", None, b'{"distance": 12,', "", "Invalid JSON"),
        ("/predict", None, b"", "distance", "Field required"),
        ("/predict_with", {"model": "tertiary", "features": good}, None, "model", "'primary'"),
    ]
    for route, body, raw, field, reason in cases:
        answer = server.post(route, body, raw=raw)
        assert answer.status_code == 400, (route, field, answer.status_code, answer.text)
        error = _error(answer)
        assert field in _detail(answer) and reason in _detail(answer), (route, answer.text)
        # The one-line summary names the field too.
        assert field in error.error and reason in error.error, (route, error.error)
    feedback = server.post("/feedback", {"request_id": "x", "actual": 2}, key=KEY)
    assert feedback.status_code == 400 and _error(feedback).detail[0].loc == ["actual"]
    listed = httpx.get(server.url + "/records", params={"page_size": 5000}, timeout=10)
    assert listed.status_code == 400 and "less than or equal to 1000" in listed.text
    assert _error(listed).detail[0].loc == ["query", "page_size"]


def test_content_types_and_sizes_a_json_api_cannot_read_are_4xx_not_500(served, server):
    body = json.dumps(served.contract.example).encode()
    # BentoML 1.4.39 answered 500 to these (multipart without a boundary) or parsed a form.
    for content_type in (
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
    ):
        for route in ("/predict", "/predict_batch", "/feedback", "/records"):
            answer = server.post(route, raw=body, content_type=content_type, key=KEY)
            assert answer.status_code == 415, (route, content_type, answer.text)
            assert "application/json" in _error(answer).error
    # A JSON content type with parameters is JSON.
    utf8 = server.post("/predict", raw=body, content_type="application/json; charset=utf-8")
    assert utf8.status_code == 200, utf8.text
    # A body over the limit is refused before it is read: declared, or streamed without a length.
    from bentos.guard import DEFAULT_MAX_BODY_BYTES

    rows = json.dumps({"rows": [served.contract.example] * 1000}).encode()
    assert len(rows) < DEFAULT_MAX_BODY_BYTES  # a whole batch fits
    assert server.post("/predict_batch", raw=rows).status_code == 200
    big = b'{"rows": [], "pad": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}'
    too_big = server.post("/predict_batch", raw=big)
    assert too_big.status_code == 413 and "MLOPS_MAX_BODY_BYTES" in _error(too_big).error

    def chunks():
        for _ in range(5):
            yield b"x" * (DEFAULT_MAX_BODY_BYTES // 4)

    streamed = httpx.post(
        server.url + "/predict",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert streamed.status_code == 413, streamed.text
    # An unknown path and a method a route does not have: the same error body.
    assert _error(httpx.get(server.url + "/nowhere", timeout=10)).detail[0].type == "not_found"
    wrong = httpx.put(server.url + "/records/flights:x", timeout=10)
    assert wrong.status_code == 405 and _error(wrong).error
    assert wrong.headers["allow"] == "DELETE, GET, HEAD, PATCH"


def test_a_client_error_is_one_log_line(served, server):
    """Each refused request logs one INFO/WARNING line (route, status, reason), no traceback."""
    before = server.log.read_bytes().count(b"\n")
    good = dict(served.contract.example)
    server.post("/predict", {**good, "distance": "far"})
    server.post("/predict", raw=b"{", content_type="application/json")
    server.post("/predict", raw=b"{}", content_type="multipart/form-data")
    server.post("/feedback", {"request_id": "x", "actual": 1})
    httpx.get(server.url + "/records/flights:nope", timeout=10)
    time.sleep(0.5)
    lines = server.log.read_bytes().decode("utf-8", "replace").split("\n")[before:-1]
    assert len(lines) == 5, "\n".join(lines)
    assert "[INFO]" in lines[0] and "POST /predict -> 400: distance: Input should be" in lines[0]
    assert "POST /predict -> 400: Invalid JSON" in lines[1]
    assert "POST /predict -> 415: Content-Type 'multipart/form-data'" in lines[2]
    assert "[WARNING]" in lines[3] and "POST /feedback -> 401: missing X-API-Key" in lines[3]
    assert "GET /records/flights:nope -> 404: no dataset record" in lines[4]
    assert not any("Traceback" in line or "[ERROR]" in line for line in lines)


# -- logs and feedback ---------------------------------------------------------------------------


def _wait_for_logs(request_ids: list[str], timeout: float = 20.0) -> list:
    from store import get_prediction_log
    from tabular.errors import RecordNotFound

    deadline = time.monotonic() + timeout
    found: dict[str, object] = {}
    while time.monotonic() < deadline and len(found) < len(request_ids):
        for request_id in request_ids:
            if request_id not in found:
                try:
                    found[request_id] = get_prediction_log(request_id)
                except RecordNotFound:
                    pass
        time.sleep(0.2)
    return [found.get(r) for r in request_ids]


def test_every_prediction_is_logged_with_tag_run_id_and_typed_features(served, server, store_env):
    from store import StoreSettings, connect, count_prediction_logs

    connect(StoreSettings.from_env(store_env))
    rows = held_out_rows(served, 6)
    bodies = [served.contract.json_row(row) for _, row in rows.iterrows()]
    ids = [server.post("/predict", bodies[0]).json()["request_id"]]
    compared = server.post("/compare", bodies[1]).json()
    ids += [compared["primary"]["request_id"], compared["secondary"]["request_id"]]
    batch = server.post("/predict_batch", {"rows": bodies[2:]}).json()
    ids += [p["request_id"] for p in batch["predictions"]]
    assert len(ids) == len(set(ids)) == 7
    logs = _wait_for_logs(ids)
    assert all(logs), "some predictions were not logged"
    by_role = {"primary": served.tags["primary"], "secondary": served.tags["secondary"]}
    assert logs[2].model_name + ":" + logs[2].model_version == by_role["secondary"]
    for log in [logs[0], logs[1], *logs[3:]]:
        assert f"{log.model_name}:{log.model_version}" == by_role["primary"]
    for log, body in zip([logs[0], logs[1], *logs[3:]], [bodies[0], bodies[1], *bodies[2:]],
                         strict=True):  # fmt: skip
        assert log.run_id == "run-test" and log.dataset == "flights"
        assert isinstance(log.features["sched_dep"], dt.datetime)
        assert log.features["sched_dep"] == dt.datetime.fromisoformat(body["sched_dep"])
        assert type(log.features["distance"]) is float
        assert type(log.features["carrier"]) is str
        assert set(log.features) == set(served.contract.names)
        assert 0 <= log.probability <= 1 and log.latency_ms > 0
    # Read back as the monitor will: a typed frame, no refused row.
    typed = served.contract.to_frame([log.features for log in logs])
    assert not typed.problems and str(typed.frame["sched_dep"].dtype) == "datetime64[ns]"
    assert count_prediction_logs(dataset="flights") >= 7


def test_a_batch_is_checked_as_a_whole_and_each_refused_field_named(served, server):
    good = dict(served.contract.example)
    rows = [good, {**good, "distance": "far"}, good, {**good, "sched_arr_hour": 27}]
    answer = server.post("/predict_batch", {"rows": rows})
    assert answer.status_code == 400, answer.text
    locations = [d["loc"] for d in answer.json()["detail"]]
    assert locations == [["rows", 1, "distance"], ["rows", 3, "sched_arr_hour"]]
    assert answer.json()["error"].startswith("rows.1.distance: Input should be a valid number")
    missing = server.post("/predict_batch", {"rows": [good, {"distance": 3.0}]})
    assert missing.status_code == 400 and "rows.1." in missing.json()["error"]
    assert server.post("/predict_batch", {"rows": [good, 5]}).status_code == 400
    # The schema still shows the rows' fields.
    spec = httpx.get(server.url + "/docs.json", timeout=10).json()
    body = spec["paths"]["/predict_batch"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    rows = spec["components"]["schemas"]["BatchRequest"]["properties"]["rows"]
    assert rows["items"]["title"] == "FlightsFeatures" and rows["maxItems"] == 1000
    assert set(served.contract.names) == set(rows["items"]["properties"])
    assert spec["components"]["schemas"]["BatchRequest"]["additionalProperties"] is False


def test_metrics_count_every_log_outcome(served, server):
    assert server.post("/predict", served.contract.example).status_code == 200
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    counts = {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlops_prediction_logs_total{")
    }
    assert set(counts) == {"stored", "already_stored", "journaled", "set_aside", "dropped"}
    assert counts["stored"] >= 1 and counts["dropped"] == 0


def test_feedback_is_stored_once_404_for_unknown_409_for_a_contradiction(served, server):
    request_id = server.post("/predict", served.contract.example).json()["request_id"]
    stored = server.post("/feedback", {"request_id": request_id, "actual": 1}, key=KEY)
    assert stored.status_code == 200, stored.text
    assert stored.json()["actual"] == 1 and stored.json()["label"] == "late 15+ min"
    assert stored.json()["received_at"].endswith("Z")  # a UTC time says so
    again = server.post("/feedback", {"request_id": request_id, "actual": 1}, key=KEY)
    assert again.status_code == 200
    contradiction = server.post("/feedback", {"request_id": request_id, "actual": 0}, key=KEY)
    assert contradiction.status_code == 409 and "already has outcome 1" in contradiction.text
    assert _error(contradiction).detail[0].loc == ["actual"]
    unknown = server.post("/feedback", {"request_id": "no-such-request", "actual": 0}, key=KEY)
    assert unknown.status_code == 404 and "no-such-request" in unknown.text


def test_feedback_without_the_key_is_refused_and_not_stored(served, server, store_env):
    """Feedback decides promotions: only a client with the key can send it."""
    from store import StoreSettings, connect, get_feedback
    from tabular.errors import RecordNotFound

    request_id = server.post("/predict", served.contract.example).json()["request_id"]
    missing = server.post("/feedback", {"request_id": request_id, "actual": 1})
    assert missing.status_code == 401 and "X-API-Key" in _error(missing).error
    wrong = server.post("/feedback", {"request_id": request_id, "actual": 1}, key="nope")
    assert wrong.status_code == 403
    connect(StoreSettings.from_env(store_env))
    with pytest.raises(RecordNotFound):
        get_feedback(request_id)


# -- the stored data as REST resources, and the API key --------------------------------------------


def test_records_and_logs_are_rest_resources(served, server):
    url = server.url
    record = served.split.test.iloc[0]
    values = {
        "sched_dep": pd.Timestamp(record["sched_dep"]).isoformat(),
        "late": int(record["late"]),
        "carrier": "ZZ",
        "distance": 1234.0,
    }
    created = server.post("/records", {"values": values}, key=KEY)
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]
    assert created.headers["location"] == f"/records/{record_id}"
    assert created.json()["values"]["carrier"] == "ZZ"

    read = httpx.get(f"{url}/records/{record_id}", timeout=10).json()
    assert read["values"]["distance"] == 1234.0
    day = pd.Timestamp(record["sched_dep"]).normalize()
    listed = httpx.get(
        f"{url}/records",
        params={
            "carrier": "ZZ",
            "date_from": day.isoformat(),
            "date_to": (day + pd.Timedelta(days=1)).isoformat(),
            "page_size": 10,
        },
        timeout=10,
    ).json()
    assert [item["id"] for item in listed["items"]] == [record_id]
    # A numeric column is filtered by its value, typed by the stored column.
    by_distance = httpx.get(f"{url}/records", params={"distance": "1234"}, timeout=10).json()
    assert [item["id"] for item in by_distance["items"]] == [record_id]
    page = httpx.get(f"{url}/records", params={"page": 2, "page_size": 50}, timeout=10).json()
    assert page["total"] == 201 and len(page["items"]) == 50 and page["page"] == 2
    unknown = httpx.get(f"{url}/records", params={"colour": "red"}, timeout=10)
    assert unknown.status_code == 400 and _error(unknown).detail[0].loc == ["query", "colour"]

    patch = httpx.patch(
        f"{url}/records/{record_id}",
        json={"values": {"distance": 99.0}},
        headers={"X-API-Key": KEY},
        timeout=10,
    )
    assert patch.status_code == 200 and patch.json()["values"]["distance"] == 99.0
    wrong_type = httpx.patch(
        f"{url}/records/{record_id}",
        json={"values": {"distance": "far"}},
        headers={"X-API-Key": KEY},
        timeout=10,
    )
    assert wrong_type.status_code == 400 and "distance" in _error(wrong_type).error
    # The rules the CSV was held to (the config's checks.ranges), as /predict refuses it too.
    for method, path, body in (
        ("POST", "/records", {"values": {**values, "sched_arr_hour": 27}}),
        ("PATCH", f"/records/{record_id}", {"values": {"sched_arr_hour": 27}}),
    ):
        refused = httpx.request(
            method, f"{url}{path}", json=body, headers={"X-API-Key": KEY}, timeout=10
        )
        assert refused.status_code == 400, refused.text
        assert "sched_arr_hour" in _error(refused).detail[0].loc[-1]
        assert "outside [0.0, 24.0]" in refused.text
    deleted = httpx.delete(f"{url}/records/{record_id}", headers={"X-API-Key": KEY}, timeout=10)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = httpx.get(f"{url}/records/{record_id}", timeout=10)
    assert gone.status_code == 404 and record_id in _error(gone).error
    again = httpx.delete(f"{url}/records/{record_id}", headers={"X-API-Key": KEY}, timeout=10)
    assert again.status_code == 404

    log = {
        "request_id": "crud-log-1",
        "model_name": "manual",
        "model_version": "1",
        "features": {"distance": 100.0},
        "prediction": 0,
        "probability": 0.1,
        "latency_ms": 1.0,
        "dataset": "flights",
    }
    first = server.post("/logs", log, key=KEY)
    assert first.status_code == 201 and first.headers["location"] == "/logs/crud-log-1"
    assert first.json()["timestamp"].endswith("Z")
    assert server.post("/logs", log, key=KEY).status_code == 409
    # Any text is an id, answered percent-encoded in Location (the fuzzer found a 500 here).
    odd = server.post(
        "/logs", {**log, "request_id": "ünï cödé \U00058a89", "model_name": "odd"}, key=KEY
    )
    assert odd.status_code == 201, odd.text
    assert odd.headers["location"] == "/logs/%C3%BCn%C3%AF%20c%C3%B6d%C3%A9%20%F1%98%AA%89"
    assert httpx.get(url + odd.headers["location"], timeout=10).json()["request_id"].startswith("ü")
    slash = server.post("/logs", {**log, "request_id": "a/b"}, key=KEY)
    assert slash.status_code == 400 and _error(slash).detail[0].loc == ["request_id"]
    assert server.post("/logs", {**log, "colour": 1}, key=KEY).status_code == 400
    assert httpx.get(f"{url}/logs/crud-log-1", timeout=10).json()["model_name"] == "manual"
    listed = httpx.get(f"{url}/logs", params={"model_name": "manual"}, timeout=10).json()
    assert [item["request_id"] for item in listed["items"]] == ["crud-log-1"]
    assert httpx.get(f"{url}/logs", params={"colour": 1}, timeout=10).status_code == 400
    assert httpx.get(f"{url}/logs", params={"until": "0.5"}, timeout=10).status_code == 400
    changed = httpx.patch(
        f"{url}/logs/crud-log-1",
        json={"model_version": "2"},
        headers={"X-API-Key": KEY},
        timeout=10,
    )
    assert changed.status_code == 200 and changed.json()["model_version"] == "2"
    # A field that may be left out is not therefore nullable (the fuzzer found this one).
    nulled = httpx.patch(
        f"{url}/logs/crud-log-1", json={"timestamp": None}, headers={"X-API-Key": KEY}, timeout=10
    )
    assert nulled.status_code == 400 and _error(nulled).detail[0].loc == ["timestamp"]
    deleted = httpx.delete(f"{url}/logs/crud-log-1", headers={"X-API-Key": KEY}, timeout=10)
    assert deleted.status_code == 204
    assert httpx.get(f"{url}/logs/crud-log-1", timeout=10).status_code == 404


def test_writes_need_the_right_key_and_reads_do_not(served, server):
    url = server.url
    writes = [
        ("POST", "/records", {"values": {}}),
        ("PATCH", "/records/flights:nope", {"values": {"distance": 1.0}}),
        ("DELETE", "/records/flights:nope", None),
        ("POST", "/logs", {}),
        ("PATCH", "/logs/x", {}),
        ("DELETE", "/logs/x", None),
        ("POST", "/feedback", {"request_id": "x", "actual": 1}),
        ("POST", "/reload", {"primary": "a:b", "secondary": "c:d"}),
    ]
    for method, route, body in writes:
        for key, status in ((None, 401), ("not-the-key", 403)):
            headers = {"X-API-Key": key} if key else {}
            answer = httpx.request(method, url + route, json=body, headers=headers, timeout=10)
            assert answer.status_code == status, (method, route, answer.text)
            assert "X-API-Key" in _error(answer).error
    for route in ("/records?page_size=1", "/records/flights:nope", "/logs", "/logs/x"):
        assert httpx.get(url + route, timeout=10).status_code in (200, 404)


def test_openapi_is_the_projects_and_says_what_the_server_does(served, server):
    spec = httpx.get(server.url + "/docs.json", timeout=10).json()
    # The project's document (served in place of BentoML's: the mount comes first).
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"].startswith("tabular-mlops") and "BentoML" not in str(spec["info"])
    schemas = spec["components"]["schemas"]
    schema = schemas["FlightsFeatures"]
    assert list(schema["properties"]) == served.contract.names
    assert schema["additionalProperties"] is False
    assert "miles" in schema["properties"]["distance"]["description"]
    # Nullable inputs are declared nullable, and only they.
    for spec_field in served.contract.fields:
        declared = schema["properties"][spec_field.name]
        accepts_null = {"type": "null"} in declared.get("anyOf", [])
        assert accepts_null == spec_field.nullable, spec_field.name
    assert any(f.nullable for f in served.contract.fields)
    for wrapper in ("BatchRequest", "PredictWithRequest", "ReloadRequest", "NoBody", "RecordIn",
                    "RecordChanges", "FeedbackIn", "PredictionLogIn", "PredictionLogChanges"):  # fmt: skip
        assert schemas[wrapper]["additionalProperties"] is False, wrapper
    paths = spec["paths"]
    # REST resources next to the BentoML prediction routes.
    assert set(paths["/records/{record_id}"]) == {"get", "patch", "delete"}
    assert set(paths["/records"]) == {"get", "post"} and set(paths["/predict"]) == {"post"}
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "X-API-Key"
    assert paths["/records"]["post"]["security"] == [{"ApiKeyAuth": []}]
    assert paths["/feedback"]["post"]["security"] == [{"ApiKeyAuth": []}]
    assert (
        "security" not in paths["/records"]["get"] and "security" not in paths["/predict"]["post"]
    )
    assert {"401", "403", "404", "409"} <= set(paths["/feedback"]["post"]["responses"])
    assert {"400", "413", "415"} <= set(paths["/predict_batch"]["post"]["responses"])
    # Every error answer has the one error body.
    for item in paths.values():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    if "$ref" in answer:
                        name = answer["$ref"].rsplit("/", 1)[-1]
                        answer = spec["components"]["responses"][name]
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/Error", (status, operation["summary"])
    info = server.post("/info", {}).json()
    assert [m["tag"] for m in info["models"]] == [served.tags["primary"], served.tags["secondary"]]
    assert info["models"][0]["run_id"] == "run-test" and info["features"] == served.contract.names
    for probe in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(server.url + probe, timeout=10).status_code == 200


def test_concurrent_clients_are_never_shed(served, server):
    """32 clients at once for a few seconds: every answer is a 200 (no 503, no 500)."""
    import asyncio

    body = json.dumps(served.contract.example).encode()

    async def client(session, deadline, statuses):
        while time.monotonic() < deadline:
            response = await session.post(
                server.url + "/predict", content=body, headers={"Content-Type": "application/json"}
            )
            statuses.append(response.status_code)

    async def run():
        statuses: list[int] = []
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(limits=limits, timeout=30) as session:
            deadline = time.monotonic() + 4
            await asyncio.gather(*(client(session, deadline, statuses) for _ in range(32)))
        return statuses

    statuses = asyncio.run(run())
    assert len(statuses) > 100 and set(statuses) == {200}


# -- no key configured; MongoDB down, then back ----------------------------------------------------


def test_predictions_survive_a_mongodb_outage_and_are_replayed_once(served, store_env):
    from store import Journal, StoreSettings, connect, count_prediction_logs, replay_journal

    folder = served.store_root / "outage"
    journal = folder / "journal.jsonl"
    dead_port = free_port()
    dead = start_server(
        served.bento,
        folder,
        MONGODB_URI=f"mongodb://127.0.0.1:{dead_port}/?serverSelectionTimeoutMS=300",
        MONGODB_DB=store_env["MONGODB_DB"],
        MLOPS_JOURNAL_PATH=str(journal),
    )
    try:
        ids = []
        for _ in range(12):
            answer = dead.post("/predict", served.contract.example)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["request_id"])
        # A CRUD read needs the store: a clear 503, not a 500.
        unavailable = httpx.get(dead.url + "/records", params={"page_size": 1}, timeout=30)
        assert unavailable.status_code == 503 and "unreachable" in _error(unavailable).error
    finally:
        stop_server(dead)  # flushes what is still queued
    journaled = Journal(journal).read()
    assert sorted(d["_id"] for d in journaled) == sorted(ids)

    connect(StoreSettings.from_env(store_env))
    assert not any(_wait_for_logs(ids, timeout=0.5))  # only in the journal so far
    before = count_prediction_logs()
    # The store is back: a server on it replays the journal by itself.
    back = start_server(served.bento, folder / "back", MLOPS_JOURNAL_PATH=str(journal), **store_env)
    try:
        assert all(_wait_for_logs(ids))
        deadline = time.monotonic() + 10
        while Journal(journal).pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Journal(journal).pending()
        # No key configured on this server: writes are refused with the way to enable them.
        refused = httpx.delete(back.url + "/records/x", headers={"X-API-Key": "a"}, timeout=10)
        assert refused.status_code == 503 and "MLOPS_API_KEY" in _error(refused).error
    finally:
        stop_server(back)
    # Each journaled log is stored exactly once, and a second replay finds nothing.
    assert count_prediction_logs() == before + len(ids)
    assert replay_journal(journal).read == 0
    assert count_prediction_logs() == before + len(ids)


# -- docker/smoke.sh (CI's compose job runs it against the stack) ------------------------------


def run_smoke(server, key: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_API_URL": server.url, "MLOPS_API_KEY": key, "SMOKE_TIMEOUT": "60"}
    env.pop("PREFECT_API_URL", None)  # no Prefect server here: the deployment step is skipped
    script = Path(__file__).resolve().parent.parent / "docker" / "smoke.sh"
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip


def test_the_smoke_script_passes_against_the_server(server):
    done = run_smoke(server, KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"smoke: {server.url} is ready"
    assert any(line.startswith("smoke: predicted ") for line in lines)
    assert any("created, read back, deleted, and gone (404)" in line for line in lines)
    assert any(line.startswith("smoke: skipped the drift-monitor deployment") for line in lines)
    assert lines[-1] == "smoke: passed (deployment step skipped)"


def test_the_smoke_script_fails_on_a_wrong_key_and_names_the_step(server):
    done = run_smoke(server, "not-the-key")
    assert done.returncode == 1
    assert "smoke: FAILED: POST " in done.stderr and "/feedback answered 403" in done.stderr


def test_the_built_bento_pins_exactly_the_locked_serving_packages(served):
    import bentoml
    from packaging.requirements import Requirement

    def pins(text: str) -> set[str]:
        lines = [line for line in text.splitlines() if line and line[0] not in "# -"]
        return {str(Requirement(line.rstrip(" \\"))).split(";")[0].strip() for line in lines}

    root = Path(__file__).resolve().parent.parent
    written = Path(bentoml.get(served.bento).path) / "env" / "python" / "requirements.txt"
    bento, locked = pins(written.read_text()), pins((root / "requirements/serving.txt").read_text())
    assert len(locked) > 50 and all("==" in pin for pin in bento)
    # BentoML appends its own pin, which is the locked one.
    assert bento == locked | {f"bentoml=={bentoml.__version__}"} == locked


# -- three processes on one store: the API, mlops db import, the monitor --------------------------

SHARED_SECONDS = 30

IMPORTER = """
import sys, time
from flows.cli import main

deadline, runs = time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < deadline:
    assert main(["db", "import", "--config", sys.argv[1], "--replace", "--quiet"]) == 0
    runs += 1
print(runs)
"""

MONITOR = """
import sys, time
from pathlib import Path
from monitoring.check import Window, run_check
from monitoring.drift import DriftSettings
from monitoring.logs import labelled_predictions_frame
from store import connect, record_feedback
from tabular.config import DEFAULT_CONFIG, load_config

connect()
config = load_config(DEFAULT_CONFIG)
deadline, checks, outcomes = time.monotonic() + float(sys.argv[2]), 0, 0
while time.monotonic() < deadline:
    run_check(config, Window(last=3000), DriftSettings(drift_share=0.5, min_rows=50),
              out_root=Path(sys.argv[1]), workspace=None)
    checks += 1
    for request_id in labelled_predictions_frame(dataset=config.name, limit=20)["request_id"]:
        record_feedback(request_id, 1)  # a feedback client, on the same store
        outcomes += 1
print(checks, outcomes)
"""


@pytest.mark.slow
def test_the_api_an_import_and_the_monitor_share_one_store_for_30_s(
    served, server, store_env, tmp_path
):
    """Three processes write and read one store at once: no answered log is lost or doubled."""
    from store import StoreSettings, connect
    from store.documents import PredictionLog
    from tests.conftest import write_toy_dataset

    environment = {**os.environ, **store_env, "PYTHONPATH": str(Path(__file__).parents[1])}
    toy = write_toy_dataset(tmp_path / "orders")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(argument), str(SHARED_SECONDS)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for code, argument in ((IMPORTER, toy), (MONITOR, tmp_path / "monitoring"))
    ]
    bodies = [served.contract.json_row(row) for _, row in held_out_rows(served, 50).iterrows()]
    acknowledged, statuses = [], []
    deadline = time.monotonic() + SHARED_SECONDS
    while time.monotonic() < deadline:
        answer = server.post("/predict_batch", {"rows": bodies})
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            acknowledged += [p["request_id"] for p in answer.json()["predictions"]]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    imports = int(outputs[0][0].split()[-1])
    checks, outcomes = map(int, outputs[1][0].split()[-2:])
    assert set(statuses) == {200} and len(acknowledged) >= 1000
    assert imports >= 1 and checks >= 1 and outcomes >= 1

    connect(StoreSettings.from_env(store_env))
    stored = []
    for start in range(0, len(acknowledged), 1000):
        chunk = acknowledged[start : start + 1000]
        stored += [d["_id"] for d in PredictionLog._get_collection().find({"_id": {"$in": chunk}})]
    assert len(stored) == len(set(stored)) == len(set(acknowledged)) == len(acknowledged)
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'mlops_prediction_logs_total{outcome="dropped"} 0.0' in metrics
    assert 'mlops_prediction_logs_total{outcome="journaled"} 0.0' in metrics
