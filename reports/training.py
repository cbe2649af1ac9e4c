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
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from reports.page import Section, Table, one_block_section, render_html
from tabular.features import INFREQUENT, OTHER
from tabular.horizon import HorizonStudy
from tabular.training import (
    TrainingResult,
    calibration_table,
    fold_table,
    fold_test_table,
    linear_coefficients,
    metrics_table,
    selection_outcome,
    trials_table,
)

METRIC_NAMES = {"roc_auc": "ROC-AUC", "average_precision": "Average precision"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


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
    right.plot(epochs, curve.stopping, "s-", color="#d62728", label="stopping rows' score")
    right.set_ylabel(
        f"{METRIC_NAMES[result.metric]} on the stopping rows ({curve.stopping_rows:,})",
        color="#d62728",
    )
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
    ax.set_title(
        f"{family.label}: loss and stopping score per epoch (early stopping on training rows)"
    )
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


def plot_fold_scores(result: TrainingResult, path: Path) -> Path:
    """Draw each family's chosen configuration's score on every fold, with its mean.

    Args:
        result: The training result.
        path: PNG to write.

    Returns:
        The path written.
    """
    metric = METRIC_NAMES[result.metric]
    names = [name for name, _ in result.folds]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for family, colour in zip(result.families.values(), PALETTE, strict=False):
        scores = family.folds.validation_scores
        ax.plot(
            names, scores, "o-", color=colour, label=f"{family.label} (mean {np.mean(scores):.3f})"
        )
        ax.axhline(np.mean(scores), color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("fold (first day of its validation period)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{metric} of each family's chosen configuration on every fold\n(dotted: mean)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def plot_reliability(result: TrainingResult, path: Path) -> Path | None:
    """Draw each family's reliability curve on the test rows, without and with calibration.

    Args:
        result: The training result, test rows scored.
        path: PNG to write.

    Returns:
        The path written, or ``None`` before the test rows are scored.
    """
    families = [f for f in result.families.values() if f.calibration.test is not None]
    if not families:
        return None
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4.8), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        c = family.calibration
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
        ax.plot(
            *c.test.raw_curve, "o-", color="#1f77b4", label=f"model (Brier {c.test.brier_raw:.4f})"
        )
        ax.plot(
            *c.test.calibrated_curve,
            "s-",
            color="#d62728",
            label=f"{c.method} map (Brier {c.test.brier_calibrated:.4f})",
        )
        served = "calibrated map served" if c.applied else "model served uncalibrated"
        ax.set_title(f"{family.label}\n{served}", fontsize=11)
        ax.set_xlabel("mean predicted probability (10 equal bins)")
        ax.set_ylabel("observed share of class 1")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability on the test rows", fontsize=13)
    return _save(fig, path)


def plot_horizons(study: HorizonStudy, path: Path, full_test: float | None) -> Path | None:
    """Draw the champion's validation mean (with the fold range) and test score by horizon.

    Args:
        study: The horizon study.
        path: PNG to write.
        full_test: The main run's test score at the default horizon, drawn as a reference
            when the study used samples.

    Returns:
        The path written, or ``None`` when the study was skipped.
    """
    if not study.points:
        return None
    metric = METRIC_NAMES[study.metric]
    hours = [p.hours for p in study.points]
    mean = np.array([p.validation_mean for p in study.points])
    low = mean - np.array([min(p.fold_scores) for p in study.points])
    high = np.array([max(p.fold_scores) for p in study.points]) - mean
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.errorbar(
        hours,
        mean,
        yerr=[low, high],
        fmt="o-",
        color="#1f77b4",
        capsize=4,
        label="validation: mean of the folds (bars: lowest to highest fold)",
    )
    ax.plot(hours, [p.test_score for p in study.points], "s-", color="#d62728", label="test")
    if full_test is not None and study.final_rows is not None:
        ax.plot(
            [study.default_hours],
            [full_test],
            "*",
            color="#d62728",
            markersize=14,
            label=f"test, main run on all rows ({full_test:.3f})",
        )
    ax.axvline(study.default_hours, color="grey", linestyle=":", label="the config's horizon")
    ax.set_xticks(hours, [f"{h:g}" + ("\n(schedule only)" if h == 0 else "") for h in hours])
    ax.set_xlabel("prediction horizon (hours before the event)")
    ax.set_ylabel(metric)
    sampled = (
        f"\nfitted on samples of {study.final_rows:,} rows per fit (the main run uses more)"
        if study.final_rows is not None
        else ""
    )
    ax.set_title(f"{study.label} ({_params_text(study.params)}): {metric} against horizon{sampled}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def write_training_report(
    result: TrainingResult, out_dir: Path, config, study: HorizonStudy | None = None
) -> TrainingOutputs:
    """Write tables, figures, models, verdicts and ``training.html`` into a folder.

    Args:
        result: The training result, with test metrics filled in.
        out_dir: The training folder (created if needed).
        config: The dataset config: the report speaks of its rows, labels and split.
        study: The score-against-horizon study, if it ran.

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
    outputs.tables["folds"] = out_dir / "folds.csv"
    fold_table(result).to_csv(outputs.tables["folds"], index=False)
    outputs.tables["calibration"] = out_dir / "calibration.csv"
    calibration_table(result).to_csv(outputs.tables["calibration"], index=False)
    outcome = selection_outcome(result) if result.test_evaluated else None
    if outcome is not None:
        outputs.tables["fold_vs_test"] = out_dir / "fold_vs_test.csv"
        fold_test_table(result).to_csv(outputs.tables["fold_vs_test"], index=False)
    if study is not None and study.points:
        outputs.tables["horizons"] = out_dir / "horizons.csv"
        study.table().to_csv(outputs.tables["horizons"], index=False)
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
    outputs.figures["fold_scores"] = plot_fold_scores(result, out_dir / "fold_scores.png")
    best = result.families[result.best_family]
    written = {
        "reliability": plot_reliability(result, out_dir / "reliability.png"),
        "horizons": None
        if study is None
        else plot_horizons(
            study, out_dir / "horizons.png", best.metrics.get("test", {}).get(result.metric)
        ),
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
            f"train_rows_{result.metric}": round(f.verdict.train_score, 4),
            f"mean_fold_{result.metric}": round(f.verdict.validation_score, 4),
            "best_params": {k: _jsonable(v) for k, v in f.best_params.items()},
            "threshold": f.threshold,
            "fold_scores": dict(zip(f.folds.names, f.folds.validation_scores, strict=True)),
            "calibrated": f.calibration.applied,
            "calibration": f.calibration.evidence,
        }
        for key, f in result.families.items()
    }
    summary = {
        "metric": result.metric,
        "best_family": result.best_family,
        "method": result.method,
        "folds": dict(result.folds),
        "prediction_horizon": config.prediction_horizon,
        "seconds": result.seconds,
        "families": verdicts,
        "selection": None
        if outcome is None
        else {
            "rule": outcome.rule,
            "champion": outcome.champion,
            "best_on_test": outcome.best_on_test,
            "shortfall": round(outcome.shortfall, 4),
            "within_tolerance": outcome.holds,
            "tolerance": outcome.tolerance,
            "outcome": outcome.sentence,
            "fold_vs_test": fold_test_table(result).to_dict("records"),
        },
        "horizons": None if study is None or not study.points else study.table().to_dict("records"),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    sections = _sections(result, trials, metrics, outputs, config, study)
    outputs.html.write_text(_html(result, sections, config, out_dir), encoding="utf-8")
    outputs.markdown = _markdown(result, study)
    return outputs


def _section(title: str, figure: Path | None, tables: list[Table], comment: str) -> Section:
    """One section of the training page: a title, its figure (if any), tables and comment."""
    return one_block_section(title, comment, [figure] if figure else [], tables)


def _sections(result, trials, metrics, outputs, config, study) -> list[Section]:
    """Return the page's sections, in order."""
    metric = METRIC_NAMES[result.metric]
    positive = config.target.labels[1]
    test_part = config.split.part("test")
    families = result.families
    best = families[result.best_family]
    sections = [_fold_section(result, outputs, metric)]
    if result.test_evaluated:
        sections.append(_fold_test_section(result, config))

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
        f"{label}: {counts[label]} configurations varying {', '.join(varied[label])}; mean fold "
        f"{metric} from {low:.3f} to {high:.3f}."
        for label, (low, high) in spread.items()
    )
    sections.append(
        _section(
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
            f"`chosen`; the champion is {best.label} "
            f"(mean fold {metric} {best.verdict.validation_score:.3f}).",
        )
    )

    test_rows = metrics[metrics["split"] == "test"].set_index("family")
    metric_col = result.metric
    if not test_rows.empty:
        ranking = test_rows[metric_col].sort_values(ascending=False)
        best_test = ranking.index[0]
        test_comment = (
            f"'train' is the {config.rows()} each final model was fitted on, 'validation' the "
            "pooled predictions of the folds (the rows its threshold and calibration were "
            f"chosen on). On {test_part}, scored once at the end, {best_test} ranks best with "
            f"{metric} {ranking.iloc[0]:.3f} (mean fold score {best.verdict.validation_score:.3f} "
            f"for the champion, {best.label}). "
        )
        drops = {
            f.label: f.verdict.validation_score - f.metrics["test"][metric_col]
            for f in families.values()
        }
        worst = max(drops, key=drops.get)
        test_comment += (
            f"Every model scores lower on the test rows than its mean fold score (largest drop: "
            f"{worst}, {drops[worst]:.3f}), so the fold scores are an optimistic estimate"
            + _why_test_differs(best, config)
            if all(d > 0 for d in drops.values())
            else f"The change from the mean fold score to the test score is at most "
            f"{max(drops.values()):.3f}: the folds were a fair estimate."
        )
        f1 = test_rows["f1"]
        test_comment += (
            f" At the thresholds chosen on the folds, test F1 ranges from {f1.min():.3f} to "
            f"{f1.max():.3f}, with recall {test_rows.loc[best.label, 'recall']:.1%} and precision "
            f"{test_rows.loc[best.label, 'precision']:.1%} for {best.label}: of the "
            f"{config.rows()} it flags as '{positive}', "
            f"{test_rows.loc[best.label, 'precision']:.0%} really are."
        )
    else:
        test_comment = "The test rows have not been scored."
    sections.append(
        _section(
            "Metrics of each family's final model (train, pooled folds, test)",
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
                f"train rows {metric}": round(f.verdict.train_score, 4),
                f"mean fold {metric}": round(f.verdict.validation_score, 4),
                "gap": round(f.verdict.gap, 4),
                "evidence": f.verdict.evidence,
            }
            for f in families.values()
        ]
    )
    rule = next(iter(families.values())).verdict.rule
    sections.append(
        _section(
            "Verdict per family: overfitting, underfitting or OK",
            None,
            [Table(verdict_rows, float_format=".4f")],
            f"Rule, on the fold scores: {rule}. "
            + " ".join(
                f"{f.label}: **{f.verdict.label}** ({f.verdict.evidence})."
                + _overfit_tradeoff(f, metric)
                for f in families.values()
            ),
        )
    )
    sections.append(_calibration_section(result, outputs, config))
    sections.append(_horizon_section(study, best, outputs, config))

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
        _section(
            "Learning curves (last fold)",
            outputs.figures["learning_curves"],
            [],
            f"Each family's chosen configuration, fitted on growing parts of the last fold's "
            f"training sample ({result.folds[-1][1]}). " + " ".join(lc_comment),
        )
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
        _section(
            "Validation curves (mean over the folds)",
            outputs.figures["validation_curves"],
            [],
            " ".join(vc_comment),
        )
    )

    if "loss_curve" in outputs.figures:
        f = next(f for f in families.values() if f.loss_curve is not None)
        c = f.loss_curve
        sections.append(
            _section(
                "Neural network: loss curve (last fold)",
                outputs.figures["loss_curve"],
                [],
                f"The network fits on {c.fitted_rows:,} of the last fold's training sample and "
                f"stops on the other {c.stopping_rows:,} "
                + (
                    f"(the most recent ones: {config.split.part('validation')} is never seen)"
                    if config.split.method == "time"
                    else "(a stratified random share; the fold's validation rows are never seen)"
                )
                + f". The training loss falls from {c.loss[0]:.4f} to {c.loss[-1]:.4f} over "
                f"{len(c.loss)} epochs, while {metric} on the stopping rows peaks at "
                f"{max(c.stopping):.3f} in epoch {c.best_epoch} and then "
                + (
                    f"stays within {max(c.stopping) - c.stopping[-1]:.3f} of it"
                    if len(c.loss) > c.best_epoch
                    else "is still rising when the epoch cap is reached"
                )
                + f". Training stopped after {len(c.loss)} epochs (patience "
                f"{len(c.loss) - c.best_epoch}) and kept the weights of epoch {c.best_epoch}. "
                f"The final refit has no validation rows to stop on (every development "
                f"{config.row_noun[0]} is a training one): it runs the mean number of epochs the "
                f"folds kept ({np.mean(f.folds.epochs):.2f}, rounded: {f.final_epochs}).",
            )
        )

    if "coefficients" in outputs.figures:
        table = linear_coefficients(families["logistic"], top=5)
        up = table[table["coefficient"] > 0]["feature"].map(_readable_feature).tolist()
        down = table[table["coefficient"] < 0]["feature"].map(_readable_feature).tolist()
        sections.append(
            _section(
                "Logistic regression coefficients",
                outputs.figures["coefficients"],
                [],
                f"Inputs are standardised, so coefficients are comparable. Among the five "
                f"largest, {', '.join(up) or 'none'} raise the odds of '{positive}' and "
                f"{', '.join(down) or 'none'} lower them; the largest is "
                f"{_readable_feature(table['feature'][0])} ({table['coefficient'][0]:+.3f} "
                f"log-odds per standard deviation, or per level for one-hot columns).",
            )
        )
    return sections


