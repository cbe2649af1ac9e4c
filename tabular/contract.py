"""The input contract of a served model: one typed definition of a valid request.

It is derived once, when a model is saved, from what already defines the data:

* the dataset config says what each column is (date, category, number), gives its
  description and the numeric bounds that the Great Expectations gate enforces
  (``checks.ranges``): a request is held to the same bounds as the training data;
* the training rows say which columns had missing values (the fitted pipeline learned to
  impute them, so ``null`` is accepted there and nowhere else) and which category levels
  were seen;
* the fitted pipeline says which levels the model tells apart. A level never seen in
  training is accepted and handled the way the pipeline handles it (grouped into "Other"
  for one-hot columns, the overall rate for target-encoded ones); responses list it.

The contract is saved as JSON with the model (:meth:`InputContract.to_json`). From it,
the service builds its request model (:meth:`InputContract.request_model`), prediction logs
store typed features (:meth:`InputContract.features`), and the drift monitor reads logs
back as a typed frame (:meth:`InputContract.to_frame`) and takes its column roles
(:attr:`InputContract.roles`).

This module is light (pydantic and the standard library; pandas only where a frame is
built), so the monitor and the service import it without BentoML or scikit-learn.
"""

from __future__ import annotations

import datetime as dt
import functools
import keyword
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

#: Category lists up to this length are spelled out in the OpenAPI descriptions.
LISTED_LEVELS = 30
#: Longest text accepted for a category value.
MAX_TEXT = 200
#: A date and time as requests write it: ISO 8601 date, optionally a time (seconds and
#: microseconds optional), optionally an offset. Documented as this pattern, not as JSON
#: Schema's "date-time", which requires an offset (the rows' own times have none).
ISO_DATETIME = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?$"
)
_ISO = re.compile(ISO_DATETIME)

FieldKind = Literal["datetime", "category", "number"]
_TEXT = {str, type(None)}


class InputRejected(UserError):
    """A request or a logged row broke the contract.

    Attributes:
        problems: One entry per offending field.
    """

    def __init__(self, problems: list[RowProblem]):
        self.problems = problems
        super().__init__("; ".join(p.line() for p in problems))


@dataclass(frozen=True)
class RowProblem:
    """Why one field of one row was refused.

    Attributes:
        row: Position of the row in the input (0 for a single request).
        field: The column name (``"(row)"`` when the row itself is not an object).
        message: What is wrong, in plain words.
    """

    row: int
    field: str
    message: str

    def line(self) -> str:
        """Return the problem as ``field: message``."""
        return f"{self.field}: {self.message}"


@dataclass
class TypedRows:
    """Logged feature rows read back through the contract.

    Attributes:
        frame: The valid rows, one typed column per field (``datetime64[ns]`` for dates,
            ``float64`` for numbers, text or ``None`` for categories), indexed by each
            row's position in the input.
        problems: One entry per refused field of the other rows.
    """

    frame: pd.DataFrame
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def refused_rows(self) -> list[int]:
        """Positions of the rows left out of the frame."""
        return sorted({p.row for p in self.problems})


