"""The input contract: derived from the config, the training rows and the fitted pipeline."""

import datetime as dt
import json
import re

import pandas as pd
import pytest

from tabular.contract import ISO_DATETIME, InputContract, InputRejected, build_contract
from tabular.datasets import load_raw, prepare, split_data
from tabular.features import plan_encoding
from tabular.training import fit_on_split
from tests.test_compiled import gappy_config

DESCRIPTIONS = {"price": "Order value, US dollars", "channel": "Where the order was placed"}


@pytest.fixture(scope="module")
def contract_and_data(tmp_path_factory):
    config = gappy_config(
        tmp_path_factory.mktemp("contract"), 1500, seed=5, descriptions=DESCRIPTIONS
    )
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=2)
    plan = plan_encoding(split.train, config)
    params = {"hidden_layer_sizes": [8], "alpha": 0.001, "learning_rate_init": 0.003}
    model = fit_on_split("mlp", params, plan, split, config, seed=2)
    contract = build_contract(config, split.train, model.pipeline, plan.input_columns)
    return contract, config, split


def test_fields_come_from_config_training_rows_and_pipeline(contract_and_data):
    contract, config, split = contract_and_data
    assert contract.names == ["order_date", "channel", "region", "price", "quantity"]
    assert contract.roles == {
        "datetime": ["order_date"],
        "category": ["channel", "region"],
        "number": ["price", "quantity"],
    }
    price = contract.spec("price")
    # The gate's bounds, not the training minimum and maximum.
    assert (price.minimum, price.maximum) == (0, 10000)
    assert price.minimum < split.train["price"].min()
    assert price.nullable and contract.spec("region").nullable
    assert not contract.spec("order_date").nullable and not contract.spec("channel").nullable
    channel = contract.spec("channel")
    assert channel.levels == ["partner", "phone", "store", "web"]
    assert "partner" not in channel.modelled_levels  # rare: grouped into "Other" by training
    assert "Other" in channel.unseen_handling
    assert "overall training rate" in contract.spec("region").unseen_handling
    assert price.description == "Order value, US dollars"
    assert contract.spec("quantity").description == ""
    # The example is a real training row and passes its own contract.
    assert contract.coerce(contract.example)


def test_request_model_refuses_what_the_gate_or_pipeline_would_not_accept(contract_and_data):
    contract, _, _ = contract_and_data
    good = dict(contract.example)

    def problems(**changes):
        raw = {**good, **changes}
        for key in [k for k, v in changes.items() if v is ...]:
            del raw[key]
        with pytest.raises(InputRejected) as caught:
            contract.coerce(raw)
        return {p.field: p.message for p in caught.value.problems}

    assert problems(price=...) == {"price": "required field is missing"}
    assert "valid number" in problems(price="12")["price"]  # no numbers as text
    assert "greater than or equal to 0" in problems(price=-1.0)["price"]
    assert "less than or equal to 100" in problems(quantity=101)["quantity"]
    assert "finite" in problems(price=float("inf"))["price"]
    assert "valid string" in problems(channel=3)["channel"]
    assert "ISO 8601" in problems(order_date=1_600_000_000)["order_date"]
    assert "ISO 8601" in problems(order_date="1600000000")["order_date"]  # not a Unix time
    assert "order_date" in problems(order_date="2021-01-01T27:00:00")
    assert "channel" in problems(channel=None)  # never missing in training
    assert problems(colour="red") == {"colour": "not an input of this model"}
    assert contract.coerce({**good, "price": None})["price"] is None  # missing in training


