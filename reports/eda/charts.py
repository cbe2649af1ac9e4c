"""EDA charts: one function per chart, numbers in, a matplotlib ``Figure`` out.

Figures are built with the object API (``matplotlib.figure.Figure``), never through
``pyplot``: nothing registers in a global figure manager, so nothing needs closing and
nothing leaks between runs or threads. Sizes are chosen for a normal screen at 100 % zoom
(about 1,200 × 500-900 pixels at 100 dpi) with ``constrained`` layout to keep labels apart.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator, PercentFormatter
from scipy import stats as scipy_stats

from reports.eda.fmt import count, pct
from reports.eda.stats import (
    MIN_PERIOD_ROWS,
    ClassBalance,
    Correlations,
    EncodingSummary,
    NumericShape,
    OutlierStats,
    PeriodRates,
    Timeline,
    sample_values,
)
from tabular.features import OTHER

DPI = 100
#: Font sizes and spines for every chart; applied per call, never set globally.
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
BLUE = "#4C72B0"
ORANGE = "#DD8452"
RED = "#C44E52"
GREEN = "#55A868"
GREY = "#8C8C8C"
LIGHT_GREY = "#D9D9D9"
#: Tick marks of a symmetric-log axis of standardised values.
SYMLOG_TICKS = (-100, -50, -20, -10, -3, -2, -1, 0, 1, 2, 3, 10, 20, 50, 100)
#: Longest category label printed in full; longer ones are shortened with an ellipsis.
MAX_LABEL = 28

#: White box behind a bar's number, so a reference line behind it does not cross the text.
LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"}
THOUSANDS = FuncFormatter(lambda value, _: f"{value:,.0f}")


def styled(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a chart function under :data:`STYLE` (a temporary ``rc_context``)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """Create a figure outside pyplot, with constrained layout.

    Args:
        width: Width in inches (100 pixels each).
        height: Height in inches.

    Returns:
        The empty figure.
    """
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG and release its drawing memory.

    Args:
        figure: The figure.
        path: Destination ``.png``.

    Returns:
        The path written.
    """
    with matplotlib.rc_context(STYLE):
        figure.savefig(path, dpi=DPI, facecolor="white")
    figure.clear()
    return path


def wrap(text: str, figure: Figure, fontsize: float = 13) -> str:
    """Break a figure title into lines that fit the figure's width.

    Args:
        text: The title.
        figure: The figure it goes on.
        fontsize: Its font size in points (a character is about 0.55 of it wide).

    Returns:
        The title with line breaks.
    """
    width_px = figure.get_figwidth() * DPI
    chars = max(20, int(width_px / (fontsize * 0.55 * DPI / 72)))
    return textwrap.fill(text, width=chars)


