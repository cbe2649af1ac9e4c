"""Feature preprocessing shared by EDA, training and serving: one definition, not two.

The EDA stage reports the plan made by :func:`plan_encoding`; the training stage builds
its scikit-learn preprocessing from the same plan with :func:`build_preprocessor`; the
BentoML service unpickles pipelines that contain the transformers defined here. Keep
this module light: the service imports it.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    StandardScaler,
    TargetEncoder,
)

OTHER = "Other"
MISSING = "Missing"


def as_category_text(values: pd.Series) -> pd.Series:
    """Return a categorical column as text, with missing values as ``"Missing"``.

    Args:
        values: Any column.

    Returns:
        An object series of strings.
    """
    text = values.astype(object).where(values.notna(), MISSING)
    return text.map(str)


#: The name scikit-learn's ``OneHotEncoder`` gives the column of the grouped rare levels
#: (``carrier_infrequent_sklearn``): the reports call it "Other".
INFREQUENT = "infrequent_sklearn"


def rare_level_encoder(rare_share: float) -> OneHotEncoder:
    """Build the one-hot encoder that groups rare levels into one "Other" column.

    scikit-learn's ``OneHotEncoder(min_frequency=rare_share)`` marks a level seen in fewer
    than ``rare_share`` × the fitted rows as infrequent and encodes every infrequent level
    in one column, the last of the column's block; ``handle_unknown="infrequent_if_exist"``
    sends a level never seen in training to that column too (to none when no level was
    rare, as for a level nobody saw). That is the grouping into "Other" the EDA shows:
    the pipelines, the EDA and the compiled serving path read the fitted encoder.

    Args:
        rare_share: Levels below this share of the fitted rows are grouped.

    Returns:
        The unfitted encoder (dense float32 output).
    """
    return OneHotEncoder(
        min_frequency=rare_share,
        handle_unknown="infrequent_if_exist",
        sparse_output=False,
        dtype=np.float32,
    )


def kept_levels(encoder: OneHotEncoder, index: int) -> list[str]:
    """Return the levels a fitted rare-level encoder keeps apart for one of its columns.

    Args:
        encoder: A fitted :func:`rare_level_encoder`.
        index: The column's position among the encoder's inputs.

    Returns:
        The frequent levels, in the encoder's (sorted) order.
    """
    rare = encoder.infrequent_categories_[index]
    rare = set() if rare is None else {str(level) for level in rare}
    return [str(level) for level in encoder.categories_[index] if str(level) not in rare]


def rare_levels_kept(values: pd.Series, rare_share: float) -> list[str]:
    """Fit the pipelines' rare-level encoder on one column and return the levels it keeps.

    Args:
        values: A categorical column (missing values count as the level "Missing").
        rare_share: Levels below this share of the rows are grouped.

    Returns:
        The kept levels, sorted.
    """
    text = as_category_text(values).to_frame()
    return kept_levels(rare_level_encoder(rare_share).fit(text), 0)


class CategoryText(BaseEstimator, TransformerMixin):
    """Cast categorical columns to text with "Missing" for missing values (no grouping)."""

    def fit(self, X: pd.DataFrame, y=None) -> CategoryText:
        """Remember the column names.

        Args:
            X: Frame of categorical columns.
            y: Ignored.

        Returns:
            self
        """
        self.feature_names_in_ = np.asarray(_frame(X).columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Cast every column to text.

        Args:
            X: Frame with the fitted columns.

        Returns:
            A frame of text levels.
        """
        X = _frame(X, self.feature_names_in_)
        return pd.DataFrame({c: as_category_text(X[c]) for c in X.columns}, index=X.index)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Return the column names (unchanged)."""
        return np.asarray(self.feature_names_in_, dtype=object)


class DateParts(BaseEstimator, TransformerMixin):
    """Expand one datetime column into numeric calendar parts (month, weekday, hour, ...).

    Args:
        parts: Names of ``pandas.Series.dt`` attributes to extract.
    """

    def __init__(self, parts: tuple[str, ...] = ("month", "weekday", "hour")):
        self.parts = parts

    def fit(self, X: pd.DataFrame, y=None) -> DateParts:
        """Remember the column name.

        Args:
            X: Frame with one datetime (or parseable text) column.
            y: Ignored.

        Returns:
            self
        """
        X = _frame(X)
        if X.shape[1] != 1:
            raise ValueError(f"DateParts takes one column, got {list(X.columns)}")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Extract the parts as floats (missing when the date is missing).

        Args:
            X: Frame with the fitted column.

        Returns:
            One column per part, named ``<column>_<part>``.
        """
        X = _frame(X, self.feature_names_in_)
        column = self.feature_names_in_[0]
        dates = pd.to_datetime(X[column], errors="coerce")
        if getattr(dates.dt, "tz", None) is not None:
            dates = dates.dt.tz_localize(None)
        return pd.DataFrame(
            {f"{column}_{part}": getattr(dates.dt, part).astype(float) for part in self.parts},
            index=X.index,
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Return ``<column>_<part>`` for each part."""
        column = self.feature_names_in_[0]
        return np.asarray([f"{column}_{part}" for part in self.parts], dtype=object)


class ProbabilityMap(BaseEstimator):
    """A monotone map from a model's probability of class 1 to a calibrated one.

    ``sigmoid`` is Platt scaling (a logistic regression on the log-odds: strictly
    increasing, so the ranking and the ROC-AUC are kept); ``isotonic`` is scikit-learn's
    ``IsotonicRegression`` (a step function: more flexible, may tie close scores).

    Args:
        method: ``sigmoid`` or ``isotonic``.
    """

    def __init__(self, method: str = "sigmoid"):
        self.method = method

    def fit(self, proba: np.ndarray, y: np.ndarray) -> ProbabilityMap:
        """Fit the map on predicted probabilities and the true labels.

        Args:
            proba: Predicted probabilities of class 1 (rows the model did not fit on).
            y: 0/1 labels.

        Returns:
            self
        """
        proba = np.asarray(proba, dtype=float)
        if len(np.unique(y)) < 2:  # nothing to learn from one class: keep the probabilities
            self.map_ = None
        elif self.method == "isotonic":
            self.map_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            self.map_.fit(proba, y)
        else:
            self.map_ = LogisticRegression(C=1e6).fit(_log_odds(proba), y)
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Map probabilities of class 1 to calibrated ones.

        Args:
            proba: Predicted probabilities of class 1.

        Returns:
            The calibrated probabilities.
        """
        proba = np.asarray(proba, dtype=float)
        if self.map_ is None:
            return proba
        if self.method == "isotonic":
            return self.map_.predict(proba)
        return self.map_.predict_proba(_log_odds(proba))[:, 1]


def _log_odds(proba: np.ndarray) -> np.ndarray:
    clipped = np.clip(proba, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped)).reshape(-1, 1)


