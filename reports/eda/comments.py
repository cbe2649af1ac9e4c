"""The written comment after each EDA chart or table, computed from its numbers.

Every sentence is built from the numbers of the training split (shares, counts, the
strongest correlations, the columns with most outliers): change the data and the text
changes. Comments are plain English for a client, in a tiny Markdown subset the HTML
report understands: paragraphs separated by blank lines, ``- `` bullets and ``**bold**``.
"""

from __future__ import annotations

import pandas as pd

from reports.eda.fmt import count, pct, plural, ratio, short, signed
from reports.eda.stats import (
    MIN_PERIOD_ROWS,
    ClassBalance,
    Correlations,
    EncodingSummary,
    NumericShape,
    OutlierStats,
    PeriodRates,
    RareGrouping,
    Timeline,
)
from tabular.features import MISSING, OTHER

#: Below this minority share the classes are called imbalanced.
IMBALANCED_BELOW = 0.4
#: Below this minority share the imbalance is called severe.
SEVERE_BELOW = 0.1


def listing(items: list[str], limit: int = 6) -> str:
    """Join items as English: ``a, b and c``; more than ``limit`` end with ``and N more``.

    Args:
        items: The items.
        limit: Most items named.

    Returns:
        The text (empty for no items).
    """
    items = list(items)
    if len(items) > limit:
        items = [*items[:limit], f"{len(items) - limit} more"]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


# --- 1. target balance -----------------------------------------------------------------


def balance_comment(balance: ClassBalance) -> str:
    """Comment on the class balance and what it implies for metrics and class weights.

    Args:
        balance: The class counts.

    Returns:
        The comment.
    """
    negative, positive = balance.labels
    lines = [
        f"Of the {count(balance.rows)} training rows, **{count(balance.positives)} "
        f"({pct(balance.positive_share)}) are '{positive}'** and {count(balance.negatives)} "
        f"({pct(1 - balance.positive_share)}) are '{negative}': {balance.ratio:.1f} "
        f"'{balance.majority_label}' rows for every '{balance.minority_label}' row."
    ]
    if balance.minority_share < IMBALANCED_BELOW:
        severity = "severely imbalanced" if balance.minority_share < SEVERE_BELOW else "imbalanced"
        lines.append(
            f"The classes are {severity}, so accuracy is misleading: a model that always "
            f"answers '{balance.majority_label}' would be "
            f"{pct(1 - balance.minority_share)} accurate and never find a "
            f"'{balance.minority_label}' case. Models should be compared on **ROC-AUC** "
            "(how well they rank the two classes; 0.5 is guessing) and **average precision** "
            "(area under the precision-recall curve; guessing scores the "
            f"{pct(balance.positive_share)} positive share), and the decision threshold "
            f"judged by the **precision, recall and F1** of '{positive}', not by accuracy."
        )
        lines.append(
            f"To keep the models from neglecting '{balance.minority_label}', its rows can be "
            f"weighted {balance.ratio:.2f} times as much as the others: scikit-learn's "
            "class_weight='balanced' does this, and for XGBoost the equivalent is "
            f"scale_pos_weight = {count(balance.negatives)} / {count(balance.positives)} = "
            f"**{balance.positive_weight:.2f}**."
        )
        if balance.minority_share < SEVERE_BELOW:
            lines.append(
                f"With only {count(min(balance.positives, balance.negatives))} "
                f"'{balance.minority_label}' rows, splits must be stratified and scores "
                "on small validation sets will vary; average precision is the more telling "
                "metric."
            )
    else:
        lines.append(
            f"The classes are roughly balanced (the smaller one holds "
            f"{pct(balance.minority_share)}), so accuracy is a fair summary next to ROC-AUC "
            "and F1, and no class weighting is needed."
        )
    return "\n\n".join(lines)


# --- 2. numeric distributions -------------------------------------------------------------


