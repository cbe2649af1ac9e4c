"""The ``drift-monitor`` Prefect flow: a drift check, and retraining behind a champion/challenger gate.

Thin wrappers around :mod:`monitoring`: the check task reads the window's logs, compares
them with the reference and writes the report, the summary and the workspace snapshots;
the flow publishes them as artifacts. When dataset drift is flagged and ``on_drift`` is
``retrain``, it runs the ``challenger-training`` flow as a subflow on every row dated
before the most recent labelled window (:mod:`monitoring.retrain`: the champion's inputs,
rolling folds ending where the window starts, the final refit on all those rows), judges
the challenger against the champion on that window, records the decision (artifact and
store) and, for a promoted challenger, builds its Bento and asks the running service to
reload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.bento import build_bento_task
from flows.pipeline import DEFAULT_ARTIFACTS, validate_task
from monitoring.champion import (
    Champion,
    NoLabelledWindow,
    current_champion,
    decide,
    labelled_window,
    reload_service,
    retraining_plan,
    score_model,
)
from monitoring.check import CheckResult, DriftSummary, Window, run_check
from monitoring.drift import DriftSettings
from monitoring.reference import REFERENCE_FILE
from monitoring.retrain import Challenger, train_challenger
from store import DecisionOut
from tabular.config import DEFAULT_CONFIG, DatasetConfig, load_config
from tabular.manifest import RunManifest, new_run_id

OnDrift = Literal["retrain", "report", "off"]


@dataclass
class MonitorResult:
    """What a ``drift-monitor`` run returns.

    Attributes:
        summary: The drift check's summary.
        action: What the drift led to: ``none`` (no dataset drift), ``off``, ``report``
            (retraining is off), ``no-window`` (no labelled window to judge on), or
            ``decided``.
        decision: The recorded champion/challenger decision, when one was taken.
        note: One sentence about the action.
    """

    summary: DriftSummary
    action: str
    decision: DecisionOut | None = None
    note: str = ""


@task(name="drift-check", cache_policy=NO_CACHE)
def check_task(
    config: DatasetConfig, window: Window, settings: DriftSettings, out_root: Path, workspace: Path
) -> CheckResult:
    """Connect to the store, apply the log retention, run one drift check (:func:`run_check`)."""
    from store import apply_log_retention, connect

    connect()
    apply_log_retention(config.monitoring.log_retention_days)
    result = run_check(config, window, settings, out_root=out_root, workspace=workspace)
    get_run_logger().info("%s: %s", result.summary.status, result.summary.message)
    return result


def publish_check(summary: DriftSummary) -> None:
    """Publish a check's summary as a markdown artifact and its column tests as a table."""
    rows = summary.rows
    lines = [
        f"## Drift check `{summary.check_id}`: **{summary.status}**",
        "",
        summary.message,
        "",
        f"- model `{summary.model}` (run `{summary.run_id}`), window: {summary.window.description}",
        f"- logs {rows.logged:,} (other versions left out {rows.other_versions:,}), refused "
        f"{rows.refused:,}, compared {rows.compared:,}, with feedback {rows.labelled:,}",
    ]
    if summary.reference is not None:
        lines.append(
            f"- reference ({summary.reference.mode}): {summary.reference.rows:,} "
            f"{summary.reference.description}"
        )
    if summary.weighted_drift is not None:
        lines.append(
            f"- importance-weighted drift {summary.weighted_drift:.3f} (alarm at "
            f"{summary.importance_share_threshold:.2f}; weights: {summary.importance_source}); "
            f"share of drifted columns {summary.drifted_share:.2f}"
        )
    if summary.prediction_drift is not None:
        p = summary.prediction_drift
        lines.append(
            f"- prediction drift: {p.drifted} ({p.method} {p.score:.4g}, {p.severity:.2f}x its "
            "threshold; reported, does not decide)"
        )
    if summary.performance is not None:
        quality = ", ".join(f"{k} {v:.3f}" for k, v in summary.performance.current.items())
        lines.append(f"- quality on {summary.performance.rows:,} labelled logs: {quality}")
    elif summary.performance_note:
        lines.append(f"- quality: {summary.performance_note}")
    lines += [f"- refused: {p.rows:,} × {p.field}: {p.message}" for p in summary.problems]
    lines += [f"- `{name}`: {path}" for name, path in summary.outputs.items()]
    seconds = ", ".join(f"{part} {value:.2f} s" for part, value in summary.seconds.items())
    lines.append(f"- time: {seconds}")
    create_markdown_artifact(
        key="drift-summary", markdown="\n".join(lines), description="Drift check summary"
    )
    if summary.columns:
        order = {name: i for i, name in enumerate(summary.ranking)}
        columns = sorted(summary.columns, key=lambda c: order.get(c.column, len(order)))
        create_table_artifact(
            key="drift-columns",
            table=[
                {**c.model_dump(exclude={"reasons"}), "reasons": ", ".join(c.reasons)}
                for c in columns
            ],
            description="Per-column drift tests, the most important drift first",
        )


