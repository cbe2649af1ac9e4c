"""Monitor evaluation: false alarms on training months, faults caught, champion against challenger.

Usage (from the repository root, after `make run` saved the served models with their
reference and importance on the full data):

    .venv/bin/python benchmarks/monitor_eval.py                  # part of `make bench`
    .venv/bin/python benchmarks/monitor_eval.py --skip-retrain   # the drift part only

**Drift.** Every window is ``--rows`` rows (3,000 by default) sampled from one month of the
dataset, as ``mlops replay --sample 3000`` sends them: through the served model's input
contract as the API reads a request (rows it would refuse are left out and counted) and
scored by the served primary model, as the service logs them. Each window is then judged
in process by :func:`monitoring.check.judge_window`, the function ``run_check`` calls on
the logs it read (the same reference choice, tests, weights and verdict; only the store
and the HTTP layer are skipped). The replay sequence, for each reference setting
(``whole``, ``same_period``, ``recent``):

* the nine training months, January to September: every dataset-drift verdict there is a
  false alarm (data the model was trained on);
* one calendar week of each training month (the 8th to the 14th), a shorter window
  against its whole month: reported, to show what the verdict does at that scale;
* each test month (October, November, December) is replayed once (*the month's first
  logs*: the first window of a month the model never saw), then a second sample of it is
  replayed clean (the *control*) and with each fault of :mod:`monitoring.faults` (units,
  stuck, renamed, missing, shuffled), each in the most important served column it applies
  to; detected = a dataset-drift verdict, ranked first = the faulty column heads the
  check's ranking; and with the unit fault in the least important numeric column, which
  must be flagged and ranked first without raising the alarm.

``recent`` compares a window with the one replayed before it (January has none and falls
back to ``same_period``, as the monitor does); ``same_period`` compares a test-month window
with the month's first logs (the training rows hold no October). The old rule (``whole``
reference, dataset drift when half of the columns drift, unweighted) is shown for
comparison.

**Retraining.** For each test month: the champion (the served primary model, fitted on
January-September) against a challenger retrained as the monitor retrains
(:func:`monitoring.champion.retraining_plan`, :func:`monitoring.retrain.fit_challenger`):
the champion's inputs, every row dated before the month, rolling folds ending at its first
day. Both are scored on the month replayed with feedback (``--rows`` rows, as the gate
judges them) and on all its rows; the gate's decision (margin ``monitoring.margin``) is
printed. Taken on a shared machine: the load average is printed with the times.
"""

from __future__ import annotations

import argparse
import calendar
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import flows  # noqa: E402, F401  (the project's Prefect/BentoML homes, as under make)

SETTINGS = ("whole", "same_period", "recent")
TRAINING_MONTHS = range(1, 10)
TEST_MONTHS = (10, 11, 12)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


@dataclass
class Verdict:
    """One window judged under one setting."""

    window: str
    kind: str  # training, fault, control, unused
    fault: str | None
    column: str | None
    alarm: bool
    first: str | None
    weighted: float
    drifted: list[str]
    reference: str
    old_rule: bool


@dataclass
class Tally:
    """A setting's counts."""

    verdicts: list[Verdict] = field(default_factory=list)

    def of(self, kind: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.kind == kind]