def describe_shape(shape: NumericShape) -> str:
    """One sentence on one column's distribution, with its numbers.

    Args:
        shape: The column's moments and verdict.

    Returns:
        The sentence (starts with the column name in bold).
    """
    head = f"**{shape.column}**: "
    moments = f"skewness {signed(shape.skewness)}, excess kurtosis {signed(shape.kurtosis)}"
    side = "right" if shape.skewness > 0 else "left"
    if shape.shape == "empty":
        text = "no values in the training split."
    elif shape.shape == "constant":
        text = f"a single value ({short(shape.top_value)}): it carries no information."
    elif shape.shape == "discrete":
        text = (
            f"only {shape.distinct} distinct values; {pct(shape.top_share)} of rows are "
            f"{short(shape.top_value)} ({moments}), so a bell curve does not apply."
        )
    elif shape.shape == "concentrated":
        text = (
            f"{pct(shape.top_share)} of values equal {short(shape.top_value)}; the rest form a "
            f"long {side} tail up to {short(shape.maximum if side == 'right' else shape.minimum)} "
            f"({moments}): far from Gaussian."
        )
    elif shape.shape == "skewed":
        direction = "above" if shape.mean > shape.median else "below"
        if (direction == "above") == (side == "right") and shape.mean != shape.median:
            tail = (
                f"the long {side} tail pulls the mean ({short(shape.mean)}) {direction} the "
                f"median ({short(shape.median)})"
            )
        else:
            tail = (
                f"the long {side} tail sits beyond a mean ({short(shape.mean)}) close to the "
                f"median ({short(shape.median)})"
            )
        text = f"{shape.verdict} ({moments}); {tail}."
    elif shape.shape == "heavy-tailed":
        text = (
            f"symmetric but with heavier tails than a normal ({moments}): extreme values "
            "are more frequent than a bell curve predicts."
        )
    elif shape.shape == "flat":
        text = (
            f"symmetric but flatter than a normal ({moments}): values spread over a broad "
            "range or form several humps instead of one peak."
        )
    elif shape.shape == "not-bell":
        text = (
            f"symmetric ({moments}) but not bell-shaped: the fitted normal's cumulative "
            f"curve misses the data by up to {pct(shape.ks_distance)} of rows (several "
            "peaks or plateaus)."
        )
    else:
        text = (
            f"close to Gaussian ({moments}); the fitted normal's cumulative curve stays "
            f"within {pct(shape.ks_distance)} of the data's, and the mean "
            f"({short(shape.mean)}) is close to the median ({short(shape.median)})."
        )
    if shape.log_scale:
        text += " Its histogram uses a log density axis so the tail stays visible."
    if shape.missing:
        rows = shape.count + shape.missing
        text += f" {count(shape.missing)} values ({pct(shape.missing / rows)}) are missing."
    return head + text


def distributions_comment(shapes: list[NumericShape]) -> str:
    """Comment on one figure of histograms: a sentence per column.

    Args:
        shapes: The columns the figure shows.

    Returns:
        The comment, one bullet per column.
    """
    return "\n".join(f"- {describe_shape(shape)}" for shape in shapes)


SHAPE_GROUPS = {
    "gaussian": "close to Gaussian",
    "skewed": "skewed",
    "heavy-tailed": "symmetric but heavy-tailed",
    "flat": "symmetric but flatter than a normal",
    "not-bell": "symmetric but not bell-shaped",
    "concentrated": "concentrated on one value",
    "discrete": "discrete (few values)",
    "constant": "constant",
    "empty": "empty",
}


def distributions_summary(
    shapes: list[NumericShape], rows: int, sample_size: int, seed: int
) -> str:
    """Comment after the table of moments: which columns are Gaussian, skewed, heavy-tailed.

    Args:
        shapes: Every numeric column.
        rows: Training rows.
        sample_size: Rows used for the density curves.
        seed: Sampling seed.

    Returns:
        The comment.
    """
    groups: dict[str, list[NumericShape]] = {}
    for shape in shapes:
        groups.setdefault(shape.shape, []).append(shape)
    lines = []
    gaussian = groups.get("gaussian", [])
    lines.append(
        f"Of the {plural(len(shapes), 'numeric column')}, **{len(gaussian)} "
        f"{'looks' if len(gaussian) == 1 else 'look'} close to Gaussian**"
        + (f" ({listing([s.column for s in gaussian])})" if gaussian else "")
        + (
            f"; the other {len(shapes) - len(gaussian)} do not:"
            if len(gaussian) < len(shapes)
            else "."
        )
    )
    bullets = []
    for key, title in SHAPE_GROUPS.items():
        members = groups.get(key, [])
        if key == "gaussian" or not members:
            continue
        if key == "skewed":
            members = sorted(members, key=lambda s: -abs(s.skewness))
            named = [f"{s.column} ({s.verdict}, skewness {signed(s.skewness)})" for s in members]
        elif key in ("heavy-tailed", "flat"):
            named = [f"{s.column} (excess kurtosis {signed(s.kurtosis)})" for s in members]
        elif key in ("concentrated", "discrete"):
            named = [f"{s.column} ({pct(s.top_share)} equal {short(s.top_value)})" for s in members]
        elif key == "not-bell":
            named = [f"{s.column} (off the normal by up to {pct(s.ks_distance)})" for s in members]
        else:
            named = [s.column for s in members]
        bullets.append(f"- {title}: {listing(named, limit=8)}")
    lines.append("\n".join(bullets) if bullets else "- none")
    heavy = [s.column for s in shapes if s.kurtosis >= 3]
    if heavy:
        lines.append(
            f"Tree-based models are indifferent to these shapes. Models that need scaled inputs "
            "(linear models, neural networks) get every numeric column standardised by the "
            "pipeline; standardising does not change a shape, so the long tails of "
            f"{listing(heavy)} remain and their extreme rows weigh heavily in such models."
        )
    else:
        lines.append(
            "Tree-based models are indifferent to these shapes, and no column has tails heavy "
            "enough (excess kurtosis of 3 or more) to dominate the standardised inputs of a "
            "linear model or neural network."
        )
    sampled = (
        f"the density curves on a fixed sample of {count(sample_size)} rows (seed {seed})"
        if rows > sample_size
        else "the density curves on all rows"
    )
    lines.append(
        f"Histograms, skewness and kurtosis use all {count(rows)} training rows; {sampled}."
    )
    return "\n\n".join(lines)