def _fold_section(result: TrainingResult, outputs, metric: str) -> Section:
    """The fold scores of each family's chosen configuration, with a computed comment."""
    table = fold_table(result)
    folds = pd.DataFrame(
        [{"fold": name, "rows": description} for name, description in result.folds]
    )
    families = list(result.families.values())
    best = result.families[result.best_family]
    names = best.folds.names
    scores = np.array([f.folds.validation_scores for f in families])
    hardest = names[int(np.argmin(scores.mean(axis=0)))]
    easiest = names[int(np.argmax(scores.mean(axis=0)))]
    comment = (
        f"The champion, {best.label}, has the best mean fold {metric} "
        f"({best.verdict.validation_score:.3f}, spread {np.std(best.folds.validation_scores):.3f})."
    )
    if len(families) > 1 and len(names) > 1:
        wins = int((scores[families.index(best)] >= scores.max(axis=0) - 1e-12).sum())
        means = sorted((f.verdict.validation_score for f in families), reverse=True)
        comment += (
            f" It is best on {wins} of the {len(names)} folds. The families' means lie "
            f"{means[0] - means[-1]:.3f} apart (best to worst, {means[0] - means[1]:.3f} from "
            f"the first to the second), while a family's score moves by up to "
            f"{(scores.max(axis=1) - scores.min(axis=1)).max():.3f} from one fold to another: "
            f"fold {hardest} is the hardest for the families on average and fold {easiest} "
            "the easiest, which is why one fold alone would be a noisy judge."
        )
    return _section(
        "Fold scores of each family's chosen configuration",
        outputs.figures["fold_scores"],
        [Table(folds), Table(table, float_format=".4f")],
        comment,
    )