def eligible(served, importance, reference, kind: str) -> list[str]:
    """Served columns that a fault of this kind can spoil, the most important first.

    ``nullable``: the columns whose nulls the contract accepts (the pipeline imputes them)
    and that are at most 10 % missing in the reference, where a burst of 30 % is a fault
    (a column missing 77 % of the time, as a plane's previous leg, barely moves).
    """
    roles = served.contract.roles
    if kind == "number":
        columns = roles["number"]
    elif kind == "category":
        columns = roles["category"]
    else:
        columns = [
            s.name
            for s in served.contract.fields
            if s.kind != "datetime" and s.nullable and reference[s.name].isna().mean() <= 0.1
        ]
    return sorted(columns, key=lambda c: -importance.get(c, 0.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="rows per window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-retrain", action="store_true", help="the drift part only")
    args = parser.parse_args()

    import bentoml
    import numpy as np
    import pandas as pd

    from bentos.registry import served_model, served_model_from_tag
    from flows.monitor import drift_settings
    from monitoring.champion import current_champion
    from monitoring.check import judge_window
    from monitoring.drift import prediction_name
    from monitoring.faults import FAULTS, KINDS, describe, inject
    from monitoring.reference import (
        importance_shares,
        load_reference,
        probability_column,
        read_importance,
    )
    from tabular.config import DEFAULT_CONFIG, load_config
    from tabular.datasets import load_raw, prepare

    started = time.perf_counter()
    config = load_config(DEFAULT_CONFIG)
    target, date = config.target.name, config.date_column
    # The served champion (the latest Bento's), not the latest saved model: a challenger the
    # monitor kept is saved too.
    latest = served_model(config.name, "primary")
    served = served_model_from_tag(current_champion(config.name, latest.tag).primary)
    model = bentoml.models.get(served.tag)
    importance = read_importance(model.info.metadata, served.contract.names)
    if importance is None:
        print(f"error: {served.tag} was saved without its importance: run `make run` first")
        return 2
    pipeline = bentoml.sklearn.load_model(served.tag)
    prediction = prediction_name(served.contract.names)
    reference = load_reference(served.reference_path, served.reference_sha256).rename(
        columns={probability_column(served.role): prediction}
    )
    data, _ = prepare(load_raw(config), config)
    months = data[date].dt.month
    print(
        f"served {served.tag} ({served.family}, run {served.run_id}); reference "
        f"{len(reference):,} rows; windows of {args.rows:,} rows; load {load()}"
    )
    features = [*served.contract.roles["number"], *served.contract.roles["category"]]
    importance = importance_shares({c: importance[c] for c in features})
    top = ", ".join(f"{c} {w:.3f}" for c, w in list(importance.items())[:8])
    print(f"weights (share of mean |SHAP| of the {len(features)} monitored inputs): {top} ...")

    contract = served.contract

    def window(rows: pd.DataFrame, *, labelled: bool = False) -> tuple[pd.DataFrame, int]:
        """The rows as the service logs them: through the contract, scored by the model."""
        typed = contract.to_frame([contract.json_row(r) for r in rows.to_dict("records")])
        frame = typed.frame
        frame[prediction] = pipeline.predict_proba(frame[contract.names])[:, 1]
        kept = rows.iloc[frame.index]
        frame[target] = kept[target].to_numpy(dtype=float) if labelled else np.nan
        return frame.reset_index(drop=True), len(typed.refused_rows)

    def month_rows(month: int, seed: int) -> pd.DataFrame:
        rows = data[months == month]
        return rows.sample(min(args.rows, len(rows)), random_state=seed).sort_values(date)

    # The first replay of each month (for a test month: its first logs), then a second
    # sample of each test month: the control, and the window the faults go into.
    clean = {m: window(month_rows(m, args.seed))[0] for m in range(1, 13)}
    columns = {kind: eligible(served, importance, reference, kind) for kind in set(KINDS.values())}
    faults = {fault: columns[KINDS[fault]][0] for fault in FAULTS}
    unused = min(columns["number"], key=lambda c: importance.get(c, 0.0))
    print(
        "faulty columns (the most important of their kind): "
        + "; ".join(f"{f}: {c} ({importance[c]:.3f})" for f, c in faults.items())
        + f"; least important numeric column: {unused} ({importance[unused]:.4f})"
    )
    # (name, kind, fault, column, frame, the window replayed before it, earlier logs of
    # the same months when the training rows hold none)
    windows = []
    for m in TRAINING_MONTHS:
        before = clean.get(m - 1)
        windows.append((calendar.month_abbr[m], "training", None, None, clean[m], before, None))
    for m in TRAINING_MONTHS:
        # One calendar week of the month (the 8th to the 14th): a shorter window, the
        # weather of a few days against its whole month.
        days = data[(months == m) & data[date].dt.day.between(8, 14)]
        week = window(days.sample(min(args.rows, len(days)), random_state=args.seed))[0]
        name = f"{calendar.month_abbr[m]} 8-14"
        windows.append((name, "week", None, None, week, clean[m], None))
    refused: dict[str, int] = {}
    for m in TEST_MONTHS:
        name = calendar.month_abbr[m]
        first = clean[m]
        windows.append((f"{name} first logs", "new", None, None, first, clean[m - 1], None))
        raw = month_rows(m, args.seed + 1)
        frame, _ = window(raw)
        windows.append((f"{name} clean", "control", "clean", None, frame, first, first))
        for i, fault in enumerate(FAULTS):
            frame, lost = window(inject(raw, fault, faults[fault], seed=args.seed + i))
            refused[f"{name} {fault}"] = lost
            windows.append((f"{name} {fault}", "fault", fault, faults[fault], frame, first, first))
        frame, _ = window(inject(raw, "units", unused, seed=args.seed))
        windows.append((f"{name} units/{unused}", "unused", "units", unused, frame, first, first))
    spoiled = {k: v for k, v in refused.items() if v}
    if spoiled:
        print(
            "rows the input contract refuses (the API answers 400; not logged): "
            + ", ".join(f"{k} {v:,}" for k, v in spoiled.items())
        )

    tallies = {setting: Tally() for setting in SETTINGS}
    seconds = {}
    for setting in SETTINGS:
        settings = drift_settings(config, reference=setting)
        start = time.perf_counter()
        for name, kind, fault, column, frame, before, period_logs in windows:
            found, choice = judge_window(
                frame,
                reference,
                served,
                settings,
                target=target,
                importance=importance,
                recent=before,
                period_logs=period_logs,
            )
            tallies[setting].verdicts.append(
                Verdict(
                    window=name,
                    kind=kind,
                    fault=fault,
                    column=column,
                    alarm=found.dataset_drift,
                    first=found.drifted_columns[0] if found.drifted_columns else None,
                    weighted=found.weighted_drift,
                    drifted=found.drifted_columns,
                    reference=choice.description,
                    old_rule=found.evidently_drift,
                )
            )
        seconds[setting] = time.perf_counter() - start

    print(f"\n## Drift verdicts ({len(windows)} windows per setting; load {load()})\n")
    print(
        "| reference | false alarms (9 training months) | faults detected | faulty column "
        "ranked first | control windows clean | unused-column fault: flagged first, no alarm "
        "| a new month's first logs: alarm | a week of a training month: alarm | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in SETTINGS:
        t = tallies[setting]
        training, found, control = t.of("training"), t.of("fault"), t.of("control")
        unused_rows, new, week = t.of("unused"), t.of("new"), t.of("week")
        print(
            f"| `{setting}` | {sum(v.alarm for v in training)} / {len(training)} | "
            f"{sum(v.alarm for v in found)} / {len(found)} | "
            f"{sum(v.first == v.column for v in found)} / {len(found)} | "
            f"{sum(not v.alarm for v in control)} / {len(control)} | "
            f"{sum(v.first == v.column and not v.alarm for v in unused_rows)} / "
            f"{len(unused_rows)} | {sum(v.alarm for v in new)} / {len(new)} | "
            f"{sum(v.alarm for v in week)} / {len(week)} | {seconds[setting]:.0f} |"
        )
    t = tallies["whole"]
    print(
        f"| `whole`, before: half of the columns drift (unweighted) | "
        f"{sum(v.old_rule for v in t.of('training'))} / 9 | "
        f"{sum(v.old_rule for v in t.of('fault'))} / {len(t.of('fault'))} | – | "
        f"{sum(not v.old_rule for v in t.of('control'))} / {len(t.of('control'))} | – | "
        f"{sum(v.old_rule for v in t.of('new'))} / {len(t.of('new'))} | "
        f"{sum(v.old_rule for v in t.of('week'))} / {len(t.of('week'))} | – |"
    )
    for fault in FAULTS:
        print(f"\n{describe(fault, faults[fault])}:", end="")
        for setting in SETTINGS:
            rows = [v for v in tallies[setting].of("fault") if v.fault == fault]
            caught = sum(v.alarm for v in rows)
            first = sum(v.first == v.column for v in rows)
            print(f"  {setting} {caught}/{len(rows)} detected, {first}/{len(rows)} first;", end="")
    print("\n\n## Every window\n")
    for setting in SETTINGS:
        print(f"### `{setting}`")
        for v in tallies[setting].verdicts:
            drifted = ", ".join(v.drifted[:5]) + (" ..." if len(v.drifted) > 5 else "")
            print(
                f"- {v.window:<22} {'ALARM' if v.alarm else 'ok   '} weighted {v.weighted:.3f}; "
                f"first {v.first}; drifted {len(v.drifted)}: {drifted} [{v.reference}]"
            )

    if not args.skip_retrain:
        retrain(config, data, served, pipeline, args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load {load()} (a shared machine)")
    return 0


def retrain(config, data, served, pipeline, args) -> None:
    """Champion against a retrained challenger on each test month replayed with feedback."""
    from monitoring.champion import LabelledWindow, decide, retraining_plan, score_pipeline
    from monitoring.retrain import fit_challenger
    from tabular.datasets import rows_before, sample_rows

    target, date, metric = config.target.name, config.date_column, config.training.metric
    inputs = served.contract.names
    print(
        f"\n## Champion against challenger (metric {metric}, margin {config.monitoring.margin})\n"
    )
    print(
        "| month | challenger fitted on | last fold | champion (window) | challenger (window) "
        "| decision | champion (month) | challenger (month) | retrain seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for month in TEST_MONTHS:
        rows = data[data[date].dt.month == month]
        judged = rows.sample(min(args.rows, len(rows)), random_state=args.seed + 2)
        window = LabelledWindow(
            source="feedback",
            rows=len(judged),
            positives=int(judged[target].sum()),
            date_from=judged[date].min().to_pydatetime(),
            date_to=judged[date].max().to_pydatetime(),
        )
        overrides, until = retraining_plan(config, window, inputs)
        run_config = config.with_overrides(overrides)
        before = rows_before(data, run_config, until)
        before = sample_rows(before, config.monitoring.retrain.sample, config.seed, date)
        start = time.perf_counter()
        fitted = fit_challenger(before, run_config, seed=config.seed, log=lambda line: None)
        spent = time.perf_counter() - start
        best = fitted.result.families[fitted.result.ranking[0]]
        fit = fitted.split
        scores = {}
        for name, rows_ in (("window", judged), ("month", rows)):
            scores[name] = (
                score_pipeline(pipeline, inputs, served.threshold, rows_, target, metric),
                score_pipeline(best.pipeline, inputs, best.threshold, rows_, target, metric),
            )
        decision = decide(*scores["window"], config.monitoring.margin, metric)
        first, last = fit.train[date].min(), fit.train[date].max()
        print(
            f"| {calendar.month_abbr[month]} | {len(fit.train):,} rows, {first:%b %d} to "
            f"{last:%b %d} ({best.family}) | {fit.folds[-1].description} | "
            f"{scores['window'][0]:.4f} | {scores['window'][1]:.4f} | "
            f"{'promote' if decision.promoted else 'keep'} | {scores['month'][0]:.4f} | "
            f"{scores['month'][1]:.4f} | {spent:.0f} (load {load()}) |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
