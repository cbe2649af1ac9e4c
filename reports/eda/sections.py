"""The nine EDA sections: each computes its numbers, draws its charts, writes its comments.

A section is a list of blocks; a block is one chart (or a row of charts, like the pies
before and after grouping) and/or one table, always followed by its comment. Builders
take the training split only: nothing here can see validation or test rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from sklearn.compose import ColumnTransformer

from reports.eda import charts, comments
from reports.eda.fmt import count, pct, plural, ratio, short, signed
from reports.eda.stats import (
    MAX_READABLE_LEVELS,
    TOP_LEVELS,
    category_counts,
    class_balance,
    correlations,
    encoding_summary,
    missing_summary,
    natural_periods,
    numeric_shapes,
    outlier_stats,
    rare_grouping,
    rates_by_period,
    timeline,
)
from reports.page import Section, Table, block
from tabular.features import EncodingPlan

#: Histograms per figure (3 × 2 panels stay readable at 100 % zoom).
PANELS_PER_FIGURE = 6
#: Slices a pie draws before merging the smallest levels for display (each slice has a
#: legend entry; beyond this the legend and the slivers stop being readable).
MAX_PIE_SLICES = 16


def no_columns(key: str, title: str, role: str) -> Section:
    """A section for a dataset that declares no column of the role it analyses.

    Args:
        key: Section key.
        title: Section title.
        role: ``numeric`` or ``categorical``.

    Returns:
        A section with one block saying so.
    """
    text = f"The dataset config declares no {role} feature column, so there is nothing to show."
    return Section(key, title, block(text), summary=f"No {role} column.")


def slug(text: str) -> str:
    """Make a column name safe for a file name: ``"Sched Dep/2"`` → ``"sched-dep-2"``."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "column"


def _save(figure, out_dir: Path, name: str) -> Path:
    return charts.save_figure(figure, out_dir / f"{name}.png")


# --- 1 -------------------------------------------------------------------------------------


def balance_section(train: pd.DataFrame, config, out_dir: Path) -> Section:
    """Target balance: counts and shares per class and what they imply.

    Args:
        train: The training split.
        config: The dataset config.
        out_dir: Folder for the PNG.

    Returns:
        The section.
    """
    balance = class_balance(train, config)
    figure = _save(charts.plot_class_balance(balance), out_dir, "01_target_balance")
    table = balance.table()
    table["rows"] = table["rows"].map(count)
    table["share"] = table["share"].map(pct)
    return Section.from_blocks(
        key="balance",
        title="1. Target balance",
        blocks=[
            block(comments.balance_comment(balance), [figure], [Table(table)], "rows per class")
        ],
        summary=(
            f"{pct(balance.positive_share)} of {count(balance.rows)} training rows are "
            f"'{balance.labels[1]}' (class weight {balance.positive_weight:.2f})."
        ),
    )


# --- 2 -------------------------------------------------------------------------------------