# --- 3. category frequencies ---------------------------------------------------------------


def _top(counts: pd.Series, total: int, n: int = 3) -> str:
    return listing([f"{level} ({pct(rows / total)})" for level, rows in counts.head(n).items()])


def _at_most(share: float) -> str:
    text = pct(share)
    return f"each under {text[1:]}" if text.startswith("<") else f"none more than {text}"


def categories_comment(column: str, counts: pd.Series, rare_share: float) -> str:
    """Comment on a bar chart that names every level.

    Args:
        column: The column.
        counts: Rows per level, largest first.
        rare_share: The grouping threshold.

    Returns:
        The comment.
    """
    total = int(counts.sum())
    top_n = min(3, len(counts))
    rare = counts[counts / total < rare_share]
    text = (
        f"**{column}** has {len(counts)} levels in training. The largest are "
        f"{_top(counts, total)}; the top {top_n} cover {pct(counts.head(top_n).sum() / total)} "
        "of rows."
    )
    if len(rare):
        text += (
            f" {plural(len(rare), 'level')} under {pct(rare_share, 0)} of rows "
            f"({listing(list(rare.index), limit=5)}), {pct(rare.sum() / total)} of rows together."
        )
    else:
        text += f" Every level holds at least {pct(rare_share, 0)} of rows."
    if MISSING in counts.index:
        text += f" {count(counts[MISSING])} rows ({pct(counts[MISSING] / total)}) have no value."
    return text


def ranks_comment(column: str, counts: pd.Series, rare_share: float, top: int) -> str:
    """Comment on the ranked chart of a column with too many levels to name.

    Args:
        column: The column.
        counts: Rows per level, largest first.
        rare_share: The grouping threshold.
        top: Levels named in the filtered chart that follows.

    Returns:
        The comment.
    """
    total = int(counts.sum())
    cumulative = counts.cumsum() / total
    half = int((cumulative < 0.5).sum()) + 1
    rare = counts[counts / total < rare_share]
    return (
        f"**{column}** has {len(counts)} levels: too many to name on one readable chart, so "
        f"this chart ranks them without names and the filtered chart below names the top "
        f"{top}. The distribution is long-tailed: the {half} largest levels cover half of the "
        f"rows and the top {top} cover {pct(cumulative.iloc[min(top, len(counts)) - 1])}, "
        f"while {plural(len(rare), 'level')} ({pct(len(rare) / len(counts), 0)} of them) hold under "
        f"{pct(rare_share, 0)} of rows, {pct(rare.sum() / total)} of rows together. The "
        f"smallest level has {count(counts.iloc[-1])} row{'s' if counts.iloc[-1] != 1 else ''}."
    )


def top_comment(column: str, counts: pd.Series, top: int) -> str:
    """Comment on the filtered (top-N) chart of a high-cardinality column.

    Args:
        column: The column.
        counts: Rows per level, largest first (all levels).
        top: Levels shown.

    Returns:
        The comment.
    """
    total = int(counts.sum())
    shown, hidden = counts.head(top), counts.iloc[top:]
    return (
        f"The {len(shown)} most frequent **{column}** levels hold "
        f"{pct(shown.sum() / total)} of rows, led by {_top(counts, total)}. The "
        f"{plural(len(hidden), 'level')} not shown hold the remaining {pct(hidden.sum() / total)}, "
        f"{_at_most(hidden.iloc[0] / total) if len(hidden) else 'none at all'}."
    )


# --- 4. rare-category grouping --------------------------------------------------------------