def shorten(label: str, limit: int = MAX_LABEL) -> str:
    """Cut a long category label to ``limit`` characters, ending with an ellipsis."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"


# --- 1. target balance -----------------------------------------------------------------


@styled
def plot_class_balance(balance: ClassBalance) -> Figure:
    """Bar chart of the rows in each target class, annotated with count and share.

    Args:
        balance: The class counts.

    Returns:
        The figure.
    """
    figure = new_figure(7.5, 4.8)
    ax = figure.add_subplot()
    counts = [balance.negatives, balance.positives]
    names = [f"{balance.labels[0]}\n(class 0)", f"{balance.labels[1]}\n(class 1)"]
    bars = ax.bar(names, counts, color=[BLUE, RED], width=0.55)
    for bar, n in zip(bars, counts, strict=True):
        ax.annotate(
            f"{count(n)}\n({pct(n / balance.rows)})",
            (bar.get_x() + bar.get_width() / 2, n),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
        )
    ax.set_ylim(0, max(counts) * 1.25)
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.set_ylabel("training rows (count)")
    ax.set_title(f"Target balance of '{balance.target}' ({count(balance.rows)} training rows)")
    return figure


# --- 2. numeric distributions -------------------------------------------------------------


def histogram_bins(values: np.ndarray) -> np.ndarray | int:
    """Choose histogram bins: one per integer for small integer ranges, else 50.

    Args:
        values: Non-missing values.

    Returns:
        Bin edges, or a bin count.
    """
    low, high = float(values.min()), float(values.max())
    if np.all(np.mod(values, 1) == 0) and high - low <= 60:
        # Integer data: centre a bar on each integer so no bin straddles two values.
        return np.arange(low - 0.5, high + 1.5)
    return 50


@styled
def plot_distributions(
    train: pd.DataFrame,
    shapes: list[NumericShape],
    sample_size: int,
    seed: int,
    title: str,
) -> Figure:
    """Histograms with a density curve and a fitted normal, up to three per row.

    Args:
        train: The training split.
        shapes: The columns to draw, with their moments.
        sample_size: Rows used for the density curve (KDE).
        seed: Sampling seed.
        title: Figure title.

    Returns:
        The figure.
    """
    ncols = min(3, len(shapes))
    nrows = math.ceil(len(shapes) / ncols)
    figure = new_figure(4.4 * ncols + 0.4, 3.3 * nrows + 1.0)
    axes = np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False)).ravel()
    for index, (ax, shape) in enumerate(zip(axes, shapes, strict=False)):
        values = pd.to_numeric(train[shape.column], errors="coerce").dropna().to_numpy(float)
        ax.set_title(
            f"{shape.column}: {shape.verdict}\n"
            f"skew {shape.skewness:+.2f} · excess kurtosis {shape.kurtosis:+.2f}",
            fontsize=9.5,
        )
        ax.set_xlabel(shape.column)
        ax.set_ylabel("density (share per unit)" if index % ncols == 0 else "")
        if len(values) == 0:
            ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center")
            continue
        heights, _, _ = ax.hist(
            values, bins=histogram_bins(values), density=True, color=BLUE, alpha=0.55
        )
        top = float(heights.max())
        log_axis = shape.log_scale
        if shape.std > 0:
            grid = np.linspace(shape.minimum, shape.maximum, 300)
            if not log_axis and shape.shape not in ("discrete", "constant"):
                # A KDE needs many distinct values, and on a log axis its noise in a
                # sparse tail dominates the picture; a few thousand sampled rows suffice.
                kde = scipy_stats.gaussian_kde(sample_values(values, sample_size, seed))
                density = kde(grid)
                ax.plot(grid, density, color=ORANGE, linewidth=1.8)
                top = max(top, float(density.max()))
            normal = scipy_stats.norm.pdf(grid, shape.mean, shape.std)
            ax.plot(grid, normal, color="black", linestyle="--", linewidth=1.3)
        if log_axis:
            ax.set_yscale("log")
            ax.set_ylim(float(heights[heights > 0].min()) * 0.5, top * 2)
            ax.set_ylabel("density (log scale, no KDE)")
        else:
            # A narrow fitted normal may rise above the data; clip it rather than the bars.
            ax.set_ylim(0, top * 1.15)
    for ax in axes[len(shapes) :]:
        ax.set_visible(False)
    handles = [
        Patch(color=BLUE, alpha=0.55, label="histogram (all training rows)"),
        Line2D(
            [], [], color=ORANGE, linewidth=1.8, label=f"density curve (KDE, ≤{sample_size:,} rows)"
        ),
        Line2D([], [], color="black", linestyle="--", label="fitted normal (same mean and sd)"),
    ]
    figure.legend(
        handles=handles, loc="outside lower center", ncols=3 if ncols > 1 else 1, frameon=False
    )
    figure.suptitle(wrap(title, figure))
    return figure


# --- 3. category frequencies ---------------------------------------------------------------


def _rare_handles(rare_share: float) -> list:
    return [
        Patch(color=BLUE, label=f"level with ≥ {pct(rare_share, 0)} of rows"),
        Patch(color=ORANGE, label=f"level with < {pct(rare_share, 0)} of rows"),
        Line2D([], [], color=RED, linestyle=":", label=f"{pct(rare_share, 0)} of rows"),
    ]


def _level_colors(counts: pd.Series, rare_share: float) -> list[str]:
    shares = counts / counts.sum()
    return [BLUE if share >= rare_share else ORANGE for share in shares]


@styled
def plot_category_bars(counts: pd.Series, total: int, rare_share: float, title: str) -> Figure:
    """Horizontal bar chart of level counts, largest on top, rare levels highlighted.

    Args:
        counts: Rows per level, largest first (all levels, or the top N).
        total: Rows in the column (for shares, also when ``counts`` is a top N).
        rare_share: Share under which a level is rare.
        title: Chart title.

    Returns:
        The figure.
    """
    figure = new_figure(10, 0.3 * len(counts) + 1.9)
    ax = figure.add_subplot()
    positions = np.arange(len(counts))[::-1]
    colors = [BLUE if n / total >= rare_share else ORANGE for n in counts]
    ax.barh(positions, counts.to_numpy(), color=colors, height=0.7)
    ax.set_yticks(positions, [shorten(level) for level in counts.index])
    for y, n in zip(positions, counts, strict=True):
        ax.annotate(
            f"{count(n)} ({pct(n / total)})",
            (n, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
            bbox=LABEL_BOX,
        )
    ax.axvline(rare_share * total, color=RED, linestyle=":", linewidth=1.3, zorder=1)
    ax.set_xlim(0, counts.max() * 1.28)
    ax.set_ylim(-0.6, len(counts) - 0.4)
    ax.xaxis.set_major_formatter(THOUSANDS)
    ax.set_xlabel("training rows (count)")
    figure.legend(
        handles=_rare_handles(rare_share),
        loc="outside lower center",
        ncols=3,
        frameon=False,
    )
    ax.set_title(title)
    return figure


@styled
def plot_category_ranks(counts: pd.Series, rare_share: float, title: str) -> Figure:
    """Every level as a ranked bar (no names: too many), with the cumulative share of rows.

    Args:
        counts: Rows per level, largest first.
        rare_share: Share under which a level is rare.
        title: Chart title.

    Returns:
        The figure.
    """
    figure = new_figure(12, 5)
    ax = figure.add_subplot()
    total = counts.sum()
    ranks = np.arange(1, len(counts) + 1)
    ax.bar(ranks, counts.to_numpy(), color=_level_colors(counts, rare_share), width=0.85)
    ax.axhline(rare_share * total, color=RED, linestyle=":", linewidth=1.3)
    ax.set_xlim(0.3, len(counts) + 0.7)
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.set_xlabel("levels ranked by number of rows (1 = most frequent)")
    ax.set_ylabel("training rows (count)")
    share_axis = ax.twinx()
    share_axis.spines["right"].set_visible(True)
    share_axis.plot(ranks, counts.cumsum().to_numpy() / total, color="black", linewidth=1.6)
    share_axis.set_ylim(0, 1.02)
    share_axis.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    share_axis.set_ylabel("cumulative share of rows")
    figure.legend(
        handles=[
            *_rare_handles(rare_share),
            Line2D([], [], color="black", label="cumulative share of rows (right axis)"),
        ],
        loc="outside lower center",
        ncols=4,
        frameon=False,
    )
    ax.set_title(title)
    return figure


# --- 4. rare-category grouping --------------------------------------------------------------


def level_palette(levels: list[str]) -> dict[str, str]:
    """Give each level a stable colour, and "Other" grey, so both pies match.

    Args:
        levels: Levels, most frequent first.

    Returns:
        Colour per level.
    """
    # tab20 without its two greys, which are kept for "Other" and the merged slice.
    cycle = [c for i, c in enumerate(matplotlib.colormaps["tab20"].colors) if i not in (14, 15)]
    named = [level for level in levels if level != OTHER]
    palette = {
        level: matplotlib.colors.to_hex(cycle[i % len(cycle)]) for i, level in enumerate(named)
    }
    palette[OTHER] = GREY
    return palette


@styled
def plot_pie(
    counts: pd.Series,
    palette: dict[str, str],
    title: str,
    max_slices: int = 16,
    grouped: frozenset[str] = frozenset(),
) -> Figure:
    """Pie chart of level shares with a legend; small levels beyond ``max_slices`` are merged.

    The merged slice is hatched and labelled "display only" so it cannot be mistaken for
    the "Other" level of the grouping.

    Args:
        counts: Rows per level, in display order.
        palette: Colour per level.
        title: Chart title.
        max_slices: Most slices drawn.
        grouped: Levels that the grouping merges into "Other" (marked in the legend).

    Returns:
        The figure.
    """
    figure = new_figure(10, 5.6)
    ax = figure.add_subplot()
    total = counts.sum()
    shown = counts
    rest = None
    if len(counts) > max_slices:
        shown = counts.iloc[: max_slices - 1]
        rest = counts.iloc[max_slices - 1 :]
    values = list(shown.to_numpy())
    labels = [
        f"{shorten(level)} — {pct(n / total)}" + (f"  → {OTHER}" if level in grouped else "")
        for level, n in shown.items()
    ]
    colors = [palette.get(level, GREY) for level in shown.index]
    hatches = [""] * len(values)
    if rest is not None:
        values.append(rest.sum())
        labels.append(
            f"{len(rest)} smaller levels (merged for display) — "
            f"{pct(rest.sum() / total)}" + (f"  → {OTHER}" if set(rest.index) <= grouped else "")
        )
        colors.append(LIGHT_GREY)
        hatches.append("//")
    wedges, _, autotexts = ax.pie(
        values,
        colors=colors,
        startangle=90,
        counterclock=False,
        autopct=lambda share: f"{share:.0f}%" if share >= 5 else "",
        pctdistance=0.75,
        wedgeprops={"edgecolor": "white", "linewidth": 1},
        hatch=hatches,
    )
    for text in autotexts:
        text.set_fontsize(9)
    # A figure legend placed "outside" gets its own room from the constrained layout.
    figure.legend(wedges, labels, loc="outside right center", frameon=False)
    ax.set_title(title)
    ax.set_aspect("equal")
    return figure


# --- 5. missing values ---------------------------------------------------------------------


@styled
def plot_missing(table: pd.DataFrame, max_rows: int = 30) -> Figure:
    """Horizontal bars of each column's share of missing values, annotated with counts.

    Args:
        table: From :func:`reports.eda.stats.missing_summary`.
        max_rows: Most columns drawn. Only columns with gaps are drawn, unless none has.

    Returns:
        The figure.
    """
    data = table.sort_values("share", ascending=False, kind="stable")
    complete = int((data["missing"] == 0).sum())
    if complete < len(data):
        # Complete columns are named in the comment; bars of zero would only add height.
        data = data[data["missing"] > 0]
    data = data.head(max_rows)
    figure = new_figure(10, 0.3 * max(len(data), 1) + 1.7)
    ax = figure.add_subplot()
    positions = np.arange(len(data))[::-1]
    ax.barh(positions, data["share"].to_numpy(), color=ORANGE, height=0.7)
    ax.set_yticks(
        positions, [f"{c} ({r})" for c, r in zip(data["column"], data["role"], strict=True)]
    )
    for y, (n, share) in zip(
        positions, zip(data["missing"], data["share"], strict=True), strict=True
    ):
        ax.annotate(
            f"{count(n)} ({pct(share)})" if n else "none",
            (share, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
        )
    top = float(data["share"].max()) if len(data) else 0.0
    ax.set_xlim(0, max(top * 1.3, 0.05))
    ax.set_ylim(-0.6, len(data) - 0.4)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("missing values (% of training rows)")
    title = "Missing values per feature column (training split)"
    if complete and complete < len(table):
        title += f"; {complete} complete columns not shown"
    ax.set_title(title)
    return figure


# --- 6. encoding ---------------------------------------------------------------------------


@styled
def plot_encoding(summary: EncodingSummary) -> Figure:
    """Levels versus model columns per categorical column, and model columns by kind.

    Args:
        summary: From :func:`reports.eda.stats.encoding_summary`.

    Returns:
        The figure.
    """
    table = summary.columns
    if table.empty:
        figure = new_figure(7, 4.2)
        _plot_blocks(figure.add_subplot(), summary)
        return figure
    figure = new_figure(13, max(4.2, 0.6 * len(table) + 2.0))
    left, right = figure.subplots(1, 2, width_ratios=[1.4, 1])
    positions = np.arange(len(table))[::-1]
    height = 0.38
    left.barh(
        positions + height / 2,
        table["levels"],
        height,
        color=LIGHT_GREY,
        label="distinct levels in training",
    )
    colors = [BLUE if encoder == "one-hot" else GREEN for encoder in table["encoder"]]
    left.barh(positions - height / 2, table["model_columns"], height, color=colors)
    for y, levels, columns in zip(positions, table["levels"], table["model_columns"], strict=True):
        left.annotate(
            str(levels),
            (levels, y + height / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
        )
        left.annotate(
            str(columns),
            (max(columns, 1), y - height / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
        )
    left.set_xscale("log")
    left.set_xlim(0.8, max(table["levels"].max(), 2) * 3)
    left.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    left.set_yticks(
        positions, [f"{c}\n({e})" for c, e in zip(table["column"], table["encoder"], strict=True)]
    )
    left.set_xlabel("count (log scale)")
    left.set_title("Categorical columns: levels → model input columns")
    figure.legend(
        handles=[
            Patch(color=LIGHT_GREY, label="distinct levels in training"),
            Patch(color=BLUE, label="one-hot columns (after grouping)"),
            Patch(color=GREEN, label="target-encoded column"),
        ],
        loc="outside lower center",
        ncols=3,
        frameon=False,
    )
    _plot_blocks(right, summary)
    return figure


def _plot_blocks(ax, summary: EncodingSummary) -> None:
    """Bar chart of the model input columns by kind (date parts, numeric, one-hot, ...)."""
    blocks = {name: n for name, n in summary.blocks.items() if n}
    block_positions = np.arange(len(blocks))[::-1]
    ax.barh(block_positions, list(blocks.values()), color=GREY, height=0.6)
    for y, n in zip(block_positions, blocks.values(), strict=True):
        ax.annotate(str(n), (n, y), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_yticks(block_positions, list(blocks))
    ax.set_xlim(0, max(blocks.values()) * 1.2)
    ax.set_xlabel("model input columns (count)")
    ax.set_title(f"All {summary.total} model input columns, by kind")


# --- 7. box plots -------------------------------------------------------------------------


def _standardised(stat: OutlierStats) -> dict:
    """The column's box in standard deviations from its mean, for ``Axes.bxp``."""
    keys = ("q1", "med", "q3", "whislo", "whishi")
    box = {key: (stat.box[key] - stat.mean) / stat.std for key in keys}
    box["fliers"] = (np.asarray(stat.box["fliers"], dtype=float) - stat.mean) / stat.std
    box["label"] = stat.column
    return box


