"""One OpenAPI 3.1 document for the whole front service, derived from the models it validates with.

BentoML 1.4 generates an OpenAPI 3.0 document whose schemas lose what pydantic says
(``null`` accepted by a field, unknown fields refused), documents only 200 and its own
error shape, and knows no security scheme. This module writes the document the users open
(``/docs.json``, shown by the Swagger UI at ``/``) from the same pydantic models the server
validates with, so it cannot say something else than the server does:

* the prediction routes: each BentoML API's ``input_spec`` and ``output_spec``;
* the REST resources: the FastAPI app's own generated document (records, logs, feedback);
* BentoML's probes (``/livez``, ``/healthz``, ``/readyz``, ``/metrics``);
* every error status each route can answer, all with the one :class:`bentos.guard.ApiError`
  body; the API-key scheme on every route :func:`bentos.guard.needs_key` guards; 413 and
  415 on every route taking a body.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from bentos.guard import API_KEY_ENV, API_KEY_HEADER, BODY_METHODS, ApiError, needs_key

TITLE = "tabular-mlops prediction API"
CONTACT = {"name": "tabular-mlops (the project's issue tracker)"}
REF = "#/components/schemas/{model}"
#: Shared answers, referenced from every operation that can give them.
SHARED_RESPONSES = {
    "BadRequest": (
        400,
        "Invalid request: malformed JSON, a missing or unknown field, a wrong type, a value out of range (each problem named in `detail`).",
    ),
    "Unauthorized": (401, f"The `{API_KEY_HEADER}` header is missing."),
    "Forbidden": (403, f"The `{API_KEY_HEADER}` header is wrong."),
    "PayloadTooLarge": (413, "The body is larger than the service's limit."),
    "UnsupportedMediaType": (415, "The body is not sent as `application/json`."),
    "ServerError": (
        500,
        "A fault of the server (logged with its traceback); never an answer to a client's mistake.",
    ),
    "Timeout": (504, "The request took longer than the service's timeout."),
}


def route_model(spec: type[BaseModel]) -> type[BaseModel]:
    """The project's model behind a BentoML route's input or output spec.

    BentoML wraps the model of a route (``input_spec=``, a one-row body, a return type) in a
    subclass of its own (``<Model>IODescriptor``) that validates the same way and adds
    BentoML-only keys to its JSON schema; the document shows the model itself.

    Args:
        spec: ``APIMethod.input_spec`` or ``output_spec``.

    Returns:
        The first class of its MRO defined outside BentoML's SDK.

    Raises:
        TypeError: If the spec is BentoML's own (a route whose body is built from its
            parameters): such a route would ignore unknown fields.
    """
    for cls in spec.__mro__:
        if (
            isinstance(cls, type)
            and issubclass(cls, BaseModel)
            and cls is not BaseModel
            and not cls.__module__.startswith("_bentoml_sdk")
        ):
            return cls
    raise TypeError(f"{spec.__name__} is BentoML's own model: give the route an input_spec")


def _add_schema(components: dict[str, Any], spec: type[BaseModel], mode: str) -> dict[str, str]:
    """Add a route's model (and the models it uses) to the components; return a reference."""
    model = route_model(spec)
    schema = model.model_json_schema(ref_template=REF, mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        _put(components, name, definition)
    _put(components, model.__name__, schema)
    return {"$ref": REF.format(model=model.__name__)}


def _put(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    known = components.get(name)
    if known is not None and known != schema:
        raise ValueError(f"two different schemas are named {name!r} in the OpenAPI document")
    components[name] = schema


def _requires_body(model: type[BaseModel]) -> bool:
    return any(field.is_required() for field in model.model_fields.values())


def _bentoml_operation(method: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The POST operation of one BentoML API, from its input and output models."""
    doc = (method.doc or "").strip()
    summary, _, description = doc.partition("\n")
    request = _add_schema(components, method.input_spec, "validation")
    response = _add_schema(components, method.output_spec, "serialization")
    return {
        "tags": ["predictions"],
        "summary": summary.strip(),
        "description": " ".join(line.strip() for line in description.splitlines()).strip(),
        "operationId": method.name,
        "requestBody": {
            # BentoML reads a missing body as {}: only a route with a required field needs one.
            "required": _requires_body(method.input_spec),
            "content": {"application/json": {"schema": request}},
        },
        "responses": {
            "200": {
                "description": "Successful response.",
                "content": {"application/json": {"schema": response}},
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
        },
    }


def _probe(summary: str, statuses: Mapping[int, str]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, description in statuses.items():
        if status < 400:
            responses[str(status)] = {
                "description": description,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        else:
            responses[str(status)] = _error_response(description)
    return {"get": {"tags": ["probes"], "summary": summary, "responses": responses}}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }


def _fastapi_errors(operation: dict[str, Any]) -> None:
    """FastAPI documents its validation errors as 422; the resources answer them as 400."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    responses.setdefault("400", {"$ref": "#/components/responses/BadRequest"})
    for answer in responses.values():
        content = answer.get("content", {}).get("application/json", {})
        if content.get("schema", {}).get("$ref") == REF.format(model="ApiError"):
            content["schema"] = {"$ref": REF.format(model="Error")}


def openapi_document(
    service: Any,
    resources: Any,
    dataset: str,
    max_body: int,
    extra_errors: Mapping[str, Mapping[int, str]] | None = None,
) -> dict[str, Any]:
    """Write the OpenAPI 3.1 document of a front service and its mounted REST resources.

    Args:
        service: The BentoML service (its ``apis``: route, input and output models).
        resources: The mounted FastAPI app (:func:`bentos.resources.build_app`).
        dataset: The served dataset's name (in the title).
        max_body: The body limit, in bytes (in the 413's description).
        extra_errors: Error statuses a prediction route answers besides 400/413/415/500/504,
            by API name: ``{"reload": {404: "...", 409: "..."}}``.

    Returns:
        The document as a dict (JSON-ready).
    """
    from fastapi.openapi.utils import get_openapi

    bento = getattr(service, "bento", None)
    version = bento.tag.version if bento is not None and bento.tag.version else "unbuilt"
    document = get_openapi(
        title=f"{TITLE} ({dataset})",
        version=version,
        openapi_version="3.1.0",
        description=(
            f"Two served models of the '{dataset}' dataset behind one input contract, and the "
            "stored records, prediction logs and feedback as REST resources. Every error "
            f"answer is an `Error` body. Writes need the `{API_KEY_HEADER}` header."
        ),
        contact=CONTACT,
        routes=[route for route in resources.routes if getattr(route, "include_in_schema", True)],
    )
    paths: dict[str, Any] = document.setdefault("paths", {})
    components = document.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.pop("ApiError", None)
    error = ApiError.model_json_schema(ref_template=REF, mode="validation")
    for name, definition in error.pop("$defs", {}).items():
        _put(schemas, name, definition)
    _put(schemas, "Error", error)
    components["responses"] = {
        name: _error_response(description) for name, (_, description) in SHARED_RESPONSES.items()
    }
    components["responses"]["PayloadTooLarge"]["description"] = (
        f"The body is larger than {max_body:,} bytes (the service's `MLOPS_MAX_BODY_BYTES`)."
    )
    for item in paths.values():
        for operation in item.values():
            _fastapi_errors(operation)

    extra_errors = extra_errors or {}
    for name, method in service.apis.items():
        operation = _bentoml_operation(method, schemas)
        for status, description in extra_errors.get(name, {}).items():
            operation["responses"][str(status)] = _error_response(description)
        paths.setdefault(method.route, {})["post"] = operation

    paths["/livez"] = _probe("Alive (BentoML's liveness probe).", {200: "Alive."})
    paths["/healthz"] = _probe("Alive (the same as /livez).", {200: "Alive."})
    paths["/readyz"] = _probe(
        "Ready: every model process has loaded its model.",
        {200: "Ready.", 503: "Not ready yet (a model process is still loading)."},
    )
    paths["/metrics"] = _probe("Prometheus metrics.", {200: "Metrics, in Prometheus' text format."})

    components["securitySchemes"] = {
        "ApiKeyAuth": {
            "type": "apiKey",
            "in": "header",
            "name": API_KEY_HEADER,
            "description": f"Must equal the service's {API_KEY_ENV}. Missing: 401; wrong: 403; "
            f"{API_KEY_ENV} not set on the server: 503.",
        }
    }
    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation["responses"]
            if method.upper() in BODY_METHODS:
                responses["413"] = {"$ref": "#/components/responses/PayloadTooLarge"}
                responses["415"] = {"$ref": "#/components/responses/UnsupportedMediaType"}
            if needs_key(method, path):
                operation["security"] = [{"ApiKeyAuth": []}]
                responses["401"] = {"$ref": "#/components/responses/Unauthorized"}
                responses["403"] = {"$ref": "#/components/responses/Forbidden"}
                if "503" not in responses:
                    responses["503"] = _error_response(f"{API_KEY_ENV} is not set on the server.")
                else:
                    responses["503"] = copy.deepcopy(responses["503"])
                    responses["503"]["description"] += (
                        f" Or {API_KEY_ENV} is not set on the server."
                    )
            if path not in ("/livez", "/healthz", "/readyz", "/metrics"):
                responses["500"] = {"$ref": "#/components/responses/ServerError"}
                responses["504"] = {"$ref": "#/components/responses/Timeout"}
            operation["responses"] = dict(sorted(responses.items()))
    document["paths"] = dict(sorted(paths.items()))
    document["tags"] = [
        {"name": "predictions", "description": "The two models (BentoML APIs)."},
        {"name": "records", "description": "The served dataset's stored rows."},
        {"name": "logs", "description": "Every prediction's inputs and answer."},
        {
            "name": "feedback",
            "description": "True outcomes, scored by the champion/challenger gate.",
        },
        {"name": "probes", "description": "BentoML's health probes and metrics."},
    ]
    return document
