"""Figures and the written report of the SHAP and retraining stage.

Each figure and table is followed by a comment computed from the numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reports.page import Section, Table, one_block_section, render_html
from tabular.explain import Comparison, Selection, ShapResult


@dataclass
class ExplainOutputs:
    """Files written by :func:`write_explain_report`.

    Attributes:
        out_dir: The explain folder.
        html: The HTML report.
        figures: PNG paths by name.
        tables: CSV paths by name.
        markdown: A short Markdown summary (for a Prefect artifact).
        sections: The report's sections (the PDF reuses them).
    """

    out_dir: Path
    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""
    sections: list[Section] = field(default_factory=list)


def plot_importance_bar(
    result: ShapResult, path: Path, selection: Selection | None = None, top: int | None = None
) -> Path:
    """Draw mean |SHAP| per original column as horizontal bars, kept columns highlighted.

    Args:
        result: SHAP values of one model.
        path: PNG to write.
        selection: When given, kept columns are drawn in a darker colour.
        top: Draw only the most important ``top`` columns (``None``: all).

    Returns:
        The path written.
    """
    importance = result.importance.iloc[:top].iloc[::-1]
    kept = set(selection.columns) if selection else set(importance.index)
    colours = ["#1f77b4" if c in kept else "#b0b0b0" for c in importance.index]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(importance) + 1.6))
    ax.barh(importance.index, importance.to_numpy(), color=colours)
    ax.set_xlabel(f"mean |SHAP value| ({result.output})")
    title = f"{result.label}: feature importance by original column"
    if len(importance) < len(result.importance):
        title += f" (top {len(importance)} of {len(result.importance)})"
    if selection:
        title += f"\nblue: {len(selection.columns)} kept by the selection rule, grey: dropped"
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def date_part(result: ShapResult, column: str) -> tuple[pd.Series, str]:
    """Return the calendar part of a date column that carries most of its SHAP importance.

    A date enters the models as several parts (month, weekday, hour, ...); the one whose
    encoded column has the largest mean |SHAP| is the one worth plotting the date by.

    Args:
        result: SHAP values of one model.
        column: A date input column.

    Returns:
        That part of each explained row's date (floats), and the part's name.
    """
    prefix = f"date__{column}_"
    strength = {
        name.removeprefix(prefix): float(np.abs(result.encoded_values[:, i]).mean())
        for i, name in enumerate(result.encoded_names)
        if name.startswith(prefix)
    }
    part = max(strength, key=strength.get) if strength else "dayofyear"
    return getattr(result.data[column].dt, part).astype(float), part


def plot_beeswarm(
    result: ShapResult, path: Path, positive: str = "class 1", top: int = 15, seed: int = 0
) -> Path:
    """Draw a beeswarm: each dot a row's SHAP value, coloured by the column's value.

    Numeric columns are coloured from low (blue) to high (red) by their rank, a date by its
    most important calendar part (:func:`date_part`); categorical columns, whose levels have
    no order, are drawn in grey.

    Args:
        result: SHAP values of one model.
        path: PNG to write.
        positive: Name of class 1 (the config's second target label).
        top: Number of most important columns shown.
        seed: Seed of the vertical jitter.

    Returns:
        The path written.
    """
    columns = list(result.importance.index[:top])[::-1]
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(9.5, 0.42 * len(columns) + 1.8))
    scatter = None
    for position, column in enumerate(columns):
        shap_values = result.values[column].to_numpy()
        raw = result.data[column]
        jitter = rng.uniform(-0.3, 0.3, size=len(shap_values))
        numeric = pd.to_numeric(raw, errors="coerce") if raw.dtype != object else None
        if pd.api.types.is_datetime64_any_dtype(raw):
            numeric = date_part(result, column)[0]
        if numeric is not None and numeric.notna().any():
            colour = numeric.rank(pct=True).to_numpy()
            scatter = ax.scatter(
                shap_values, position + jitter, c=colour, cmap="coolwarm", s=6, alpha=0.6,
                vmin=0, vmax=1, linewidths=0,
            )  # fmt: skip
        else:
            ax.scatter(
                shap_values, position + jitter, color="#888888", s=6, alpha=0.5, linewidths=0
            )
    ax.set_yticks(range(len(columns)), columns)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(
        f"SHAP value ({result.output}): right raises the predicted chance of '{positive}'"
    )
    ax.set_title(f"{result.label}: SHAP values per row (beeswarm, top {len(columns)} columns)")
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=ax, fraction=0.03, pad=0.01)
        bar.set_label("column value (rank): low → high; grey = categorical")
    return _save(fig, path)


def plot_dependence(result: ShapResult, path: Path, top: int = 3) -> Path:
    """Draw SHAP value against the column's value for the top columns.

    Args:
        result: SHAP values of one model.
        path: PNG to write.
        top: Number of columns (one panel each).

    Returns:
        The path written.
    """
    columns = list(result.importance.index[:top])
    fig, axes = plt.subplots(1, len(columns), figsize=(5.2 * len(columns), 4.3), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        raw = result.data[column]
        shap_values = result.values[column]
        if pd.api.types.is_datetime64_any_dtype(raw):
            raw, part = date_part(result, column)
            xlabel = f"{column}: {part}"
        else:
            xlabel = column
        if raw.dtype == object:
            order = shap_values.groupby(raw.fillna("Missing")).mean().sort_values()
            order = order.iloc[-12:] if len(order) > 12 else order
            groups = [shap_values[raw.fillna("Missing") == level] for level in order.index]
            ax.boxplot(groups, vert=False, showfliers=False)
            ax.set_yticks(range(1, len(order) + 1), order.index)
            ax.set_xlabel("SHAP value")
            ax.set_ylabel(column)
        else:
            ax.scatter(raw, shap_values, s=6, alpha=0.4, color="#1f77b4", linewidths=0)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"SHAP value ({result.output})")
        ax.set_title(f"dependence: {column}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.label}: how the top {len(columns)} columns move the prediction")
    return _save(fig, path)


def write_explain_report(
    shap_results: list[ShapResult],
    selection: Selection,
    comparisons: list[Comparison],
    out_dir: Path,
    config,
) -> ExplainOutputs:
    """Write the SHAP figures, the comparison tables and ``explain.html``.

    Args:
        shap_results: SHAP values of the served models (the deciding one first).
        selection: The selected columns.
        comparisons: Full vs selected-feature models.
        out_dir: The explain folder (created if needed).
        config: The dataset config: the report speaks of its rows and labels.

    Returns:
        The paths written and a Markdown summary.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = ExplainOutputs(out_dir=out_dir, html=out_dir / "explain.html")
    sections: list[Section] = []
    positive = config.target.labels[1]

    for index, result in enumerate(shap_results):
        key = result.family
        bar = plot_importance_bar(
            result, out_dir / f"shap_bar_{key}.png", selection if index == 0 else None
        )
        swarm = plot_beeswarm(result, out_dir / f"shap_beeswarm_{key}.png", positive)
        dependence = plot_dependence(result, out_dir / f"shap_dependence_{key}.png")
        outputs.figures.update(
            {f"bar_{key}": bar, f"beeswarm_{key}": swarm, f"dependence_{key}": dependence}
        )
        importance = result.importance
        outputs.tables[f"importance_{key}"] = out_dir / f"shap_importance_{key}.csv"
        importance.rename("mean_abs_shap").to_csv(
            outputs.tables[f"importance_{key}"], index_label="column"
        )
        shares = importance / importance.sum()
        top3 = ", ".join(f"{c} ({s:.0%})" for c, s in shares.iloc[:3].items())
        sections.append(
            one_block_section(
                f"{result.label}: SHAP importance (bar plot)",
                f"{result.explainer} on {len(result.values):,} rows of the last validation "
                f"period, values in "
                f"{result.output} (base value {result.base_value:.3f}), one-hot levels and "
                f"missing-value flags summed back to their {importance.size} original columns. "
                f"The top three columns, {top3}, carry {shares.iloc[:3].sum():.0%} of the total "
                f"mean |SHAP|; the {max(importance.size - 5, 0)} columns after the top five share "
                f"{shares.iloc[5:].sum():.0%}. Explained in {result.seconds:.1f} s.",
                [bar],
            )
        )
        direction = _directions(result, positive)
        sections.append(
            one_block_section(
                f"{result.label}: beeswarm and dependence plots",
                f"Each dot is one {config.row_noun[0]}: its horizontal position is how much "
                "that column moved the prediction. " + direction,
                [swarm, dependence],
            )
        )

    selection_table = pd.DataFrame(
        {
            "column": selection.columns + selection.dropped,
            "kept": [True] * len(selection.columns) + [False] * len(selection.dropped),
        }
    )
    outputs.tables["selection"] = out_dir / "selection.csv"
    selection_table.to_csv(outputs.tables["selection"], index=False)
    sections.append(
        one_block_section(
            "Feature selection",
            f"Rule: {selection.rule}, measured on development rows only. It keeps "
            f"{len(selection.columns)} of {len(selection.columns) + len(selection.dropped)} "
            f"columns ({selection.coverage:.1%} of total importance): "
            f"{', '.join(selection.columns)}. Dropped: {', '.join(selection.dropped) or 'none'}.",
        )
    )

    for comparison in comparisons:
        table = comparison.table
        outputs.tables[f"comparison_{comparison.family}"] = (
            out_dir / f"comparison_{comparison.family}.csv"
        )
        table.to_csv(outputs.tables[f"comparison_{comparison.family}"], index=False)
        sections.append(
            one_block_section(
                f"{comparison.label}: all features vs selected features",
                comparison_comment(comparison),
                tables=[comparison_table(table)],
            )
        )

    summary = {
        "selection": {
            "columns": selection.columns,
            "dropped": selection.dropped,
            "rule": selection.rule,
        },
        "shap_seconds": {r.family: r.seconds for r in shap_results},
        "comparisons": {c.family: c.table.to_dict("records") for c in comparisons},
    }
    (out_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8"
    )
    outputs.sections = sections
    outputs.html.write_text(
        render_html(
            "SHAP and feature selection",
            "SHAP feature importance, selection and retraining",
            sections,
            out_dir,
        ),
        encoding="utf-8",
    )
    outputs.markdown = "\n".join(
        ["## SHAP and feature selection", "", sections[-len(comparisons) - 1].comments[0], ""]
        + [f"- **{c.label}**: {comparison_comment(c)}" for c in comparisons]
    )
    return outputs


def _directions(result: ShapResult, positive: str) -> str:
    sentences = []
    for column in result.importance.index[:3]:
        raw = result.data[column]
        values = result.values[column]
        if pd.api.types.is_datetime64_any_dtype(raw):
            raw, part = date_part(result, column)
            column = f"{column} ({part})"
        if raw.dtype == object:
            means = values.groupby(raw.fillna("Missing")).mean().sort_values()
            sentences.append(
                f"For {column}, {means.index[-1]} raises the chance of '{positive}' most (mean SHAP "
                f"{means.iloc[-1]:+.3f}) and {means.index[0]} lowers it most ({means.iloc[0]:+.3f})."
            )
        else:
            numeric = pd.to_numeric(raw, errors="coerce")
            corr = pd.Series(values.to_numpy()).corr(
                pd.Series(numeric.to_numpy()), method="spearman"
            )
            trend = (
                "higher values raise"
                if corr > 0.1
                else "higher values lower"
                if corr < -0.1
                else "no monotone effect on"
            )
            sentences.append(
                f"For {column}, {trend} the predicted chance of '{positive}' (Spearman correlation "
                "between value and "
                f"SHAP {corr:+.2f}; SHAP spans {values.min():+.3f} to {values.max():+.3f})."
            )
    return " ".join(sentences)


def comparison_table(table: pd.DataFrame) -> Table:
    """The full-against-selected comparison as a report table.

    Args:
        table: :attr:`tabular.explain.Comparison.table`.

    Returns:
        Its columns worth reading, floats to four decimals.
    """
    shown = table[
        [
            "model", "split", "accuracy", "precision", "recall", "f1", "roc_auc",
            "average_precision", "tn", "fp", "fn", "tp", "fit_seconds",
            "predict_ms_per_1000", "model_kb", "input_columns",
        ]
    ]  # fmt: skip
    return Table(shown, float_format=".4f")


def comparison_comment(comparison: Comparison) -> str:
    """Compare, in words and numbers, a model on all columns with its retrained twin.

    Args:
        comparison: The full-against-selected comparison.

    Returns:
        The comment.
    """
    table = comparison.table.set_index(["model", "split"])
    full_test = table.loc[("all features", "test")]
    small_test = table.loc[("selected features", "test")]
    full_val = table.loc[("all features", "validation")]
    small_val = table.loc[("selected features", "validation")]
    delta_auc = small_test["roc_auc"] - full_test["roc_auc"]
    delta_f1 = small_test["f1"] - full_test["f1"]
    speed = full_test["predict_ms_per_1000"] / max(small_test["predict_ms_per_1000"], 1e-9)
    size = small_test["model_kb"] / max(full_test["model_kb"], 1e-9)
    verdict = (
        "The smaller model is worth it: it loses almost nothing"
        if delta_auc > -0.005
        else "The smaller model costs accuracy"
    )
    return (
        f"With {int(small_test['input_columns'])} instead of {int(full_test['input_columns'])} input "
        f"columns, test ROC-AUC goes from {full_test['roc_auc']:.3f} to {small_test['roc_auc']:.3f} "
        f"({delta_auc:+.3f}) and F1 from {full_test['f1']:.3f} to {small_test['f1']:.3f} "
        f"({delta_f1:+.3f}); on the pooled fold predictions (validation) ROC-AUC goes from "
        f"{full_val['roc_auc']:.3f} to {small_val['roc_auc']:.3f}. Each model keeps its own "
        "threshold and calibration decision, both taken on its fold predictions. Prediction "
        f"takes {small_test['predict_ms_per_1000']:.1f} ms "
        f"per 1,000 rows instead of {full_test['predict_ms_per_1000']:.1f} ({speed:.2f}× the "
        f"speed), the model file is {size:.0%} of the full one's size and fitting took "
        f"{small_test['fit_seconds']:.1f} s instead of {full_test['fit_seconds']:.1f} s. {verdict}"
        f" ({delta_auc:+.3f} ROC-AUC on the test rows), and it needs fewer inputs from the caller."
    )


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