def _fold_test_section(result: TrainingResult, config) -> Section:
    """Each family's mean fold score against its test score: what the folds predicted."""
    outcome = selection_outcome(result)
    metric = METRIC_NAMES[result.metric]
    table = fold_test_table(result)
    drops = table.set_index("family")["test_minus_fold"]
    comment = (
        f"Rule: {outcome.rule}. {outcome.sentence} On {config.split.part('test')}, scored once "
        f"after every choice, the test {metric} lies between {drops.min():+.4f} and "
        f"{drops.max():+.4f} from the mean fold score"
        + (
            " for every family: the test period is harder than the folds for all of them "
            "alike, so the folds rank the families better than they predict the level."
            if drops.max() < 0
            else "."
        )
    )
    return _section(
        "Fold score against test score, per family",
        None,
        [Table(table, float_format=".4f")],
        comment,
    )


def _calibration_section(result: TrainingResult, outputs, config) -> Section:
    """Reliability on the test rows and the calibration decision of each family."""
    families = list(result.families.values())
    parts = []
    for f in families:
        c = f.calibration
        text = f"{f.label}: {c.evidence}."
        if c.test is not None:
            change = c.test.brier_calibrated - c.test.brier_raw
            text += (
                f" On the test rows the map would move the Brier score from {c.test.brier_raw:.4f} "
                f"to {c.test.brier_calibrated:.4f} ({change:+.4f}): "
                + (
                    "the decision taken on the folds holds there."
                    if (change < 0) == c.applied
                    else "the opposite of what the folds said, a sign that the test period "
                    "differs from the validation periods."
                )
            )
        parts.append(text)
    applied = [f.label for f in families if f.calibration.applied]
    served = (
        f"Calibrated: {', '.join(applied)}; for these the served probability, the threshold "
        "and the pooled validation metrics are the calibrated ones. "
        if applied
        else "No family is calibrated: the served probabilities are the models' own. "
    )
    rule = (
        "Rule: a family's probabilities are calibrated when a map fitted on its fold "
        "predictions lowers the Brier score (the mean squared error of the probability) on "
        "fold predictions it was not fitted on. "
    )
    shares = ""
    best = result.families[result.best_family]
    if "test" in best.metrics:
        m = best.metrics
        share = {k: (m[k]["tp"] + m[k]["fn"]) / m[k]["rows"] for k in ("validation", "test")}
        shares = (
            f" '{config.target.labels[1]}' makes up {share['validation']:.1%} of the folds' "
            f"validation {config.rows()} and {share['test']:.1%} of the test {config.rows()}: "
            "a map fitted on the first carries that rate to the second."
        )
    figure = outputs.figures.get("reliability")
    return _section(
        "Calibration: reliability and Brier score",
        figure,
        [Table(calibration_table(result), na_rep="")],
        rule + served + " ".join(parts) + shares,
    )