def test_a_batch_checked_column_by_column_gets_the_row_models_answers(contract_and_data):
    """check_batch validates each column in one call: same values, same problems, per row."""
    import numpy as np

    contract, _, _ = contract_and_data
    good = dict(contract.example)
    variants = [
        {},
        {"price": None},
        {"price": 12},  # a JSON integer for a number
        {"price": np.float32(3.5)},
        {"order_date": "2021-02-03T04:05:00+02:00"},  # the offset is dropped (wall clock)
        {"order_date": "2021-02-03"},
        {"channel": "fax"},
        {"price": "12"},
        {"price": -1.0},
        {"quantity": 101},
        {"price": float("inf")},
        {"channel": 3},
        {"channel": None},
        {"channel": ""},
        {"order_date": 1_600_000_000},
        {"order_date": "2021-01-01T27:00:00"},
        {"colour": "red"},
        {"price": ...},
    ]
    rows = []
    for changes in variants:
        row = {**good, **changes}
        rows.append({k: v for k, v in row.items() if v is not ...})
    expected_values, expected_problems = [], []
    for position, row in enumerate(rows):
        try:
            expected_values.append(contract.values(contract.check_row(row, position)))
        except InputRejected as exc:
            expected_problems += [(p.row, p.field, p.message) for p in exc.problems]
    valid = [rows[i] for i in range(len(rows)) if not any(p[0] == i for p in expected_problems)]
    assert contract.check_batch(valid) == expected_values
    assert [type(v) for v in contract.check_batch(valid)[2]] == [
        type(v) for v in expected_values[2]
    ]
    with pytest.raises(InputRejected) as caught:
        contract.check_batch(rows)
    got = {(p.row, p.field, p.message) for p in caught.value.problems}
    # Key problems (a missing or unknown field) are reported first, before any value is read.
    keys = {
        p
        for p in expected_problems
        if p[2] in ("required field is missing", "not an input of this model")
    }
    assert got == keys
    without_key_problems = [r for i, r in enumerate(rows) if i not in {p[0] for p in keys}]
    with pytest.raises(InputRejected) as caught:
        contract.check_batch(without_key_problems)
    positions = [i for i in range(len(rows)) if i not in {p[0] for p in keys}]
    got = {(positions[p.row], p.field, p.message) for p in caught.value.problems}
    assert got == set(expected_problems) - keys
    with pytest.raises(InputRejected, match="valid dictionary"):
        contract.check_batch([good, [1, 2]])


def test_unseen_levels_are_accepted_and_reported(contract_and_data):
    contract, _, _ = contract_and_data
    row = contract.check_row({**contract.example, "channel": "fax", "region": "r999"})
    assert contract.unseen(contract.values(row)) == ["channel", "region"]
    assert contract.unseen(contract.values(contract.check_row(contract.example))) == []


def test_features_are_typed_for_logging(contract_and_data):
    import numpy as np

    contract, _, _ = contract_and_data
    raw = {**contract.example, "price": np.float32(12.5), "quantity": 3}
    raw["order_date"] = "2021-02-03T04:05:00"
    features = contract.coerce(raw)
    assert features["order_date"] == dt.datetime(2021, 2, 3, 4, 5)
    assert type(features["price"]) is float and type(features["quantity"]) is float
    assert type(features["channel"]) is str


def test_saved_as_json_and_read_back_from_model_metadata(contract_and_data):
    contract, _, _ = contract_and_data
    metadata = {"contract_json": contract.to_json()}
    json.loads(metadata["contract_json"])  # plain JSON text: BentoML metadata refuses None
    again = InputContract.from_metadata(metadata)
    assert again == contract
    assert again.request_model().model_json_schema() == contract.request_model().model_json_schema()
    with pytest.raises(KeyError, match="without an input contract"):
        InputContract.from_metadata({})


def test_openapi_schema_shows_types_nulls_descriptions_bounds_and_levels(contract_and_data):
    contract, _, _ = contract_and_data
    schema = contract.request_model().model_json_schema()
    properties = schema["properties"]
    assert list(properties) == contract.names
    assert schema["additionalProperties"] is False
    assert schema["required"] == contract.names
    # A pattern, not "date-time" (which requires an offset the rows' own times do not have).
    assert properties["order_date"]["pattern"] == ISO_DATETIME
    assert re.match(ISO_DATETIME, contract.example["order_date"])
    assert {"type": "null"} in properties["price"]["anyOf"]
    number = next(t for t in properties["price"]["anyOf"] if t.get("type") == "number")
    assert (number["minimum"], number["maximum"]) == (0, 10000)
    assert properties["price"]["description"].startswith("Order value, US dollars")
    assert (
        "4 levels seen in training: partner, phone, store, web"
        in (properties["channel"]["description"])
    )
    assert "50 levels seen in training, e.g." in properties["region"]["description"]
    assert schema["example"] == contract.example