def grouping_comment(grouping: RareGrouping, max_slices: int) -> str:
    """Comment on the before/after pies of one grouped column.

    Args:
        grouping: The column before and after grouping.
        max_slices: Slices the "before" pie draws before merging the smallest for display.

    Returns:
        The comment.
    """
    before, after = grouping.before, grouping.after
    grouped = grouping.grouped_levels
    rank = list(after.sort_values(ascending=False, kind="stable").index).index(OTHER) + 1
    kept = len(after) - 1
    change = (
        f"now has {len(after)} levels (one one-hot column each) instead of {len(before)}"
        if len(after) < len(before)
        else f"keeps {len(after)} levels: '{OTHER}' replaces {grouped[0]} and will also take "
        "any level never seen in training"
    )
    text = (
        f"**{grouping.column}**: {plural(len(grouped), 'level')} under "
        f"{pct(grouping.rare_share, 0)} of training rows ({listing(grouped, limit=8)}), "
        f"{plural(int(before[grouped].sum()), 'row')} ({pct(grouping.other_share)}) in all, "
        f"{'becomes' if len(grouped) == 1 else 'become one'} '{OTHER}'. {plural(kept, 'level')} "
        f"{'stays' if kept == 1 else 'stay'} as {'it is' if kept == 1 else 'they are'}, so the "
        f"column {change}. '{OTHER}' is the {_ordinal(rank)} largest level."
    )
    if len(before) > max_slices:
        text += (
            f" The 'before' pie names the {max_slices - 1} largest levels and merges the "
            f"{len(before) - max_slices + 1} smallest into one hatched slice for display only."
        )
    return text


def grouping_summary(groupings: list[RareGrouping], rows: int) -> str:
    """Comment after the grouping table: what was grouped, what was not, and why.

    Args:
        groupings: Every categorical column.
        rows: Training rows.

    Returns:
        The comment.
    """
    applied = [g for g in groupings if g.applied]
    untouched = [g for g in groupings if g.encoder == "one-hot" and not g.grouped_levels]
    target = [g for g in groupings if g.encoder == "target"]
    lines = []
    if applied:
        lines.append(
            f"Grouping applies to {listing([g.column for g in applied])}: "
            + listing(
                [f"{g.column} {len(g.before)} → {len(g.after)} levels" for g in applied], limit=10
            )
            + "."
        )
    else:
        lines.append("No one-hot encoded column has a level rare enough to group.")
    bullets = []
    for g in untouched:
        bullets.append(
            f"- {g.column}: all {len(g.before)} levels hold at least "
            f"{pct(g.rare_share, 0)} of rows; nothing to group."
        )
    for g in target:
        bullets.append(
            f"- {g.column}: {len(g.before)} levels, target-encoded rather than grouped: "
            f"grouping would merge {plural(len(g.grouped_levels), 'level')} and "
            f"{pct(g.other_share)} of rows into '{OTHER}', losing what tells them apart."
        )
    if bullets:
        lines.append("\n".join(bullets))
    lines.append(
        f"The kept levels were learned once, on the {count(rows)} training rows, by the "
        "same encoder that sits inside every model pipeline (scikit-learn's OneHotEncoder "
        "with min_frequency, whose one column for the rare levels is the "
        f"'{OTHER}' column); serving applies that fitted encoder unchanged, and a level never "
        f"seen in training also becomes '{OTHER}'."
    )
    return "\n\n".join(lines)


def _interval(low: float | None, high: float | None) -> str:
    low_text = "-∞" if low is None else short(low)
    high_text = "∞" if high is None else short(high)
    return f"[{low_text}, {high_text}]"


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- 5. missing values ---------------------------------------------------------------------


def marker_text(found: dict[str, int]) -> str:
    """Say how a column's missing values were written in the file: ``'NULL' (363 cells)``.

    Args:
        found: Cells per marker text for one column.

    Returns:
        The markers, most frequent first (``empty cell`` for ``""``); ``"-"`` when none.
    """
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    return (
        ", ".join(
            f"{repr(marker) if marker else 'empty cell'} ({plural(n, 'cell')})"
            for marker, n in ranked
        )
        or "-"
    )


