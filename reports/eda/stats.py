"""The numbers behind every EDA chart, computed from the training split only.

Plain pandas/numpy/scipy: a frame and column names in, a small dataclass or frame out.
Counts, shares, skewness, outlier counts and correlations use every training row; only
the density curves and the normal-fit distance use a fixed-seed sample, for speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.cbook import boxplot_stats
from scipy import stats as scipy_stats
from sklearn.compose import ColumnTransformer

from reports.eda.fmt import short
from tabular.features import (
    MISSING,
    OTHER,
    EncodingPlan,
    as_category_text,
    build_preprocessor,
    columns_view,
    kept_levels,
    one_encoding,
    rare_levels_kept,
    source_column,
)

#: Above this many levels a bar chart of every level is unreadable: a top-N chart follows.
MAX_READABLE_LEVELS = 30
#: Levels shown in the filtered (top-N) category chart.
TOP_LEVELS = 20
#: Numeric columns with at most this many distinct values are treated as discrete.
MAX_DISCRETE_VALUES = 10
#: Largest Kolmogorov-Smirnov distance to the fitted normal still called "close to Gaussian".
MAX_NORMAL_KS = 0.05
#: Excess kurtosis from which a histogram is drawn on a log density axis.
LOG_KURTOSIS = 20
#: A period bucket with fewer rows than this has too noisy a rate to be compared.
MIN_PERIOD_ROWS = 30

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def sample_values(values: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Draw a reproducible sample without replacement (all values when there are few).

    Args:
        values: One-dimensional array.
        size: Largest sample size.
        seed: Random seed.

    Returns:
        The sample (the input itself when it is not larger than ``size``).
    """
    if len(values) <= size:
        return values
    return np.random.default_rng(seed).choice(values, size=size, replace=False)


# --- 1. target balance -----------------------------------------------------------------


@dataclass(frozen=True)
class ClassBalance:
    """Counts of the two target classes in the training split.

    Attributes:
        target: Name of the 0/1 target column.
        labels: Human names of class 0 and class 1.
        negatives: Rows of class 0.
        positives: Rows of class 1.
    """

    target: str
    labels: tuple[str, str]
    negatives: int
    positives: int

    @property
    def rows(self) -> int:
        """Rows of both classes."""
        return self.negatives + self.positives

    @property
    def positive_share(self) -> float:
        """Share of rows in class 1."""
        return self.positives / self.rows if self.rows else float("nan")

    @property
    def minority_share(self) -> float:
        """Share of rows in the smaller class."""
        return min(self.positives, self.negatives) / self.rows if self.rows else float("nan")

    @property
    def majority_label(self) -> str:
        """Name of the larger class."""
        return self.labels[0] if self.negatives >= self.positives else self.labels[1]

    @property
    def minority_label(self) -> str:
        """Name of the smaller class."""
        return self.labels[1] if self.negatives >= self.positives else self.labels[0]

    @property
    def ratio(self) -> float:
        """Rows of the larger class per row of the smaller one."""
        small = min(self.positives, self.negatives)
        return max(self.positives, self.negatives) / small if small else float("inf")

    @property
    def positive_weight(self) -> float:
        """Weight that balances class 1 against class 0: ``negatives / positives``."""
        return self.negatives / self.positives if self.positives else float("inf")

    def table(self) -> pd.DataFrame:
        """Return one row per class: value, label, rows, share."""
        return pd.DataFrame(
            {
                "class": [0, 1],
                "label": list(self.labels),
                "rows": [self.negatives, self.positives],
                "share": [self.negatives / self.rows, self.positives / self.rows],
            }
        )


def class_balance(train: pd.DataFrame, config) -> ClassBalance:
    """Count the rows of each target class.

    Args:
        train: The training split (with the derived 0/1 target).
        config: The dataset config.

    Returns:
        The class counts.
    """
    target = train[config.target.name]
    positives = int((target == 1).sum())
    return ClassBalance(
        target=config.target.name,
        labels=tuple(config.target.labels),
        negatives=int(len(target) - positives),
        positives=positives,
    )


# --- 2. numeric distributions -------------------------------------------------------------


