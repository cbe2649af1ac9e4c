"""The dataset config: one YAML file that declares every column's role, once.

EDA, validation, training, the serving schema and the drift monitor all read the same
:class:`DatasetConfig`, so a column's role (target, date, categorical, numeric, id,
leakage) is never restated elsewhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tabular.errors import ConfigError
from tabular.loaders import LOADERS

#: Where the bundled configs live (``data/`` at the repository root).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_CONFIG = DATA_DIR / "flights.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where the rows come from: a built-in loader or a CSV file.

    Attributes:
        loader: Name of a built-in loader (a key of :data:`tabular.loaders.LOADERS`, e.g.
            ``"nycflights13"``), or ``None``.
        csv: Path of a CSV file, relative to the config file, or ``None``.
    """

    loader: str | None = None
    csv: str | None = None

    @field_validator("loader")
    @classmethod
    def _known_loader(cls, value: str | None) -> str | None:
        if value is not None and value not in LOADERS:
            raise ValueError(
                f"unknown loader '{value}': the built-in loaders are {', '.join(sorted(LOADERS))}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceConfig:
        if (self.loader is None) == (self.csv is None):
            raise ValueError("give exactly one of 'loader' or 'csv'")
        return self


class TargetConfig(_Strict):
    """How the binary target is derived from a source column.

    Exactly one rule applies: ``threshold`` (positive when the value is at least the
    threshold), ``positive_values`` (positive when the value is in the list), or neither,
    in which case the source column must already hold 0/1.

    Attributes:
        name: Name of the derived 0/1 target column.
        column: Source column in the data.
        threshold: Positive when ``column >= threshold``.
        positive_values: Positive when ``column`` is one of these values.
        labels: Human names of class 0 and class 1, used in charts and reports.
    """

    name: str
    column: str
    threshold: float | None = None
    positive_values: list[str | int | float | bool] | None = None
    labels: tuple[str, str] = ("negative", "positive")

    @model_validator(mode="after")
    def _one_rule(self) -> TargetConfig:
        if self.threshold is not None and self.positive_values is not None:
            raise ValueError("give at most one of 'threshold' or 'positive_values'")
        return self


class SplitConfig(_Strict):
    """How rows are split into development rows (folds) and test rows.

    ``time``: chronological by the date column. The test rows are those from
    ``test_start`` on; every earlier row is a development row. Selection uses rolling-origin
    folds over the development rows: each fold validates on the period from one of
    ``folds`` (dates) to the next (the last one to ``test_start``) and trains on every row
    before it (an expanding window). ``validation_start`` alone is one fold.
    ``random``: stratified by the target with the given shares; the validation rows are the
    one fold.
    """

    method: Literal["time", "random"] = "time"
    validation_start: dt.date | None = None
    folds: list[dt.date] | None = None
    test_start: dt.date | None = None
    validation_size: float = Field(0.15, gt=0, lt=0.5)
    test_size: float = Field(0.2, gt=0, lt=0.5)

    @property
    def fold_starts(self) -> list[dt.date]:
        """The first day of each validation fold of a time split, in order (empty if random)."""
        if self.method != "time":
            return []
        return list(self.folds) if self.folds is not None else [self.validation_start]

    def part(self, name: Literal["training", "validation", "test"]) -> str:
        """Name a part of the split for reports, with its dates when the split is by time.

        Args:
            name: ``training`` (the development rows, on which the final models are
                fitted), ``validation`` (the rows the folds are scored on) or ``test``.

        Returns:
            E.g. ``"the test period (from 2013-10-01)"``, or ``"the test rows"`` for a random
            split.
        """
        if self.method != "time":
            return {
                "training": "the training and validation rows",
                "validation": "the validation rows",
                "test": "the test rows",
            }[name]
        first = self.fold_starts[0]
        dates = {
            "training": f"before {self.test_start}",
            "validation": f"from {first} to before {self.test_start}",
            "test": f"from {self.test_start}",
        }
        noun = {"training": "development", "validation": "validation", "test": "test"}[name]
        return f"the {noun} period ({dates[name]})"

    @model_validator(mode="after")
    def _dates_for_time_split(self) -> SplitConfig:
        if self.method == "time":
            if self.test_start is None:
                raise ValueError("a 'time' split needs 'test_start'")
            if (self.validation_start is None) == (self.folds is None):
                raise ValueError(
                    "a 'time' split needs exactly one of 'validation_start' (one validation "
                    "period) or 'folds' (the first day of each rolling-origin fold)"
                )
            starts = self.fold_starts
            if not starts:
                raise ValueError("'folds' must list at least one date")
            if any(a >= b for a, b in zip(starts, starts[1:], strict=False)):
                raise ValueError("'folds' must be dates in increasing order")
            if starts[-1] >= self.test_start:
                label = "'validation_start'" if self.folds is None else "every date of 'folds'"
                raise ValueError(f"{label} must come before 'test_start'")
        return self


class DateFromConfig(_Strict):
    """A date built from separate year, month and day columns.

    Many exported CSVs spread the date over several columns (``arrival_date_year``,
    ``arrival_date_month`` = "July", ``arrival_date_day_of_month``); once built, the date
    behaves like any date column (time split allowed, calendar parts as features).

    Attributes:
        year: Column holding the year (e.g. 2016).
        month: Column holding the month, as a number (1-12) or an English name ("July",
            "jul"; any case).
        day: Column holding the day of the month.
    """

    year: str
    month: str
    day: str

    @property
    def columns(self) -> list[str]:
        """The three source columns, in year, month, day order."""
        return [self.year, self.month, self.day]


#: Text that exported CSVs commonly write for a missing value; read as missing by default.
DEFAULT_MISSING_MARKERS = ("", "NA", "N/A", "n/a", "NULL", "null", "NaN", "nan", "None", "#N/A")


class ChecksConfig(_Strict):
    """Limits the Great Expectations gate enforces beyond column presence and types.

    Attributes:
        max_null_share: Default ceiling on the share of missing values in a feature.
        null_share: Per-column ceilings that override the default.
        ranges: Inclusive ``[min, max]`` per numeric column; ``None`` leaves a side open.
        date_range: Inclusive ``[first, last]`` dates allowed in the date column.
    """

    max_null_share: float = Field(0.05, ge=0, le=1)
    null_share: dict[str, float] = Field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    date_range: tuple[dt.date, dt.date] | None = None


class FeatureConfig(_Strict):
    """Choices shared by EDA and training about how features are encoded.

    Attributes:
        rare_share: Levels seen in less than this share of training rows become "Other".
        one_hot_max_levels: Categorical columns with more distinct training levels than
            this are target-encoded instead of one-hot encoded.
        date_parts: Calendar parts derived from the date column as features.
    """

    rare_share: float = Field(0.03, gt=0, lt=0.5)
    one_hot_max_levels: int = Field(40, ge=2)
    date_parts: tuple[Literal["year", "month", "day", "weekday", "hour", "dayofyear"], ...] = (
        "month",
        "weekday",
        "hour",
    )


class ModelSearch(_Strict):
    """The hyperparameter grid of one model family.

    Attributes:
        enabled: Train this family at all.
        grid: Values to try for each hyperparameter (three are varied by default).
        curve_param: Hyperparameter whose validation curve is drawn.
        search_rows: Overrides ``training.search_rows`` for this family (capped at the
            number of training rows).
        refit_rows: The chosen configuration is refitted on a fixed-seed sample of at most
            this many development rows (``None``: on every one). For the families whose
            fit grows with the rows and gains little past a few hundred thousand (the
            linear model, the network): it bounds their time and memory on large data.
    """

    enabled: bool = True
    search_rows: int | None = Field(None, ge=100)
    refit_rows: int | None = Field(None, ge=100)
    grid: dict[str, list]
    curve_param: str

    @model_validator(mode="after")
    def _curve_param_in_grid(self) -> ModelSearch:
        if self.curve_param not in self.grid:
            raise ValueError(f"curve_param '{self.curve_param}' is not one of {list(self.grid)}")
        return self


#: The linear model's and the network's final refit by default: at most this many rows (10
#: times their search fits'); XGBoost is refitted on every development row.
REFIT_ROWS = 300_000


def _default_models() -> dict[str, ModelSearch]:
    return {
        "logistic": ModelSearch(
            grid={
                "C": [0.01, 0.1, 1.0, 10.0],
                "l1_ratio": [0.0, 0.5, 1.0],
                "class_weight": [None, "balanced"],
            },
            curve_param="C",
            refit_rows=REFIT_ROWS,
        ),
        "xgboost": ModelSearch(
            grid={
                "max_depth": [3, 5, 7],
                "n_estimators": [200, 400, 800],
                "learning_rate": [0.03, 0.1],
            },
            curve_param="max_depth",
        ),
        "mlp": ModelSearch(
            grid={
                "hidden_layer_sizes": [[32], [64, 32], [128, 64]],
                "alpha": [0.0001, 0.001, 0.01],
                "learning_rate_init": [0.0003, 0.001, 0.003],
            },
            curve_param="alpha",
            refit_rows=REFIT_ROWS,
        ),
    }


class HorizonStudyConfig(_Strict):
    """The study of the champion's score against the prediction horizon.

    It needs a source that can recompute the point-in-time columns for another horizon
    (the built-in loader); for a CSV it is skipped and the report says why.

    Attributes:
        horizons: Horizons to compare, in hours (0 = schedule only).
        rows: Fit the study's models on a fixed-seed sample of this many development rows
            (``None``: all of them, as the main run).
    """

    horizons: list[float] = Field(default_factory=lambda: [0.0, 1.0, 2.0, 3.0])
    rows: int | None = Field(None, ge=100)

    @model_validator(mode="after")
    def _horizons(self) -> HorizonStudyConfig:
        if any(h < 0 for h in self.horizons):
            raise ValueError("horizons must be 0 or more hours")
        return self


class TrainingConfig(_Strict):
    """How models are tuned, selected, calibrated and judged.

    Attributes:
        metric: Primary metric for selection (both are insensitive to the class balance's
            effect on accuracy and need no threshold).
        search: ``random`` samples ``n_iter`` configurations of each grid; ``grid`` tries all.
        n_iter: Configurations per family for the random search.
        search_rows: Rows (a fixed-seed sample of each fold's training rows) used to fit each
            configuration during the search; the chosen configuration is then refitted on
            all development rows (or a sample of its family's ``refit_rows``).
        halving: Successive halving across the folds: every configuration is scored on the
            first half of the folds, then only this share of them (the best by their mean
            there, at least one) goes on to the other folds (``None``: every configuration
            on every fold). A configuration far behind after the first folds stops.
        max_epochs: Epoch cap for the neural network.
        patience: Epochs without improvement on its stopping rows before the network stops.
        stopping_share: Share of each fold's training sample the network holds out to stop
            on (the latest rows for a time split, a stratified random share otherwise); it
            never sees the rows the fold is scored on.
        max_gap: Train minus validation score above which a model is called overfitting.
        min_lift: Validation score must beat the constant baseline by this much, or the
            model is called underfitting.
        calibration: How a family's probabilities would be calibrated (``sigmoid``: Platt
            scaling, which keeps the ranking; ``isotonic``); whether they are is decided per
            family on the folds.
        horizon_study: The score-against-horizon study.
        models: Grid per family (``logistic``, ``xgboost``, ``mlp``).
    """

    metric: Literal["roc_auc", "average_precision"] = "roc_auc"
    search: Literal["random", "grid"] = "random"
    n_iter: int = Field(6, ge=1)
    search_rows: int = Field(60_000, ge=100)
    halving: float | None = Field(0.5, gt=0, le=1)
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(4, ge=1)
    stopping_share: float = Field(0.1, gt=0, lt=0.5)
    max_gap: float = Field(0.05, gt=0)
    min_lift: float = Field(0.02, ge=0)
    calibration: Literal["sigmoid", "isotonic"] = "sigmoid"
    horizon_study: HorizonStudyConfig = HorizonStudyConfig()
    models: dict[Literal["logistic", "xgboost", "mlp"], ModelSearch] = Field(
        default_factory=_default_models
    )


class ExplainConfig(_Strict):
    """SHAP importance and feature selection.

    Attributes:
        tree_rows: Validation rows explained for tree models (exact, fast explainer).
        sample_rows: Validation rows explained with the permutation explainer (slower).
        background_rows: Background rows for the permutation explainer.
        coverage: Keep the smallest set of columns whose mean |SHAP| adds up to this share
            of the total (ignored when ``top_k`` is set).
        top_k: Keep exactly this many columns instead.
        min_features: Never keep fewer columns than this.
    """

    tree_rows: int = Field(2000, ge=50)
    sample_rows: int = Field(300, ge=20)
    background_rows: int = Field(100, ge=10)
    coverage: float = Field(0.95, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    min_features: int = Field(3, ge=1)


class RetrainConfig(_Strict):
    """How the monitor retrains when drift is flagged.

    The challenger is fitted on every labelled row dated before the judged window; its
    configuration, family, threshold and calibration are chosen on ``folds`` rolling-origin
    folds of ``fold_months`` months each, the last one ending where the window starts.

    Attributes:
        sample: Rows the retraining run samples (``None``: every row before the window).
        folds: Rolling-origin folds of the challenger's selection.
        fold_months: Months each fold validates on.
    """

    sample: int | None = Field(None, ge=100)
    folds: int = Field(4, ge=1)
    fold_months: int = Field(1, ge=1)


class MonitoringConfig(_Strict):
    """Drift monitoring of the served inputs and the champion/challenger gate.

    Attributes:
        reference: The reference rows a window is compared with: ``whole`` (every training
            reference row), ``same_period`` (the reference rows of the window's calendar
            months, in its weekday-hour mix for a window shorter than a week) or ``recent``
            (the logs of the window just before). Chosen by the monitor evaluation
            (``benchmarks/monitor_eval.py``; README, "Monitoring").
        importance_share: Dataset drift is flagged when the drifted columns hold at least
            this share of the served model's mean |SHAP| (the importance-weighted drift).
        drift_share: Share of drifted columns of Evidently's own dataset-drift test,
            reported next to the verdict (it does not decide).
        missing_share: A column drifts when its share of missing values moves by at least
            this much from the reference's.
        correlation_change: A numeric column drifts when its rank correlations with the
            numeric inputs it is related to move by at least this much on average
            (``null``: no such test).
        methods: Drift method per column (Evidently's names: ``psi``, ``ks``,
            ``jensenshannon``, ``wasserstein``, ...); others get Evidently's default.
        min_rows: Fewest valid logged rows a check compares (fewer: "not enough data"); also
            the fewest labelled rows for classification quality and for judging a challenger.
        window_rows: The window when none is given: the last this many prediction logs.
            30,000 is about a month of the default dataset's traffic: the monitor evaluation
            found a month of traffic against its period's rows clean, and a single week
            flagged by its own weather (README, "Monitoring").
        reference_rows: Training rows kept in the reference frame (a fixed-seed sample).
        on_drift: What dataset drift triggers: ``retrain`` (retrain, then the
            champion/challenger gate), ``report`` (say that it would retrain) or ``off``.
        margin: The challenger replaces the champion only if its score on the labelled
            window beats the champion's by more than this (``training.metric``).
        schedule: Cron schedule of the ``drift-monitor`` deployment (``make deploy``).
        retrain: The retraining run's data.
        log_retention_days: Keep prediction logs this many days after they were served
            (a TTL index on their timestamp, set by each drift check and each run's store
            step); ``None`` (the default) keeps them for ever.
    """

    reference: Literal["whole", "same_period", "recent"] = "same_period"
    importance_share: float = Field(0.05, gt=0, le=1)
    drift_share: float = Field(0.5, gt=0, le=1)
    missing_share: float = Field(0.1, gt=0, le=1)
    correlation_change: float | None = Field(0.3, gt=0, le=2)
    methods: dict[str, str] = Field(default_factory=dict)
    min_rows: int = Field(100, ge=1)
    window_rows: int = Field(30_000, ge=1)
    reference_rows: int = Field(100_000, ge=100)
    on_drift: Literal["retrain", "report", "off"] = "report"
    margin: float = Field(0.005, ge=0)
    schedule: str = "0 * * * *"
    retrain: RetrainConfig = RetrainConfig()
    log_retention_days: float | None = Field(None, gt=0)


#: A Dask scheduler's address, as ``distributed.Client`` takes it.
SCHEDULER_ADDRESS = r"^(tcp|tls)://[^\s/]+:\d+$"


class ExecutionConfig(_Strict):
    """Where the pipeline's independent units of work run (not what they compute).

    Attributes:
        dask: Address of a Dask scheduler (``tcp://host:8786``): the search's (configuration,
            fold) fits, the SHAP runs and the horizon study's refits are submitted there as
            Prefect tasks (``DaskTaskRunner``); ``mlops run --dask`` overrides it. ``None``
            (the default): they run in the pipeline's own process. The same seed gives the
            same choices either way, so no step's cache key includes it.
        xgboost_dask_rows: On a cluster, XGBoost's final refit runs through
            ``xgboost.dask`` when the development rows exceed this many.
    """

    dask: str | None = Field(None, pattern=SCHEDULER_ADDRESS)
    xgboost_dask_rows: int = Field(1_000_000, ge=1)


class DatasetConfig(_Strict):
    """Everything the pipeline knows about one dataset.

    Attributes:
        name: Short name, used in run folders, model names and collections.
        question: The business question the model answers, in plain English.
        source: Where the rows come from.
        target: How the 0/1 target is derived.
        date_column: The column holding each row's date and time, or ``None`` when the
            data has no date (then the split must be random and there are no date
            features). With ``date_from``, the name of the date built from parts
            (default ``"date"``).
        date_from: Build the date column from year, month and day columns.
        row_noun: What one row is, singular and plural (``[flight, flights]``), for the
            reports' wording; a single word gets an "s" for its plural.
        missing_markers: Text read as a missing value in a CSV (exactly these; an empty
            cell is the empty string).
        prediction_horizon: Hours before the date column's moment at which a prediction
            is made (its cutoff); 0 means from the schedule only, without the
            ``point_in_time`` columns.
        categorical: Categorical feature columns.
        numeric: Numeric feature columns known in advance.
        point_in_time: Numeric feature columns that describe events before the cutoff
            (features only when ``prediction_horizon`` is above 0); the built-in loader
            computes them for any horizon, a CSV must hold them for its horizon.
        id_columns: Identifiers kept for lookups but never used as features.
        leakage: Columns known only after the event: never features.
        drop_rows_missing: Rows missing any of these columns are dropped (and counted).
        descriptions: One line per column, with its unit (e.g. ``distance: Great-circle
            distance, miles``); the served model's OpenAPI schema shows them.
        split: How rows are split.
        checks: Limits enforced by the validation gate.
        features: Encoding choices shared by EDA and training.
        training: Model search, selection and verdict rules.
        explain: SHAP importance and feature-selection rules.
        monitoring: Drift monitoring and the champion/challenger gate.
        execution: Where the units of work run (this process, or a Dask cluster).
        seed: Default random seed.
        path: The file this config was read from (set by :func:`load_config`).
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    question: str
    description: str = ""
    source: SourceConfig
    target: TargetConfig
    date_column: str | None = None
    date_from: DateFromConfig | None = None
    row_noun: tuple[str, str] = ("row", "rows")
    missing_markers: tuple[str, ...] = DEFAULT_MISSING_MARKERS
    prediction_horizon: float = Field(0.0, ge=0)
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    point_in_time: list[str] = Field(default_factory=list)
    id_columns: list[str] = Field(default_factory=list)
    leakage: list[str] = Field(default_factory=list)
    drop_rows_missing: list[str] = Field(default_factory=list)
    descriptions: dict[str, str] = Field(default_factory=dict)
    split: SplitConfig = SplitConfig(method="random")
    checks: ChecksConfig = ChecksConfig()
    features: FeatureConfig = FeatureConfig()
    training: TrainingConfig = TrainingConfig()
    explain: ExplainConfig = ExplainConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    execution: ExecutionConfig = ExecutionConfig()
    seed: int = 42
    path: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _wording_and_built_date(cls, raw):
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if isinstance(raw.get("row_noun"), str):
            raw["row_noun"] = (raw["row_noun"], f"{raw['row_noun']}s")
        if raw.get("date_from") is not None and raw.get("date_column") is None:
            raw["date_column"] = "date"
        if any(marker is None for marker in raw.get("missing_markers") or ()):
            raise ValueError(
                "missing_markers: YAML reads an unquoted NULL, null or ~ as 'no value'; "
                'quote the text, e.g. "NULL"'
            )
        return raw

    @model_validator(mode="after")
    def _date_rules(self) -> DatasetConfig:
        if self.date_column is None:
            if self.split.method == "time":
                raise ValueError(
                    "split.method 'time' needs a date: set 'date_column' or 'date_from', "
                    "or use split.method 'random'"
                )
            if self.checks.date_range is not None:
                raise ValueError("checks.date_range needs a date: set 'date_column' or 'date_from'")
        if self.date_from is not None and self.date_column in self.date_from.columns:
            raise ValueError(
                f"date_column '{self.date_column}' would overwrite a column of date_from; "
                "give the built date another name"
            )
        return self

    @model_validator(mode="after")
    def _roles_are_consistent(self) -> DatasetConfig:
        if not self.categorical and not self.numeric:
            raise ValueError("declare at least one 'categorical' or 'numeric' feature column")
        roles = {
            "categorical": self.categorical,
            "numeric": self.numeric,
            "point_in_time": self.point_in_time,
            "id_columns": self.id_columns,
            "leakage": self.leakage,
        }
        seen: dict[str, str] = {}
        for role, columns in roles.items():
            for column in columns:
                if column in seen:
                    raise ValueError(
                        f"column '{column}' is listed in both '{seen[column]}' and '{role}'"
                    )
                seen[column] = role
        for special in (self.target.name, self.target.column, self.date_column):
            if special is None:
                continue
            role = seen.get(special)
            if role in ("categorical", "numeric", "point_in_time"):
                raise ValueError(
                    f"column '{special}' is the target or date column; "
                    f"it cannot be a {role} feature"
                )
        return self

    @model_validator(mode="after")
    def _horizon_and_descriptions(self) -> DatasetConfig:
        if self.prediction_horizon > 0 and self.date_column is None:
            raise ValueError(
                "prediction_horizon counts hours before each row's date: set 'date_column' "
                "or 'date_from', or leave prediction_horizon at 0"
            )
        known = {self.date_column, self.target.name, self.target.column}
        known.update(self.categorical, self.numeric, self.point_in_time, self.id_columns)
        known.update(self.leakage, self.drop_rows_missing)
        unknown = sorted(set(self.descriptions) - known)
        if unknown:
            raise ValueError(
                f"descriptions name column(s) {', '.join(map(repr, unknown))} that the config "
                "does not declare"
            )
        return self

    @property
    def numeric_features(self) -> list[str]:
        """Numeric feature columns: ``numeric``, plus ``point_in_time`` above horizon 0."""
        return [*self.numeric, *(self.point_in_time if self.prediction_horizon > 0 else [])]

    @property
    def feature_columns(self) -> list[str]:
        """All feature columns fed to the models: date (if any), categorical, numeric."""
        date = [self.date_column] if self.date_column else []
        return [*date, *self.categorical, *self.numeric_features]

    def at_horizon(self, hours: float) -> DatasetConfig:
        """Return the same config with another prediction horizon.

        Args:
            hours: The horizon (0 = schedule only).

        Returns:
            A copy whose ``prediction_horizon`` is ``hours``.

        Raises:
            ConfigError: If the horizon is negative or the config has no date.
        """
        raw = self.model_dump(exclude={"path"})
        try:
            copy = DatasetConfig.model_validate({**raw, "prediction_horizon": hours})
        except ValidationError as exc:
            raise ConfigError(f"prediction horizon {hours}: {exc.errors()[0]['msg']}") from exc
        return copy.model_copy(update={"path": self.path})

    @property
    def required_columns(self) -> list[str]:
        """Every column the data must contain before the target is derived.

        With ``date_from``, these are the date's parts, not the date it builds.
        """
        if self.date_from is not None:
            date = self.date_from.columns
        else:
            date = [self.date_column] if self.date_column else []
        columns = [*date, self.target.column, *self.categorical, *self.numeric_features]
        columns += [*self.id_columns, *self.drop_rows_missing]
        return list(dict.fromkeys(columns))

    def rows(self, n: int | None = None) -> str:
        """Name the rows in the config's words: ``rows()`` → "flights", ``rows(1)`` → "1 flight".

        Args:
            n: A count to put before the noun (with thousands separators), or ``None`` for
                the plural alone.

        Returns:
            The text.
        """
        singular, plural = self.row_noun
        if n is None:
            return plural
        return f"{n:,} {singular if n == 1 else plural}"

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> DatasetConfig:
        """Return a copy with some keys replaced, checked by the same rules as a config file.

        Nested mappings are merged key by key (``{"training": {"n_iter": 2}}`` changes only
        ``n_iter``); other values replace the config's.

        Args:
            overrides: Keys to replace, shaped like the YAML file (``None``: no change).

        Returns:
            The new config (``path`` unchanged).

        Raises:
            ConfigError: If the result breaks a rule; the message names the key.
        """
        if not overrides:
            return self
        merged = _merge(self.model_dump(mode="python"), overrides)
        try:
            return DatasetConfig.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(
                f"config '{self.name}' with overrides is invalid: {_problems(exc)}"
            ) from None

    def restricted_to(self, columns: Sequence[str]) -> dict[str, Any]:
        """Overrides that keep only some feature columns, all of them through the selection.

        The other categorical and numeric columns become ``id_columns`` (kept in the data,
        never features), and the SHAP selection keeps every remaining column. The monitor's
        retraining uses this so that a challenger takes the champion's inputs.

        Args:
            columns: The feature columns to keep (the date column is kept as configured).

        Returns:
            Overrides for :meth:`with_overrides`.

        Raises:
            ConfigError: If a column is not a feature of this config (categorical, numeric or
                point-in-time).
        """
        features = set(self.categorical) | set(self.numeric_features)
        unknown = [c for c in columns if c not in features and c != self.date_column]
        if unknown:
            raise ConfigError(
                f"column(s) {', '.join(map(repr, unknown))} are not features of config '{self.name}'"
            )
        keep = set(columns)
        dropped = [c for c in [*self.categorical, *self.numeric_features] if c not in keep]
        count = len([c for c in columns if c != self.date_column]) + (self.date_column in keep)
        overrides: dict[str, Any] = {
            "categorical": [c for c in self.categorical if c in keep],
            "numeric": [c for c in self.numeric if c in keep],
            "id_columns": [*self.id_columns, *dropped],
            "explain": {"top_k": count, "min_features": min(self.explain.min_features, count)},
        }
        if self.prediction_horizon > 0:  # at horizon 0 no point-in-time column is a feature
            overrides["point_in_time"] = [c for c in self.point_in_time if c in keep]
        return overrides

    def csv_path(self) -> Path:
        """Return the CSV path resolved against the config file's folder.

        Raises:
            ConfigError: If the source is not a CSV file.
        """
        if self.source.csv is None:
            raise ConfigError(f"dataset '{self.name}' has no CSV source")
        path = Path(self.source.csv)
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path


def load_config(path: str | Path) -> DatasetConfig:
    """Read and check a dataset config file.

    Args:
        path: Path of a YAML dataset config.

    Returns:
        The parsed config, with ``path`` set to the file it came from.

    Raises:
        ConfigError: If the file is missing, is not YAML, or breaks a rule; the message
            names the file and the offending key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(raw).__name__}"
        )
    raw["path"] = path.resolve()
    try:
        return DatasetConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file {path} is invalid: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
    )


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
