"""Number formatting shared by the EDA charts and comments, so both print the same figure."""

from __future__ import annotations

import math


def pct(share: float, digits: int = 1) -> str:
    """Format a share as a percentage: ``0.2447`` → ``"24.5%"``.

    Args:
        share: A share between 0 and 1 (NaN gives ``"n/a"``).
        digits: Decimals.

    Returns:
        The text.
    """
    if share is None or math.isnan(share):
        return "n/a"
    smallest = 0.5 * 10 ** -(digits + 2)
    if 0 < share < smallest:
        # "0.0%" would read as "none" for a level that does exist.
        return f"<{10**-digits:.{digits}f}%"
    return f"{share:.{digits}%}"


def ratio(part: float, whole: float) -> float:
    """Return ``part / whole``, or NaN when ``whole`` is zero (printed as ``"n/a"``)."""
    return part / whole if whole else float("nan")


def count(n: int) -> str:
    """Format a count with thousands separators: ``217727`` → ``"217,727"``."""
    return f"{int(n):,}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """Count a noun in English: ``plural(1, "level")`` → ``"1 level"``, ``plural(3, "level")`` → ``"3 levels"``.

    Args:
        n: How many.
        word: The singular noun.
        many: The plural when it is not ``word + "s"``.

    Returns:
        The count and the noun.
    """
    return f"{count(n)} {word if n == 1 else (many or word + 's')}"


def short(value: float) -> str:
    """Format a measured value compactly: ``1017.15`` → ``"1,017.2"``, ``0.00502`` → ``"0.00502"``.

    Args:
        value: Any number (NaN gives ``"n/a"``).

    Returns:
        The text.
    """
    if value is None or math.isnan(value):
        return "n/a"
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def signed(value: float, digits: int = 2) -> str:
    """Format a coefficient with its sign: ``0.5`` → ``"+0.50"``, ``-0.12`` → ``"-0.12"``."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}"