@task(name="judge-challenger", cache_policy=NO_CACHE)
def judge_task(
    champion: Champion, challenger: Champion, rows, target: str, metric: str, margin: float
):
    """Score both primary models on the labelled window and decide."""
    champion_score = score_model(champion.primary, rows, target, metric)
    challenger_score = score_model(challenger.primary, rows, target, metric)
    return decide(champion_score, challenger_score, margin, metric)


@task(name="record-decision", cache_policy=NO_CACHE)
def record_task(decision: dict) -> DecisionOut:
    """Store the decision and publish it as a markdown artifact and a table."""
    from store import connect, record_decision

    connect()
    stored = record_decision(decision)
    window = stored.window
    create_markdown_artifact(
        key="promotion-decision",
        markdown=(
            f"## Champion/challenger: **{'promoted' if stored.promoted else 'kept'}**\n\n"
            f"{stored.reason}\n\n"
            f"- champion {', '.join(f'`{t}`' for t in stored.champion)}: "
            f"{stored.metric} {stored.champion_score:.4f}\n"
            f"- challenger {', '.join(f'`{t}`' for t in stored.challenger)} (run "
            f"`{stored.challenger_run}`): {stored.metric} {stored.challenger_score:.4f}\n"
            f"- window: {window['rows']:,} labelled rows from {window['source']}, dated "
            f"{window.get('date_from')} to {window.get('date_to')}, logged "
            f"{window.get('logged_from')} to {window.get('logged_to')}\n"
            f"- Bento: {stored.bento or 'none (kept)'}; service reload: "
            f"{stored.service_reload or 'not asked'}\n"
            f"- stored as decision `{stored.decision_id}` (collection promotion_decisions)"
        ),
        description="Champion/challenger decision",
    )
    create_table_artifact(
        key="promotion-scores",
        table=[
            {
                "model": "champion",
                "tags": ", ".join(stored.champion),
                "score": stored.champion_score,
            },
            {
                "model": "challenger",
                "tags": ", ".join(stored.challenger),
                "score": stored.challenger_score,
            },
        ],
        description=f"{stored.metric} on the labelled window ({window['rows']} rows)",
    )
    return stored


@dataclass(frozen=True)
class ChallengerRun:
    """What a ``challenger-training`` run returns.

    Attributes:
        run_id: The run's id.
        run_dir: Its folder (``manifest.json``, ``reference.parquet``, the gate's Data Docs).
        challenger: The trained challenger.
    """

    run_id: str
    run_dir: Path
    challenger: Challenger


@task(name="challenger-rows", cache_policy=NO_CACHE)
def challenger_rows_task(config: DatasetConfig, until: str | None, sample: int | None, seed: int):
    """Load and prepare the dataset's rows, keep those before ``until``, and sample."""
    from tabular.datasets import load_raw, prepare, rows_before, sample_rows

    data, report = prepare(load_raw(config), config)
    data = rows_before(data, config, until)
    return sample_rows(data, sample, seed, config.date_column), report


@task(name="train-challenger", cache_policy=NO_CACHE)
def train_challenger_task(
    data, config: DatasetConfig, seed: int, run_id: str, run_dir: Path, data_hash: str
):
    """Train and save the challenger (see :func:`monitoring.retrain.train_challenger`)."""
    return train_challenger(
        data,
        config,
        seed=seed,
        run_id=run_id,
        run_dir=run_dir,
        data_hash=data_hash,
        log=get_run_logger().info,
    )


