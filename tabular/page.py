"""One HTML page layout for every stage report (EDA, training, SHAP), as a Jinja2 template.

A page is a list of sections; a section a list of blocks; a block one or more figures
and/or a table, always followed by its comment. The template escapes plain text; tables
(pandas ``to_html``) and comments already written as HTML come in as ``Markup``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jinja2 import Environment
from markupsafe import Markup

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1320px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em;
     margin-top: 2.2em; }
nav ol { columns: 3; } .scope { color: #555; }
.block { margin: 1.4em 0 2em; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
.figures img { max-width: 100%; height: auto; border: 1px solid #eee; }
.comment { background: #f6f8fa; border-left: 4px solid #4C72B0; padding: 0.6em 1em;
           margin-top: 0.8em; }
.comment p { margin: 0.4em 0; } .comment ul { margin: 0.3em 0; }
table { border-collapse: collapse; font-size: 0.88em; margin-top: 0.8em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
"""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title><style>{{ css }}</style></head><body>
<h1>{{ heading }}</h1>
{% for paragraph in intro %}
{{ paragraph }}
{% endfor %}
{% if toc %}
<nav><ol>{% for s in sections %}<li><a href="#{{ s.key }}">{{ s.title }}</a></li>{% endfor %}</ol></nav>
{% endif %}
{% for s in sections %}
<section id="{{ s.key }}"><h2>{{ s.title }}</h2>
{% for b in s.blocks %}
<div class="block">
{%- if b.figures %}<div class="figures">
{%- for name in b.figures %}<figure><img src="{{ name }}" alt="{{ b.caption }}"></figure>{% endfor -%}
</div>{% endif %}
{%- if b.table %}{{ b.table }}{% endif -%}
<div class="comment">{{ b.comment }}</div></div>
{% endfor %}
</section>
{% endfor %}
</body></html>
"""

_PAGE = Environment(
    autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
).from_string(TEMPLATE)


@dataclass(frozen=True)
class Block:
    """A figure (or a row of figures) and/or a table, and the comment that follows.

    Attributes:
        comment: The comment, as HTML.
        figures: PNG file names, relative to the page.
        table: A table as HTML, or ``None``.
        caption: What the figures show (their ``alt`` text).
    """

    comment: Markup
    figures: list[str] = field(default_factory=list)
    table: Markup | None = None
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A titled part of a page.

    Attributes:
        key: Anchor of the section (``id``).
        title: Heading.
        blocks: Its blocks, in order.
    """

    key: str
    title: str
    blocks: list[Block]


def anchor(title: str) -> str:
    """Make a section anchor from a title: ``"Learning curves"`` → ``"learning-curves"``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def one_block_sections(rows: list[tuple[str, list[str], str, str]]) -> list[Section]:
    """Build sections of one block each from ``(title, figures, table html, comment html)``.

    Args:
        rows: One tuple per section; an empty table string means no table.

    Returns:
        The sections, anchored by their titles.
    """
    return [
        Section(
            key=anchor(title),
            title=title,
            blocks=[
                Block(
                    comment=Markup(comment),
                    figures=list(figures),
                    table=Markup(table) if table else None,
                    caption=title,
                )
            ],
        )
        for title, figures, table, comment in rows
    ]


def render_page(
    title: str,
    heading: str,
    sections: list[Section],
    intro: list[Markup] | None = None,
    toc: bool = False,
) -> str:
    """Render a self-contained report page (CSS inline, figures by relative path).

    Args:
        title: The browser title.
        heading: The page's ``<h1>``.
        sections: The sections.
        intro: Paragraphs (whole ``<p>`` elements, as ``Markup``) under the heading.
        toc: Add a table of contents linking every section.

    Returns:
        The HTML text.
    """
    return _PAGE.render(
        title=title,
        heading=heading,
        css=Markup(CSS),
        intro=intro or [],
        toc=toc,
        sections=sections,
    )
