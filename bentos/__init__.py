"""BentoML: the model store entries of the served models and the HTTP service."""
