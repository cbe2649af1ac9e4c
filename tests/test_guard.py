"""The request guard, the one error schema and the quiet client-error log, without a server."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from bentos.guard import (
    ApiError,
    ClientErrorFilter,
    RequestGuard,
    documented_paths,
    normalise_error,
)

DOCUMENT = {
    "paths": {
        "/predict": {"post": {}},
        "/records": {"get": {}, "post": {"security": [{"ApiKeyAuth": []}]}},
        "/records/{record_id}": {
            "get": {},
            "patch": {"security": [{"ApiKeyAuth": []}]},
            "delete": {"security": [{"ApiKeyAuth": []}]},
        },
    }
}


async def _echo(scope, receive, send):
    """An app answering 200 with the body it read, or 405/404 like a router."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"].startswith("/nowhere"):
        status, headers, payload = 404, [(b"content-type", b"text/plain")], b"Not Found"
    elif scope["method"] == "PUT":
        status, headers, payload = 405, [(b"allow", b"GET")], b"Method Not Allowed"
    else:
        status, headers, payload = 200, [(b"content-type", b"application/json")], body or b"{}"
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _call(method, path, *, key="k", api_key="k", max_body=100, **kwargs) -> httpx.Response:
    guard = RequestGuard(_echo, api_key=api_key, max_body=max_body, document=lambda: DOCUMENT)
    headers = kwargs.pop("headers", {})
    if key is not None:
        headers["X-API-Key"] = key

    async def run():
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(run())


def test_the_key_is_checked_where_the_document_secures_an_operation():
    assert _call("POST", "/records", key=None, json={}).status_code == 401
    assert _call("POST", "/records", key="wrong", json={}).status_code == 403
    assert _call("POST", "/records", json={}).status_code == 200
    assert _call("DELETE", "/records/a:b", key=None).status_code == 401
    assert _call("GET", "/records/a:b", key=None).status_code == 200  # a read
    assert _call("POST", "/predict", key=None, json={}).status_code == 200
    # A method the path does not have is the router's 405, not a 401.
    assert _call("PUT", "/records", key=None).status_code == 405
    unset = _call("POST", "/records", api_key=None, json={})
    assert unset.status_code == 503 and "MLOPS_API_KEY" in unset.json()["error"]


def test_body_type_and_size_are_checked_before_the_app_reads_it():
    form = _call("POST", "/predict", content=b"a=1",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.status_code == 415
    multipart = _call("POST", "/predict", content=b"{}",
                      headers={"Content-Type": "multipart/form-data"})  # fmt: skip
    assert multipart.status_code == 415
    declared = _call("POST", "/predict", content=b"x" * 101)
    assert declared.status_code == 413 and "101 bytes" in declared.json()["error"]

    async def chunks():  # no Content-Length: the guard counts what it reads
        yield b"x" * 60
        yield b"x" * 60

    streamed = _call("POST", "/predict", content=chunks())
    assert streamed.status_code == 413 and "more than 120 bytes" in streamed.json()["error"]
    # Within the limit, the app reads the whole body (replayed by the guard).
    ok = _call(
        "POST", "/predict", content=b'{"a": 1}', headers={"Content-Type": "application/json"}
    )
    assert ok.status_code == 200 and ok.json() == {"a": 1}


def test_every_error_answer_gets_the_one_schema_and_an_exact_allow():
    missing = _call("GET", "/nowhere")
    assert missing.status_code == 404
    assert ApiError.model_validate(missing.json()).error == "Not Found"
    wrong = _call("PUT", "/records/a:b")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "DELETE, GET, HEAD, PATCH"


@pytest.mark.parametrize(
    ("body", "error", "loc"),
    [
        # BentoML's pydantic 400: the summary becomes "field: reason".
        (
            {"error": "1 validation error for Input", "detail": [
                {"type": "missing", "loc": ["rows", 0, "distance"], "msg": "Field required",
                 "url": "https://errors.pydantic.dev"}]},
            "rows.0.distance: Field required",
            ["rows", 0, "distance"],
        ),
        # BentoML's other 4xx: a one-item list.
        ([{"error": "bad thing"}], "bad thing", []),
        # BentoML's timeout, and an HTTP exception's detail.
        ({"error": "Not able to process the request in 30 seconds"}, "Not able to process", []),
        ({"detail": "Runners are not ready."}, "Runners are not ready.", []),
    ],
)  # fmt: skip
def test_bentoml_and_starlette_error_shapes_are_normalised(body, error, loc):
    normalised = normalise_error(400, json.dumps(body).encode(), "application/json")
    assert normalised.error.startswith(error)
    assert normalised.detail[0].loc == loc
    assert ApiError.model_validate(normalised.model_dump())  # the one schema


def test_documented_paths_match_one_segment_per_parameter():
    (predict, records, record) = documented_paths(DOCUMENT)
    assert record.pattern.match("/records/flights:abc")
    assert not record.pattern.match("/records/a/b") and not record.pattern.match("/records/")
    assert record.keyed == {"PATCH", "DELETE"} and records.keyed == {"POST"}
    assert predict.keyed == frozenset()


def test_client_errors_leave_bentoml_s_traceback_out_and_server_errors_keep_it():
    from bentoml.exceptions import BentoMLException, NotFound
    from pydantic import BaseModel, ValidationError

    class Row(BaseModel):
        a: int

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "x", logging.ERROR, "f", 1, "Exception on /p", (), (type(exc), exc, None)
        )

    try:
        Row.model_validate({})
    except ValidationError as exc:
        validation = exc
    keep = ClientErrorFilter().filter
    assert not keep(record(validation))
    assert not keep(record(NotFound("no such")))
    assert keep(record(BentoMLException("boom")))  # a 500
    assert keep(record(RuntimeError("boom")))
    assert keep(logging.LogRecord("x", logging.INFO, "f", 1, "hello", (), None))


def test_a_client_error_line_escapes_line_breaks(caplog):
    caplog.set_level(logging.INFO, logger="bentoml.service")
    _call("GET", "/nowhere%0AFAKE%20[ERROR]%20line%C2%85and%E2%80%A8more")  # \n, NEL, LS
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and len(lines[0].splitlines()) == 1, lines
    assert "\\n" in lines[0] and "\\x85" in lines[0] and "\\u2028" in lines[0]


def test_a_dropped_connection_to_a_model_is_tried_once_more_and_a_second_drop_is_raised():
    import asyncio

    import aiohttp

    from bentos.runtime import call_model

    calls = []

    def model(failures: int):
        async def predict_proba(rows):
            calls.append(rows)
            if len(calls) <= failures:
                raise aiohttp.ClientOSError(32, "Broken pipe")
            return [0.25 for _ in rows]

        return predict_proba

    assert asyncio.run(call_model(model(1), [[1], [2]])) == [0.25, 0.25]
    assert calls == [[[1], [2]], [[1], [2]]]  # the same rows, sent again
    calls.clear()
    with pytest.raises(aiohttp.ClientOSError):
        asyncio.run(call_model(model(2), [[1]]))
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(ValueError):  # a model's own error is not a dropped connection

        async def broken(rows):
            calls.append(rows)
            raise ValueError("bad rows")

        asyncio.run(call_model(broken, [[1]]))
    assert len(calls) == 1
