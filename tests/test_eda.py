"""EDA stage: grouping, data-driven comments, filtered charts, the report, train-only input."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import task
from prefect.cache_policies import NO_CACHE

from reports.eda import run_eda
from reports.eda.fmt import pct
from reports.eda.sections import balance_section, categories_section, grouping_section
from reports.eda.stats import (
    correlations,
    fit_preprocessor,
    missing_summary,
    numeric_shapes,
    outlier_stats,
    rare_grouping,
)
from tabular.config import DatasetConfig
from tabular.datasets import prepare, split_data
from tabular.features import INFREQUENT, OTHER, build_preprocessor, plan_encoding
from tests.conftest import make_toy_frame, toy_config_dict, write_toy_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(**overrides) -> DatasetConfig:
    # The EDA frames built here carry no order_id column.
    return DatasetConfig.model_validate(toy_config_dict(**{"id_columns": [], **overrides}))


def _prepared(frame: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    data, _ = prepare(frame, config)
    return data


def _frame_with_levels(levels: dict[str, int], positives: int | None = None, seed: int = 0):
    """A frame whose ``channel`` column has exactly the given level counts."""
    rng = np.random.default_rng(seed)
    channel = np.repeat(list(levels), list(levels.values()))
    rng.shuffle(channel)
    rows = len(channel)
    positives = rows // 4 if positives is None else positives
    returned = np.zeros(rows, dtype=int)
    returned[rng.choice(rows, size=positives, replace=False)] = 1
    return pd.DataFrame(
        {
            "order_date": pd.date_range("2021-01-01", periods=rows, freq="3h").strftime(
                "%Y-%m-%d %H:%M"
            ),
            "channel": channel,
            "region": rng.choice([f"r{i}" for i in range(5)], size=rows),
            "price": rng.gamma(2.0, 30.0, size=rows).round(2),
            "quantity": rng.integers(1, 6, size=rows),
            "returned": returned,
        }
    )


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


# --- rare-category grouping -------------------------------------------------------------------


def test_levels_under_3_percent_become_other_with_pies_before_and_after(tmp_path):
    # 1,000 rows: "post" sits exactly on 3 % and stays; "fax" (2 %) and "telex" (0.9 %) go.
    levels = {"web": 470, "store": 300, "phone": 171, "post": 30, "fax": 20, "telex": 9}
    config = _config()
    train = _prepared(_frame_with_levels(levels), config)
    plan = plan_encoding(train, config)

    channel = next(g for g in rare_grouping(train, plan) if g.column == "channel")
    assert channel.applied
    assert channel.grouped_levels == ["fax", "telex"]
    assert channel.after.to_dict() == {
        "web": 470,
        "store": 300,
        "phone": 171,
        "post": 30,
        OTHER: 29,
    }
    assert channel.other_share == pytest.approx(0.029)

    # The training pipeline's own one-hot block sees exactly these levels: one definition.
    preprocessor = build_preprocessor(plan, scale=False).fit(
        train[plan.input_columns], train["returned"]
    )
    one_hot = {  # scikit-learn names the column of the grouped levels "infrequent_sklearn"
        name.removeprefix("onehot__channel_").replace(INFREQUENT, OTHER)
        for name in preprocessor.get_feature_names_out()
        if name.startswith("onehot__channel_")
    }
    assert one_hot == set(channel.after.index)

    section = grouping_section(train, plan, tmp_path)
    block = next(b for b in section.blocks if b.figures and "channel" in b.figures[0].name)
    before, after = block.figures
    assert before.name.endswith("_before.png") and after.name.endswith("_after.png")
    assert _is_png(before) and _is_png(after)
    assert "fax" in block.comment and "telex" in block.comment
    assert "2.9%" in block.comment
    # The region column has no rare level here (5 even levels): no pies for it.
    assert not any("region" in path.name for path in section.figures)


def test_grouping_comment_changes_when_the_data_changes(tmp_path):
    config = _config()
    comments = []
    for levels in (
        {"web": 600, "store": 380, "fax": 20},
        {"web": 500, "store": 440, "fax": 25, "telex": 20, "mail": 15},
    ):
        train = _prepared(_frame_with_levels(levels), config)
        section = grouping_section(train, plan_encoding(train, config), tmp_path)
        comments.append(section.blocks[0].comment)
    assert "fax" in comments[0] and "2.0%" in comments[0]
    assert "telex" in comments[1] and "6.0%" in comments[1]
    assert comments[0] != comments[1]


# --- comments carry the real numbers ------------------------------------------------------


@pytest.mark.parametrize("positives", [250, 123])
def test_balance_comment_states_the_class_share_and_weight(tmp_path, positives):
    config = _config()
    frame = _frame_with_levels({"web": 600, "store": 400}, positives=positives)
    train = _prepared(frame, config)
    share = frame["returned"].mean()
    weight = (len(frame) - positives) / positives

    section = balance_section(train, config, tmp_path)

    assert pct(share) in section.comment  # e.g. "25.0%" or "12.3%", computed from the frame
    assert f"{weight:.2f}" in section.comment
    assert "ROC-AUC" in section.comment and "average precision" in section.comment
    assert _is_png(section.figures[0])


def test_balanced_target_needs_no_weighting(tmp_path):
    config = _config()
    train = _prepared(_frame_with_levels({"web": 600, "store": 400}, positives=480), config)
    comment = balance_section(train, config, tmp_path).comment
    assert "48.0%" in comment
    assert "roughly balanced" in comment and "scale_pos_weight" not in comment


def test_distribution_verdicts_follow_the_data():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "bell": rng.normal(50, 10, size=20_000),
            "tail": rng.lognormal(0, 1, size=20_000),
            "count": rng.integers(1, 4, size=20_000),
        }
    )
    shapes = {s.column: s for s in numeric_shapes(frame, list(frame), 5_000, seed=1)}
    assert shapes["bell"].shape == "gaussian"
    assert shapes["tail"].shape == "skewed" and "right" in shapes["tail"].verdict
    assert shapes["tail"].skewness == pytest.approx(frame["tail"].skew())
    assert shapes["count"].shape == "discrete"


def test_outlier_counts_follow_the_iqr_rule():
    values = np.concatenate([np.arange(1, 101, dtype=float), [500.0, 600.0, -300.0]])
    frame = pd.DataFrame({"x": values})
    (stat,) = outlier_stats(frame, ["x"])
    q1, q3 = np.percentile(values, [25, 75])
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    assert stat.n_high == int((values > high).sum()) == 2
    assert stat.n_low == int((values < low).sum()) == 1
    assert stat.share == pytest.approx(3 / len(values))


def test_missing_handling_is_read_from_the_fitted_pipeline():
    config = _config()
    frame = _frame_with_levels({"web": 600, "store": 400})
    frame.loc[::10, "price"] = np.nan  # 10 % missing
    frame.loc[1::20, "channel"] = np.nan  # 5 % missing: "Missing" stays a level of its own
    train = _prepared(frame, config)
    plan = plan_encoding(train, config)
    table = missing_summary(
        train, config, plan, fit_preprocessor(train, plan, "returned", 0)
    ).set_index("column")

    assert table.loc["price", "missing"] == 100
    median = train["price"].median()
    assert f"{median:.3g}" in table.loc["price", "handling"]
    assert "'was missing' column" in table.loc["price", "handling"]
    assert "none missing" in table.loc["quantity", "handling"]
    assert "own one-hot column" in table.loc["channel", "handling"]
    assert table.loc["price", "rate_missing"] == pytest.approx(
        train.loc[train["price"].isna(), "returned"].mean()
    )


def _hand_written_pearson(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The EDA's former hand-written pairwise Pearson (kept here as the reference)."""
    values = frame.to_numpy(dtype=float)
    present = ~np.isnan(values)
    centred = np.where(present, values - frame.mean().to_numpy(dtype=float), 0.0)
    mask = present.astype(float)

    def gram(left, right):
        return np.einsum("ij,ik->jk", left, right, optimize=False)

    n = gram(mask, mask)
    sum_a, sum_aa, sum_ab = gram(centred, mask), gram(centred**2, mask), gram(centred, centred)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = (n * sum_aa - sum_a**2) * (n * sum_aa - sum_a**2).T
        r = np.clip((n * sum_ab - sum_a * sum_a.T) / np.sqrt(spread), -1.0, 1.0)
    r[(n < 2) | ~(spread > 0)] = np.nan
    return r, n.astype(int)


