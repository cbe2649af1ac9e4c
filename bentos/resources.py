"""The stored data as REST resources: records, prediction logs and feedback (FastAPI).

Mounted in the front service (:mod:`bentos.service`) with ``@bentoml.asgi_app``, next to the
prediction routes, and documented in the same OpenAPI document (:mod:`bentos.openapi`):

* ``/records``: the served dataset's stored rows. ``GET /records?carrier=B6&page=2`` lists
  them filtered by column values, ``GET /records/{id}`` reads one, ``POST /records`` adds
  one (201), ``PATCH /records/{id}`` changes some values, ``DELETE /records/{id}`` removes
  one (204).
* ``/logs``: the prediction logs of the served dataset, the same five ways.
* ``POST /feedback``: the true outcome of a prediction (what the champion/challenger gate
  scores the models on).

Every route calls a :mod:`store.crud` function and maps its errors: not found 404, invalid
400 naming the field, a conflict 409, the store unreachable 503. Request bodies and query
parameters are pydantic models refusing unknown fields. The API key of the writes is checked
before any of this, by :class:`bentos.guard.RequestGuard`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    create_model,
)
from pydantic.functional_serializers import PlainSerializer
from pydantic.json_schema import SkipJsonSchema
from starlette.responses import JSONResponse

from bentos.guard import ApiError, ErrorItem, error_response, summary
from store import DatasetRecordOut, Page, PredictionLogOut
from tabular.contract import ISO_DATETIME
from tabular.errors import Conflict, InvalidRecord, RecordNotFound, StoreError, StoreUnavailable

logger = logging.getLogger("bentoml.service")

#: Store calls run in at most this many threads (the front's BentoML routes use as many).
STORE_THREADS = 4
#: Most items a page may hold (the store's own limit).
MAX_PAGE_SIZE = 1000
#: Highest page number: (page - 1) * page_size stays far below MongoDB's 64-bit skip.
MAX_PAGE = 1_000_000_000


#: The dates and times accepted in requests (the input contract's): without an offset, a
#: time of the store (a log's, a filter's) means UTC.
_ISO = re.compile(ISO_DATETIME)


def _iso_text(value: Any) -> Any:
    # pydantic also reads numbers (and "0.5") as Unix times: a time must be ISO 8601 text.
    if not isinstance(value, str) or not _ISO.match(value):
        raise ValueError("expected an ISO 8601 date or date and time, e.g. 2013-07-19T20:49:00Z")
    return value


def _naive_utc(value: dt.datetime) -> dt.datetime:
    # As the store keeps times: naive UTC. A year-1 time with an offset cannot be converted:
    # a 400 here, rather than an OverflowError in the store.
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("date and time out of range once converted to UTC") from None


UtcDatetime = Annotated[
    dt.datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_naive_utc),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ISO_DATETIME,
            "description": "ISO 8601 date, or date and time; UTC unless an offset is given.",
        }
    ),
]


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


#: A time the store keeps in UTC (naive), answered with its "Z".
UtcTimestamp = Annotated[
    dt.datetime,
    PlainSerializer(_utc_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "UTC."}),
]
#: A value of the dataset's date column: its own wall-clock time, answered without an offset.
LocalDatetime = Annotated[
    dt.datetime,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ISO_DATETIME,
            "description": "The dataset's own date and time (as in its CSV), no offset.",
        }
    ),
]
#: Integers JSON clients carry exactly (IEEE doubles), well inside MongoDB's 64-bit ones.
INT64 = (-(2**53 - 1), 2**53 - 1)
#: A value as JSON carries it (no coercion: the store checks it against its column). No NaN
#: or infinity (Python's JSON parser reads them; no JSON answer could carry them back).
JsonScalar = (
    StrictStr
    | Annotated[StrictInt, Field(ge=INT64[0], le=INT64[1])]
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | StrictBool
    | None
)
RecordId = Annotated[str, Path(min_length=1, max_length=200, description="The record's id.")]
RequestId = Annotated[
    str, Path(min_length=1, max_length=128, description="The prediction's request id.")
]
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number, from 1.")]
PageSize = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Items per page (1 to {MAX_PAGE_SIZE}).")
]


# -- bodies ----------------------------------------------------------------------------------


class RecordIn(BaseModel):
    """A new row of the served dataset.

    Attributes:
        values: The row's values by column name: the date and target columns are required,
            a column left out is stored as missing; each value must fit its column's type.
    """

    model_config = ConfigDict(extra="forbid")

    values: dict[str, JsonScalar] = Field(
        description="Values by column name (the dataset's columns; date and target required)."
    )


class RecordChanges(BaseModel):
    """New values for some columns of a stored row.

    Attributes:
        values: The new values by column name (others are kept); ``null`` makes a value
            missing (not allowed for the date and target columns).
    """

    model_config = ConfigDict(extra="forbid")

    values: dict[str, JsonScalar] = Field(description="New values by column name.")


class FeedbackIn(BaseModel):
    """The true outcome of a prediction.

    Attributes:
        request_id: The prediction's ``request_id``.
        actual: The true class, 0 or 1.
    """

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    actual: StrictInt = Field(ge=0, le=1, description="The true class: 0 or 1.")


class Outcome(BaseModel):
    """The true outcome recorded for a prediction.

    Attributes:
        request_id: The prediction's id.
        actual: The true class (0 or 1).
        label: Its class label.
        received_at: When it was first recorded (UTC).
    """

    request_id: str
    actual: int
    label: str
    received_at: UtcTimestamp


def _optional(annotation: Any) -> Any:
    """A query parameter's ``annotation`` that may be left out (a query has no ``null``)."""
    return annotation | SkipJsonSchema[None]


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _omittable(description: str | None) -> Any:
    """A body field that may be left out but, given, must have its type (``null`` refused).

    Its default (``None``: left out) is not validated, so ``null`` is still refused, and not
    documented, since the document would then show a ``null`` the field refuses.
    """
    return Field(None, description=description, json_schema_extra=_drop_default)