class CalibratedModel(BaseEstimator, ClassifierMixin):
    """A fitted classifier whose probabilities go through a fitted :class:`ProbabilityMap`.

    scikit-learn's ``CalibratedClassifierCV`` fits its map on out-of-fold predictions of
    folds that partition the rows (or serves an average of the fold models); here the map
    is fitted on the rolling-origin folds' predictions, which do not cover the earliest
    rows, and applied to the model refitted on every development row. As the last step of
    a pipeline, it makes the served probability the calibrated one.

    Args:
        model: The fitted classifier.
        calibration: The fitted map.
    """

    def __init__(self, model, calibration: ProbabilityMap):
        self.model = model
        self.calibration = calibration

    def fit(self, X, y=None):
        """Refuse to refit: both parts are fitted before they are put together.

        Raises:
            TypeError: Always.
        """
        raise TypeError("CalibratedModel wraps an already fitted model and map; it is not refitted")

    def __sklearn_is_fitted__(self) -> bool:
        return True  # built from fitted parts only (see fit)

    @property
    def classes_(self) -> np.ndarray:
        """The wrapped model's classes."""
        return self.model.classes_

    def predict_proba(self, X) -> np.ndarray:
        """Return calibrated probabilities of both classes.

        Args:
            X: The model's input matrix.

        Returns:
            An ``(n, 2)`` array.
        """
        positive = self.calibration.transform(self.model.predict_proba(X)[:, 1])
        return np.column_stack([1 - positive, positive])

    def predict(self, X) -> np.ndarray:
        """Return the class whose calibrated probability is the larger.

        Args:
            X: The model's input matrix.

        Returns:
            Class labels.
        """
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def base_estimator(pipeline):
    """Return a pipeline's fitted estimator, without its calibration map if it has one.

    Args:
        pipeline: A fitted ``Pipeline`` whose last step is ``model``.

    Returns:
        The estimator (e.g. the ``XGBClassifier``), for SHAP values or coefficients.
    """
    model = pipeline.named_steps["model"]
    return model.model if isinstance(model, CalibratedModel) else model