def _horizon_section(study: HorizonStudy | None, best, outputs, config) -> Section:
    """The champion's score against the prediction horizon, with a computed comment."""
    title = "Score against the prediction horizon"
    if study is None:
        return _section(title, None, [], "The horizon study was not run.")
    if not study.points:
        return _section(title, None, [], f"The horizon study does not apply: {study.skipped}.")
    metric = METRIC_NAMES[study.metric]
    points = {p.hours: p for p in study.points}
    hours = sorted(points)
    sampled = study.final_rows is not None
    comment = (
        f"{study.label} with its chosen configuration ({_params_text(study.params)}), refitted "
        f"at each horizon with the same folds and method; a prediction made h hours before "
        f"'{config.date_column}' sees only what had happened by then"
        + (
            ", and horizon 0 is the schedule-only model (no point-in-time column)"
            if 0 in points
            else ""
        )
        + ". "
    )
    if sampled:
        full = best.metrics.get("test", {}).get(study.metric)
        comment += (
            f"To fit the time budget every fit of the study uses a fixed-seed sample of at most "
            f"{study.final_rows:,} {config.rows()}, so its scores sit below the main run's"
            + (f" (test {full:.3f} at {study.default_hours:g} h on all rows)" if full else "")
            + "; the horizons compare with each other. "
        )
    timed = [h for h in hours if h > 0]
    if 0 in points and timed:
        base = points[0]
        gains = ", ".join(
            f"{points[h].test_score - base.test_score:+.3f} at {h:g} h" for h in timed
        )
        comment += (
            f"Against the schedule-only model (test {base.test_score:.3f}, fold mean "
            f"{base.validation_mean:.3f}), knowing how the day is going adds {gains} on test. "
        )
    if len(timed) > 1:
        steps = [
            (
                a,
                b,
                (points[a].test_score - points[b].test_score) / (b - a),
                (points[a].validation_mean - points[b].validation_mean) / (b - a),
            )
            for a, b in zip(timed, timed[1:], strict=False)
        ]
        comment += "Each extra hour of notice costs " + "; ".join(
            f"{t:.3f} of test {metric} per hour from {a:g} to {b:g} h ({v:.3f} on the folds)"
            for a, b, t, v in steps
        )
        per_hour = (points[timed[0]].test_score - points[timed[-1]].test_score) / (
            timed[-1] - timed[0]
        )
        comment += (
            f": on average {per_hour:.3f} per hour between {timed[0]:g} and {timed[-1]:g} h. "
        )
        order = [points[h].test_score for h in timed]
        if all(a >= b for a, b in zip(order, order[1:], strict=False)):
            comment += "The shorter the notice, the better the ranking, at every step."
        else:
            comment += "The scores do not fall at every step: some differences are within noise."
    figure = outputs.figures.get("horizons")
    return _section(
        title,
        figure,
        # Scores to four decimals; hours and seconds by their kind (2 and 12.3).
        [Table(study.table(), float_format=".4f")],
        comment,
    )