def _log_models() -> tuple[type[BaseModel], type[BaseModel]]:
    """The bodies of ``POST /logs`` and ``PATCH /logs/{id}``, from the store's log model.

    Derived from :class:`store.PredictionLogOut` (less ``journaled``, which says where the
    store put a log): the same fields, unknown ones refused; ``timestamp`` may be left out
    (now). For a change every field may be left out, ``request_id`` cannot change.
    """
    created: dict[str, Any] = {}
    changed: dict[str, Any] = {}
    for name, info in PredictionLogOut.model_fields.items():
        if name == "journaled":
            continue
        annotation = UtcDatetime if info.annotation is dt.datetime else info.annotation
        if name == "request_id":
            # The store's bounds, and no "/": the id is a path segment of GET /logs/{request_id}.
            annotation = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/]+$")]
        if name == "features":
            # The store takes any values here; JSON scalars are what a log's features are,
            # and they can be answered back (no NaN).
            annotation = dict[str, JsonScalar]
        description = info.description
        if name == "timestamp":
            created[name] = (annotation, _omittable("Default: now."))
        elif info.is_required():
            created[name] = (annotation, Field(description=description))
        else:
            created[name] = (annotation, Field(info.default, description=description))
        if name != "request_id":
            changed[name] = (annotation, _omittable(description))
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    log_in = create_model("PredictionLogIn", __config__=config, **created)
    log_in.__doc__ = "A prediction log to store (fields as ``GET /logs/{request_id}`` shows)."
    log_changes = create_model("PredictionLogChanges", __config__=config, **changed)
    log_changes.__doc__ = "New values for some fields of a prediction log."
    return log_in, log_changes


PredictionLogIn, PredictionLogChanges = _log_models()


def _answered(model: type[BaseModel], times: dict[str, Any]) -> type[BaseModel]:
    """The store's output model with its times answered as ``times`` says (same name).

    Args:
        model: A :mod:`store.crud` output model.
        times: The annotation of each of its date-and-time fields.

    Returns:
        A model with the same fields, but those.
    """
    fields = {}
    for name, info in model.model_fields.items():
        annotation = times.get(name, info.annotation)
        if name in times and not info.is_required():
            annotation = annotation | None
        default = ... if info.is_required() else info.default
        fields[name] = (annotation, Field(default, description=info.description))
    answered = create_model(model.__name__, **fields)
    answered.__doc__ = model.__doc__
    return answered