def _frame(X, columns=None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    return pd.DataFrame(X, columns=None if columns is None else list(columns))


@dataclass(frozen=True)
class CategoricalPlan:
    """How one categorical column is encoded, and why.

    Attributes:
        column: Column name.
        levels: Distinct levels in training (missing counted as a level).
        kept_levels: Levels at or above the rare share (the rest become "Other"), by the
            rule of the pipelines' encoder (:func:`rare_level_encoder`).
        other_share: Share of training rows grouped into "Other".
        encoder: ``"one-hot"`` or ``"target"``.
        reason: One sentence explaining the choice, with the numbers.
    """

    column: str
    levels: int
    kept_levels: list[str]
    other_share: float
    encoder: str
    reason: str


@dataclass(frozen=True)
class EncodingPlan:
    """The preprocessing decided on the training split, for every feature column.

    Attributes:
        date_column: The datetime feature expanded into ``date_parts`` (``None`` when
            feature selection dropped it).
        date_parts: Calendar parts derived from it.
        numeric: Numeric columns (median-imputed, with missing-value indicators).
        categorical: One plan per categorical column.
        rare_share: Threshold under which a level is grouped into "Other".
    """

    date_column: str | None
    date_parts: tuple[str, ...]
    numeric: list[str]
    categorical: list[CategoricalPlan]
    rare_share: float

    @property
    def one_hot_columns(self) -> list[str]:
        """Categorical columns that are grouped then one-hot encoded."""
        return [p.column for p in self.categorical if p.encoder == "one-hot"]

    @property
    def target_columns(self) -> list[str]:
        """High-cardinality categorical columns that are target-encoded."""
        return [p.column for p in self.categorical if p.encoder == "target"]

    @property
    def input_columns(self) -> list[str]:
        """The raw columns a model pipeline takes as input."""
        date = [self.date_column] if self.date_column else []
        return [*date, *[p.column for p in self.categorical], *self.numeric]

    def restrict(self, columns: list[str]) -> EncodingPlan:
        """Return the same plan limited to some input columns (for feature selection).

        Args:
            columns: Input columns to keep.

        Returns:
            A plan whose ``input_columns`` are the kept columns, in the original order.

        Raises:
            KeyError: If a column is not an input column of this plan.
        """
        unknown = set(columns) - set(self.input_columns)
        if unknown:
            raise KeyError(f"columns {sorted(unknown)} are not inputs of this plan")
        keep = set(columns)
        return EncodingPlan(
            date_column=self.date_column if self.date_column in keep else None,
            date_parts=self.date_parts,
            numeric=[c for c in self.numeric if c in keep],
            categorical=[p for p in self.categorical if p.column in keep],
            rare_share=self.rare_share,
        )

    def to_dict(self) -> dict:
        """Return the plan as plain JSON-able data."""
        return asdict(self)


def plan_encoding(train: pd.DataFrame, config) -> EncodingPlan:
    """Decide, from training rows only, how every feature column is encoded.

    The date column is expanded into the configured ``features.date_parts`` that vary in
    training. Low-cardinality columns (at most ``features.one_hot_max_levels`` levels) have their
    levels under ``features.rare_share`` grouped into "Other", then are one-hot encoded:
    few, interpretable columns. Columns with more levels are target-encoded (scikit-learn's
    cross-fitted ``TargetEncoder``) on their raw levels: one-hot would add a column per
    level, and grouping would throw away what distinguishes the many small levels.

    Args:
        train: The training split.
        config: The dataset config (:class:`tabular.config.DatasetConfig`).

    Returns:
        The encoding plan.
    """
    rules = config.features
    plans = []
    for column in config.categorical:
        counts = as_category_text(train[column]).value_counts()
        # scikit-learn's rule (OneHotEncoder's min_frequency): rare below share × rows.
        rare = counts < rules.rare_share * len(train)
        shares = counts / max(len(train), 1)
        kept = sorted(counts.index[~rare])
        other_share = float(shares[rare].sum())
        levels = int(len(shares))
        if levels <= rules.one_hot_max_levels:
            encoder = "one-hot"
            rare = levels - len(kept)
            grouping = (
                f"the {rare} level{'s' if rare > 1 else ''} under {rules.rare_share:.0%} of rows "
                f"({other_share:.1%} of rows) become '{OTHER}'"
                if rare
                else f"every level has at least {rules.rare_share:.0%} of rows, so none is grouped"
            )
            reason = (
                f"{levels} levels (at most {rules.one_hot_max_levels}): {grouping}, leaving "
                f"{len(kept) + (rare > 0)} one-hot columns"
            )
        else:
            encoder = "target"
            reason = (
                f"{levels} levels (more than {rules.one_hot_max_levels}): one-hot would add "
                f"{levels} sparse columns and grouping would merge {other_share:.1%} of rows "
                f"into '{OTHER}', so each level is replaced by its cross-fitted, smoothed rate of "
                f"'{config.target.name}' (target encoding)"
            )
        plans.append(
            CategoricalPlan(
                column=column,
                levels=levels,
                kept_levels=[str(level) for level in kept],
                other_share=other_share,
                encoder=encoder,
                reason=reason,
            )
        )
    date_parts = tuple(rules.date_parts)
    if config.date_column is not None:
        # A part that never changes in training (the hour of dates without a time of day)
        # carries nothing: it is not made a feature.
        dates = pd.to_datetime(train[config.date_column], errors="coerce")
        date_parts = tuple(part for part in date_parts if getattr(dates.dt, part).nunique() > 1)
    return EncodingPlan(
        date_column=config.date_column if date_parts else None,
        date_parts=date_parts,
        numeric=list(config.numeric_features),
        categorical=plans,
        rare_share=rules.rare_share,
    )


_ENCODING_LOCK = threading.Lock()


def _glibc(name: str) -> Callable[..., int]:
    """A function of glibc (``malloc_trim``, ``mallopt``), or one returning 0 without glibc."""
    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):  # not Linux with glibc (macOS, musl)
        return lambda *args: 0