def _params_text(params: dict) -> str:
    return ", ".join(f"{k} {_plain_value(v)}" for k, v in params.items())


def _plain_value(value) -> str:
    return str(tuple(value)) if isinstance(value, list | tuple) else str(value)


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
    horizon = (
        [
            f"Predictions are made {config.prediction_horizon:g} hours before each row's "
            f"'{config.date_column}'."
        ]
        if config.prediction_horizon > 0
        else []
    )
    intro = [
        f"**Question:** {config.question}",
        *horizon,
        f"Champion: **{result.families[result.best_family].label}**. "
        f"Stage time {result.seconds:.0f} s.",
    ]
    heading = f"Training report: three model families, selected by {METRIC_NAMES[result.metric]}"
    return render_html("Training report", heading, sections, out_dir, intro=intro)


def _markdown(result: TrainingResult, study: HorizonStudy | None = None) -> str:
    metric = METRIC_NAMES[result.metric]
    lines = [
        f"## Training: champion {result.families[result.best_family].label}",
        "",
        f"| family | verdict | train rows {metric} | mean fold {metric} | fold spread | "
        f"test {metric} | test − mean fold | test F1 | calibrated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in result.families.values():
        test = f.metrics.get("test", {})
        test_score = test.get(result.metric, float("nan"))
        lines.append(
            f"| {f.label} | {f.verdict.label} | {f.verdict.train_score:.4f} | "
            f"{f.verdict.validation_score:.4f} | {np.std(f.folds.validation_scores):.4f} | "
            f"{test_score:.4f} | {test_score - f.verdict.validation_score:+.4f} | "
            f"{test.get('f1', float('nan')):.4f} | {'yes' if f.calibration.applied else 'no'} |"
        )
    if result.test_evaluated:
        lines += ["", selection_outcome(result).sentence]
    if study is not None and study.points:
        lines += ["", f"| horizon (h) | mean fold {metric} | test {metric} |", "|---|---|---|"]
        lines += [
            f"| {p.hours:g} | {p.validation_mean:.3f} | {p.test_score:.3f} |" for p in study.points
        ]
    lines += ["", result.method]
    return "\n".join(lines)


def _readable_feature(name: str) -> str:
    block, _, rest = name.partition("__")
    rest = rest.replace("missingindicator_", "missing ").replace(INFREQUENT, OTHER)
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