def missing_comment(
    table: pd.DataFrame,
    positive_label: str,
    dropped: dict[str, int],
    target_column: str,
    markers: dict[str, dict[str, int]] | None = None,
    configured: tuple[str, ...] = (),
) -> str:
    """Comment on the missing-value chart: how much is missing, where, and does it matter.

    Args:
        table: From :func:`reports.eda.stats.missing_summary`.
        positive_label: Name of class 1.
        dropped: Rows dropped before the split, per reason (``"missing <column>"``).
        target_column: The column the target is derived from.
        markers: Per column, the cells of the whole file that held each missing-value
            marker (counted before cleaning and splitting).
        configured: The config's ``missing_markers``.

    Returns:
        The comment.
    """
    gaps = table[table["missing"] > 0].sort_values("share", ascending=False, kind="stable")
    complete = table[table["missing"] == 0]["column"].tolist()
    lines = []
    if gaps.empty:
        lines.append(f"None of the {len(table)} feature columns has a missing value in training.")
    else:
        worst = listing(
            [
                f"{c} {pct(s)} ({count(n)} rows)"
                for c, s, n in zip(gaps["column"], gaps["share"], gaps["missing"], strict=True)
            ],
            limit=5,
        )
        lines.append(
            f"{len(gaps)} of the {len(table)} feature columns "
            f"{'has' if len(gaps) == 1 else 'have'} missing values in "
            f"training; the most incomplete are {worst}. The other {len(complete)} columns "
            "are complete."
        )
        # Compare rates only where both groups are big enough for the rate to mean much.
        compared = gaps[(gaps["missing"] >= MIN_PERIOD_ROWS) & (gaps["present"] >= MIN_PERIOD_ROWS)]
        compared = compared.assign(gap=(compared["rate_missing"] - compared["rate_present"]).abs())
        compared = compared.sort_values("gap", ascending=False, kind="stable").head(3)
        if not compared.empty:
            first, *others = list(compared.itertuples())
            text = (
                "Whether a value is missing can itself be informative: rows without "
                f"{first.column} are '{positive_label}' {pct(first.rate_missing)} of the time, "
                f"against {pct(first.rate_present)} for rows that have it"
            )
            if others:
                text += "; " + "; ".join(
                    f"{row.column}: {pct(row.rate_missing)} against {pct(row.rate_present)}"
                    for row in others
                )
            lines.append(text + ". The 'was missing' columns let the models use this.")
    written = {column: found for column, found in (markers or {}).items() if found}
    if written:
        shown = listing(
            [f"{column} as {marker_text(found)}" for column, found in written.items()], 8
        )
        accepted = listing([repr(m) if m else "empty cells" for m in configured], 12)
        lines.append(
            f"The file marks its missing values this way: {shown} (counted in the whole file, "
            f"before cleaning and the split). The config's missing_markers ({accepted}) are "
            "read as missing, so these cells count as gaps above instead of as values."
        )
    for reason, n in dropped.items():
        column = reason.removeprefix("missing ")
        why = (
            f"'{column}' is what the target is derived from, so these rows have no label"
            if column == target_column
            else "the config lists this column under drop_rows_missing"
        )
        lines.append(f"Before the split, {count(n)} rows with no '{column}' were dropped: {why}.")
    return "\n\n".join(lines)


def handling_comment(table: pd.DataFrame, rare_share: float) -> str:
    """Comment on the handling table, read back from the fitted pipeline.

    Args:
        table: From :func:`reports.eda.stats.missing_summary`.
        rare_share: The grouping threshold.

    Returns:
        The comment.
    """
    numeric = table[(table["role"] == "numeric") & (table["missing"] > 0)]
    categorical = table[(table["role"] == "categorical") & (table["missing"] > 0)]
    lines = ["No feature column and no training row is dropped for missing values:"]
    bullets = []
    if not numeric.empty:
        worst = numeric.sort_values("share", ascending=False).iloc[0]
        bullets.append(
            f"- {plural(len(numeric), 'numeric column')} with gaps "
            f"({listing(numeric['column'].tolist())}) "
            f"{'gets' if len(numeric) == 1 else 'get'} the training median in place of the gap "
            "plus a 0/1 'was missing' column, so "
            f"the model still knows the value was absent; this keeps even {worst['column']} "
            f"({pct(worst['share'])} missing) usable."
        )
    if not categorical.empty:
        kept = categorical[categorical["share"] >= rare_share]["column"].tolist()
        small = categorical[categorical["share"] < rare_share]["column"].tolist()
        text = (
            f"- {plural(len(categorical), 'categorical column')} with gaps "
            f"({listing(categorical['column'].tolist())}) "
            f"{'treats' if len(categorical) == 1 else 'treat'} '{MISSING}' as a level"
        )
        if kept:
            text += f"; it is frequent enough to stay a level of its own in {listing(kept)}"
        if small:
            text += f"; under {pct(rare_share, 0)} of rows in {listing(small)}"
        bullets.append(text + ".")
    if not bullets:
        bullets.append(
            "- no feature has gaps in training; the table shows what would happen to a gap "
            "at prediction time."
        )
    lines.append("\n".join(bullets))
    lines.append(
        "The table is read back from the preprocessing fitted on the training split (its "
        "medians, its 'was missing' columns, its kept levels): it is what training and the "
        "API do, not a separate description."
    )
    return "\n\n".join(lines)


# --- 6. encoding ---------------------------------------------------------------------------


def encoding_comment(summary: EncodingSummary) -> str:
    """Comment on the encoding chart: the choice per column and the resulting width.

    Args:
        summary: From :func:`reports.eda.stats.encoding_summary`.

    Returns:
        The comment.
    """
    table = summary.columns
    blocks = listing([f"{n} {name}" for name, n in summary.blocks.items() if n], limit=10)
    lines = [
        f"The {len(summary.input_columns)} input columns become **{summary.total} model input "
        f"columns**: {blocks}."
    ]
    bullets = [
        f"- **{row.column}** → {row.encoder}, {row.model_columns} column"
        f"{'s' if row.model_columns != 1 else ''}: {row.reason}."
        for row in table.itertuples()
    ]
    if bullets:
        lines.append("\n".join(bullets))
        categorical_columns = int(table["model_columns"].sum())
        naive = int(table["levels"].sum())
        lines.append(
            f"One-hot encoding every level without grouping would have produced {naive} "
            f"columns for the categorical features instead of {categorical_columns}."
        )
    return "\n\n".join(lines)


