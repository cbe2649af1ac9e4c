"""Point-in-time columns of the flights: how the day is going when the prediction is made.

The **point-in-time** columns (:data:`POINT_IN_TIME_COLUMNS`) describe how the day is
going at the moment the prediction is made, its *cutoff*: ``prediction_horizon`` hours
before the scheduled departure. They are built from other flights' outcomes (departure and
arrival delays, which are leakage for the flight itself) under one rule, enforced by
:func:`point_in_time_features` and tested by perturbation: **only events that happened
strictly before the row's cutoff count, and never the row's own flight.** An event is a
departure (at its actual moment: scheduled departure + departure delay) or an arrival (at
its actual moment: scheduled arrival, converted to UTC from the destination's time zone,
+ arrival delay). A cancelled flight never departs: it is "not left" at every cutoff.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Look-back windows before the cutoff, in hours: long enough to hold a few dozen events at
#: a busy airport, short enough to describe "now" rather than the whole day.
ORIGIN_WINDOW = 1.0
CARRIER_WINDOW = 1.0
DEST_WINDOW = 2.0
PENDING_WINDOW = 2.0

#: A departure this many minutes late or more counts as late in the share below.
LATE_MINUTES = 15

#: The columns :func:`point_in_time_features` computes, in order.
POINT_IN_TIME_COLUMNS = [
    "origin_recent_departures",
    "origin_recent_dep_delay",
    "origin_recent_late_share",
    "origin_not_left",
    "carrier_recent_dep_delay",
    "dest_recent_arrivals",
    "dest_recent_arr_delay",
    "plane_prev_dep_delay",
    "plane_prev_arr_delay",
    "plane_earlier_not_left",
]


def add_point_in_time(data: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """Set the point-in-time columns for predictions made ``horizon`` hours before departure.

    Args:
        data: Flights as returned by :func:`tabular.loaders.flights.load_flights` (with ``sched_dep_utc``,
            ``sched_arr_utc``, ``dep_delay`` and ``arr_delay``), with or without the
            columns of another horizon.
        horizon: Hours between the prediction and the scheduled departure; 0 means
            schedule only: the columns are removed.

    Returns:
        A copy of ``data`` with :data:`POINT_IN_TIME_COLUMNS` for this horizon (none at 0).
    """
    data = data.drop(columns=[c for c in POINT_IN_TIME_COLUMNS if c in data.columns])
    if horizon <= 0:
        return data
    return pd.concat([data, point_in_time_features(data, horizon)], axis=1)


def point_in_time_features(flights: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """Describe how the day is going at each flight's cutoff, from events before it only.

    The cutoff of a flight is its scheduled departure minus ``horizon`` hours. Each column
    counts or averages other flights' events that happened strictly before that cutoff:

    * ``origin_recent_departures``, ``origin_recent_dep_delay``,
      ``origin_recent_late_share``: departures from the same airport that left in the
      :data:`ORIGIN_WINDOW` hours before the cutoff: how many, their mean departure delay
      (minutes) and the share that left :data:`LATE_MINUTES`+ minutes late;
    * ``origin_not_left``: flights from the same airport scheduled to leave in the
      :data:`PENDING_WINDOW` hours before the cutoff that had not left by it (held at the
      gate, or cancelled);
    * ``carrier_recent_dep_delay``: mean departure delay of the airline's departures from
      any of the airports in the :data:`CARRIER_WINDOW` hours before the cutoff;
    * ``dest_recent_arrivals``, ``dest_recent_arr_delay``: flights to the same destination
      that arrived in the :data:`DEST_WINDOW` hours before the cutoff, and their mean arrival
      delay (minutes);
    * ``plane_prev_dep_delay``: departure delay of the same plane's latest departure that
      day that had left by the cutoff; ``plane_prev_arr_delay``: that leg's arrival delay,
      if it had arrived by the cutoff;
    * ``plane_earlier_not_left``: the same plane's departures that day scheduled before the
      cutoff that had not left by it.

    A mean over no event is missing (``NaN``); the models impute it and flag it.

    Args:
        flights: Flights with ``sched_dep`` (local), ``sched_dep_utc``, ``sched_arr_utc``,
            ``origin``, ``dest``, ``carrier``, ``tailnum``, ``dep_delay`` and ``arr_delay``.
        horizon: Hours before the scheduled departure (above 0).

    Returns:
        :data:`POINT_IN_TIME_COLUMNS`, one row per flight, on ``flights``' index.

    Raises:
        ValueError: If ``horizon`` is not above 0.
    """
    if not horizon > 0:
        raise ValueError(f"a point-in-time horizon must be above 0 hours, got {horizon}")
    index = flights.index
    flights = flights.reset_index(drop=True)
    cutoff = _ns(flights["sched_dep_utc"] - pd.Timedelta(hours=horizon))
    dep_at = _ns(flights["sched_dep_utc"] + pd.to_timedelta(flights["dep_delay"], unit="min"))
    arr_at = _ns(flights["sched_arr_utc"] + pd.to_timedelta(flights["arr_delay"], unit="min"))
    dep_delay = flights["dep_delay"].to_numpy(dtype=float)
    late = (dep_delay >= LATE_MINUTES).astype(float)

    origin = _recent(flights["origin"], dep_at, cutoff, ORIGIN_WINDOW, dep_delay, late)
    carrier = _recent(flights["carrier"], dep_at, cutoff, CARRIER_WINDOW, dep_delay)
    dest = _recent(
        flights["dest"], arr_at, cutoff, DEST_WINDOW, flights["arr_delay"].to_numpy(dtype=float)
    )
    plane = _plane_legs(flights, dep_at, arr_at, cutoff)
    out = pd.DataFrame(
        {
            "origin_recent_departures": origin[0],
            "origin_recent_dep_delay": _mean(origin[1], origin[0]),
            "origin_recent_late_share": _mean(origin[2], origin[0]),
            "origin_not_left": _not_left(flights, dep_at, cutoff),
            "carrier_recent_dep_delay": _mean(carrier[1], carrier[0]),
            "dest_recent_arrivals": dest[0],
            "dest_recent_arr_delay": _mean(dest[1], dest[0]),
            **plane,
        }
    )
    out.index = index
    return out[POINT_IN_TIME_COLUMNS]


#: Stands for "never happened" (a cancelled departure, an arrival that never came).
_NEVER = np.iinfo(np.int64).max


def _ns(moments: pd.Series) -> np.ndarray:
    """Moments as int64 nanoseconds; a missing moment is :data:`_NEVER`."""
    values = moments.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return np.where(moments.isna().to_numpy(), _NEVER, values)


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _recent(
    keys: pd.Series, event_at: np.ndarray, cutoff: np.ndarray, hours: float, *values: np.ndarray
) -> list[np.ndarray]:
    """Count (and sum ``values`` over) the events of each row's key in ``[cutoff - hours, cutoff)``.

    Returns ``[count, *sums]``; the row's own event is never counted.
    """
    width = int(pd.Timedelta(hours=hours).value)
    happened = event_at != _NEVER
    results = [np.zeros(len(keys))] + [np.zeros(len(keys)) for _ in values]
    codes = pd.factorize(keys, use_na_sentinel=True)[0]
    for code in np.unique(codes[codes >= 0]):
        rows = np.flatnonzero(codes == code)
        events = rows[happened[rows]]
        events = events[np.argsort(event_at[events], kind="stable")]
        times = event_at[events]
        low = np.searchsorted(times, cutoff[rows] - width, side="left")
        high = np.searchsorted(times, cutoff[rows], side="left")  # strictly before the cutoff
        results[0][rows] = high - low
        for result, value in zip(results[1:], values, strict=True):
            sums = np.concatenate([[0.0], np.cumsum(value[events])])
            result[rows] = sums[high] - sums[low]
    # Exclude the row's own event when it falls in its own window (a very early departure).
    own = happened & (event_at >= cutoff - width) & (event_at < cutoff)
    results[0] -= own
    for result, value in zip(results[1:], values, strict=True):
        result -= np.where(own, value, 0.0)
    return results


def _not_left(flights: pd.DataFrame, dep_at: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """Per row: its origin's flights scheduled in the pending window that had not left by its cutoff."""
    width = int(pd.Timedelta(hours=PENDING_WINDOW).value)
    scheduled = _ns(flights["sched_dep_utc"])
    result = np.zeros(len(flights))
    codes = pd.factorize(flights["origin"])[0]
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        order = rows[np.argsort(scheduled[rows], kind="stable")]
        times, left_at = scheduled[order], dep_at[order]
        low = np.searchsorted(times, cutoff[rows] - width, side="left")
        high = np.searchsorted(times, cutoff[rows], side="left")
        span = int((high - low).max(initial=0))
        # Each row's window is a short run of schedule-sorted flights: test them all at once,
        # in chunks to bound memory. The row itself is scheduled after its cutoff: never in it.
        for start in range(0, len(rows), 20_000):
            chunk = slice(start, start + 20_000)
            offsets = np.arange(span)
            positions = np.minimum(low[chunk, None] + offsets, max(len(order) - 1, 0))
            inside = offsets < (high[chunk] - low[chunk])[:, None]
            waiting = left_at[positions] >= cutoff[rows[chunk], None]
            result[rows[chunk]] = (inside & waiting).sum(axis=1)
    return result


