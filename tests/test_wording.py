"""Generic stages speak of the data through the config, never of flights.

The end-to-end runs on a bookings CSV check every HTML page a run writes
(``tests/test_pipeline.py``); chart titles and axis labels end up as pixels in PNG files,
so this test reads the text the generic modules can draw or print: their string literals.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Every package of the project: each writes reports, charts, logs, errors or API text for
#: any dataset.
PACKAGES = ("tabular", "store", "reports", "bentos", "monitoring", "validation", "flows")
GENERIC = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
#: Only the built-in datasets' loaders may speak of their data.
DATASET_SPECIFIC = set((ROOT / "tabular" / "loaders").glob("*.py"))
WORDS = re.compile(r"(?<![a-z0-9])(flights?|late|departures?)(?![a-z])", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def test_every_package_is_scanned():
    scanned = {path.relative_to(ROOT).parts[0] for path in GENERIC}
    assert scanned == set(PACKAGES)
    assert ROOT / "store" / "crud.py" in GENERIC and ROOT / "flows" / "db.py" in GENERIC


def test_generic_modules_draw_and_write_no_flights_words():
    found = []
    for path in GENERIC:
        if path in DATASET_SPECIFIC:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            # Docstrings may cite the default dataset as an example; the file name may be named.
            text = node.value.replace("flights.yaml", "")
            if id(node) not in docstrings and WORDS.search(text):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:80]!r}")
    assert not found, "flights wording in generic code:\n" + "\n".join(found)
