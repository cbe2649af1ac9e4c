"""The 4-page project note (``report.pdf``): what a client reads about one pipeline run.

Every number comes from the run's typed results (manifest, validation, EDA, training, SHAP
stage, store proof); the pages are report-layer sections (:mod:`reports.page`), the EDA
figures and comments reused as they are, printed by :mod:`reports.pdf`. Each page's
content is bounded by design (fixed figure heights, the largest groups only, comments cut
at a sentence), and the renderer shrinks a page rather than let it flow onto a fifth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import FancyBboxPatch

from reports.eda import EdaReport
from reports.explain import (
    ExplainOutputs,
    comparison_comment,
    comparison_table,
    plot_importance_bar,
)
from reports.page import Comment, Figure, Section, Table, comment_blocks
from reports.pdf import render_pdf
from store.proof import StoreProof
from tabular.explain import ExplainStage
from tabular.manifest import RunManifest
from tabular.training import TrainingResult, selection_outcome
from validation import ValidationReport

PAGES = 4
#: EDA sections whose chart may illustrate the data, in order of preference, each with the
#: block to take: its first or last chart (the time section ends with rates by period).
KEY_EDA_SECTIONS = (
    ("balance", 0), ("time", -1), ("grouping", 0), ("categories", 0), ("outliers", 0),
    ("correlations", 0),
)  # fmt: skip
METRIC_NAMES = {"roc_auc": "ROC-AUC", "average_precision": "average precision"}


@dataclass(frozen=True)
class RunResults:
    """The typed results of one pipeline run that the note reads.

    Attributes:
        config: The dataset config.
        manifest: The run manifest (rows, columns, split, models, tags, steps).
        validation: The Great Expectations gate's outcome.
        eda: The EDA report (its sections, figures and comments).
        training: The training result, test rows scored.
        explain: The SHAP stage: selection and full-against-selected comparisons.
        explain_files: The SHAP report's files and sections.
        store: The store import and the ``mlops db query`` output.
    """

    config: object
    manifest: RunManifest
    validation: ValidationReport
    eda: EdaReport
    training: TrainingResult
    explain: ExplainStage
    explain_files: ExplainOutputs
    store: StoreProof


@dataclass(frozen=True)
class NoteOutputs:
    """Files written by :func:`write_project_note`.

    Attributes:
        pdf: The PDF.
        pages: Its page count.
        figures: The figures drawn for the note (architecture, compact SHAP bars).
    """

    pdf: Path
    pages: int
    figures: list[Path]


def shorten(text: str, limit: int) -> str:
    """Keep a comment's first blocks up to about ``limit`` characters, cut at a sentence.

    Args:
        text: A comment (Markdown subset of :mod:`reports.page`).
        limit: Characters to keep, at most (a first sentence longer than this is kept whole).

    Returns:
        The shortened comment; bullets are kept whole or dropped.
    """
    kept, used = [], 0
    for kind, content in comment_blocks(text):
        if kind == "bullets":
            lines = []
            for line in content:
                if used + len(line) > limit:
                    break
                lines.append(f"- {line}")
                used += len(line)
            if lines:
                kept.append("\n".join(lines))
            if len(lines) < len(content):
                break
            continue
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9'(])", content[0])
        taken = []
        for sentence in sentences:
            if used + len(sentence) > limit and (taken or kept):
                break
            taken.append(sentence)
            used += len(sentence) + 1
        kept.append(" ".join(taken))
        if len(taken) < len(sentences):
            break
    return "\n\n".join(kept)


def _rows(manifest: RunManifest) -> dict:
    return manifest.rows


def question_section(run: RunResults) -> Section:
    """Page 1: the business need and the question."""
    config, rows = run.config, _rows(run.manifest)
    positive = config.target.labels[1]
    noun = config.row_noun[1]
    target = config.target
    if target.threshold is not None:
        rule = f"'{target.column}' of {target.threshold:g} or more"
    elif target.positive_values:
        rule = f"'{target.column}' in {', '.join(map(str, target.positive_values))}"
    else:
        rule = f"'{target.column}' equal to 1"
    text = [
        f"**Question:** {config.question}",
        config.description.strip() or f"The dataset '{config.name}' as described by its config.",
        f"The target is '{positive}', defined as {rule}: {rows['positive_share']:.1%} of the "
        f"{rows['used']:,} {noun} used are '{positive}'. A model answers for each of the "
        f"{noun} before the outcome is known, from columns known at that time only.",
    ]
    return Section("question", "1. The business question", [Comment("\n\n".join(text))])


def data_section(run: RunResults) -> Section:
    """Page 1: size, columns, the split and the quality issues found."""
    config, manifest, eda = run.config, run.manifest, run.eda
    rows, columns = manifest.rows, manifest.columns
    dropped = ", ".join(f"{n:,} ({reason})" for reason, n in rows["dropped"].items()) or "none"
    sample = (
        f"; this run used a reproducible sample of {rows['used']:,} of the {rows['kept']:,}"
        if manifest.sample
        else f"; all {rows['used']:,} are used"
    )
    date = f"date column '{config.date_column}', " if config.date_column else "no date column, "
    leakage = ", ".join(columns["leakage_excluded"]) or "none declared"
    bullets = [
        f"**Size:** {rows['loaded']:,} rows loaded; dropped {dropped}; {rows['kept']:,} kept"
        f"{sample}.",
        f"**Columns:** {columns['count']} after preparation: {date}"
        f"{len(columns['categorical'])} categorical ({', '.join(columns['categorical'])}), "
        f"{len(columns['numeric'])} numeric; {columns['features']} feature columns. "
        f"Excluded as leakage (known only after the event): {leakage}.",
        f"**Split:** {manifest.split}. Rows: "
        + ", ".join(
            f"{part} {n:,}"
            for part, n in rows["split"].items()
            if part in ("train", "validation", "test")
        )
        + f". EDA and every choice use the training part only ({eda.rows:,} rows).",
        f"**Quality gate (Great Expectations):** {run.validation.summary().splitlines()[0]}.",
    ]
    for key, label in (("missing", "Missing values"), ("outliers", "Extreme values")):
        try:
            bullets.append(f"**{label}:** {eda.section(key).summary}")
        except KeyError:
            pass
    return Section("data", "2. The data", [Comment("\n".join(f"- {b}" for b in bullets))])


def eda_figures(eda: EdaReport, count: int) -> list[tuple[str, Path, str]]:
    """Pick the key EDA figures: the first chart of preferred sections, with its comment.

    Args:
        eda: The EDA report.
        count: How many to pick.

    Returns:
        ``(section title, PNGs side by side, comment)`` per figure.
    """
    picked = []
    by_key = {section.key: section for section in eda.sections}
    for key, position in KEY_EDA_SECTIONS:
        section = by_key.get(key)
        charts = [b for b in section.blocks if b.figures] if section else []
        if charts:
            block = charts[position]
            title = re.sub(r"^\d+\.\s*", "", section.title)
            picked.append((title, tuple(block.figures), block.comment))
        if len(picked) == count:
            break
    return picked


def eda_section(
    title: str, figures: tuple[Path, ...], comment: str, height_cm: float, key: str
) -> Section:
    """One EDA chart (or row of charts) with its comment, shortened."""
    return Section(
        key, title, [Figure(figures, title, height_cm=height_cm), Comment(shorten(comment, 430))]
    )


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def models_section(run: RunResults) -> Section:
    """Page 2: the three families, their scores, and how the best was chosen."""
    result = run.training
    metric = METRIC_NAMES[result.metric]
    rows = []
    for key, family in result.families.items():
        test = family.metrics.get("test", {}).get(result.metric)
        rows.append(
            {
                "model": family.label + (" (chosen)" if key == result.best_family else ""),
                "best configuration": _params(family.best_params),
                f"train rows {metric}": family.verdict.train_score,
                f"mean fold {metric}": family.verdict.validation_score,
                f"test {metric}": test,
                "test − mean fold": None
                if test is None
                else test - family.verdict.validation_score,
                "verdict": family.verdict.label,
            }
        )
    best = result.families[result.best_family]
    outcome = selection_outcome(result) if result.test_evaluated else None
    text = (
        f"**Chosen automatically: {best.label}**, the best mean fold {metric}. The test rows "
        "are scored once, after every choice is made"
        + (f". {outcome.sentence}" if outcome else ".")
        + f" {result.method}"
    )
    return Section(
        "models",
        "4. Three models, one chosen",
        [Table(pd.DataFrame(rows), float_format=".4f"), Comment(shorten(text, 900))],
    )


def fitting_section(run: RunResults) -> Section:
    """Page 2: the over/underfitting verdict of each family, with its evidence."""
    result = run.training
    families = list(result.families.values())
    lines = [f"- **{f.label}: {f.verdict.label}.** {f.verdict.evidence}." for f in families]
    text = f"Rule: {families[0].verdict.rule}.\n\n" + "\n".join(lines)
    return Section("fitting", "5. Overfitting or underfitting?", [Comment(text)])


def shap_section(run: RunResults, out_dir: Path) -> Section:
    """Page 3: SHAP importance of the deciding model and the selected columns."""
    stage, selection = run.explain, run.explain.selection
    key = stage.served[0]
    shap = stage.shap[key]
    bar = plot_importance_bar(shap, out_dir / f"shap_bar_{key}_top.png", selection, top=14)
    shares = shap.importance / shap.importance.sum()
    top3 = ", ".join(f"{c} ({s:.0%})" for c, s in shares.iloc[:3].items())
    text = (
        f"{shap.explainer} on {len(shap.values):,} validation rows, summed back to the "
        f"{shap.importance.size} original columns. The top three, {top3}, carry "
        f"{shares.iloc[:3].sum():.0%} of the total mean |SHAP|. Selection rule: "
        f"{selection.rule}. It keeps {len(selection.columns)} of "
        f"{len(selection.columns) + len(selection.dropped)} columns "
        f"({selection.coverage:.1%} of the importance): {', '.join(selection.columns)}."
    )
    return Section(
        "shap",
        "6. Which columns matter (SHAP)",
        [Figure((bar,), "SHAP importance", height_cm=8.2), Comment(shorten(text, 900))],
    )


def retraining_section(run: RunResults) -> Section:
    """Page 3: each served model retrained on the selected columns, against all columns."""
    items = []
    for key in run.explain.served:
        comparison = run.explain.comparisons[key]
        table = comparison_table(comparison.table).frame
        table = table[table["split"] == "test"][
            ["model", "input_columns", "accuracy", "precision", "recall", "f1", "roc_auc",
             "predict_ms_per_1000", "model_kb"]
        ].rename(columns={"input_columns": "inputs", "predict_ms_per_1000": "ms per 1,000",
                          "model_kb": "size KB"})  # fmt: skip
        items += [
            Table(table, caption=f"{comparison.label}, test rows", float_format=".4f"),
            Comment(comparison_comment(comparison)),
        ]
    return Section("retraining", "7. Retraining on the selected columns", items)


def architecture_diagram(run: RunResults, path: Path) -> Path:
    """Draw the serving and monitoring architecture, labelled with the run's names.

    Args:
        run: The run's results.
        path: PNG to write.

    Returns:
        The path written.
    """
    manifest = run.manifest
    served = manifest.served_models or ["primary model", "secondary model"]
    store = (
        "MongoDB"
        if run.store.store and run.store.store.startswith("MongoDB")
        else ("MongoDB (embedded store here)")
    )
    fig, ax = plt.subplots(figsize=(8.2, 4.1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 50)
    ax.axis("off")
    lanes = {"top": 37, "middle": 19.5, "bottom": 2}
    boxes = {
        "data": ("top", 1, 12, "Data\n" + manifest.dataset, "#dfe9f5"),
        "gx": ("top", 16, 13, "Great Expectations\ngate", "#dfe9f5"),
        "eda": ("top", 32, 9, "EDA", "#dfe9f5"),
        "train": ("top", 44, 15, "3 models tuned\n(LR, XGBoost, MLP)", "#dfe9f5"),
        "shap": ("top", 62, 15, "SHAP, selection,\nretraining", "#dfe9f5"),
        "reference": ("top", 82, 17, "training reference\n(run folder)", "#dfe9f5"),
        "client": ("middle", 1, 11, "client\n(HTTP,\nAPI key)", "#f5f5f5"),
        "api": ("middle", 18, 35, "Bento service (BentoML)\n/predict /compare /records\n"
                + "\n".join(str(s) for s in served[:2]), "#e6f2e0"),
        "store": ("middle", 62, 15, "BentoML model store\n2 served models", "#e6f2e0"),
        "mongo": ("bottom", 18, 35, store + "\nrecords, prediction logs, feedback", "#fbeed9"),
        "evidently": ("bottom", 82, 17, "Evidently drift report\n(drift-monitor flow),\n"
                      "Evidently UI", "#fbeed9"),
    }  # fmt: skip
    frames = {}
    for name, (lane, x, w, label, colour) in boxes.items():
        y, h = lanes[lane], 11
        ax.add_patch(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0.4,rounding_size=1.2", fc=colour,
                ec="#44546a", lw=1,
            )
        )  # fmt: skip
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=6.9)
        frames[name] = (x, y, w, h)

    def side(name: str, where: str) -> tuple[float, float]:
        x, y, w, h = frames[name]
        return {
            "r": (x + w + 0.5, y + h / 2), "l": (x - 0.5, y + h / 2),
            "t": (x + w / 2, y + h + 0.5), "b": (x + w / 2, y - 0.5),
        }[where]  # fmt: skip

    def arrow(a: str, b: str, text: str = "", sides: str = "rl") -> None:
        start, end = side(a, sides[0]), side(b, sides[1])
        ax.annotate(
            "", xy=end, xytext=start,
            arrowprops={"arrowstyle": "-|>", "color": "#44546a", "lw": 1.1},
        )  # fmt: skip
        if text:
            ax.text(
                (start[0] + end[0]) / 2 + (1 if sides in ("bt", "tb") else 0),
                (start[1] + end[1]) / 2 + (0 if sides in ("bt", "tb") else 1.2),
                text, ha="left" if sides in ("bt", "tb") else "center", va="center",
                fontsize=6.2, color="#44546a",
            )  # fmt: skip

    for a, b in (("data", "gx"), ("gx", "eda"), ("eda", "train"), ("train", "shap")):
        arrow(a, b)
    arrow("shap", "reference", "save")
    arrow("shap", "store", "save the 2 models", "bt")
    arrow("store", "api", "load", "lr")
    arrow("client", "api", "request")
    arrow("api", "mongo", "logs every request", "bt")
    arrow("mongo", "evidently", "stored inputs")
    arrow("reference", "evidently", "compared with", "bt")
    ax.set_title(
        "Prefect runs the training pipeline (top row) and the scheduled drift monitor "
        "(bottom row); serving in the middle row",
        fontsize=7.5,
        loc="left",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=170)
    plt.close(fig)
    return Path(path)


def architecture_section(run: RunResults, diagram: Path) -> Section:
    """Page 4: the serving and monitoring architecture."""
    manifest = run.manifest
    served = manifest.served_models
    labels = [run.explain.comparisons[key].label for key in run.explain.served]
    text = (
        f"The pipeline (a Prefect flow) ends by saving two models, {', '.join(labels)}, "
        f"retrained on the {len(manifest.selected_features)} selected columns, to the BentoML "
        f"model store as {' and '.join(f'`{t}`' for t in served)}, and by building the Bento "
        f"`{manifest.bento or 'not built'}` (`make serve`). The service checks each request "
        "against the input contract derived from the training data, answers with both models' "
        "probabilities, and logs every request's inputs, prediction, model and version in "
        "MongoDB. A scheduled Prefect flow compares the logged inputs with the training "
        "reference in an Evidently data-drift report, shown in the Evidently UI"
        + (
            f"; this run saved that reference ({manifest.reference['rows']:,} training rows "
            f"with both models' probabilities, `{manifest.reference['path']}`)."
            if manifest.reference
            else "."
        )
    )
    return Section(
        "architecture",
        "8. Serving and monitoring",
        [Figure((diagram,), "architecture", height_cm=8.4), Comment(text)],
    )


def database_section(run: RunResults) -> Section:
    """Page 4: the ``mlops db query`` output captured during the run."""
    store = run.store
    if store.ok and run.manifest.database.get("reused"):
        text = (
            f"An earlier run with the same rows (data hash "
            f"{(run.manifest.data_hash or '')[:16]}) wrote its {store.rows:,} rows to the "
            f"{store.store} and ran `{store.command}` against it, in {store.seconds:.1f} s; "
            "this run found that step's result for the same rows and store and did not "
            "import them again. The command's output, as printed then:"
        )
    elif store.ok:
        text = (
            f"During the run, its {store.rows:,} rows were written to the {store.store} "
            + (
                f"({store.inserted:,} new, the others already stored)"
                if store.inserted < store.rows
                else "(all new)"
            )
            + f" and `{store.command}` ran against it, in {store.seconds:.1f} s in all. "
            "Its output, as printed:"
        )
    else:
        text = (
            f"During the run, storing its rows and running `{store.command}` failed; the "
            "command's output, as printed:"
        )
    return Section(
        "database",
        "9. Proof of the database connection",
        [Comment(text), Comment(store.output, verbatim=True)],
    )


def limits_section(run: RunResults) -> Section:
    """Page 4: limits of this run and next steps, read from its numbers."""
    result, manifest, config = run.training, run.manifest, run.config
    metric = METRIC_NAMES[result.metric]
    best = result.families[result.best_family]
    test = best.metrics.get("test", {}).get(result.metric)
    limits = []
    if test is not None:
        drop = best.verdict.validation_score - test
        limits.append(
            f"The chosen {best.label} scores {metric} {test:.3f} on the test rows, "
            + (
                f"{drop:.3f} below its mean fold score"
                + (
                    f": {config.split.part('test')} differs from the training period."
                    if config.split.method == "time"
                    else "."
                )
                if drop > 0
                else f"{-drop:.3f} above its mean fold score."
            )
            + " It ranks risk; it is not a certain yes/no answer."
        )
    flagged = [f for f in result.families.values() if f.verdict.label != "OK"]
    for family in flagged:
        limits.append(f"{family.label} is judged **{family.verdict.label}** on this run.")
    if manifest.sample:
        limits.append(
            f"This run used a sample of {manifest.rows['used']:,} of the "
            f"{manifest.rows['kept']:,} rows: figures from a full run will differ."
        )
    if run.store.store and not run.store.store.startswith("MongoDB"):
        limits.append(
            "The database here is the embedded store (mongomock on local files), a "
            "development convenience: production uses a MongoDB server (`MONGODB_URI`)."
        )
    steps = [
        "Watch the drift report of the served inputs, and retrain when they drift "
        "from the training reference.",
        "Collect the true outcomes (`/feedback`) to measure the served models' real accuracy.",
        f"Add columns known before the outcome that the top SHAP columns "
        f"({', '.join(run.explain.shap[run.explain.served[0]].importance.index[:3])}) "
        "suggest, then rerun the pipeline and compare the notes.",
    ]
    text = (
        "**Limits**\n\n"
        + "\n".join(f"- {line}" for line in limits)
        + "\n\n**Next steps**\n\n"
        + "\n".join(f"- {line}" for line in steps)
    )
    return Section("limits", "10. Limits and next steps", [Comment(text)])


def note_pages(run: RunResults, out_dir: Path) -> tuple[list[list[Section]], list[Path]]:
    """Lay the note's sections out on its four pages.

    Args:
        run: The run's results.
        out_dir: Folder for the figures drawn for the note.

    Returns:
        The sections of each page, and the figures drawn.
    """
    figures = eda_figures(run.eda, 3)
    eda_sections = [
        eda_section(f"3{'abc'[i]}. What the data shows: {title}", path, comment, height, f"eda-{i}")
        for i, ((title, path, comment), height) in enumerate(
            zip(figures, (8.0, 8.2, 5.2), strict=False)
        )
    ]
    diagram = architecture_diagram(run, out_dir / "architecture.png")
    shap = shap_section(run, out_dir)
    pages = [
        [question_section(run), data_section(run), *eda_sections[:1]],
        [*eda_sections[1:], models_section(run)],
        [fitting_section(run), shap, retraining_section(run)],
        [architecture_section(run, diagram), database_section(run), limits_section(run)],
    ]
    return pages, [diagram, *shap.figures]


def write_project_note(run: RunResults, run_dir: Path) -> NoteOutputs:
    """Write ``report.pdf`` (exactly four A4 pages) into the run folder.

    Args:
        run: The run's results.
        run_dir: The run folder; the note's own figures go to ``<run_dir>/report``.

    Returns:
        The PDF, its page count and the figures drawn for it.

    Raises:
        RuntimeError: If the PDF does not have exactly four pages.
    """
    out_dir = Path(run_dir) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    pages, figures = note_pages(run, out_dir)
    manifest = run.manifest
    path = Path(run_dir) / "report.pdf"
    count = render_pdf(
        path,
        f"{run.config.name}: {run.config.question}",
        f"Project note written by pipeline run {manifest.run_id} (started "
        f"{manifest.started_at[:16].replace('T', ' ')} UTC); data hash "
        f"{(manifest.data_hash or '')[:16]}; seed {manifest.seed}.",
        pages,
        footer=f"{run.config.name} · run {manifest.run_id} · generated from the run's results",
    )
    if count != PAGES:
        raise RuntimeError(f"the project note has {count} pages instead of {PAGES}")
    return NoteOutputs(pdf=path, pages=count, figures=figures)