@flow(name="challenger-training", log_prints=True)
def challenger_training(
    config_path: str,
    overrides: dict,
    until: str | None,
    sample: int | None = None,
    seed: int | None = None,
    artifacts_dir: str | None = None,
) -> ChallengerRun:
    """Train a challenger on the rows before the judged window and write its run folder.

    The rows pass the validation gate first, as in the training pipeline; the EDA, the
    horizon study, the SHAP selection, the report and the import into the store are not
    run: the challenger keeps the champion's inputs and its rows are already stored.

    Args:
        config_path: The dataset config (YAML).
        overrides: The retraining plan's config overrides
            (:func:`monitoring.champion.retraining_plan`).
        until: Use only rows dated before this (the window's first day).
        sample: Sample this many of those rows (``None``: all).
        seed: Random seed (``None``: the config's).
        artifacts_dir: Parent of the run folders.

    Returns:
        The run's id and folder, and the challenger.

    Raises:
        UserError: For unreadable data, a failed validation, or no usable fold; the
            manifest records the failure before it is raised.
    """
    from tabular.datasets import data_hash
    from validation import require_valid

    logger = get_run_logger()
    config = load_config(config_path).with_overrides(overrides)
    seed = config.seed if seed is None else seed
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
        overrides=overrides,
    )
    manifest.write(run_dir)
    logger.info("challenger run %s: rows before %s, writing to %s", run_id, until, run_dir)
    try:
        with manifest.step("load"):
            data, cleaning = challenger_rows_task(config, until, sample, seed)
        manifest.rows = {
            "loaded": cleaning.rows_in,
            "dropped": cleaning.dropped,
            "kept": cleaning.rows_out,
            "used": len(data),
        }
        manifest.data_hash = data_hash(data)
        with manifest.step("validate"):
            report = validate_task(data, config, run_dir / "validation" / "data_docs")
        require_valid(report)
        with manifest.step("train"):
            challenger = train_challenger_task(
                data, config, seed, run_id, run_dir, manifest.data_hash
            )
        fit = challenger.final_fit
        manifest.split = challenger.split
        manifest.rows["final_fit"] = {
            "rows": fit.rows,
            "from": None if fit.date_from is None else fit.date_from.isoformat(),
            "to": None if fit.date_to is None else fit.date_to.isoformat(),
            "last_fold": fit.last_fold,
        }
        manifest.selected_features = challenger.inputs
        manifest.served_models = challenger.tags
        manifest.models = {"served": challenger.families, "importance": challenger.importance}
        manifest.reference = {
            "path": REFERENCE_FILE,
            "sha256": challenger.reference_sha256,
            "rows": challenger.reference_rows,
        }
        manifest.status = "succeeded"
    except Exception as exc:
        manifest.status = f"failed: {type(exc).__name__}"
        raise
    finally:
        manifest.write(run_dir)
    return ChallengerRun(run_id=run_id, run_dir=run_dir, challenger=challenger)


def retrain_and_decide(
    config_path: str,
    config: DatasetConfig,
    check: CheckResult,
    *,
    margin: float,
    artifacts_dir: str | None,
    service_url: str | None,
) -> MonitorResult:
    """Retrain on every row before the labelled window, judge the challenger, record the decision.

    Args:
        config_path: The dataset config's path (the retraining run reads it).
        config: The dataset config.
        check: The drift check that flagged dataset drift.
        margin: How much better the challenger must score.
        artifacts_dir: Parent of the run folders.
        service_url: The running service to reload after a promotion (``None``: do not).

    Returns:
        The result with the recorded decision, or why no decision was taken.
    """
    logger = get_run_logger()
    monitoring = config.monitoring
    try:
        window, rows = labelled_window(check, config, monitoring.min_rows)
    except NoLabelledWindow as exc:
        note = f"dataset drift, but no retraining: {exc}"
        logger.warning(note)
        create_markdown_artifact(key="promotion-decision", markdown=f"## No decision\n\n{note}")
        return MonitorResult(summary=check.summary, action="no-window", note=note)
    champion = current_champion(config.name, check.summary.model)
    from bentos.registry import served_model_from_tag

    inputs = served_model_from_tag(champion.primary).contract.names
    overrides, until = retraining_plan(config, window, inputs)
    logger.info(
        "retraining on %s rows before %s (champion %s), judged on %d labelled rows (%s)",
        config.name,
        until or "(no date: random split)",
        champion.primary,
        window.rows,
        window.source,
    )
    run = challenger_training(
        config_path=config_path,
        overrides=overrides,
        until=until,
        sample=monitoring.retrain.sample,
        artifacts_dir=artifacts_dir,
    )
    challenger = Champion(*run.challenger.tags)
    metric = config.training.metric
    decision = judge_task(champion, challenger, rows, config.target.name, metric, margin)
    bento = reload = None
    if decision.promoted:
        bento = build_bento_task(config.name, challenger.tags)
        if service_url:
            reload = reload_service(service_url, challenger, os.environ.get("MLOPS_API_KEY"))
            logger.info("asked %s to reload: %s", service_url, reload)
    stored = record_task(
        {
            "dataset": config.name,
            "promoted": decision.promoted,
            "reason": decision.reason,
            "metric": metric,
            "margin": margin,
            "champion": champion.tags,
            "challenger": challenger.tags,
            "champion_score": decision.champion_score,
            "challenger_score": decision.challenger_score,
            "window": window.model_dump(mode="json"),
            "challenger_run": run.run_id,
            "drift_check": check.summary.check_id,
            "bento": bento,
            "service_reload": reload,
        }
    )
    logger.info(stored.reason)
    return MonitorResult(
        summary=check.summary, action="decided", decision=stored, note=stored.reason
    )