def encoding_table_comment(summary: EncodingSummary, rows: int, config) -> str:
    """Comment on the encoding table: where the plan comes from.

    Args:
        summary: From :func:`reports.eda.stats.encoding_summary`.
        rows: Training rows.
        config: The dataset config.

    Returns:
        The comment.
    """
    one_hot = summary.columns[summary.columns["encoder"] == "one-hot"]["column"].tolist()
    target = summary.columns[summary.columns["encoder"] == "target"]["column"].tolist()
    parts = []
    if one_hot:
        parts.append(f"one-hot for {listing(one_hot)}")
    if target:
        parts.append(f"target encoding for {listing(target)}")
    choice = " and ".join(parts) or "no categorical encoding"
    return (
        f"This plan ({choice}) was decided on the {count(rows)} training rows with a limit of "
        f"{config.features.one_hot_max_levels} levels for one-hot encoding and a rare-level "
        f"threshold of {pct(config.features.rare_share, 0)}. The training stage builds its "
        "pipelines from this same plan, so the report and the models cannot disagree."
    )


# --- 7. outliers ---------------------------------------------------------------------------


def boxes_comment(stats: list[OutlierStats], ranges: dict) -> str:
    """Comment on the per-column box plots: outlier counts and the extreme values.

    Args:
        stats: From :func:`reports.eda.stats.outlier_stats`.
        ranges: The validation gate's ``[min, max]`` per column (``config.checks.ranges``).

    Returns:
        The comment.
    """
    values = sum(s.count for s in stats)
    outliers = sum(s.outliers for s in stats)
    ranked = sorted(stats, key=lambda s: -s.share)
    with_outliers = [s for s in ranked if s.outliers]
    clean = [s.column for s in stats if not s.outliers]
    lines = [
        f"By the 1.5 IQR rule (a value more than 1.5 times the interquartile range beyond the "
        f"box), **{count(outliers)} of {count(values)} values ({pct(ratio(outliers, values))}) "
        f"are outliers**."
    ]
    if with_outliers:
        named = [
            f"{s.column} {pct(s.share)} ({count(s.outliers)}; {_extreme(s)})" for s in with_outliers
        ]
        lines[0] += f" Most affected: {listing(named, limit=5)}."
    if clean:
        lines[0] += f" No outliers in {listing(clean, limit=8)}."
    flat = [s for s in stats if s.iqr == 0 and s.outliers]
    if flat:
        lines.append(
            f"For {listing([f'{s.column} (middle half all {short(s.median)})' for s in flat])} "
            "the box is a single value, so the rule flags every other value as an outlier: "
            "there it marks the unusual values, not errors."
        )
    lines.append(_plausibility(with_outliers, ranges))
    return "\n\n".join(lines)


def _extreme(stat: OutlierStats) -> str:
    """Name the most extreme outlier: ``up to 4,983`` or ``down to 0``."""
    high = stat.maximum - stat.high_fence if stat.n_high else -1.0
    low = stat.low_fence - stat.minimum if stat.n_low else -1.0
    return f"up to {short(stat.maximum)}" if high >= low else f"down to {short(stat.minimum)}"


def _plausibility(with_outliers: list[OutlierStats], ranges: dict) -> str:
    """Say whether the outliers lie inside the plausible ranges the config declares."""
    checked = [s for s in with_outliers if s.column in ranges]
    outside = []
    for s in checked:
        low, high = ranges[s.column]
        if (low is not None and s.minimum < low) or (high is not None and s.maximum > high):
            outside.append(f"{s.column} (range {short(s.minimum)}-{short(s.maximum)})")
    tail = (
        "The pipeline keeps outliers as they are (no clipping), so training and serving see "
        "the same values, and tree-based models are insensitive to them."
    )
    if outside:
        return (
            f"Some values fall outside the plausible range the config declares: "
            f"{listing(outside)}; they deserve a look before trusting the model. {tail}"
        )
    if checked:
        named = [f"{s.column} {_interval(*ranges[s.column])}" for s in checked]
        return (
            "These are plausible values, not errors: every outlier lies inside the range the "
            f"config declares for its column ({listing(named, limit=4)}). {tail}"
        )
    return tail