LogOut = _answered(PredictionLogOut, {"timestamp": UtcTimestamp})
RecordOut = _answered(DatasetRecordOut, {"date": LocalDatetime})


class LogQuery(BaseModel):
    """Filters of ``GET /logs``.

    Attributes:
        model_name: Keep logs of this model.
        model_version: Keep logs of this model version.
        since: Keep logs at or after this time (ISO 8601; naive means UTC).
        until: Keep logs before this time.
        page: Page number, from 1.
        page_size: Logs per page.
    """

    model_config = ConfigDict(extra="forbid")

    model_name: _optional(Annotated[str, Field(min_length=1, max_length=200)]) = None
    model_version: _optional(Annotated[str, Field(min_length=1, max_length=200)]) = None
    since: _optional(UtcDatetime) = None
    until: _optional(UtcDatetime) = None
    page: int = Field(1, ge=1, le=MAX_PAGE, description="Page number, from 1.")
    page_size: int = Field(50, ge=1, le=MAX_PAGE_SIZE, description="Logs per page.")


# -- errors ----------------------------------------------------------------------------------


#: The store names the offending field before a colon: "values.distance: expected a number".
_FIELD = re.compile(r"(?:^|: |; )([\w.$]+): ")


def store_error_response(exc: StoreError) -> Response:
    """Map a store error to its answer: 404, 400 (naming the field), 503 or 409.

    Args:
        exc: The error a :mod:`store.crud` function raised.

    Returns:
        The answer.
    """
    if isinstance(exc, RecordNotFound):
        return error_response(404, str(exc))
    if isinstance(exc, InvalidRecord):
        field = _FIELD.search(str(exc))
        return error_response(400, str(exc), field.group(1).split(".") if field else None)
    if isinstance(exc, StoreUnavailable):
        logger.error("store unavailable: %s", exc)
        return error_response(503, f"{exc}; the store must be reachable for this route")
    return error_response(409, str(exc))


def _validation_response(_: Request, exc: RequestValidationError) -> JSONResponse:
    items = []
    for error in exc.errors():
        loc = list(error.get("loc", ()))
        if loc[:1] == ["body"]:
            loc = loc[1:]  # body fields are named as in BentoML's routes: from the body's root
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        items.append(ErrorItem(loc=loc, msg=message, type=str(error.get("type", "bad_request"))))
    body = ApiError(error=summary(items) or "invalid request", detail=items)
    return JSONResponse(body.model_dump(mode="json"), status_code=400)


def _store_error_handler(_: Request, exc: StoreError) -> Response:
    return store_error_response(exc)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "Invalid request: the body or a parameter breaks the schema, or a value does not fit its column (named in `detail`).",
        404: "No such record, log, request id or stored dataset.",
        409: "A conflict with what is stored (an existing id, a contradicting outcome).",
        503: "The store is unreachable.",
    }
    return {status: {"model": ApiError, "description": reasons[status]} for status in statuses}


# -- the app ---------------------------------------------------------------------------------