def drift_settings(
    config: DatasetConfig,
    *,
    reference: str | None = None,
    importance_share: float | None = None,
    drift_share: float | None = None,
    methods: dict[str, str] | None = None,
) -> DriftSettings:
    """Build a check's settings from the config's ``monitoring`` section and any overrides.

    Args:
        config: The dataset config.
        reference: Overrides ``monitoring.reference``.
        importance_share: Overrides ``monitoring.importance_share``.
        drift_share: Overrides ``monitoring.drift_share``.
        methods: Added to ``monitoring.methods``.

    Returns:
        The settings.
    """
    monitoring = config.monitoring
    return DriftSettings(
        reference=reference or monitoring.reference,
        importance_share=monitoring.importance_share
        if importance_share is None
        else importance_share,
        drift_share=monitoring.drift_share if drift_share is None else drift_share,
        missing_share=monitoring.missing_share,
        correlation_change=monitoring.correlation_change,
        methods={**monitoring.methods, **(methods or {})},
        min_rows=monitoring.min_rows,
    )


@flow(name="drift-monitor", log_prints=True)
def drift_monitor(
    config_path: str = str(DEFAULT_CONFIG),
    since: str | None = None,
    until: str | None = None,
    since_minutes: float | None = None,
    last: int | None = None,
    reference: Literal["whole", "same_period", "recent"] | None = None,
    importance_share: float | None = None,
    drift_share: float | None = None,
    methods: dict[str, str] | None = None,
    min_rows: int | None = None,
    on_drift: OnDrift | None = None,
    margin: float | None = None,
    service_url: str | None = None,
    artifacts_dir: str | None = None,
    workspace: str | None = None,
) -> MonitorResult:
    """Check the drift of the served inputs once; on dataset drift, act as ``on_drift`` says.

    Every parameter left ``None`` takes the config's ``monitoring`` value.

    Args:
        config_path: Path of the dataset config (YAML).
        since: Check the logs served at or after this time (ISO 8601, UTC).
        until: Check the logs served before this time.
        since_minutes: Check the logs of the last this many minutes (instead of ``since``).
        last: Check at most the most recent this many logs (alone: ``window_rows``).
        reference: The reference rows: ``whole``, ``same_period`` or ``recent``.
        importance_share: Importance-weighted drift that flags dataset drift.
        drift_share: Share of drifted columns of Evidently's test (reported).
        methods: Drift method per column, e.g. ``{"dest": "psi"}``.
        min_rows: Fewest valid logs to compare (and labelled rows to judge on).
        on_drift: ``retrain``, ``report`` (say it would retrain) or ``off``.
        margin: How much the challenger must beat the champion by.
        service_url: The running service to reload after a promotion.
        artifacts_dir: Parent of the run and monitoring folders (default ``artifacts``).
        workspace: The Evidently workspace (default ``<artifacts>/monitoring/workspace``).

    Returns:
        The check's summary and what the drift led to.

    Raises:
        UserError: For a bad config, window or drift setting, or an unreachable store.
    """
    logger = get_run_logger()
    config = load_config(config_path)
    monitoring = config.monitoring
    if min_rows is not None:
        # One minimum for the check and the judging window, as in the config.
        config = config.with_overrides({"monitoring": {"min_rows": min_rows}})
        monitoring = config.monitoring
    settings = drift_settings(
        config,
        reference=reference,
        importance_share=importance_share,
        drift_share=drift_share,
        methods=methods,
    )
    window = Window.parse(
        since=since,
        until=until,
        since_minutes=since_minutes,
        last=last,
        default_last=monitoring.window_rows,
    )
    root = Path(artifacts_dir or DEFAULT_ARTIFACTS) / "monitoring"
    check = check_task(config, window, settings, root, Path(workspace or root / "workspace"))
    publish_check(check.summary)
    if not check.summary.dataset_drift:
        return MonitorResult(summary=check.summary, action="none", note=check.summary.message)
    mode = on_drift or monitoring.on_drift
    if mode != "retrain":
        note = (
            "dataset drift; retraining is off (on_drift=off)"
            if mode == "off"
            else "dataset drift: on_drift=retrain would retrain now and judge the challenger "
            "against the champion (on_drift=report only reports it)"
        )
        logger.warning(note)
        return MonitorResult(summary=check.summary, action=mode, note=note)
    return retrain_and_decide(
        config_path,
        config,
        check,
        margin=monitoring.margin if margin is None else margin,
        artifacts_dir=artifacts_dir,
        service_url=service_url,
    )