@dataclass(frozen=True)
class NumericShape:
    """Shape of one numeric column's distribution.

    Attributes:
        column: Column name.
        count: Non-missing values.
        missing: Missing values.
        mean: Mean.
        std: Standard deviation.
        median: Median.
        minimum: Smallest value.
        maximum: Largest value.
        skewness: Sample skewness (0 for a normal; > 0: long right tail).
        kurtosis: Excess kurtosis (0 for a normal; > 0: heavier tails).
        distinct: Distinct values.
        top_value: Most frequent value.
        top_share: Share of non-missing values equal to ``top_value``.
        ks_distance: Largest gap between the data's cumulative distribution and that of the
            fitted normal (Kolmogorov-Smirnov statistic, on the sample).
        shape: One of ``gaussian``, ``skewed``, ``heavy-tailed``, ``flat``, ``not-bell``,
            ``concentrated``, ``discrete``, ``constant``, ``empty``.
        verdict: The shape in a few plain words, e.g. ``strongly right-skewed``.
    """

    column: str
    count: int
    missing: int
    mean: float
    std: float
    median: float
    minimum: float
    maximum: float
    skewness: float
    kurtosis: float
    distinct: int
    top_value: float
    top_share: float
    ks_distance: float
    shape: str
    verdict: str

    @property
    def log_scale(self) -> bool:
        """Whether the histogram needs a log density axis to show its tail.

        One tall bar (a dominant value, or extreme kurtosis) would flatten the tail to
        nothing on a linear axis.
        """
        return self.shape == "concentrated" or self.kurtosis >= LOG_KURTOSIS


def classify_shape(
    skewness: float, kurtosis: float, ks_distance: float, distinct: int, top_share: float
) -> tuple[str, str]:
    """Name a distribution's shape from its moments.

    The thresholds are the usual rules of thumb: |skewness| under 0.5 is symmetric, 0.5-1
    moderately and above 1 strongly skewed; excess kurtosis within ±1 is normal-tailed,
    above 3 heavy-tailed. A column is called close to Gaussian only if it is symmetric,
    normal-tailed *and* its cumulative distribution stays within 0.05 of the fitted normal
    (moments alone miss a distribution with several peaks).

    A KS distance of 0.05 means the normal curve puts up to 5 % of the rows on the wrong
    side of some value: at that point the normal is a poor summary of the column.

    Args:
        skewness: Sample skewness.
        kurtosis: Excess kurtosis.
        ks_distance: Kolmogorov-Smirnov distance to the fitted normal.
        distinct: Number of distinct values.
        top_share: Share of the most frequent value.

    Returns:
        ``(shape, verdict)``: a category key and a few plain words.
    """
    if distinct == 0:
        return "empty", "no values"
    if distinct == 1:
        return "constant", "a single value"
    if distinct <= MAX_DISCRETE_VALUES:
        return "discrete", f"discrete ({distinct} values)"
    side = "right" if skewness > 0 else "left"
    if top_share >= 0.5:
        return "concentrated", f"concentrated on one value, {side}-skewed"
    if abs(skewness) >= 0.5:
        strength = "strongly" if abs(skewness) >= 1 else "moderately"
        tails = ", heavy-tailed" if kurtosis >= 3 else ""
        return "skewed", f"{strength} {side}-skewed{tails}"
    if kurtosis >= 1:
        return "heavy-tailed", "symmetric, heavier tails than a normal"
    if kurtosis <= -1:
        return "flat", "symmetric, flatter than a normal"
    if ks_distance >= MAX_NORMAL_KS:
        return "not-bell", "symmetric but not bell-shaped"
    return "gaussian", "close to Gaussian"


def normal_distance(values: np.ndarray, sample_size: int, seed: int) -> float:
    """Kolmogorov-Smirnov distance between a column and the normal with its mean and sd.

    Whole-number columns are spread uniformly within ±0.5 of each value first: a step
    cumulative curve compared with a smooth one would otherwise look far from normal just
    because the values are rounded (an hour, a count of departures).

    Args:
        values: Non-missing values (at least two distinct).
        sample_size: Rows compared (a fixed-seed sample of them).
        seed: Sampling seed.

    Returns:
        The largest gap between the two cumulative curves, between 0 and 1.
    """
    sample = sample_values(values, sample_size, seed)
    variance = float(values.var(ddof=1))
    if np.all(np.mod(values, 1) == 0):
        rng = np.random.default_rng(seed)
        sample = sample + rng.uniform(-0.5, 0.5, size=len(sample))
        variance += 1 / 12  # the variance of the added uniform spread
    test = scipy_stats.kstest(sample, "norm", args=(float(values.mean()), variance**0.5))
    return float(test.statistic)