def distributions_section(
    train: pd.DataFrame, config, out_dir: Path, sample_size: int, seed: int
) -> Section:
    """Numeric distributions: histogram, density curve and fitted normal per column.

    Args:
        train: The training split.
        config: The dataset config.
        out_dir: Folder for the PNGs.
        sample_size: Rows used for density curves and the normal-fit distance.
        seed: Sampling seed.

    Returns:
        The section.
    """
    title = "2. Numeric distributions"
    if not config.numeric_features:
        return no_columns("distributions", title, "numeric")
    shapes = numeric_shapes(train, list(config.numeric_features), sample_size, seed)
    blocks = []
    chunks = [shapes[i : i + PANELS_PER_FIGURE] for i in range(0, len(shapes), PANELS_PER_FIGURE)]
    for number, chunk in enumerate(chunks, start=1):
        title = f"Numeric distributions ({number} of {len(chunks)})"
        figure = charts.plot_distributions(train, chunk, sample_size, seed, title)
        path = _save(figure, out_dir, f"02_distributions_{number}")
        blocks.append(block(comments.distributions_comment(chunk), [path], caption=title))
    table = pd.DataFrame(
        {
            "column": [s.column for s in shapes],
            "mean": [short(s.mean) for s in shapes],
            "median": [short(s.median) for s in shapes],
            "std": [short(s.std) for s in shapes],
            "min": [short(s.minimum) for s in shapes],
            "max": [short(s.maximum) for s in shapes],
            "skewness": [signed(s.skewness) for s in shapes],
            "excess kurtosis": [signed(s.kurtosis) for s in shapes],
            "missing": [pct(s.missing / max(s.count + s.missing, 1)) for s in shapes],
            "shape": [s.verdict for s in shapes],
        }
    )
    blocks.append(
        block(
            comments.distributions_summary(shapes, len(train), sample_size, seed),
            tables=[Table(table)],
            caption="moments of every numeric column",
        )
    )
    gaussian = [s.column for s in shapes if s.shape == "gaussian"]
    skewed = [s.column for s in shapes if abs(s.skewness) >= 1]
    return Section.from_blocks(
        key="distributions",
        title=title,
        blocks=blocks,
        summary=(
            f"{len(gaussian)} of {plural(len(shapes), 'numeric column')} "
            f"{'looks' if len(gaussian) == 1 else 'look'} Gaussian"
            + (f" ({comments.listing(gaussian, 4)})" if gaussian else "")
            + f"; {len(skewed)} {'is' if len(skewed) == 1 else 'are'} strongly skewed"
            + (f" ({comments.listing(skewed, 4)})" if skewed else "")
            + "."
        ),
    )


# --- 3 -------------------------------------------------------------------------------------


def categories_section(train: pd.DataFrame, config, out_dir: Path) -> Section:
    """Category frequencies; a column with many levels gets a filtered top-N chart after it.

    Args:
        train: The training split.
        config: The dataset config.
        out_dir: Folder for the PNGs.

    Returns:
        The section.
    """
    if not config.categorical:
        return no_columns("categories", "3. Category frequencies", "categorical")
    rare = config.features.rare_share
    blocks = []
    filtered = []
    for column in config.categorical:
        counts = category_counts(train, column)
        total = int(counts.sum())
        name = f"03_categories_{slug(column)}"
        if len(counts) <= MAX_READABLE_LEVELS:
            title = f"{column}: rows per level ({len(counts)} levels)"
            figure = charts.plot_category_bars(counts, total, rare, title)
            blocks.append(
                block(
                    comments.categories_comment(column, counts, rare),
                    [_save(figure, out_dir, name)],
                    caption=title,
                )
            )
            continue
        filtered.append(column)
        title = (
            f"{column}: all {len(counts)} levels ranked (names in the top-{TOP_LEVELS} chart below)"
        )
        figure = charts.plot_category_ranks(counts, rare, title)
        blocks.append(
            block(
                comments.ranks_comment(column, counts, rare, TOP_LEVELS),
                [_save(figure, out_dir, f"{name}_all")],
                caption=title,
            )
        )
        top = counts.head(TOP_LEVELS)
        title = (
            f"{column}: top {len(top)} of {len(counts)} levels ({pct(top.sum() / total)} of rows)"
        )
        figure = charts.plot_category_bars(top, total, rare, title)
        blocks.append(
            block(
                comments.top_comment(column, counts, TOP_LEVELS),
                [_save(figure, out_dir, f"{name}_top{TOP_LEVELS}")],
                caption=title,
            )
        )
    levels = {column: train[column].nunique(dropna=False) for column in config.categorical}
    summary = "Levels per column: " + ", ".join(f"{c} {n}" for c, n in levels.items())
    if filtered:
        summary += f"; top-{TOP_LEVELS} charts added for {comments.listing(filtered)}"
    return Section.from_blocks(
        key="categories", title="3. Category frequencies", blocks=blocks, summary=summary + "."
    )


# --- 4 -------------------------------------------------------------------------------------


