"""The monitor's decision on controlled data: the reference it chooses, what it weighs, what it flags.

Every frame here is drawn from known laws, with one known difference between window and
reference: a season, a column's drift, a burst of nulls, a shuffled column.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from monitoring.check import Window, choose_reference
from monitoring.drift import DriftSettings, compare
from monitoring.faults import FAULTS, MISSING_SHARE, UNIT_FACTOR, inject
from monitoring.reference import (
    importance_metadata,
    importance_shares,
    read_importance,
    same_period,
)

ROLES = {"number": ["load", "temp", "gust", "twin"], "category": ["kind"], "datetime": ["when"]}
TARGET = "label"
PREDICTION = "predicted_probability"


def seasonal(rows: int, seed: int, months=range(1, 13), start: str = "2023-01-01") -> pd.DataFrame:
    """Rows spread over ``months``: a seasonal ``temp``, a steady ``load`` and its ``twin``."""
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(start)
    month = rng.choice(list(months), rows)
    when = pd.to_datetime(
        [
            first + pd.DateOffset(months=int(m) - 1, days=int(d), hours=int(h))
            for m, d, h in zip(
                month, rng.integers(0, 28, rows), rng.integers(5, 23, rows), strict=True
            )
        ]
    )
    load = rng.normal(50, 10, rows)
    probability = rng.uniform(0, 1, rows)
    return pd.DataFrame(
        {
            "when": when,
            "load": load,
            # 20 degrees of season: the summer and the winter months differ by 40.
            "temp": 20 * np.sin((when.month - 4) / 12 * 2 * np.pi) + rng.normal(0, 3, rows),
            "gust": np.where(rng.uniform(0, 1, rows) < 0.5, np.nan, rng.gamma(2, 5, rows)),
            "twin": load + rng.normal(0, 4, rows),  # strongly related to load
            "kind": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
            PREDICTION: probability,
            TARGET: np.nan,
        }
    )


WEIGHTS = {"load": 0.6, "twin": 0.2, "kind": 0.15, "temp": 0.05, "gust": 0.0}


def judge(current, reference, importance=WEIGHTS, **settings):
    return compare(
        current,
        reference,
        ROLES,
        DriftSettings(min_rows=50, **settings),
        target=TARGET,
        threshold=0.5,
        importance=importance,
    )


# -- the reference rows: whole, same period, recent ------------------------------------------------


def test_same_period_compares_a_month_with_the_same_months_training_rows():
    reference = seasonal(12_000, seed=1, months=range(1, 10))  # trained January-September
    march = seasonal(2000, seed=2, months=[3])
    rows, description = same_period(reference, march, "when", min_rows=100)
    assert (
        set(rows["when"].dt.month) == {3} and len(rows) == (reference["when"].dt.month == 3).sum()
    )
    assert description == "training rows of Mar (the window's months)"
    # Against every month, the season moves temp; against March, nothing moves.
    whole = judge(march, reference)
    assert whole.drifted_columns == ["temp"]
    matched = judge(march, rows)
    assert matched.drifted_columns == [] and matched.weighted_drift == 0


def test_after_the_training_months_same_period_takes_the_seasons_earlier_logs():
    reference = seasonal(12_000, seed=1, months=range(1, 10))  # trained January-September
    october = seasonal(1000, seed=3, months=[10])
    # The model's earlier logs: September and October traffic it answered.
    logs = seasonal(3000, seed=4, months=[9, 10])
    rows, description = same_period(reference, october, "when", min_rows=100, logs=logs)
    assert set(rows["when"].dt.month) == {10} and len(rows) == (logs["when"].dt.month == 10).sum()
    assert description == "earlier logs of Oct (the training rows hold none of those months)"
    assert judge(october, rows).drifted_columns == []
    # No earlier log of October yet (the season's first window): the nearest training
    # month, said so, and the season shows.
    rows, description = same_period(reference, october, "when", min_rows=100, logs=logs.head(50))
    assert set(rows["when"].dt.month) == {9}
    assert description.startswith("training rows of Sep (the nearest months to Oct;")
    assert judge(october, rows).drifted_columns == ["temp"]
    december = seasonal(1000, seed=3, months=[12])
    rows, _ = same_period(reference, december, "when", min_rows=100)
    assert set(rows["when"].dt.month) == {1}  # the calendar wraps: January is next to December


def test_a_short_window_is_matched_by_its_weekday_hour_mix():
    reference = seasonal(40_000, seed=4, months=range(1, 13))
    # One Tuesday morning: 8 to 11 o'clock, twice as many at 8 as at 9 or 10.
    hours = [8] * 200 + [9] * 100 + [10] * 100
    window = pd.DataFrame({"when": [dt.datetime(2023, 3, 7, h, 15) for h in hours]})
    rows, description = same_period(reference, window, "when", min_rows=50)
    assert description.endswith("drawn in the window's weekday-hour mix")
    assert set(rows["when"].dt.month) == {3} and set(rows["when"].dt.weekday) == {1}
    shares = rows["when"].dt.hour.value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({8: 0.5, 9: 0.25, 10: 0.25}, abs=0.02)
    # Too few reference rows for the mix: the months alone, said so.
    rows, description = same_period(reference, window, "when", min_rows=len(reference))
    assert description.endswith("too few to match the window's weekday-hour mix")


def test_recent_compares_with_the_window_before_and_falls_back_when_there_is_none():
    reference = seasonal(6000, seed=5)
    current = seasonal(500, seed=6, months=[5])
    before = seasonal(500, seed=7, months=[4])
    rows, choice = choose_reference(
        "recent", reference, current, date_column="when", recent=before, min_rows=100
    )
    assert rows is before and choice.mode == "recent" and choice.rows == 500
    rows, choice = choose_reference(
        "recent", reference, current, date_column="when", recent=before.head(20), min_rows=100
    )
    assert choice.mode == "same_period" and choice.asked == "recent"
    assert "only 20 logs before the window (< 100)" in choice.description
    assert set(rows["when"].dt.month) == {5}
    rows, choice = choose_reference(
        "same_period", reference, current, date_column=None, recent=None, min_rows=100
    )
    assert choice.mode == "whole" and len(rows) == len(reference)
    assert "no date column" in choice.description


def test_the_window_before_has_the_same_length():
    start, end = dt.datetime(2026, 1, 1, 10), dt.datetime(2026, 1, 1, 11)
    assert Window(last=300).previous(start, end, 300) == Window(until=start, last=300)
    assert Window(since=start, until=end).previous(start, end, 5) == Window(
        since=dt.datetime(2026, 1, 1, 9), until=start
    )


# -- what the verdict weighs -----------------------------------------------------------------------


def test_a_drift_in_an_unused_column_alone_does_not_raise_the_alarm_the_same_in_the_top_one_does():
    reference = seasonal(6000, seed=8, months=[6])
    window = seasonal(2000, seed=9, months=[6])
    # The same shift (one standard deviation and a half) in the column the model does not use...
    unused = window.assign(gust=window["gust"] * UNIT_FACTOR)
    found = judge(unused, reference)
    gust = next(c for c in found.columns if c.column == "gust")
    assert gust.drifted and gust.reasons == ["distribution"] and gust.importance == 0
    assert found.ranking[0] == "gust" and found.drifted_columns == ["gust"]
    assert found.weighted_drift == 0 and found.dataset_drift is False
    # ... and in the column it relies on most.
    top = window.assign(load=window["load"] + 15, twin=window["twin"] + 15)
    found = judge(top, reference)
    assert found.drifted_columns[:2] == ["load", "twin"]
    assert found.weighted_drift == pytest.approx(0.8) and found.dataset_drift is True
    # Without saved importance every column weighs the same: the unused one counts too.
    found = judge(unused, reference, importance=None)
    assert found.weighted_drift == pytest.approx(1 / 5) and found.dataset_drift is True
    assert not judge(unused, reference, importance=None, importance_share=0.25).dataset_drift


def test_a_burst_of_nulls_and_a_shuffled_column_are_flagged_where_value_tests_see_nothing():
    reference = seasonal(6000, seed=10, months=[6])
    window = seasonal(2000, seed=11, months=[6])
    nulls = inject(window, "missing", "load", seed=1)
    found = judge(nulls, reference)
    load = next(c for c in found.columns if c.column == "load")
    assert load.reasons == ["missing values"] and not load.distribution_drift
    assert load.missing_current == pytest.approx(MISSING_SHARE, abs=0.03)
    assert found.ranking[0] == "load" and found.dataset_drift is True
    # A column shuffled across rows keeps its values; its relation to its twin is gone.
    shuffled = inject(window, "shuffled", "load", seed=2)
    found = judge(shuffled, reference)
    by_column = {c.column: c for c in found.columns}
    assert by_column["load"].reasons == ["relationships"]
    assert by_column["load"].correlation_change > 0.8 and not by_column["load"].distribution_drift
    assert found.ranking[0] == "load" and found.dataset_drift is True
    # The test can be turned off; then the shuffle is invisible.
    assert judge(shuffled, reference, correlation_change=None).drifted_columns == []


def test_identical_windows_show_nothing_and_severity_orders_the_ranking():
    reference = seasonal(6000, seed=12, months=[6])
    found = judge(seasonal(2000, seed=13, months=[6]), reference)
    assert found.drifted_columns == [] and found.dataset_drift is False
    assert found.prediction is not None and found.prediction.drifted is False
    assert all(0 <= c.severity < 1 for c in found.columns), [c.model_dump() for c in found.columns]
    assert found.ranking[0] == "load"  # nothing drifted: the heaviest weight first


def test_importance_is_saved_as_shares_and_read_back_for_the_served_inputs():
    saved = importance_metadata({"load": 3.0, "temp": 1.0, "gust": 0.0})
    assert saved == {"importance": {"load": 0.75, "temp": 0.25, "gust": 0.0}}
    assert read_importance(saved, ["temp", "load", "kind"]) == {
        "load": 0.75,
        "temp": 0.25,
        "kind": 0.0,
    }
    assert read_importance({}, ["load"]) is None
    assert importance_shares({"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="non-negative"):
        importance_shares({"a": -1.0})


def test_every_fault_spoils_only_its_column():
    rows = seasonal(400, seed=14, months=[2])
    for fault in FAULTS:
        column = "kind" if fault == "renamed" else "load"
        spoiled = inject(rows, fault, column, seed=3)
        others = [c for c in rows.columns if c != column]
        pd.testing.assert_frame_equal(spoiled[others], rows[others])
        assert not spoiled[column].equals(rows[column]), fault
    assert inject(rows, "units", "load", seed=0)["load"].tolist() == pytest.approx(
        (rows["load"] * UNIT_FACTOR).tolist()
    )
    assert inject(rows, "stuck", "load", seed=0)["load"].nunique() == 1
    renamed = inject(rows, "renamed", "kind", seed=0)["kind"]
    assert set(renamed) == {"a (renamed)", "b", "c"}
    shuffled = inject(rows, "shuffled", "load", seed=0)["load"]
    assert sorted(shuffled) == sorted(rows["load"])
    pd.testing.assert_frame_equal(inject(rows, "clean", None, seed=0), rows)
    with pytest.raises(ValueError, match="needs a numeric column"):
        inject(rows, "units", "kind", seed=0)


def test_a_column_of_many_levels_is_compared_on_its_frequent_levels():
    rng = np.random.default_rng(15)
    levels = [f"r{i}" for i in range(400)]
    weights = 1 / np.arange(1, 401)  # a few frequent routes, hundreds of rare ones
    weights /= weights.sum()

    def routes(rows):
        return pd.DataFrame(
            {
                "route": rng.choice(levels, rows, p=weights),
                "load": rng.normal(50, 10, rows),
                PREDICTION: rng.uniform(0, 1, rows),
                TARGET: np.nan,
            }
        )

    roles = {"number": ["load"], "category": ["route"], "datetime": []}
    reference, window = routes(3000), routes(3000)
    settings = DriftSettings(min_rows=50)
    found = compare(window, reference, roles, settings, target=TARGET, threshold=0.5)
    assert found.drifted_columns == [], [c.model_dump() for c in found.columns]
    # A small window compares only the levels it is expected to hold 30 times: 60 levels
    # of 1.7 % each, seen 7 times each in 400 rows, would differ by noise alone.
    reference = routes(3000).assign(route=rng.choice(levels[:60], 3000))
    small = routes(400).assign(route=rng.choice(levels[:60], 400))
    found = compare(small, reference, roles, settings, target=TARGET, threshold=0.5)
    assert found.drifted_columns == [], [c.model_dump() for c in found.columns]
    # The most frequent route renamed: the pooled level jumps from rare to frequent.
    renamed = inject(window, "renamed", "route", seed=0)
    found = compare(renamed, reference, roles, settings, target=TARGET, threshold=0.5)
    assert found.drifted_columns == ["route"]