def numeric_shapes(
    train: pd.DataFrame, columns: list[str], sample_size: int, seed: int
) -> list[NumericShape]:
    """Describe the distribution of each numeric column.

    Args:
        train: The training split.
        columns: Numeric columns.
        sample_size: Rows used for the normal-fit distance (moments use every row).
        seed: Sampling seed.

    Returns:
        One :class:`NumericShape` per column, in the given order.
    """
    shapes = []
    for column in columns:
        series = pd.to_numeric(train[column], errors="coerce").astype(float)
        values = series.dropna().to_numpy()
        missing = int(series.isna().sum())
        if len(values) == 0:
            nan = float("nan")
            shape, verdict = classify_shape(nan, nan, nan, 0, nan)
            shapes.append(
                NumericShape(column, 0, missing, *[nan] * 7, 0, nan, nan, nan, shape, verdict)
            )
            continue
        counts = pd.Series(values).value_counts()
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        spread = len(values) > 2 and std > 0
        skewness = float(pd.Series(values).skew()) if spread else 0.0
        kurtosis = float(pd.Series(values).kurt()) if len(values) > 3 and std > 0 else 0.0
        ks = normal_distance(values, sample_size, seed) if spread else float("nan")
        top_share = float(counts.iloc[0] / len(values))
        shape, verdict = classify_shape(skewness, kurtosis, ks, int(len(counts)), top_share)
        shapes.append(
            NumericShape(
                column=column,
                count=int(len(values)),
                missing=missing,
                mean=float(values.mean()),
                std=std,
                median=float(np.median(values)),
                minimum=float(values.min()),
                maximum=float(values.max()),
                skewness=skewness,
                kurtosis=kurtosis,
                distinct=int(len(counts)),
                top_value=float(counts.index[0]),
                top_share=top_share,
                ks_distance=ks,
                shape=shape,
                verdict=verdict,
            )
        )
    return shapes


# --- 3-4. category frequencies and rare-level grouping --------------------------------------


def category_counts(train: pd.DataFrame, column: str) -> pd.Series:
    """Count the rows of each level of a categorical column, largest first.

    Missing values count as the level "Missing", exactly as the model pipeline sees them.

    Args:
        train: The training split.
        column: Categorical column.

    Returns:
        Row counts indexed by level (text).
    """
    counts = as_category_text(train[column]).value_counts()
    # Ties are broken by name so the chart order does not depend on hashing.
    frame = counts.rename("rows").reset_index()
    frame.columns = ["level", "rows"]
    frame = frame.sort_values(["rows", "level"], ascending=[False, True], kind="stable")
    return pd.Series(frame["rows"].to_numpy(), index=frame["level"].to_numpy(), name=column)


@dataclass(frozen=True)
class RareGrouping:
    """A categorical column before and after its rare levels are grouped into "Other".

    Attributes:
        column: Column name.
        encoder: The plan's encoder for the column (``one-hot`` or ``target``).
        rare_share: The grouping threshold.
        before: Rows per level in the training split.
        after: Rows per level after the pipelines' rare-level grouping
            (:func:`tabular.features.rare_level_encoder`).
        grouped_levels: Levels merged into "Other", largest first.
    """

    column: str
    encoder: str
    rare_share: float
    before: pd.Series
    after: pd.Series
    grouped_levels: list[str]

    @property
    def other_share(self) -> float:
        """Share of training rows in the grouped levels."""
        return float(self.before[self.grouped_levels].sum() / self.before.sum())

    @property
    def applied(self) -> bool:
        """True when training groups this column (one-hot columns with rare levels)."""
        return self.encoder == "one-hot" and bool(self.grouped_levels)