_TRIM = _glibc("malloc_trim")
_MALLOPT = _glibc("mallopt")
#: ``mallopt``'s parameters: the size from which an allocation is its own mapping, and the
#: free memory at the top of a heap from which the heap is given back.
_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1
#: Rows from which a run gives every freed large array straight back to the system.
LARGE_ROWS = 500_000
#: The size from which an allocation is its own mapping, for runs of ``LARGE_ROWS`` rows.
LARGE_ARRAY_BYTES = 4 * 2**20
#: The free memory a heap keeps at its top, for runs of ``LARGE_ROWS`` rows.
HEAP_TOP_BYTES = 32 * 2**20


def free_large_arrays_at_once(rows: int) -> bool:
    """From :data:`LARGE_ROWS` rows, make every array of 4 MB or more a mapping of its own.

    Glibc serves an allocation from its own memory mapping, which ``free`` gives back to
    the system at once, only above a threshold that it raises up to 32 MB as mapped
    blocks are freed; below it, freed arrays stay in the process's heaps and count in its
    resident memory while other steps allocate theirs. Fixing the threshold at 4 MB (a
    column of 500,000 64-bit values) keeps the resident memory close to what the steps
    hold. Fixing it also fixes the heaps' trim threshold at its 128 kB default, so that
    small allocations would shrink and grow the heaps all the time: it is set to 32 MB.
    Fresh mappings cost system calls and page faults: on the default data (about 330,000
    rows) two runs with the mapping threshold took 3 and 12 % longer than two without, so
    smaller runs keep glibc's default. At 1,000,000 rows see the README's scale section.

    Args:
        rows: The run's rows.

    Returns:
        Whether the threshold was set (only with glibc, from ``LARGE_ROWS`` rows).
    """
    if rows < LARGE_ROWS:
        return False
    mapped = _MALLOPT(_M_MMAP_THRESHOLD, LARGE_ARRAY_BYTES)
    return bool(mapped and _MALLOPT(_M_TRIM_THRESHOLD, HEAP_TOP_BYTES))


