"""The study, as plain functions: dataset config, loading, features, training, SHAP, contract.

:mod:`tabular.config` (what each column is), :mod:`tabular.datasets` (loading, cleaning,
splitting), :mod:`tabular.loaders` (the built-in datasets behind a registry),
:mod:`tabular.features` (the preprocessing), :mod:`tabular.training` (the three families,
their search and verdicts), :mod:`tabular.horizon` (the score against the prediction
horizon), :mod:`tabular.explain` (SHAP, feature selection, the refit),
:mod:`tabular.contract` (the served models' input schema), :mod:`tabular.manifest` (the
run's record) and :mod:`tabular.errors` (the errors a user can act on).

Nothing here knows Prefect, BentoML, MongoDB or Evidently, and nothing here imports the
other packages (``tests/test_layout.py``): the reports, the store, the service, the monitor
and the flows import from here, never the other way round.
"""

import os

# Before any OpenMP runtime starts (XGBoost, scikit-learn): threads that spin while waiting
# make a 2-thread XGBoost fit about 7x slower than a 1-thread one on a busy 2-core machine.
# The Makefile sets the same; this covers the CLI and notebooks run outside make.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