class FieldSpec(BaseModel):
    """One input of a served model.

    Attributes:
        name: The column name (the request's key).
        kind: ``datetime``, ``category`` or ``number``.
        nullable: Whether ``null`` is accepted (the column had missing values in training).
        description: One line with the unit, from the config's ``descriptions``.
        minimum: Lowest valid number (the gate's ``checks.ranges``), ``None`` when open.
        maximum: Highest valid number, ``None`` when open.
        levels: Category levels seen in the training rows, sorted.
        modelled_levels: Levels the fitted model tells apart; the others are handled as
            ``unseen_handling`` says.
        unseen_handling: How the pipeline treats a level outside ``modelled_levels``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: FieldKind
    nullable: bool = False
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    levels: list[str] = Field(default_factory=list)
    modelled_levels: list[str] = Field(default_factory=list)
    unseen_handling: str = ""

    def openapi_description(self) -> str:
        """Return the description shown in OpenAPI: meaning, unit, bounds, levels, nulls."""
        parts = [self.description.rstrip(".")] if self.description else []
        if self.kind == "datetime":
            parts.append(
                "ISO 8601 date and time; a UTC offset is ignored (the model reads the "
                "wall-clock time, as in training)"
            )
        if self.kind == "number" and (self.minimum is not None or self.maximum is not None):
            low = "-inf" if self.minimum is None else f"{self.minimum:g}"
            high = "+inf" if self.maximum is None else f"{self.maximum:g}"
            parts.append(f"valid range [{low}, {high}] (the data gate's bounds)")
        if self.kind == "category":
            count = len(self.levels)
            if count <= LISTED_LEVELS:
                parts.append(f"{count} levels seen in training: {', '.join(self.levels)}")
            else:
                parts.append(f"{count} levels seen in training, e.g. {', '.join(self.levels[:8])}")
            parts.append(
                f"any other value is accepted, reported as unseen and {self.unseen_handling}"
            )
        parts.append(
            "may be null (imputed as in training)" if self.nullable else "required, not null"
        )
        return "; ".join(parts) + "."


def _date_input(value: Any) -> Any:
    # pydantic would also read a number (or "1600000000") as a Unix time: a date must be
    # written as a date.
    if isinstance(value, dt.date) or (isinstance(value, str) and _ISO.match(value)):
        return value
    shown = repr(value[:40]) if isinstance(value, str) else type(value).__name__
    raise ValueError(f"expected an ISO 8601 date and time string, got {shown}")


def _wall_clock(value: dt.datetime) -> dt.datetime:
    # The pipeline drops the offset and keeps the wall-clock time (DateParts); so do logs.
    value = value.replace(tzinfo=None)
    if type(value) is not dt.datetime:  # e.g. a pandas Timestamp read back from a frame
        value = dt.datetime.combine(value.date(), value.time())
    return value


def _python_name(column: str, index: int) -> str:
    safe = column.isidentifier() and not keyword.iskeyword(column)
    if safe and not column.startswith("_") and not hasattr(BaseModel, column):
        return column
    return f"field_{index}"


class InputContract(BaseModel):
    """The typed inputs of one served model.

    Attributes:
        version: Format version of this description.
        dataset: The dataset config's name.
        fields: The model's inputs, in the order its pipeline takes them.
        example: A real training row (JSON values), shown in OpenAPI and the README.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    dataset: str
    fields: list[FieldSpec]
    example: dict[str, Any] = Field(default_factory=dict)

    # -- what the contract says ------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The input column names, in pipeline order."""
        return [f.name for f in self.fields]

    @property
    def roles(self) -> dict[str, list[str]]:
        """Column names by kind: ``datetime``, ``category``, ``number`` (for the monitor)."""
        roles: dict[str, list[str]] = {"datetime": [], "category": [], "number": []}
        for spec in self.fields:
            roles[spec.kind].append(spec.name)
        return roles

    def spec(self, name: str) -> FieldSpec:
        """Return the spec of one input.

        Args:
            name: The column name.

        Returns:
            Its spec.

        Raises:
            KeyError: If the contract has no such input.
        """
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"'{name}' is not an input of this model ({', '.join(self.names)})")

    # -- saving ----------------------------------------------------------------------------

    def to_json(self) -> str:
        """Return the contract as JSON text (what is saved with the model)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> InputContract:
        """Read a contract saved by :meth:`to_json`.

        Args:
            text: The JSON text.

        Returns:
            The contract.
        """
        return cls.model_validate_json(text)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> InputContract:
        """Read the contract from a served model's BentoML metadata.

        Args:
            metadata: ``bentoml.models.get(tag).info.metadata``.

        Returns:
            The contract.

        Raises:
            KeyError: If the model was saved without a contract.
        """
        if "contract_json" not in metadata:
            raise KeyError(
                "this model was saved without an input contract; retrain it with `make run`"
            )
        return cls.from_json(metadata["contract_json"])

    # -- requests --------------------------------------------------------------------------

    @functools.cached_property
    def _python_names(self) -> list[str]:
        return [_python_name(spec.name, i) for i, spec in enumerate(self.fields)]

    @functools.cached_property
    def _levels(self) -> list[tuple[int, str, frozenset[str]]]:
        return [
            (i, spec.name, frozenset(spec.levels))
            for i, spec in enumerate(self.fields)
            if spec.kind == "category"
        ]

    @functools.cached_property
    def _numbers(self) -> list[int]:
        return [i for i, spec in enumerate(self.fields) if spec.kind == "number"]

    def request_model(self) -> type[BaseModel]:
        """Return the pydantic model of one request row (built once, then cached).

        Every field is required (a forgotten key is an error, not a silent ``null``);
        ``null`` is accepted only for nullable fields; numbers must be JSON numbers within
        the gate's bounds; categories must be text; dates ISO 8601 text. Unknown keys are
        refused, so a misspelt column cannot be silently ignored.

        Returns:
            The model class, named ``<Dataset>Features``.
        """
        return self._request_model

    @functools.cached_property
    def _request_model(self) -> type[BaseModel]:
        definitions: dict[str, Any] = {}
        for spec, python_name in zip(self.fields, self._python_names, strict=True):
            annotation = _annotation(spec)
            example = self.example.get(spec.name)
            definitions[python_name] = (
                annotation,
                Field(
                    alias=spec.name,
                    description=spec.openapi_description(),
                    # OpenAPI 3.0 (BentoML's /docs.json) reads "example", not JSON Schema's
                    # "examples".
                    json_schema_extra={"example": example},
                ),
            )
        title = "".join(part.capitalize() for part in self.dataset.replace("-", "_").split("_"))
        model = create_model(
            f"{title}Features",
            __config__=ConfigDict(
                extra="forbid",
                populate_by_name=False,
                json_schema_extra={"example": self.example} if self.example else None,
            ),
            __doc__=f"One row of '{self.dataset}' inputs, as the model was trained on them.",
            **definitions,
        )
        return model

    def check_row(self, raw: Mapping[str, Any], row: int = 0) -> BaseModel:
        """Check one raw row (JSON values or Python values) against the contract.

        Args:
            raw: Values by column name.
            row: The row's position, for the problems.

        Returns:
            An instance of :meth:`request_model`.

        Raises:
            InputRejected: Naming each offending field and the reason.
        """
        try:
            return self.request_model().model_validate(raw)
        except ValidationError as exc:
            raise InputRejected(problems_of(exc, row)) from None

    def values(self, row: BaseModel) -> list[Any]:
        """Return a validated row's values in pipeline order (what the model service takes).

        Args:
            row: An instance of :meth:`request_model`.

        Returns:
            The values: naive ``datetime``, Python ``float``, ``str`` or ``None``.
        """
        values = list(row.__dict__.values())
        for i in self._numbers:
            if values[i] is not None and type(values[i]) is not float:
                values[i] = float(values[i])  # e.g. a numpy float from a Python caller
        return values

    def features(self, row: BaseModel) -> dict[str, Any]:
        """Return a validated row as typed features by column name (what logs store).

        Args:
            row: An instance of :meth:`request_model`.

        Returns:
            ``{column: value}`` with naive ``datetime``, ``float``, ``str`` or ``None``
            values: never numpy scalars, never numbers as text.
        """
        return dict(zip(self.names, self.values(row), strict=True))

    def json_row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Turn a data row (pandas or Python values) into a request body for this model.

        Args:
            record: Values by column name; other columns are ignored.

        Returns:
            The contract's fields as JSON values: dates as ISO 8601 text, numbers as
            ``float``, categories as text, missing values (``NaN``, ``NaT``, ``None``) as
            ``None``.
        """
        import pandas as pd

        body: dict[str, Any] = {}
        for spec in self.fields:
            value = record[spec.name]
            if pd.isna(value):
                body[spec.name] = None
            elif spec.kind == "datetime":
                body[spec.name] = pd.Timestamp(value).tz_localize(None).isoformat()
            elif spec.kind == "number":
                body[spec.name] = float(value)
            else:
                body[spec.name] = str(value)
        return body

    def coerce(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Check a raw row and return its typed features by column name.

        Args:
            raw: Values by column name (JSON or Python values).

        Returns:
            The typed features (see :meth:`features`).

        Raises:
            InputRejected: Naming each offending field and the reason.
        """
        return self.features(self.check_row(raw))

    @functools.cached_property
    def _column_adapters(self) -> list[TypeAdapter]:
        return [TypeAdapter(list[_annotation(spec)]) for spec in self.fields]

    @functools.cached_property
    def _text_dates(self) -> TypeAdapter:
        # For a column of text only, _date_input has nothing to refuse: pydantic's own
        # parsing, then the offset dropped as _wall_clock does, without a Python call a value.
        return TypeAdapter(list[dt.datetime | None])

    def check_batch(self, rows: Sequence[Any]) -> list[list[Any]]:
        """Check a batch of raw rows at once, column by column, by the request model's rules.

        Each column is validated in one call by the same field annotation as
        :meth:`request_model` (so the rules cannot differ; ``tests/test_contract.py`` holds
        the answers equal), instead of one model instance per row.

        Args:
            rows: Raw rows (JSON objects: values by column name).

        Returns:
            Each row's values in pipeline order, as :meth:`values` returns them.

        Raises:
            InputRejected: Naming each offending row (its position), field and reason.
        """
        names = self.names
        pick = operator.itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
        try:
            if set(map(len, rows)) - {len(names)}:
                raise KeyError  # a field missing or unknown: found and named below
            columns = list(zip(*map(pick, rows), strict=True))  # one C call per row
        except (KeyError, TypeError):
            raise InputRejected(self._key_problems(rows)) from None
        problems: list[RowProblem] = []
        for i, (name, adapter) in enumerate(zip(names, self._column_adapters, strict=True)):
            text = self.fields[i].kind == "datetime" and set(map(type, columns[i])) <= _TEXT
            try:
                if text and (self.fields[i].nullable or None not in columns[i]):
                    values = self._text_dates.validate_python(columns[i])
                    columns[i] = [
                        v if v is None or v.tzinfo is None else _wall_clock(v) for v in values
                    ]
                else:
                    columns[i] = adapter.validate_python(columns[i])
            except ValidationError as exc:
                problems += [RowProblem(p.row, name, p.message) for p in problems_of(exc, None)]
        if problems:
            raise InputRejected(sorted(problems, key=lambda p: p.row))
        for i in self._numbers:  # e.g. a JSON integer for a number field, as values() does
            if set(map(type, columns[i])) - {float, type(None)}:
                columns[i] = [None if value is None else float(value) for value in columns[i]]
        return [list(values) for values in zip(*columns, strict=True)]

    def _key_problems(self, rows: Sequence[Any]) -> list[RowProblem]:
        problems: list[RowProblem] = []
        names, expected = self.names, set(self.names)
        for position, row in enumerate(rows):
            if not isinstance(row, Mapping):
                problems.append(RowProblem(position, "(row)", "Input should be a valid dictionary"))
                continue
            problems += [RowProblem(position, n, "required field is missing")
                         for n in names if n not in row]  # fmt: skip
            problems += [RowProblem(position, str(n), "not an input of this model")
                         for n in row if n not in expected]  # fmt: skip
        return problems

    def unseen(self, values: Sequence[Any]) -> list[str]:
        """Return the category fields whose value was never seen in training.

        Args:
            values: A row's values in pipeline order (see :meth:`values`).

        Returns:
            The field names, in pipeline order (empty when every level is known).
        """
        return [
            name
            for i, name, levels in self._levels
            if values[i] not in levels and values[i] is not None
        ]

    # -- frames ----------------------------------------------------------------------------

    def values_frame(self, rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
        """Build a typed frame from rows of values in pipeline order (the pipeline's input).

        Args:
            rows: Values as :meth:`values` returns them.

        Returns:
            One column per field: ``datetime64[ns]`` dates, ``float64`` numbers, text
            categories (``None`` when missing).
        """
        import pandas as pd

        columns = list(zip(*rows, strict=True)) if rows else [()] * len(self.fields)
        data = {}
        for spec, column in zip(self.fields, columns, strict=True):
            if spec.kind == "datetime":
                data[spec.name] = pd.to_datetime(pd.Series(column, dtype=object)).astype(
                    "datetime64[ns]"
                )
            elif spec.kind == "number":
                data[spec.name] = pd.Series(column, dtype="float64")
            else:
                data[spec.name] = pd.Series(column, dtype=object)
        return pd.DataFrame(data)

    def to_frame(self, records: Iterable[Mapping[str, Any]]) -> TypedRows:
        """Read logged feature rows back as a typed frame, reporting the rows that break the contract.

        Args:
            records: Feature dicts as stored in prediction logs (or any raw rows).

        Returns:
            The typed frame of the valid rows and the problems of the others.
        """
        import pandas as pd

        model = self.request_model()
        kept: list[list[Any]] = []
        index: list[int] = []
        problems: list[RowProblem] = []
        for position, record in enumerate(records):
            try:
                row = model.model_validate(record)
            except ValidationError as exc:
                problems.extend(problems_of(exc, position))
                continue
            kept.append(self.values(row))
            index.append(position)
        frame = self.values_frame(kept)
        frame.index = pd.Index(index, dtype="int64")
        return TypedRows(frame=frame, problems=problems)


def _annotation(spec: FieldSpec) -> Any:
    if spec.kind == "datetime":
        base: Any = Annotated[
            dt.datetime,
            BeforeValidator(_date_input),
            AfterValidator(_wall_clock),
            WithJsonSchema({"type": "string", "pattern": ISO_DATETIME}),
        ]
    elif spec.kind == "number":
        base = Annotated[
            float,
            Field(strict=True, allow_inf_nan=False, ge=spec.minimum, le=spec.maximum),
        ]
    else:
        base = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_TEXT)]
    return base | None if spec.nullable else base


def problems_of(error: ValidationError, row: int | None = 0) -> list[RowProblem]:
    """Turn a pydantic validation error into one :class:`RowProblem` per field.

    Args:
        error: The error raised while validating a row.
        row: The row's position; ``None``: a list was validated, the position is the
            error's first index.

    Returns:
        The problems, naming the column and the reason.
    """
    problems = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        positions = [part for part in item["loc"] if isinstance(part, int)]
        at = positions[0] if positions and row is None else row
        # The first part names the field; union members (e.g. "float | None") append their
        # type's name after it, which a field's own name may also start with ("street").
        location = [str(part) for part in item["loc"] if not isinstance(part, int)]
        name = location[0] if location else "(row)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "extra_forbidden":
            message = "not an input of this model"
        elif item["type"] == "none_required" or message == "Input should be None":
            continue
        problems.append(RowProblem(row=at if at is not None else 0, field=name, message=message))
    return _merge_null_alternatives(problems)


def _merge_null_alternatives(problems: list[RowProblem]) -> list[RowProblem]:
    seen: dict[tuple[int, str], RowProblem] = {}
    for problem in problems:
        seen.setdefault((problem.row, problem.field), problem)
    return list(seen.values())


def build_contract(
    config,
    train: pd.DataFrame,
    pipeline,
    columns: Sequence[str],
) -> InputContract:
    """Derive a served model's input contract from the config, training rows and pipeline.

    Args:
        config: The dataset config (:class:`tabular.config.DatasetConfig`).
        train: The training rows the pipeline was fitted on.
        pipeline: The fitted scikit-learn pipeline (``preprocess`` then ``model``).
        columns: The model's input columns, in the order its pipeline takes them.

    Returns:
        The contract.
    """
    from tabular.features import OTHER

    modelled = _modelled_levels(pipeline)
    specs = []
    for column in columns:
        values = train[column]
        nullable = bool(values.isna().any())
        description = config.descriptions.get(column, "")
        if column == config.date_column:
            specs.append(
                FieldSpec(name=column, kind="datetime", nullable=nullable, description=description)
            )
        elif column in config.categorical:
            levels = sorted({str(v) for v in values.dropna().unique()})
            kept, handling = modelled.get(
                column, (levels, "handled as the pipeline handles unknown levels")
            )
            specs.append(
                FieldSpec(
                    name=column,
                    kind="category",
                    nullable=nullable,
                    description=description,
                    levels=levels,
                    modelled_levels=[level for level in kept if level in set(levels)],
                    unseen_handling=handling.replace("{other}", OTHER),
                )
            )
        else:
            low, high = config.checks.ranges.get(column, (None, None))
            specs.append(
                FieldSpec(
                    name=column,
                    kind="number",
                    nullable=nullable,
                    description=description,
                    minimum=low,
                    maximum=high,
                )
            )
    complete = train[list(columns)].dropna()
    sample = complete.iloc[0] if len(complete) else train[list(columns)].iloc[0]
    contract = InputContract(dataset=config.name, fields=specs)
    return contract.model_copy(update={"example": contract.json_row(sample)})


def _modelled_levels(pipeline) -> dict[str, tuple[list[str], str]]:
    """Levels each categorical column's fitted encoder tells apart, and what it does with others."""
    from sklearn.preprocessing import OneHotEncoder

    from tabular.features import kept_levels

    found: dict[str, tuple[list[str], str]] = {}
    preprocess = getattr(pipeline, "named_steps", {}).get("preprocess")
    for _, transformer, columns in getattr(preprocess, "transformers_", []):
        steps = getattr(transformer, "named_steps", {})
        if isinstance(steps.get("encode"), OneHotEncoder):  # one-hot, rare levels grouped
            for i, column in enumerate(columns):
                found[column] = (
                    kept_levels(steps["encode"], i),
                    "grouped into '{other}' (as rare training levels are)",
                )
        elif "encode" in steps and hasattr(steps["encode"], "target_mean_"):
            for i, column in enumerate(columns):
                categories = [str(c) for c in steps["encode"].categories_[i]]
                found[column] = (categories, "encoded with the overall training rate")
    return found
