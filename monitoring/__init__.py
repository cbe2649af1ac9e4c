"""Drift monitoring of the served models' inputs against their training reference (Evidently).

Plain functions, no Prefect: :mod:`monitoring.reference` (the reference frame each run
saves, the served models' importance, and the reference rows each window is compared with),
:mod:`monitoring.drift` (Evidently's per-column tests, the missing-value and relationship
tests, the importance-weighted verdict), :mod:`monitoring.check` (one check over a window
of prediction logs), :mod:`monitoring.workspace` (the Evidently UI's history and
dashboard), :mod:`monitoring.champion` (the champion/challenger gate),
:mod:`monitoring.retrain` (the challenger, trained on every row before the judged window),
:mod:`monitoring.faults` (the faults the monitor evaluation injects),
:mod:`monitoring.replay` (traffic replay to a running API) and :mod:`monitoring.logs` (the
prediction logs and their outcomes as the monitor reads them). The Prefect flows live in
:mod:`flows.monitor`.
"""
