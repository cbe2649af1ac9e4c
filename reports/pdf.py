"""Render report-layer sections (:mod:`reports.page`) to an A4 PDF with reportlab's Platypus.

Each printed page is given as its own list of sections and laid out in one frame that
shrinks its content to fit when it must, so a report of N pages is N pages whatever the
data. Fonts are matplotlib's DejaVu files (already installed; no system fonts needed), so
any Unicode text in a comment prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Image,
    KeepInFrame,
    PageBreak,
    Paragraph,
    Preformatted,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as GridTable

from reports.page import Comment, Figure, Section, Table, comment_blocks, inline_markup

MARGIN = 1.4 * cm
#: Printed height of a figure unless the figure says otherwise.
FIGURE_HEIGHT = 7 * cm
#: Table rows printed unless the table says otherwise; the rest are counted in one line.
TABLE_ROWS = 12

_FONTS = {
    "Sans": "DejaVuSans.ttf",
    "Sans-Bold": "DejaVuSans-Bold.ttf",
    "Sans-Oblique": "DejaVuSans-Oblique.ttf",
    "Mono": "DejaVuSansMono.ttf",
}


def _register_fonts() -> None:
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in _FONTS.items():
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(folder / file)))
    pdfmetrics.registerFontFamily(
        "Sans", normal="Sans", bold="Sans-Bold", italic="Sans-Oblique", boldItalic="Sans-Bold"
    )


@dataclass(frozen=True)
class Styles:
    """The paragraph styles of a printed report."""

    title: ParagraphStyle
    subtitle: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    bullet: ParagraphStyle
    caption: ParagraphStyle
    cell: ParagraphStyle
    head_cell: ParagraphStyle
    code: ParagraphStyle


def styles(size: float = 9.0) -> Styles:
    """Return the report's paragraph styles (DejaVu Sans, body text ``size`` points).

    Args:
        size: Body text size in points.

    Returns:
        The styles.
    """
    _register_fonts()
    body = ParagraphStyle(
        "body", fontName="Sans", fontSize=size, leading=size * 1.3, alignment=TA_LEFT,
        spaceAfter=3,
    )  # fmt: skip
    return Styles(
        title=ParagraphStyle("title", body, fontName="Sans-Bold", fontSize=17, leading=21),
        subtitle=ParagraphStyle(
            "subtitle", body, fontSize=size - 0.5, textColor=colors.HexColor("#555555")
        ),
        heading=ParagraphStyle(
            "heading",
            body,
            fontName="Sans-Bold",
            fontSize=size + 3,
            leading=(size + 3) * 1.3,
            spaceBefore=7,
            spaceAfter=3,
            textColor=colors.HexColor("#1f3b63"),
        ),  # fmt: skip
        body=body,
        bullet=ParagraphStyle("bullet", body, leftIndent=10, bulletIndent=2, spaceAfter=1),
        caption=ParagraphStyle(
            "caption", body, fontName="Sans-Bold", fontSize=size - 1, spaceBefore=3
        ),
        cell=ParagraphStyle("cell", body, fontSize=size - 1.8, leading=(size - 1.8) * 1.2),
        head_cell=ParagraphStyle(
            "head_cell",
            body,
            fontName="Sans-Bold",
            fontSize=size - 1.8,
            leading=(size - 1.8) * 1.2,
        ),  # fmt: skip
        code=ParagraphStyle("code", body, fontName="Mono", fontSize=size - 2, leading=size - 0.6),
    )


def comment_flowables(comment: Comment, style: Styles, width: float) -> list:
    """Turn a comment into paragraphs (bullets as bulleted paragraphs, verbatim as monospace).

    Args:
        comment: The comment.
        style: The styles.
        width: Width available (verbatim lines longer than this are wrapped).

    Returns:
        Flowables.
    """
    if comment.verbatim:
        # DejaVu Sans Mono advances 0.602 em per character.
        chars = int(width / (style.code.fontSize * 0.602)) - 1
        return [
            Preformatted(
                comment.text, style.code, maxLineLength=chars, splitChars=" /,", newLineChars=""
            )
        ]
    flowables = []
    for kind, content in comment_blocks(comment.text):
        if kind == "bullets":
            flowables += [
                Paragraph(_markup(line), style.bullet, bulletText="•") for line in content
            ]
        else:
            flowables.append(Paragraph(_markup(content[0]), style.body))
    return flowables


def _markup(text: str) -> str:
    return inline_markup(text, ("<b>", "</b>"), ('<font face="Mono">', "</font>"))


def figure_flowables(figure: Figure, style: Styles, width: float) -> list:
    """Place a figure's PNGs side by side, each scaled into its share of the width.

    Args:
        figure: The figure (its ``height_cm`` bounds the printed height).
        style: The styles.
        width: Width available.

    Returns:
        Flowables.
    """
    height = figure.height_cm * cm if figure.height_cm else FIGURE_HEIGHT
    gap = 0.3 * cm
    share = (width - gap * (len(figure.paths) - 1)) / len(figure.paths)
    images = []
    for path in figure.paths:
        with PILImage.open(path) as png:
            pixels_wide, pixels_high = png.size
        scale = min(share / pixels_wide, height / pixels_high)
        images.append(Image(str(path), pixels_wide * scale, pixels_high * scale))
    if len(images) == 1:
        return [images[0]]
    row = GridTable([images], colWidths=[share + gap] * len(images))
    row.setStyle(
        TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)])
    )
    return [row]


def column_widths(rows: list[list[str]], width: float, size: float) -> list[float]:
    """Share the width between columns: each gets its longest word, the rest goes by length.

    Args:
        rows: Every row's cell texts (header included).
        width: Width available.
        size: Font size of the cells.

    Returns:
        One width per column, summing to ``width``.
    """
    char, pad = size * 0.58, 7
    columns = list(zip(*rows, strict=True))
    least = [
        max(len(w) for text in col for w in text.split() or [""]) * char + pad for col in columns
    ]
    wish = [max(len(text) for text in col) * char + pad for col in columns]
    spare = width - sum(least)
    if spare <= 0:
        return [w * width / sum(least) for w in least]
    extra = [max(w - m, 0) for w, m in zip(wish, least, strict=True)]
    if sum(extra) <= spare:
        # Everything fits on one line: share what is left evenly.
        return [w + (spare - sum(extra)) / len(wish) for w in wish]
    return [m + spare * e / sum(extra) for m, e in zip(least, extra, strict=True)]


def table_flowables(table: Table, style: Styles, width: float) -> list:
    """Print a table: header row, wrapped cells, at most ``max_rows`` rows plus an "N more" line.

    Column widths follow the text of each column (:func:`column_widths`).

    Args:
        table: The table.
        style: The styles.
        width: Width available.

    Returns:
        Flowables.
    """
    frame = table.frame
    limit = table.max_rows or TABLE_ROWS
    header = [str(c) for c in frame.columns]
    body = table.texts().iloc[:limit].to_numpy().tolist()
    col_widths = column_widths([header] + body, width, style.cell.fontSize)
    cells = [[Paragraph(_markup(text), style.head_cell) for text in header]] + [
        [Paragraph(_markup(text), style.cell) for text in row] for row in body
    ]
    grid = GridTable(cells, colWidths=col_widths, repeatRows=1, hAlign="LEFT")
    grid.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf3")),
                ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#b8c2cc")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    flowables = [Paragraph(_markup(table.caption), style.caption)] if table.caption else []
    flowables.append(grid)
    if len(frame) > limit:
        flowables.append(Paragraph(f"… and {len(frame) - limit:,} more rows", style.subtitle))
    return flowables


def section_flowables(section: Section, style: Styles, width: float) -> list:
    """Turn a section (its heading and items) into flowables.

    Args:
        section: The section.
        style: The styles.
        width: Width available.

    Returns:
        Flowables.
    """
    flowables = [Paragraph(_markup(section.title), style.heading)]
    for item in section.items:
        if isinstance(item, Figure):
            flowables += figure_flowables(item, style, width)
        elif isinstance(item, Table):
            flowables += table_flowables(item, style, width)
        else:
            flowables += comment_flowables(item, style, width)
        flowables.append(Spacer(1, 3))
    return flowables


def render_pdf(
    path: Path,
    title: str,
    subtitle: str,
    pages: list[list[Section]],
    footer: str = "",
) -> int:
    """Write an A4 PDF with one printed page per entry of ``pages``.

    Each page's sections are laid out in one frame; content taller than the page is scaled
    down to fit rather than flowing onto another page, so the page count is fixed by design.

    Args:
        path: The PDF to write.
        title: The title, on the first page.
        subtitle: A line under the title.
        pages: The sections of each page.
        footer: Text at the foot of every page (the page number is added).

    Returns:
        The number of pages written.
    """
    style = styles()
    width, height = A4
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=title,
        author="tabular-mlops pipeline",
    )
    frame_width = width - 2 * MARGIN
    # Platypus frames keep 6 pt of padding on each side.
    inner_width, inner_height = frame_width - 12, height - 2 * MARGIN - 12
    story = []
    for number, sections in enumerate(pages):
        content = []
        if number == 0:
            content += [Paragraph(_markup(title), style.title), Paragraph(subtitle, style.subtitle)]
        for section in sections:
            content += section_flowables(section, style, inner_width)
        story.append(KeepInFrame(inner_width, inner_height, content, mode="shrink", vAlign="TOP"))
        if number < len(pages) - 1:
            story.append(PageBreak())

    def draw_footer(canvas, document):
        canvas.saveState()
        canvas.setFont("Sans", 7)
        canvas.setFillColor(colors.HexColor("#777777"))
        canvas.drawString(MARGIN, MARGIN / 2, footer)
        canvas.drawRightString(width - MARGIN, MARGIN / 2, f"page {document.page} of {len(pages)}")
        canvas.restoreState()

    doc.build(story, onFirstPage=draw_footer, onLaterPages=draw_footer)
    return doc.page
