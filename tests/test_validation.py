"""Broken inputs: each one gets a clear message naming the problem, never a raw traceback."""

import subprocess
import sys

import numpy as np
import pytest

from tabular.config import load_config
from tabular.datasets import load_raw, prepare
from tabular.errors import DatasetError, ValidationFailed
from tests.conftest import make_toy_frame, write_toy_dataset
from validation import require_valid, validate


def _prepared(path):
    config = load_config(path)
    data, _ = prepare(load_raw(config), config)
    return data, config


def test_clean_toy_data_passes(tmp_path):
    data, config = _prepared(write_toy_dataset(tmp_path))
    report = validate(data, config, docs_dir=tmp_path / "docs")
    assert report.success, report.summary()
    assert report.expectations >= 15
    assert (tmp_path / "docs" / "index.html").is_file()


def test_missing_column_is_named(tmp_path):
    frame = make_toy_frame().drop(columns=["price"])
    config = load_config(write_toy_dataset(tmp_path, frame))
    with pytest.raises(DatasetError, match=r"lacks column\(s\) 'price' \(numeric\)"):
        load_raw(config)


def test_config_naming_a_column_the_csv_lacks(tmp_path):
    config = load_config(write_toy_dataset(tmp_path, categorical=["channel", "region", "colour"]))
    with pytest.raises(
        DatasetError, match=r"orders.csv lacks column\(s\) 'colour' \(categorical\)"
    ):
        load_raw(config)


def test_text_where_a_number_belongs(tmp_path):
    frame = make_toy_frame()
    frame["quantity"] = frame["quantity"].astype(object)
    frame.loc[[3, 8], "quantity"] = ["two", "many"]
    data, config = _prepared(write_toy_dataset(tmp_path, frame))
    report = validate(data, config)
    assert not report.success
    lines = [f.line() for f in report.failures]
    assert any(
        "'quantity'" in line and "numeric type" in line and "'two'" in line for line in lines
    ), lines
    # Text in a numeric column may be a missing-value marker: the line says where to declare it.
    assert any("missing_markers" in line for line in lines), lines


def test_a_declared_missing_marker_is_read_as_missing(tmp_path):
    frame = make_toy_frame()
    frame["quantity"] = frame["quantity"].astype(object)
    frame.loc[[3, 8], "quantity"] = "unknown"
    path = write_toy_dataset(tmp_path, frame, missing_markers=["", "unknown"])
    data, config = _prepared(path)
    assert data["quantity"].isna().sum() == 2
    assert validate(data, config).success


def test_out_of_range_values_are_counted_with_examples(tmp_path):
    frame = make_toy_frame()
    frame.loc[[1, 2, 3], "price"] = [-5.0, 20000.0, -1.0]
    data, config = _prepared(write_toy_dataset(tmp_path, frame))
    report = validate(data, config, docs_dir=tmp_path / "docs")
    failure = next(f for f in report.failures if f.column == "price")
    assert failure.unexpected_count == 3
    assert set(failure.examples) == {-5.0, 20000.0, -1.0}
    with pytest.raises(ValidationFailed) as caught:
        require_valid(report)
    message = str(caught.value)
    assert "column 'price'" in message and "outside [0.0, 10000.0]" in message
    assert "Data Docs:" in message and (tmp_path / "docs" / "index.html").is_file()


def test_all_null_column(tmp_path):
    frame = make_toy_frame()
    frame["quantity"] = np.nan
    data, config = _prepared(write_toy_dataset(tmp_path, frame))
    report = validate(data, config)
    assert any(
        f.column == "quantity" and "missing in 100.0% of rows, allowed 5%" in f.line()
        for f in report.failures
    ), report.summary()


def test_unparseable_and_out_of_range_dates(tmp_path):
    frame = make_toy_frame()
    frame.loc[5, "order_date"] = "not a date"
    frame.loc[6, "order_date"] = "1999-01-01"
    data, config = _prepared(
        write_toy_dataset(tmp_path, frame, checks={"date_range": ["2021-01-01", "2021-12-31"]})
    )
    summary = validate(data, config).summary()
    assert "column 'order_date': expect_column_values_to_not_be_null" in summary
    assert "1999-01-01" in summary


def test_target_with_a_single_class(tmp_path):
    frame = make_toy_frame()
    frame["returned"] = 0
    data, config = _prepared(write_toy_dataset(tmp_path, frame))
    summary = validate(data, config).summary()
    assert "column 'returned': expect_column_distinct_values_to_equal_set" in summary


def test_empty_file(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    config.csv_path().write_text("")
    with pytest.raises(DatasetError, match="orders.csv is empty"):
        load_raw(config)


def test_header_only_file(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    config.csv_path().write_text("order_date,channel,region,price,quantity,order_id,returned\n")
    with pytest.raises(DatasetError, match="has a header but no rows"):
        load_raw(config)


def test_file_that_is_not_csv(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    config.csv_path().write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(DatasetError, match="is not a CSV text file"):
        load_raw(config)


def test_text_file_that_is_not_comma_separated(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    config.csv_path().write_text("just some prose\nwith no columns at all\n")
    with pytest.raises(DatasetError, match="not a comma-separated CSV"):
        load_raw(config)


def test_cli_prints_one_readable_error_without_traceback(tmp_path):
    config = write_toy_dataset(tmp_path, categorical=["channel", "colour"])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows",
            "run",
            "--config",
            str(config),
            "--artifacts",
            str(tmp_path / "a"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2
    assert "error: " in result.stderr and "'colour' (categorical)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # One temporary Prefect server: launched by the CLI before the imports, used by the flow
    # run (its start is not logged: Prefect's logging is set up later), stopped at exit.
    assert (result.stderr + result.stdout).count("Stopping temporary server") == 1