def grouping_section(train: pd.DataFrame, plan: EncodingPlan, out_dir: Path) -> Section:
    """Rare-level grouping into "Other": pies before and after for each grouped column.

    Args:
        train: The training split.
        plan: The encoding plan (which columns are grouped, at which share).
        out_dir: Folder for the PNGs.

    Returns:
        The section.
    """
    title = f"4. Rare categories grouped into 'Other' (under {pct(plan.rare_share, 0)} of rows)"
    if not plan.categorical:
        return no_columns("grouping", title, "categorical")
    groupings = rare_grouping(train, plan)
    blocks = []
    for grouping in groupings:
        if not grouping.applied:
            continue
        palette = charts.level_palette(list(grouping.before.index))
        name = f"04_grouping_{slug(grouping.column)}"
        before_title = f"{grouping.column} before grouping: {len(grouping.before)} levels"
        after_title = (
            f"{grouping.column} after grouping: {len(grouping.after)} levels "
            f"(< {pct(grouping.rare_share, 0)} → 'Other')"
        )
        before = charts.plot_pie(
            grouping.before,
            palette,
            before_title,
            MAX_PIE_SLICES,
            grouped=frozenset(grouping.grouped_levels),
        )
        after = charts.plot_pie(grouping.after, palette, after_title, MAX_PIE_SLICES)
        blocks.append(
            block(
                comments.grouping_comment(grouping, MAX_PIE_SLICES),
                [_save(before, out_dir, f"{name}_before"), _save(after, out_dir, f"{name}_after")],
                caption=f"{grouping.column}: before and after grouping",
            )
        )
    table = pd.DataFrame(
        {
            "column": [g.column for g in groupings],
            "encoder": [g.encoder for g in groupings],
            "levels": [len(g.before) for g in groupings],
            f"levels < {pct(plan.rare_share, 0)}": [len(g.grouped_levels) for g in groupings],
            "rows in them": [pct(g.other_share) for g in groupings],
            "grouped for training": ["yes" if g.applied else "no" for g in groupings],
            "levels after": [len(g.after) if g.applied else len(g.before) for g in groupings],
        }
    )
    blocks.append(
        block(
            comments.grouping_summary(groupings, len(train)),
            tables=[Table(table)],
            caption="grouping per categorical column",
        )
    )
    applied = [g for g in groupings if g.applied]
    return Section.from_blocks(
        key="grouping",
        title=title,
        blocks=blocks,
        summary=(
            "Grouped: "
            + (
                comments.listing(
                    [f"{g.column} {len(g.before)}→{len(g.after)} levels" for g in applied], 8
                )
                if applied
                else "none"
            )
            + "."
        ),
    )


# --- 5 -------------------------------------------------------------------------------------


def missing_section(
    train: pd.DataFrame,
    config,
    plan: EncodingPlan,
    preprocessor: ColumnTransformer,
    out_dir: Path,
    dropped: dict[str, int],
    markers: dict[str, dict[str, int]] | None = None,
) -> Section:
    """Missing values per column, how the file wrote them, and how the pipeline handles each.

    Args:
        train: The training split.
        config: The dataset config.
        plan: The encoding plan.
        preprocessor: The preprocessing fitted on ``train``.
        out_dir: Folder for the PNG.
        dropped: Rows dropped before the split, per reason.
        markers: Per column, the cells of the file that held each missing-value marker.

    Returns:
        The section.
    """
    table = missing_summary(train, config, plan, preprocessor)
    markers = markers or {}
    positive = config.target.labels[1]
    figure = _save(charts.plot_missing(table), out_dir, "05_missing_values")
    shown = table.sort_values("share", ascending=False, kind="stable")
    display = pd.DataFrame(
        {
            "column": shown["column"],
            "role": shown["role"],
            "missing": shown["missing"].map(count),
            "share": shown["share"].map(pct),
            "written in the file as": shown["column"].map(
                lambda column: comments.marker_text(markers.get(column, {}))
            ),
            "handling": shown["handling"],
            f"'{positive}' when missing": shown["rate_missing"].map(pct),
            f"'{positive}' when present": shown["rate_present"].map(pct),
        }
    )
    if (display["written in the file as"] == "-").all():
        display = display.drop(columns="written in the file as")  # a loader, or no gaps
    gaps = table[table["missing"] > 0]
    return Section.from_blocks(
        key="missing",
        title="5. Missing values and their handling",
        blocks=[
            block(
                comments.missing_comment(
                    table, positive, dropped, config.target.column, markers, config.missing_markers
                ),
                [figure],
                caption="missing values per column",
            ),
            block(
                comments.handling_comment(table, config.features.rare_share),
                tables=[Table(display)],
                caption="handling per column",
            ),
        ],
        summary=(
            f"{len(gaps)} of {len(table)} feature columns have gaps"
            + (
                f", most in {gaps.loc[gaps['share'].idxmax(), 'column']} "
                f"({pct(gaps['share'].max())})"
                if len(gaps)
                else ""
            )
            + "; numeric gaps → median + indicator, categorical gaps → 'Missing' level."
        ),
    )