def rare_grouping(train: pd.DataFrame, plan: EncodingPlan) -> list[RareGrouping]:
    """Apply the training pipeline's own rare-level encoder to each categorical column.

    The "after" counts come from :func:`tabular.features.rare_level_encoder` (scikit-learn's
    ``OneHotEncoder(min_frequency=...)``) fitted on the training split, the encoder the model
    pipelines contain, so the EDA shows the grouping training and serving apply, not a
    re-implementation of it.

    Args:
        train: The training split.
        plan: The encoding plan made on the same rows.

    Returns:
        One :class:`RareGrouping` per categorical column of the plan.
    """
    groupings = []
    for column_plan in plan.categorical:
        column = column_plan.column
        kept = set(rare_levels_kept(train[column], plan.rare_share))
        text = as_category_text(train[column])
        after = text.where(text.isin(kept), OTHER).value_counts()
        after = after.reindex(
            sorted(after.index, key=lambda level: (level == OTHER, -after[level], level))
        )
        before = category_counts(train, column)
        groupings.append(
            RareGrouping(
                column=column,
                encoder=column_plan.encoder,
                rare_share=plan.rare_share,
                before=before,
                after=after.rename(column),
                grouped_levels=[level for level in before.index if level not in kept],
            )
        )
    return groupings


# --- 5-6. missing values and encoding ------------------------------------------------------


def fit_preprocessor(
    train: pd.DataFrame, plan: EncodingPlan, target: str, seed: int
) -> ColumnTransformer:
    """Fit the training stage's preprocessing on the training split.

    Args:
        train: The training split.
        plan: The encoding plan.
        target: Name of the 0/1 target column (the target encoder needs it).
        seed: Seed of the target encoder's folds.

    Returns:
        The fitted ``ColumnTransformer`` from :func:`tabular.features.build_preprocessor`.
    """
    preprocessor = build_preprocessor(plan, scale=True, seed=seed)
    with one_encoding(len(train)):  # not alongside the training's encodings
        return preprocessor.fit(columns_view(train, plan.input_columns), train[target])


