"""The layout: one room per concern, and imports that only go down the layers.

``tabular`` (the study) imports none of the other packages; the store and the gate build on
the study; reports and serving on those; the monitor on serving; the flows and the CLI on
everything. A module that imported upward would tie a lower room to a higher one (the study
to MongoDB, a report to Prefect), which is what the layout exists to prevent.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each package's layer: a module may import its own package and any lower layer only.
LAYERS = {
    "tabular": 0,
    "validation": 1,
    "store": 1,
    "reports": 2,
    "bentos": 2,
    "monitoring": 3,
    "flows": 4,
}
#: What the study may never import: orchestration, serving, storage, monitoring engines.
NOT_IN_THE_STUDY = (
    "prefect",
    "bentoml",
    "mongoengine",
    "pymongo",
    "mongomock",
    "evidently",
    "great_expectations",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_module_imports_upward(package):
    upward = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in _modules(package)
        for line, name in _imports(path)
        if (top := name.split(".")[0]) in LAYERS
        and top != package
        and LAYERS[top] >= LAYERS[package]
    ]
    assert not upward, f"{package} (layer {LAYERS[package]}) imports upward:\n" + "\n".join(upward)


def test_the_study_knows_no_server_or_engine():
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in _modules("tabular")
        for line, name in _imports(path)
        if name.split(".")[0] in NOT_IN_THE_STUDY
    ]
    assert not found, "the study imports a server or engine:\n" + "\n".join(found)


def test_every_package_says_what_it_holds():
    for package in LAYERS:
        for init in (ROOT / package).rglob("__init__.py"):
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
            assert doc and len(doc.split()) >= 5, f"{init.relative_to(ROOT)} needs a docstring"


def test_the_top_level_packages_are_the_layers():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} - {"tests"}
    assert packages == set(LAYERS)


def test_the_layer_test_catches_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from flows.cli import main\n")
    assert _imports(module) == [(2, "flows.cli")]