# --- 6 -------------------------------------------------------------------------------------


def encoding_section(
    train: pd.DataFrame,
    config,
    plan: EncodingPlan,
    preprocessor: ColumnTransformer,
    out_dir: Path,
) -> Section:
    """Encoder per categorical column, the reason, and the resulting feature count.

    Args:
        train: The training split.
        config: The dataset config.
        plan: The encoding plan.
        preprocessor: The preprocessing fitted on ``train``.
        out_dir: Folder for the PNG.

    Returns:
        The section.
    """
    summary = encoding_summary(plan, preprocessor)
    figure = _save(charts.plot_encoding(summary), out_dir, "06_encoding")
    table = summary.columns.copy()
    table["other_share"] = table["other_share"].map(pct)
    table = table.rename(
        columns={
            "levels": "levels in training",
            "kept_levels": f"levels ≥ {pct(plan.rare_share, 0)}",
            "other_share": f"rows in levels < {pct(plan.rare_share, 0)}",
            "model_columns": "model columns",
        }
    )
    return Section.from_blocks(
        key="encoding",
        title="6. Encoding of the categorical columns",
        blocks=[
            block(comments.encoding_comment(summary), [figure], caption="encoding"),
            block(
                comments.encoding_table_comment(summary, len(train), config),
                tables=[Table(table)],
                caption="the encoding plan",
            ),
        ],
        summary=(
            f"{summary.total} model columns; "
            f"one-hot: {comments.listing(plan.one_hot_columns) or 'none'}; "
            f"target-encoded: {comments.listing(plan.target_columns) or 'none'}."
        ),
    )


# --- 7 -------------------------------------------------------------------------------------


def outliers_section(train: pd.DataFrame, config, out_dir: Path) -> Section:
    """Box plots per column in its own units, then all on one standardised scale.

    Args:
        train: The training split.
        config: The dataset config.
        out_dir: Folder for the PNGs.

    Returns:
        The section.
    """
    title = "7. Box plots and outliers (1.5 IQR rule)"
    if not config.numeric_features:
        return no_columns("outliers", title, "numeric")
    stats = outlier_stats(train, list(config.numeric_features))
    if not stats:
        text = "No numeric column has a single value in the training split: nothing to plot."
        return Section("outliers", title, block(text), "No numeric values.")
    blocks = []
    if stats:
        split = _save(charts.plot_boxes(stats), out_dir, "07_boxplots")
        blocks.append(
            block(
                comments.boxes_comment(stats, dict(config.checks.ranges)),
                [split],
                caption="box plots in each column's units",
            )
        )
    if sum(s.std > 0 for s in stats) >= 2:
        standard = _save(charts.plot_boxes_standardised(stats), out_dir, "07_boxplots_standardised")
        blocks.append(
            block(
                comments.standardised_comment(stats),
                [standard],
                caption="box plots on one standardised scale",
            )
        )
    table = pd.DataFrame(
        {
            "column": [s.column for s in stats],
            "Q1": [short(s.q1) for s in stats],
            "median": [short(s.median) for s in stats],
            "Q3": [short(s.q3) for s in stats],
            "lower fence": [short(s.low_fence) for s in stats],
            "upper fence": [short(s.high_fence) for s in stats],
            "below": [count(s.n_low) for s in stats],
            "above": [count(s.n_high) for s in stats],
            "outlier share": [pct(s.share) for s in stats],
            "min": [short(s.minimum) for s in stats],
            "max": [short(s.maximum) for s in stats],
        }
    )
    blocks.append(
        block(
            comments.outlier_table_comment(stats),
            tables=[Table(table)],
            caption="outliers per column",
        )
    )
    values = sum(s.count for s in stats)
    outliers = sum(s.outliers for s in stats)
    top = max(stats, key=lambda s: s.share) if stats else None
    return Section.from_blocks(
        key="outliers",
        title=title,
        blocks=blocks,
        summary=(
            f"{count(outliers)} outlying values ({pct(ratio(outliers, values))})"
            + (f"; most in {top.column} ({pct(top.share)})" if top else "")
            + "."
        ),
    )


