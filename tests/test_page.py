"""The report layer: one comment syntax, blocks, tables; HTML and a PDF of fixed page count."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from pypdf import PdfReader

from reports.note import shorten
from reports.page import (
    Comment,
    Figure,
    Section,
    Table,
    comment_html,
    one_block_section,
    render_html,
)
from reports.pdf import column_widths, render_pdf


def _chart(path, height=3.0):
    fig, ax = plt.subplots(figsize=(6, height))
    ax.plot([0, 1, 2], [2, 0, 1])
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def test_comment_syntax_is_escaped_and_formatted():
    text = "Share **24.8%** of `late` <rows> & more.\n\n- one\n- two"
    assert str(comment_html(text)) == (
        "<p>Share <strong>24.8%</strong> of <code>late</code> &lt;rows&gt; &amp; more.</p>\n"
        "<ul><li>one</li><li>two</li></ul>"
    )


def test_html_page_groups_items_into_blocks_and_links_figures_relative(tmp_path):
    figures = tmp_path / "figs"
    figures.mkdir()
    chart = _chart(figures / "a.png")
    frame = pd.DataFrame({"name": ["x", None], "score": [0.123456789, 2.0]})
    section = Section(
        "s",
        "Scores",
        [
            Figure((chart,), "a chart"),
            Comment("first"),
            Table(frame, "T", ".3f"),
            Comment("second"),
        ],
    )
    assert len(section.blocks) == 2 and section.figures == [chart]
    page = render_html("t", "Heading", [section], tmp_path, intro=["**Q:** why?"])
    assert page.count('<div class="block">') == 2
    assert '<img src="figs/a.png" alt="a chart">' in page
    assert "<td>0.123</td>" in page and "<td>n/a</td>" in page and "<h3>T</h3>" in page
    assert "<strong>Q:</strong> why?" in page


def test_pdf_has_the_pages_asked_for_even_when_a_page_overflows(tmp_path):
    chart = _chart(tmp_path / "c.png", height=5)
    long = " ".join(f"Sentence {i} says something about the data." for i in range(300))
    many = pd.DataFrame({"level": [f"l{i}" for i in range(80)], "rows": range(80)})
    pages = [
        [one_block_section("Too much", long, [chart, chart], [Table(many, max_rows=10)])],
        [Section("raw", "Output", [Comment("a  b\n" + "x" * 300, verbatim=True)])],
        [one_block_section("Short", "Only this.")],
    ]
    path = tmp_path / "r.pdf"
    assert render_pdf(path, "Title", "subtitle", pages, footer="foot") == 3
    reader = PdfReader(path)
    assert len(reader.pages) == 3
    first = reader.pages[0].extract_text()
    assert "… and 70 more rows" in first and "page 1 of 3" in first
    assert "l9" in first and "l10" not in first.split()
    # A real renderer draws every page (pypdfium2, as used to look at the report's pages).
    import pypdfium2

    for page in pypdfium2.PdfDocument(path):
        image = page.render(scale=0.5).to_pil().convert("L")
        assert image.getextrema()[0] < 100  # something dark is drawn


def test_column_widths_fill_the_width_and_give_each_column_its_longest_word():
    rows = [["model", "configuration"], ["Logistic regression", "C=0.1, l1_ratio=0.5, class"]]
    widths = column_widths(rows, 300, 7)
    assert abs(sum(widths) - 300) < 1e-6
    assert widths[0] >= len("regression") * 7 * 0.58


def test_shorten_cuts_at_a_sentence_and_keeps_whole_bullets():
    text = "First sentence here. Second one is longer than the rest.\n\n- a bullet\n- another"
    assert shorten(text, 30) == "First sentence here."
    assert shorten(text, 1000) == text
    assert shorten("One very long first sentence without an end", 5).startswith("One very")
