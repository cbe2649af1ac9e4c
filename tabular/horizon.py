"""What notice costs: the champion refitted at several prediction horizons.

A prediction made ``h`` hours before the event can only use what had happened by then
(see ``prediction_horizon`` in :mod:`tabular.config`). This study recomputes the
point-in-time columns for each horizon, refits the champion's chosen configuration (tuned
at the default horizon) with the same folds and method, and scores it on the folds and,
once per horizon, on the test rows. Horizon 0 is the schedule-only model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tabular.datasets import at_horizon, prepare, recomputes_horizon, sample_rows, split_data
from tabular.features import plan_encoding
from tabular.runner import Runner
from tabular.training import (
    TrainingResult,
    fit_final,
    one_blas_thread,
    predict_folds,
    raw_and_served,
    score,
)


@dataclass
class HorizonPoint:
    """The champion's scores at one horizon.

    Attributes:
        hours: The horizon (0 = schedule only).
        fold_scores: Primary metric on each fold.
        validation_mean: Their mean.
        test_score: Primary metric on the test rows.
        inputs: Input columns of the model.
        seconds: Wall time of this horizon's fits.
        reused: Whether the numbers are the main run's (the default horizon, all rows).
    """

    hours: float
    fold_scores: list[float]
    validation_mean: float
    test_score: float
    inputs: int
    seconds: float
    reused: bool = False


@dataclass
class HorizonStudy:
    """The champion's score against the prediction horizon.

    Attributes:
        family: The champion's family key.
        label: Its human name.
        params: The configuration refitted at every horizon.
        metric: Primary metric name.
        default_hours: The config's horizon.
        points: One per horizon, in increasing order.
        final_rows: Largest sample each fit used (``None``: the main run's samples and all
            development rows for the final fit).
        skipped: Why the study did not run (empty when it ran).
        lineage: The cache key of the pipeline step that computed it (empty outside one).
    """

    family: str
    label: str
    params: dict
    metric: str
    default_hours: float
    points: list[HorizonPoint] = field(default_factory=list)
    final_rows: int | None = None
    skipped: str = ""
    lineage: str = ""

    def table(self) -> pd.DataFrame:
        """Return one row per horizon: fold scores, their mean, the test score.

        Returns:
            The table (empty when the study was skipped).
        """
        rows = []
        for point in self.points:
            row = {"horizon_hours": point.hours}
            row.update({f"fold {i + 1}": round(v, 4) for i, v in enumerate(point.fold_scores)})
            row.update(
                {
                    f"validation_mean_{self.metric}": round(point.validation_mean, 4),
                    f"test_{self.metric}": round(point.test_score, 4),
                    "inputs": point.inputs,
                    "seconds": round(point.seconds, 1),
                }
            )
            rows.append(row)
        return pd.DataFrame(rows)


def horizon_study(
    raw: pd.DataFrame,
    config,
    result: TrainingResult,
    test_scores: dict[str, float],
    sample: int | None,
    seed: int,
    log=print,
    runner: Runner | None = None,
) -> HorizonStudy:
    """Refit the champion at each horizon of ``training.horizon_study`` and score it.

    The rows are those of the main run (same preparation, sample and split); only the
    point-in-time columns change. Each horizon's models are fitted and scored as the main
    run's chosen configuration is (same folds, the final fit on the development rows), on
    fixed-seed samples of at most ``horizon_study.rows`` rows per fit when it is set; then
    every horizon is refitted, the default one included, so that the points compare.

    Args:
        raw: The loaded rows (before preparation), at the config's horizon.
        config: The dataset config.
        result: The main training result (its champion and chosen configuration).
        test_scores: The main run's test score per family (reused at the default horizon
            when the final fits use all rows).
        sample: The ``--sample`` of the main run (``None``: all rows).
        seed: Random seed.
        log: Callable receiving progress lines.
        runner: Where the horizons' refits run, side by side (``None``: one after the other
            in this process); each is seeded, so the points are the same with any runner.

    Returns:
        The study (``skipped`` says why when the source cannot recompute the columns).
    """
    rules = config.training.horizon_study
    champion = result.families[result.best_family]
    development_rows = champion.metrics["train"]["rows"]
    study = HorizonStudy(
        family=champion.family,
        label=champion.label,
        params=champion.best_params,
        metric=result.metric,
        default_hours=config.prediction_horizon,
        # A sample as large as the data is the main run's procedure: no sample at all.
        final_rows=rules.rows if rules.rows and rules.rows < development_rows else None,
    )
    if not recomputes_horizon(config):
        study.skipped = (
            "the data source cannot recompute point-in-time columns for another horizon "
            "(only the built-in loader computes them; a CSV holds them for one horizon)"
        )
        return study
    hours_all = sorted(set(rules.horizons))
    reused = {
        hours
        for hours in hours_all
        if hours == config.prediction_horizon and study.final_rows is None
    }
    refits = [hours for hours in hours_all if hours not in reused]
    if runner is not None:
        # Every horizon is an independent unit: all of them side by side on the cluster.
        calls = [(refit_point, (hours, raw, config, study, sample, seed)) for hours in refits]
        points = dict(zip(refits, runner.run(calls), strict=True))
    else:
        points = {}
    for hours in hours_all:
        if hours in reused:
            study.points.append(
                HorizonPoint(
                    hours=hours,
                    fold_scores=list(champion.folds.validation_scores),
                    validation_mean=champion.verdict.validation_score,
                    test_score=test_scores[champion.family],
                    inputs=len(champion.pipeline.named_steps["preprocess"].feature_names_in_),
                    seconds=0.0,
                    reused=True,
                )
            )
            continue
        if hours in points:
            point = points[hours]
        else:
            point = refit_point(hours, raw, config, study, sample, seed)
        study.points.append(point)
        log(
            f"horizon {hours:g} h: mean fold {result.metric} {point.validation_mean:.4f}, "
            f"test {point.test_score:.4f} ({point.seconds:.0f}s)"
        )
    return study


def refit_point(
    hours: float, raw: pd.DataFrame, config, study: HorizonStudy, sample: int | None, seed: int
) -> HorizonPoint:
    """Refit the study's configuration at one horizon, timed: one unit of the study.

    Args:
        hours: The horizon.
        raw: The loaded rows.
        config: The dataset config.
        study: The study (its family, configuration and sample sizes).
        sample: The main run's ``--sample``.
        seed: Random seed.

    Returns:
        The horizon's point, with the seconds its fits took.
    """
    start = time.perf_counter()
    with one_blas_thread():
        point = _refit_at(hours, raw, config, study, sample, seed)
    point.seconds = time.perf_counter() - start
    return point


def _refit_at(hours: float, raw, config, study: HorizonStudy, sample, seed) -> HorizonPoint:
    """Refit the study's configuration at one horizon and score it on folds and test."""
    config_h = config.at_horizon(hours)
    data, _ = prepare(at_horizon(raw, config, hours), config_h)
    data = sample_rows(data, sample, seed, config_h.date_column)
    split = split_data(data, config_h, seed)
    plan = plan_encoding(split.train, config_h)
    folds = predict_folds(
        study.family, study.params, plan, split.train, split.folds, config_h, seed, study.final_rows
    )
    development = split.train
    if study.final_rows is not None and study.final_rows < len(development):
        rows = np.random.default_rng(seed).choice(
            len(development), size=study.final_rows, replace=False
        )
        development = development.iloc[np.sort(rows)]
    final = fit_final(study.family, study.params, plan, development, config_h, seed, folds)
    raw_proba, _ = raw_and_served(final.pipeline, split.test)
    return HorizonPoint(
        hours=hours,
        fold_scores=list(folds.validation_scores),
        validation_mean=float(np.mean(folds.validation_scores)),
        test_score=score(study.metric, split.test[config.target.name].to_numpy(), raw_proba),
        inputs=len(plan.input_columns),
        seconds=0.0,
    )
