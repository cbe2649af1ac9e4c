"""The walkthrough notebook: executed headless on a small sample; the committed copy's outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"

pytestmark = pytest.mark.slow


def test_committed_notebook_has_outputs_and_no_errors():
    assert NOTEBOOK.stat().st_size < 5 * 1024 * 1024
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code)
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
    # A Markdown cell follows every code cell but the set-up: it says what the output shows.
    for before, after in zip(notebook.cells[2:], notebook.cells[3:], strict=False):
        if before.cell_type == "code":
            assert after.cell_type == "markdown", before.source[:80]


def test_notebook_runs_top_to_bottom(monkeypatch, tmp_path):
    monkeypatch.setenv("WALKTHROUGH_SAMPLE", "3000")
    monkeypatch.setenv("WALKTHROUGH_CONFIGURATIONS", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    printed = "".join(output.get("text", "") for cell in code for output in cell.outputs)
    assert "sample used here: 3,000 rows" in printed
    assert "group(s), computed by embedded store" in printed
