"""Serving: the BentoML service and everything only it needs.

:mod:`bentos.service` (the HTTP API: two models, prediction logging, feedback, CRUD),
:mod:`bentos.logs` (the prediction-log writer that answers once logs are durable, and the
``/metrics`` counter of their outcomes),
:mod:`bentos.registry` (the served models' entries in the BentoML model store),
:mod:`bentos.runtime` (loading a served model for fast prediction),
:mod:`bentos.compiled` (the compiled prediction path that replaces the scikit-learn
pipeline's per-call overhead) and :mod:`bentos.build` (``bentoml build``).
"""