#: Rows from which an encoding first gives back the memory other threads freed.
TRIM_ROWS = 300_000


@contextmanager
def one_encoding(rows: int):
    """Encode rows for a fit (take them, fit the preprocessing, make the matrix) alone.

    An encoding holds its input columns, each block's output and the stacked matrix at
    once: for XGBoost's refit on 726,474 rows, about 0.8 GB above its 0.24 GB result
    (1.0 GB before the imputer's medians were taken a column at a time and the trees'
    blocks made 32-bit floats: see :func:`build_preprocessor`). The families' searches and
    refits and the EDA run side by side in threads; they encode one at a time, so those
    peaks never add up. Encoding is mostly single-threaded pandas and numpy work, so the
    waits cost little time.

    From :data:`TRIM_ROWS` rows on, the memory other threads freed is first given back to
    the system (glibc's ``malloc_trim``): glibc keeps freed memory in per-thread arenas, so
    a process with many threads holds what they once held on top of the encoding's peak.
    At 1,000,000 CSV rows the run's own peak went from 3.28 to 2.92 GB with a trim around
    every encoding; below that size trims are not worth it (the pages are touched again:
    the default run took 178 s with a trim around every encoding, 156 s without).

    Args:
        rows: How many rows the encoding takes (their input columns are copied).
    """
    with _ENCODING_LOCK:
        if rows >= TRIM_ROWS:
            _TRIM(0)
        yield