def standardised_comment(stats: list[OutlierStats]) -> str:
    """Comment on the standardised box plots: why they are needed and the extremes.

    Args:
        stats: From :func:`reports.eda.stats.outlier_stats`.

    Returns:
        The comment.
    """
    usable = [s for s in stats if s.std > 0]
    if not usable:
        return "No numeric column varies, so there is nothing to standardise."
    widest = max(usable, key=lambda s: s.std)
    narrowest = min(usable, key=lambda s: s.std)
    ratio = widest.std / narrowest.std
    extremes = sorted(
        usable,
        key=lambda s: -max(abs(s.maximum - s.mean), abs(s.minimum - s.mean)) / s.std,
    )
    named = []
    for s in extremes[:4]:
        high = (s.maximum - s.mean) / s.std
        low = (s.minimum - s.mean) / s.std
        z, value = (high, s.maximum) if abs(high) >= abs(low) else (low, s.minimum)
        named.append(f"{s.column} at {signed(z, 1)} standard deviations ({short(value)})")
    text = (
        f"The columns' spreads differ by a factor of {ratio:,.0f} (standard deviation "
        f"{short(widest.std)} for {widest.column} against {short(narrowest.std)} for "
        f"{narrowest.column}), so on one shared raw axis most boxes would shrink to lines. "
        "Standardised (value minus mean, divided by standard deviation), they become "
        f"comparable. The most extreme values are {listing(named)}; for a normal "
        "distribution, values beyond ±4 standard deviations occur about 6 times in 100,000."
    )
    skipped = [s.column for s in stats if s.std == 0]
    if skipped:
        text += f" {listing(skipped)} never vary and are left out."
    return text


def outlier_table_comment(stats: list[OutlierStats]) -> str:
    """Comment on the outlier table.

    Args:
        stats: From :func:`reports.eda.stats.outlier_stats`.

    Returns:
        The comment.
    """
    high = sum(s.n_high for s in stats)
    low = sum(s.n_low for s in stats)
    both = [s.column for s in stats if s.n_high and s.n_low]
    text = f"{count(high)} outliers lie above the upper fence and {count(low)} below the lower one"
    text += f"; {listing(both)} have outliers on both sides." if both else "."
    return text


# --- 8. correlations ----------------------------------------------------------------------


def strength(r: float) -> str:
    """Name a correlation's strength: negligible, weak, moderate, strong, very strong."""
    r = abs(r)
    if r >= 0.8:
        return "very strong"
    if r >= 0.5:
        return "strong"
    if r >= 0.3:
        return "moderate"
    if r >= 0.1:
        return "weak"
    return "negligible"


def correlations_comment(corr: Correlations, positive_label: str) -> str:
    """Comment on the heatmap: the strongest pairs and the links with the target.

    Args:
        corr: From :func:`reports.eda.stats.correlations`.
        positive_label: Name of class 1.

    Returns:
        The comment.
    """
    pairs = corr.pairs
    lines = []
    if pairs.empty:
        lines.append("There are fewer than two numeric columns: no pair to correlate.")
    else:
        top = [
            f"{row.first} and {row.second} (r = {signed(row.r)}, {strength(row.r)})"
            for row in pairs.head(4).itertuples()
        ]
        redundant = pairs[pairs["r"].abs() >= 0.7]
        lines.append(f"The strongest pairs are {listing(top)}.")
        if len(redundant):
            lines.append(
                f"{len(redundant)} pair{'s' if len(redundant) != 1 else ''} reach |r| ≥ 0.7: "
                "such columns carry much the same information. That does not hurt tree "
                "models, but it makes a linear model's coefficients unstable and harder to "
                "read, and it splits importance between the twins in SHAP plots."
            )
        else:
            lines.append(
                "No pair reaches |r| ≥ 0.7, so no numeric column is a near-duplicate of another."
            )
    with_target = corr.with_target
    if len(with_target):
        top = [f"{name} ({signed(r)})" for name, r in with_target.head(4).items()]
        best = abs(with_target.iloc[0])
        if best < 0.3:
            verdict = (
                f"even the strongest is {strength(best)}. No single numeric column predicts the "
                "target on its own; the model has to combine many weak signals, including the "
                "categorical and calendar columns."
            )
        else:
            verdict = (
                f"{with_target.index[0]} alone has a {strength(best)} straight-line link with "
                "the target."
            )
        lines.append(
            f"With the target ('{positive_label}'), the strongest correlations are "
            f"{listing(top)}: {verdict}"
        )
    return "\n\n".join(lines)


