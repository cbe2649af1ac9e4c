"""The training pipeline as a Prefect flow: thin tasks around the plain functions in ``tabular``.

Stages: load → prepare → validate (Great Expectations gate) → split → EDA → training of
three model families (and, with ``--horizon-study``, the champion refitted at several
prediction horizons) → SHAP, feature selection, retraining and saving the two served models
to the BentoML store → building the Bento of the prediction service → storing the run's rows
in MongoDB and querying them → the 4-page ``report.pdf``. Each stage's wall time, the data
hash and the row counts go into ``artifacts/runs/<run-id>/manifest.json``.

Every step but the cheap ones (prepare, split) and the PDF is cached by Prefect on its
inputs and its code (:mod:`flows.caching`): a second run with the same data, config and code
reads the steps' results back and links their files into the new run folder; changing one
config section reruns the steps that read it and those that use their results. The
manifest lists the steps read back (``cached``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.bento import build_bento_task
from flows.caching import BackgroundStep, FilePickle, StepCache, run_step
from flows.cluster import resolve_cluster
from flows.eda import eda_task
from flows.explain import explain_task
from flows.report import report_task, store_task
from flows.training import horizon_task, train_task, training_report_task
from monitoring.reference import REFERENCE_FILE
from reports.note import RunResults
from tabular.config import DEFAULT_CONFIG, DatasetConfig, load_config
from tabular.datasets import (
    CleaningReport,
    Split,
    data_hash,
    load_raw,
    prepare,
    rows_before,
    sample_rows,
    split_data,
)
from tabular.features import free_large_arrays_at_once, plan_encoding
from tabular.loaders import get_loader
from tabular.manifest import (
    TRACKED_PACKAGES,
    RunManifest,
    describe_columns,
    new_run_id,
    package_versions,
)
from tabular.training import selection_outcome
from validation import ValidationReport, require_valid, validate

#: Where run folders go unless ``--artifacts`` or ``MLOPS_ARTIFACTS`` says otherwise.
DEFAULT_ARTIFACTS = Path(os.environ.get("MLOPS_ARTIFACTS", "artifacts"))


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline run returns.

    Attributes:
        run_id: The run's id.
        run_dir: The run's folder (holds ``manifest.json``).
        manifest: The manifest as written.
    """

    run_id: str
    run_dir: Path
    manifest: RunManifest


