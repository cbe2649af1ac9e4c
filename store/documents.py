"""The mongoengine documents: what a row, a prediction log and a feedback look like in MongoDB.

Every document entering MongoDB passes its class's field rules; :func:`build` turns
mongoengine's errors into one sentence naming each offending field. :func:`out_model`
derives, from each document, the pydantic model the API and the monitor use.

Indexes are declared here and created by :func:`store.connection.ensure_indexes`
(``auto_create_index`` is off: creating them lazily would block the first write for the
whole server-selection timeout when MongoDB is down).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentListField,
    FloatField,
    IntField,
    ListField,
    StringField,
    ValidationError,
)
from pydantic import BaseModel, Field, create_model

from tabular.errors import InvalidRecord

#: Dataset names follow the dataset config's rule (lowercase, digits, ``_`` and ``-``).
DATASET_NAME = r"^[a-z0-9][a-z0-9_-]*$"
#: How a column's values are stored: the Python type every value of the column has.
KINDS = ("int", "float", "bool", "datetime", "string")
#: A column's role, from the dataset config.
ROLES = ("date", "target", "categorical", "numeric", "id", "leakage", "other")


class StrictIntField(IntField):
    """An integer field that refuses strings, booleans and fractions instead of casting them."""

    def validate(self, value):
        """Refuse anything but a whole number (``3`` or ``3.0``, not ``3.5``, ``"3"``, ``True``)."""
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            self.error(f"expected a whole number, got {type(value).__name__} {value!r}")
        super().validate(value)


class StrictFloatField(FloatField):
    """A float field that refuses strings, booleans, NaN and infinities."""

    def validate(self, value):
        """Refuse anything but a finite ``int`` or ``float``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(f"expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            self.error(f"expected a finite number, got {value!r}")
        super().validate(value)


class DatasetRecord(Document):
    """One row of a dataset, for any dataset config.

    Attributes:
        id: ``<dataset>:<key>``; an imported row's key is a hash of its values, so importing
            the same file twice inserts nothing the second time.
        dataset: The dataset's name (the config's ``name``).
        row_number: Position of the row in the imported frame; backups keep this order.
        date: The config's date column (millisecond precision); absent without one.
        target: The 0/1 target derived by the config.
        values: The row's columns by name (stored without the date and the target, under
            :func:`encode_key` names), each of its column's kind; ``None`` = missing.
    """

    id = StringField(primary_key=True, min_length=3, max_length=300)
    dataset = StringField(required=True, regex=DATASET_NAME, max_length=100)
    row_number = StrictIntField(required=True, min_value=0)
    date = DateTimeField()
    target = StrictIntField(required=True, choices=(0, 1))
    values = DictField(default=dict)

    meta = {
        "collection": "dataset_records",
        "indexes": [("dataset", "row_number", "id"), ("dataset", "date")],
        "auto_create_index": False,
    }


class ColumnSpec(EmbeddedDocument):
    """How one column is stored and restored.

    Its name, pandas dtype, the kind of its values (:data:`KINDS`), its role in the config
    (:data:`ROLES`) and its categories (the levels of a ``category`` column).
    """

    name = StringField(required=True, min_length=1)
    dtype = StringField(required=True)
    kind = StringField(required=True, choices=KINDS)
    role = StringField(required=True, choices=ROLES)
    categories = ListField(default=list)


class DatasetSchema(Document):
    """A stored dataset: what backups restore, and the rules its records are held to.

    Its columns (in frame order, with their dtypes), date and target columns, the target's
    source column, where and when the last import came from, its rows, the next row
    number, and the config's ``checks`` at the import (records created or changed later
    are held to them).
    """

    dataset = StringField(primary_key=True, regex=DATASET_NAME, max_length=100)
    columns = EmbeddedDocumentListField(ColumnSpec, required=True)
    date_column = StringField()
    target_column = StringField(required=True)
    target_source = StringField()
    source = StringField()
    rows = StrictIntField(min_value=0, default=0)
    next_row_number = StrictIntField(min_value=0, default=0)
    imported_at = DateTimeField()
    checks = DictField(default=dict)

    meta = {"collection": "dataset_schemas", "auto_create_index": False}


class PredictionLog(Document):
    """One prediction served by the API: what came in, what went out, who answered.

    Attributes:
        request_id: The request's id (primary key: a replayed log can never be stored twice).
        timestamp: When the request was served (UTC).
        model_name: Name of the model that answered.
        model_version: Its version (e.g. the BentoML model tag's version).
        features: The request's input features exactly as received.
        prediction: The predicted class (0/1).
        probability: The predicted probability of class 1, when the model gives one.
        latency_ms: Serving time of the request, in milliseconds.
        dataset: The dataset the model was trained on, when known.
        run_id: The pipeline run that trained the model, when known.
    """

    request_id = StringField(primary_key=True, min_length=1, max_length=128)
    timestamp = DateTimeField(required=True)
    model_name = StringField(required=True, min_length=1, max_length=200)
    model_version = StringField(required=True, min_length=1, max_length=200)
    features = DictField(required=True)
    prediction = StrictIntField(required=True)
    probability = StrictFloatField(min_value=0.0, max_value=1.0)
    latency_ms = StrictFloatField(required=True, min_value=0.0)
    dataset = StringField(regex=DATASET_NAME, max_length=100)
    run_id = StringField(max_length=100)

    meta = {
        "collection": "prediction_logs",
        "indexes": ["-timestamp", ("model_name", "model_version", "-timestamp")],
        "auto_create_index": False,
    }


class Feedback(Document):
    """The true outcome of a served request, posted once it is known.

    Attributes:
        request_id: The request's id (primary key: the first outcome posted stays).
        actual: The true class (0/1).
        received_at: When the outcome was recorded (UTC).
    """

    request_id = StringField(primary_key=True, min_length=1, max_length=128)
    actual = StrictIntField(required=True, choices=(0, 1))
    received_at = DateTimeField(required=True)

    meta = {
        "collection": "feedback",
        "indexes": ["-received_at"],
        "auto_create_index": False,
    }


class PromotionDecision(Document):
    """One champion/challenger decision of the drift monitor, with both scores and the window.

    Attributes:
        decision_id: The decision's id (primary key).
        dataset: The dataset of both models.
        decided_at: When the decision was taken (UTC).
        promoted: Whether the challenger replaced the champion.
        reason: The decision in one sentence, with both scores and the margin.
        metric: The metric compared (the config's ``training.metric``).
        margin: How much the challenger had to beat the champion by.
        champion: Tags of the champion's models (primary, secondary) when the decision was taken.
        challenger: Tags of the challenger's models (primary, secondary).
        champion_score: The champion primary's score on the labelled window.
        challenger_score: The challenger primary's score on the same rows.
        window: The labelled window the models were judged on: ``rows``, ``positives``,
            ``source`` (``feedback`` or ``dataset``), logged-time and data-date bounds.
        challenger_run: The run id of the retraining run.
        drift_check: The drift check that triggered the retraining (its folder name).
        bento: The Bento built for a promoted challenger.
        service_reload: What the running service answered to ``/reload``, if it was called.
    """

    decision_id = StringField(primary_key=True, min_length=1, max_length=64)
    dataset = StringField(required=True, regex=DATASET_NAME, max_length=100)
    decided_at = DateTimeField(required=True)
    promoted = BooleanField(required=True)
    reason = StringField(required=True, min_length=1)
    metric = StringField(required=True, min_length=1)
    margin = StrictFloatField(required=True, min_value=0.0)
    champion = ListField(StringField(min_length=1), required=True)
    challenger = ListField(StringField(min_length=1), required=True)
    champion_score = StrictFloatField()
    challenger_score = StrictFloatField()
    window = DictField(required=True)
    challenger_run = StringField(max_length=100)
    drift_check = StringField(max_length=200)
    bento = StringField(max_length=200)
    service_reload = StringField()

    meta = {
        "collection": "promotion_decisions",
        "indexes": [("dataset", "-decided_at")],
        "auto_create_index": False,
    }


#: Every document class of the store, for index creation and status reports.
DOCUMENTS: tuple[type[Document], ...] = (
    DatasetRecord,
    DatasetSchema,
    PredictionLog,
    Feedback,
    PromotionDecision,
)

# Full-width look-alikes, as the MongoDB manual suggests for keys that cannot be stored as is.
_DOT, _DOLLAR = "\uff0e", "\uff04"


def encode_key(column: str) -> str:
    """Turn a column name into a key MongoDB accepts (no ``.``, no leading ``$``)."""
    key = str(column).replace(".", _DOT)
    return _DOLLAR + key[1:] if key.startswith("$") else key


def decode_key(key: str) -> str:
    """Give back the column name of a key made by :func:`encode_key`."""
    name = key.replace(_DOT, ".")
    return "$" + name[1:] if name.startswith(_DOLLAR) else name


def describe(error: ValidationError) -> str:
    """Flatten a mongoengine validation error into one line, ``field: problem; ...``."""
    problems: list[str] = []

    def walk(prefix: str, errors: Mapping[str, Any]) -> None:
        for field, problem in errors.items():
            path = f"{prefix}.{field}" if prefix else str(field)
            nested = getattr(problem, "errors", None) or (
                problem if isinstance(problem, Mapping) else None
            )
            if nested:
                walk(path, nested)
            else:
                problems.append(f"{path}: {getattr(problem, 'message', problem)}")

    if error.errors:
        walk("", error.errors)
    else:
        field = f"{error.field_name}: " if error.field_name else ""
        problems.append(f"{field}{error.message}")
    return "; ".join(problems)


def build(document_class: type[Document], data: Mapping[str, Any], what: str) -> Document:
    """Build a document from plain data and validate it (not saved).

    Raises:
        InvalidRecord: If a field is unknown, missing, or of the wrong type or range; the
            message calls the document ``what`` and names each field.
    """
    unknown = sorted(set(data) - set(document_class._fields))
    if unknown:
        allowed = ", ".join(name for name in document_class._fields if name != "id")
        raise InvalidRecord(
            f"{what} has unknown field(s) {', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    try:
        # No auto-conversion: mongoengine would otherwise turn 1.5 into 1 and "2" into 2.0
        # before validating, hiding a wrong type from the user.
        document = document_class(__auto_convert=False, **data)
        document.validate()
    except ValidationError as exc:
        raise InvalidRecord(f"{what} is invalid: {describe(exc)}") from exc
    return document


_PYTHON_TYPES: tuple[tuple[type, Any], ...] = (
    (StringField, str),
    (BooleanField, bool),
    (IntField, int),
    (FloatField, float),
    (DateTimeField, dt.datetime),
    (DictField, dict[str, Any]),
    (ListField, list[str]),
)


def out_model(document_class: type[Document], name: str, **extra: Any) -> type[BaseModel]:
    """Derive the pydantic model ``name`` the API returns for a document class.

    Field names, types, required fields and descriptions (the class docstring's
    ``Attributes:``) all come from the document; ``extra`` adds ``(type, default)`` fields.
    """
    doc = document_class.__doc__ or ""
    described = dict(re.findall(r"^ {8}(\w+): (.+(?:\n {12}.+)*)", doc, re.MULTILINE))
    fields: dict[str, Any] = {}
    for field_name in document_class._fields_ordered:
        field = document_class._fields[field_name]
        kind = next(t for base, t in _PYTHON_TYPES if isinstance(field, base))
        description = " ".join(described.get(field_name, "").split()) or None
        if field.required or field.primary_key:
            fields[field_name] = (kind, Field(description=description))
        else:
            default = field.default() if callable(field.default) else field.default
            fields[field_name] = (kind | None, Field(default, description=description))
    fields.update(extra)
    return create_model(name, __doc__=doc.strip().splitlines()[0], **fields)