_FLIERS = {
    "marker": "o",
    "markersize": 3,
    "markerfacecolor": RED,
    "markeredgecolor": "none",
    "alpha": 0.5,
}


def _outlier_label(stat: OutlierStats) -> str:
    if not stat.outliers:
        return "no outliers"
    return f"{count(stat.outliers)} outliers ({pct(stat.share)})"


@styled
def plot_boxes(stats: list[OutlierStats]) -> Figure:
    """One horizontal box plot per column, each on its own scale (in the column's units).

    Args:
        stats: From :func:`reports.eda.stats.outlier_stats`.

    Returns:
        The figure.
    """
    ncols = min(3, len(stats))
    nrows = math.ceil(len(stats) / ncols)
    figure = new_figure(4.2 * ncols + 0.4, 1.15 * nrows + 0.9)
    axes = np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, stat in zip(axes, stats, strict=False):
        ax.bxp(
            [stat.box],
            orientation="horizontal",
            widths=0.6,
            patch_artist=True,
            boxprops={"facecolor": "#C6D4E8"},
            medianprops={"color": "black"},
            flierprops=_FLIERS,
        )
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_title(stat.column, loc="left", fontsize=10, fontweight="bold")
        ax.set_title(_outlier_label(stat), loc="right", fontsize=9)
    for ax in axes[len(stats) :]:
        ax.set_visible(False)
    figure.suptitle(
        wrap(
            "Box plots, each in the column's own units: box = middle half of the values, "
            "whiskers = 1.5 IQR, dots = outliers",
            figure,
        )
    )
    return figure


