"""Figures, tables and the written report of the training stage.

Everything here reads a :class:`tabular.training.TrainingResult` and writes files; every
figure and table is followed by a comment computed from the numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

from tabular.page import Table, one_block_section, render_html
from tabular.training import (
    TrainingResult,
    linear_coefficients,
    metrics_table,
    trials_table,
)

METRIC_NAMES = {"roc_auc": "ROC-AUC", "average_precision": "Average precision"}


@dataclass
class TrainingOutputs:
    """Files written by :func:`write_training_report`.

    Attributes:
        out_dir: The training folder.
        html: The HTML report.
        figures: PNG paths by name.
        tables: CSV paths by name.
        models: Saved pipelines by family.
        markdown: A short Markdown summary (for a Prefect artifact).
    """

    out_dir: Path
    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""


def _curve_panels(result: TrainingResult, path: Path, title: str, draw) -> Path:
    """One panel per family: ``draw(ax, family)`` plots it, then the shared styling is applied."""
    metric = METRIC_NAMES[result.metric]
    families = list(result.families.values())
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 4.4), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        draw(ax, family)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    fig.suptitle(title.format(metric=metric), fontsize=13)
    return _save(fig, path)


def plot_learning_curves(result: TrainingResult, path: Path) -> Path:
    """Draw train and validation scores against training rows, one panel per family.

    Args:
        result: The training result.
        path: PNG to write.

    Returns:
        The path written.
    """

    def draw(ax, family):
        curve = family.learning_curve
        ax.plot(curve.x, curve.train, "o-", label="train", color="#1f77b4")
        ax.plot(curve.x, curve.validation, "s-", label="validation", color="#d62728")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_title(f"{family.label}\nverdict: {family.verdict.label}", fontsize=11)
        ax.set_xlabel("training rows (log scale)")

    return _curve_panels(result, path, "Learning curves: {metric} against training-set size", draw)


def plot_validation_curves(result: TrainingResult, path: Path) -> Path:
    """Draw train and validation scores against one hyperparameter, one panel per family.

    Args:
        result: The training result.
        path: PNG to write.

    Returns:
        The path written.
    """

    def draw(ax, family):
        curve = family.validation_curve
        positions = range(len(curve.x))
        ax.plot(positions, curve.train, "o-", label="train", color="#1f77b4")
        ax.plot(positions, curve.validation, "s-", label="validation", color="#d62728")
        ax.set_xticks(list(positions), curve.x)
        chosen = str(family.best_params[curve.x_label])
        if chosen in curve.x:
            ax.axvline(curve.x.index(chosen), color="grey", linestyle="--", label="chosen")
        ax.set_title(f"{family.label}: {curve.x_label}", fontsize=11)
        ax.set_xlabel(f"{curve.x_label} (other hyperparameters at their best)")

    return _curve_panels(
        result, path, "Validation curves: {metric} against one hyperparameter", draw
    )


def plot_loss_curve(result: TrainingResult, path: Path) -> Path | None:
    """Draw the neural network's training loss and validation score per epoch.

    Args:
        result: The training result.
        path: PNG to write.

    Returns:
        The path written, or ``None`` when no family has a loss curve.
    """
    family = next((f for f in result.families.values() if f.loss_curve is not None), None)
    if family is None:
        return None
    curve = family.loss_curve
    epochs = list(range(1, len(curve.loss) + 1))
    fig, ax = plt.subplots(figsize=(8, 4.6))
    ax.plot(epochs, curve.loss, "o-", color="#1f77b4", label="training loss (log-loss)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training log-loss", color="#1f77b4")
    right = ax.twinx()
    right.plot(epochs, curve.validation, "s-", color="#d62728", label="validation score")
    right.set_ylabel(f"validation {METRIC_NAMES[result.metric]}", color="#d62728")
    ax.axvline(curve.best_epoch, color="grey", linestyle="--")
    ax.annotate(
        f"weights kept: epoch {curve.best_epoch}",
        xy=(curve.best_epoch, max(curve.loss)),
        xytext=(5, -5),
        textcoords="offset points",
        fontsize=9,
        va="top",
    )
    ax.grid(alpha=0.3)
    ax.set_title(f"{family.label}: loss and validation score per epoch (early stopping)")
    return _save(fig, path)


def plot_coefficients(
    result: TrainingResult, path: Path, positive: str = "class 1", top: int = 20
) -> Path | None:
    """Draw the largest logistic-regression coefficients as horizontal bars.

    Args:
        result: The training result.
        path: PNG to write.
        positive: Name of class 1 (the config's second target label).
        top: How many coefficients to show.

    Returns:
        The path written, or ``None`` when the linear model was not trained.
    """
    family = result.families.get("logistic")
    if family is None:
        return None
    table = linear_coefficients(family, top=top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.34 * len(table) + 1.6))
    colours = ["#d62728" if c > 0 else "#1f77b4" for c in table["coefficient"]]
    ax.barh(table["feature"].map(_readable_feature), table["coefficient"], color=colours)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(
        f"coefficient: change in log-odds of '{positive}' per standard deviation "
        "(per level if one-hot)"
    )
    ax.set_title(
        f"Logistic regression: the {len(table)} largest coefficients\n"
        f"red raises, blue lowers the odds of '{positive}'"
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def write_training_report(result: TrainingResult, out_dir: Path, config) -> TrainingOutputs:
    """Write tables, figures, models, verdicts and ``training.html`` into a folder.

    Args:
        result: The training result, with test metrics filled in.
        out_dir: The training folder (created if needed).
        config: The dataset config: the report speaks of its rows, labels and split.

    Returns:
        The paths written and a Markdown summary.
    """
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    outputs = TrainingOutputs(out_dir=out_dir, html=out_dir / "training.html")

    trials = trials_table(result)
    metrics = metrics_table(result)
    outputs.tables["trials"] = out_dir / "trials.csv"
    trials.to_csv(outputs.tables["trials"], index=False)
    outputs.tables["metrics"] = out_dir / "metrics.csv"
    metrics.to_csv(outputs.tables["metrics"], index=False)
    if "logistic" in result.families:
        outputs.tables["coefficients"] = out_dir / "coefficients.csv"
        linear_coefficients(result.families["logistic"], top=10_000).to_csv(
            outputs.tables["coefficients"], index=False
        )

    outputs.figures["learning_curves"] = plot_learning_curves(
        result, out_dir / "learning_curves.png"
    )
    outputs.figures["validation_curves"] = plot_validation_curves(
        result, out_dir / "validation_curves.png"
    )
    written = {
        "loss_curve": plot_loss_curve(result, out_dir / "loss_curve.png"),
        "coefficients": plot_coefficients(
            result, out_dir / "coefficients.png", config.target.labels[1]
        ),
    }
    outputs.figures.update({name: path for name, path in written.items() if path is not None})

    for key, family in result.families.items():
        outputs.models[key] = out_dir / "models" / f"{key}.joblib"
        joblib.dump(family.pipeline, outputs.models[key])
    verdicts = {
        key: {
            "label": f.verdict.label,
            "rule": f.verdict.rule,
            "evidence": f.verdict.evidence,
            "best_params": {k: _jsonable(v) for k, v in f.best_params.items()},
            "threshold": f.threshold,
        }
        for key, f in result.families.items()
    }
    summary = {
        "metric": result.metric,
        "best_family": result.best_family,
        "method": result.method,
        "seconds": result.seconds,
        "families": verdicts,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    sections = _sections(result, trials, metrics, outputs, config)
    outputs.html.write_text(_html(result, sections, config, out_dir), encoding="utf-8")
    outputs.markdown = _markdown(result)
    return outputs


def _sections(result, trials, metrics, outputs, config) -> list[tuple[str, str | None, list, str]]:
    """Return (title, figure file, tables, comment) per section."""
    metric = METRIC_NAMES[result.metric]
    positive = config.target.labels[1]
    test_part = config.split.part("test")
    families = result.families
    best = families[result.best_family]
    sections = []

    counts = trials.groupby("family").size()
    varied = {
        f.label: [p for p in f.best_params if len({str(t.params[p]) for t in f.trials}) > 1]
        for f in families.values()
    }
    spread = {
        f.label: (
            min(t.validation_score for t in f.trials),
            max(t.validation_score for t in f.trials),
        )
        for f in families.values()
    }
    comment = " ".join(
        f"{label}: {counts[label]} configurations varying {', '.join(varied[label])}; validation "
        f"{metric} from {low:.3f} to {high:.3f}."
        for label, (low, high) in spread.items()
    )
    sections.append(
        (
            "Every configuration tried",
            None,
            [
                Table(
                    rows.dropna(axis=1, how="all").drop(columns="family"),
                    caption=label,
                    float_format=".4g",
                    na_rep="",
                )
                for label, rows in trials.groupby("family", sort=False)
            ],
            f"{result.method} {comment} The chosen row of each family is marked "
            f"`chosen`; the winner overall is {best.label} "
            f"(validation {metric} {best.verdict.validation_score:.3f}).",
        )
    )

    test_rows = metrics[metrics["split"] == "test"].set_index("family")
    metric_col = result.metric
    if not test_rows.empty:
        ranking = test_rows[metric_col].sort_values(ascending=False)
        best_test = ranking.index[0]
        test_comment = (
            f"On {test_part}, scored once at the end, {best_test} ranks best with {metric} "
            f"{ranking.iloc[0]:.3f} (validation {best.verdict.validation_score:.3f} for "
            f"{best.label}). "
        )
        drops = {
            f.label: f.metrics["validation"][metric_col] - f.metrics["test"][metric_col]
            for f in families.values()
        }
        worst = max(drops, key=drops.get)
        test_comment += (
            f"Every model scores lower on the test rows than on validation (largest drop: "
            f"{worst}, {drops[worst]:.3f}), so the validation score is an optimistic estimate"
            + _why_test_differs(best, config)
            if all(d > 0 for d in drops.values())
            else f"The validation-to-test change is at most {max(drops.values()):.3f}: the "
            "validation score was a fair estimate."
        )
        f1 = test_rows["f1"]
        test_comment += (
            f" At the thresholds chosen on validation, test F1 ranges from {f1.min():.3f} to "
            f"{f1.max():.3f}, with recall {test_rows.loc[best.label, 'recall']:.1%} and precision "
            f"{test_rows.loc[best.label, 'precision']:.1%} for {best.label}: of the "
            f"{config.rows()} it flags as '{positive}', "
            f"{test_rows.loc[best.label, 'precision']:.0%} really are."
        )
    else:
        test_comment = "The test rows have not been scored."
    sections.append(
        (
            "Metrics of each family's best model (train, validation, test)",
            None,
            [Table(metrics, float_format=".4f")],
            test_comment,
        )
    )

    verdict_rows = pd.DataFrame(
        [
            {
                "family": f.label,
                "verdict": f.verdict.label,
                f"train {metric}": round(f.verdict.train_score, 4),
                f"validation {metric}": round(f.verdict.validation_score, 4),
                "gap": round(f.verdict.gap, 4),
                "evidence": f.verdict.evidence,
            }
            for f in families.values()
        ]
    )
    rule = next(iter(families.values())).verdict.rule
    sections.append(
        (
            "Verdict per family: overfitting, underfitting or OK",
            None,
            [Table(verdict_rows)],
            f"Rule: {rule}. "
            + " ".join(
                f"{f.label}: **{f.verdict.label}** ({f.verdict.evidence})."
                + _overfit_tradeoff(f, metric)
                for f in families.values()
            ),
        )
    )

    lc_comment = []
    for f in families.values():
        c = f.learning_curve
        lc_comment.append(
            f"{f.label}: from {c.x[0]:,} to {c.x[-1]:,} rows, validation {metric} moves from "
            f"{c.validation[0]:.3f} to {c.validation[-1]:.3f} and the train score from "
            f"{c.train[0]:.3f} to {c.train[-1]:.3f} "
            f"(final gap {c.train[-1] - c.validation[-1]:.3f})"
            + (
                "; the curves are still converging, so more data would help."
                if c.validation[-1] - c.validation[-2] > 0.002
                else "; the validation curve has flattened, so more rows alone will not help much."
            )
        )
    sections.append(
        ("Learning curves", outputs.figures["learning_curves"].name, [], " ".join(lc_comment))
    )

    vc_comment = []
    for f in families.values():
        c = f.validation_curve
        top = max(range(len(c.x)), key=lambda i: c.validation[i])
        vc_comment.append(
            f"{f.label}: {c.x_label} = {c.x[top]} gives the best validation {metric} "
            f"({c.validation[top]:.3f}); across {', '.join(c.x)} validation spans "
            f"{min(c.validation):.3f}–{max(c.validation):.3f} while train spans "
            f"{min(c.train):.3f}–{max(c.train):.3f}."
        )
    sections.append(
        ("Validation curves", outputs.figures["validation_curves"].name, [], " ".join(vc_comment))
    )

    if "loss_curve" in outputs.figures:
        f = next(f for f in families.values() if f.loss_curve is not None)
        c = f.loss_curve
        sections.append(
            (
                "Neural network: loss curve",
                outputs.figures["loss_curve"].name,
                [],
                f"The training loss falls from {c.loss[0]:.4f} to {c.loss[-1]:.4f} over "
                f"{len(c.loss)} epochs, while validation {metric} peaks at "
                f"{max(c.validation):.3f} in epoch {c.best_epoch} and then "
                + (
                    f"stays within {max(c.validation) - c.validation[-1]:.3f} of it"
                    if len(c.loss) > c.best_epoch
                    else "is still rising when the epoch cap is reached"
                )
                + f". Training stopped after {len(c.loss)} epochs (patience "
                f"{len(c.loss) - c.best_epoch}) and kept the weights of epoch {c.best_epoch}.",
            )
        )

    if "coefficients" in outputs.figures:
        table = linear_coefficients(families["logistic"], top=5)
        up = table[table["coefficient"] > 0]["feature"].map(_readable_feature).tolist()
        down = table[table["coefficient"] < 0]["feature"].map(_readable_feature).tolist()
        sections.append(
            (
                "Logistic regression coefficients",
                outputs.figures["coefficients"].name,
                [],
                f"Inputs are standardised, so coefficients are comparable. Among the five "
                f"largest, {', '.join(up) or 'none'} raise the odds of '{positive}' and "
                f"{', '.join(down) or 'none'} lower them; the largest is "
                f"{_readable_feature(table['feature'][0])} ({table['coefficient'][0]:+.3f} "
                f"log-odds per standard deviation, or per level for one-hot columns).",
            )
        )
    return sections


def _why_test_differs(family, config) -> str:
    """Say, from the scored rows, how the test rows differ from the training rows."""
    metrics = family.metrics
    shares = {
        name: (metrics[name]["tp"] + metrics[name]["fn"]) / metrics[name]["rows"]
        for name in ("train", "test")
    }
    positive = config.target.labels[1]
    compared = (
        f"'{positive}' makes up {shares['test']:.1%} of the test rows against "
        f"{shares['train']:.1%} of the training rows"
    )
    if config.split.method == "time":
        return (
            f": {config.split.part('test')} comes after the training period and differs from "
            f"it ({compared})."
        )
    return (
        f". The split is random ({compared}), so the drop reflects sampling noise and the "
        "choice of the best configuration on the validation rows themselves."
    )


def _overfit_tradeoff(family, metric: str) -> str:
    """Explain, from the search's numbers, why an overfitting configuration was still chosen."""
    if family.verdict.label != "overfitting":
        return ""
    limit = family.verdict.max_gap
    within = [t for t in family.trials if t.train_score - t.validation_score <= limit]
    if not within:
        return (
            f" Every configuration tried has a train–validation gap above {limit:.3f}; a grid "
            "with stronger regularisation would be needed to close it."
        )
    best_within = max(within, key=lambda t: t.validation_score)
    return (
        " It is still chosen because selection maximises the validation score: the best "
        f"configuration within the gap limit ({best_within.params}) scores "
        f"{best_within.validation_score:.3f} on validation, below the chosen one's "
        f"{family.verdict.validation_score:.3f}. The gap shows what the model memorised; the "
        f"validation {metric} shows what generalises."
    )


def _html(result: TrainingResult, sections, config, out_dir: Path) -> str:
    intro = [
        f"**Question:** {config.question}",
        f"Best family: **{result.families[result.best_family].label}**. "
        f"Stage time {result.seconds:.0f} s.",
    ]
    page = [
        one_block_section(title, comment, [out_dir / figure] if figure else [], tables)
        for title, figure, tables, comment in sections
    ]
    heading = f"Training report: three model families, selected by {METRIC_NAMES[result.metric]}"
    return render_html("Training report", heading, page, out_dir, intro=intro)


def _markdown(result: TrainingResult) -> str:
    metric = METRIC_NAMES[result.metric]
    lines = [
        f"## Training: best family {result.families[result.best_family].label}",
        "",
        f"| family | verdict | train {metric} | validation {metric} | test {metric} | test F1 |",
        "|---|---|---|---|---|---|",
    ]
    for f in result.families.values():
        test = f.metrics.get("test", {})
        lines.append(
            f"| {f.label} | {f.verdict.label} | {f.verdict.train_score:.3f} | "
            f"{f.verdict.validation_score:.3f} | {test.get(result.metric, float('nan')):.3f} | "
            f"{test.get('f1', float('nan')):.3f} |"
        )
    lines += ["", result.method]
    return "\n".join(lines)


def _readable_feature(name: str) -> str:
    block, _, rest = name.partition("__")
    rest = rest.replace("missingindicator_", "missing ")
    return rest if rest else name


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    return value


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
