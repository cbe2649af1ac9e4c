"""The one report layer: a report is a list of sections; a section, of figures, tables, comments.

Consecutive items that end with a comment form a block (a chart or table and what it shows).
The same :class:`Section` objects render to HTML here (one Jinja2 template, one stylesheet)
and to PDF in :mod:`reports.pdf`. Comments are written once, in a tiny Markdown subset both
renderers understand: paragraphs separated by blank lines, ``- `` bullets, ``**bold**`` and
```code```. Tables are pandas frames, formatted by the renderer.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from jinja2 import Environment
from markupsafe import Markup

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1320px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em;
     margin-top: 2.2em; } h3 { margin: 1.2em 0 0.2em; font-size: 1.05em; }
nav ol { columns: 3; } .intro p + p { color: #555; }
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
{% if intro %}<div class="intro">{{ intro }}</div>{% endif %}
{% if toc %}
<nav><ol>{% for s in sections %}<li><a href="#{{ s.key }}">{{ s.title }}</a></li>{% endfor %}</ol></nav>
{% endif %}
{% for s in sections %}
<section id="{{ s.key }}"><h2>{{ s.title }}</h2>
{% for b in s.blocks %}
<div class="block">
{%- for item in b.items %}
{%- if item.kind == "figure" %}<div class="figures">
{%- for path in item.paths %}<figure><img src="{{ relative(path) }}" alt="{{ item.caption }}"></figure>{% endfor -%}
</div>
{%- elif item.kind == "table" %}{% if item.caption %}<h3>{{ item.caption }}</h3>{% endif %}{{ table_html(item) }}
{%- elif item.verbatim %}<pre class="comment">{{ item.text }}</pre>
{%- else %}<div class="comment">{{ comment_html(item.text) }}</div>{% endif %}
{%- endfor %}</div>
{% endfor %}
</section>
{% endfor %}
</body></html>
"""

_PAGE = Environment(
    autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
).from_string(TEMPLATE)


@dataclass(frozen=True)
class Figure:
    """One chart, or a row of charts shown side by side.

    Attributes:
        paths: The PNG files.
        caption: What they show (the HTML ``alt`` text).
        height_cm: Largest printed height in a PDF (``None``: the renderer's default).
    """

    paths: tuple[Path, ...]
    caption: str = ""
    height_cm: float | None = None
    kind: str = field(default="figure", init=False)


#: Format of a float column by its kind, read from its name: a duration, a size or a count
#: of epochs is printed to one decimal (``ms per 1,000: 26.3``, ``size KB: 69.1``), whatever
#: the table's ``float_format`` (which is for scores). First match wins.
KIND_FORMATS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"(^|[^a-z])(ms|milliseconds?)([^a-z]|$)", re.IGNORECASE), ".1f"),
    (re.compile(r"(^|[^a-z])(kb|mb|bytes|size)([^a-z]|$)", re.IGNORECASE), ".1f"),
    (re.compile(r"(^|[^a-z])(seconds?|secs?|minutes)([^a-z]|$)", re.IGNORECASE), ".1f"),
    (re.compile(r"(^|[^a-z])epochs?([^a-z]|$)", re.IGNORECASE), ".1f"),
    (re.compile(r"(^|[^a-z])hours?([^a-z]|$)", re.IGNORECASE), "g"),
)


def kind_format(column: str) -> str | None:
    """Return the format of a float column whose name says its kind (time, size, epochs, hours).

    Args:
        column: The column's name (``predict_ms_per_1000``, ``size KB``, ``fit_seconds``).

    Returns:
        The format spec, or ``None`` when the name says nothing (a score, a share).
    """
    for pattern, spec in KIND_FORMATS:
        if pattern.search(column.replace("_", " ")):
            return spec
    return None


