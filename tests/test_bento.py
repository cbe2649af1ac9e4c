"""bentofile.yaml: its packages agree with pyproject.toml, its files hold what the service imports."""

import ast
import fnmatch
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _bentofile() -> dict:
    return yaml.safe_load((ROOT / "bentofile.yaml").read_text())


def test_bento_packages_have_the_pyproject_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    bentofile = _bentofile()
    assert bentofile["python"]["lock_packages"] is False  # builds offline (STACK-NOTES)
    for line in bentofile["python"]["packages"]:
        requirement = Requirement(line)
        assert requirement.name in declared, f"{requirement.name} is not in pyproject.toml"
        assert requirement.specifier == declared[requirement.name], requirement.name


#: The project's own top-level packages: an import of any of them must be in the Bento.
PROJECT_PACKAGES = ("tabular", "store", "reports", "bentos", "monitoring", "validation", "flows")


def _local_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        modules.update(n for n in names if n.split(".")[0] in PROJECT_PACKAGES)
    return modules


def test_the_bento_holds_every_module_the_service_imports():
    include = _bentofile()["include"]
    todo, seen = ["bentos.service"], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        relative = str(path.relative_to(ROOT))
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in include), relative
        todo.extend(_local_imports(path))
    assert {"tabular.contract", "bentos.compiled", "store.crud", "tabular.loaders"} <= seen