@styled
def plot_boxes_standardised(stats: list[OutlierStats]) -> Figure:
    """All box plots on one standardised axis, most outlying column on top.

    Each value becomes ``(value - mean) / standard deviation``; the 1.5 IQR rule is
    unchanged by this rescaling, so the same values are outliers as on the raw scale.

    Args:
        stats: From :func:`reports.eda.stats.outlier_stats` (columns with zero spread
            are left out: they cannot be standardised).

    Returns:
        The figure.
    """
    usable = sorted((s for s in stats if s.std > 0), key=lambda s: s.share)
    figure = new_figure(12, 0.33 * len(usable) + 1.7)
    ax = figure.add_subplot()
    boxes = [_standardised(s) for s in usable]
    ax.bxp(
        boxes,
        orientation="horizontal",
        widths=0.6,
        patch_artist=True,
        boxprops={"facecolor": "#C6D4E8"},
        medianprops={"color": "black"},
        flierprops=_FLIERS,
    )
    extreme = max(
        (max(abs(b["whislo"]), abs(b["whishi"]), *np.abs(b["fliers"]), 0) for b in boxes), default=0
    )
    label = "standardised value: (value − mean) / standard deviation"
    if extreme > 10:
        # A few extreme columns would squash every box into a line on a linear axis.
        ax.set_xscale("symlog", linthresh=3, linscale=1.5)
        low, high = ax.get_xlim()
        ticks = [t for t in SYMLOG_TICKS if low <= t <= high]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        for edge in (-3, 3):
            ax.axvline(edge, color=LIGHT_GREY, linestyle=":", linewidth=1)
        label += "  [linear within ±3, logarithmic beyond]"
    ax.axvline(0, color=GREY, linewidth=0.8)
    ax.set_xlabel(label)
    counts_axis = ax.twinx()
    counts_axis.spines["right"].set_visible(True)
    counts_axis.set_ylim(ax.get_ylim())
    counts_axis.set_yticks(
        ax.get_yticks(),
        [f"{count(s.outliers)} ({pct(s.share)})" if s.outliers else "none" for s in usable],
    )
    counts_axis.set_ylabel("outliers by the 1.5 IQR rule")
    ax.set_title("All numeric columns on one standardised scale (most outliers on top)")
    return figure


