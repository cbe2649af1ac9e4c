"""The HTTP boundary of the front service: one error schema, one request guard, quiet logs.

* :class:`ApiError` is the body of every error answer (4xx and 5xx), whichever part of the
  service produced it: BentoML's validation, the REST resources, this guard, or the router
  (an unknown path, a method not allowed).
* :class:`RequestGuard`, one ASGI middleware around the whole front service, checks what
  needs no route to be known: the API key of the write routes (401 missing, 403 wrong, 503
  not configured), the body size (413), the content type (415). It then passes the request
  on and rewrites any error answer into :class:`ApiError` (BentoML's own error bodies have
  three other shapes), and logs each client error as one line.
* :class:`ClientErrorFilter` drops the ERROR-with-traceback record BentoML 1.4 logs for
  every 4xx it answers: the guard's one line replaces it. Server errors keep their
  traceback.

Nothing here knows a route's body: malformed JSON and schema errors are found by the
routes' own pydantic models (BentoML's and FastAPI's) and come back here as 400s.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger("bentoml.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Header carrying the key of the write routes, and the variable holding the server's key.
API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "MLOPS_API_KEY"
#: Largest request body, in bytes (``MLOPS_MAX_BODY_BYTES``). A 1,000-row batch of the
#: flights contract is about 0.7 MB of JSON; 4 MiB leaves room for wider datasets.
MAX_BODY_ENV = "MLOPS_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: Routes whose writes (any method but GET/HEAD/OPTIONS) need the key: they change what the
#: models learn from (records, feedback), the logs the monitor reads, or the served models.
KEYED_PREFIXES = ("/records", "/logs", "/feedback", "/reload")
#: Methods that carry a body; others' bodies are neither read nor checked.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Longest error body kept when rewriting an answer (a larger one is summarised).
MAX_ERROR_BODY = 64 * 1024


class ErrorItem(BaseModel):
    """One problem of a refused request.

    Attributes:
        loc: Where: the path to the field (``["rows", 3, "distance"]``), prefixed with
            ``query``, ``path`` or ``header`` outside the body; empty for the whole request.
        msg: What is wrong, in plain words.
        type: The kind of problem (pydantic's error type, or the HTTP status's name).
    """

    model_config = ConfigDict(extra="forbid")

    loc: list[str | int]
    msg: str
    type: str


class ApiError(BaseModel):
    """The body of every error answer.

    Attributes:
        error: One sentence naming the field(s) and the problem.
        detail: One item per problem (empty when the problem is not a field's).
    """

    model_config = ConfigDict(extra="forbid", title="Error")

    error: str
    # Not required: BentoML's timeout answer (504), sent outside this guard, has no detail.
    detail: list[ErrorItem] = Field(default_factory=list)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def status_type(status: int) -> str:
    """Return the error type of an HTTP status: ``not_found``, ``payload_too_large``, ..."""
    return _phrase(status).lower().replace(" ", "_").replace("-", "_")


def error_body(status: int, message: str, loc: list[str | int] | None = None) -> bytes:
    """Return the JSON body of an error with one problem.

    Args:
        status: The HTTP status (gives the problem's type).
        message: What is wrong.
        loc: Where (``None``: the whole request).

    Returns:
        The :class:`ApiError` as JSON bytes.
    """
    item = ErrorItem(loc=loc or [], msg=message, type=status_type(status))
    return ApiError(error=message, detail=[item]).model_dump_json().encode()


def error_response(status: int, message: str, loc: list[str | int] | None = None):
    """Return an answer with an :class:`ApiError` body of one problem.

    Args:
        status: The HTTP status.
        message: What is wrong.
        loc: Where (``None``: the whole request).

    Returns:
        A Starlette ``Response`` (JSON).
    """
    from starlette.responses import Response

    return Response(error_body(status, message, loc), status, media_type="application/json")


def needs_key(method: str, path: str) -> bool:
    """Whether an operation must carry the API key (a write to a keyed route).

    The OpenAPI document declares the key on the operations this says;
    :class:`RequestGuard` checks it on the operations the document declares it on.

    Args:
        method: The HTTP method.
        path: The request path.

    Returns:
        ``True`` for a write (any method but GET, HEAD, OPTIONS) under ``KEYED_PREFIXES``.
    """
    if method.upper() in READ_METHODS:
        return False
    return any(path == prefix or path.startswith(prefix + "/") for prefix in KEYED_PREFIXES)


def max_body_bytes() -> int:
    """The body limit: ``MLOPS_MAX_BODY_BYTES`` when set, else 4 MiB.

    Raises:
        ValueError: If the variable is not a positive whole number.
    """
    raw = os.environ.get(MAX_BODY_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{MAX_BODY_ENV} must be a positive number of bytes, got {raw!r}")
    return int(raw)


_VALIDATION_SUMMARY = re.compile(r"^\d+ validation errors? for ")


def normalise_error(status: int, body: bytes, content_type: str) -> ApiError:
    """Rewrite any error body the service can produce into :class:`ApiError`.

    The shapes met: BentoML's pydantic errors ``{"error": "1 validation error for Input",
    "detail": [{"type", "loc", "msg", "url"}]}``, its other errors ``[{"error": ...}]`` (a
    one-item list), its timeout ``{"error": ...}``, Starlette's plain-text ``Not Found``,
    ``{"detail": "..."}`` of an HTTP exception, and bodies already in this shape.

    Args:
        status: The answer's status.
        body: The answer's body.
        content_type: Its ``Content-Type``.

    Returns:
        The error; a pydantic summary line becomes ``field: reason; ...``.
    """
    default_type = status_type(status)
    data: Any = None
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        text = body.decode("utf-8", "replace").strip() if "json" not in content_type else ""
        message = text[:500] or _phrase(status)
        return ApiError(error=message, detail=[ErrorItem(loc=[], msg=message, type=default_type)])
    items = []
    raw_detail = data.get("detail")
    if isinstance(raw_detail, list):
        for raw in raw_detail:
            if not isinstance(raw, dict):
                continue
            loc = [part if isinstance(part, int) else str(part) for part in raw.get("loc", [])]
            # pydantic prefixes a validator's own message; the message is enough.
            message = str(raw.get("msg", "")).removeprefix("Value error, ")
            items.append(ErrorItem(loc=loc, msg=message, type=str(raw.get("type") or default_type)))
    error = data.get("error")
    if not isinstance(error, str) or not error:
        error = raw_detail if isinstance(raw_detail, str) and raw_detail else _phrase(status)
    if _VALIDATION_SUMMARY.match(error) and items:
        error = summary(items)
    if not items:
        items = [ErrorItem(loc=[], msg=error, type=default_type)]
    return ApiError(error=error, detail=items)


def summary(items: list[ErrorItem]) -> str:
    """One line for several problems: ``field: reason; other.field: reason``."""
    return "; ".join(f"{'.'.join(map(str, i.loc))}: {i.msg}" if i.loc else i.msg for i in items)


@dataclass(frozen=True)
class DocumentedPath:
    """One path of the OpenAPI document, as the guard matches requests against it.

    Attributes:
        pattern: The path template as a pattern (``{name}`` matches one path segment, as
            the router does).
        methods: Its operations' methods (upper case).
        keyed: The methods whose operation declares a security requirement.
    """

    pattern: re.Pattern[str]
    methods: frozenset[str]
    keyed: frozenset[str]


def documented_paths(document: Mapping[str, Any]) -> list[DocumentedPath]:
    """Read the paths of an OpenAPI document: methods, and those that need the key.

    Args:
        document: The OpenAPI document.

    Returns:
        One entry per path.
    """
    found = []
    for path, item in document.get("paths", {}).items():
        template = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))
        found.append(
            DocumentedPath(
                pattern=re.compile(f"^{template}$"),
                methods=frozenset(method.upper() for method in item),
                keyed=frozenset(m.upper() for m, op in item.items() if op.get("security")),
            )
        )
    return found


class RequestGuard:
    """ASGI middleware of the front service: key, size and type checks; one error schema.

    The key is checked on the operations the OpenAPI document secures (and only there: a
    method a route does not have gets the router's 405, a path it does not know a 404). A
    405 lists in ``Allow`` every method the document gives the path (the router lists only
    those of the first route it matched).

    Args:
        app: The wrapped ASGI app.
        api_key: The write routes' key (``None``: writes answer 503 until it is set).
        max_body: Largest request body, in bytes.
        document: Returns the service's OpenAPI document (called once, at the first request).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_body: int,
        document: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = max_body
        self._document = document
        self._paths: list[DocumentedPath] | None = None

    def _path(self, path: str) -> DocumentedPath | None:
        if self._paths is None:
            self._paths = documented_paths(self._document())
        return next((p for p in self._paths if p.pattern.match(path)), None)

    def needs_key(self, method: str, path: str) -> bool:
        """Whether this request is one of the document's secured operations."""
        documented = self._path(path)
        return documented is not None and method in documented.keyed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, pass it on, and rewrite an error answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"].upper(), scope["path"]
        headers = _headers(scope)
        refusal = self._key_refusal(method, path, headers)
        if refusal is None and method in BODY_METHODS:
            refusal, receive = await self._read_body(headers, receive)
        if refusal is not None:
            status, message, loc = refusal
            _log_client_error(method, path, status, message)
            await _send_json(send, status, error_body(status, message, loc))
            return
        await self.app(scope, receive, self._error_rewriter(method, path, send))

    def _key_refusal(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, str, list] | None:
        if not self.needs_key(method, path):
            return None
        if self.api_key is None:
            return (
                503,
                f"write routes are disabled because {API_KEY_ENV} is not set; start the "
                f"service with {API_KEY_ENV}=<a secret> (e.g. `{API_KEY_ENV}=s3cret make serve`) "
                f"and send it in the {API_KEY_HEADER} header",
                [],
            )
        given = headers.get(API_KEY_HEADER.lower())
        if not given:
            return 401, f"missing {API_KEY_HEADER} header", ["header", API_KEY_HEADER]
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return 403, f"wrong {API_KEY_HEADER}", ["header", API_KEY_HEADER]
        return None

    async def _read_body(
        self, headers: dict[str, str], receive: Receive
    ) -> tuple[tuple[int, str, list] | None, Receive]:
        """Check the declared type and size, then read the body (at most ``max_body`` bytes)."""
        content_type = headers.get("content-type")
        if content_type is not None:
            media_type = content_type.split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                shown = content_type[:100] or "(empty)"
                return (
                    415,
                    f"Content-Type {shown!r} is not supported: send the body as JSON with "
                    "Content-Type: application/json",
                    ["header", "Content-Type"],
                ), receive
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return (
                    400,
                    f"malformed Content-Length {declared[:40]!r}",
                    ["header", "Content-Length"],
                ), receive
            if int(declared) > self.max_body:
                return self._too_large(int(declared)), receive
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return self._too_large(size, at_least=True), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client's disconnect

        return None, replay

    def _too_large(self, size: int, at_least: bool = False) -> tuple[int, str, list]:
        more = "more than " if at_least else ""
        return (
            413,
            f"request body of {more}{size:,} bytes exceeds the limit of {self.max_body:,} "
            f"bytes ({MAX_BODY_ENV}); split a large batch into several requests",
            [],
        )

    def _error_rewriter(self, method: str, path: str, send: Send) -> Send:
        """Wrap ``send`` so that an error answer is rewritten as :class:`ApiError` and logged."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] < 400 or method == "HEAD":
                    if message["status"] >= 400:
                        _log_client_error(method, path, message["status"], "(no body: HEAD)")
                    await send(message)
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = start["status"]
            replaced = (b"content-length", b"content-type")
            documented = self._path(path) if status == 405 else None
            if documented is not None:
                replaced += (b"allow",)
            headers = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() not in replaced
            ]
            if documented is not None:
                methods = set(documented.methods) | (
                    {"HEAD"} if "GET" in documented.methods else set()
                )
                headers.append((b"allow", ", ".join(sorted(methods)).encode()))
            content_type = dict(start.get("headers", [])).get(b"content-type", b"").decode()
            body = b"".join(chunks)[:MAX_ERROR_BODY]
            error = normalise_error(status, body, content_type)
            if status < 500:
                _log_client_error(method, path, status, error.error)
            payload = error.model_dump_json().encode()
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": payload, "more_body": False})

        return wrapped


def _headers(scope: Scope) -> dict[str, str]:
    # The last value wins for a repeated header, as in Starlette's Headers.get.
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


async def _send_json(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


#: Control characters (C0, C1) and the Unicode line and paragraph separators: any of them
#: may end a line for some log reader.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str, limit: int) -> str:
    # A client's path or value may hold line breaks: escaped, the record stays one line.
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= limit else text[:limit] + "..."


def _log_client_error(method: str, path: str, status: int, reason: str) -> None:
    """One line per refused request: route, status, reason (WARNING for a refused key)."""
    level = logging.WARNING if status in (401, 403) else logging.INFO
    logger.log(
        level, "%s %s -> %d: %s", method, _one_line(path, 200), status, _one_line(reason, 300)
    )


class ClientErrorFilter(logging.Filter):
    """Drop BentoML's ERROR-with-traceback record of a request it answered with a 4xx.

    BentoML 1.4.39 (``_bentoml_impl.server.app``) logs every exception of an API call with
    ``log_exception`` before turning it into an answer: a pydantic ``ValidationError`` (400)
    or a ``BentoMLException`` of a 4xx code. :class:`RequestGuard` already logs those
    requests in one line; any other exception (a server error) keeps its record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return ``False`` for the record of a client error."""
        if not record.exc_info:
            return True
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        exc = record.exc_info[1]
        if isinstance(exc, ValidationError):
            return False
        if isinstance(exc, BentoMLException) and int(exc.error_code) < 500:
            return False
        return True


#: The logger of ``log_exception`` in bentoml==1.4.39 (tests/test_fuzz.py guards it).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorFilter` on BentoML's request-exception logger (once)."""
    target = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in target.filters):
        target.addFilter(ClientErrorFilter())
