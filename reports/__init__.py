"""Every report a run writes, on one report model.

:mod:`reports.page` is the model (a report is a list of :class:`~reports.page.Section`;
a section, of figures, tables and comments) and its HTML printer; :mod:`reports.pdf` prints
the same sections to PDF. The reports: :mod:`reports.eda` (the exploratory analysis: its
numbers, charts and comments), :mod:`reports.training` (the three families, their search
and verdicts), :mod:`reports.explain` (SHAP and the refit on the selected features) and
:mod:`reports.note` (the 4-page PDF project note). Reports read the study's results
(:mod:`tabular`); nothing in the study imports them.
"""
