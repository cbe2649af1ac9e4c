"""Prefect flows: the training pipeline (and, later, the drift monitor) plus the CLI."""
