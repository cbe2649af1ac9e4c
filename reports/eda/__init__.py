"""Exploratory data analysis of the training split: charts, data-driven comments, HTML.

Plain functions, no Prefect: :func:`run_eda` takes the training split, the dataset config
and the encoding plan, and returns an :class:`EdaReport` (nine :class:`reports.page.Section`
objects, ``eda.html``, a Markdown summary). ``stats`` computes the numbers, ``charts`` draws
them, ``comments`` writes the text, ``sections`` assembles each figure group into a page
section, ``report`` writes the page.
"""

from reports.eda.report import SAMPLE_SIZE, EdaReport, run_eda

__all__ = ["SAMPLE_SIZE", "EdaReport", "run_eda"]