# --- 8. correlations ----------------------------------------------------------------------


@styled
def plot_correlations(
    corr: Correlations, target_label: str, annotate_all_up_to: int = 24
) -> Figure:
    """Lower-triangle heatmap of Pearson correlations, the target as the last row.

    Args:
        corr: From :func:`reports.eda.stats.correlations`.
        target_label: Axis label for the target row/column.
        annotate_all_up_to: Annotate every cell up to this many columns; beyond, only
            the target row and cells with ``|r| >= 0.3`` (the others would be unreadably
            small). The diagonal (always 1) is never annotated.

    Returns:
        The figure.
    """
    matrix = corr.matrix
    k = len(matrix)
    # At most about 1,050 pixels high: cells shrink as columns are added, then text goes.
    side = min(max(0.5 * k + 2.5, 6.0), 10.5)
    figure = new_figure(side + 1.6, side)
    ax = figure.add_subplot()
    values = matrix.to_numpy(dtype=float)
    masked = np.where(np.tril(np.ones_like(values, dtype=bool)), values, np.nan)
    image = ax.imshow(masked, cmap="RdBu_r", vmin=-1, vmax=1)
    labels = [target_label if name == corr.target else name for name in matrix.columns]
    ax.set_xticks(range(k), labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels)
    ax.spines[:].set_visible(False)
    fontsize = 8 if k <= 16 else 7
    for i in range(k):
        for j in range(i):
            r = values[i, j]
            small = k > annotate_all_up_to and abs(r) < 0.3 and i != k - 1
            if np.isnan(r) or small:
                continue
            ax.text(
                j,
                i,
                f"{r:.2f}".replace("-0.00", "0.00"),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if abs(r) > 0.6 else "black",
            )
    ax.axhline(k - 1.5, color="black", linewidth=1)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("Pearson correlation r")
    figure.suptitle(
        wrap("Correlations of the numeric features and the target (training split)", figure)
    )
    return figure