# --- 8 -------------------------------------------------------------------------------------


def correlations_section(train: pd.DataFrame, config, out_dir: Path) -> Section:
    """Correlation heatmap of the numeric features and the target, and the strongest pairs.

    Args:
        train: The training split.
        config: The dataset config.
        out_dir: Folder for the PNG.

    Returns:
        The section.
    """
    if not config.numeric_features:
        return no_columns("correlations", "8. Correlations", "numeric")
    target = config.target.name
    corr = correlations(train, list(config.numeric_features), target)
    positive = config.target.labels[1]
    figure = charts.plot_correlations(corr, f"{target} (target)")
    path = _save(figure, out_dir, "08_correlations")
    pairs = corr.pairs.head(10)
    table = pd.DataFrame(
        {
            "first": pairs["first"],
            "second": pairs["second"],
            "r": pairs["r"].map(signed),
            "strength": pairs["r"].map(comments.strength),
            "rows": pairs["rows"].map(count),
        }
    )
    best = corr.pairs.iloc[0] if len(corr.pairs) else None
    top_target = corr.with_target.index[0] if len(corr.with_target) else None
    return Section.from_blocks(
        key="correlations",
        title="8. Correlations",
        blocks=[
            block(comments.correlations_comment(corr, positive), [path], caption="heatmap"),
            block(comments.pairs_comment(corr), tables=[Table(table)], caption="strongest pairs"),
        ],
        summary=(
            (
                f"Strongest pair {best['first']}–{best['second']} r = {signed(best['r'])}"
                if best is not None
                else "No pair"
            )
            + (
                f"; strongest with the target {top_target} r = {signed(corr.with_target.iloc[0])}."
                if top_target is not None
                else "."
            )
        ),
    )


# --- 9 -------------------------------------------------------------------------------------


def time_section(train: pd.DataFrame, config, plan: EncodingPlan, out_dir: Path) -> Section:
    """Target rate over time and by the date column's natural calendar periods.

    Args:
        train: The training split.
        config: The dataset config.
        plan: The encoding plan (for the calendar parts the models use).
        out_dir: Folder for the PNGs.

    Returns:
        The section.
    """
    target, date_column = config.target.name, config.date_column
    if date_column is None:
        text = (
            "The dataset config names no date (neither date_column nor date_from), so there "
            "is no time axis to chart: the split is random, stratified by the target, and the "
            "models get no calendar features."
        )
        return Section("time", "9. Target over time", block(text), "No date column.")
    positive = config.target.labels[1]
    overall = float(train[target].mean())
    blocks = []
    line = timeline(train, date_column, target)
    if len(line.table):
        figure = charts.plot_timeline(line, overall, positive, date_column)
        blocks.append(
            block(
                comments.timeline_comment(line, overall, positive),
                [_save(figure, out_dir, "09_target_over_time")],
                caption=f"share per {line.unit}",
            )
        )
    periods = rates_by_period(
        train, date_column, target, natural_periods(pd.to_datetime(train[date_column]))
    )
    if periods:
        figure = charts.plot_period_rates(periods, overall, positive, date_column)
        blocks.append(
            block(
                comments.periods_comment(periods, overall, positive, plan.date_parts),
                [_save(figure, out_dir, "09_target_by_period")],
                caption="share by calendar period",
            )
        )
    if not blocks:
        blocks.append(block(f"No value of '{date_column}' could be read as a date."))
    spans = []
    for rates in periods:
        reliable = rates.reliable()
        if len(reliable):
            high = reliable.loc[reliable["rate"].idxmax()]
            spans.append(f"{rates.period} peak {high['label']} ({pct(high['rate'])})")
    return Section.from_blocks(
        key="time",
        title=f"9. Target over time ('{date_column}')",
        blocks=blocks,
        summary=(
            f"Overall {pct(overall)}; " + ("; ".join(spans) if spans else "no calendar pattern")
        )
        + ".",
    )