def missing_summary(
    train: pd.DataFrame, config, plan: EncodingPlan, preprocessor: ColumnTransformer
) -> pd.DataFrame:
    """Count missing values per feature column and say how the fitted pipeline handles them.

    The handling is read from the fitted preprocessor (its medians, which columns got a
    missing-value indicator, whether "Missing" survived the rare-level grouping), so it
    is what training and serving do, not a description of it.

    Args:
        train: The training split.
        config: The dataset config.
        plan: The encoding plan.
        preprocessor: The preprocessor fitted by :func:`fit_preprocessor`.

    Returns:
        One row per feature column: ``column``, ``role``, ``missing``, ``present``,
        ``share``, ``handling``, ``rate_missing`` and ``rate_present`` (target rate among rows where
        the column is missing / present; NaN when either group is empty).
    """
    target = train[config.target.name]
    blocks = preprocessor.named_transformers_
    medians: dict[str, float] = {}
    flagged: set[str] = set()
    if "num" in blocks:
        imputer = blocks["num"].named_steps["impute"]
        medians = dict(zip(plan.numeric, imputer.statistics_, strict=True))
        if imputer.indicator_ is not None:
            flagged = {plan.numeric[i] for i in imputer.indicator_.features_}
    kept_onehot = (
        {
            column: kept_levels(blocks["onehot"].named_steps["encode"], i)
            for i, column in enumerate(plan.one_hot_columns)
        }
        if "onehot" in blocks
        else {}
    )
    roles = [(plan.date_column, "date")] if plan.date_column else []
    roles += [(p.column, "categorical") for p in plan.categorical]
    roles += [(c, "numeric") for c in plan.numeric]
    rows = []
    for column, role in roles:
        missing_mask = train[column].isna()
        missing = int(missing_mask.sum())
        if role == "date":
            parts = ", ".join(plan.date_parts)
            handling = f"split into {parts}; a missing date gets each part's training median"
        elif role == "numeric" and pd.isna(medians[column]):
            # scikit-learn's imputer drops a column it never saw a value of.
            handling = "no value in training: the column is left out, only its 'was missing' "
            handling += "column remains" if column in flagged else "column would remain"
        elif role == "numeric":
            handling = f"replaced by the training median ({short(medians[column])})"
            if column in flagged:
                handling += " + a 0/1 'was missing' column"
            else:
                handling += "; no 'was missing' column (none missing in training)"
        elif column in kept_onehot:
            if MISSING in kept_onehot[column]:
                handling = f"'{MISSING}' is a level of its own, with its own one-hot column"
            else:
                handling = (
                    f"'{MISSING}' is a level; under {plan.rare_share:.0%} of rows, "
                    f"it is grouped into '{OTHER}'"
                )
        else:
            handling = f"'{MISSING}' is a level of its own, target-encoded like the others"
        rows.append(
            {
                "column": column,
                "role": role,
                "missing": missing,
                "present": len(train) - missing,
                "share": missing / len(train) if len(train) else float("nan"),
                "handling": handling,
                "rate_missing": float(target[missing_mask].mean()) if missing else float("nan"),
                "rate_present": float(target[~missing_mask].mean())
                if missing < len(train)
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class EncodingSummary:
    """What the fitted preprocessing turns the input columns into.

    Attributes:
        columns: One row per categorical column: ``column``, ``levels``, ``encoder``,
            ``kept_levels``, ``other_share``, ``model_columns``, ``reason``.
        blocks: Model input columns per kind (date parts, numeric, missing indicators,
            one-hot, target-encoded).
        feature_names: Every model input column, as the preprocessor names them.
        input_columns: Raw columns the preprocessor takes.
    """

    columns: pd.DataFrame
    blocks: dict[str, int]
    feature_names: list[str]
    input_columns: list[str]

    @property
    def total(self) -> int:
        """Number of model input columns."""
        return len(self.feature_names)


def encoding_summary(plan: EncodingPlan, preprocessor: ColumnTransformer) -> EncodingSummary:
    """Summarise the plan and the feature count of the fitted preprocessor.

    Args:
        plan: The encoding plan.
        preprocessor: The preprocessor fitted by :func:`fit_preprocessor`.

    Returns:
        The summary.
    """
    names = [str(name) for name in preprocessor.get_feature_names_out()]
    per_source = pd.Series([source_column(name, plan) for name in names]).value_counts()
    blocks = {
        "date parts": sum(name.startswith("date__") for name in names),
        "numeric": sum(
            name.startswith("num__") and "missingindicator_" not in name for name in names
        ),
        "missing indicators": sum("__missingindicator_" in name for name in names),
        "one-hot": sum(name.startswith("onehot__") for name in names),
        "target-encoded": sum(name.startswith("target__") for name in names),
    }
    rows = [
        {
            "column": p.column,
            "levels": p.levels,
            "encoder": p.encoder,
            "kept_levels": len(p.kept_levels),
            "other_share": p.other_share,
            "model_columns": int(per_source.get(p.column, 0)),
            "reason": p.reason,
        }
        for p in plan.categorical
    ]
    columns = pd.DataFrame(
        rows,
        columns=[
            "column",
            "levels",
            "encoder",
            "kept_levels",
            "other_share",
            "model_columns",
            "reason",
        ],
    )
    return EncodingSummary(
        columns=columns, blocks=blocks, feature_names=names, input_columns=plan.input_columns
    )


# --- 7. outliers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutlierStats:
    """Box-plot numbers of one numeric column and its outliers by the 1.5 IQR rule.

    The numbers are matplotlib's own (``matplotlib.cbook.boxplot_stats``), the ones
    ``Axes.bxp`` draws, so the table, the comments and the chart cannot disagree.

    Attributes:
        column: Column name.
        count: Non-missing values.
        std: Standard deviation (for standardising).
        box: The ``boxplot_stats`` dictionary (``q1``, ``med``, ``q3``, ``whislo``,
            ``whishi``, ``mean``, ``iqr``, ``label``), its ``fliers`` reduced to the distinct
            outlying values (enough to draw them; the counts are below).
        n_low: Values below the low fence.
        n_high: Values above the high fence.
        minimum: Smallest value.
        maximum: Largest value.
    """

    column: str
    count: int
    std: float
    box: dict
    n_low: int
    n_high: int
    minimum: float
    maximum: float

    @property
    def mean(self) -> float:
        """Mean (for standardising)."""
        return float(self.box["mean"])

    @property
    def q1(self) -> float:
        """First quartile."""
        return float(self.box["q1"])

    @property
    def median(self) -> float:
        """Median."""
        return float(self.box["med"])

    @property
    def q3(self) -> float:
        """Third quartile."""
        return float(self.box["q3"])

    @property
    def iqr(self) -> float:
        """Interquartile range."""
        return float(self.box["iqr"])

    @property
    def low_fence(self) -> float:
        """``q1 - 1.5 * IQR``: values below it are outliers."""
        return float(self.box["q1"] - WHISKER * self.box["iqr"])

    @property
    def high_fence(self) -> float:
        """``q3 + 1.5 * IQR``: values above it are outliers."""
        return float(self.box["q3"] + WHISKER * self.box["iqr"])

    @property
    def outliers(self) -> int:
        """Values outside the fences."""
        return self.n_low + self.n_high

    @property
    def share(self) -> float:
        """Share of non-missing values outside the fences."""
        return self.outliers / self.count if self.count else float("nan")


#: Whisker reach in interquartile ranges (Tukey's rule).
WHISKER = 1.5


def outlier_stats(train: pd.DataFrame, columns: list[str]) -> list[OutlierStats]:
    """Compute box-plot numbers and 1.5 IQR outlier counts on every training row.

    Args:
        train: The training split.
        columns: Numeric columns; a column without values is skipped.

    Returns:
        One :class:`OutlierStats` per column that has values.
    """
    result = []
    for column in columns:
        values = pd.to_numeric(train[column], errors="coerce").dropna().to_numpy(dtype=float)
        if len(values) == 0:
            continue
        (box,) = boxplot_stats(values, whis=WHISKER, labels=[column])
        # The whiskers end on the last values inside the fences, so the fliers beyond the
        # whiskers are exactly the values beyond the fences.
        fliers = box["fliers"]
        box["fliers"] = np.unique(fliers)
        result.append(
            OutlierStats(
                column=column,
                count=int(len(values)),
                std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                box=box,
                n_low=int((fliers < box["whislo"]).sum()),
                n_high=int((fliers > box["whishi"]).sum()),
                minimum=float(values.min()),
                maximum=float(values.max()),
            )
        )
    return result


# --- 8. correlations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Correlations:
    """Pearson correlations of the numeric features and the 0/1 target.

    Attributes:
        matrix: Square correlation matrix; the target is the last row and column.
        pairs: Feature pairs (target excluded) sorted by absolute correlation:
            ``first``, ``second``, ``r``, ``rows`` (rows where both are present).
        with_target: Each feature's correlation with the target, by absolute value.
        target: Name of the target column.
    """

    matrix: pd.DataFrame
    pairs: pd.DataFrame
    with_target: pd.Series
    target: str


def correlations(train: pd.DataFrame, columns: list[str], target: str) -> Correlations:
    """Correlate every pair of numeric features, and each with the 0/1 target.

    With a 0/1 target, Pearson's r is the point-biserial correlation. Pairs use the rows
    where both columns are present.

    Args:
        train: The training split.
        columns: Numeric columns.
        target: Name of the 0/1 target column.

    Returns:
        The correlations.
    """
    frame = train[[*columns, target]].apply(pd.to_numeric, errors="coerce").astype(float)
    matrix = frame.corr(method="pearson")  # pairwise-complete rows, NaN without spread
    present = frame.notna().astype("int64")
    both = present.T @ present  # rows where both columns are present
    pairs = [
        {
            "first": a,
            "second": b,
            "r": float(matrix.loc[a, b]),
            "rows": int(both.loc[a, b]),
        }
        for i, a in enumerate(columns)
        for b in columns[i + 1 :]
        if pd.notna(matrix.loc[a, b])
    ]
    pairs_frame = pd.DataFrame(pairs, columns=["first", "second", "r", "rows"])
    if not pairs_frame.empty:
        order = pairs_frame["r"].abs().sort_values(ascending=False, kind="stable").index
        pairs_frame = pairs_frame.loc[order].reset_index(drop=True)
    with_target = matrix[target].drop(target).dropna()
    with_target = with_target.reindex(
        with_target.abs().sort_values(ascending=False, kind="stable").index
    )
    return Correlations(matrix=matrix, pairs=pairs_frame, with_target=with_target, target=target)


# --- 9. target over time --------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodRates:
    """Target rate per value of one calendar period (month, weekday, hour, ...).

    Attributes:
        period: ``year``, ``month``, ``weekday`` or ``hour``.
        table: One row per value: ``value``, ``label``, ``rows``, ``rate``, ``reliable``
            (at least :data:`MIN_PERIOD_ROWS` rows).
    """

    period: str
    table: pd.DataFrame

    def reliable(self) -> pd.DataFrame:
        """Rows with enough data for their rate to be compared."""
        return self.table[self.table["reliable"]]


def natural_periods(dates: pd.Series) -> list[str]:
    """Pick the calendar periods along which the dates actually vary.

    Args:
        dates: Datetime column.

    Returns:
        Among ``year``, ``month``, ``weekday``, ``hour``: those with at least two distinct
        values in the data.
    """
    dates = dates.dropna()
    periods = []
    for period in ("year", "month", "weekday", "hour"):
        if getattr(dates.dt, period).nunique() >= 2:
            periods.append(period)
    return periods


def rates_by_period(
    train: pd.DataFrame, date_column: str, target: str, periods: list[str]
) -> list[PeriodRates]:
    """Compute the target rate for each value of each calendar period.

    Args:
        train: The training split.
        date_column: Datetime column.
        target: Name of the 0/1 target column.
        periods: Periods from :func:`natural_periods`.

    Returns:
        One :class:`PeriodRates` per period.
    """
    dates = pd.to_datetime(train[date_column], errors="coerce")
    result = []
    for period in periods:
        keys = getattr(dates.dt, period)
        grouped = train[target].groupby(keys).agg(["size", "mean"])
        values = grouped.index.astype(int)
        if period == "month":
            labels = [MONTHS[v - 1] for v in values]
        elif period == "weekday":
            labels = [WEEKDAYS[v] for v in values]
        else:
            labels = [str(v) for v in values]
        table = pd.DataFrame(
            {
                "value": values,
                "label": labels,
                "rows": grouped["size"].to_numpy(dtype=int),
                "rate": grouped["mean"].to_numpy(dtype=float),
            }
        )
        table["reliable"] = table["rows"] >= MIN_PERIOD_ROWS
        result.append(PeriodRates(period=period, table=table))
    return result


@dataclass(frozen=True)
class Timeline:
    """Target rate over the training period, in fixed buckets.

    Attributes:
        freq: Bucket length as a pandas offset alias (``D``, ``W``, ``MS``).
        unit: The bucket length in words (``day``, ``week``, ``month``).
        table: One row per bucket: ``start``, ``rows``, ``rate``.
        first: Earliest date.
        last: Latest date.
    """

    freq: str
    unit: str
    table: pd.DataFrame
    first: pd.Timestamp
    last: pd.Timestamp


#: Bucket lengths tried for the timeline, finest first: (pandas alias, name).
BUCKETS = (("D", "day"), ("W", "week"), ("MS", "month"), ("QS", "quarter"), ("YS", "year"))
#: Most points on the timeline: beyond this the markers merge into a smear.
MAX_BUCKETS = 120


def timeline(train: pd.DataFrame, date_column: str, target: str) -> Timeline:
    """Bucket the target rate by the finest period that still gives a readable, stable line.

    The bucket is the first of day, week, month, quarter, year that gives at most
    :data:`MAX_BUCKETS` points and a median of at least :data:`MIN_PERIOD_ROWS` rows per
    point (a rate over a handful of rows is noise); the year is the fallback.

    Args:
        train: The training split.
        date_column: Datetime column.
        target: Name of the 0/1 target column.

    Returns:
        The timeline (empty table when no date parsed).
    """
    dates = pd.to_datetime(train[date_column], errors="coerce")
    valid = dates.notna()
    if not valid.any():
        empty = pd.DataFrame(columns=["start", "rows", "rate"])
        return Timeline("D", "day", empty, pd.NaT, pd.NaT)
    first, last = dates[valid].min(), dates[valid].max()
    series = train.loc[valid, target].set_axis(dates[valid])
    for bucket in BUCKETS:
        freq = bucket[0]
        if freq == "W":
            # Weeks start on Monday and are labelled by their first day.
            grouped = series.resample("W-MON", label="left", closed="left").agg(["size", "mean"])
        else:
            grouped = series.resample(freq).agg(["size", "mean"])
        grouped = grouped[grouped["size"] > 0]
        if len(grouped) <= MAX_BUCKETS and grouped["size"].median() >= MIN_PERIOD_ROWS:
            break
    unit = bucket[1]
    table = pd.DataFrame(
        {
            "start": grouped.index,
            "rows": grouped["size"].to_numpy(dtype=int),
            "rate": grouped["mean"].to_numpy(dtype=float),
        }
    )
    return Timeline(freq=freq, unit=unit, table=table, first=first, last=last)