# --- 9. target over time ------------------------------------------------------------------


@styled
def plot_timeline(line: Timeline, overall: float, positive_label: str, date_column: str) -> Figure:
    """The target rate per day, week or month over the training period.

    Args:
        line: From :func:`reports.eda.stats.timeline`.
        overall: The target rate over all training rows.
        positive_label: Name of class 1.
        date_column: Name of the date column.

    Returns:
        The figure.
    """
    figure = new_figure(12, 4.6)
    ax = figure.add_subplot()
    table = line.table
    ax.plot(table["start"], table["rate"], color=RED, linewidth=1.5)
    thin = table["rows"] < MIN_PERIOD_ROWS
    ax.plot(table.loc[~thin, "start"], table.loc[~thin, "rate"], "o", color=RED, markersize=3.5)
    if thin.any():
        ax.plot(
            table.loc[thin, "start"],
            table.loc[thin, "rate"],
            "o",
            markerfacecolor="white",
            markeredgecolor=RED,
            markersize=4.5,
            label=f"fewer than {MIN_PERIOD_ROWS} rows (unreliable)",
        )
        ax.legend(loc="upper left", frameon=False)
    ax.axhline(overall, color=GREY, linestyle="--", linewidth=1.2)
    ax.annotate(
        f"overall {pct(overall)}",
        (0.995, overall),
        xycoords=("axes fraction", "data"),
        xytext=(0, 4),
        textcoords="offset points",
        ha="right",
        fontsize=9,
        color="#555555",
    )
    # Short monthly lines get one tick per month; the automatic locator would add mid-months.
    if line.unit == "month" and len(table) <= 24:
        locator = mdates.MonthLocator()
    else:
        locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(0, min(1.0, float(table["rate"].max()) * 1.15 + 0.02) if len(table) else 1)
    ax.set_xlabel(f"{date_column} ({line.unit} starting)")
    ax.set_ylabel(f"share '{positive_label}'")
    ax.set_title(f"Share of '{positive_label}' per {line.unit} over the training period")
    return figure


