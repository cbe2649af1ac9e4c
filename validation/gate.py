"""The Great Expectations gate: a suite built from the dataset config, run before training.

The suite checks that every configured column exists, numeric columns are numeric,
missing-value shares stay under their ceilings, numeric values stay in their ranges, the
target holds both classes and only 0/1, and (when the config has a date) every date parsed
and falls in its range.
A failure stops the pipeline with one readable summary plus the HTML Data Docs.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tabular.config import DatasetConfig
from tabular.errors import ValidationFailed

NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Float32",
    "Float64",
]


@dataclass(frozen=True)
class Failure:
    """One failed expectation, reduced to what a user needs to fix the data.

    Attributes:
        expectation: The expectation's type, e.g. ``expect_column_values_to_be_between``.
        column: The column it checks, or ``None`` for table-level expectations.
        unexpected_count: Rows that broke it, when the expectation counts rows.
        examples: A few offending values.
        detail: What was expected and what was observed.
    """

    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list
    detail: str

    def line(self) -> str:
        """Return the failure as one readable line."""
        where = f"column '{self.column}'" if self.column else "table"
        count = "" if self.unexpected_count is None else f", {self.unexpected_count:,} rows"
        examples = f", e.g. {self.examples}" if self.examples else ""
        return f"{where}: {self.expectation} failed ({self.detail}{count}{examples})"


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of the gate.

    Attributes:
        success: True when every expectation held.
        expectations: Number of expectations evaluated.
        failures: The failed ones.
        docs_path: HTML Data Docs index, when built.
    """

    success: bool
    expectations: int
    failures: list[Failure] = field(default_factory=list)
    docs_path: str | None = None

    def summary(self) -> str:
        """Return a readable summary: a headline, then one line per failure."""
        if self.success:
            return f"validation passed: {self.expectations} expectations held"
        lines = [
            f"validation failed: {len(self.failures)} of {self.expectations} expectations broken"
        ]
        lines += [f"  - {failure.line()}" for failure in self.failures]
        return "\n".join(lines)


def build_expectations(config: DatasetConfig) -> list:
    """Build the list of expectations implied by the dataset config.

    Args:
        config: The dataset config.

    Returns:
        Great Expectations ``Expectation`` objects, in a stable order.
    """
    import great_expectations as gx

    ex = gx.expectations
    checks = config.checks
    target = config.target.name
    expectations: list = [ex.ExpectTableRowCountToBeBetween(min_value=1)]
    for column in [*config.required_columns, target]:
        expectations.append(ex.ExpectColumnToExist(column=column))
    for column in config.numeric_features:
        expectations.append(
            ex.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMERIC_TYPES)
        )
    for column in [*config.categorical, *config.numeric_features]:
        ceiling = checks.null_share.get(column, checks.max_null_share)
        if ceiling < 1:
            expectations.append(ex.ExpectColumnValuesToNotBeNull(column=column, mostly=1 - ceiling))
    for column, (low, high) in checks.ranges.items():
        expectations.append(
            ex.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
        )
    expectations.append(ex.ExpectColumnValuesToBeInSet(column=target, value_set=[0, 1]))
    expectations.append(ex.ExpectColumnDistinctValuesToEqualSet(column=target, value_set=[0, 1]))
    if config.date_column is None:
        return expectations
    # Unparseable dates (or date parts) were turned into NaT by tabular.datasets.prepare:
    # none may remain.
    expectations.append(ex.ExpectColumnValuesToNotBeNull(column=config.date_column))
    if checks.date_range is not None:
        first, last = checks.date_range
        expectations.append(
            ex.ExpectColumnValuesToBeBetween(
                column=config.date_column,
                min_value=pd.Timestamp(first),
                max_value=pd.Timestamp(last) + pd.Timedelta(days=1) - pd.Timedelta(seconds=1),
            )
        )
    return expectations