# Not kept in Prefect's in-memory result cache: the flow frees the loaded rows once
# prepared (unless the horizon study needs them), and a cached copy would outlive them.
# The rows are persisted to a file of their own, without Prefect's in-memory copies.
@task(
    name="load",
    cache_policy=StepCache(step="load"),
    cache_result_in_memory=False,
    result_serializer=FilePickle(),
)
def load_task(config: DatasetConfig) -> pd.DataFrame:
    """Load the raw rows named by the config."""
    return load_raw(config)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(
    raw: pd.DataFrame, config: DatasetConfig, sample: int | None, seed: int, until: str | None
) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop unusable rows, derive the target, keep rows before ``until``, and sample."""
    data, report = prepare(raw, config)
    data = rows_before(data, config, until)
    return sample_rows(data, sample, seed, config.date_column), report


@task(name="validate", cache_policy=StepCache(step="validate", ignore=("docs_dir",)))
def validate_task(data: pd.DataFrame, config: DatasetConfig, docs_dir: Path) -> ValidationReport:
    """Run the Great Expectations gate and publish its outcome as a Prefect artifact."""
    report = validate(data, config, docs_dir=docs_dir)
    rows = [
        {
            "column": f.column or "(table)",
            "expectation": f.expectation,
            "unexpected": f.unexpected_count,
            "examples": str(f.examples),
        }
        for f in report.failures
    ]
    create_markdown_artifact(
        key="validation-summary",
        markdown=f"### Great Expectations gate\n\n```\n{report.summary()}\n```\n\n"
        f"Data Docs: `{report.docs_path}`",
        description="Outcome of the validation gate",
    )
    if rows:
        create_table_artifact(
            key="validation-failures", table=rows, description="Failed expectations"
        )
    return report


@task(name="split", cache_policy=NO_CACHE)
def split_task(data: pd.DataFrame, config: DatasetConfig, seed: int) -> Split:
    """Split the rows into train, validation and test."""
    return split_data(data, config, seed)


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(
    config_path: str = str(DEFAULT_CONFIG),
    sample: int | None = None,
    seed: int | None = None,
    artifacts_dir: str | None = None,
    overrides: dict | None = None,
    until: str | None = None,
    build_bento: bool = True,
    horizon_study: bool = False,
    dask: str | None = None,
) -> PipelineResult:
    """Run the pipeline on one dataset and write its run folder.

    Args:
        config_path: Path of the dataset config (YAML).
        sample: Use a reproducible random sample of this many rows (``None``: all rows).
        seed: Random seed (``None``: the config's seed).
        artifacts_dir: Parent of the run folders (default ``artifacts``).
        overrides: Config keys to replace for this run (see
            :meth:`~tabular.config.DatasetConfig.with_overrides`); the drift monitor's
            retraining moves the split and keeps the champion's inputs this way.
        until: Use only rows dated before this date (ISO 8601).
        build_bento: Build the Bento at the end. The monitor's retraining builds it only for
            a challenger it promotes, so the latest Bento stays the champion's.
        horizon_study: Also refit the champion at each horizon of
            ``training.horizon_study`` (about a minute on the default data; cached like
            every step, so it is paid once per data, config and code).
        dask: A Dask scheduler's address (``tcp://host:8786``): the search's fits, the SHAP
            runs and the horizon study run there as Prefect tasks on ``DaskTaskRunner``
            (default: the config's ``execution.dask``; neither: in this process).

    Returns:
        The run id, folder and manifest.

    Raises:
        UserError: For a bad config, unreadable data or a failed validation; the manifest
            records the failure before it is raised.
    """
    logger = get_run_logger()
    config = load_config(config_path).with_overrides(overrides)
    seed = config.seed if seed is None else seed
    cluster = resolve_cluster(dask, config)
    run_id = new_run_id()
    run_dir = Path(artifacts_dir or DEFAULT_ARTIFACTS) / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = RunManifest(
        run_id=run_id,
        dataset=config.name,
        config_path=str(config.path),
        config=config.model_dump(mode="json", exclude={"path"}),
        seed=seed,
        sample=sample,
        until=until,
        overrides=overrides or {},
        packages=package_versions(
            TRACKED_PACKAGES
            + ((get_loader(config.source.loader).package,) if config.source.loader else ())
        ),
    )
    manifest.write(run_dir)
    logger.info("run %s: writing to %s", run_id, run_dir)
    if cluster is not None:
        logger.info("the search, SHAP and horizon units go to the Dask cluster %s", cluster.address)
    started, cpu = time.perf_counter(), sum(os.times()[:4])

    def step(name: str, task, *args, **kwargs):
        """Run one cached step and record whether its result was read back."""
        outcome = run_step(task, *args, **kwargs)
        if outcome.cached:
            manifest.cached.append(name)
        return outcome.value

    def collect(name: str, background: BackgroundStep):
        """Wait for a step that ran alongside others; record its time and whether it was cached."""
        outcome, seconds = background.outcome()
        manifest.steps[name] = round(seconds, 3)
        manifest.concurrent.append(name)
        if outcome.cached:
            manifest.cached.append(name)
        return outcome.value

    try:
        with manifest.step("load"):
            raw = step("load", load_task, config)
        with manifest.step("prepare"):
            data, cleaning = prepare_task(raw, config, sample, seed, until)
        free_large_arrays_at_once(len(data))
        if not horizon_study:
            # Only the horizon study reads the loaded rows again; the prepared rows are a
            # copy, so the loaded ones would hold as much memory again for the whole run.
            del raw
        manifest.rows = {
            "loaded": cleaning.rows_in,
            "dropped": cleaning.dropped,
            "kept": cleaning.rows_out,
            "used": len(data),
            "positive_share": round(float(data[config.target.name].mean()), 4),
        }
        manifest.columns = describe_columns(data, config)
        manifest.data_hash = data_hash(data)
        docs_dir = run_dir / "validation" / "data_docs"
        with manifest.step("validate"):
            report = step(
                "validate",
                validate_task,
                data,
                config,
                docs_dir,
                files=lambda r: [(Path(r.docs_path).parent, docs_dir)],
            )
        manifest.outputs["data_docs"] = str(docs_dir.relative_to(run_dir) / "index.html")
        require_valid(report)  # stops here, before any training, when the gate failed
        # The store step needs only the validated rows, and runs on one core: it runs
        # alongside the EDA and the training (their time is mostly the other core's).
        storing = BackgroundStep(
            store_task,
            config,
            data,
            _store_location(),
            usable=lambda p: p.ok and _store_present(),
        )
        with manifest.step("split"):
            split = split_task(data, config, seed)
        # Past here only the store step reads the prepared rows, and it lets them go when it
        # is done (see BackgroundStep). A time split's parts are views of them (no memory
        # of their own); a random split's are copies, and the rows are freed then.
        del data
        manifest.split = split.description
        manifest.rows["split"] = split.sizes()
        with manifest.step("plan"):
            # Decided on the training split only; the EDA reports it, the training uses it.
            plan = plan_encoding(split.train, config)
        # The EDA (one core: pandas and matplotlib) runs alongside the training.
        analysing = BackgroundStep(
            eda_task,
            split.train,
            config,
            plan,
            run_dir / "eda",
            cleaning.dropped,
            markers=cleaning.missing_markers,
            files=lambda r: [(r.html_path.parent, run_dir / "eda")],
        )
        with manifest.step("train"):
            training = step("train", train_task, split, config, plan, seed, cluster)
        if horizon_study:
            with manifest.step("horizon"):
                study = step("horizon", horizon_task, raw, config, training, sample, seed, cluster)
        else:
            study = None
        with manifest.step("training-report"):
            training_files = step(
                "training-report",
                training_report_task,
                training,
                study,
                config,
                run_dir / "training",
                files=lambda r: [(r.out_dir, run_dir / "training")],
            )
        manifest.outputs["training"] = str(Path("training") / training_files.html.name)
        manifest.models = _model_summary(training)
        manifest.selection = _selection_summary(training)
        with manifest.step("explain"):
            stage, explain_files, tags, reference = step(
                "explain",
                explain_task,
                training,
                split,
                config,
                plan,
                seed,
                run_dir / "explain",
                run_id,
                manifest.data_hash,
                run_dir / REFERENCE_FILE,
                cluster,
                files=lambda r: [
                    (r[1].out_dir, run_dir / "explain"),
                    (r[3].path, run_dir / REFERENCE_FILE),
                ],
                usable=lambda r: all(_model_saved(tag) for tag in r[2]),
            )
        manifest.outputs["explain"] = str(Path("explain") / explain_files.html.name)
        manifest.selected_features = stage.selection.columns
        manifest.served_models = tags
        manifest.reference = {
            # The file in this run's folder; the models' metadata names the one they were
            # saved with (the same bytes: the SHA-256 below).
            "path": REFERENCE_FILE,
            "sha256": reference.sha256,
            "rows": reference.rows,
        }
        if build_bento:
            with manifest.step("bento"):
                manifest.bento = step(
                    "bento",
                    build_bento_task,
                    config.name,
                    tags,
                    usable=_bento_built,
                )
        eda = collect("eda", analysing)
        manifest.outputs["eda"] = str(Path("eda") / eda.html_path.name)
        proof = collect("store", storing)
        manifest.database = {
            "ok": proof.ok,
            "store": proof.store,
            "rows": proof.rows,
            "inserted": proof.inserted,
            "command": proof.command,
            "reused": "store" in manifest.cached,
        }
        with manifest.step("report"):
            results = RunResults(
                config, manifest, report, eda, training, stage, explain_files, proof
            )
            note = report_task(results, run_dir)
        manifest.outputs["report"] = str(note.pdf.relative_to(run_dir))
        manifest.status = "succeeded"
    except Exception as exc:
        manifest.status = f"failed: {type(exc).__name__}"
        raise
    finally:
        manifest.seconds = round(time.perf_counter() - started, 3)
        manifest.cpu_seconds = round(sum(os.times()[:4]) - cpu, 3)
        manifest.write(run_dir)
    _publish_summary(manifest, run_dir)
    return PipelineResult(run_id=run_id, run_dir=run_dir, manifest=manifest)


def _model_summary(training) -> dict:
    """Each family's numbers for the manifest, named as the reports name them."""
    metric = training.metric
    models = {}
    for key, family in training.families.items():
        test = family.metrics["test"][metric]
        models[key] = {
            "verdict": family.verdict.label,
            # The verdict's own numbers, with the sentence the reports print.
            "verdict_evidence": family.verdict.evidence,
            f"train_rows_{metric}": round(family.verdict.train_score, 4),
            f"mean_fold_{metric}": round(family.verdict.validation_score, 4),
            "fold_scores": [round(v, 4) for v in family.folds.validation_scores],
            f"test_{metric}": round(test, 4),
            "test_minus_mean_fold": round(test - family.verdict.validation_score, 4),
            "best_params": family.best_params,
            "threshold": round(family.threshold, 4),
            "calibrated": family.calibration.applied,
            # The final model on the development rows it was refitted on (all, or a sample
            # of refit_rows), and its pooled fold predictions: what its threshold was chosen on.
            f"final_train_{metric}": round(family.metrics["train"][metric], 4),
            "final_rows": family.final_rows,
            f"pooled_folds_{metric}": round(family.metrics["validation"][metric], 4),
        }
    models["best"] = training.best_family
    return models


def _selection_summary(training) -> dict:
    """The selection rule and what the fold scores predicted, for the manifest."""
    outcome = selection_outcome(training)
    return {
        "rule": outcome.rule,
        "champion": outcome.champion,
        "best_on_test": outcome.best_on_test,
        "shortfall": round(outcome.shortfall, 4),
        "tolerance": outcome.tolerance,
        "within_tolerance": outcome.holds,
        "fold_ranking": outcome.fold_ranking,
        "test_ranking": outcome.test_ranking,
        "outcome": outcome.sentence,
    }


def _model_saved(tag: str) -> bool:
    import bentoml

    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return False
    return True


def _bento_built(tag: str) -> bool:
    import bentoml

    try:
        bentoml.bentos.get(tag)
    except bentoml.exceptions.NotFound:
        return False
    return True


def _store_location() -> str:
    """Where the run's rows go (the store step's key): the URI or folder, and the database."""
    from store import StoreSettings

    settings = StoreSettings.from_env()
    return f"{settings.location} {settings.database}"


def _store_present() -> bool:
    """Whether the store still holds data: a MongoDB server is trusted, an embedded folder checked."""
    from store import StoreSettings

    settings = StoreSettings.from_env()
    return not settings.embedded or (
        settings.store_dir.is_dir() and any(settings.store_dir.iterdir())
    )


def _publish_summary(manifest: RunManifest, run_dir: Path) -> None:
    rows = manifest.rows
    dropped = (
        ", ".join(f"{count:,} ({reason})" for reason, count in rows["dropped"].items()) or "none"
    )
    steps = "\n".join(
        f"| {name} | {seconds:.1f}{' (cached)' if name in manifest.cached else ''} |"
        for name, seconds in manifest.steps.items()
    )
    create_markdown_artifact(
        key="run-summary",
        markdown=(
            f"## Run `{manifest.run_id}` on `{manifest.dataset}`\n\n"
            f"- rows loaded {rows['loaded']:,}, dropped {dropped}, used {rows['used']:,}\n"
            f"- positive share {rows['positive_share']:.1%}\n"
            f"- split: {manifest.split} → {rows['split']}\n"
            f"- data hash `{manifest.data_hash[:16]}…`\n"
            f"- Bento `{manifest.bento or 'not built (a challenger)'}`\n"
            f"- run folder `{run_dir}`\n\n| step | seconds |\n|---|---|\n{steps}\n"
        ),
        description="Pipeline run summary",
    )
