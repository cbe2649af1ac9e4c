"""The champion/challenger gate that closes the loop after drift.

When a drift check flags dataset drift, the monitor retrains (:mod:`monitoring.retrain`, on
every row dated before the most recent labelled window, with the champion's inputs) and
judges the challenger against the champion on that window, which neither model trained on. The challenger replaces the champion only if its score beats the
champion's by more than the configured margin.

The champion is the pair of models of the dataset's latest Bento (what ``make serve``
serves): a promoted challenger gets its Bento built, a kept one does not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, create_model

from store.crud import DecisionOut
from tabular.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from monitoring.check import CheckResult
    from tabular.config import DatasetConfig


class NoLabelledWindow(UserError):
    """No recent labelled rows to judge a challenger on."""


class LabelledWindow(BaseModel):
    """The most recent labelled rows, on which champion and challenger are judged.

    Attributes:
        source: ``feedback`` (logged rows whose true outcome was posted) or ``dataset``
            (the dataset's rows dated within the logged rows' dates, too little feedback).
        rows: Labelled rows.
        positives: Rows whose true class is 1.
        logged_from: When the oldest of the window's logs was served.
        logged_to: When the newest was served.
        date_from: Earliest value of the date column in the rows (``None`` without a date).
        date_to: Latest value of the date column.
    """

    source: Literal["feedback", "dataset"]
    rows: int
    positives: int
    logged_from: dt.datetime | None = None
    logged_to: dt.datetime | None = None
    date_from: dt.datetime | None = None
    date_to: dt.datetime | None = None


@dataclass(frozen=True)
class Champion:
    """The models the service serves.

    Attributes:
        primary: Tag of the primary (answering) model.
        secondary: Tag of the secondary model.
        bento: The Bento serving them, if one was found.
    """

    primary: str
    secondary: str
    bento: str | None = None

    @property
    def tags(self) -> list[str]:
        """Both tags, primary first."""
        return [self.primary, self.secondary]


#: The gate's outcome: the fields of a stored promotion decision that the judging decides,
#: taken from the store's one definition of a decision (the flow adds the others).
Decision = create_model(
    "Decision",
    __doc__="The outcome of the gate (part of :data:`store.crud.DecisionOut`).",
    **{
        name: (DecisionOut.model_fields[name].annotation, DecisionOut.model_fields[name])
        for name in ("promoted", "reason", "metric", "margin", "champion_score", "challenger_score")
    },
)


def labelled_window(
    check: CheckResult, config: DatasetConfig, min_rows: int
) -> tuple[LabelledWindow, pd.DataFrame]:
    """Find the most recent labelled rows of a drift check's window.

    The window's logs that have feedback, when there are at least ``min_rows`` of them;
    otherwise, for a dataset with a date column, the dataset's rows dated between the first
    and last date of the window's logs (the dataset's newer months carry their outcome).

    Args:
        check: The drift check (its compared rows and served model).
        config: The dataset config.
        min_rows: Fewest labelled rows to judge on.

    Returns:
        The window's description and its rows (served inputs and the target).

    Raises:
        NoLabelledWindow: If neither source has ``min_rows`` labelled rows of both classes.
    """
    from tabular.datasets import load_raw, prepare

    if check.current is None or check.served is None:
        raise NoLabelledWindow("the drift check compared no rows: nothing to judge on")
    target, date = config.target.name, config.date_column
    columns = check.served.contract.names
    summary = check.summary
    labelled = check.current[check.current[target].notna()]
    source: Literal["feedback", "dataset"] = "feedback"
    if len(labelled) >= min_rows:
        rows = labelled[columns].copy()
        rows[target] = labelled[target].astype("int64").to_numpy()
    elif date is not None and date in columns:
        first, last = check.current[date].min(), check.current[date].max()
        data, _ = prepare(load_raw(config), config)
        rows = data[(data[date] >= first) & (data[date] <= last)][[*columns, target]]
        source = "dataset"
    else:
        raise NoLabelledWindow(
            f"only {len(labelled)} of the window's logs have feedback (< {min_rows}) and "
            f"dataset '{config.name}' has no date to find the window's rows by"
        )
    rows = rows.reset_index(drop=True)
    if len(rows) < min_rows or rows[target].nunique() < 2:
        raise NoLabelledWindow(
            f"the labelled window ({source}) has {len(rows)} rows of "
            f"{rows[target].nunique()} class(es); at least {min_rows} of both classes are needed"
        )
    window = LabelledWindow(
        source=source,
        rows=len(rows),
        positives=int(rows[target].sum()),
        logged_from=summary.window.first_log,
        logged_to=summary.window.last_log,
        date_from=rows[date].min().to_pydatetime() if date in rows else None,
        date_to=rows[date].max().to_pydatetime() if date in rows else None,
    )
    return window, rows


def retraining_plan(
    config: DatasetConfig, window: LabelledWindow, inputs: list[str]
) -> tuple[dict[str, Any], str | None]:
    """Decide the retraining run's data: every row dated before the labelled window.

    With a date column, the run uses every row dated before the window's first day (the
    most recent period included); its selection runs on ``retrain.folds`` rolling-origin
    folds of ``retrain.fold_months`` months, the last one validating on the period just
    before the window, and its final models are refitted on all those rows. The window is
    the only held-out data: no fold, threshold or calibration sees it. The champion's inputs
    are the only candidate features, and all are kept, so the challenger takes the same
    request and can be judged on the same logged rows. Without a date column the run
    splits at random as configured (its training rows may then overlap the labelled
    window).

    Args:
        config: The dataset config.
        window: The labelled window.
        inputs: The champion's input columns.

    Returns:
        The config overrides of the run, and its ``until`` date (``None`` without a date).
    """
    import pandas as pd

    overrides = config.restricted_to(inputs)
    if config.date_column is None or window.date_from is None:
        return overrides, None
    rules = config.monitoring.retrain
    until = pd.Timestamp(window.date_from).normalize()
    starts = [
        (until - pd.DateOffset(months=rules.fold_months * k)).date().isoformat()
        for k in range(rules.folds, 0, -1)
    ]
    overrides["split"] = {
        "method": "time",
        "validation_start": None,
        "folds": starts,
        "test_start": until.date().isoformat(),
    }
    return overrides, until.date().isoformat()


def current_champion(dataset: str, answered: str) -> Champion:
    """Return the models the service serves: those of the dataset's latest Bento.

    Args:
        dataset: The dataset.
        answered: Tag of the primary model that answered the checked logs, used (with the
            secondary model of the same run) when no Bento of the dataset exists.

    Returns:
        The champion.

    Raises:
        LookupError: If no Bento exists and no secondary model of the same run is found.
    """
    import bentoml

    bentos = [b for b in bentoml.bentos.list() if b.info.labels.get("dataset") == dataset]
    bentos = [b for b in bentos if b.info.args.get("primary") and b.info.args.get("secondary")]
    if bentos:
        latest = max(bentos, key=lambda b: b.info.creation_time)
        return Champion(latest.info.args["primary"], latest.info.args["secondary"], str(latest.tag))
    run = bentoml.models.get(answered).info.labels.get("run")
    secondary = [
        m
        for m in bentoml.models.list()
        if m.info.labels.get("run") == run
        and m.info.labels.get("role") == "secondary"
        and m.info.labels.get("dataset") == dataset
    ]
    if not secondary:
        raise LookupError(f"no secondary model of run '{run}' (the run of {answered}) was found")
    return Champion(answered, str(secondary[0].tag))


def score_model(tag: str, rows: pd.DataFrame, target: str, metric: str) -> float:
    """Score a served model on labelled rows.

    Args:
        tag: The model-store tag.
        rows: Labelled rows holding the model's inputs and ``target``.
        target: The target column.
        metric: ``roc_auc`` or ``average_precision``.

    Returns:
        The score.

    Raises:
        UserError: If the rows lack some of the model's inputs.
    """
    import bentoml

    from bentos.registry import served_model_from_tag

    served = served_model_from_tag(tag)
    missing = [c for c in served.contract.names if c not in rows.columns]
    if missing:
        raise UserError(
            f"{tag} takes input(s) {', '.join(map(repr, missing))} that the labelled window "
            "lacks: it cannot be judged on these rows"
        )
    pipeline = bentoml.sklearn.load_model(tag)
    return score_pipeline(pipeline, served.contract.names, served.threshold, rows, target, metric)


def score_pipeline(
    pipeline, inputs: list[str], threshold: float, rows: pd.DataFrame, target: str, metric: str
) -> float:
    """Score a fitted pipeline on labelled rows (what :func:`score_model` does once loaded).

    Args:
        pipeline: The fitted pipeline.
        inputs: Its input columns.
        threshold: Its decision threshold (for the threshold metrics).
        rows: Labelled rows holding ``inputs`` and ``target``.
        target: The target column.
        metric: ``roc_auc`` or ``average_precision``.

    Returns:
        The score.
    """
    from tabular.training import classification_metrics

    proba = pipeline.predict_proba(rows[inputs])[:, 1]
    return float(classification_metrics(rows[target].to_numpy(), proba, threshold)[metric])


def decide(champion_score: float, challenger_score: float, margin: float, metric: str) -> Decision:
    """Promote the challenger only if it beats the champion by more than the margin.

    Args:
        champion_score: The champion's score on the labelled window.
        challenger_score: The challenger's score on the same rows.
        margin: How much better the challenger must be.
        metric: The metric's name (for the reason).

    Returns:
        The decision with its reason.
    """
    promoted = challenger_score > champion_score + margin
    verb = "beats" if promoted else "does not beat"
    reason = (
        f"{'promote' if promoted else 'keep the champion'}: the challenger's {metric} "
        f"{challenger_score:.4f} {verb} the champion's {champion_score:.4f} by more than "
        f"{margin:g}"
    )
    return Decision(
        promoted=promoted,
        reason=reason,
        metric=metric,
        margin=margin,
        champion_score=champion_score,
        challenger_score=challenger_score,
    )


def reload_service(url: str, champion: Champion, api_key: str | None, timeout: float = 120) -> str:
    """Ask a running prediction service to load a new champion (its ``/reload`` endpoint).

    Args:
        url: The service's base URL, e.g. ``http://127.0.0.1:3000``.
        champion: The models to load.
        api_key: The service's ``MLOPS_API_KEY``.
        timeout: Longest wait for the answer, in seconds.

    Returns:
        One line: the HTTP status and the service's answer (or why it could not be reached).
    """
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    body = {"primary": champion.primary, "secondary": champion.secondary}
    try:
        answer = httpx.post(
            url.rstrip("/") + "/reload", json=body, headers=headers, timeout=timeout
        )
    except httpx.HTTPError as exc:
        return f"could not reach {url}: {type(exc).__name__}: {exc}"
    return f"{answer.status_code}: {answer.text[:500]}"
