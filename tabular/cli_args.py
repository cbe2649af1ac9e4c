"""Argument types shared by every command-line entry point."""

from __future__ import annotations

import argparse


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