@dataclass(frozen=True)
class Table:
    """A table of values.

    Attributes:
        frame: The rows (its index is not shown).
        caption: A small heading above the table (empty: none).
        float_format: Format spec of float cells, e.g. ``".4f"`` for scores (``None``: six
            significant digits). A column whose name says its kind (milliseconds,
            kilobytes, seconds, epochs, hours: :func:`kind_format`) keeps its own format.
        na_rep: Text of a missing value.
        max_rows: Rows printed in a PDF; the rest are counted in one line (``None``: the
            renderer's default). HTML shows every row.
        formats: Format spec per column name, above both rules.
    """

    frame: pd.DataFrame
    caption: str = ""
    float_format: str | None = None
    na_rep: str = "n/a"
    max_rows: int | None = None
    formats: dict[str, str] = field(default_factory=dict)
    kind: str = field(default="table", init=False)

    def cell(self, value, column: str | None = None) -> str:
        """Format one cell as text.

        Args:
            value: The cell's value.
            column: Its column's name (chooses the format of a float, see the class).

        Returns:
            Its text.
        """
        if value is None or (not isinstance(value, str | list | tuple | dict) and pd.isna(value)):
            return self.na_rep
        if isinstance(value, float):
            spec = None if column is None else self.formats.get(column) or kind_format(column)
            return format(value, spec or self.float_format or ".6g")
        return str(value)

    def texts(self) -> pd.DataFrame:
        """Return every cell as text, each column formatted for its kind.

        Returns:
            A frame of strings with the same columns.
        """
        frame = self.frame.astype(object)
        return pd.DataFrame(
            {c: [self.cell(v, str(c)) for v in frame[c]] for c in frame.columns},
            index=frame.index,
            columns=frame.columns,
        )


@dataclass(frozen=True)
class Comment:
    """Written text (the Markdown subset of this module), usually after a figure or table.

    Attributes:
        text: The comment.
        verbatim: Print the text as it is, in a fixed-width font (a command's output).
    """

    text: str
    verbatim: bool = False
    kind: str = field(default="comment", init=False)


Item = Figure | Table | Comment


@dataclass(frozen=True)
class Block:
    """A chart or table and what it shows: consecutive items of a section ending with a comment.

    A view computed by :attr:`Section.blocks`; sections store their items.

    Attributes:
        items: Its figures, tables and comment, in order.
    """

    items: tuple[Item, ...]

    @property
    def figures(self) -> list[Path]:
        """Every PNG of the block, in order."""
        return [path for item in self.items if isinstance(item, Figure) for path in item.paths]

    @property
    def tables(self) -> list[Table]:
        """Every table of the block, in order."""
        return [item for item in self.items if isinstance(item, Table)]

    @property
    def comment(self) -> str:
        """The block's comment (empty for a last block that ends without one)."""
        return "\n\n".join(item.text for item in self.items if isinstance(item, Comment))


@dataclass(frozen=True)
class Section:
    """A titled part of a report.

    Attributes:
        key: Anchor of the section (``id``).
        title: Heading.
        items: Its figures, tables and comments, in order.
        summary: One data-driven sentence about the section, for a report's summary (a
            Prefect artifact, the PDF's bullets); empty when the report has none.
    """

    key: str
    title: str
    items: list[Item]
    summary: str = ""

    @classmethod
    def from_blocks(
        cls, key: str, title: str, blocks: list[list[Item]], summary: str = ""
    ) -> Section:
        """Build a section from blocks made by :func:`block`.

        Args:
            key: Anchor of the section.
            title: Heading.
            blocks: The items of each block, in order.
            summary: One sentence about the section.

        Returns:
            The section.
        """
        return cls(key, title, [item for items in blocks for item in items], summary)

    @property
    def figures(self) -> list[Path]:
        """Every PNG of the section, in order."""
        return [path for item in self.items if isinstance(item, Figure) for path in item.paths]

    @property
    def blocks(self) -> list[Block]:
        """The items in blocks, each ending with its comment (the last may end without one)."""
        blocks: list[list[Item]] = [[]]
        for item in self.items:
            blocks[-1].append(item)
            if isinstance(item, Comment):
                blocks.append([])
        return [Block(tuple(b)) for b in blocks if b]

    @property
    def comments(self) -> list[str]:
        """Every comment of the section, in order."""
        return [item.text for item in self.items if isinstance(item, Comment)]

    @property
    def comment(self) -> str:
        """All the section's comments, in order, separated by blank lines."""
        return "\n\n".join(self.comments)


