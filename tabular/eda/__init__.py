"""Exploratory data analysis of the training split: charts, data-driven comments, HTML.

Plain functions, no Prefect: :func:`run_eda` takes the training split, the dataset config
and the encoding plan, and returns an :class:`EdaReport` (nine sections, ``eda.html``, a
Markdown summary). ``stats`` computes the numbers, ``charts`` draws them, ``comments``
writes the text, ``sections`` assembles each figure group, ``report`` writes the page.
"""

from tabular.eda.report import SAMPLE_SIZE, EdaReport, run_eda
from tabular.eda.sections import EdaBlock, EdaSection

__all__ = ["SAMPLE_SIZE", "EdaBlock", "EdaReport", "EdaSection", "run_eda"]
