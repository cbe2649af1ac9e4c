"""The point-in-time columns of the flights loader use only what had happened by the cutoff.

The cutoff of a flight is its scheduled departure minus the prediction horizon. The main
test perturbs, for each of many real flights, every event after its cutoff (other
flights' departures and arrivals that came later, by changing their delays, cancelling
them or making cancelled flights leave) and the flight's own outcome, then recomputes its
features: they must not move. The same check must catch a feature that reads past the
cutoff or reads the row's own outcome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabular.loaders.flights import load_flights
from tabular.loaders.point_in_time import (
    POINT_IN_TIME_COLUMNS,
    add_point_in_time,
    point_in_time_features,
)

HORIZON = 2.0


@pytest.fixture(scope="module")
def days() -> pd.DataFrame:
    """Three stormy July days of the real data: every scheduled flight, cancelled ones too."""
    flights = load_flights()
    window = flights[(flights["sched_dep"] >= "2013-07-08") & (flights["sched_dep"] < "2013-07-11")]
    return window.reset_index(drop=True)


def _moments(frame: pd.DataFrame, column: str, delay: str) -> pd.Series:
    return frame[column] + pd.to_timedelta(frame[delay], unit="min")


def perturb_after_cutoff(
    frame: pd.DataFrame, row: int, horizon: float, rng: np.random.Generator
) -> pd.DataFrame:
    """Change every event after ``row``'s cutoff, and ``row``'s own outcome, at random."""
    frame = frame.copy()
    cutoff = frame.at[row, "sched_dep_utc"] - pd.Timedelta(hours=horizon)
    departed = _moments(frame, "sched_dep_utc", "dep_delay")
    arrived = _moments(frame, "sched_arr_utc", "arr_delay")
    later_departure = (departed >= cutoff).to_numpy()
    later_arrival = (arrived >= cutoff).to_numpy()
    never_left = frame["dep_delay"].isna().to_numpy()
    n = len(frame)

    # Later departures leave later still, by 1 minute to 10 hours; a few are cancelled.
    dep_delay = frame["dep_delay"].to_numpy(dtype=float).copy()
    arr_delay = frame["arr_delay"].to_numpy(dtype=float).copy()
    dep_delay[later_departure] += rng.integers(1, 600, size=later_departure.sum())
    arr_delay[later_arrival] += rng.integers(1, 600, size=later_arrival.sum())
    cancel = later_departure & (rng.random(n) < 0.1)
    dep_delay[cancel] = np.nan
    arr_delay[cancel] = np.nan
    # Cancelled flights that are not yet due to leave by the cutoff leave after it instead.
    due = (frame["sched_dep_utc"] - cutoff).dt.total_seconds().to_numpy() / 60
    revive = never_left & (rng.random(n) < 0.5)
    dep_delay[revive] = np.maximum(0, -due[revive]) + rng.integers(1, 300, size=revive.sum())
    arr_delay[revive] = dep_delay[revive] + rng.integers(-30, 60, size=revive.sum())
    # The row's own outcome: anything, even a departure and an arrival before its cutoff.
    dep_delay[row] = -60 * (horizon + 5)
    arr_delay[row] = -60 * (horizon + 5)
    frame["dep_delay"] = dep_delay
    frame["arr_delay"] = arr_delay
    return frame


def rows_that_moved(features_of, frame: pd.DataFrame, horizon: float, rows, seed: int = 0):
    """Rows whose features change when the events after their cutoff (and their own) change."""
    rng = np.random.default_rng(seed)
    reference = features_of(frame, horizon)
    moved = []
    for row in rows:
        again = features_of(perturb_after_cutoff(frame, row, horizon, rng), horizon)
        if not again.iloc[row].equals(reference.iloc[row]):
            moved.append(int(row))
    return moved


def _sample(days: pd.DataFrame, size: int) -> np.ndarray:
    # Half drawn from every row (every hour, busy and quiet), half from the planes' second or
    # later departure of the day, whose plane columns have earlier legs to read.
    rng = np.random.default_rng(7)
    later_legs = np.flatnonzero(days["plane_leg"].to_numpy() >= 2)
    half = rng.choice(later_legs, size=size // 2, replace=False)
    others = np.setdiff1d(np.arange(len(days)), half)
    return np.concatenate([half, rng.choice(others, size=size - size // 2, replace=False)])


@pytest.mark.parametrize("horizon", [HORIZON, 0.5])
def test_no_feature_moves_when_events_after_the_cutoff_or_its_own_outcome_change(days, horizon):
    rows = _sample(days, 120)
    features = point_in_time_features(days, horizon)
    # The check is not vacuous: the sampled rows see many events before their cutoff...
    assert (features.iloc[rows]["origin_recent_departures"] > 0).mean() > 0.7
    assert features.iloc[rows]["plane_prev_dep_delay"].notna().sum() >= 30
    # ...and the perturbations change what happens after it.
    perturbed = perturb_after_cutoff(days, int(rows[0]), horizon, np.random.default_rng(1))
    assert (perturbed["dep_delay"] != days["dep_delay"]).sum() > 500
    assert rows_that_moved(point_in_time_features, days, horizon, rows) == []


def test_the_check_catches_a_feature_that_reads_past_the_cutoff(days):
    # The same features computed 30 minutes later than the declared cutoff.
    def half_an_hour_late(frame, horizon):
        return point_in_time_features(frame, horizon - 0.5)

    rows = _sample(days, 60)
    assert len(rows_that_moved(half_an_hour_late, days, HORIZON, rows)) > 30


def test_the_check_catches_a_feature_that_reads_the_own_outcome(days):
    def with_own_delay(frame, horizon):
        features = point_in_time_features(frame, horizon)
        own = frame["dep_delay"].fillna(0).to_numpy()
        return features.assign(origin_recent_departures=features["origin_recent_departures"] + own)

    rows = _sample(days, 20)
    assert len(rows_that_moved(with_own_delay, days, HORIZON, rows)) == len(rows)


def _flight(sched, origin="EWR", dest="ORD", tail="N1", dep_delay=0.0, arr_delay=0.0, hours=2.5):
    sched = pd.Timestamp(sched)
    return {
        "sched_dep": sched - pd.Timedelta(hours=4),  # local time (UTC-4 in summer)
        "sched_dep_utc": sched,
        "sched_arr_utc": sched + pd.Timedelta(hours=hours),
        "origin": origin,
        "dest": dest,
        "carrier": "UA",
        "tailnum": tail,
        "dep_delay": dep_delay,
        "arr_delay": arr_delay,
    }


def test_features_count_only_what_happened_before_the_cutoff():
    frame = pd.DataFrame(
        [
            # Left 13:10, in the hour before the 14:00 cutoff of the last row; landed 15:40.
            _flight("2013-07-08 12:40", dep_delay=30, arr_delay=30, tail="N1"),
            # Left 14:30: after the cutoff. Its delay must not count.
            _flight("2013-07-08 13:00", dep_delay=90, arr_delay=80, tail="N2"),
            # Scheduled 13:30 and cancelled: not left by the cutoff.
            _flight("2013-07-08 13:30", dep_delay=np.nan, arr_delay=np.nan, tail="N3"),
            # Same plane as the last row, left at 11:05 and landed 12:25, both before 14:00.
            _flight("2013-07-08 11:00", dep_delay=5, arr_delay=-5, tail="N9", hours=1.5),
            # The row: scheduled 16:00, cutoff 14:00.
            _flight("2013-07-08 16:00", dep_delay=200, arr_delay=200, tail="N9"),
        ]
    )
    row = point_in_time_features(frame, HORIZON).iloc[-1]
    assert row["origin_recent_departures"] == 1  # only the 13:10 departure
    assert row["origin_recent_dep_delay"] == 30
    assert row["origin_recent_late_share"] == 1.0
    assert row["origin_not_left"] == 2  # the 13:00 (left 14:30) and the cancelled 13:30
    assert row["dest_recent_arrivals"] == 1  # landed 12:25; 15:40 is after the cutoff
    assert row["dest_recent_arr_delay"] == -5
    assert row["plane_prev_dep_delay"] == 5
    assert row["plane_prev_arr_delay"] == -5
    assert row["plane_earlier_not_left"] == 0


def test_scheduled_arrival_is_converted_from_the_destinations_time_zone(days):
    # UA 1545 on 2013-01-01: EWR 05:15 EST (10:15 UTC) to IAH 08:19 CST (14:19 UTC).
    flights = load_flights()
    first = flights[(flights["flight"] == 1545) & (flights["sched_dep"] == "2013-01-01 05:15")]
    assert first["sched_dep_utc"].iloc[0] == pd.Timestamp("2013-01-01 10:15")
    assert first["sched_arr_utc"].iloc[0] == pd.Timestamp("2013-01-01 14:19")
    assert days["sched_arr_utc"].notna().all()  # every destination has a time zone


def test_horizon_zero_is_schedule_only_and_columns_follow_the_horizon(days):
    with_columns = add_point_in_time(days, HORIZON)
    assert list(with_columns.columns[-len(POINT_IN_TIME_COLUMNS) :]) == POINT_IN_TIME_COLUMNS
    assert not set(POINT_IN_TIME_COLUMNS) & set(add_point_in_time(with_columns, 0).columns)
    later = add_point_in_time(with_columns, 3.0)
    # Three hours of notice see fewer of the plane's previous legs than two.
    assert (
        later["plane_prev_dep_delay"].notna().sum()
        < with_columns["plane_prev_dep_delay"].notna().sum()
    )
    with pytest.raises(ValueError, match="above 0 hours"):
        point_in_time_features(days, 0)
