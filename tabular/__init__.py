"""Logic shared by every stage: dataset config, loading, features, and the run manifest.

Nothing in this package knows about Prefect, BentoML or MongoDB servers: the flows,
the service and the monitor import from here, never the other way round.
"""