def build_app(
    dataset: str,
    class_labels: list[str],
) -> FastAPI:
    """Build the REST app of one served dataset.

    Args:
        dataset: The served dataset's name: its records and logs are the resources.
        class_labels: Names of class 0 and class 1 (for feedback answers).

    Returns:
        The FastAPI app (its own documentation routes off: the service's ``/docs.json``
        documents it).
    """
    app = FastAPI(
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        generate_unique_id_function=lambda route: route.name,  # operationId: the function
    )
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_exception_handler(StoreError, _store_error_handler)
    limiter = anyio.CapacityLimiter(STORE_THREADS)

    async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(
            functools.partial(function, *args, **kwargs), limiter=limiter
        )

    # -- records -----------------------------------------------------------------------------

    @app.get(
        "/records",
        response_model=Page[RecordOut],
        responses=_errors(400, 404, 503),
        tags=["records"],
        openapi_extra={"parameters": [_COLUMN_FILTERS]},
    )
    async def list_records(
        request: Request,
        date_from: Annotated[
            _optional(UtcDatetime),
            Query(description="Keep records dated at or after this (ISO 8601)."),
        ] = None,
        date_to: Annotated[
            _optional(UtcDatetime), Query(description="Keep records dated before this.")
        ] = None,
        page: PageNumber = 1,
        page_size: PageSize = 50,
    ) -> Page[DatasetRecordOut]:
        """List the dataset's records in row order, filtered by column values and dates.

        Any other query parameter is a column filter: ``?carrier=B6&origin=JFK`` keeps the
        records whose values equal those (an empty value matches a missing one). An unknown
        column is a 400.
        """
        from store import find_records

        declared = {"date_from", "date_to", "page", "page_size"}
        filters = [(k, v) for k, v in request.query_params.multi_items() if k not in declared]
        where = await call(_column_filters, dataset, filters) if filters else None
        return await call(
            find_records,
            dataset,
            where=where,
            date_from=date_from,
            date_to=date_to,
            page=page,
            page_size=page_size,
        )

    @app.get(
        "/records/{record_id}",
        response_model=RecordOut,
        responses=_errors(400, 404, 503),
        tags=["records"],
    )
    async def get_record(record_id: RecordId) -> DatasetRecordOut:
        """Read one record by id."""
        from store import get_record

        return await call(get_record, record_id)

    @app.post(
        "/records",
        status_code=201,
        response_model=RecordOut,
        responses={
            **_errors(400, 404, 409, 503),
            201: {"description": "Stored.", "headers": _LOCATION},
        },
        tags=["records"],
    )
    async def create_record(body: RecordIn, response: Response) -> DatasetRecordOut:
        """Add a row to the served dataset (needs ``X-API-Key``); its date and target are required."""
        from store import create_record

        created = await call(create_record, dataset, body.values)
        response.headers["Location"] = f"/records/{_segment(created.id)}"
        return created

    @app.patch(
        "/records/{record_id}",
        response_model=RecordOut,
        responses=_errors(400, 404, 503),
        tags=["records"],
    )
    async def update_record(record_id: RecordId, body: RecordChanges) -> DatasetRecordOut:
        """Change some values of a record (needs ``X-API-Key``)."""
        from store import update_record

        return await call(update_record, record_id, body.values)

    @app.delete(
        "/records/{record_id}",
        status_code=204,
        response_class=Response,
        responses=_errors(400, 404, 503),
        tags=["records"],
    )
    async def delete_record(record_id: RecordId) -> Response:
        """Delete a record (needs ``X-API-Key``)."""
        from store import delete_record

        await call(delete_record, record_id)
        return Response(status_code=204)

    # -- prediction logs ---------------------------------------------------------------------

    @app.get(
        "/logs",
        response_model=Page[LogOut],
        responses=_errors(400, 503),
        tags=["logs"],
    )
    async def list_logs(query: Annotated[LogQuery, Query()]) -> Page[PredictionLogOut]:
        """List the dataset's prediction logs, newest first, by model and time range."""
        from store import find_prediction_logs

        return await call(
            find_prediction_logs,
            model_name=query.model_name,
            model_version=query.model_version,
            dataset=dataset,
            since=query.since,
            until=query.until,
            page=query.page,
            page_size=query.page_size,
        )

    @app.get(
        "/logs/{request_id}",
        response_model=LogOut,
        responses=_errors(400, 404, 503),
        tags=["logs"],
    )
    async def get_log(request_id: RequestId) -> PredictionLogOut:
        """Read one prediction log by request id."""
        from store import get_prediction_log

        return await call(get_prediction_log, request_id)

    @app.post(
        "/logs",
        status_code=201,
        response_model=LogOut,
        responses={
            **_errors(400, 409, 503),
            201: {"description": "Stored.", "headers": _LOCATION},
        },
        tags=["logs"],
    )
    async def create_log(body: PredictionLogIn, response: Response) -> PredictionLogOut:  # type: ignore[valid-type]
        """Store a prediction log now (needs ``X-API-Key``); 409 if its request id exists."""
        from store import create_prediction_log

        log = body.model_dump(exclude_unset=True)
        created = await call(create_prediction_log, log)
        # Percent-encoded: a header is Latin-1, an id any text (the fuzzer sent "\U00058a89").
        response.headers["Location"] = f"/logs/{_segment(created.request_id)}"
        return created

    @app.patch(
        "/logs/{request_id}",
        response_model=LogOut,
        responses=_errors(400, 404, 503),
        tags=["logs"],
    )
    async def update_log(
        request_id: RequestId,
        body: PredictionLogChanges,  # type: ignore[valid-type]
    ) -> PredictionLogOut:
        """Change fields of a prediction log (needs ``X-API-Key``)."""
        from store import update_prediction_log

        return await call(update_prediction_log, request_id, body.model_dump(exclude_unset=True))

    @app.delete(
        "/logs/{request_id}",
        status_code=204,
        response_class=Response,
        responses=_errors(400, 404, 503),
        tags=["logs"],
    )
    async def delete_log(request_id: RequestId) -> Response:
        """Delete a prediction log (needs ``X-API-Key``)."""
        from store import delete_prediction_log

        await call(delete_prediction_log, request_id)
        return Response(status_code=204)

    # -- feedback ----------------------------------------------------------------------------

    def record_outcome(request_id: str, actual: int) -> Outcome | Response:
        from store import get_prediction_log, record_feedback

        get_prediction_log(request_id)  # a prediction is answered once its log is durable
        try:
            known = record_feedback(request_id, actual)  # atomic: the first outcome wins
        except Conflict as exc:
            return error_response(409, str(exc), ["actual"])
        return Outcome(
            request_id=request_id,
            actual=known.actual,
            label=class_labels[known.actual],
            received_at=known.received_at,
        )

    @app.post(
        "/feedback",
        response_model=Outcome,
        responses=_errors(400, 404, 409, 503),
        tags=["feedback"],
    )
    async def feedback(body: FeedbackIn) -> Outcome | Response:
        """Record the true outcome (0 or 1) of a prediction, by its ``request_id`` (needs ``X-API-Key``).

        404 when no prediction has this id; 409 when a different outcome was already
        recorded (posting the same outcome again is accepted). Only feedback sent with the
        key is stored, so only it reaches the champion/challenger gate.
        """
        return await call(record_outcome, body.request_id, body.actual)

    return app