PERIOD_AXIS = {
    "year": "year",
    "month": "month",
    "weekday": "day of the week",
    "hour": "hour of the day (0-23)",
}


@styled
def plot_period_rates(
    periods: list[PeriodRates], overall: float, positive_label: str, date_column: str
) -> Figure:
    """Bar charts of the target rate by each calendar period; thin buckets greyed out.

    Args:
        periods: From :func:`reports.eda.stats.rates_by_period`.
        overall: The target rate over all training rows.
        positive_label: Name of class 1.
        date_column: Name of the date column.

    Returns:
        The figure.
    """
    wide = [p for p in periods if len(p.table) > 12]
    narrow = [p for p in periods if len(p.table) <= 12]
    rows = (1 if narrow else 0) + len(wide)
    figure = new_figure(12, 3.9 * rows + 0.6)
    grid = figure.add_gridspec(rows, max(len(narrow), 1))
    slots = [grid[0, i] for i in range(len(narrow))] + [
        grid[(1 if narrow else 0) + i, :] for i in range(len(wide))
    ]
    first = None
    for slot, rates in zip(slots, [*narrow, *wide], strict=True):
        ax = figure.add_subplot(slot, sharey=first)
        first = first or ax
        table = rates.table
        colors = [RED if ok else LIGHT_GREY for ok in table["reliable"]]
        bars = ax.bar(table["label"], table["rate"], color=colors, width=0.7)
        for bar, ok in zip(bars, table["reliable"], strict=True):
            if not ok:
                bar.set_hatch("//")
        if len(table) <= 12:
            for bar, rate in zip(bars, table["rate"], strict=True):
                ax.annotate(
                    pct(rate, 0),
                    (bar.get_x() + bar.get_width() / 2, rate),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
        ax.axhline(overall, color=GREY, linestyle="--", linewidth=1.2)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel(f"{date_column}: {PERIOD_AXIS[rates.period]}")
        ax.set_ylabel(f"share '{positive_label}'")
        ax.set_title(f"by {PERIOD_AXIS[rates.period]}")
    if first is not None:
        top = max(float(p.reliable()["rate"].max()) if len(p.reliable()) else 0 for p in periods)
        first.set_ylim(0, min(1.0, max(top, overall) * 1.2 + 0.02))
    handles = [
        Patch(color=RED, label="share in the bucket"),
        Line2D([], [], color=GREY, linestyle="--", label=f"overall {pct(overall)}"),
    ]
    if any((~p.table["reliable"]).any() for p in periods):
        handles.insert(
            1,
            Patch(
                facecolor=LIGHT_GREY,
                hatch="//",
                label=f"fewer than {MIN_PERIOD_ROWS} rows (unreliable)",
            ),
        )
    figure.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    figure.suptitle(f"Share of '{positive_label}' by calendar period of '{date_column}'")
    return figure
