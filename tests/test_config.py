from pathlib import Path

import pytest
import yaml

from tabular.config import DEFAULT_CONFIG, load_config
from tabular.errors import ConfigError
from tests.conftest import write_toy_dataset


def test_default_config_declares_roles_once():
    config = load_config(DEFAULT_CONFIG)
    assert config.name == "flights"
    assert config.target.column == "arr_delay" and config.target.threshold == 15
    assert config.date_column == "sched_dep"
    assert len(config.categorical) >= 3
    # No leakage column may ever be a feature.
    assert not set(config.leakage) & set(config.feature_columns)
    assert {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"} <= set(config.leakage)


def test_toy_config_of_another_shape_loads(tmp_path):
    config = load_config(write_toy_dataset(tmp_path))
    assert config.csv_path() == (tmp_path / "orders.csv").resolve()
    assert config.feature_columns == ["order_date", "channel", "region", "price", "quantity"]
    assert config.split.method == "random"


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_that_is_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed"))


def test_config_with_a_missing_key_names_it(tmp_path):
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    del raw["target"]
    with pytest.raises(ConfigError, match="target: Field required"):
        load_config(_write(tmp_path, raw))


def test_leakage_column_cannot_be_a_feature(tmp_path):
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    raw["leakage"] = ["price"]
    with pytest.raises(ConfigError, match="'price' is listed in both 'numeric' and 'leakage'"):
        load_config(_write(tmp_path, raw))


def test_time_split_needs_dates(tmp_path):
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    raw["split"] = {"method": "time"}
    with pytest.raises(ConfigError, match="needs 'test_start'"):
        load_config(_write(tmp_path, raw))
    raw["split"] = {"method": "time", "test_start": "2021-05-01"}
    with pytest.raises(ConfigError, match="exactly one of 'validation_start'"):
        load_config(_write(tmp_path, raw))


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        (["2021-03-01", "2021-02-01"], "increasing order"),
        (["2021-03-01", "2021-05-01"], "every date of 'folds' must come before 'test_start'"),
        ([], "at least one date"),
    ],
)
def test_rolling_folds_are_checked(tmp_path, folds, message):
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    raw["split"] = {"method": "time", "folds": folds, "test_start": "2021-05-01"}
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, raw))


def test_prediction_horizon_and_point_in_time_roles(tmp_path):
    config = load_config(DEFAULT_CONFIG)
    assert config.prediction_horizon == 2
    assert set(config.point_in_time) <= set(config.numeric_features)
    assert not set(config.point_in_time) & set(config.at_horizon(0).feature_columns)
    assert config.at_horizon(3).prediction_horizon == 3 and config.at_horizon(3).path == config.path
    # Every point-in-time column tells the caller what to send.
    assert set(config.point_in_time) <= set(config.descriptions)
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    del raw["date_column"]
    raw["prediction_horizon"] = 2
    with pytest.raises(ConfigError, match="prediction_horizon counts hours before each row's date"):
        load_config(_write(tmp_path, raw))
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    raw["point_in_time"] = ["price"]
    with pytest.raises(
        ConfigError, match="'price' is listed in both 'numeric' and 'point_in_time'"
    ):
        load_config(_write(tmp_path, raw))
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    raw["descriptions"] = {"colour": "Colour of the parcel"}
    with pytest.raises(ConfigError, match="descriptions name column\\(s\\) 'colour'"):
        load_config(_write(tmp_path, raw))


def test_descriptions_must_name_declared_columns(tmp_path):
    from tests.conftest import toy_config_dict

    path = tmp_path / "orders.yaml"
    raw = toy_config_dict(descriptions={"price": "Order value, US dollars", "colour": "x"})
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="descriptions name column\\(s\\) 'colour'"):
        load_config(path)
    raw["descriptions"] = {"price": "Order value, US dollars", "returned": "Returned or not"}
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).descriptions["price"] == "Order value, US dollars"


def test_date_column_is_optional_but_a_time_split_needs_a_date(tmp_path):
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    del raw["date_column"]
    config = load_config(_write(tmp_path, raw))
    assert config.date_column is None
    assert config.feature_columns == ["channel", "region", "price", "quantity"]
    raw["split"] = {"method": "time", "validation_start": "2021-03-01", "test_start": "2021-04-01"}
    with pytest.raises(ConfigError, match="split.method 'time' needs a date"):
        load_config(_write(tmp_path, raw))
    raw["split"] = {"method": "random"}
    raw["checks"] = {"date_range": ["2021-01-01", "2021-12-31"]}
    with pytest.raises(ConfigError, match="checks.date_range needs a date"):
        load_config(_write(tmp_path, raw))


def test_date_from_parts_names_the_built_date(tmp_path):
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    del raw["date_column"]
    raw["date_from"] = {"year": "y", "month": "m", "day": "d"}
    config = load_config(_write(tmp_path, raw))
    assert config.date_column == "date"  # the default name of the built date
    assert config.feature_columns[0] == "date"
    assert {"y", "m", "d"} <= set(config.required_columns)
    assert "date" not in config.required_columns  # built, not read
    raw["date_column"] = "m"
    with pytest.raises(ConfigError, match="would overwrite a column of date_from"):
        load_config(_write(tmp_path, raw))


def test_row_noun_reads_one_word_or_two(tmp_path):
    config = load_config(write_toy_dataset(tmp_path, row_noun="order"))
    assert config.row_noun == ("order", "orders") and config.rows(1) == "1 order"
    config = load_config(write_toy_dataset(tmp_path, row_noun=["person", "people"]))
    assert config.rows(2500) == "2,500 people"
    assert load_config(write_toy_dataset(tmp_path)).rows() == "rows"


def test_an_unquoted_null_marker_is_explained(tmp_path):
    raw = yaml.safe_load(write_toy_dataset(tmp_path).read_text())
    raw["missing_markers"] = ["", None]  # what YAML makes of [ "", NULL ]
    with pytest.raises(ConfigError, match='quote the text, e.g. "NULL"'):
        load_config(_write(tmp_path, raw))