_LOCATION = {"Location": {"description": "The new resource's path.", "schema": {"type": "string"}}}

#: The column filters of ``GET /records``, documented as one exploded object parameter.
_COLUMN_FILTERS = {
    "name": "columns",
    "in": "query",
    "required": False,
    "style": "form",
    "explode": True,
    "description": "Column filters: `column=value` pairs (e.g. `carrier=B6&origin=JFK`); an "
    "empty value matches a missing one; an unknown column is a 400.",
    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
}


def _segment(text: str) -> str:
    """``text`` as one path segment of a URL: what RFC 3986 allows there stays as is."""
    return quote(text, safe=":@!$&'()*+,;=")


def _column_filters(dataset: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn ``?column=value`` pairs into typed filters, by the stored columns' kinds.

    Raises:
        InvalidRecord: For an unknown column, a repeated one, or a value of the wrong type.
    """
    from store import dataset_info

    kinds = {column.name: column.kind for column in dataset_info(dataset).columns}
    where: dict[str, Any] = {}
    for name, text in pairs:
        if name not in kinds:
            raise InvalidRecord(
                f"query.{name}: not a parameter of GET /records nor a column of dataset "
                f"'{dataset}' (columns: {', '.join(kinds)})"
            )
        if name in where:
            raise InvalidRecord(f"query.{name}: give one value per column")
        where[name] = _typed(kinds[name], text, name)
    return where


def _typed(kind: str, text: str, name: str) -> Any:
    if text == "":
        return None
    try:
        if kind == "int":
            value = int(text)
            if not INT64[0] <= value <= INT64[1]:
                raise ValueError
            return value
        if kind == "float":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        if kind == "datetime":
            return _naive_utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidRecord(f"query.{name}: expected a {kind} value, got {text[:50]!r}") from None
    if kind == "bool":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise InvalidRecord(f"query.{name}: expected true or false, got {text[:50]!r}")
    return text
