"""Argument types shared by every command-line entry point."""

from __future__ import annotations

import argparse
import re

from tabular.config import SCHEDULER_ADDRESS


def positive_int(text: str) -> int:
    """Parse a positive whole number for argparse, with a readable error.

    Args:
        text: The argument as typed.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If the text is not a whole number of at least 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a positive number for argparse, with a readable error.

    Args:
        text: The argument as typed.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If the text is not a number above 0.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def column_method(text: str) -> tuple[str, str]:
    """Parse ``COLUMN=METHOD`` (a drift method override) for argparse.

    Args:
        text: The argument as typed.

    Returns:
        The column and the method.

    Raises:
        argparse.ArgumentTypeError: If the text is not ``COLUMN=METHOD``.
    """
    column, sep, method = text.partition("=")
    if not sep or not column.strip() or not method.strip():
        raise argparse.ArgumentTypeError(f"expected COLUMN=METHOD (e.g. dest=psi), got '{text}'")
    return column.strip(), method.strip()


def scheduler_address(text: str) -> str:
    """Parse a Dask scheduler's address (``tcp://host:8786``) for argparse.

    Args:
        text: The argument as typed.

    Returns:
        The address.

    Raises:
        argparse.ArgumentTypeError: If the text is not ``tcp://HOST:PORT`` (or ``tls://``).
    """
    if not re.match(SCHEDULER_ADDRESS, text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected a Dask scheduler address such as tcp://scheduler:8786, got '{text}'"
        )
    return text.strip()