def test_correlations_from_pandas_equal_the_former_hand_written_ones():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(3000, 4)), columns=list("abcd"))
    frame["b"] += frame["a"]
    frame.loc[rng.choice(3000, 900, replace=False), "a"] = np.nan
    frame.loc[rng.choice(3000, 400, replace=False), "c"] = np.nan
    frame["flat"] = 1.0  # no spread: no correlation
    frame["y"] = (frame["b"].fillna(0) + rng.normal(size=3000) > 0).astype(int)
    corr = correlations(frame, ["a", "b", "c", "d", "flat"], "y")
    r, n = _hand_written_pearson(frame[["a", "b", "c", "d", "flat", "y"]])
    np.testing.assert_allclose(corr.matrix.to_numpy(), r, atol=1e-12)
    pairs = corr.pairs.set_index(["first", "second"])
    assert (
        pairs.loc[("a", "c"), "rows"]
        == n[0, 2]
        == int((frame["a"].notna() & frame["c"].notna()).sum())
    )
    assert "flat" not in set(corr.pairs["first"]) | set(corr.pairs["second"])
    assert corr.with_target.index[0] == "b"


def _hand_written_boxes(values: np.ndarray) -> dict:
    """The EDA's former hand-written box-plot numbers (kept here as the reference)."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    inside = values[(values >= low) & (values <= high)]
    outside = values[(values < low) | (values > high)]
    return {
        "q1": q1, "median": median, "q3": q3, "low_fence": low, "high_fence": high,
        "whislo": inside.min(), "whishi": inside.max(), "fliers": np.unique(outside),
        "n_low": int((values < low).sum()), "n_high": int((values > high).sum()),
    }  # fmt: skip


def test_box_numbers_from_matplotlib_equal_the_former_hand_written_ones():
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(
        {
            "skewed": rng.lognormal(0, 1, size=5000),
            "both_sides": np.concatenate([rng.normal(size=4990), [-40, -30, 25, 25, 60] * 2]),
            "mostly_zero": np.where(rng.random(5000) < 0.8, 0.0, rng.integers(1, 9, 5000)),
            "gaps": np.where(rng.random(5000) < 0.3, np.nan, rng.normal(10, 2, 5000)),
        }
    )
    for stat in outlier_stats(frame, list(frame)):
        expected = _hand_written_boxes(frame[stat.column].dropna().to_numpy())
        got = {
            "q1": stat.q1, "median": stat.median, "q3": stat.q3,
            "low_fence": stat.low_fence, "high_fence": stat.high_fence,
            "whislo": stat.box["whislo"], "whishi": stat.box["whishi"],
            "fliers": stat.box["fliers"], "n_low": stat.n_low, "n_high": stat.n_high,
        }  # fmt: skip
        np.testing.assert_equal(got, expected)
        assert stat.outliers == stat.n_low + stat.n_high > 0


# --- readable charts ----------------------------------------------------------------------


def test_high_cardinality_column_gets_a_filtered_top_n_chart(tmp_path):
    config = _config()
    frame = make_toy_frame(rows=1200, seed=2)  # region has 50 levels, channel 4
    train = _prepared(frame, config)

    section = categories_section(train, config, tmp_path)

    names = [path.name for path in section.figures]
    assert names.count("03_categories_channel.png") == 1
    assert not any(name.startswith("03_categories_channel_") for name in names)
    full = names.index("03_categories_region_all.png")
    assert names[full + 1] == "03_categories_region_top20.png"  # the filtered chart follows
    assert all(_is_png(tmp_path / name) for name in names)

    top_block = next(b for b in section.blocks if b.figures[0].name.endswith("_top20.png"))
    counts = train["region"].value_counts()
    leader = counts.index[0]
    assert leader in top_block.comment
    assert pct(counts.iloc[0] / len(train)) in top_block.comment
    assert f"{counts.size - 20} levels not shown" in top_block.comment


# --- the whole report ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory):
    config = _config()
    data = _prepared(make_toy_frame(rows=800, seed=4), config)
    train = split_data(data, config, config.seed).train
    out = tmp_path_factory.mktemp("eda")
    report = run_eda(train, config, plan_encoding(train, config), out, {"missing returned": 3})
    return report, train


def test_report_has_all_nine_groups_each_chart_followed_by_a_comment(toy_report):
    report, train = toy_report
    assert [s.key for s in report.sections] == [
        "balance",
        "distributions",
        "categories",
        "grouping",
        "missing",
        "encoding",
        "outliers",
        "correlations",
        "time",
    ]
    page = report.html_path.read_text(encoding="utf-8")
    assert page.count("<section id=") == 9
    blocks = re.findall(r'<div class="block">(.*?)</div></div>', page, re.S)
    assert len(blocks) == sum(len(s.blocks) for s in report.sections)
    for block in blocks:
        # Every chart and table is followed by its comment, and the comment is not empty.
        assert re.search(r'<div class="comment">\s*<(p|ul)>\s*\S', block), block[:200]
        assert block.rfind('<div class="comment">') > max(
            block.rfind("<img"), block.rfind("<table")
        )
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(report.figures) >= 12
    assert all(_is_png(report.html_path.parent / src) for src in sources)
    text = html.unescape(page)
    assert f"{len(train):,} rows" in text
    assert "3 rows with no 'returned' were dropped" in text


def test_markdown_summary_has_one_line_per_section(toy_report):
    report, train = toy_report
    lines = [line for line in report.markdown.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 9  # header + one row per section
    share = train["returned"].mean()
    assert pct(share) in report.markdown
    assert str(report.html_path) in report.markdown


def test_figures_do_not_leak_into_pyplot(toy_report):
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
def test_other_dataset_shapes_still_give_nine_commented_sections(tmp_path):
    # No categorical column, dates without a time of day, a constant and an empty column.
    config = _config(categorical=[], numeric=["price", "quantity", "flat", "blank"])
    frame = make_toy_frame(rows=300, seed=6).assign(flat=1.0, blank=np.nan)
    frame["order_date"] = frame["order_date"].str[:10]
    train = _prepared(frame, config)
    report = run_eda(train, config, plan_encoding(train, config), tmp_path)
    assert len(report.sections) == 9
    assert all(block.comment.strip() for s in report.sections for block in s.blocks)
    assert "no categorical feature column" in report.section("categories").comment
    periods = report.section("time").comment
    assert "By month" in periods and "By hour" not in periods  # no time of day to compare
    blank = report.section("distributions").comment
    assert "**blank**: no values" in blank and "**flat**: a single value" in blank


# --- the flow passes the development rows only (never the test rows) ---------------------------


SENTINEL_PRICE = 9876.54


class _StopAfterEda(Exception):
    """Ends the flow once its EDA step has run (training is not needed)."""


@pytest.mark.slow
def test_flow_eda_never_reads_test_rows(prefect_harness, tmp_path, monkeypatch):
    import flows.pipeline as pipeline

    frame = make_toy_frame(rows=600, seed=9)
    later = pd.to_datetime(frame["order_date"]) >= "2021-05-01"
    # Values that exist only in the test months: if the EDA saw any of those rows, they
    # would show in the maximum price, the category lists or the level counts. (The
    # validation month is a development month: the EDA sees it, as the final models do.)
    frame.loc[later, "price"] = SENTINEL_PRICE
    frame.loc[later, "channel"] = "zz-sentinel"
    frame.loc[later, "region"] = "r-sentinel"
    config_path = write_toy_dataset(
        tmp_path / "data",
        frame,
        split={"method": "time", "validation_start": "2021-04-01", "test_start": "2021-05-01"},
    )
    seen = {}
    real_task = pipeline.eda_task

    @task(name="eda", cache_policy=NO_CACHE)
    def spy(train, config, plan, out_dir, dropped=None, markers=None):
        seen["train"] = train.copy()
        seen["report"] = real_task.fn(train, config, plan, out_dir, dropped, markers)
        raise _StopAfterEda

    @task(name="train", cache_policy=NO_CACHE)
    def stop(split, config, plan, seed, cluster=None):
        # The EDA runs alongside the training: end the flow here once the EDA is done.
        deadline = time.monotonic() + 120
        while "report" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        raise _StopAfterEda

    monkeypatch.setattr(pipeline, "eda_task", spy)
    monkeypatch.setattr(pipeline, "train_task", stop)
    with pytest.raises(_StopAfterEda):
        pipeline.training_pipeline(
            config_path=str(config_path), artifacts_dir=str(tmp_path / "runs")
        )

    train_rows = int((~later).sum())
    received = seen["train"]
    assert len(received) == train_rows
    assert received["order_date"].max() < pd.Timestamp("2021-05-01")
    page = html.unescape(seen["report"].html_path.read_text(encoding="utf-8"))
    for sentinel in ("9876", "9,876", "zz-sentinel", "r-sentinel"):
        assert sentinel not in page
    assert f"Computed on the training split only: {train_rows:,} rows" in page
    assert f"{frame.loc[~later, 'price'].max():,.1f}" in page  # the train-period maximum
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert _is_png(seen["report"].html_path.parent / src)