def columns_view(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Some of a frame's columns as a frame that shares their memory: for reading only.

    ``frame[columns]`` copies them (0.22 GB for the inputs of XGBoost's refit on 726,474
    rows), and an encoding holds that copy while scikit-learn's ``ColumnTransformer`` takes
    each block's columns from it (copies again) and fits. A change through the view would
    change ``frame``: it is only given to the preprocessing, which never writes to its input.

    Args:
        frame: The rows.
        columns: The columns wanted, in their order.

    Returns:
        A frame of those columns over ``frame``'s arrays, with its index.
    """
    return pd.DataFrame({column: frame[column] for column in columns}, copy=False)


def as_float32(X) -> np.ndarray:
    """Return a block's output as 32-bit floats (the trees' encoding: see ``build_preprocessor``).

    A value beyond the 32-bit range becomes an infinity, as XGBoost reads it from a 64-bit
    matrix, without numpy's overflow warning (a request may hold such a value).
    """
    with np.errstate(over="ignore"):
        return np.asarray(X, dtype=np.float32)


def build_preprocessor(
    plan: EncodingPlan, scale: bool, seed: int = 0, float32: bool = False
) -> ColumnTransformer:
    """Build the scikit-learn preprocessing for a plan.

    Medians are computed a column at a time (``SimpleImputer`` with ``np.median`` as its
    strategy): the same statistics as ``strategy="median"``, which sorts a masked copy of
    the whole block at once. On the 31 numeric columns of XGBoost's refit on 726,474 rows,
    the block's peak went from 0.76 to 0.58 GB above what was resident (for a 0.30 GB
    output), and the whole encoding took 4.9 s instead of 7.6 s.

    Args:
        plan: The plan from :func:`plan_encoding`.
        scale: Standardise numeric outputs (for linear models and neural networks; trees
            do not need it).
        seed: Seed of the target encoder's cross-fitting folds.
        float32: End every block with a cast to 32-bit floats, so that the stacked matrix
            is one from the start. For XGBoost, which reads every input as a 32-bit float
            whatever the array's type: the same values it reads from the 64-bit matrix,
            without that matrix and its copy (at 726,474 rows the stacking held every
            block's output and the 0.47 GB matrix at once, then its 32-bit copy).

    Returns:
        An unfitted ``ColumnTransformer`` taking the raw input columns and returning a
        dense float matrix with named output columns.
    """

    def maybe_scaled(*steps):
        steps = list(steps) + ([("scale", StandardScaler())] if scale else [])
        return finished(steps)

    def finished(steps):
        if float32:
            steps = [
                *steps,
                ("float32", FunctionTransformer(as_float32, feature_names_out="one-to-one")),
            ]
        return Pipeline(steps)

    transformers = []
    if plan.date_column:
        transformers.append(
            (
                "date",
                maybe_scaled(
                    ("parts", DateParts(parts=plan.date_parts)),
                    ("impute", SimpleImputer(strategy=np.median)),
                ),
                [plan.date_column],
            )
        )
    if plan.numeric:
        transformers.append(
            (
                "num",
                maybe_scaled(
                    ("impute", SimpleImputer(strategy=np.median, add_indicator=True)),
                ),
                plan.numeric,
            )
        )
    if plan.one_hot_columns:
        transformers.append(
            (
                "onehot",
                Pipeline(
                    [
                        ("text", CategoryText()),
                        ("encode", rare_level_encoder(plan.rare_share)),
                    ]
                ),  # already 32-bit floats
                plan.one_hot_columns,
            )
        )
    if plan.target_columns:
        transformers.append(
            (
                "target",
                maybe_scaled(
                    ("text", CategoryText()),
                    (
                        "encode",
                        TargetEncoder(
                            target_type="binary",
                            cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=seed),
                        ),
                    ),
                ),
                plan.target_columns,
            )
        )
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def source_column(encoded_name: str, plan: EncodingPlan) -> str:
    """Map an encoded feature name back to the original column it came from.

    ``onehot__carrier_UA`` → ``carrier``; ``num__missingindicator_temp`` → ``temp``;
    ``date__sched_dep_hour`` → ``sched_dep``.

    Args:
        encoded_name: A name from ``ColumnTransformer.get_feature_names_out()``.
        plan: The plan the preprocessor was built from.

    Returns:
        The original column name.

    Raises:
        KeyError: If the name matches no column of the plan.
    """
    block, _, rest = encoded_name.partition("__")
    if block == "date":
        return plan.date_column
    if block == "num":
        rest = rest.removeprefix("missingindicator_")
        if rest in plan.numeric:
            return rest
    if block in ("onehot", "target"):
        # One-hot names are "<column>_<level>": match the longest column name that fits.
        candidates = plan.one_hot_columns if block == "onehot" else plan.target_columns
        for column in sorted(candidates, key=len, reverse=True):
            if rest == column or rest.startswith(f"{column}_"):
                return column
    raise KeyError(f"encoded feature '{encoded_name}' matches no column of the plan")
