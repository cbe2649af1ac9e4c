"""Drift monitoring of the served models' inputs against their training reference (Evidently).

Plain functions, no Prefect: :mod:`monitoring.reference` (the reference frame each run
saves), :mod:`monitoring.drift` (Evidently reports read into typed results),
:mod:`monitoring.check` (one check over a window of prediction logs),
:mod:`monitoring.workspace` (the Evidently UI's history), :mod:`monitoring.champion` (the
champion/challenger gate), :mod:`monitoring.replay` (traffic replay to a running API) and
:mod:`monitoring.logs` (the prediction logs and their outcomes as the monitor reads them).
The Prefect flow lives in :mod:`flows.monitor`.
"""