def _plane_legs(
    flights: pd.DataFrame, dep_at: np.ndarray, arr_at: np.ndarray, cutoff: np.ndarray
) -> dict[str, np.ndarray]:
    """The same plane's other departures that day, as seen at each row's cutoff."""
    n = len(flights)
    day = flights["sched_dep"].dt.normalize()
    known = flights["tailnum"].notna().to_numpy()
    legs = pd.DataFrame(
        {"row": np.arange(n)[known], "tail": flights["tailnum"][known], "day": day[known]}
    )
    # Every ordered pair (row, other) of distinct flights of one plane on one day.
    pairs = legs.merge(legs, on=["tail", "day"], suffixes=("", "_other"))
    pairs = pairs[pairs["row"] != pairs["row_other"]]
    row = pairs["row"].to_numpy()
    other = pairs["row_other"].to_numpy()
    row_cutoff = cutoff[row]
    left = dep_at[other] < row_cutoff
    scheduled = _ns(flights["sched_dep_utc"])[other]

    earlier_waiting = (scheduled < row_cutoff) & ~left
    not_left = np.bincount(row[earlier_waiting], minlength=n).astype(float)

    prev_dep = np.full(n, np.nan)
    prev_arr = np.full(n, np.nan)
    gone = pd.DataFrame({"row": row[left], "other": other[left], "at": dep_at[other[left]]})
    latest = gone.sort_values(["row", "at"], kind="stable").groupby("row").tail(1)
    rows, others = latest["row"].to_numpy(), latest["other"].to_numpy()
    prev_dep[rows] = flights["dep_delay"].to_numpy(dtype=float)[others]
    arrived = arr_at[others] < cutoff[rows]
    prev_arr[rows[arrived]] = flights["arr_delay"].to_numpy(dtype=float)[others[arrived]]
    not_left[~known] = np.nan  # no tail number: the plane's legs are unknown
    return {
        "plane_prev_dep_delay": prev_dep,
        "plane_prev_arr_delay": prev_arr,
        "plane_earlier_not_left": not_left,
    }