def pairs_comment(corr: Correlations) -> str:
    """Comment on the table of strongest pairs.

    Args:
        corr: From :func:`reports.eda.stats.correlations`.

    Returns:
        The comment.
    """
    pairs = corr.pairs
    if pairs.empty:
        return "No pair to list."
    negative = pairs.head(10)[pairs.head(10)["r"] < 0]
    fewest, most = int(pairs["rows"].min()), int(pairs["rows"].max())
    rows = count(most) if fewest == most else f"{count(fewest)} to {count(most)}"
    text = (
        f"Pearson's r measures a straight-line association, on the rows where both values "
        f"are present ({rows} rows per pair). Of the {plural(len(pairs), 'pair')}, "
        f"{int((pairs['r'].abs() >= 0.3).sum())} reach |r| ≥ 0.3."
    )
    if len(negative):
        row = negative.iloc[0]
        text += (
            f" Negative values mean opposite directions, e.g. {row['first']} and "
            f"{row['second']} (r = {signed(row['r'])})."
        )
    return text


# --- 9. target over time ------------------------------------------------------------------


def bucket_name(start: pd.Timestamp, unit: str) -> str:
    """Name a timeline bucket: ``the week of 25 Mar 2013``, ``Jul 2013``, ``Q3 2013``.

    Args:
        start: First day of the bucket.
        unit: ``day``, ``week``, ``month``, ``quarter`` or ``year``.

    Returns:
        The name.
    """
    if unit == "week":
        return f"the week of {start:%d %b %Y}"
    if unit == "month":
        return f"{start:%b %Y}"
    if unit == "quarter":
        return f"Q{start.quarter} {start.year}"
    if unit == "year":
        return str(start.year)
    return f"{start:%d %b %Y}"


def timeline_comment(line: Timeline, overall: float, positive_label: str) -> str:
    """Comment on the target rate over time.

    Args:
        line: From :func:`reports.eda.stats.timeline`.
        overall: The target rate over all training rows.
        positive_label: Name of class 1.

    Returns:
        The comment.
    """
    table = line.table[line.table["rows"] >= MIN_PERIOD_ROWS]
    if table.empty:
        return "Too few dated rows to draw a rate over time."
    high = table.loc[table["rate"].idxmax()]
    low = table.loc[table["rate"].idxmin()]
    half = len(table) // 2
    first_half = table.iloc[:half]
    second_half = table.iloc[half:]
    text = (
        f"Over {count(len(line.table))} {line.unit}s from {line.first:%d %b %Y} to "
        f"{line.last:%d %b %Y}, the share '{positive_label}' moved between "
        f"**{pct(low['rate'])}** ({bucket_name(low['start'], line.unit)}) and "
        f"**{pct(high['rate'])}** ({bucket_name(high['start'], line.unit)}), around "
        f"the overall {pct(overall)}."
    )
    if half:
        a = (first_half["rate"] * first_half["rows"]).sum() / first_half["rows"].sum()
        b = (second_half["rate"] * second_half["rows"]).sum() / second_half["rows"].sum()
        text += (
            f" The first half of the period averages {pct(a)}, the second half {pct(b)}: the "
            "rate drifts over time, so scores measured on a period after training may differ "
            "from those seen in training."
            if abs(a - b) >= 0.02
            else f" The first and second halves average {pct(a)} and {pct(b)}: no clear trend."
        )
    return text


def periods_comment(
    periods: list[PeriodRates], overall: float, positive_label: str, plan_parts
) -> str:
    """Comment on the rates by calendar period.

    Args:
        periods: From :func:`reports.eda.stats.rates_by_period`.
        overall: The target rate over all training rows.
        positive_label: Name of class 1.
        plan_parts: Calendar parts the models get as features.

    Returns:
        The comment.
    """
    if not periods:
        return "The dates do not vary along any calendar period (year, month, weekday, hour)."
    bullets = []
    thin = []
    for rates in periods:
        reliable = rates.reliable()
        thin += [
            f"{rates.period} {label}"
            for label in rates.table.loc[~rates.table["reliable"], "label"]
        ]
        if reliable.empty:
            continue
        high = reliable.loc[reliable["rate"].idxmax()]
        low = reliable.loc[reliable["rate"].idxmin()]
        bullets.append(
            f"- By {rates.period}: highest in **{high['label']}** ({pct(high['rate'])}, "
            f"{count(high['rows'])} rows), lowest in **{low['label']}** ({pct(low['rate'])}, "
            f"{count(low['rows'])} rows), a spread of {(high['rate'] - low['rate']) * 100:.1f} "
            "percentage points."
        )
    lines = [
        f"Against the overall {pct(overall)} '{positive_label}':",
        "\n".join(bullets),
    ]
    used = [p.period for p in periods if p.period in plan_parts]
    if used:
        lines.append(
            f"The models get {listing(used)} as features (the config's date_parts), so they "
            "can learn these patterns."
        )
    if thin:
        lines.append(
            f"Greyed-out buckets have fewer than {MIN_PERIOD_ROWS} rows and are not compared: "
            f"{listing(thin, limit=8)}."
        )
    return "\n\n".join(lines)
