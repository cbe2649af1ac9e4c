"""Data contract at the pipeline's entrance: the Great Expectations gate."""

from validation.gate import Failure, ValidationReport, build_expectations, require_valid, validate

__all__ = ["Failure", "ValidationReport", "build_expectations", "require_valid", "validate"]