def anchor(title: str) -> str:
    """Make a section anchor from a title: ``"Learning curves"`` → ``"learning-curves"``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def block(
    comment: str,
    figures: list[Path] | tuple[Path, ...] = (),
    tables: list[Table] | tuple[Table, ...] = (),
    caption: str = "",
) -> list[Item]:
    """Return the items of one block: its figures (one row), its tables, then its comment.

    Args:
        comment: The comment that follows (Markdown subset).
        figures: PNGs shown side by side (none: no figure).
        tables: Tables, in order.
        caption: What the figures show.

    Returns:
        The items.
    """
    items: list[Item] = [Figure(tuple(Path(p) for p in figures), caption)] if figures else []
    return items + list(tables) + [Comment(comment)]


def one_block_section(
    title: str,
    comment: str,
    figures: list[Path] | tuple[Path, ...] = (),
    tables: list[Table] | tuple[Table, ...] = (),
) -> Section:
    """Build a section of one block, anchored by its title.

    Args:
        title: The section's title.
        comment: The comment after the figures and tables (Markdown subset).
        figures: PNGs shown side by side.
        tables: Tables, in order.

    Returns:
        The section.
    """
    return Section(anchor(title), title, block(comment, figures, tables, caption=title))


# --- HTML --------------------------------------------------------------------------------


def comment_html(text: str) -> Markup:
    """Turn a comment (paragraphs, ``- `` bullets, ``**bold**``, ```code```) into HTML.

    Args:
        text: The comment.

    Returns:
        Escaped HTML.
    """
    parts = []
    for kind, content in comment_blocks(text):
        if kind == "bullets":
            items = "".join(f"<li>{_inline_html(line)}</li>" for line in content)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<p>{_inline_html(content[0])}</p>")
    return Markup("\n".join(parts))


def comment_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split a comment into paragraphs and bullet lists.

    Args:
        text: The comment.

    Returns:
        ``("paragraph", [text])`` or ``("bullets", [item, ...])`` per block, in order.
    """
    blocks = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = paragraph.splitlines()
        if lines and all(line.startswith("- ") for line in lines):
            blocks.append(("bullets", [line[2:] for line in lines]))
        elif lines:
            blocks.append(("paragraph", [" ".join(line.strip() for line in lines)]))
    return blocks


def inline_markup(text: str, bold: tuple[str, str], code: tuple[str, str]) -> str:
    """Escape text and turn ``**bold**`` and ```code``` into the given tags.

    Args:
        text: One paragraph or bullet.
        bold: Opening and closing tag for bold text.
        code: Opening and closing tag for code.

    Returns:
        The escaped text with tags (valid HTML, and valid reportlab paragraph markup).
    """
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", lambda m: f"{bold[0]}{m.group(1)}{bold[1]}", escaped)
    return re.sub(r"`([^`]+)`", lambda m: f"{code[0]}{m.group(1)}{code[1]}", escaped)


def _inline_html(text: str) -> str:
    return inline_markup(text, ("<strong>", "</strong>"), ("<code>", "</code>"))


def table_html(table: Table) -> Markup:
    """Render a table as HTML.

    Args:
        table: The table.

    Returns:
        The ``<table>`` element.
    """
    return Markup(table.texts().to_html(index=False, border=0, escape=True))


def render_html(
    title: str,
    heading: str,
    sections: list[Section],
    base: Path,
    intro: list[str] | None = None,
    toc: bool = False,
) -> str:
    """Render a self-contained report page (CSS inline, figures by path relative to the page).

    Args:
        title: The browser title.
        heading: The page's ``<h1>``.
        sections: The sections.
        base: The folder the page is written to (figure paths are made relative to it).
        intro: Paragraphs under the heading (Markdown subset).
        toc: Add a table of contents linking every section.

    Returns:
        The HTML text.
    """
    base = Path(base).resolve()
    return _PAGE.render(
        title=title,
        heading=heading,
        css=Markup(CSS),
        intro=comment_html("\n\n".join(intro)) if intro else None,
        toc=toc,
        sections=sections,
        relative=lambda path: Path(os.path.relpath(Path(path).resolve(), base)).as_posix(),
        table_html=table_html,
        comment_html=comment_html,
    )
