"""Logic shared by every stage: dataset config, loading, features, and the run manifest.

Nothing in this package knows about Prefect, BentoML or MongoDB servers: the flows,
the service and the monitor import from here, never the other way round.
"""

import os

# Before any OpenMP runtime starts (XGBoost, scikit-learn): threads that spin while waiting
# make a 2-thread XGBoost fit about 7x slower than a 1-thread one on a busy 2-core machine.
# The Makefile sets the same; this covers the CLI and notebooks run outside make.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