def test_logged_rows_read_back_as_a_typed_frame_with_problems_per_row(contract_and_data):
    contract, _, _ = contract_and_data
    good = contract.coerce(contract.example)  # what a log stores: a datetime, floats, text
    records = [
        good,
        {**good, "price": "twelve"},
        {**good, "channel": "fax", "price": None},
        {key: value for key, value in good.items() if key != "quantity"},
    ]
    typed = contract.to_frame(records)
    assert list(typed.frame.index) == [0, 2]
    assert typed.refused_rows == [1, 3]
    assert [(p.row, p.field) for p in typed.problems] == [(1, "price"), (3, "quantity")]
    dtypes = typed.frame.dtypes.astype(str).to_dict()
    assert dtypes == {
        "order_date": "datetime64[ns]",
        "channel": "object",
        "region": "object",
        "price": "float64",
        "quantity": "float64",
    }
    assert pd.isna(typed.frame.loc[2, "price"]) and typed.frame.loc[2, "channel"] == "fax"
    empty = contract.to_frame([])
    assert len(empty.frame) == 0 and list(empty.frame.columns) == contract.names


def test_a_dataset_without_a_date_column_feature_still_gets_a_contract(contract_and_data):
    contract, config, split = contract_and_data
    # Feature selection may drop the date: the contract simply has no date field.
    plan = plan_encoding(split.train, config).restrict(["channel", "price"])
    params = {"C": 1.0, "l1_ratio": 0.0, "class_weight": None}
    model = fit_on_split("logistic", params, plan, split, config, seed=0)
    narrow = build_contract(config, split.train, model.pipeline, plan.input_columns)
    assert narrow.names == ["channel", "price"] and narrow.roles["datetime"] == []
    assert set(narrow.example) == {"channel", "price"}


def test_a_dataset_without_a_date_gets_a_contract_and_a_compiled_path(tmp_path):
    """Nothing in the contract or the compiled path assumes a date column (issue 12's CSVs)."""
    from bentos.compiled import compile_pipeline, max_difference
    from tabular.config import load_config
    from tests.conftest import make_bookings_frame, write_bookings_dataset

    config = load_config(write_bookings_dataset(tmp_path / "bookings", make_bookings_frame(1500)))
    assert config.date_column is None
    data, _ = prepare(load_raw(config), config)
    split = split_data(data, config, seed=1)
    plan = plan_encoding(split.train, config)
    params = {"hidden_layer_sizes": [8], "alpha": 0.001, "learning_rate_init": 0.003}
    model = fit_on_split("mlp", params, plan, split, config, seed=1)
    contract = build_contract(config, split.train, model.pipeline, plan.input_columns)
    assert contract.roles["datetime"] == [] and contract.names == plan.input_columns
    assert contract.spec("agent").nullable  # written as NULL in the file
    assert contract.coerce(contract.example)
    rows = [contract.values(contract.check_row(contract.json_row(r))) for r in
            split.test[plan.input_columns].to_dict("records")]  # fmt: skip
    compiled = compile_pipeline(model.pipeline, plan.input_columns)
    frame = contract.values_frame(rows)
    assert max_difference(compiled, model.pipeline, frame, rows) <= 1e-9


def test_every_problem_names_its_field_whatever_the_field_is_called():
    """Fields named like pydantic's union members (street, float_count, none_left) are named."""
    from tabular.contract import FieldSpec

    contract = InputContract(
        dataset="shops",
        fields=[
            FieldSpec(name="street", kind="category", nullable=True),
            FieldSpec(name="float_count", kind="number", nullable=True, minimum=0),
            FieldSpec(name="none_left", kind="number"),
            FieldSpec(name="string_date", kind="datetime", nullable=True),
        ],
    )
    good = {"street": "Main", "float_count": 2.0, "none_left": 1.0, "string_date": None}
    assert contract.coerce(good)["street"] == "Main"
    with pytest.raises(InputRejected) as caught:
        contract.coerce(
            {"street": 5, "float_count": -1.0, "none_left": "x", "string_date": "2021-13-01"}
        )
    fields = {p.field for p in caught.value.problems}
    assert fields == {"street", "float_count", "none_left", "string_date"}
    assert "(row)" not in fields