def validate(
    data: pd.DataFrame,
    config: DatasetConfig,
    docs_dir: str | Path | None = None,
) -> ValidationReport:
    """Run the config's expectation suite on a prepared frame.

    Args:
        data: The frame from :func:`tabular.datasets.prepare` (target derived, dates parsed).
        config: The dataset config.
        docs_dir: Folder for the HTML Data Docs; ``None`` skips building them.

    Returns:
        The report; ``success`` is False when any expectation failed.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_gx()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if docs_dir is not None:
        docs_dir = Path(docs_dir).resolve()
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name="pipeline",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(
            gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["pipeline"])
        )

    batch = (
        context.data_sources.add_pandas(config.name)
        .add_dataframe_asset("prepared")
        .add_batch_definition_whole_dataframe("all-rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{config.name}-gate"))
    for expectation in build_expectations(config):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{config.name}-validation", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{config.name}-checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = checkpoint.run(batch_parameters={"dataframe": data})

    failures: list[Failure] = []
    evaluated = 0
    for run in result.run_results.values():
        for outcome in run.results:
            evaluated += 1
            if not outcome.success:
                failures.append(_failure(outcome, data))
    docs_path = str(docs_dir / "index.html") if docs_dir is not None else None
    return ValidationReport(
        success=bool(result.success),
        expectations=evaluated,
        failures=failures,
        docs_path=docs_path,
    )


def require_valid(report: ValidationReport) -> None:
    """Raise when the gate failed.

    Args:
        report: The outcome of :func:`validate`.

    Raises:
        ValidationFailed: With the readable summary and the Data Docs path.
    """
    if not report.success:
        raise ValidationFailed(report.summary(), report.docs_path)


def _failure(outcome, data: pd.DataFrame) -> Failure:
    config = outcome.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column")
    result = outcome.result or {}
    examples = [_plain(v) for v in (result.get("partial_unexpected_list") or [])][:5]
    observed = result.get("observed_value")
    kind = config.type
    if kind == "expect_column_to_exist":
        detail = "the column is missing"
    elif kind == "expect_column_values_to_be_in_type_list":
        detail = f"expected a numeric type, found {observed}"
        if column in data.columns:
            values = data[column].dropna()
            bad = values[pd.to_numeric(values, errors="coerce").isna()]
            examples = [_plain(v) for v in bad.unique()[:5]]
            if examples:
                detail += (
                    "; if such text means a missing value, add it to the config's missing_markers"
                )
    elif kind == "expect_column_values_to_not_be_null":
        share = result.get("unexpected_percent")
        ceiling = 1 - (kwargs.get("mostly") or 1)
        detail = (
            f"missing in {share:.1f}% of rows, allowed {ceiling:.0%}"
            if share is not None
            else "missing values"
        )
        examples = []
    elif kind == "expect_column_values_to_be_between":
        detail = (
            f"values outside [{_plain(kwargs.get('min_value'))}, {_plain(kwargs.get('max_value'))}]"
        )
    elif kind in (
        "expect_column_values_to_be_in_set",
        "expect_column_distinct_values_to_equal_set",
    ):
        detail = f"expected values {kwargs.get('value_set')}, observed {observed}"
    elif kind == "expect_table_row_count_to_be_between":
        detail = f"the table has {observed} rows"
    else:
        detail = f"observed {observed}"
    if outcome.exception_info and outcome.exception_info.get("raised_exception"):
        message = str(outcome.exception_info.get("exception_message", "")).splitlines()[0][:200]
        detail = f"{detail}; could not evaluate: {message}"
    count = result.get("unexpected_count")
    return Failure(
        expectation=kind,
        column=column,
        unexpected_count=None if count is None else int(count),
        examples=examples,
        detail=detail,
    )


def _plain(value):
    """Make a value printable in one short line (timestamps as ISO text, numpy as Python)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def _quiet_gx() -> None:
    for name in (
        "great_expectations",
        "great_expectations.core",
        "great_expectations.data_context",
        "great_expectations.data_context.types.base",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
